"""The data-plane engine under hypothesis: round trips, policy lookup, hostile input.

* Random inner IPv4 packets (any header fields, options, payload, addresses) sent by
  member A's ``outbound`` arrive through member B's ``inbound`` exactly as A forwarded
  them (TTL one lower), reassembled when A had to fragment them for the path MTU;
  with DF set and too big, A answers the sender with ICMP instead.
* The policy A encrypts under is the first of a random ordered policy list that
  matches, as a plain model over ``ipaddress`` computes it.
* Random bytes into ``outbound`` and ``inbound``, and mutated ESP packets into
  ``inbound``, never raise; every packet not delivered is counted exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

from hypothesis import event, given, settings
from hypothesis import strategies as st

from groupvpn.dataplane.antireplay import TimeWindow
from groupvpn.dataplane.engine import DataPlane, Output, ToTun, ToWan
from groupvpn.dataplane.esp import ipv4_checksum
from groupvpn.dataplane.sadb import max_inner_length, suite_of
from groupvpn.gdoi.sender_ids import SID_BITS, SenderId
from groupvpn.member.keyring import PolicySelectors
from groupvpn.member.keys import GroupSa
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY

A_ADDRESS = IPv4Address("192.0.2.1")
B_ADDRESS = IPv4Address("192.0.2.2")
NOW = 500.0
GROUP_TIME = 1_790_000_000.0
CIPHERS = ["aes-128-cbc", "aes-256-cbc", "3des-cbc", "aes-128-gcm", "aes-256-gcm"]
SPI = (0x1234).to_bytes(4, "big")
EVERYTHING = PolicySelectors(IPv4Network("0.0.0.0/0"), IPv4Network("0.0.0.0/0"), 0, 0, 0)


def group_time(now: float) -> float:
    return GROUP_TIME + now


def group_sa(policy: PolicySelectors, spi: int, cipher: str, window: int | None) -> GroupSa:
    material = spi.to_bytes(4, "big") * 16
    sender = None
    if ESP_CIPHERS[cipher].combined:  # AES-GCM: key and salt, no integrity; a sender ID
        esp_cipher, integrity = ESP_CIPHERS[cipher], None
        key, auth = material[: esp_cipher.keying_material_length], b""
        sender = SenderId(spi & 0xFFFFFF, SID_BITS)
    else:
        esp_cipher, integrity = ESP_CIPHERS[cipher], ESP_INTEGRITY["hmac-sha-256-128"]
        key, auth = material[: esp_cipher.key_length], material[-32:]
    return GroupSa(
        "vpn1", 1, spi.to_bytes(4, "big"), policy.source, policy.destination,
        policy.source_port, policy.destination_port, policy.protocol, esp_cipher, integrity,
        NOW + 3600, key, auth, window, sender,
    )  # fmt: skip


def member(address: IPv4Address, keys: list[GroupSa], mtu: int = 1500) -> DataPlane:
    plane = DataPlane(address, mtu=mtu)
    order = list(dict.fromkeys(PolicySelectors.of(sa) for sa in keys))
    encrypting: dict[PolicySelectors, GroupSa] = {}
    for sa in keys:
        encrypting.setdefault(PolicySelectors.of(sa), sa)
    plane.install_keys("vpn1", 1, order, encrypting, keys, group_time)
    return plane


@st.composite
def inner_packets(draw: st.DrawFn, max_payload: int = 3000) -> bytes:
    """A whole IPv4 packet, no fragment: any TOS, ID, DF, TTL, protocol, addresses, options."""
    option_words = draw(st.integers(min_value=0, max_value=10))
    options = draw(st.binary(min_size=4 * option_words, max_size=4 * option_words))
    # Small and large (beyond any path MTU here) alike.
    size = draw(st.integers(0, 100) | st.integers(min(400, max_payload), max_payload))
    payload = draw(st.binary(min_size=size, max_size=size))
    total = 20 + len(options) + len(payload)
    header = bytearray(
        bytes([0x40 | (5 + option_words), draw(st.integers(0, 255))])
        + total.to_bytes(2, "big")
        + draw(st.binary(min_size=2, max_size=2))  # identification
        + draw(st.sampled_from([b"\0\0", b"\x40\0"]))  # DF or not
        + bytes([draw(st.integers(0, 255)), draw(st.integers(0, 255))])  # TTL, protocol
        + b"\0\0"
        + draw(st.binary(min_size=8, max_size=8))  # source, destination
        + options
    )
    header[10:12] = ipv4_checksum(bytes(header))
    return bytes(header) + payload


def forwarded(inner: bytes) -> bytes:
    header = bytearray(inner[: (inner[0] & 0x0F) * 4])
    header[8] -= 1
    header[10:12] = b"\0\0"
    header[10:12] = ipv4_checksum(bytes(header))
    return bytes(header) + inner[len(header) :]


def reassemble(fragments: list[bytes]) -> bytes:
    """RFC 791 reassembly of the fragments of one packet that was no fragment itself."""
    if len(fragments) == 1:
        return fragments[0]
    data = bytearray()
    for piece in sorted(fragments, key=lambda f: int.from_bytes(f[6:8], "big") & 0x1FFF):
        assert (int.from_bytes(piece[6:8], "big") & 0x1FFF) * 8 == len(data)
        data += piece[(piece[0] & 0x0F) * 4 :]
    header = bytearray(fragments[0][: (fragments[0][0] & 0x0F) * 4])
    header[2:4] = (len(header) + len(data)).to_bytes(2, "big")
    header[6:8] = bytes([header[6] & 0x40, 0])
    header[10:12] = b"\0\0"
    header[10:12] = ipv4_checksum(bytes(header))
    return bytes(header) + bytes(data)


# --- round trips ----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(CIPHERS),
    st.sampled_from([100, None]),
    st.integers(min_value=576, max_value=1500),
    inner_packets(),
)
def test_random_inner_packets_round_trip_between_members(
    cipher: str, window: int | None, mtu: int, inner: bytes
) -> None:
    key = group_sa(EVERYTHING, 0x1234, cipher, window)
    a, b = member(A_ADDRESS, [key], mtu), member(B_ADDRESS, [key], mtu)
    limit = max_inner_length(suite_of(key), TimeWindow.seconds(window), mtu)
    assert limit >= mtu - a.overhead()
    sent = a.outbound(inner, NOW)
    too_big_with_df = len(inner) > limit and inner[6] & 0x40
    if inner[8] <= 1 or too_big_with_df:
        # Time exceeded, or fragmentation needed: an ICMP error where one is allowed.
        assert a.counters.drops.total_refused == 1
        if not icmp_allowed(inner):
            assert sent == []
            return
        assert len(sent) == 1 and isinstance(sent[0], ToTun)
        icmp = sent[0].packet
        assert icmp[9] == 1 and icmp[12:16] == A_ADDRESS.packed and icmp[16:20] == inner[12:16]
        event("time exceeded" if inner[8] <= 1 else "fragmentation needed")
        if inner[8] <= 1:
            assert (icmp[20], icmp[21]) == (11, 0)
        else:
            assert (icmp[20], icmp[21]) == (3, 4) and int.from_bytes(icmp[26:28], "big") == limit
        return
    assert sent and all(isinstance(out, ToWan) and len(out.packet) <= mtu for out in sent)
    assert len(sent) == 1 or len(inner) > limit
    for out in sent:
        assert out.packet[9] == 50 and out.packet[12:20] == inner[12:20]
    event("fragmented" if len(sent) > 1 else "one packet")
    received = [b.inbound(out.packet, NOW + 1) for out in sent]
    assert all(len(r) == 1 and isinstance(r[0], ToTun) for r in received)
    assert reassemble([r[0].packet for r in received]) == forwarded(inner)
    assert a.counters.drops.total_refused == b.counters.drops.total_dropped == 0
    assert a.counters.packets_out == b.counters.packets_in == len(sent)


def icmp_allowed(inner: bytes) -> bool:
    """RFC 1812 §4.3.2.7, as a model: may a router answer ``inner`` with an ICMP error?"""
    source, destination = IPv4Address(inner[12:16]), IPv4Address(inner[16:20])
    if destination.is_multicast or destination == IPv4Address("255.255.255.255"):
        return False
    if source in IPv4Network("0.0.0.0/8") or source.is_loopback or source.packed[0] >= 224:
        return False
    if inner[9] == 1:  # ICMP: errors only about queries
        header_length = (inner[0] & 0x0F) * 4
        return len(inner) > header_length and inner[header_length] in ICMP_QUERY_TYPES
    return True


ICMP_QUERY_TYPES = {0, 8, 9, 10, 13, 14, 15, 16, 17, 18}


# --- policy lookup against a model ------------------------------------------------------

PREFIXES = st.builds(
    lambda address, length: IPv4Network(f"{IPv4Address(address)}/{length}", strict=False),
    st.sampled_from([0x0A000000, 0x0A010000, 0x0A010100, 0xEF010101, 0]),
    st.sampled_from([0, 8, 16, 24, 32]),
)
POLICIES = st.builds(
    PolicySelectors,
    PREFIXES,
    PREFIXES,
    st.sampled_from([0, 0, 53, 80]),
    st.sampled_from([0, 0, 53, 80]),
    st.sampled_from([0, 0, 1, 6, 17]),
)


def model_lookup(policies: list[PolicySelectors], inner: bytes) -> PolicySelectors | None:
    source, destination = IPv4Address(inner[12:16]), IPv4Address(inner[16:20])
    protocol = inner[9]
    header_length = (inner[0] & 0x0F) * 4
    has_ports = protocol in (6, 17)
    sport = int.from_bytes(inner[header_length : header_length + 2], "big") if has_ports else None
    dport = (
        int.from_bytes(inner[header_length + 2 : header_length + 4], "big") if has_ports else None
    )
    for policy in policies:
        if (
            source in policy.source
            and destination in policy.destination
            and policy.protocol in (0, protocol)
            and policy.source_port in (0, sport)
            and policy.destination_port in (0, dport)
        ):
            return policy
    return None


@st.composite
def selector_packets(draw: st.DrawFn) -> bytes:
    """Packets near the policies' prefixes and ports, with their transport ports."""
    protocol = draw(st.sampled_from([1, 6, 17, 50]))
    ports = draw(st.sampled_from([53, 80, 443])).to_bytes(2, "big") + draw(
        st.sampled_from([53, 80, 443])
    ).to_bytes(2, "big")
    address = st.sampled_from(["10.1.1.1", "10.1.2.1", "10.2.0.1", "239.1.1.1", "192.0.2.9"])
    header = bytearray(
        bytes.fromhex("45000000000000004000") + b"\0\0"
        + IPv4Address(draw(address)).packed + IPv4Address(draw(address)).packed
    )  # fmt: skip
    header[8], header[9] = 64, protocol
    body = ports + bytes(20)
    header[2:4] = (20 + len(body)).to_bytes(2, "big")
    header[10:12] = ipv4_checksum(bytes(header))
    return bytes(header) + body


@settings(max_examples=300, deadline=None)
@given(st.lists(POLICIES, min_size=1, max_size=6, unique=True), st.lists(selector_packets()))
def test_the_first_matching_policy_encrypts(
    policies: list[PolicySelectors], packets: list[bytes]
) -> None:
    keys = {
        policy: group_sa(policy, 0x100 + n, "aes-128-gcm", 100) for n, policy in enumerate(policies)
    }
    plane = DataPlane(A_ADDRESS)
    plane.install_keys("vpn1", 1, policies, keys, keys.values(), group_time)
    for packet in packets:
        expected = model_lookup(policies, packet)
        out = plane.outbound(packet, NOW)
        assert len(out) == 1 and isinstance(out[0], ToWan)
        event("clear" if expected is None else "encrypted")
        if expected is None:
            assert out[0].packet == packet
        else:
            assert out[0].packet[20:24] == keys[expected].spi


# --- hostile input ----------------------------------------------------------------------


def assert_counted_once(plane: DataPlane, call: Callable[[], list[Output]]) -> list[Output]:
    counters = plane.counters
    before = (counters.drops.total_dropped + counters.drops.total_refused, counters.icmp_errors)
    delivered = (counters.packets_in, counters.packets_out, counters.clear_packets)
    result = call()
    after = (counters.drops.total_dropped + counters.drops.total_refused, counters.icmp_errors)
    if not result or (all(isinstance(out, ToTun) for out in result) and after[1] > before[1]):
        assert after[0] == before[0] + 1  # not delivered: exactly one reason
    else:
        assert after[0] == before[0]
        assert (counters.packets_in, counters.packets_out, counters.clear_packets) != delivered
    return result


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(CIPHERS), st.binary(max_size=200))
def test_random_bytes_never_raise_and_are_counted(cipher: str, datagram: bytes) -> None:
    plane = member(A_ADDRESS, [group_sa(EVERYTHING, 0x1234, cipher, 100)])
    assert_counted_once(plane, lambda: plane.inbound(datagram, NOW))
    assert_counted_once(plane, lambda: plane.outbound(datagram, NOW))


@st.composite
def esp_like(draw: st.DrawFn) -> bytes:
    """Protocol 50 behind any IHL, flags and checksum; our SPI or another; random body."""
    header = bytearray(draw(st.binary(min_size=20, max_size=20)))
    header[0] = draw(st.sampled_from([0x45, 0x45, 0x46, 0x44, 0x55, 0x4F]))
    header[9] = 50
    if draw(st.booleans()):
        header[6:8] = b"\0\0"  # no fragment
    spi = draw(st.sampled_from([SPI, b"\0\0\x12\x35", b""]))
    body = spi + draw(st.binary(max_size=120))
    if draw(st.booleans()):
        header[2:4] = (len(header) + len(body)).to_bytes(2, "big")
    if draw(st.booleans()):
        header[10:12] = b"\0\0"
        header[10:12] = ipv4_checksum(bytes(header))
    return bytes(header) + body


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(CIPHERS), esp_like())
def test_esp_like_garbage_is_dropped_and_counted_once(cipher: str, packet: bytes) -> None:
    plane = member(A_ADDRESS, [group_sa(EVERYTHING, 0x1234, cipher, 100)])
    assert assert_counted_once(plane, lambda: plane.inbound(packet, NOW)) == []


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CIPHERS), inner_packets(max_payload=200), st.data())
def test_mutated_esp_packets_are_dropped_and_counted_once(
    cipher: str, inner: bytes, data: st.DataObject
) -> None:
    keys = [group_sa(EVERYTHING, 0x1234, cipher, 100)]
    a, b = member(A_ADDRESS, keys), member(B_ADDRESS, keys)
    inner = inner[:8] + bytes([max(inner[8], 2)]) + inner[9:]
    inner = inner[:10] + b"\0\0" + inner[12:]
    header_length = (inner[0] & 0x0F) * 4
    inner = inner[:10] + ipv4_checksum(inner[:header_length]) + inner[12:]
    sent = a.outbound(inner, NOW)
    assert len(sent) == 1 and isinstance(sent[0], ToWan)
    esp = sent[0].packet
    position = data.draw(st.integers(0, len(esp) - 1))
    mutated = bytearray(esp)
    mutated[position] ^= 1 << data.draw(st.integers(0, 7))
    assert assert_counted_once(b, lambda: b.inbound(bytes(mutated), NOW)) == []
    # The original still arrives: nothing in B was disturbed.
    assert b.inbound(esp, NOW) == [ToTun(forwarded(inner))]
