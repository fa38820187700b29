"""The key server's side of rekeys with a real daemon: commands, output, log lines, multicast.

On the spec's example network (unicast rekeys): `request ... rekey` prints what it
sent and gives the server new keys; the server logs the push and the ACKs and shows
each member's last ACKed SEQ; a reload with a new policy says which rekey it sent.
A server alone with multicast rekeys sends one copy to the group out of its
loopback interface, caught here by a socket that joined the group.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.interop.daemon import DaemonProcess, groupvpn_argv
from tests.system.spec_network import (
    add_lines,
    eventually,
    free_port,
    group_policy,
    groupvpn,
    kek_view,
    loopback_config,
    rekey,
    server_spis,
    show_json,
)

SMC = "set security group-vpn server group g1 server-member-communication"


def test_an_operator_rekey_prints_what_it_sent_and_unknown_groups_fail(
    spec_network: tuple[dict[str, Path], dict[str, DaemonProcess]],
):
    sockets, daemons = spec_network
    server = daemons["server"]
    before = server_spis(sockets["server"])
    offset = server.log_offset()
    result = rekey(sockets["server"])
    assert result.stdout.strip() == (
        "rekey sent: group g1 (group-id 1), SEQ 1, operator-request, to 2 members; "
        "new TEKs: p1, p2, p3"
    )
    after = server_spis(sockets["server"])
    assert all(after[policy] != before[policy] for policy in before)
    server.wait_for_line(
        r"rekey sent: group=g1 group-id=1 seq=1 reasons=operator-request members=2 "
        r"new-teks=p1,p2,p3 kek=kept", timeout=10, since=offset,
    )  # fmt: skip
    kek = kek_view(sockets["server"], "server")["security-associations"][0]
    assert kek["sequence"] == 1 and 3400 < kek["next-rekey-seconds"] <= 3540
    assert 0 < kek["next-heartbeat-seconds"] <= 300
    # Every member shows how it follows the rekeys; JSON keys of before are all kept.
    view = show_json(sockets["server"], "security", "group-vpn", "server", "registered-members")
    [group] = view["groups"]
    assert group["communication-type"] == "unicast"
    for member in group["members"]:
        assert {"address", "gateway", "registered", "state", "last-acked-sequence",
                "last-ack", "pending-sequence"} <= set(member)  # fmt: skip
        assert member["state"] in ("active", "waiting-for-ack") or member["state"].startswith(
            "retransmitting"
        )

    # The members ACK: both are active on SEQ 1.
    def acked() -> bool:
        view = show_json(sockets["server"], "security", "group-vpn", "server",
                         "registered-members")  # fmt: skip
        return all(m["last-acked-sequence"] == 1 and m["state"] == "active"
                   for m in view["groups"][0]["members"])  # fmt: skip

    assert eventually(acked, timeout=10), show_json(
        sockets["server"], "security", "group-vpn", "server", "registered-members"
    )
    server.wait_for_line(r"rekey complete: group=g1 seq=1 acked=2", timeout=5, since=offset)
    text = groupvpn("show", "security", "group-vpn", "server", "registered-members",
                    "--control", str(sockets["server"])).stdout  # fmt: skip
    assert "Rekeys: unicast" in text and "Last ACKed Seq" in text
    unknown = groupvpn("request", "security", "group-vpn", "server", "rekey", "group", "nope",
                       "--control", str(sockets["server"]))  # fmt: skip
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: group nope is not configured"
    assert "Traceback" not in server.log_text()


def test_a_reload_with_a_new_policy_says_which_rekey_it_sent(
    spec_network: tuple[dict[str, Path], dict[str, DaemonProcess]], tmp_path: Path
):
    sockets, daemons = spec_network
    add_lines(tmp_path / "server.conf", group_policy("p4", "10.5.0.0/16", "10.6.0.0/16"))
    result = groupvpn("reload", "--control", str(sockets["server"]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "configuration reloaded",
        "  group g1 (group-id 1): changed: policy p4 added",
        "    rekey sent: group g1 (group-id 1), SEQ 1, policy-change, to 2 members; new TEKs: p4",
    ]
    line = r"rekey sent: group=g1 group-id=1 seq=1 reasons=policy-change members=2 new-teks=p4"
    daemons["server"].wait_for_line(line, timeout=10)


def test_multicast_rekeys_leave_once_to_the_group_from_the_configured_interface(tmp_path: Path):
    port = free_port()
    conf = loopback_config("server.conf", tmp_path / "server.conf")
    text = conf.read_text().replace(f"{SMC} communication-type unicast", "\n".join([
        f"{SMC} communication-type multicast",
        f"{SMC} multicast-group 239.77.1.1",
        f"{SMC} multicast-outgoing-interface lo0.0",  # 127.0.0.20 on loopback
    ]))  # fmt: skip
    conf.write_text(text)
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("239.77.1.1", port))
    membership = socket.inet_aton("239.77.1.1") + socket.inet_aton("127.0.0.20")
    listener.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    listener.settimeout(10)
    server = DaemonProcess(groupvpn_argv("server", conf, port=port), tmp_path / "server.log",
                           name="server").start()  # fmt: skip
    try:
        server.wait_for_line("key server running", timeout=20)
        server.wait_for_line(r"multicast rekeys leave from 127\.0\.0\.20 \(ttl 8, loop on\)",
                             timeout=5)  # fmt: skip
        control = conf.with_suffix(".sock")
        result = rekey(control, "--json")
        sent = json.loads(result.stdout)
        assert sent["multicast-destination"] == f"239.77.1.1:{port}" and sent["members"] is None
        data, source = listener.recvfrom(65536)
        kek = kek_view(control, "server")["security-associations"][0]
        assert source[0] == "127.0.0.20"
        assert data[:16].hex() == kek["spi"] and data[18] == 33  # GROUPKEY-PUSH under the KEK
        assert kek["communication-type"] == "multicast"
        server.wait_for_line(rf"rekey sent: group=g1 group-id=1 seq=1 reasons=operator-request "
                             rf"multicast=239\.77\.1\.1:{port}", timeout=5)  # fmt: skip
        listener.settimeout(0.5)
        try:
            extra = listener.recvfrom(65536)
        except TimeoutError:
            extra = None
        assert extra is None  # one copy, never retransmitted
    finally:
        server.stop()
        listener.close()


def test_a_kek_rollover_reaches_the_members_and_the_next_rekey_rides_the_new_kek(
    spec_network: tuple[dict[str, Path], dict[str, DaemonProcess]], tmp_path: Path
):
    sockets, daemons = spec_network
    control = sockets["server"]

    def kek_spi() -> str:
        spi: str = kek_view(control, "server")["security-associations"][0]["spi"]
        return spi

    def acked(seq: int) -> bool:
        view = show_json(control, "security", "group-vpn", "server", "registered-members")
        return all(m["last-acked-sequence"] == seq for m in view["groups"][0]["members"])

    old = kek_spi()
    add_lines(tmp_path / "server.conf", [f"{SMC} lifetime-seconds 1800"])
    result = groupvpn("reload", "--control", str(control))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "    rekey sent: group g1 (group-id 1), SEQ 1, membership-change, to 2 members; "
        "new TEKs: p1, p2, p3; new KEK"
    )
    assert kek_spi() != old
    assert eventually(lambda: acked(1), timeout=20), (
        "the rollover (under the old KEK) was not ACKed"
    )
    assert "SEQ 2" in rekey(control).stdout
    assert eventually(lambda: acked(2), timeout=20), "the rekey under the new KEK was not ACKed"
    assert "Traceback" not in daemons["server"].log_text()
