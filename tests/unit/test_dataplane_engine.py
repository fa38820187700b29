"""The sans-IO data-plane engine: policy lookup, ESP between members, MTU, TTL, rollover.

Two :class:`DataPlane` instances stand for two members: what member A's ``outbound``
sends to the WAN is fed to member B's ``inbound``.  Inner packets are built with
scapy, which also decrypts one of A's ESP packets on its own code path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert, IPOption_RR
from scapy.layers.ipsec import ESP, SecurityAssociation

from groupvpn.dataplane.drops import DropReason, Refusal
from groupvpn.dataplane.engine import DataPlane, DataPlaneCounters, Output, ToTun, ToWan
from groupvpn.dataplane.esp import ipv4_checksum
from groupvpn.dataplane.sadb import RETIRED_KEYS, max_inner_length, suite_of
from groupvpn.gdoi.sender_ids import SID_BITS, SenderId
from groupvpn.member.keyring import PolicySelectors
from groupvpn.member.keys import GroupSa
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY

A_ADDRESS = IPv4Address("192.0.2.1")
B_ADDRESS = IPv4Address("192.0.2.2")
GROUP_TIME = 1_790_000_000.0
NOW = 1000.0


def selectors(
    source: str,
    destination: str,
    protocol: int = 0,
    source_port: int = 0,
    destination_port: int = 0,
) -> PolicySelectors:
    return PolicySelectors(
        IPv4Network(source), IPv4Network(destination), source_port, destination_port, protocol
    )


def group_sa(
    policy: PolicySelectors,
    spi: int,
    cipher: str = "aes-128-cbc",
    *,
    window: int | None = 100,
    vpn: str = "vpn1",
    seed: bytes | None = None,
) -> GroupSa:
    """A key for ``policy``; the same ``spi`` and ``seed`` give the same key material."""
    material = seed if seed is not None else spi.to_bytes(4, "big") * 16
    if cipher == "aes-128-gcm":  # no integrity algorithm of its own; key and salt
        esp_cipher, integrity, key, auth = ESP_CIPHERS[cipher], None, material[:20], b""
    else:
        esp_cipher, integrity = ESP_CIPHERS[cipher], ESP_INTEGRITY["hmac-sha1-96"]
        key, auth = material[: esp_cipher.key_length], material[-20:]
    return GroupSa(
        vpn=vpn,
        group_id=1,
        spi=spi.to_bytes(4, "big"),
        source=policy.source,
        destination=policy.destination,
        source_port=policy.source_port,
        destination_port=policy.destination_port,
        protocol=policy.protocol,
        cipher=esp_cipher,
        integrity=integrity,
        expires_at=NOW + 3600,
        encryption_key=key,
        integrity_key=auth,
        anti_replay_window=window,
    )


def owned(plane: DataPlane, *keys: GroupSa) -> list[GroupSa]:
    """``keys`` as ``plane``'s member holds them: an AES-GCM key without a sender ID gets
    the member's own, as the member core gives it one from its registration (here the
    last 24 bits of its address, so two members never share one)."""
    own = SenderId(int(plane.local_address) & 0xFFFFFF, SID_BITS)
    return [
        replace(sa, sender_id=own) if sa.cipher.counter_mode and sa.sender_id is None else sa
        for sa in keys
    ]


def clock(offset: float = 0.0) -> Callable[[float], float | None]:
    """A group clock that reads GROUP_TIME + offset at local time NOW."""
    return lambda now: GROUP_TIME + offset + (now - NOW)


def install(
    plane: DataPlane,
    keys: Iterable[GroupSa],
    *,
    vpn: str = "vpn1",
    encrypt: bool = True,
    group_time: Callable[[float], float | None] | None = None,
    order: list[PolicySelectors] | None = None,
) -> None:
    """Install ``keys`` for ``vpn``; each policy encrypts with its last key listed.

    An AES-GCM key without a sender ID gets this member's own (:func:`owned`).
    """
    keys = owned(plane, *keys)
    policies = order if order is not None else list(dict.fromkeys(map(PolicySelectors.of, keys)))
    encrypting = {PolicySelectors.of(sa): sa for sa in keys} if encrypt else {}
    plane.install_keys(vpn, 1, policies, encrypting, keys, group_time or clock())


def udp(source: str, destination: str, size: int = 100, **fields: Any) -> bytes:
    sport = fields.pop("sport", 5000)
    dport = fields.pop("dport", 6000)
    packet = IP(src=source, dst=destination, **fields) / UDP(sport=sport, dport=dport)
    return bytes(packet / os.urandom(max(0, size - len(packet))))


def only_wan(outputs: list[Output]) -> bytes:
    assert len(outputs) == 1 and isinstance(outputs[0], ToWan), outputs
    return outputs[0].packet


def only_tun(outputs: list[Output]) -> bytes:
    assert len(outputs) == 1 and isinstance(outputs[0], ToTun), outputs
    return outputs[0].packet


def spi_of(esp: bytes) -> bytes:
    return esp[20:24]


def forwarded(inner: bytes) -> bytes:
    """``inner`` as the engine forwards it: TTL one lower, checksum updated."""
    header = bytearray(inner[: (inner[0] & 0x0F) * 4])
    header[8] -= 1
    header[10:12] = b"\0\0"
    header[10:12] = ipv4_checksum(bytes(header))
    return bytes(header) + inner[len(header) :]


def checksum_ok(data: bytes) -> bool:
    """The RFC 1071 sum over ``data`` (with its checksum in place) is zero."""
    padded = data + b"\0" if len(data) % 2 else data
    return int.from_bytes(padded, "big") % 0xFFFF == 0


WIDE = selectors("10.0.0.0/8", "10.0.0.0/8")
ONE_TO_TWO = selectors("10.1.0.0/16", "10.2.0.0/16")
MULTICAST = selectors("10.1.0.0/16", "239.1.1.0/24")


def members(keys: list[GroupSa], *, mtu: int = 1500) -> tuple[DataPlane, DataPlane]:
    a = DataPlane(A_ADDRESS, mtu=mtu)
    b = DataPlane(B_ADDRESS, mtu=mtu)
    install(a, keys)
    install(b, keys)
    return a, b


# --- policy lookup --------------------------------------------------------------------


def test_first_matching_policy_wins_within_a_vpn_in_the_given_order() -> None:
    narrow, wide = selectors("10.1.1.0/24", "10.2.0.0/16"), ONE_TO_TWO
    keys = [group_sa(narrow, 0x100), group_sa(wide, 0x200)]
    plane = DataPlane(A_ADDRESS)
    install(plane, keys, order=[narrow, wide])
    assert spi_of(only_wan(plane.outbound(udp("10.1.1.1", "10.2.2.2"), NOW))) == keys[0].spi
    assert spi_of(only_wan(plane.outbound(udp("10.1.9.1", "10.2.2.2"), NOW))) == keys[1].spi
    install(plane, keys, order=[wide, narrow])
    assert spi_of(only_wan(plane.outbound(udp("10.1.1.1", "10.2.2.2"), NOW))) == keys[1].spi


def test_first_matching_policy_wins_across_vpns_in_install_order() -> None:
    plane = DataPlane(A_ADDRESS)
    first = group_sa(ONE_TO_TWO, 0x100, vpn="first")
    second = group_sa(selectors("10.1.1.0/24", "10.2.2.0/24"), 0x200, vpn="second")
    install(plane, [first], vpn="first")
    install(plane, [second], vpn="second")
    packet = udp("10.1.1.1", "10.2.2.2")
    assert spi_of(only_wan(plane.outbound(packet, NOW))) == first.spi
    # Installing "first" again keeps its place in front.
    install(plane, [first], vpn="first")
    assert spi_of(only_wan(plane.outbound(packet, NOW))) == first.spi
    plane.remove_vpn("first")
    assert spi_of(only_wan(plane.outbound(packet, NOW))) == second.spi
    plane.remove_vpn("second")
    assert only_wan(plane.outbound(packet, NOW)) == packet


def test_protocol_and_port_selectors() -> None:
    dns = selectors("10.1.0.0/16", "10.2.0.0/16", protocol=17, destination_port=53)
    from_web = selectors("10.1.0.0/16", "10.2.0.0/16", protocol=6, source_port=80)
    keys = [group_sa(dns, 0x53), group_sa(from_web, 0x80)]
    plane = DataPlane(A_ADDRESS)
    install(plane, keys)

    def sent(packet: bytes) -> bytes | None:
        out = only_wan(plane.outbound(packet, NOW))
        return None if out == packet else spi_of(out)

    assert sent(udp("10.1.1.1", "10.2.2.2", dport=53)) == keys[0].spi
    assert sent(udp("10.1.1.1", "10.2.2.2", dport=54)) is None
    assert sent(udp("10.1.1.1", "10.3.2.2", dport=53)) is None
    tcp53 = bytes(IP(src="10.1.1.1", dst="10.2.2.2") / TCP(sport=1000, dport=53))
    assert sent(tcp53) is None
    web = bytes(IP(src="10.1.1.1", dst="10.2.2.2") / TCP(sport=80, dport=40000))
    assert sent(web) == keys[1].spi
    # ICMP has no ports: a port selector does not match it.
    ping = bytes(IP(src="10.1.1.1", dst="10.2.2.2") / ICMP())
    assert sent(ping) is None
    # A later fragment of UDP has no readable ports: it is encrypted, never sent clear.
    later_fragment = bytes(IP(src="10.1.1.1", dst="10.2.2.2", proto=17, frag=100) / (b"x" * 40))
    assert sent(later_fragment) == keys[0].spi


def test_a_packet_matching_no_policy_goes_out_unchanged() -> None:
    plane = DataPlane(A_ADDRESS)
    install(plane, [group_sa(ONE_TO_TWO, 0x100)])
    packet = udp("10.1.1.1", "10.3.3.3", ttl=1)
    assert only_wan(plane.outbound(packet, NOW)) == packet
    assert plane.counters.clear_packets == 1 and plane.counters.clear_bytes == len(packet)
    assert plane.counters.packets_out == 0
    # With no keys at all, everything is clear.
    assert only_wan(DataPlane(A_ADDRESS).outbound(packet, NOW)) == packet


def test_a_packet_matching_a_policy_without_a_key_is_dropped() -> None:
    plane = DataPlane(A_ADDRESS)
    install(plane, [group_sa(ONE_TO_TWO, 0x100)], encrypt=False)
    assert plane.outbound(udp("10.1.1.1", "10.2.2.2"), NOW) == []
    assert plane.counters.drops.refused[Refusal.NO_KEY] == 1
    assert plane.counters.clear_packets == 0
    # Its destination is still routed into the TUN, so it cannot leak around it.
    assert plane.protected_destinations() == [IPv4Network("10.2.0.0/16")]


def test_protected_destinations_and_overhead() -> None:
    plane = DataPlane(A_ADDRESS)
    # No keys yet: the worst case of every suite (AES-CBC with HMAC-SHA-256-128).
    assert plane.overhead() == 20 + 8 + 16 + 16 + 2 + 15 + 8
    install(plane, [group_sa(ONE_TO_TWO, 0x100, "aes-128-gcm")], vpn="a")
    assert plane.overhead() == 20 + 8 + 8 + 16 + 2 + 3 + 8
    install(plane, [group_sa(MULTICAST, 0x200), group_sa(WIDE, 0x300)], vpn="b")
    assert plane.overhead() == 20 + 8 + 16 + 12 + 2 + 15 + 8
    assert plane.protected_destinations() == [
        IPv4Network("10.2.0.0/16"),
        IPv4Network("239.1.1.0/24"),
        IPv4Network("10.0.0.0/8"),
    ]


def test_unusable_keys_are_refused_and_change_nothing() -> None:
    plane = DataPlane(A_ADDRESS)
    good = group_sa(ONE_TO_TWO, 0x100)
    install(plane, [good])
    bad = group_sa(WIDE, 0x200, "aes-128-gcm")
    bad = GroupSa(**{**{f: getattr(bad, f) for f in GroupSa.__slots__}, "encryption_key": b"x"})
    with pytest.raises(ValueError, match="keying"):
        install(plane, [bad], vpn="vpn2")
    # An encrypting key must be its own policy's.
    with pytest.raises(ValueError, match="is for policy"):
        plane.install_keys("vpn2", 1, [WIDE], {WIDE: good}, [good], clock())
    assert [sa.vpn for sa in plane.installed()] == ["vpn1"]
    assert spi_of(only_wan(plane.outbound(udp("10.1.1.1", "10.2.2.2"), NOW))) == good.spi
    with pytest.raises(ValueError, match="MTU"):
        DataPlane(A_ADDRESS, mtu=67)


# --- between two members --------------------------------------------------------------


@pytest.mark.parametrize("cipher", ["aes-128-cbc", "aes-128-gcm", "3des-cbc"])
def test_unicast_round_trip_between_two_members(cipher: str) -> None:
    a, b = members([group_sa(WIDE, 0x100, cipher)])
    for size in (20, 64, 1400):
        inner = (
            udp("10.1.1.1", "10.2.2.2", size, ttl=64, tos=0x28)
            if size > 20
            else bytes(IP(src="10.1.1.1", dst="10.2.2.2", proto=254))
        )
        esp = only_wan(a.outbound(inner, NOW))
        outer = IP(esp)
        assert outer.proto == 50 and outer.src == "10.1.1.1" and outer.dst == "10.2.2.2"
        assert outer.ttl == 63 and outer.tos == IP(inner).tos
        assert only_tun(b.inbound(esp, NOW + 0.01)) == forwarded(inner)
    # And back.
    reply = udp("10.2.2.2", "10.1.1.1")
    assert only_tun(a.inbound(only_wan(b.outbound(reply, NOW)), NOW)) == forwarded(reply)
    assert a.counters.packets_out == 3 and b.counters.packets_in == 3
    assert b.counters.bytes_in == a.counters.bytes_out
    assert a.counters.drops.total_dropped == b.counters.drops.total_dropped == 0


def test_multicast_is_encapsulated_to_the_group_address_and_every_member_decrypts() -> None:
    key = group_sa(MULTICAST, 0x100, "aes-128-gcm")
    a, b = members([key])
    c = DataPlane(IPv4Address("192.0.2.3"))
    install(c, [key])
    inner = udp("10.1.1.1", "239.1.1.1", 300, ttl=16)
    esp = only_wan(a.outbound(inner, NOW))
    assert IP(esp).dst == "239.1.1.1" and IP(esp).src == "10.1.1.1" and IP(esp).proto == 50
    assert only_tun(b.inbound(esp, NOW)) == forwarded(inner)
    assert only_tun(c.inbound(esp, NOW)) == forwarded(inner)


def test_scapy_decrypts_what_outbound_sends() -> None:
    """An independent ESP implementation reads the engine's output (no-anti-replay)."""
    for cipher, scapy_cipher, scapy_auth in (
        ("aes-128-gcm", "AES-GCM", None),
        ("aes-128-cbc", "AES-CBC", "HMAC-SHA1-96"),
    ):
        key = group_sa(WIDE, 0xC0FFEE, cipher, window=None, seed=os.urandom(64))
        plane = DataPlane(A_ADDRESS)
        install(plane, [key])
        inner = udp("10.1.1.1", "10.2.2.2", 500)
        esp = only_wan(plane.outbound(inner, NOW))
        theirs = SecurityAssociation(  # type: ignore[no-untyped-call]
            ESP,
            spi=0xC0FFEE,
            crypt_algo=scapy_cipher,
            crypt_key=key.encryption_key,
            auth_algo=scapy_auth,
            auth_key=key.integrity_key or None,
            tunnel_header=IP(src="10.1.1.1", dst="10.2.2.2"),
        )
        assert bytes(theirs.decrypt(IP(esp))) == forwarded(inner)  # type: ignore[no-untyped-call]


def test_the_inner_packet_must_match_the_sas_own_selectors() -> None:
    # Member A (or anyone holding the key) sends under it what B's policy for the
    # key does not cover; B drops it after decrypting.
    seed = os.urandom(64)
    wide = group_sa(WIDE, 0x100, seed=seed)
    narrow = group_sa(selectors("10.1.0.0/16", "10.2.0.0/16", 17, 0, 53), 0x100, seed=seed)
    a, b = DataPlane(A_ADDRESS), DataPlane(B_ADDRESS)
    install(a, [wide])
    install(b, [narrow])
    for inner in (
        udp("10.3.1.1", "10.2.2.2", dport=53),  # source outside
        udp("10.1.1.1", "10.9.2.2", dport=53),  # destination outside
        udp("10.1.1.1", "10.2.2.2", dport=54),  # port outside
        bytes(IP(src="10.1.1.1", dst="10.2.2.2") / TCP(dport=53)),  # protocol outside
    ):
        assert b.inbound(only_wan(a.outbound(inner, NOW)), NOW) == []
    assert b.counters.drops.dropped[DropReason.POLICY_MISMATCH] == 4
    good = udp("10.1.1.1", "10.2.2.2", dport=53)
    assert only_tun(b.inbound(only_wan(a.outbound(good, NOW)), NOW)) == forwarded(good)
    assert b.counters.packets_in == 1


def test_an_unknown_spi_is_dropped() -> None:
    a, _ = members([group_sa(WIDE, 0x100)])
    b = DataPlane(B_ADDRESS)
    install(b, [group_sa(WIDE, 0x200)])
    esp = only_wan(a.outbound(udp("10.1.1.1", "10.2.2.2"), NOW))
    assert b.inbound(esp, NOW) == []
    assert b.counters.drops.dropped[DropReason.BAD_SPI] == 1
    assert DataPlane(B_ADDRESS).inbound(esp, NOW) == []


def test_odd_packets_into_inbound_are_dropped_by_reason() -> None:
    plane = DataPlane(B_ADDRESS)
    install(plane, [group_sa(WIDE, 0x100)])
    dropped = plane.counters.drops.dropped
    assert plane.inbound(b"", NOW) == [] and dropped[DropReason.TRUNCATED] == 1
    assert plane.inbound(udp("10.1.1.1", "10.2.2.2"), NOW) == []
    assert dropped[DropReason.BAD_OUTER_HEADER] == 1
    esp_header = bytes(IP(src="10.1.1.1", dst="10.2.2.2", proto=50))
    assert plane.inbound(esp_header + b"\0\0", NOW) == [] and dropped[DropReason.TRUNCATED] == 2
    short_ihl = bytes([0x44]) + esp_header[1:] + bytes(0x100.to_bytes(4, "big"))
    assert plane.inbound(short_ihl, NOW) == [] and dropped[DropReason.BAD_OUTER_HEADER] == 2


def test_the_anti_replay_window_judges_by_each_members_group_clock() -> None:
    key = group_sa(WIDE, 0x100, window=100)
    a = DataPlane(A_ADDRESS)
    install(a, [key])
    inner = udp("10.1.1.1", "10.2.2.2")
    for skew, delivered in ((0.0, True), (99.9, True), (-99.9, True), (100.5, False)):
        b = DataPlane(B_ADDRESS)
        install(b, [key], group_time=clock(skew))
        assert bool(b.inbound(only_wan(a.outbound(inner, NOW)), NOW)) is delivered
    assert b.counters.drops.dropped[DropReason.OUTSIDE_ANTI_REPLAY_WINDOW] == 1
    # A captured packet replayed inside the window is an exact copy: dropped (replay.py);
    # 101 s later (by the receiver's own clock) the window drops it even to a member
    # that never saw the original.
    esp = only_wan(a.outbound(inner, NOW))
    b = DataPlane(B_ADDRESS)
    install(b, [key])
    assert only_tun(b.inbound(esp, NOW + 1))
    assert b.inbound(esp, NOW + 2) == []
    assert b.counters.drops.dropped[DropReason.REPLAYED] == 1 and b.counters.packets_in == 1
    fresh = DataPlane(B_ADDRESS)
    install(fresh, [key])
    assert fresh.inbound(esp, NOW + 101) == []
    assert fresh.counters.drops.dropped[DropReason.OUTSIDE_ANTI_REPLAY_WINDOW] == 1
    # A member that has no group time sends nothing and accepts nothing.
    unsynchronized = DataPlane(B_ADDRESS)
    install(unsynchronized, [key], group_time=lambda now: None)
    assert unsynchronized.inbound(esp, NOW) == []
    assert unsynchronized.outbound(inner, NOW) == []
    assert unsynchronized.counters.drops.dropped[DropReason.NO_GROUP_CLOCK] == 1
    assert unsynchronized.counters.drops.refused[Refusal.NO_GROUP_CLOCK] == 1


def test_no_anti_replay_accepts_any_time() -> None:
    key = group_sa(WIDE, 0x100, window=None)
    a, b = members([key])
    esp = only_wan(a.outbound(udp("10.1.1.1", "10.2.2.2"), NOW))
    install(b, [key], group_time=clock(1e6))
    assert only_tun(b.inbound(esp, NOW + 1e6))


# --- MTU and TTL --------------------------------------------------------------------------


@pytest.mark.parametrize("cipher", ["aes-128-cbc", "aes-128-gcm"])
def test_too_big_with_df_gets_fragmentation_needed_with_the_next_hop_mtu(cipher: str) -> None:
    key = group_sa(WIDE, 0x100, cipher)
    a, _ = members([key], mtu=1400)
    limit = max_inner_length(suite_of(key), a.installed()[0].esp.window, 1400)
    # The largest packet that fits is sent, and its ESP packet fits the MTU exactly or nearly.
    fits = udp("10.1.1.1", "10.2.2.2", limit, flags="DF")
    esp = only_wan(a.outbound(fits, NOW))
    assert 1400 - suite_of(key).alignment < len(esp) <= 1400
    too_big = udp("10.1.1.1", "10.2.2.2", limit + 1, flags="DF")
    icmp = only_tun(a.outbound(too_big, NOW))
    parsed = IP(icmp)
    assert parsed.src == str(A_ADDRESS) and parsed.dst == "10.1.1.1" and parsed.proto == 1
    assert checksum_ok(icmp[:20]) and checksum_ok(icmp[20:])
    assert parsed[ICMP].type == 3 and parsed[ICMP].code == 4
    assert int.from_bytes(icmp[26:28], "big") == limit  # RFC 1191 next-hop MTU
    assert icmp[28:48] == too_big[:20]  # the quoted header, as received
    assert len(icmp) <= 576
    assert a.counters.drops.refused[Refusal.FRAGMENTATION_NEEDED] == 1
    assert a.counters.icmp_errors == 1
    # The overhead the shell subtracts for the TUN MTU is never less than what this costs.
    assert 1400 - a.overhead() <= limit


def test_too_big_with_df_to_a_multicast_group_is_dropped_without_icmp() -> None:
    a, _ = members([group_sa(MULTICAST, 0x100)], mtu=576)
    assert a.outbound(udp("10.1.1.1", "239.1.1.1", 1000, flags="DF"), NOW) == []
    assert a.counters.drops.refused[Refusal.FRAGMENTATION_NEEDED] == 1
    assert a.counters.icmp_errors == 0


def reassemble(fragments: list[bytes]) -> bytes:
    """RFC 791 reassembly of complete fragments (any order) into the original packet."""
    fragments = sorted(fragments, key=lambda f: int.from_bytes(f[6:8], "big") & 0x1FFF)
    first = fragments[0]
    header_length = (first[0] & 0x0F) * 4
    data = bytearray()
    for piece in fragments:
        offset = (int.from_bytes(piece[6:8], "big") & 0x1FFF) * 8
        assert offset == len(data), "a gap or an overlap"
        data += piece[(piece[0] & 0x0F) * 4 :]
    assert not int.from_bytes(fragments[-1][6:8], "big") & 0x2000
    header = bytearray(first[:header_length])
    header[2:4] = (header_length + len(data)).to_bytes(2, "big")
    header[6:8] = b"\0\0"
    header[10:12] = b"\0\0"
    header[10:12] = ipv4_checksum(bytes(header))
    return bytes(header) + bytes(data)


@pytest.mark.parametrize("cipher", ["aes-128-cbc", "aes-128-gcm"])
def test_too_big_without_df_is_fragmented_and_each_fragment_decrypts(cipher: str) -> None:
    a, b = members([group_sa(WIDE, 0x100, cipher)], mtu=576)
    inner = udp("10.1.1.1", "10.2.2.2", 3000, id=777)
    sent = a.outbound(inner, NOW)
    assert len(sent) >= 6 and all(isinstance(out, ToWan) for out in sent)
    assert all(len(out.packet) <= 576 for out in sent)
    fragments = [only_tun(b.inbound(out.packet, NOW)) for out in sent]
    for piece in fragments:
        assert checksum_ok(piece[:20])
        assert piece[4:6] == inner[4:6]  # the same identification
    assert reassemble(fragments) == forwarded(inner)
    assert a.counters.fragments == len(sent) and a.counters.packets_out == len(sent)


def test_fragments_repeat_only_the_copied_options() -> None:
    a, b = members([group_sa(WIDE, 0x100)], mtu=576)
    # Router Alert has the copied flag; Record Route does not.
    packet = (
        IP(
            src="10.1.1.1",
            dst="10.2.2.2",
            options=[IPOption_RR(routers=["0.0.0.0"]), IPOption_Router_Alert()],
        )
        / UDP()
        / os.urandom(1500)
    )
    inner = bytes(packet)
    fragments = [only_tun(b.inbound(out.packet, NOW)) for out in a.outbound(inner, NOW)]
    assert len(fragments) >= 3
    assert fragments[0][20 : (fragments[0][0] & 0x0F) * 4] == inner[20 : (inner[0] & 0x0F) * 4]
    for later in fragments[1:]:
        assert later[0] & 0x0F == 6 and later[20:24] == bytes(IPOption_Router_Alert())
    assert reassemble(fragments) == forwarded(inner)


def test_a_fragment_is_fragmented_again_with_its_offsets() -> None:
    a, b = members([group_sa(WIDE, 0x100)], mtu=576)
    whole = udp("10.1.1.1", "10.2.2.2", 2000, id=9)
    # The sender's own first fragment (MF set, 1500 octets) and the rest (offset 1480).
    head = IP(src="10.1.1.1", dst="10.2.2.2", id=9, flags="MF", proto=17)
    tail = IP(src="10.1.1.1", dst="10.2.2.2", id=9, frag=1480 // 8, proto=17)
    fragments = [
        only_tun(b.inbound(out.packet, NOW))
        for part in (bytes(head / whole[20:1500]), bytes(tail / whole[1500:]))
        for out in a.outbound(part, NOW)
    ]
    assert len(fragments) > 2
    assert [bool(int.from_bytes(f[6:8], "big") & 0x2000) for f in fragments] == [True] * (
        len(fragments) - 1
    ) + [False]
    assert reassemble(fragments) == forwarded(whole)


def test_an_mtu_too_small_for_one_fragment_drops() -> None:
    a, _ = members([group_sa(WIDE, 0x100)], mtu=68)
    assert a.outbound(udp("10.1.1.1", "10.2.2.2", 200), NOW) == []
    assert a.counters.drops.refused[Refusal.MTU_TOO_SMALL] == 1


def test_ttl_is_decremented_and_ttl_1_gets_time_exceeded() -> None:
    a, b = members([group_sa(WIDE, 0x100), group_sa(MULTICAST, 0x200)])
    for ttl in (2, 255):
        inner = udp("10.1.1.1", "10.2.2.2", ttl=ttl)
        out = only_tun(b.inbound(only_wan(a.outbound(inner, NOW)), NOW))
        assert out[8] == ttl - 1 and checksum_ok(out[:20])
    for ttl in (0, 1):
        inner = udp("10.1.1.1", "10.2.2.2", ttl=ttl)
        icmp = only_tun(a.outbound(inner, NOW))
        assert IP(icmp)[ICMP].type == 11 and IP(icmp)[ICMP].code == 0
        assert IP(icmp).dst == "10.1.1.1" and checksum_ok(icmp[:20]) and checksum_ok(icmp[20:])
    assert a.counters.drops.refused[Refusal.TTL_EXCEEDED] == 2
    # No ICMP error about multicast, about an ICMP error, or about a later fragment.
    assert a.outbound(udp("10.1.1.1", "239.1.1.1", ttl=1), NOW) == []
    error = bytes(IP(src="10.1.1.1", dst="10.2.2.2", ttl=1) / ICMP(type=3, code=1) / IP())
    assert a.outbound(error, NOW) == []
    later = bytes(IP(src="10.1.1.1", dst="10.2.2.2", ttl=1, frag=10, proto=17) / (b"x" * 8))
    assert a.outbound(later, NOW) == []
    echo = bytes(IP(src="10.1.1.1", dst="10.2.2.2", ttl=1) / ICMP(type=8))
    assert IP(only_tun(a.outbound(echo, NOW)))[ICMP].type == 11
    assert a.counters.drops.refused[Refusal.TTL_EXCEEDED] == 6


def test_ttl_can_be_left_to_the_kernel() -> None:
    a = DataPlane(A_ADDRESS, decrement_ttl=False)
    b = DataPlane(B_ADDRESS)
    install(a, [group_sa(WIDE, 0x100)])
    install(b, [group_sa(WIDE, 0x100)])
    inner = udp("10.1.1.1", "10.2.2.2", ttl=1)
    assert only_tun(b.inbound(only_wan(a.outbound(inner, NOW)), NOW)) == inner


def test_malformed_packets_from_the_tun_are_dropped() -> None:
    plane = DataPlane(A_ADDRESS)
    install(plane, [group_sa(WIDE, 0x100)])
    good = udp("10.1.1.1", "10.2.2.2")
    for bad in (b"", good[:19], good[:-1], b"\x60" + good[1:], b"\x44" + good[1:], good + b"x"):
        assert plane.outbound(bad, NOW) == []
    assert plane.counters.drops.refused[Refusal.BAD_INNER_HEADER] == 6


# --- key rollover ----------------------------------------------------------------------


@pytest.mark.parametrize("cipher", ["aes-128-cbc", "aes-128-gcm"])
def test_key_rollover_loses_nothing(cipher: str) -> None:
    """The spec's activation rules: the new key decrypts before it encrypts anywhere,
    and the old one still decrypts after every member switched."""
    old, new = group_sa(WIDE, 0x100, cipher), group_sa(WIDE, 0x200, cipher)
    a, b = DataPlane(A_ADDRESS), DataPlane(B_ADDRESS)
    for plane in (a, b):
        install(plane, [old])
    inner = [udp("10.1.1.1", "10.2.2.2", 200) for _ in range(40)]
    in_flight = [only_wan(a.outbound(p, NOW)) for p in inner[:10]]
    # The rekey arrives: the new key is pending (decrypts, does not encrypt yet).
    for plane in (a, b):
        mine_old, mine_new = owned(plane, old, new)
        plane.install_keys("vpn1", 1, [WIDE], {WIDE: mine_old}, [mine_old, mine_new], clock())
    in_flight += [only_wan(a.outbound(p, NOW)) for p in inner[10:20]]
    # A activates the new key before B does.
    a_old, a_new = owned(a, old, new)
    a.install_keys("vpn1", 1, [WIDE], {WIDE: a_new}, [a_old, a_new], clock())
    in_flight += [only_wan(a.outbound(p, NOW)) for p in inner[20:30]]
    assert {spi_of(p) for p in in_flight[:20]} == {old.spi}
    assert {spi_of(p) for p in in_flight[20:]} == {new.spi}
    b.install_keys("vpn1", 1, [WIDE], {WIDE: new}, [old, new], clock())
    in_flight += [only_wan(a.outbound(p, NOW)) for p in inner[30:]]
    # Every packet arrives, the old key's late ones too.
    delivered = [only_tun(b.inbound(p, NOW + 1)) for p in in_flight]
    assert delivered == [forwarded(p) for p in inner]
    assert b.counters.drops.total_dropped == 0 and a.counters.drops.total_refused == 0
    # The old key goes; then only what it protected is lost.
    b.install_keys("vpn1", 1, [WIDE], {WIDE: new}, [new], clock())
    assert b.inbound(in_flight[0], NOW) == []
    assert b.counters.drops.dropped[DropReason.BAD_SPI] == 1


def test_a_key_keeps_its_esp_sa_and_gcm_counter_across_installs() -> None:
    key = group_sa(WIDE, 0x100, "aes-128-gcm")
    plane = DataPlane(A_ADDRESS)
    install(plane, [key])
    esp_sa = plane.esp_sa(key.spi)
    assert esp_sa is not None
    ivs = [only_wan(plane.outbound(udp("10.1.1.1", "10.2.2.2"), NOW))[28:36] for _ in range(3)]
    # A fresh GroupSa object with the same key, under another policy order, another VPN too.
    again = group_sa(WIDE, 0x100, "aes-128-gcm")
    install(plane, [again, group_sa(ONE_TO_TWO, 0x200)])
    install(plane, [again], vpn="vpn2")
    assert plane.esp_sa(key.spi) is esp_sa
    assert {sa.esp for sa in plane.installed() if sa.spi == key.spi} == {esp_sa}
    ivs.append(only_wan(plane.outbound(udp("10.1.1.1", "10.2.2.2"), NOW))[28:36])
    own = SenderId(0x000201, SID_BITS)  # owned(): A_ADDRESS 192.0.2.1
    assert ivs == [own.iv(n) for n in range(4)]
    # Removed and installed again: the counters continue where they stopped.
    plane.remove_vpn("vpn1")
    plane.remove_vpn("vpn2")
    assert plane.esp_sa(key.spi) is None
    install(plane, [key])
    esp = only_wan(plane.outbound(udp("10.1.1.1", "10.2.2.2"), NOW))
    assert esp[28:36] == own.iv(4)
    assert int.from_bytes(esp[24:28], "big") == 5  # the ESP sequence number too
    # A changed window makes a new EspSa for the key, still with the counters.
    install(plane, [group_sa(WIDE, 0x100, "aes-128-gcm", window=200)])
    assert only_wan(plane.outbound(udp("10.1.1.1", "10.2.2.2"), NOW))[28:36] == own.iv(5)
    assert RETIRED_KEYS >= 1000


def test_a_gcm_key_encrypts_with_the_sender_id_its_group_sa_carries() -> None:
    """The member's SID, not its address; a new SID (a new registration) for a known key
    makes a new EspSa, and no SID at all means no sending with that key."""
    key = group_sa(WIDE, 0x100, "aes-128-gcm")
    first, second = SenderId(7, SID_BITS), SenderId(8, SID_BITS)
    plane, receiver = DataPlane(A_ADDRESS), DataPlane(B_ADDRESS)
    install(receiver, [key])
    install(plane, [replace(key, sender_id=first)])
    esp = [only_wan(plane.outbound(udp("10.1.1.1", "10.2.2.2"), NOW)) for _ in range(2)]
    install(plane, [replace(key, sender_id=second)])
    esp.append(only_wan(plane.outbound(udp("10.1.1.1", "10.2.2.2"), NOW)))
    assert [p[28:36] for p in esp] == [first.iv(0), first.iv(1), second.iv(2)]
    assert all(only_tun(receiver.inbound(p, NOW)) for p in esp)
    # A GCM key without a sender ID: decrypts what others send, sends nothing itself.
    plane.install_keys("vpn1", 1, [WIDE], {WIDE: key}, [key], clock())
    assert plane.outbound(udp("10.1.1.1", "10.2.2.2"), NOW) == []
    assert plane.counters.drops.refused[Refusal.NO_SENDER_ID] == 1
    theirs = only_wan(receiver.outbound(udp("10.2.2.2", "10.1.1.1"), NOW))
    assert only_tun(plane.inbound(theirs, NOW))


def test_the_same_spi_with_different_keys_in_two_vpns() -> None:
    """SPIs are unique only within one key server's group: both keys must work."""
    seed = os.urandom(64)
    first = group_sa(ONE_TO_TWO, 0x100, vpn="first", seed=seed)
    second = group_sa(ONE_TO_TWO, 0x100, vpn="second", seed=os.urandom(64))
    a1, a2, b = DataPlane(A_ADDRESS), DataPlane(A_ADDRESS), DataPlane(B_ADDRESS)
    # a1 holds the first VPN's key under wider selectors than b's.
    install(a1, [group_sa(WIDE, 0x100, vpn="first", seed=seed)], vpn="first")
    install(a2, [second], vpn="second")
    install(b, [first], vpn="first")
    install(b, [second], vpn="second")
    for sender in (a1, a2):
        inner = udp("10.1.1.1", "10.2.2.2")
        assert only_tun(b.inbound(only_wan(sender.outbound(inner, NOW)), NOW)) == forwarded(inner)
    # Decrypted by the first VPN's key but outside its selectors, and the second's
    # key does not open it: one drop, policy-mismatch.
    assert b.inbound(only_wan(a1.outbound(udp("10.3.1.1", "10.2.2.2"), NOW)), NOW) == []
    assert b.counters.drops.as_dict()["dropped"] == {
        reason.value: int(reason is DropReason.POLICY_MISMATCH) for reason in DropReason
    }
    forged = bytearray(only_wan(a1.outbound(udp("10.1.1.1", "10.2.2.2"), NOW)))
    forged[-1] ^= 1
    assert b.inbound(bytes(forged), NOW) == []
    assert b.counters.drops.dropped[DropReason.BAD_ICV] == 1


def test_counters_as_a_dict() -> None:
    counters = DataPlaneCounters()
    a = DataPlane(A_ADDRESS, counters=counters)
    assert a.counters is counters
    install(a, [group_sa(ONE_TO_TWO, 0x100)])
    a.outbound(udp("10.1.1.1", "10.2.2.2", 100), NOW)
    a.outbound(udp("10.1.1.1", "10.9.9.9", 80), NOW)
    view = counters.as_dict()
    assert view["packets-out"] == 1 and view["bytes-out"] == 100
    assert view["clear-packets"] == 1 and view["clear-bytes"] == 80
    assert "policy-mismatch" in view["dropped"] and "no-key" in view["refused"]  # type: ignore[operator]
