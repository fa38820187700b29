"""Statistics, /metrics and log fields with real daemons on loopback.

The spec's server and member1, plus member2 asking for a group the server does not
have (its registrations are refused).  A rekey that member1 ACKs, then one it cannot
ACK (stopped with SIGSTOP) so the server retransmits and removes it; after each, the
counters in `show security group-vpn server statistics`, in its JSON and in a
scrape of /metrics over HTTP agree with what happened; `clear` sets them to zero.
The PSK appears in no log, view or metric.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop.daemon import DaemonProcess, groupvpn_argv
from tests.system.spec_network import (
    add_lines,
    eventually,
    free_port,
    groupvpn,
    loopback_config,
    registered_members,
    rekey,
    show_json,
)

PSK = "$ecret-Key 1"  # the spec configurations' pre-shared key
SMC = "set security group-vpn server group g1 server-member-communication"
STATISTICS = ("security", "group-vpn", "server", "statistics")


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text: str = answer.read().decode()
        return text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of an exposition, or None when it is not there."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    selector = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(selector + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


@contextlib.contextmanager
def network(
    tmp_path: Path,
) -> Iterator[tuple[dict[str, Path], dict[str, DaemonProcess], int, int, int]]:
    port = free_port()
    server_metrics, member_metrics = free_tcp_port(), free_tcp_port()
    daemons: dict[str, DaemonProcess] = {}
    try:
        for name, extra in (
            ("server", ["--metrics", str(server_metrics)]),  # no address: loopback
            ("member1", ["--metrics", f"127.0.0.1:{member_metrics}"]),
            ("member2", []),
        ):
            conf = loopback_config(f"{name}.conf", tmp_path / f"{name}.conf")
            if name == "server":
                add_lines(conf, [f"{SMC} number-of-retransmission 1",
                                 f"{SMC} retransmission-period 2"])  # fmt: skip
            if name == "member2":  # a group the key server does not have
                conf.write_text(conf.read_text().replace("vpn gvpn1 group 1", "vpn gvpn1 group 2"))
            role = "server" if name == "server" else "member"
            argv = groupvpn_argv(role, conf, port=port, extra=extra)
            daemons[name] = DaemonProcess(argv, tmp_path / f"{name}.log", name=name).start()
            daemons[name].wait_for_line("key server running|member running", timeout=20)
        daemons["member1"].wait_for_line(r"group SAs installed: vpn=gvpn1", timeout=30)
        sockets = {name: tmp_path / f"{name}.sock" for name in daemons}
        yield sockets, daemons, server_metrics, member_metrics, port
    finally:
        for daemon in daemons.values():
            daemon.send_signal(signal.SIGCONT)  # a stopped daemon could not stop on SIGTERM
            daemon.stop()


def statistics(control: Path) -> Any:
    return show_json(control, *STATISTICS)


def test_statistics_metrics_and_clear_follow_registrations_rekeys_acks_and_removals(
    tmp_path: Path,
):
    with network(tmp_path) as (sockets, daemons, server_port, member_port, ike_port):
        server = daemons["server"]
        refused = r"event=registration-refused registration refused: peer=127\.0\.0\.12 "
        server.wait_for_line(refused + ".*notify=INVALID-ID-INFORMATION", timeout=20)
        view = statistics(sockets["server"])
        [g1] = view["groups"]
        assert (g1["group"], g1["group-id"], g1["members"], g1["registrations"]) == ("g1", 1, 1, 1)
        assert view["registration-failures"]["invalid-id-information"] >= 1
        assert g1["rekeys-sent"] == g1["acks-received"] == g1["retransmissions"] == 0

        # A rekey member1 ACKs.
        rekey(sockets["server"])
        assert eventually(
            lambda: registered_members(sockets["server"])["127.0.0.11"]["last-acked-sequence"] == 1,
            timeout=10,
        )
        g1 = statistics(sockets["server"])["groups"][0]
        assert g1["rekeys-sent"] == 1 and g1["rekeys-by-reason"] == {"operator-request": 1}
        assert g1["push-copies-sent"] == 1 and g1["retransmissions"] == 0
        assert g1["acks-by-result"] == {"accepted": 1} and g1["rekeys-completed"] == 1

        # The member's metrics: one rekey received and ACKed under its KEK.
        member_text = scrape(member_port)
        assert sample(member_text, "groupvpn_member_rekeys_received_total", vpn="gvpn1") == 1
        assert sample(member_text, "groupvpn_member_acks_sent_total", vpn="gvpn1") == 1
        assert sample(member_text, "groupvpn_member_registered", vpn="gvpn1") == 1

        # A rekey member1 cannot ACK: one retransmission, then it is removed.
        daemons["member1"].send_signal(signal.SIGSTOP)
        rekey(sockets["server"])
        removed = r"event=member-removed member removed \(inactive\): group=g1 group-id=1 "
        server.wait_for_line(removed + r"peer=127\.0\.0\.11 seq=2 copies=2", timeout=15)
        view = statistics(sockets["server"])
        [g1] = view["groups"]
        assert g1["members"] == 0 and g1["rekeys-sent"] == 2 and g1["retransmissions"] == 1
        assert g1["members-removed"] == 1 and g1["members-removed-by-reason"] == {"inactive": 1}
        assert g1["acks-received"] == 1 and g1["rekeys-completed"] == 2
        assert view["total"]["rekeys-sent"] == 2 and view["total"]["members-removed"] == 1

        # Datagrams to port 848 from an address no IKE gateway names never reach a
        # Phase 1 exchange: they are counted as Phase 1 drops.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.bind(("127.0.0.99", 0))
            for _ in range(3):
                stranger.sendto(b"\x00" * 40, ("127.0.0.20", ike_port))
        assert eventually(
            lambda: sum(statistics(sockets["server"])["phase1-drops"].values()) >= 3, timeout=5
        )
        view = statistics(sockets["server"])
        drops = view["phase1-drops"]

        # The table says the same as the JSON.
        text = groupvpn("show", *STATISTICS, "--control", str(sockets["server"]), check=True).stdout
        row = next(line.split() for line in text.splitlines() if line.startswith("  g1 "))
        assert row[:9] == ["g1", "1", "0", "1", "2", str(g1["heartbeats-sent"]),
                           str(g1["push-copies-sent"]), "1", "1"]  # fmt: skip
        assert "Rekeys sent by reason:\n  operator-request: 2" in text
        assert "Members removed by reason:\n  inactive: 1" in text
        failed = view["total"]["registrations-failed"]
        assert re.search(rf"Registrations failed: {failed}\n  invalid-id-information: ", text)
        phase1 = "".join(f"\n  {reason}: {count}" for reason, count in drops.items() if count)
        assert "Phase 1 packets dropped by reason:" + phase1 in text

        # /metrics says the same again.
        metrics = scrape(server_port)
        assert sample(metrics, "groupvpn_server_registrations_total", group="g1") == 1
        assert sample(metrics, "groupvpn_server_rekeys_sent_total", group="g1") == 2
        assert sample(metrics, "groupvpn_server_rekey_retransmissions_total", group="g1") == 1
        assert sample(metrics, "groupvpn_server_acks_received_total", group="g1",
                      result="accepted") == 1  # fmt: skip
        assert sample(metrics, "groupvpn_server_members_removed_total", group="g1",
                      reason="inactive") == 1  # fmt: skip
        assert sample(metrics, "groupvpn_server_members", group="g1") == 0
        failures = sample(metrics, "groupvpn_server_registration_failures_total",
                          reason="invalid-id-information")  # fmt: skip
        assert failures is not None and failures >= 1
        assert "# TYPE groupvpn_server_rekeys_sent_total counter" in metrics
        for reason, count in drops.items():
            assert sample(metrics, "groupvpn_server_phase1_drops_total", reason=reason) == count
        with pytest.raises(urllib.error.HTTPError) as not_found:
            urllib.request.urlopen(f"http://127.0.0.1:{server_port}/", timeout=5)
        assert not_found.value.code == 404

        # clear: every count back to zero, in the view and in /metrics.
        cleared = groupvpn("clear", "security", "group-vpn", "server", "statistics",
                           "--control", str(sockets["server"]), check=True)  # fmt: skip
        assert cleared.stdout == ""
        server.wait_for_line("event=statistics-cleared server statistics cleared", timeout=5)
        view = statistics(sockets["server"])
        total = view["total"]
        assert total["rekeys-sent"] == total["retransmissions"] == total["acks-received"] == 0
        assert total["registrations"] == total["members-removed"] == 0
        assert set(view["phase1-drops"].values()) <= {0}
        assert view["seconds"] <= 2
        metrics = scrape(server_port)
        assert sample(metrics, "groupvpn_server_rekeys_sent_total", group="g1") == 0
        assert sample(metrics, "groupvpn_server_registrations_total", group="g1") == 0

        # The member side of clear (no data plane here: nothing to count, still no error).
        daemons["member1"].send_signal(signal.SIGCONT)
        groupvpn("clear", "security", "group-vpn", "member", "ipsec", "statistics",
                 "--control", str(sockets["member1"]), check=True)  # fmt: skip
        shown = groupvpn("show", "security", "group-vpn", "member", "ipsec", "statistics",
                         "--control", str(sockets["member1"]), check=True)  # fmt: skip
        assert "No data plane" in shown.stdout

        # The log lines carry event=, group= and peer=; the PSK is nowhere.
        server_log = server.log_text()
        assert re.search(r"event=member-registered member registered: group=g1 group-id=1 "
                         r"peer=127\.0\.0\.11", server_log)  # fmt: skip
        assert re.search(r"event=rekey-sent rekey sent: group=g1 .*reasons=operator-request",
                         server_log)  # fmt: skip
        assert re.search(r"event=rekey-retransmitted rekey retransmitted: group=g1 "
                         r"peer=127\.0\.0\.11 seq=2", server_log)  # fmt: skip
        everything = [server_log, text, metrics, member_text, scrape(member_port)]
        everything += [daemon.log_text() for daemon in daemons.values()]
        for output in everything:
            assert PSK not in output and PSK.encode().hex() not in output
