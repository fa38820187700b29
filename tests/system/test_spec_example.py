"""The spec's example (Example: Configuring Group VPNv1 Server and Members) on loopback.

Real daemons, real UDP, the spec's Junos configurations (tests/configs/spec/) with their
addresses moved onto 127.0.0.0/8: the key server's 20.0.0.1 becomes 127.0.0.20,
member1 127.0.0.11, member2 127.0.0.12.  Assertions are on the `--json` output of the
show commands.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from tests.interop.daemon import DaemonProcess, groupvpn_argv
from tests.system.spec_network import clear_member_sas, free_port, loopback_config, show_json


def _dynamic(control: Path) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    view = show_json(control, "security", "dynamic-policies")
    return {
        (p["source"], p["destination"], p["from-zone"], p["to-zone"]): p
        for p in view["dynamic-policies"]
    }


def test_the_spec_example_registers_and_installs_what_the_spec_says(spec_network):
    sockets, daemons = spec_network
    members = show_json(sockets["server"], "security", "group-vpn", "server", "registered-members")
    [group] = members["groups"]
    assert (group["group"], group["group-id"]) == ("g1", 1)
    assert sorted((m["address"], m["gateway"]) for m in group["members"]) == [
        ("127.0.0.11", "gw-member1"), ("127.0.0.12", "gw-member2"),
    ]  # fmt: skip

    # member1: scope 10.0.0.0/8 both ways installs p1 and p2, never the multicast p3.
    member1 = _dynamic(sockets["member1"])
    for context in (("trust", "untrust"), ("untrust", "trust")):
        assert member1[("10.1.0.0/16", "10.2.0.0/16", *context)]["installed"]
        assert member1[("10.2.0.0/16", "10.1.0.0/16", *context)]["installed"]
        assert not member1[("10.1.1.1/32", "239.1.1.1/32", *context)]["installed"]

    # member2: p2 is not installed where deny2 matches it first (the spec's statement).
    member2 = _dynamic(sockets["member2"])
    p2 = member2[("10.2.0.0/16", "10.1.0.0/16", "untrust", "trust")]
    assert not p2["installed"] and p2["reason"] == "shadowed by policy deny2"

    # Both members hold exactly the keys of p1 and p2; p3's key was discarded.
    server_sas = show_json(sockets["server"], "security", "group-vpn", "server", "ipsec",
                       "security-associations")["groups"][0]["security-associations"]  # fmt: skip
    spi_of = {sa["policy"]: sa["spi"] for sa in server_sas}
    for name in ("member1", "member2"):
        installed = show_json(sockets[name], "security", "group-vpn", "member", "ipsec",
                          "security-associations")["security-associations"]  # fmt: skip
        assert sorted(sa["spi"] for sa in installed) == sorted([spi_of["p1"], spi_of["p2"]])
        ike = show_json(sockets[name], "security", "group-vpn", "member", "ike",
                    "security-associations")  # fmt: skip
        [registration] = ike["registrations"]
        assert registration["state"] == "registered" and registration["group-id"] == 1
        assert ike["security-associations"][0]["remote-address"] == "127.0.0.20"
    for daemon in daemons.values():
        assert "Traceback" not in daemon.log_text()
        assert "$ecret-Key 1" not in daemon.log_text()


def test_clear_makes_a_member_register_again(spec_network):
    sockets, daemons = spec_network
    before = daemons["member1"].log_offset()
    assert clear_member_sas(sockets["member1"]).stdout == ""
    daemons["member1"].wait_for_line(r"group SAs installed: vpn=gvpn1", timeout=30, since=before)
    assert "group SAs cleared by operator" in daemons["member1"].log_text()[before:]


def _start(tmp_path: Path, port: int, extra: dict[str, str]) -> dict[str, DaemonProcess]:
    daemons: dict[str, DaemonProcess] = {}
    for name in ("server", "member1", "member2"):
        conf = loopback_config(f"{name}.conf", tmp_path / f"{name}.conf")
        conf.write_text(conf.read_text() + extra.get(name, ""))
        role = "server" if name == "server" else "member"
        daemon = DaemonProcess(
            groupvpn_argv(role, conf, port=port), tmp_path / f"{name}.log", name=name
        ).start()
        daemons[name] = daemon
        daemon.wait_for_line("key server running" if role == "server" else "member running", 20)
    return daemons


def test_two_groups_one_member_in_both_and_refusals_leave_no_record(tmp_path: Path):
    """Group g2 (id 2) lists only member1.  member1 joins g1 and g2; member2 asks for g2
    (not listed) and for group-id 99 (not configured): both refused, nothing recorded."""
    server_g2 = "\n".join(
        f"set security group-vpn server group g2 {line}"
        for line in (
            "group-id 2", "ike-gateway gw-member1", "server-address 127.0.0.20",
            "ipsec-sa sa2 proposal group-prop",
            "ipsec-sa sa2 match-policy q1 source 10.9.0.0/16",
            "ipsec-sa sa2 match-policy q1 destination 10.8.0.0/16",
        )
    ) + "\n"  # fmt: skip
    member1_vpn2 = (
        "set security group-vpn member ipsec vpn gvpn2 ike-gateway gw1\n"
        "set security group-vpn member ipsec vpn gvpn2 group 2\n"
    )
    member2_bad = (
        "set security group-vpn member ipsec vpn gvpn2 ike-gateway gw1\n"
        "set security group-vpn member ipsec vpn gvpn2 group 2\n"
        "set security group-vpn member ipsec vpn gvpn99 ike-gateway gw1\n"
        "set security group-vpn member ipsec vpn gvpn99 group 99\n"
    )
    daemons = _start(
        tmp_path, free_port(),
        {"server": server_g2, "member1": member1_vpn2, "member2": member2_bad},
    )  # fmt: skip
    try:
        daemons["member1"].wait_for_line(r"registered: vpn=gvpn2 group-id=2", timeout=30)
        daemons["server"].wait_for_line(r"group-id 99 is not configured", timeout=30)
        daemons["server"].wait_for_line(
            r"IKE gateway gw-member2 is not an ike-gateway of group g2", timeout=30
        )
        sockets = {name: tmp_path / f"{name}.sock" for name in daemons}
        view = show_json(sockets["server"], "security", "group-vpn", "server", "registered-members")
        members = {g["group"]: sorted(m["address"] for m in g["members"]) for g in view["groups"]}
        assert members["g2"] == ["127.0.0.11"]
        assert "127.0.0.12" not in members["g2"]
        ike = show_json(sockets["member2"], "security", "group-vpn", "member", "ike",
                    "security-associations")  # fmt: skip
        state = {r["vpn"]: r for r in ike["registrations"]}
        for vpn in ("gvpn2", "gvpn99"):
            assert state[vpn]["state"] in ("waiting to retry", "registering", "connecting")
            assert state[vpn]["failures"] >= 1
            assert state[vpn]["last-error"] == "key server refused: INVALID-ID-INFORMATION"
        assert state["gvpn1"]["state"] == "registered"
        installed = show_json(sockets["member2"], "security", "group-vpn", "member", "ipsec",
                          "security-associations")["security-associations"]  # fmt: skip
        assert {sa["vpn"] for sa in installed} == {"gvpn1"}  # no key from a refused group
    finally:
        for daemon in daemons.values():
            daemon.stop()


def test_a_tampered_hash_over_udp_is_refused_and_leaves_no_record(tmp_path: Path):
    """A member that authenticates properly but sends a GROUPKEY-PULL whose HASH(1) is
    wrong: the key server refuses it with a reason and records nobody."""
    from ipaddress import IPv4Address

    from groupvpn.gdoi.pull import PullInitiator, group_id_payload
    from groupvpn.ike.endpoint import IkeEndpoint
    from groupvpn.ike.events import NotifyReceived
    from groupvpn.wire.dialect import V1
    from groupvpn.wire.payloads import NoncePayload
    from tests.ikepair import peer, proposal

    port = free_port()
    conf = loopback_config("server.conf", tmp_path / "server.conf")
    server = DaemonProcess(groupvpn_argv("server", conf, port=port), tmp_path / "server.log")
    server.start()
    try:
        server.wait_for_line("key server running", timeout=20)
        gateway = peer("127.0.0.20", gateway="gw1", psk=b"$ecret-Key 1", proposals=(proposal(),))
        assert gateway.addresses == (IPv4Address("127.0.0.20"),)
        member = IkeEndpoint("127.0.0.11", [gateway], peer_port=port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.11", port))
            sock.settimeout(0.5)

            def exchange(rounds: int = 20) -> list[object]:
                events: list[object] = []
                for _ in range(rounds):
                    for data, addr in member.datagrams_to_send():
                        sock.sendto(data, addr)
                    try:
                        data, addr = sock.recvfrom(65535)
                    except TimeoutError:
                        break
                    member.receive_datagram(data, (addr[0], addr[1]), 0.0)
                    while (event := member.next_event()) is not None:
                        events.append(event)
                return events

            member.initiate("gw1", 0.0)
            exchange()
            [info] = member.established()
            sa = member.find_sa(info.initiator_cookie, info.responder_cookie)
            assert sa is not None
            pull = PullInitiator(sa, 1, message_id=0x0BADCAFE, nonce=b"n" * 16, dialect=V1)
            forged = pull._protect(  # a well-encrypted message with a wrong HASH(1)
                lambda after: bytes(20), [NoncePayload(b"n" * 16), group_id_payload(1)]
            )
            member.send(sa, forged)
            events = exchange(rounds=3)
        refused = server.wait_for_line(r"registration refused: .*HASH\(1\) does not verify", 10)
        assert "notify=INVALID-HASH-INFORMATION" in refused.string
        assert any(isinstance(e, NotifyReceived) and e.protected for e in events)
        view = show_json(tmp_path / "server.sock", "security", "group-vpn", "server",
                     "registered-members")  # fmt: skip
        assert view["groups"][0]["members"] == []
        assert "Traceback" not in server.log_text()
    finally:
        server.stop()
