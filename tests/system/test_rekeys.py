"""GROUPKEY-PUSH rekeys end to end: real daemons on loopback, read through `--json`.

The spec's example network (tests/system/spec_network.py).  An operator rekey gives
every member the server's new keys and every member ACKs it; a group policy added by
a reload reaches both members as a dynamic policy without them registering again; a
member that stops answering is retransmitted to and then removed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.system.spec_network import SpecNetwork, running_spec_network, show_json

SMC = "set security group-vpn server group g1 server-member-communication"


def _groupvpn(*words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "groupvpn", *words],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def _rekey(server_socket: Path) -> subprocess.CompletedProcess[str]:
    result = _groupvpn("request", "security", "group-vpn", "server", "rekey", "group", "g1",
                       "--control", str(server_socket))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def _eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def _server_spis(sockets: dict[str, Path]) -> dict[str, str]:
    view = show_json(sockets["server"], "security", "group-vpn", "server", "ipsec",
                     "security-associations")  # fmt: skip
    return {sa["policy"]: sa["spi"] for sa in view["groups"][0]["security-associations"]}


def _member_keys(socket: Path) -> list[dict[str, Any]]:
    view = show_json(socket, "security", "group-vpn", "member", "ipsec", "security-associations")
    keys: list[dict[str, Any]] = view["security-associations"]
    return keys


def _members(sockets: dict[str, Path]) -> dict[str, dict[str, Any]]:
    view = show_json(sockets["server"], "security", "group-vpn", "server", "registered-members")
    return {m["address"]: m for group in view["groups"] for m in group["members"]}


def test_an_operator_rekey_gives_every_member_the_new_keys_and_is_acked(
    spec_network: SpecNetwork,
):
    sockets, daemons = spec_network
    before = _server_spis(sockets)
    _rekey(sockets["server"])
    after = _server_spis(sockets)
    assert set(after) == set(before) and all(after[p] != before[p] for p in after)
    for name in ("member1", "member2"):
        # The pushed keys arrive pending (active after 2 x activation-time-delay) next to
        # the old ones, which still decrypt.
        def holds_new(socket: Path = sockets[name]) -> bool:
            return {after["p1"], after["p2"]} <= {k["spi"] for k in _member_keys(socket)}

        assert _eventually(holds_new), _member_keys(sockets[name])
        states = {k["spi"]: k["state"] for k in _member_keys(sockets[name])}
        assert states[after["p1"]] == "pending" and states[before["p1"]] == "active"
        assert after["p3"] not in states  # still outside member scope policies
    members = _eventually(
        lambda: all(m["state"] == "active" and m["last-acked-sequence"] >= 1
                    for m in _members(sockets).values()) and _members(sockets)
    )  # fmt: skip
    assert sorted(members) == ["127.0.0.11", "127.0.0.12"]
    for daemon in daemons.values():
        assert "Traceback" not in daemon.log_text()


def test_a_policy_added_by_sighup_reaches_both_members_as_a_dynamic_policy(
    spec_network: SpecNetwork, tmp_path: Path
):
    sockets, daemons = spec_network
    conf = tmp_path / "server.conf"
    p4 = "set security group-vpn server group g1 ipsec-sa group-sa match-policy p4"
    conf.write_text(conf.read_text() + "\n".join(
        f"{p4} {line}" for line in ("source 10.5.0.0/16", "destination 10.6.0.0/16",
                                    "source-port 0", "destination-port 0", "protocol 0")
    ) + "\n")  # fmt: skip
    # SIGHUP, as an operator's `kill -HUP` or a config management tool would.
    offset = daemons["server"].log_offset()
    daemons["server"].send_signal(signal.SIGHUP)
    daemons["server"].wait_for_line(r"changed: policy p4 added", timeout=10, since=offset)
    daemons["server"].wait_for_line(r"rekey sent: group=g1 .*reasons=policy-change", timeout=10,
                                    since=offset)  # fmt: skip

    def installed(name: str) -> bool:
        view = show_json(sockets[name], "security", "dynamic-policies")
        return any(
            p["installed"] and (p["source"], p["destination"]) == ("10.5.0.0/16", "10.6.0.0/16")
            for p in view["dynamic-policies"]
        )

    for name in ("member1", "member2"):
        assert _eventually(lambda: installed(name)), name  # noqa: B023 - called at once
        # By push, not by registering again.
        assert daemons[name].log_text().count("registered: vpn=gvpn1") == 1


@pytest.mark.timeout(120)
def test_a_member_that_stops_answering_is_retransmitted_to_then_removed(tmp_path: Path):
    lines = [f"{SMC} number-of-retransmission 1", f"{SMC} retransmission-period 2"]
    with running_spec_network(tmp_path, server_lines=lines) as (sockets, daemons):
        daemons["member2"].send_signal(signal.SIGKILL)
        daemons["member2"].wait(5)
        _rekey(sockets["server"])
        # One copy, one retransmission 2 s later, removal 2 s after that.
        gone = _eventually(lambda: "127.0.0.12" not in _members(sockets), timeout=20)
        assert gone, _members(sockets)
        assert "127.0.0.11" in _members(sockets)
        log = daemons["server"].log_text()
        assert "rekey retransmitted: group=g1 peer=127.0.0.12" in log
        assert "member removed (inactive): group=g1" in log and "peer=127.0.0.12" in log
