"""Group VPNv1 members with a Group VPNv2 key server: the spec's interop notes as configuration.

The spec ("Group VPNv1 members ... can interoperate with Group VPNv2 servers") lists
what that takes, and each item is a configuration statement here:

* sha-256 in the members' IKE proposal (and the server's), hmac-sha-256-128 in
  the server's IPsec proposal;
* `deactivate security group-vpn server group g1 anti-replay-time-window`;
* `deactivate security group-vpn server group g1 server-member-communication`:
  no GROUPKEY-PUSH, rekeys by pull only;
* `deactivate security group-vpn member ipsec vpn gvpn1 heartbeat-threshold`;
* `clear security group-vpn member ipsec security-associations` as the recovery
  when the key server lost its keys.

The key server runs the v2 (RFC 6407) dialect, the members the v1 (RFC 3547) one:
they read the key server's RFC 6407 answers and stay v1 themselves.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.interop.daemon import DaemonProcess, groupvpn_argv
from tests.system.spec_network import (
    add_lines,
    clear_member_sas,
    eventually,
    free_port,
    groupvpn,
    loopback_config,
    member_keys,
    registered_members,
    running_daemons,
    server_spis,
)

SERVER = "set security group-vpn server"
MEMBER = "set security group-vpn member"
SERVER_LINES = [
    f"{SERVER} ike proposal srv-prop authentication-algorithm sha-256",
    f"{SERVER} ipsec proposal group-prop authentication-algorithm hmac-sha-256-128",
    f"{SERVER} group g1 anti-replay-time-window 100",
    "deactivate security group-vpn server group g1 anti-replay-time-window",
    "deactivate security group-vpn server group g1 server-member-communication",
]
MEMBER_LINES = [
    f"{MEMBER} ike proposal prop1 authentication-algorithm sha-256",
    f"{MEMBER} ipsec vpn gvpn1 heartbeat-threshold 3",
    "deactivate security group-vpn member ipsec vpn gvpn1 heartbeat-threshold",
]


def _spis(control: Path) -> set[str]:
    return {str(key["spi"]) for key in member_keys(control)}


@pytest.mark.timeout(180)
def test_v1_members_register_with_a_v2_key_server_configured_as_the_spec_says(tmp_path: Path):
    port = free_port()
    server_conf = loopback_config("server.conf", tmp_path / "server.conf")
    add_lines(server_conf, SERVER_LINES)
    confs = {"server": server_conf}
    for name in ("member1", "member2"):
        confs[name] = loopback_config(f"{name}.conf", tmp_path / f"{name}.conf")
        add_lines(confs[name], MEMBER_LINES)
    argv = {
        "server": groupvpn_argv("server", server_conf, port=port, extra=["--dialect", "v2"]),
        **{
            name: groupvpn_argv("member", confs[name], port=port, extra=["--dialect", "v1"])
            for name in ("member1", "member2")
        },
    }
    sockets = {name: conf.with_suffix(".sock") for name, conf in confs.items()}
    with running_daemons(argv, tmp_path) as daemons:
        for name in ("member1", "member2"):
            daemons[name].wait_for_line(
                r"registered: vpn=gvpn1 group-id=1 teks=3 kek=no", timeout=30
            )
            line = daemons[name].wait_for_line(r"IKE SA up: .* hash=(\S+)", timeout=5)
            assert line.group(1) == "sha-256"
        assert set(registered_members(sockets["server"])) == {"127.0.0.11", "127.0.0.12"}
        keys = member_keys(sockets["member1"])
        assert {key["authentication"] for key in keys} == {"hmac-sha-256-128"}
        assert {key["delivery"] for key in keys} == {"pull"}
        assert {key["anti-replay-window"] for key in keys} == {None}  # deactivated
        # No server-member-communication: no pushes, so no rekey to request.
        refused = groupvpn("request", "security", "group-vpn", "server", "rekey", "group", "g1",
                           "--control", str(sockets["server"]))  # fmt: skip
        assert refused.returncode != 0
        assert "has no server-member-communication" in refused.stderr

        # The key server loses its keys (the spec: "rebooted ... or the SAs for the group
        # are cleared"): its state moved away, it starts with new keys, and the members
        # hold old ones until the operator clears them, the spec's recovery.
        old = _spis(sockets["member1"])
        daemons["server"].stop()
        shutil.move(tmp_path / "server.state" / "server-state.db", tmp_path / "lost.db")
        daemons["server"] = DaemonProcess(argv["server"], tmp_path / "server-2.log",
                                          name="server").start()  # fmt: skip
        daemons["server"].wait_for_line("key server running", timeout=20)
        new = set(server_spis(sockets["server"]).values())
        assert not new & old
        for name in ("member1", "member2"):
            offset = daemons[name].log_offset()
            assert clear_member_sas(sockets[name]).returncode == 0
            daemons[name].wait_for_line(r"registered: vpn=gvpn1", timeout=30, since=offset)
        eventually(lambda: _spis(sockets["member1"]) <= new and _spis(sockets["member2"]) <= new)
        for daemon in daemons.values():
            assert "Traceback" not in daemon.log_text()
