"""Registration and a rekey through a path that loses 30% of the datagrams both ways.

The spec's example (key server, member1, member2; tests/configs/spec/ on loopback) in
a namespace whose loopback drops datagrams at random (tests/system/lossy_network.py).
Retransmissions and the members' backoff must bring both members in with the
server's keys and KEK, and the server's membership list must hold each member once.
Then an operator rekey must reach both members, and both ACKs the server: with
10 retransmissions 2 s apart, a member is lost only if all 11 round trips fail
(0.51^11, under 0.1%).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from groupvpn.runtime.control import call
from tests.interop.daemon import DaemonProcess, groupvpn_argv
from tests.system.lossy_network import dropped_datagrams, lossy_namespace
from tests.system.spec_network import (
    add_lines,
    kek_view,
    loopback_config,
    member_keys,
    registered_members,
    server_spis,
    show_json,
)

PORT = 848
SMC = "set security group-vpn server group g1 server-member-communication"
PATIENT = [f"{SMC} number-of-retransmission 10", f"{SMC} retransmission-period 2"]
MEMBERS = {"member1": "127.0.0.11", "member2": "127.0.0.12"}


@pytest.mark.timeout(300)
def test_registration_and_a_rekey_reach_every_member_through_30_percent_loss(tmp_path: Path):
    with lossy_namespace(PORT, loss_percent=30) as ns:
        fast = ("--retransmit-interval", "0.5", "--retransmit-limit", "6")
        daemons: dict[str, DaemonProcess] = {}
        try:
            for name in ("server", *MEMBERS):
                conf = loopback_config(f"{name}.conf", tmp_path / f"{name}.conf")
                if name == "server":
                    add_lines(conf, PATIENT)
                role = "server" if name == "server" else "member"
                argv = groupvpn_argv(role, conf, port=PORT, extra=fast)
                daemon = DaemonProcess(argv, tmp_path / f"{name}.log", netns=ns, name=name)
                daemons[name] = daemon.start()
                daemon.wait_for_line(
                    "key server running" if role == "server" else "member running", timeout=20
                )
            for name in MEMBERS:
                _wait_registered(tmp_path / f"{name}.sock")
            assert sorted(_registered(tmp_path)) == sorted(MEMBERS.values())

            # Each member holds exactly the server's keys for p1 and p2, and its KEK.
            spi_of = server_spis(tmp_path / "server.sock")
            server_kek = kek_view(tmp_path / "server.sock", "server")
            for name in MEMBERS:
                sock = tmp_path / f"{name}.sock"
                assert sorted(sa["spi"] for sa in member_keys(sock)) == sorted(
                    [spi_of["p1"], spi_of["p2"]]
                )
                kek = kek_view(sock, "member")
                assert (
                    kek["security-associations"][0]["spi"]
                    == (server_kek["security-associations"][0]["spi"])
                )
            # A rekey through the same path: both members get it and the server sees
            # both ACKs (it retransmits what was lost).
            answer = call(tmp_path / "server.sock", "server-rekey", {"group": "g1"})
            sequence = int(answer["sequence"])
            new = server_spis(tmp_path / "server.sock")
            new_spis = {new["p1"], new["p2"]}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                members = registered_members(tmp_path / "server.sock")
                if len(members) == len(MEMBERS) and all(
                    m.get("last-acked-sequence") == sequence for m in members.values()
                ):
                    break
                time.sleep(0.5)
            members = registered_members(tmp_path / "server.sock")
            assert sorted(members) == sorted(MEMBERS.values()), members
            assert all(m.get("last-acked-sequence") == sequence for m in members.values())
            for name in MEMBERS:
                assert new_spis <= {sa["spi"] for sa in member_keys(tmp_path / f"{name}.sock")}
            # The path really was lossy, and nobody crashed or logged a secret.
            assert dropped_datagrams(ns) > 0
            for daemon in daemons.values():
                assert daemon.is_alive(), daemon.log_text()[-2000:]
                assert "Traceback" not in daemon.log_text()
                assert "$ecret-Key 1" not in daemon.log_text()
        finally:
            for daemon in daemons.values():
                daemon.stop()


def _registered(tmp_path: Path) -> list[str]:
    view: dict[str, Any] = show_json(tmp_path / "server.sock", "security", "group-vpn", "server",
                                     "registered-members")  # fmt: skip
    addresses = [m["address"] for group in view["groups"] for m in group["members"]]
    assert len(addresses) == len(set(addresses)), "a member is listed twice"
    return addresses


def _wait_registered(sock: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ike = show_json(sock, "security", "group-vpn", "member", "ike", "security-associations")
        if all(r["state"] == "registered" for r in ike["registrations"]):
            return
        time.sleep(0.5)
    raise AssertionError(f"member at {sock} did not finish registering")
