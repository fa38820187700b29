"""GROUPKEY-PUSH rekeys end to end: real daemons on loopback, read through `--json`.

The spec's example network (tests/system/spec_network.py).  An operator rekey gives
every member the server's new keys and every member ACKs it; a group policy added by
a reload reaches both members as a dynamic policy without them registering again; a
member that stops answering is retransmitted to and then removed.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.system.spec_network import (
    SpecNetwork,
    add_lines,
    eventually,
    group_policy,
    member_keys,
    registered_members,
    rekey,
    running_spec_network,
    server_spis,
    show_json,
)

SMC = "set security group-vpn server group g1 server-member-communication"


def test_an_operator_rekey_gives_every_member_the_new_keys_and_is_acked(
    spec_network: SpecNetwork,
):
    sockets, daemons = spec_network
    server = sockets["server"]
    before = server_spis(server)
    rekey(server)
    after = server_spis(server)
    assert set(after) == set(before) and all(after[p] != before[p] for p in after)
    for name in ("member1", "member2"):
        # The pushed keys arrive pending (active after 2 x activation-time-delay) next to
        # the old ones, which still decrypt.
        def holds_new(socket: Path = sockets[name]) -> bool:
            return {after["p1"], after["p2"]} <= {k["spi"] for k in member_keys(socket)}

        assert eventually(holds_new), member_keys(sockets[name])
        states = {k["spi"]: k["state"] for k in member_keys(sockets[name])}
        assert states[after["p1"]] == "pending" and states[before["p1"]] == "active"
        assert after["p3"] not in states  # still outside member scope policies
    acked = eventually(
        lambda: all(m["state"] == "active" and m["last-acked-sequence"] >= 1
                    for m in registered_members(server).values()) and registered_members(server)
    )  # fmt: skip
    assert sorted(acked) == ["127.0.0.11", "127.0.0.12"]
    for daemon in daemons.values():
        assert "Traceback" not in daemon.log_text()


def test_a_policy_added_by_sighup_reaches_both_members_as_a_dynamic_policy(
    spec_network: SpecNetwork, tmp_path: Path
):
    sockets, daemons = spec_network
    add_lines(tmp_path / "server.conf", group_policy("p4", "10.5.0.0/16", "10.6.0.0/16"))
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
        assert eventually(lambda: installed(name)), name  # noqa: B023 - called at once
        # By push, not by registering again.
        assert daemons[name].log_text().count("registered: vpn=gvpn1") == 1


@pytest.mark.timeout(120)
def test_a_member_that_stops_answering_is_retransmitted_to_then_removed(tmp_path: Path):
    lines = [f"{SMC} number-of-retransmission 1", f"{SMC} retransmission-period 2"]
    with running_spec_network(tmp_path, server_lines=lines) as (sockets, daemons):
        daemons["member2"].send_signal(signal.SIGKILL)
        daemons["member2"].wait(5)
        server = sockets["server"]
        rekey(server)
        # One copy, one retransmission 2 s later, removal 2 s after that.
        gone = eventually(lambda: "127.0.0.12" not in registered_members(server), timeout=20)
        assert gone, registered_members(server)
        assert "127.0.0.11" in registered_members(server)
        log = daemons["server"].log_text()
        assert "rekey retransmitted: group=g1 peer=127.0.0.12" in log
        assert "member removed (inactive): group=g1" in log and "peer=127.0.0.12" in log
