"""Multicast rekeys between network namespaces: one datagram, every member rekeyed.

A key server and two members on a bridged LAN in namespaces (tests/system/
multicast_lab.py), the group configured with `communication-type multicast` to
239.77.0.1 out of the server's ge-0/0/0.0.  The members register by unicast, join
the group on their external interface, and an operator rekey sent once to the group
address gives both of them the server's new keys.  Multicast rekeys are not ACKed,
and the membership list keeps both members.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.daemon import DaemonProcess, groupvpn_argv
from tests.system.multicast_lab import multicast_lan
from tests.system.spec_network import (
    eventually,
    ike_lines,
    kek_view,
    member_keys,
    registered_members,
    rekey,
    server_spis,
)

PORT = 848
GROUP_ADDRESS = "239.77.0.1"
PSK = "multicast-lan-psk"


def _server(address: str, members: dict[str, str]) -> str:
    group = "set security group-vpn server group g1"
    smc = f"{group} server-member-communication"
    lines = [
        f"set interfaces ge-0/0/0 unit 0 family inet address {address}/24",
        "set security group-vpn server ipsec proposal gp authentication-algorithm hmac-sha1-96",
        "set security group-vpn server ipsec proposal gp encryption-algorithm aes-128-cbc",
        f"{group} group-id 1",
        f"{group} ipsec-sa sa proposal gp",
        f"{group} ipsec-sa sa match-policy p1 source 10.1.0.0/16",
        f"{group} ipsec-sa sa match-policy p1 destination 10.2.0.0/16",
        f"{smc} communication-type multicast",
        f"{smc} multicast-group {GROUP_ADDRESS}",
        f"{smc} multicast-outgoing-interface ge-0/0/0.0",
        f"{smc} encryption-algorithm aes-128-cbc",
        f"{smc} sig-hash-algorithm sha1",
    ]
    for name, member in members.items():
        lines += [*ike_lines("server", name, member, address, PSK), f"{group} ike-gateway {name}"]
    return "\n".join(lines) + "\n"


def _member(address: str, server: str) -> str:
    vpn = "set security group-vpn member ipsec vpn v1"
    zone = "set security zones security-zone"
    policy = "set security policies from-zone trust to-zone untrust policy scope"
    lines = [
        *ike_lines("member", "ks", server, address, PSK),
        "set interfaces ge-0/0/0 unit 0 family inet address 10.1.0.1/16",
        f"set interfaces ge-0/0/1 unit 0 family inet address {address}/24",
        f"{vpn} ike-gateway ks",
        f"{vpn} group 1",
        f"{vpn} group-vpn-external-interface ge-0/0/1.0",
        f"{zone} trust interfaces ge-0/0/0.0",
        f"{zone} untrust interfaces ge-0/0/1.0",
        "set security address-book book-trust address net10 10.0.0.0/8",
        "set security address-book book-trust attach zone trust",
        "set security address-book book-untrust address net10 10.0.0.0/8",
        "set security address-book book-untrust attach zone untrust",
        f"{policy} match source-address net10",
        f"{policy} match destination-address net10",
        f"{policy} match application any",
        f"{policy} then permit tunnel ipsec-group-vpn v1",
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(180)
def test_one_multicast_rekey_reaches_every_member(tmp_path: Path):
    with multicast_lan({"server": 1, "m1": 11, "m2": 12}) as lan:
        server_address = lan.address("server")
        members = {"m1": lan.address("m1"), "m2": lan.address("m2")}
        configs = {"server": _server(server_address, members)}
        configs.update(
            {name: _member(address, server_address) for name, address in members.items()}
        )
        daemons: dict[str, DaemonProcess] = {}
        try:
            for name, text in configs.items():
                conf = tmp_path / f"{name}.conf"
                conf.write_text(text)
                role = "server" if name == "server" else "member"
                daemon = DaemonProcess(groupvpn_argv(role, conf, port=PORT),
                                       tmp_path / f"{name}.log", netns=lan.namespace(name),
                                       name=name)  # fmt: skip
                daemons[name] = daemon.start()
                daemon.wait_for_line(
                    "key server running" if role == "server" else "member running", timeout=20
                )
            for name in members:
                daemons[name].wait_for_line(r"multicast rekeys: joined", timeout=30)
            sockets = {name: tmp_path / f"{name}.sock" for name in configs}
            before = server_spis(sockets["server"])
            rekey(sockets["server"])
            new_spi = server_spis(sockets["server"])["p1"]
            assert new_spi != before["p1"]
            for name in members:

                def holds_new(name: str = name) -> bool:
                    return new_spi in {k["spi"] for k in member_keys(sockets[name])}

                assert eventually(holds_new), daemons[name].log_text()[-3000:]
                kek = kek_view(sockets[name], "member")
                [sa] = kek["security-associations"]
                assert sa["destination"].startswith(GROUP_ADDRESS)
                assert sa["acks-sent"] == 0  # multicast rekeys are not ACKed
            # Nobody was dropped for not ACKing.
            assert sorted(registered_members(sockets["server"])) == sorted(members.values())
            for daemon in daemons.values():
                assert "Traceback" not in daemon.log_text()
        finally:
            for daemon in daemons.values():
                daemon.stop()
