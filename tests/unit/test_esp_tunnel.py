"""EspSa behaviour one case at a time: every drop reason and refusal, nonces, and set-up errors.

Authentic packets with a bad inside (wrong padding, next header or inner packet) are
built here from the public primitives, the way a broken or hostile group member
holding the key could send them.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from groupvpn.dataplane.antireplay import (
    TimeWindow,
    group_time_ms,
    read_time_header,
    time_header,
)
from groupvpn.dataplane.drops import DropCounters, Dropped, DropReason, Refusal, Refused
from groupvpn.dataplane.esp import EspSa, esp_spi, ipv4_checksum
from groupvpn.dataplane.suites import EspSuite, esp_suite
from groupvpn.dataplane.transforms import CbcEncryptor, TruncatedHmac
from groupvpn.gdoi.sender_ids import SID_BITS, SenderId

CBC = esp_suite("aes-128-cbc", "hmac-sha1-96")
GCM = esp_suite("aes-128-gcm", None)
SPI = bytes.fromhex("00001234")
KEY = bytes(range(16))
GCM_KEY = bytes(range(20))
AUTH = bytes(range(20))
ME = SenderId(0x123456, SID_BITS)  # our sender ID (RFC 6054)
WINDOW = TimeWindow.seconds(100)
NOW = 1_790_000_000.0  # group time, seconds


def inner_packet(
    payload: bytes = b"hello", ttl: int = 9, tos: int = 0xB8, df: bool = True
) -> bytes:
    header = bytearray(20)
    header[0], header[1] = 0x45, tos
    header[2:4] = (20 + len(payload)).to_bytes(2, "big")
    header[4:6] = b"\x12\x34"
    header[6] = 0x40 if df else 0
    header[8], header[9] = ttl, 17
    header[12:16] = IPv4Address("10.1.1.1").packed
    header[16:20] = IPv4Address("10.2.2.2").packed
    header[10:12] = ipv4_checksum(bytes(header))
    return bytes(header) + payload


INNER = inner_packet()


def sa(
    suite: EspSuite = CBC,
    window: TimeWindow = WINDOW,
    *,
    sequence: int = 1,
    cbc_counter: int | None = None,
    nonce_counter: int = 0,
    ip_id: int | None = None,
) -> EspSa:
    return EspSa(
        suite,
        SPI,
        GCM_KEY if suite.is_aead else KEY,
        b"" if suite.is_aead else AUTH,
        window=window,
        sender_id=ME,
        sequence=sequence,
        cbc_counter=cbc_counter,
        nonce_counter=nonce_counter,
        ip_id=ip_id,
    )


def wrap(esp: bytes) -> bytes:
    """An outer IPv4 header (protocol 50, inner addresses) in front of ``esp``."""
    header = bytearray(INNER[:20])
    header[2:4] = (20 + len(esp)).to_bytes(2, "big")
    header[9], header[10:12] = 50, b"\0\0"
    header[10:12] = ipv4_checksum(bytes(header))
    return bytes(header) + esp


def authentic(suite: EspSuite, plaintext: bytes) -> bytes:
    """An ESP packet under our keys with any plaintext, trailer included as given."""
    header = SPI + (1).to_bytes(4, "big")
    if suite.is_aead:
        iv = ME.iv(99)
        return header + iv + AESGCM(GCM_KEY[:16]).encrypt(GCM_KEY[16:] + iv, plaintext, header)
    signed = header + CbcEncryptor(suite, KEY).encrypt(plaintext)
    return signed + TruncatedHmac(suite, AUTH).tag(signed)


def padded(payload: bytes, next_header: int, alignment: int) -> bytes:
    pad = -(len(payload) + 2) % alignment
    return payload + bytes(range(1, pad + 1)) + bytes([pad, next_header])


# --- outbound -------------------------------------------------------------------------


def test_outer_header_preserves_addresses_and_copies_tos_ttl_df() -> None:
    packet = sa(ip_id=0xFFFF).encapsulate(INNER, NOW)
    assert isinstance(packet, bytes)
    assert packet[:2] == b"\x45\xb8"  # version 4, IHL 5, inner TOS
    assert packet[4:6] == b"\xff\xff"  # our own Identification, not the inner one
    assert packet[6:10] == bytes([0x40, 0, 9, 50])  # DF, no offset, inner TTL, ESP
    assert packet[12:20] == INNER[12:20]
    assert ipv4_checksum(packet[:10] + b"\0\0" + packet[12:20]) == packet[10:12]
    no_df = sa(ip_id=7).encapsulate(inner_packet(df=False, ttl=1, tos=0), NOW)
    assert isinstance(no_df, bytes)
    assert no_df[1] == 0 and no_df[4:9] == bytes([0, 7, 0, 0, 1])


def test_encapsulated_layout_with_and_without_the_time_header() -> None:
    stamped = sa(sequence=41).encapsulate(INNER, NOW)
    assert isinstance(stamped, bytes)
    assert stamped[20:28] == SPI + (41).to_bytes(4, "big")
    assert len(stamped) == 20 + CBC.esp_length(8 + len(INNER))
    plain = sa(window=TimeWindow.disabled()).encapsulate(INNER, None)
    assert isinstance(plain, bytes) and len(plain) == 20 + CBC.esp_length(len(INNER))


@pytest.mark.parametrize(
    "inner",
    [
        b"",
        INNER[:19],
        b"\x65" + INNER[1:],  # IPv6 version nibble
        b"\x44" + INNER[1:],  # IHL 4
        b"\x47" + INNER[1:],  # IHL 7: a 28-octet header in a 25-octet packet
        INNER + b"x",  # total length says one octet less
        INNER[:-1],
    ],
    ids=["empty", "short", "ipv6", "ihl-4", "ihl-7", "longer", "shorter"],
)
def test_bad_inner_packets_are_refused(inner: bytes) -> None:
    ours = sa()
    assert ours.encapsulate(inner, NOW) == Refused(Refusal.BAD_INNER_HEADER)
    assert ours.counters.refused[Refusal.BAD_INNER_HEADER] == 1
    assert ours.sequence == 1  # nothing was spent


def test_too_big_and_no_group_clock_are_refused() -> None:
    ours = sa()
    biggest = inner_packet(bytes(0xFFFF - 20))
    assert ours.encapsulate(biggest, NOW) == Refused(Refusal.TOO_BIG)
    assert ours.encapsulate(INNER, None) == Refused(Refusal.NO_GROUP_CLOCK)
    assert ours.encapsulate(INNER, -1.0) == Refused(Refusal.NO_GROUP_CLOCK)
    assert ours.encapsulate(INNER, float("nan")) == Refused(Refusal.NO_GROUP_CLOCK)
    assert ours.counters.total_refused == 4 and ours.sequence == 1


def test_gcm_iv_is_sender_id_then_counter_and_never_wraps() -> None:
    """RFC 6054 §3: the SID's 24 bits, then a 40-bit counter of this SA."""
    top = ME.max_counter
    assert top == (1 << 40) - 1
    ours = sa(GCM, nonce_counter=top - 1)
    first, last = ours.encapsulate(INNER, NOW), ours.encapsulate(INNER, NOW)
    assert isinstance(first, bytes) and isinstance(last, bytes)
    assert first[28:36] == bytes.fromhex("123456") + (top - 1).to_bytes(5, "big")
    assert last[28:36] == bytes.fromhex("123456ffffffffff") == ME.iv(top)
    # The counter would run into the next SID: the key is worn out for this sender.
    assert ours.encapsulate(INNER, NOW) == Refused(Refusal.NONCE_EXHAUSTED)
    assert ours.seal(b"x", 4) == Refused(Refusal.NONCE_EXHAUSTED)
    assert ours.counters.refused[Refusal.NONCE_EXHAUSTED] == 2
    assert ours.nonce_counter == top + 1 and ours.sequence == 3
    assert sa(GCM).decapsulate(last, NOW) == INNER


def test_two_members_never_share_a_gcm_nonce() -> None:
    """Same key, same counter: the sender IDs in the IVs still tell them apart."""
    one = EspSa(GCM, SPI, GCM_KEY, window=WINDOW, sender_id=SenderId(1, SID_BITS))
    two = EspSa(GCM, SPI, GCM_KEY, window=WINDOW, sender_id=SenderId(2, SID_BITS))
    a, b = one.encapsulate(INNER, NOW), two.encapsulate(INNER, NOW)
    assert isinstance(a, bytes) and isinstance(b, bytes)
    assert a[28:31] == bytes.fromhex("000001") and b[28:31] == bytes.fromhex("000002")
    assert a[31:36] == b[31:36] == bytes(5)


def test_gcm_without_a_sender_id_decrypts_but_never_encrypts() -> None:
    """No SID from the key server: no fallback (not the address, not a random IV)."""
    theirs = sa(GCM).encapsulate(INNER, NOW)
    mine = EspSa(GCM, SPI, GCM_KEY, window=WINDOW)
    assert mine.sender_id is None
    assert mine.encapsulate(INNER, NOW) == Refused(Refusal.NO_SENDER_ID)
    assert mine.seal(b"x", 4) == Refused(Refusal.NO_SENDER_ID)
    assert mine.counters.refused[Refusal.NO_SENDER_ID] == 2
    assert mine.nonce_counter == 0 and mine.sequence == 1
    assert isinstance(theirs, bytes) and mine.decapsulate(theirs, NOW) == INNER
    # A CBC SA has no use for one and keeps none.
    assert EspSa(CBC, SPI, KEY, AUTH, window=WINDOW, sender_id=ME).sender_id is None


def test_cbc_iv_is_the_encrypted_counter() -> None:
    """NIST SP 800-38A App. C: IV = E_K(N), N counting up from the start."""
    ours = sa(cbc_counter=41)
    ecb = Cipher(CBC.cipher_algorithm(KEY), modes.ECB()).encryptor()
    for n in (41, 42):
        packet = ours.encapsulate(INNER, NOW)
        assert isinstance(packet, bytes)
        assert packet[28:44] == ecb.update(n.to_bytes(16, "big"))


def test_sequence_numbers_wrap_without_stopping() -> None:
    """Receivers never judge sequence numbers (the key has many senders), so they wrap."""
    ours = sa(sequence=0xFFFFFFFF)
    packets = [ours.encapsulate(INNER, NOW) for _ in range(2)]
    assert [p[24:28] for p in packets if isinstance(p, bytes)] == [b"\xff" * 4, b"\0" * 4]


# --- inbound -----------------------------------------------------------------------------


@pytest.mark.parametrize("suite", [CBC, GCM], ids=["cbc", "gcm"])
def test_authentic_but_broken_insides_are_dropped_by_reason(suite: EspSuite) -> None:
    stamp = time_header(NOW)
    assert stamp is not None
    align = suite.alignment
    cases = {
        # pad length 200 is longer than the plaintext
        DropReason.BAD_PADDING: padded(stamp + INNER, 253, align)[:-2] + bytes([200, 253]),
        DropReason.BAD_NEXT_HEADER: padded(INNER, 17, align),
        DropReason.MISSING_TIME_HEADER: padded(INNER, 4, align),
        DropReason.BAD_INNER_HEADER: padded(stamp + INNER[:-1], 253, align),
    }
    # Padding octets must be 1, 2, 3, ... (RFC 4303 §2.4): a zero among them is dropped.
    good = padded(stamp + INNER + b"abc", 253, 16)
    assert good[-2] > 0
    cases_with_bad_octet = good[: -2 - good[-2]] + bytes(good[-2]) + good[-2:]
    receiver = sa(suite)
    for reason, plaintext in cases.items():
        assert receiver.decapsulate(wrap(authentic(suite, plaintext)), NOW) == Dropped(reason)
    bad_octets = wrap(authentic(suite, cases_with_bad_octet))
    assert receiver.decapsulate(bad_octets, NOW) == Dropped(DropReason.BAD_PADDING)
    # A time header cut short is no inner packet either.
    short = wrap(authentic(suite, padded(stamp[:5], 253, align)))
    assert receiver.decapsulate(short, NOW) == Dropped(DropReason.BAD_INNER_HEADER)
    counts = receiver.counters.dropped
    assert counts[DropReason.BAD_PADDING] == 2 and counts[DropReason.BAD_INNER_HEADER] == 2
    assert receiver.counters.total_dropped == 6
    # The same construction with nothing wrong is delivered: the cases above differ only there.
    assert (
        receiver.decapsulate(wrap(authentic(suite, padded(stamp + INNER, 253, align))), NOW)
        == INNER
    )


def test_outer_header_problems() -> None:
    receiver = sa()
    packet = sa().encapsulate(INNER, NOW)
    assert isinstance(packet, bytes)

    def with_octet(index: int, value: int, fix_checksum: bool = True) -> bytes:
        changed = bytearray(packet)
        changed[index] = value
        if fix_checksum:
            changed[10:12] = b"\0\0"
            changed[10:12] = ipv4_checksum(bytes(changed[:20]))
        return bytes(changed)

    cases = {
        "fragment (MF)": with_octet(6, 0x20),
        "fragment offset": with_octet(7, 1),
        "protocol 51": with_octet(9, 51),
        "bad checksum": with_octet(8, packet[8] ^ 1, fix_checksum=False),
    }
    for name, bad in cases.items():
        assert receiver.decapsulate(bad, NOW) == Dropped(DropReason.BAD_OUTER_HEADER), name
    assert receiver.decapsulate(packet[:19], NOW) == Dropped(DropReason.TRUNCATED)
    assert receiver.decapsulate(packet[:-1], NOW) == Dropped(DropReason.TRUNCATED)
    assert receiver.decapsulate(packet + b"\0", NOW) == Dropped(DropReason.BAD_OUTER_HEADER)
    assert receiver.counters.total_dropped == 7
    assert receiver.decapsulate(packet, NOW) == INNER


def test_spi_length_and_icv() -> None:
    packet = sa().encapsulate(INNER, NOW)
    assert isinstance(packet, bytes)
    other = EspSa(CBC, b"\0\0\0\x09", KEY, AUTH, window=WINDOW)
    assert other.decapsulate(packet, NOW) == Dropped(DropReason.BAD_SPI)
    wrong_key = EspSa(CBC, SPI, KEY, bytes(20), window=WINDOW)
    assert wrong_key.decapsulate(packet, NOW) == Dropped(DropReason.BAD_ICV)
    # Ciphertext that is not whole blocks is caught before the MAC is even computed.
    esp = packet[20:]
    ragged = esp[:-13] + esp[-12:]
    assert sa().decapsulate(wrap(ragged), NOW) == Dropped(DropReason.BAD_LENGTH)


def test_window_edges_and_missing_clock() -> None:
    sender = sa()
    packet = sender.encapsulate(INNER, NOW)
    assert isinstance(packet, bytes)
    receiver = sa()
    assert receiver.decapsulate(packet, NOW + 100) == INNER
    assert receiver.decapsulate(packet, NOW - 100) == INNER
    assert receiver.decapsulate(packet, NOW + 100.001) == Dropped(
        DropReason.OUTSIDE_ANTI_REPLAY_WINDOW
    )
    assert receiver.decapsulate(packet, NOW - 100.001) == Dropped(
        DropReason.OUTSIDE_ANTI_REPLAY_WINDOW
    )
    assert receiver.decapsulate(packet, None) == Dropped(DropReason.NO_GROUP_CLOCK)
    assert receiver.decapsulate(packet, float("inf")) == Dropped(DropReason.NO_GROUP_CLOCK)
    assert receiver.counters.as_dict()["dropped"]["outside-anti-replay-window"] == 2


def test_time_header_format() -> None:
    """8 octets, milliseconds of group time, unsigned big-endian (docs/dataplane.md §3)."""
    assert time_header(1.001) == (1001).to_bytes(8, "big")
    assert time_header(0.0) == bytes(8)
    assert time_header(-0.001) is None
    assert read_time_header(bytes.fromhex("0000019a2b3c4d5e") + b"rest") == 0x019A2B3C4D5E
    assert read_time_header(b"short") is None
    assert group_time_ms(1_790_000_000.0005) == 1_790_000_000_000  # rounds half to even
    assert TimeWindow.seconds(100).milliseconds == 100_000
    assert not TimeWindow.seconds(None).enabled
    with pytest.raises(ValueError, match="positive"):
        TimeWindow(0)


def test_esp_spi_finds_the_spi_without_trusting_the_rest() -> None:
    packet = sa().encapsulate(INNER, NOW)
    assert isinstance(packet, bytes)
    assert esp_spi(packet) == SPI
    assert esp_spi(packet[:23]) is None
    assert esp_spi(INNER) is None  # protocol 17
    assert esp_spi(b"\x41" + packet[1:]) is None  # IHL 1
    assert esp_spi(b"") is None


def test_counters_can_be_shared_and_shown() -> None:
    shared = DropCounters()
    one = EspSa(CBC, SPI, KEY, AUTH, window=WINDOW, counters=shared)
    two = EspSa(GCM, SPI, GCM_KEY, window=WINDOW, sender_id=ME, counters=shared)
    assert one.decapsulate(b"", NOW) == two.decapsulate(b"x", NOW) == Dropped(DropReason.TRUNCATED)
    assert two.encapsulate(b"", NOW) == Refused(Refusal.BAD_INNER_HEADER)
    view = shared.as_dict()
    assert view["dropped"]["truncated"] == 2 and view["refused"]["bad-inner-header"] == 1
    assert set(view["dropped"]) == {reason.value for reason in DropReason}
    assert repr(shared) == "DropCounters(dropped=2, refused=1)"


def test_set_up_errors_are_raised_at_install_time() -> None:
    with pytest.raises(ValueError, match="does not fit 24 bits"):
        SenderId(1 << 24, SID_BITS)
    with pytest.raises(ValueError, match="33 bits"):
        SenderId(1, 33)
    with pytest.raises(ValueError, match="20 octets of keying material"):
        EspSa(GCM, SPI, KEY, window=WINDOW, sender_id=ME)
    with pytest.raises(ValueError, match="no integrity key"):
        EspSa(GCM, SPI, GCM_KEY, AUTH, window=WINDOW, sender_id=ME)
    with pytest.raises(ValueError, match="20-octet key"):
        EspSa(CBC, SPI, KEY, b"short", window=WINDOW)
    with pytest.raises(ValueError, match="SPI has 4 octets"):
        EspSa(CBC, b"\1\2", KEY, AUTH, window=WINDOW)
    assert "aes-128-cbc/hmac-sha1-96" in repr(sa()) and "0x" not in repr(sa())
