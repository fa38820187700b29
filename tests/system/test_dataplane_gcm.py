"""AES-GCM end to end: the data-plane topology with a GCM proposal in the v2 dialect.

The lab's builder, daemons and traffic tools (``groupvpn.lab``) run a
:class:`~groupvpn.lab.layout.LabTopology` of its own: a key server (172.17.0.1 behind
the core's 100.65.0.0/24 link) and two sites, member1 and member2 with WAN links in
100.65.1-2.0/24 protecting 10.21.0.0/16 and 10.22.0.0/16, one host each, host1
sending to 239.6.6.6.  The group's proposal is ``encryption-algorithm aes-128-gcm``
without an authentication algorithm, and every daemon runs ``--dialect v2``, so each
member registers with a GAP SENDER_ID_REQUEST and gets a sender ID (RFC 6054, RFC
6407).  Every namespace is ``gvgc<pid>-<node>``.

The checks: unicast both ways and multicast delivered; the core sees only ESP that
keeps the hosts' addresses; both sides show the keys as ``aes-128-gcm`` with no
authentication algorithm; the key server gave the two members different sender IDs
and each member shows its own; and in the ESP packets captured at the core, each
member's IVs start with its sender ID (24 bits) followed by a counter that never
repeats, the two members' IV sets disjoint, lengths as AES-GCM's 8-octet IV and
16-octet ICV make them.  Nothing is left afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from groupvpn.lab import daemons, demo, topology
from groupvpn.lab.layout import LabTopology, Site
from groupvpn.lab.topology import Lab
from tests.interop.netns import skip_unless_netns
from tests.system.dataplane_lab import host_view, lines_of, wait_ready
from tests.system.spec_network import member_keys, show_json

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

PREFIX = f"gvgc{os.getpid()}"
TOPOLOGY = LabTopology(
    sites=tuple(
        Site(f"member{n}", f"host{n}", wan=f"100.65.{n}.1/24", core=f"100.65.{n}.254/24",
             lan=f"10.2{n}.0.1/16", host_address=f"10.2{n}.1.1")
        for n in (1, 2)
    ),
    server_address="172.17.0.1",
    server_wan="100.65.0.1/24",
    server_core="100.65.0.254/24",
    multicast_group="239.6.6.6",
    scope="10.16.0.0/12",
    encryption_algorithm="aes-128-gcm",
    authentication_algorithm=None,
    dialect="v2",
)  # fmt: skip
HOST = TOPOLOGY.host_addresses
PINGS = 5
GCM_IV, GCM_ICV = 8, 16


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    skip_unless_netns()
    the_lab = Lab(PREFIX, TOPOLOGY)
    assert the_lab.present_namespaces() == [], "a lab of this test's name is already there"
    before = host_view(TOPOLOGY, PREFIX)
    try:
        topology.build(the_lab)
        daemons.start_all(the_lab, say=lambda line: None)
        view = demo.dataplane(the_lab, timeout=15)
        assert all(v["tun"] and v["route"] in v["tun"] for v in view.values()), view
        yield the_lab
    finally:
        topology.teardown(the_lab)
    assert the_lab.present_namespaces() == []
    assert not the_lab.state_dir.exists()
    assert host_view(TOPOLOGY, PREFIX) == before


def sniff(lab: Lab, member: str, count: int) -> subprocess.Popen[str]:
    """ESP packets on the core's link to ``member`` (both ways), as JSON lines."""
    process = subprocess.Popen(
        topology.in_ns(lab.ns("core"), [
            sys.executable, "-m", "tests.system.dataplane_tool", "capture",
            "--iface", f"to-{member}", "--protocol", "50", "--count", str(count),
            "--timeout", "25",
        ]),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_ready(process)
    return process


@pytest.fixture(scope="module")
def traffic(lab: Lab) -> dict[str, Any]:
    """The demo's traffic (pings both ways, host1 to the group), with the ESP each member
    sent captured raw at the core."""
    # From member1: 5 requests and 5 replies to host2, 5 multicast; from member2: 10.
    # Each core link also carries what goes to its member: 10 to member1, 15 to member2.
    sent_by = {"member1": 3 * PINGS, "member2": 2 * PINGS}
    sniffers = {member: sniff(lab, member, 5 * PINGS) for member in TOPOLOGY.members}
    try:
        result = demo.run_traffic(lab, count=PINGS, say=lambda line: None)
    finally:
        raw = {member: lines_of(process, timeout=30) for member, process in sniffers.items()}
    result["esp-from"] = {
        member: [
            bytes.fromhex(packet["hex"])
            for packet in map(json.loads, (line for line in lines if line.startswith("{")))
            if not packet["outgoing"]  # what the member sent towards the core
        ]
        for member, lines in raw.items()
    }
    for member, packets in result["esp-from"].items():
        assert len(packets) == sent_by[member], (member, len(packets))
    return result


def sender_ids(lab: Lab) -> dict[str, int]:
    """The sender ID the key server gave each member, by lab name."""
    members = daemons.registered_members(lab)
    return {name: record["sender-id"] for name, record in members.items()}


# -- traffic -------------------------------------------------------------------------------------


def test_unicast_is_delivered_both_ways(traffic: dict[str, Any]) -> None:
    assert sorted(traffic["ping"]) == ["host1->host2", "host2->host1"]
    for direction, ping in traffic["ping"].items():
        assert ping["received"] == ping["sent"] == PINGS, (direction, ping)


def test_multicast_from_host1_reaches_host2(traffic: dict[str, Any]) -> None:
    received = demo.multicast_received(traffic, TOPOLOGY)
    assert set(received) == {"host2"}
    assert received["host2"]["received"] == PINGS
    assert received["host2"]["sources"] == {HOST["host1"]: PINGS}


def test_the_core_sees_only_esp_between_the_hosts_own_addresses(traffic: dict[str, Any]) -> None:
    core = traffic["captures"]["core"]
    lans = IPv4Network(TOPOLOGY.scope)
    from_lans = [f for f in core if lans.overlaps(IPv4Network(f["source"]))
                 or lans.overlaps(IPv4Network(f["destination"]))]  # fmt: skip
    assert from_lans and all(f["protocol"] == "esp" for f in from_lans), from_lans
    hosts = [*HOST.values(), TOPOLOGY.multicast_group]
    assert all(f["source"] in hosts and f["destination"] in hosts for f in from_lans), from_lans
    assert traffic["core"]["clear"] == {}
    assert traffic["ok"], traffic["checks"]


# -- the keys and the sender IDs -----------------------------------------------------------------


def test_both_sides_show_aes_gcm_without_an_authentication_algorithm(lab: Lab) -> None:
    view = show_json(lab.control("server"), "security", "group-vpn", "server", "ipsec",
                     "security-associations")  # fmt: skip
    server_sas = view["groups"][0]["security-associations"]
    assert len(server_sas) == 3  # member1 -> member2, member2 -> member1, the multicast flow
    assert {(sa["encryption"], sa["authentication"]) for sa in server_sas} == {
        ("aes-128-gcm", None)
    }
    for member in TOPOLOGY.members:
        keys = member_keys(lab.control(member))
        assert keys and {(k["encryption"], k["authentication"]) for k in keys} == {
            ("aes-128-gcm", None)
        }, (member, keys)


def test_the_members_hold_different_sender_ids_from_the_key_server(lab: Lab) -> None:
    given = sender_ids(lab)
    assert sorted(given) == ["member1", "member2"]
    assert len(set(given.values())) == 2 and all(0 <= s < 1 << 24 for s in given.values())
    for member, sid in given.items():
        held = {k["sender-id"] for k in member_keys(lab.control(member))}
        assert held == {sid}, (member, held)


def test_each_members_esp_carries_its_sender_id_then_a_counter(
    lab: Lab, traffic: dict[str, Any]
) -> None:
    given = sender_ids(lab)
    spis = {sa["spi"] for sa in show_json(
        lab.control("server"), "security", "group-vpn", "server", "ipsec",
        "security-associations")["groups"][0]["security-associations"]}  # fmt: skip
    ivs: dict[str, list[bytes]] = {}
    for member, packets in traffic["esp-from"].items():
        source = IPv4Address(HOST["host1" if member == "member1" else "host2"])
        for packet in packets:
            header = (packet[0] & 0x0F) * 4
            # Address preservation: the outer source is the member's host, not its WAN.
            assert packet[9] == 50 and packet[12:16] == source.packed
            assert packet[header : header + 4].hex() in spis
            # ESP header, 8-octet IV, ciphertext of whole 4-octet units, 16-octet tag.
            body = len(packet) - header - 8 - GCM_IV - GCM_ICV
            assert body > 0 and body % 4 == 0, len(packet)
        ivs[member] = [p[(p[0] & 0x0F) * 4 + 8 :][:GCM_IV] for p in packets]
    for member, member_ivs in ivs.items():
        sid = given[member].to_bytes(3, "big")
        assert {iv[:3] for iv in member_ivs} == {sid}, (member, given[member])
        # The counter (the other 40 bits) never repeats under one key.
        by_key: dict[bytes, list[int]] = {}
        for packet in traffic["esp-from"][member]:
            start = (packet[0] & 0x0F) * 4
            iv = packet[start + 8 : start + 16]
            by_key.setdefault(packet[start : start + 4], []).append(int.from_bytes(iv[3:], "big"))
        for counters in by_key.values():
            assert len(set(counters)) == len(counters), counters
    assert not set(ivs["member1"]) & set(ivs["member2"])
    for member, statistics in traffic["member-statistics"].items():
        refused = statistics["engine"]["refused"]
        assert refused["no-sender-id"] == refused["nonce-exhausted"] == 0, (member, refused)
