"""A restarted key server continues where it stopped (issue 6, docs/persistence.md).

The spec's network on loopback with unicast rekeys, `heartbeat 60` (the smallest
Junos allows) and `heartbeat-threshold 1` on the members, so a member that missed
one heartbeat registers again.  The key server is killed with SIGKILL and started
again on the same state directory: it must come back with the same KEK and TEKs,
a SEQ above every one it sent, its members (and their ACK keys), and heartbeats
that members take without registering again.  A second part moves the state away:
then the members notice by their missed heartbeats and register again, as before
persistence.  A third starts the server on a corrupt state file: it refuses, says
how to recover, and changes nothing.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.interop.daemon import DaemonProcess
from tests.system.spec_network import (
    eventually,
    kek_view,
    member_keys,
    registered_members,
    rekey,
    running_spec_network,
)

SMC = "set security group-vpn server group g1 server-member-communication"
VPN = "set security group-vpn member ipsec vpn gvpn1"
SERVER_LINES = [f"{SMC} heartbeat 60"]
MEMBER_LINES = [f"{VPN} heartbeat-threshold 1"]


def _server_kek(sockets: dict[str, Path]) -> dict[str, Any]:
    sas = kek_view(sockets["server"], "server")["security-associations"]
    assert len(sas) == 1
    kek: dict[str, Any] = sas[0]
    return kek


def _member_kek_spi(sockets: dict[str, Path], member: str) -> str:
    return str(kek_view(sockets[member], "member")["security-associations"][0]["spi"])


def _spis(sockets: dict[str, Path], member: str) -> set[str]:
    return {str(key["spi"]) for key in member_keys(sockets[member])}


def _seqs_applied(daemon: DaemonProcess) -> list[int]:
    return [int(n) for n in re.findall(r"rekey applied: vpn=gvpn1 seq=(\d+)", daemon.log_text())]


def _restart(daemons: dict[str, DaemonProcess], tmp_path: Path, n: int) -> DaemonProcess:
    server = daemons["server"]
    restarted = DaemonProcess(server.argv, tmp_path / f"server-{n}.log", name="server")
    daemons["server"] = restarted.start()
    restarted.wait_for_line("key server running", timeout=20)
    return restarted


@pytest.mark.timeout(300)
def test_a_killed_key_server_continues_with_its_keys_seq_and_members(tmp_path: Path):
    with running_spec_network(tmp_path, SERVER_LINES, MEMBER_LINES) as (sockets, daemons):
        assert rekey(sockets["server"]).returncode == 0
        eventually(lambda: _seqs_applied(daemons["member1"]) and _seqs_applied(daemons["member2"]))
        before = _server_kek(sockets)
        spis_before = _spis(sockets, "member1")
        members_before = set(registered_members(sockets["server"]))

        daemons["server"].send_signal(signal.SIGKILL)
        daemons["server"].wait(timeout=10)
        restart_at = time.monotonic()
        server = _restart(daemons, tmp_path, 2)
        assert time.monotonic() - restart_at < 5
        server.wait_for_line(r"key server state restored: group g1: SEQ continues after \d+; "
                             r"3 TEK\(s\) restored; 2 member\(s\); KEK restored")  # fmt: skip

        # Same KEK, same members, a SEQ beyond every SEQ sent before the kill.
        after = _server_kek(sockets)
        assert after["spi"] == before["spi"] == _member_kek_spi(sockets, "member1")
        assert after["sequence"] > before["sequence"]
        assert set(registered_members(sockets["server"])) == members_before

        # Pushes go on: an operator rekey reaches both members, which verify it
        # with the KEK they hold and ACK it with the ACK keys the server kept.
        assert rekey(sockets["server"]).returncode == 0

        def took_a_newer_rekey(member: str) -> bool:
            return max(_seqs_applied(daemons[member])) > int(before["sequence"])

        eventually(lambda: took_a_newer_rekey("member1") and took_a_newer_rekey("member2"))
        new_spis = eventually(lambda: _spis(sockets, "member1") - spis_before or None)
        assert new_spis
        eventually(
            lambda: all(
                m["state"] == "active" and m["last-acked-sequence"] > before["sequence"]
                for m in registered_members(sockets["server"]).values()
            )
        )

        # A member that starts now (new phase 1) registers at once and gets the same KEK.
        daemons["member2"].stop()
        member2 = DaemonProcess(daemons["member2"].argv, tmp_path / "member2-2.log", name="m2")
        daemons["member2"] = member2.start()
        member2.wait_for_line(r"registered: vpn=gvpn1", timeout=30)
        assert _member_kek_spi(sockets, "member2") == after["spi"]

        # A heartbeat interval and its grace later, member1 has not registered again:
        # the restarted server's heartbeats verified and carried higher SEQs.
        time.sleep(75)
        assert "registering again" not in daemons["member1"].log_text()
        heard = kek_view(sockets["member1"], "member")["security-associations"][0]
        assert heard["heartbeats-received"] >= 1
        assert heard["heartbeats-missed"] == 0


@pytest.mark.timeout(240)
def test_without_its_state_the_server_starts_afresh_and_members_come_back(tmp_path: Path):
    with running_spec_network(tmp_path, SERVER_LINES, MEMBER_LINES) as (sockets, daemons):
        old_spi = _member_kek_spi(sockets, "member1")
        member = daemons["member1"]
        daemons["server"].stop()
        state = tmp_path / "server.state"
        shutil.move(state / "server-state.db", tmp_path / "moved-away.db")
        server = _restart(daemons, tmp_path, 2)
        server.wait_for_line("key server state: none stored, starting afresh")
        new_spi = _server_kek(sockets)["spi"]
        assert new_spi != old_spi

        offset = member.log_offset()
        started = time.monotonic()
        member.wait_for_line(r"registering again: vpn=gvpn1 reason=.*heartbeat", timeout=150,
                             since=offset)  # fmt: skip
        member.wait_for_line(r"registered: vpn=gvpn1", timeout=60, since=offset)
        # One interval (60 s) plus the grace period, counted from the last heartbeat.
        assert time.monotonic() - started < 120
        assert _member_kek_spi(sockets, "member1") == new_spi


def test_a_corrupt_state_file_stops_the_start_with_a_way_out(tmp_path: Path):
    conf = tmp_path / "server.conf"
    shutil.copy(Path(__file__).parents[1] / "configs" / "server.conf", conf)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    database = state / "server-state.db"
    database.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    database.chmod(0o600)
    before = database.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "groupvpn", "server", "-c", str(conf), "--port", "18848",
         "--control", str(tmp_path / "s.sock"), "--state-dir", str(state)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot start: the key server state {database} is unreadable" in result.stderr
    assert "To recover: stop the key server, move" in result.stderr
    assert database.read_bytes() == before  # nothing overwritten, nothing started afresh


def _active_policies(sockets: dict[str, Path], member: str) -> set[tuple[str, str]]:
    return {
        (str(key["source"]), str(key["destination"]))
        for key in member_keys(sockets[member])
        if key["state"] == "active"
    }


@pytest.mark.timeout(300)
def test_kill_9_at_random_points_of_rekeys_and_registrations(tmp_path: Path):
    """Four kills at random moments while rekeys and registrations run.

    Afterwards the SEQ is above every SEQ any of the server's lives sent, both
    members are registered (member1 never had to register again), and at every
    sample member1 held an active key for each policy: no gap for lack of keys.
    """
    rng = random.Random(0x6B696C6C)  # fixed seed: a failure can be replayed
    with running_spec_network(tmp_path, SERVER_LINES, MEMBER_LINES) as (sockets, daemons):
        wanted = _active_policies(sockets, "member1")
        assert len(wanted) == 2
        gaps: list[str] = []
        stop = threading.Event()

        def watch_keys() -> None:
            while not stop.is_set():
                held = _active_policies(sockets, "member1")
                if not wanted <= held:
                    gaps.append(f"{time.monotonic():.2f}: only {sorted(held)}")
                stop.wait(0.25)

        watcher = threading.Thread(target=watch_keys, daemon=True)
        watcher.start()
        try:
            for life in range(2, 6):
                deadline = time.monotonic() + rng.uniform(0.5, 3.0)
                while time.monotonic() < deadline:
                    # Rekeys, and now and then member2 registering afresh.
                    rekey(sockets["server"])
                    if rng.random() < 0.3:
                        daemons["member2"].stop()
                        daemons["member2"] = DaemonProcess(
                            daemons["member2"].argv, tmp_path / f"member2-{life}.log",
                            name="member2",
                        ).start()  # fmt: skip
                    time.sleep(rng.uniform(0.05, 0.4))
                daemons["server"].send_signal(signal.SIGKILL)
                daemons["server"].wait(timeout=10)
                _restart(daemons, tmp_path, life)
        finally:
            stop.set()
            watcher.join(timeout=10)

        logs = "\n".join(path.read_text() for path in tmp_path.glob("server*.log"))
        sent = [int(n) for n in re.findall(r"rekey sent: group=g1 group-id=1 seq=(\d+)", logs)]
        assert sent, "no rekey was sent"
        assert int(_server_kek(sockets)["sequence"]) > max(sent)
        # The next rekey is taken by both members: its SEQ is above all they saw.
        assert rekey(sockets["server"]).returncode == 0
        daemons["member2"].wait_for_line(r"registered: vpn=gvpn1", timeout=60)

        def everyone_took_it() -> bool:
            seqs = [_seqs_applied(d) for d in (daemons["member1"], daemons["member2"])]
            return all(s and max(s) > max(sent) for s in seqs)

        eventually(everyone_took_it, timeout=60)
        assert set(registered_members(sockets["server"])) == {"127.0.0.11", "127.0.0.12"}
        assert "registering again" not in daemons["member1"].log_text()
        assert gaps == []
