"""Replays inside the anti-replay window: exact copies of accepted packets are dropped.

See src/groupvpn/dataplane/replay.py for why a group SA needs this on top of the time
window, and what its bounded memory does and does not catch.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP

from groupvpn.dataplane.drops import DropReason
from groupvpn.dataplane.engine import DataPlane
from groupvpn.dataplane.replay import TAIL_LENGTH, RecentPackets
from tests.unit.test_dataplane_engine import (
    A_ADDRESS,
    B_ADDRESS,
    NOW,
    WIDE,
    group_sa,
    install,
    only_tun,
    only_wan,
    udp,
)


def test_the_memory_holds_the_last_packets_and_forgets_the_oldest():
    recent = RecentPackets(capacity=3)
    packets = [bytes([n]) * 40 for n in range(5)]
    assert [recent.replayed(p) for p in packets[:3]] == [False] * 3
    assert all(recent.replayed(p) for p in packets[:3])  # copies, none remembered twice
    assert len(recent) == 3
    assert not recent.replayed(packets[3])  # the oldest (packets[0]) goes
    assert len(recent) == 3
    assert not recent.replayed(packets[0])  # forgotten, so taken as new again
    # Only the last TAIL_LENGTH octets count: the outer header may change on the way.
    assert recent.replayed(b"other header" + packets[0][-TAIL_LENGTH:])
    with pytest.raises(ValueError):
        RecentPackets(capacity=0)


def test_an_esp_copy_is_dropped_but_a_forgery_does_not_block_the_real_packet():
    key = group_sa(WIDE, 0x200, window=100)
    a, b = DataPlane(A_ADDRESS, decrement_ttl=False), DataPlane(B_ADDRESS)
    install(a, [key])
    install(b, [key])
    inner = udp("10.1.1.1", "10.2.2.2")
    esp = only_wan(a.outbound(inner, NOW))
    # A forger sends the real packet's tail on a corrupted body first: its ICV fails,
    # so it is not remembered and the real packet still gets through.
    forged = esp[:30] + bytes([esp[30] ^ 1]) + esp[31:]
    assert b.inbound(forged, NOW) == []
    assert b.counters.drops.dropped[DropReason.BAD_ICV] == 1
    assert only_tun(b.inbound(esp, NOW)) == inner
    # The same packet again, and again with a changed outer TTL: both copies.
    hop = IP(esp)
    hop.ttl -= 1
    del hop.chksum  # a router's forwarding: new TTL, new header checksum
    retimed = bytes(hop)
    assert retimed != esp
    assert b.inbound(esp, NOW + 1) == [] and b.inbound(retimed, NOW + 1) == []
    assert b.counters.drops.dropped[DropReason.REPLAYED] == 2
    # The same inner packet sent again is a new ESP packet (new IV): delivered.
    assert only_tun(b.inbound(only_wan(a.outbound(inner, NOW + 2)), NOW + 2)) == inner
    assert b.counters.packets_in == 2
