"""ESP encapsulation and decapsulation under hypothesis: round trips, tampering, anti-replay.

* Random valid inner IPv4 packets (any header fields, options, payload) round-trip
  through every suite, with anti-replay on and off, and the outer header preserves
  the inner addresses, TOS, TTL and DF.
* A protected packet with any bit flipped, any octet changed, cut short or with
  octets appended is dropped with a reason, counted once, and nothing raises; so is
  any random datagram, and random ciphertext behind a valid header and our SPI.
* A packet is accepted exactly when the sender's and the receiver's group times are
  within the window; with ``no-anti-replay`` any time (or none) is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from groupvpn.dataplane.antireplay import TimeWindow
from groupvpn.dataplane.drops import DropCounters, Dropped, DropReason, Refused
from groupvpn.dataplane.esp import EspSa, ipv4_checksum
from groupvpn.dataplane.suites import ESP_SUITES, EspSuite
from groupvpn.gdoi.sender_ids import SID_BITS, SenderId

SUITES = st.sampled_from(sorted(ESP_SUITES.values(), key=lambda suite: suite.name))
SPI = bytes.fromhex("c0ffee01")
SENDER = SenderId(7, SID_BITS)
#: Group times in ms: from the epoch to a few centuries ahead, like the key server's clock.
GROUP_TIMES_MS = st.integers(min_value=0, max_value=10**13)
WINDOWS_S = st.integers(min_value=60, max_value=360)  # Junos v1 anti-replay-time-window


@dataclass(frozen=True)
class Keys:
    suite: EspSuite
    encryption: bytes
    integrity: bytes

    def sa(self, window: TimeWindow) -> EspSa:
        return EspSa(
            self.suite,
            SPI,
            self.encryption,
            self.integrity,
            window=window,
            sender_id=SENDER,
            counters=DropCounters(),
        )


@st.composite
def keys(draw: st.DrawFn) -> Keys:
    suite = draw(SUITES)
    return Keys(
        suite,
        draw(
            st.binary(min_size=suite.keying_material_length, max_size=suite.keying_material_length)
        ),
        draw(st.binary(min_size=suite.integrity_key_length, max_size=suite.integrity_key_length)),
    )


@st.composite
def inner_packets(draw: st.DrawFn) -> bytes:
    """A valid IPv4 packet: any TOS, ID, flags, offset, TTL, protocol, addresses, options."""
    option_words = draw(st.integers(min_value=0, max_value=10))
    options = draw(st.binary(min_size=4 * option_words, max_size=4 * option_words))
    payload = draw(st.binary(max_size=1480))
    total = 20 + len(options) + len(payload)
    header = bytearray(
        bytes([0x40 | (5 + option_words), draw(st.integers(0, 255))])
        + total.to_bytes(2, "big")
        + draw(st.binary(min_size=2, max_size=2))  # identification
        + draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")  # flags and fragment offset
        + bytes([draw(st.integers(0, 255)), draw(st.integers(0, 255))])  # TTL, protocol
        + b"\0\0"
        + draw(st.binary(min_size=8, max_size=8))  # source, destination
        + options
    )
    header[10:12] = ipv4_checksum(bytes(header))
    return bytes(header) + payload


def encapsulate(sa: EspSa, inner: bytes, group_time_ms: int | None) -> bytes:
    packet = sa.encapsulate(inner, None if group_time_ms is None else group_time_ms / 1000)
    assert isinstance(packet, bytes), packet
    return packet


# --- round trips ----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(keys(), inner_packets(), st.booleans(), GROUP_TIMES_MS)
def test_inner_packets_round_trip(keys: Keys, inner: bytes, anti_replay: bool, now: int) -> None:
    window = TimeWindow.seconds(100) if anti_replay else TimeWindow.disabled()
    sender, receiver = keys.sa(window), keys.sa(window)
    packet = encapsulate(sender, inner, now)
    assert len(packet) == 20 + keys.suite.esp_length(len(inner) + (8 if anti_replay else 0))
    # Tunnel mode with address preservation (RFC 5374): the outer header keeps the
    # inner source and destination, TOS and TTL, and DF; it is protocol 50, carries no
    # options, is no fragment, and its length and checksum are right.
    assert packet[12:20] == inner[12:20]
    assert packet[1] == inner[1] and packet[8] == inner[8]
    assert packet[6] == inner[6] & 0x40 and packet[7] == 0
    assert packet[0] == 0x45 and packet[9] == 50
    assert int.from_bytes(packet[2:4], "big") == len(packet)
    assert ipv4_checksum(packet[:10] + b"\0\0" + packet[12:20]) == packet[10:12]
    assert packet[20:24] == SPI
    assert receiver.decapsulate(packet, now / 1000) == inner
    assert receiver.counters.total_dropped == 0


@settings(max_examples=100, deadline=None)
@given(keys(), st.lists(inner_packets(), min_size=2, max_size=5))
def test_every_packet_gets_a_fresh_iv_and_sequence_number(keys: Keys, inners: list[bytes]) -> None:
    sender = keys.sa(TimeWindow.disabled())
    packets = [encapsulate(sender, inner, None) for inner in inners]
    ivs = {packet[28 : 28 + keys.suite.iv_length] for packet in packets}
    assert len(ivs) == len(packets)
    assert [int.from_bytes(p[24:28], "big") for p in packets] == list(range(1, len(packets) + 1))
    # Decapsulated in reverse order, each on its own.
    receiver = keys.sa(TimeWindow.disabled())
    assert [receiver.decapsulate(p, None) for p in reversed(packets)] == inners[::-1]


# --- tampering --------------------------------------------------------------------------


def assert_dropped_once(sa: EspSa, packet: bytes) -> DropReason:
    before = dict(sa.counters.dropped)
    result = sa.decapsulate(packet, 1_000.0)
    assert isinstance(result, Dropped), result
    after = sa.counters.dropped
    assert {r: after[r] - before[r] for r in after if after[r] != before[r]} == {result.reason: 1}
    return result.reason


@st.composite
def tampered(draw: st.DrawFn, packet: bytes) -> bytes:
    kind = draw(st.sampled_from(["flip", "octet", "truncate", "append"]))
    if kind == "truncate":
        return packet[: draw(st.integers(0, len(packet) - 1))]
    if kind == "append":
        return packet + draw(st.binary(min_size=1, max_size=64))
    position = draw(st.integers(0, len(packet) - 1))
    if kind == "flip":
        changed = packet[position] ^ (1 << draw(st.integers(0, 7)))
    else:
        changed = draw(st.integers(0, 255).filter(lambda value: value != packet[position]))
    return packet[:position] + bytes([changed]) + packet[position + 1 :]


@settings(max_examples=500, deadline=None)
@given(keys(), inner_packets(), st.booleans(), st.data())
def test_tampered_packets_are_dropped_and_counted(
    keys: Keys, inner: bytes, anti_replay: bool, data: st.DataObject
) -> None:
    window = TimeWindow.seconds(100) if anti_replay else TimeWindow.disabled()
    packet = encapsulate(keys.sa(window), inner, 1_000_000)
    receiver = keys.sa(window)
    assert receiver.decapsulate(packet, 1_000.0) == inner
    reason = assert_dropped_once(receiver, data.draw(tampered(packet)))
    assert reason in {
        DropReason.TRUNCATED,
        DropReason.BAD_OUTER_HEADER,
        DropReason.BAD_SPI,
        DropReason.BAD_LENGTH,
        DropReason.BAD_ICV,
    }
    # The SA is unharmed: the original still decapsulates (CBC context not desynced).
    assert receiver.decapsulate(packet, 1_000.0) == inner


@settings(max_examples=300, deadline=None)
@given(keys(), st.binary(max_size=200))
def test_random_datagrams_are_dropped(keys: Keys, datagram: bytes) -> None:
    assert_dropped_once(keys.sa(TimeWindow.seconds(100)), datagram)


@settings(max_examples=300, deadline=None)
@given(keys(), st.binary(max_size=300))
def test_random_ciphertext_behind_our_spi_is_dropped(keys: Keys, body: bytes) -> None:
    """A valid outer header and our SPI, so the ICV check (or GCM open) really runs."""
    esp = SPI + body
    header = bytearray(bytes.fromhex("45000000 00000000 40320000 0a000001 0a000002"))
    header[2:4] = (20 + len(esp)).to_bytes(2, "big")
    header[10:12] = ipv4_checksum(bytes(header))
    reason = assert_dropped_once(keys.sa(TimeWindow.seconds(100)), bytes(header) + esp)
    assert reason in {DropReason.TRUNCATED, DropReason.BAD_LENGTH, DropReason.BAD_ICV}


# --- anti-replay ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    keys(),
    inner_packets(),
    WINDOWS_S,
    GROUP_TIMES_MS,
    st.one_of(st.integers(-400_000, 400_000), st.sampled_from([-1, 0, 1])),
)
def test_window_accepts_exactly_the_packets_within_it(
    keys: Keys, inner: bytes, window_s: int, sent: int, skew: int
) -> None:
    window = TimeWindow.seconds(window_s)
    now = sent + skew
    # Edge cases on both sides of the boundary, as well as random skews.
    for received_at in (
        now,
        sent + window_s * 1000,
        sent - window_s * 1000,
        sent + window_s * 1000 + 1,
    ):
        if received_at < 0:
            continue
        receiver = keys.sa(window)
        packet = encapsulate(keys.sa(window), inner, sent)
        result = receiver.decapsulate(packet, received_at / 1000)
        if abs(received_at - sent) <= window_s * 1000:
            assert result == inner
        else:
            assert result == Dropped(DropReason.OUTSIDE_ANTI_REPLAY_WINDOW)
            assert receiver.counters.dropped[DropReason.OUTSIDE_ANTI_REPLAY_WINDOW] == 1


@settings(max_examples=200, deadline=None)
@given(
    keys(),
    inner_packets(),
    st.one_of(st.none(), GROUP_TIMES_MS),
    st.one_of(st.none(), GROUP_TIMES_MS),
)
def test_no_anti_replay_accepts_any_time(
    keys: Keys, inner: bytes, sender_time: int | None, receiver_time: int | None
) -> None:
    receiver = keys.sa(TimeWindow.disabled())
    received_at = None if receiver_time is None else receiver_time / 1000
    # From a sender without anti-replay: plain RFC 4303, next header 4, no time at all.
    plain = encapsulate(keys.sa(TimeWindow.disabled()), inner, sender_time)
    assert receiver.decapsulate(plain, received_at) == inner
    # From a sender that stamps its group time: the stamp is skipped, never judged.
    if sender_time is not None:
        stamped = encapsulate(keys.sa(TimeWindow.seconds(60)), inner, sender_time)
        assert receiver.decapsulate(stamped, received_at) == inner
    assert receiver.counters.total_dropped == 0


@settings(max_examples=100, deadline=None)
@given(keys(), inner_packets(), GROUP_TIMES_MS)
def test_anti_replay_needs_a_group_clock_and_a_stamp(keys: Keys, inner: bytes, now: int) -> None:
    window = TimeWindow.seconds(100)
    sender = keys.sa(window)
    refused = sender.encapsulate(inner, None)
    assert isinstance(refused, Refused) and sender.counters.total_refused == 1
    receiver = keys.sa(window)
    stamped = encapsulate(sender, inner, now)
    assert receiver.decapsulate(stamped, None) == Dropped(DropReason.NO_GROUP_CLOCK)
    unstamped = encapsulate(keys.sa(TimeWindow.disabled()), inner, None)
    assert receiver.decapsulate(unstamped, now / 1000) == Dropped(DropReason.MISSING_TIME_HEADER)
    assert receiver.counters.total_dropped == 2
