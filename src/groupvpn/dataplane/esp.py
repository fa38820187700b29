"""ESP tunnel mode with address preservation (RFC 4303, RFC 5374) for one group SA.

An :class:`EspSa` holds one TEK's keys and both directions of it: a member encrypts
what it sends with the group's newest key and decrypts what arrives with whichever
key the SPI names.  Packets are bytes in and bytes (or a typed result) out; the
caller passes the group time in and owns sockets and routing.

Outbound (:attr:`EspSa.encapsulate`), for an inner IPv4 packet from the LAN::

    outer IPv4 | SPI | sequence | IV | E( [group time] | inner | padding | pad length | NH ) | ICV

The outer header copies the inner source and destination (address preservation),
TOS, TTL and the DF bit; its protocol is 50 and its checksum is computed here.  The
sequence number counts per SA and sender: RFC 4303 requires it, but receivers cannot
use it against replays because every member sends under the same key, so replays
are stopped by the group time instead (:mod:`.antireplay`).  Padding is 1, 2, 3, ...
up to the cipher's alignment (RFC 4303 §2.4).

Inbound (:attr:`EspSa.decapsulate`) checks, in this order, the outer header, the SPI,
the ICV (in constant time, before anything is decrypted for CBC; the GCM tag for
AES-GCM), the padding, the next header, the group time against the window and the
inner header, and returns the inner packet or a :class:`~.drops.Dropped`.  It never
raises, whatever the bytes.

IVs.  CBC suites derive each IV as E_K(counter) from a random start (see
:mod:`.transforms` for why members sharing a key do not collide).  AES-GCM must
never repeat a nonce under a key, and a group key has many senders, so the 8-octet
IV is the member's **sender ID** (SID, handed out by the key server at registration,
never to two members: :mod:`groupvpn.gdoi.sender_ids`) in the leftmost bits and a
**counter** of this SA in the rest (RFC 6054 §3); the nonce is the 4-octet salt,
then that IV (RFC 4106 §4).  Two members therefore never share a nonce, and one
member never repeats one: when the counter would pass its last value the SA refuses
to encrypt (``nonce-exhausted``).  An SA without a SID decrypts but refuses to
encrypt (``no-sender-id``): there is no fallback to anything a member could share.
A member that restarts registers again and gets a new SID, so its counters may
start from 0 again (docs/dataplane.md §4).

Speed.  At a few hundred thousand packets a second every Python operation is a
visible share of the cost (docs/dataplane.md, "Performance"), so the per-packet
functions are closures compiled when the SA is built (:func:`_sending` and
:func:`_receiving`): keys, sizes, ``struct`` objects and bound methods are closure
constants and the counters closure variables.  Encapsulation copies the inner
packet once, into the plaintext (the forwarded TTL is written into that copy), and
the ciphertext once, into the packet, whose outer header, ESP header and IV (for
AES-GCM) are one ``struct`` call.  Decapsulation runs in two
tiers that give the same answers: a fast tier accepts a packet whose checks all
pass with a few combined comparisons, and anything it does not accept goes to the
careful tier, which makes every check one at a time, in the documented order, to
name the reason (the authentication is never repeated: the careful tier starts
after it when the fast tier got that far).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from hmac import compare_digest
from secrets import randbelow
from typing import NamedTuple, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from groupvpn.dataplane.antireplay import (
    NEXT_HEADER_GROUP_TIME,
    NEXT_HEADER_IPV4,
    TIME_HEADER_LENGTH,
    TimeWindow,
)
from groupvpn.dataplane.drops import DropCounters, Dropped, DropReason, Refusal, Refused
from groupvpn.dataplane.ipv4 import FIELDS
from groupvpn.dataplane.ipv4 import ipv4_checksum as ipv4_checksum  # re-exported
from groupvpn.dataplane.suites import EspSuite
from groupvpn.dataplane.transforms import CbcDecryptor, CbcEncryptor, TruncatedHmac
from groupvpn.gdoi.sender_ids import SenderId

IPPROTO_ESP = 50
IPV4_HEADER_LENGTH = 20
ESP_HEADER_LENGTH = 8  # SPI + sequence number
SPI_LENGTH = 4
MAX_IPV4_LENGTH = 0xFFFF
_MAX_TIME_MS = (1 << (8 * TIME_HEADER_LENGTH)) - 1
_DF = 0x4000  # in the flags/fragment offset word
_TRAILER_LENGTH = 2  # pad length and next header

#: RFC 4303 §2.4: padding octets are 1, 2, 3, ... (at most 255 of them).
_PADDING = bytes(range(1, 256))
#: Padding, pad length and next header, ready-made for both next headers and every
#: pad length: appended when sending, and compared with the end of what arrives.
_TRAILERS = {
    next_header: tuple(_PADDING[:pad] + bytes((pad, next_header)) for pad in range(256))
    for next_header in (NEXT_HEADER_IPV4, NEXT_HEADER_GROUP_TIME)
}

# Sending.  Addresses are one 64-bit integer (source, destination), as ipv4.FIELDS
# reads them from the inner header.
#: The outer IPv4 header: version/IHL, TOS, total length, identification,
#: flags/fragment offset, TTL, protocol, checksum, addresses (20 octets).
_OUTER = struct.Struct("!BBHHHBBHQ")
#: AES-GCM: the outer header, then SPI, sequence number and the IV (sender ID and
#: counter, one 64-bit integer): the 36 octets in front of the ciphertext, in one call.
_GCM_HEAD = struct.Struct("!BBHHHBBHQIIQ")
#: The ESP header: SPI and sequence number (AES-GCM's associated data, RFC 4106 §5).
_ESP_HEADER = struct.Struct("!II")
#: The AES-GCM nonce: the salt, then the IV (sender ID and counter) as a 64-bit integer.
_GCM_NONCE = struct.Struct("!IQ")
#: The group-time header (antireplay.py).
_STAMP = struct.Struct("!Q")
#: TTL, protocol and header checksum, rewritten in the plaintext copy when forwarding.
_TTL = struct.Struct("!BBH")

# Receiving.
#: The outer header of a received packet as three 32-bit words (version/IHL, TOS,
#: total length | identification, flags/fragment offset | TTL, protocol, checksum),
#: the addresses, and the SPI that follows a 20-octet header: the fast tier's view.
ARRIVED = struct.Struct("!IIIQI")
#: Version/IHL, protocol and flags/fragment offset of a received outer header.
_OUTER_FIELDS = struct.Struct("!BxHxxHxB")
#: The start of a decrypted payload: group time, then the inner version/IHL and total
#: length (with anti-replay); or just the latter two (without).
_STAMPED_INNER = struct.Struct("!QBxH")
_INNER = struct.Struct("!BxH")
_U64 = struct.Struct("!Q")

#: Outer header words that do not depend on the packet, for the checksum: version 4
#: and IHL 5 (0x4500), protocol 50; less the 1 of the RFC 1071 fold below.
_OUTER_CONSTANT = 0x4500 + IPPROTO_ESP - 1


def esp_spi(packet: bytes) -> bytes | None:
    """The SPI of an IPv4 ESP packet, to find its SA; None if it cannot have one.

    Only lengths and the protocol are looked at: :attr:`EspSa.decapsulate` checks the
    rest.  A packet whose SPI names no SA is the caller's ``bad-spi`` drop.
    """
    if len(packet) < IPV4_HEADER_LENGTH or packet[9] != IPPROTO_ESP:
        return None
    start = (packet[0] & 0x0F) << 2
    if start < IPV4_HEADER_LENGTH or len(packet) < start + SPI_LENGTH:
        return None
    return bytes(packet[start : start + SPI_LENGTH])


#: (first, TOS, total length, flags/offset, TTL, protocol, checksum, addresses): the
#: inner header as :data:`~.ipv4.FIELDS` reads it.
InnerFields = tuple[int, int, int, int, int, int, int, int]


class Encapsulate(Protocol):
    """The type of :attr:`EspSa.encapsulate` (see there)."""

    def __call__(
        self, inner: bytes, group_time: float | None, fields: InnerFields | None = None,
        forward: bool = False,
    ) -> bytes | Refused: ...  # fmt: skip


class _Keys(NamedTuple):
    """What both halves of an SA are compiled from."""

    suite: EspSuite
    spi: bytes
    keying_material: bytes  # cipher key (and the AES-GCM salt after it)
    mac: TruncatedHmac | None  # None for AES-GCM
    window_ms: int | None  # None: no-anti-replay
    counters: DropCounters


class _Sending(NamedTuple):
    """The sending half of an SA, compiled by :func:`_sending`."""

    encapsulate: Encapsulate
    seal: Callable[[bytes, int], bytes | Refused]  # ESP layer only (known answers)
    state: Callable[[], tuple[int, int]]  # (next sequence number, next GCM counter)


#: What :data:`ARRIVED` reads of a received packet.
Arrived = tuple[int, int, int, int, int]


class Decapsulate(Protocol):
    """The type of :attr:`EspSa.decapsulate` (see there)."""

    def __call__(
        self, packet: bytes, group_time: float | None, arrived: Arrived | None = None
    ) -> bytes | Dropped: ...


class _Receiving(NamedTuple):
    """The receiving half of an SA, compiled by :func:`_receiving`."""

    decapsulate: Decapsulate
    open: Callable[[bytes], tuple[int, bytes] | Dropped]  # ESP layer only (known answers)


class EspSa:
    """One group SA (one TEK): encapsulation and decapsulation of tunnel-mode ESP.

    ``encryption_key`` is the TEK_ALGORITHM_KEY material: the cipher key, and for
    AES-GCM the key followed by the 4-octet salt.  ``integrity_key`` is the HMAC key
    (empty for AES-GCM).  ``window`` is the group's anti-replay window.
    ``sender_id`` is this member's SID for the key (AES-GCM only; RFC 6054): the
    leftmost bits of every IV it sends, which no other member has.  Without one an
    AES-GCM SA decrypts but refuses to encrypt (``no-sender-id``).  ``counters`` may
    be shared by many SAs.

    For known-answer tests, ``sequence`` (the next sequence number), ``cbc_counter``
    (the N whose encryption is the next CBC IV), ``nonce_counter`` (the next GCM IV
    counter) and ``ip_id`` (the next outer Identification) can be given; by default
    the sequence starts at 1, the nonce counter at 0 and the rest at random.

    The per-packet functions are attributes, compiled for this SA when it is built
    (module docstring):

    ``encapsulate(inner, group_time, fields=None, forward=False)``
        The outer IPv4 ESP packet carrying ``inner``, or why it was refused.
        ``group_time`` is the group clock in seconds (``GroupClock.group_time``); it
        is needed only with anti-replay on, and None then refuses the packet.  A
        caller that has checked ``inner`` is one whole IPv4 packet and read its
        header with :data:`.ipv4.FIELDS` passes what it read as ``fields`` (the
        engine), and the check is not repeated.  ``forward``: the member forwards
        the packet as a router, so the encrypted copy carries the TTL one lower (and
        its header checksum updated as RFC 1141 says), as does the outer header; the
        caller checked the TTL is above 1.

    ``decapsulate(packet, group_time, arrived=None)``
        The inner IPv4 packet of an outer IPv4 ESP ``packet``, or why it was
        dropped.  ``group_time`` is our group clock in seconds; with anti-replay on
        and no group time, authentic packets are dropped as ``no-group-clock``.  A
        caller that has read a packet with a 20-octet header with :data:`ARRIVED`
        (the engine, for the SPI) passes what it read as ``arrived``.
    """

    __slots__ = (
        "_open", "_sending", "_window", "counters", "decapsulate", "encapsulate", "sender_id",
        "spi", "suite",
    )  # fmt: skip

    encapsulate: Encapsulate
    decapsulate: Decapsulate
    _open: Callable[[bytes], tuple[int, bytes] | Dropped]

    def __init__(
        self,
        suite: EspSuite,
        spi: bytes,
        encryption_key: bytes,
        integrity_key: bytes = b"",
        *,
        window: TimeWindow,
        sender_id: SenderId | None = None,
        counters: DropCounters | None = None,
        sequence: int = 1,
        cbc_counter: int | None = None,
        nonce_counter: int = 0,
        ip_id: int | None = None,
    ) -> None:
        if len(spi) != SPI_LENGTH:
            raise ValueError(f"an ESP SPI has {SPI_LENGTH} octets, not {len(spi)}")
        if len(encryption_key) != suite.keying_material_length:
            raise ValueError(
                f"{suite.cipher} needs {suite.keying_material_length} octets of keying "
                f"material, got {len(encryption_key)}"
            )
        if suite.is_aead:
            if integrity_key:
                raise ValueError(f"{suite.cipher} takes no integrity key")
            mac = None
        else:
            mac = TruncatedHmac(suite, integrity_key)
        self.suite = suite
        self.sender_id = sender_id if suite.is_aead else None
        self.spi = bytes(spi)
        self.counters = counters if counters is not None else DropCounters()
        self._window = window
        key = _Keys(suite, self.spi, encryption_key, mac, window.milliseconds, self.counters)
        self._sending = _sending(
            key, sender_id if suite.is_aead else None, sequence & 0xFFFFFFFF, cbc_counter,
            nonce_counter,
            randbelow(1 << 16) if ip_id is None else ip_id & 0xFFFF,
        )  # fmt: skip
        self.encapsulate = self._sending.encapsulate
        receiving = _receiving(key)
        self.decapsulate = receiving.decapsulate
        self._open = receiving.open

    def __repr__(self) -> str:
        sender = "" if self.sender_id is None else f", sender_id={self.sender_id.value}"
        return f"EspSa({self.suite.name}, spi={self.spi.hex()}, sequence={self.sequence}{sender})"

    @property
    def window(self) -> TimeWindow:
        """The group's anti-replay window (fixed for the SA's life)."""
        return self._window

    @property
    def sequence(self) -> int:
        """The sequence number the next packet will carry."""
        return self._sending.state()[0]

    @property
    def nonce_counter(self) -> int:
        """AES-GCM: the IV counter of the next packet (after the sender ID in the IV)."""
        return self._sending.state()[1]

    def seal(self, payload: bytes, next_header: int) -> bytes | Refused:
        """The ESP packet (SPI to ICV) for ``payload`` with ``next_header``; no IP header.

        The ESP layer alone, as RFC 3602 and the GCM test cases show their packets.
        """
        return self._sending.seal(payload, next_header)

    def open(self, esp: bytes) -> tuple[int, bytes] | Dropped:
        """(next header, payload) of an ESP packet (SPI to ICV), or why it was dropped."""
        return self._open(esp)


def _sending(
    keys: _Keys, sender: SenderId | None, sequence: int, cbc_counter: int | None,
    nonce_counter: int,
    ip_id: int,
) -> _Sending:  # fmt: skip
    """The encapsulation of one SA, with its counters, as closures (module docstring)."""
    suite, spi, keying_material, mac, window_ms, counters = keys
    refuse = counters.refuse
    spi_value = int.from_bytes(spi, "big")
    gcm = suite.is_aead
    if gcm:
        encrypt = AESGCM(keying_material[: suite.key_length]).encrypt
        # Nonce = salt (the end of the keying material) || IV; IV = SID || counter as one
        # 64-bit integer (RFC 6054 §3).  No SID: nothing is sent (no-sender-id).
        salt = int.from_bytes(keying_material[suite.key_length :], "big")
        iv_prefix = sender.iv_prefix if sender is not None else 0
        # The last counter this SA may use; -1 without a SID, so every packet is refused.
        last_counter = sender.max_counter if sender is not None else -1
        no_counter = Refusal.NO_SENDER_ID if sender is None else Refusal.NONCE_EXHAUSTED
    else:
        assert mac is not None
        cbc_encrypt = CbcEncryptor(suite, keying_material, cbc_counter).encrypt_apart
        new_mac, icv_length = mac.new, mac.length
    stamped = window_ms is not None
    stamp_length = TIME_HEADER_LENGTH if stamped else 0
    trailers = _TRAILERS[NEXT_HEADER_GROUP_TIME if stamped else NEXT_HEADER_IPV4]
    # Outer header, ESP header, IV and ICV: everything but payload and trailer.
    fixed_length = IPV4_HEADER_LENGTH + ESP_HEADER_LENGTH + suite.iv_length + suite.icv_length
    # Octets the payload adds to the inner packet before padding: stamp and trailer.
    payload_extra = stamp_length + _TRAILER_LENGTH
    alignment_mask = suite.alignment - 1  # 4, 8 or 16: powers of two
    assert suite.alignment & alignment_mask == 0
    ttl_offset = stamp_length + 8  # the inner TTL in the plaintext
    join, join_mutable = b"".join, bytearray().join  # one copy; the second's is writable
    pack_stamp, pack_ttl_into, unpack_fields = _STAMP.pack, _TTL.pack_into, FIELDS.unpack_from
    pack_esp_header, pack_outer = _ESP_HEADER.pack, _OUTER.pack
    pack_nonce, pack_gcm_head = _GCM_NONCE.pack, _GCM_HEAD.pack

    def encapsulate(
        inner: bytes, group_time: float | None, fields: InnerFields | None = None,
        forward: bool = False,
    ) -> bytes | Refused:  # fmt: skip
        nonlocal sequence, nonce_counter, ip_id
        if fields is None:  # one whole IPv4 packet: version 4, header fits, total = length
            if len(inner) < IPV4_HEADER_LENGTH:
                return refuse(Refusal.BAD_INNER_HEADER)
            fields = unpack_fields(inner)
            first = fields[0]
            if (
                first >> 4 != 4
                or not IPV4_HEADER_LENGTH <= (first & 0x0F) << 2 <= len(inner)
                or fields[2] != len(inner)
            ):
                return refuse(Refusal.BAD_INNER_HEADER)
        _, tos, length, flags, ttl, protocol, checksum, addresses = fields
        # The group-time header (docs/dataplane.md §3), in milliseconds.
        if stamped:
            if group_time is None:
                return refuse(Refusal.NO_GROUP_CLOCK)
            try:
                sent = round(group_time * 1000)  # ms (MS_PER_SECOND, inlined)
            except (ValueError, OverflowError):  # NaN or infinite: no usable clock
                return refuse(Refusal.NO_GROUP_CLOCK)
            if not 0 <= sent <= _MAX_TIME_MS:
                return refuse(Refusal.NO_GROUP_CLOCK)
            stamp = pack_stamp(sent)
        else:
            stamp = b""
        pad = -(length + payload_extra) & alignment_mask
        total = fixed_length + length + payload_extra + pad
        if total > MAX_IPV4_LENGTH:
            return refuse(Refusal.TOO_BIG)
        if gcm and nonce_counter > last_counter:
            return refuse(no_counter)
        # The plaintext, the one copy of the inner packet on the way in.
        if forward:
            # As ip_decrease_ttl() does (RFC 1141): TTL - 1 is checksum + 0x0100.
            ttl -= 1
            checksum += 0x100
            plain: bytes | bytearray = join_mutable((stamp, inner, trailers[pad]))
            pack_ttl_into(
                plain, ttl_offset, ttl, protocol, (checksum + (checksum >= 0xFFFF)) & 0xFFFF
            )
        else:
            plain = join((stamp, inner, trailers[pad]))
        # RFC 5374 address preservation: the inner addresses, TOS, TTL and DF, protocol
        # 50, our own Identification; the checksum as in ipv4_checksum, on the fields.
        ident = ip_id
        ip_id = (ident + 1) & 0xFFFF
        flags &= _DF
        checksum = (
            0xFFFE
            - (_OUTER_CONSTANT + tos + total + ident + flags + (ttl << 8) + addresses) % 0xFFFF
        )
        current = sequence
        sequence = (current + 1) & 0xFFFFFFFF
        if gcm:
            counter = nonce_counter
            nonce_counter = counter + 1
            iv_value = iv_prefix | counter
            body = encrypt(pack_nonce(salt, iv_value), plain, pack_esp_header(spi_value, current))
            head = pack_gcm_head(
                0x45, tos, total, ident, flags, ttl, IPPROTO_ESP, checksum, addresses,
                spi_value, current, iv_value,
            )  # fmt: skip
            return head + body  # the one copy on the way out
        esp_header = pack_esp_header(spi_value, current)
        iv, ciphertext = cbc_encrypt(plain)
        icv = new_mac()
        icv.update(esp_header)
        icv.update(iv)
        icv.update(ciphertext)
        outer = pack_outer(0x45, tos, total, ident, flags, ttl, IPPROTO_ESP, checksum, addresses)
        return join((outer, esp_header, iv, ciphertext, icv.finalize()[:icv_length]))

    def seal(payload: bytes, next_header: int) -> bytes | Refused:
        nonlocal sequence, nonce_counter
        pad = -(len(payload) + _TRAILER_LENGTH) & alignment_mask
        plain = join((payload, _PADDING[:pad], bytes((pad, next_header & 0xFF))))
        if gcm and nonce_counter > last_counter:
            return refuse(no_counter)
        esp_header = pack_esp_header(spi_value, sequence)
        sequence = (sequence + 1) & 0xFFFFFFFF
        if gcm:
            counter = nonce_counter
            nonce_counter = counter + 1
            iv_value = iv_prefix | counter
            return join(
                (
                    esp_header,
                    iv_value.to_bytes(8, "big"),
                    encrypt(pack_nonce(salt, iv_value), plain, esp_header),
                )
            )
        signed = esp_header + b"".join(cbc_encrypt(plain))
        icv = new_mac()
        icv.update(signed)
        return signed + icv.finalize()[:icv_length]

    def state() -> tuple[int, int]:
        return sequence, nonce_counter

    return _Sending(encapsulate, seal, state)


def _receiving(keys: _Keys) -> _Receiving:
    """The decapsulation of one SA as closures: a fast tier and a careful one (module doc)."""
    suite, spi, keying_material, mac, window_ms, counters = keys
    drop = counters.drop
    spi_value = int.from_bytes(spi, "big")
    gcm = suite.is_aead
    if gcm:
        decrypt = AESGCM(keying_material[: suite.key_length]).decrypt
        salt = keying_material[suite.key_length :]
        block = 2  # the smallest ciphertext: pad length and next header
        start = 0  # where the payload starts in what decrypt() returns
    else:
        assert mac is not None
        cbc_decrypt = CbcDecryptor(suite, keying_material).decrypt_all
        new_mac = mac.new
        block = suite.block_size
        start = block  # decrypt_all() leaves the meaningless IV block on
    iv_length = suite.iv_length
    data_offset = ESP_HEADER_LENGTH + iv_length  # the ciphertext, from the SPI
    icv_length = suite.icv_length
    fixed_length = IPV4_HEADER_LENGTH + data_offset + icv_length
    shortest = fixed_length + block
    block_mask = block - 1  # CBC: 8 or 16
    stamped = window_ms is not None
    window = window_ms or 0
    trailers = _TRAILERS[NEXT_HEADER_GROUP_TIME if stamped else NEXT_HEADER_IPV4]
    # The decrypted payload holds the stamp (with anti-replay) and then an IPv4 header.
    inner_start = start + (TIME_HEADER_LENGTH if stamped else 0)
    least_payload = inner_start - start + IPV4_HEADER_LENGTH
    unpack_arrived = ARRIVED.unpack_from
    unpack_stamped, unpack_inner = _STAMPED_INNER.unpack_from, _INNER.unpack_from
    # Offsets in a packet with a 20-octet outer header.
    iv_at, data_at = IPV4_HEADER_LENGTH + ESP_HEADER_LENGTH, IPV4_HEADER_LENGTH + data_offset

    def decapsulate(
        packet: bytes, group_time: float | None, arrived: Arrived | None = None
    ) -> bytes | Dropped:
        length = len(packet)
        if length >= shortest:
            w0, w1, w2, addresses, packet_spi = arrived or unpack_arrived(packet)
            if (
                w0 & 0xFF00FFFF == 0x45000000 | length  # IPv4, IHL 5, total length = what came
                and not w1 & 0x3FFF  # neither MF nor an offset: not a fragment
                and w2 & 0x00FF0000 == IPPROTO_ESP << 16  # protocol 50
                and not (w0 + w1 + w2 + addresses) % 0xFFFF  # header checksum (ipv4_checksum)
                and packet_spi == spi_value
                and (gcm or not (length - fixed_length) & block_mask)  # CBC: whole blocks
            ):
                # Authenticity first (docs/dataplane.md §2).
                if gcm:
                    try:
                        plain = decrypt(
                            salt + packet[iv_at:data_at], packet[data_at:],
                            packet[IPV4_HEADER_LENGTH:iv_at],
                        )  # fmt: skip
                    except InvalidTag:
                        return drop(DropReason.BAD_ICV)
                else:
                    signed_end = length - icv_length
                    icv = new_mac()
                    icv.update(packet[IPV4_HEADER_LENGTH:signed_end])
                    if not compare_digest(icv.finalize()[:icv_length], packet[signed_end:]):
                        return drop(DropReason.BAD_ICV)
                    plain = cbc_decrypt(packet[iv_at:signed_end])
                # The payload: padding, pad length and next header (one comparison with
                # the trailer we would have sent), the stamp and the inner header.
                pad = plain[-2]
                end = len(plain) - _TRAILER_LENGTH - pad
                if end - start >= least_payload and plain.endswith(trailers[pad]):
                    if stamped:
                        sent, first, inner_length = unpack_stamped(plain, start)
                        try:
                            fresh = -window <= round(group_time * 1000) - sent <= window  # type: ignore[operator]
                        except (TypeError, ValueError, OverflowError):  # None, NaN, infinite
                            fresh = False
                    else:
                        first, inner_length = unpack_inner(plain, start)
                        fresh = True
                    if (
                        fresh
                        and first >> 4 == 4
                        and IPV4_HEADER_LENGTH <= (first & 0x0F) << 2 <= inner_length
                        and inner_length == end - inner_start
                    ):
                        return plain[inner_start:end]
                return payload(plain, start, group_time)
        return carefully(packet, group_time)

    # -- the careful tier: every check on its own, in order, to name the reason --------

    def carefully(packet: bytes, group_time: float | None) -> bytes | Dropped:
        length = len(packet)
        if length < IPV4_HEADER_LENGTH:
            return drop(DropReason.TRUNCATED)
        first, total, fragment, protocol = _OUTER_FIELDS.unpack_from(packet)
        header_length = (first & 0x0F) << 2
        if first >> 4 != 4 or header_length < IPV4_HEADER_LENGTH:
            return drop(DropReason.BAD_OUTER_HEADER)
        if length < header_length or length < total:
            return drop(DropReason.TRUNCATED)
        if (
            total != length
            or protocol != IPPROTO_ESP
            or fragment & 0x3FFF  # MF or a fragment offset
            or int.from_bytes(packet[:header_length], "big") % 0xFFFF  # checksum
        ):
            return drop(DropReason.BAD_OUTER_HEADER)
        opened = open_at(packet, header_length)
        if isinstance(opened, Dropped):
            return opened
        return payload(opened, start, group_time)

    def open_at(packet: bytes, offset: int) -> bytes | Dropped:
        """Authenticate and decrypt the ESP packet at ``offset``: the plaintext.

        Authenticity is checked before anything else is believed: the HMAC over SPI to
        the end of the ciphertext before decrypting (CBC), or the GCM tag, which
        covers SPI and sequence number as associated data.  The payload starts at
        ``start`` in the plaintext (after the IV block CBC leaves on).
        """
        length = len(packet)
        data = offset + data_offset
        ciphertext_length = length - data - icv_length
        if ciphertext_length < block:
            return drop(DropReason.TRUNCATED)
        if packet[offset : offset + SPI_LENGTH] != spi:
            return drop(DropReason.BAD_SPI)
        if gcm:
            try:
                return decrypt(
                    salt + packet[offset + ESP_HEADER_LENGTH : data],
                    packet[data:],
                    packet[offset : offset + ESP_HEADER_LENGTH],
                )
            except InvalidTag:
                return drop(DropReason.BAD_ICV)
        if ciphertext_length % block:
            return drop(DropReason.BAD_LENGTH)
        signed_end = length - icv_length
        icv = new_mac()
        icv.update(packet[offset:signed_end])
        if not compare_digest(icv.finalize()[:icv_length], packet[signed_end:]):
            return drop(DropReason.BAD_ICV)
        return cbc_decrypt(packet[offset + ESP_HEADER_LENGTH : signed_end])

    def unpad(plain: bytes, start: int) -> int | Dropped:
        """Where the payload ends (before the padding), or ``bad-padding``."""
        pad = plain[-2]
        end = len(plain) - _TRAILER_LENGTH - pad
        if end < start or plain[end : end + pad] != _PADDING[:pad]:
            return drop(DropReason.BAD_PADDING)
        return end

    def payload(plain: bytes, start: int, group_time: float | None) -> bytes | Dropped:
        """The inner packet of an authentic plaintext: padding, next header, time, inner."""
        end = unpad(plain, start)
        if isinstance(end, Dropped):
            return end
        next_header = plain[-1]
        if next_header == NEXT_HEADER_GROUP_TIME:
            if end - start < TIME_HEADER_LENGTH:
                return drop(DropReason.BAD_INNER_HEADER)
            if stamped:
                if group_time is None:
                    return drop(DropReason.NO_GROUP_CLOCK)
                try:
                    now = round(group_time * 1000)  # ms (MS_PER_SECOND, inlined)
                except (ValueError, OverflowError):  # NaN or infinite: no usable clock
                    return drop(DropReason.NO_GROUP_CLOCK)
                if not -window <= now - _U64.unpack_from(plain, start)[0] <= window:
                    return drop(DropReason.OUTSIDE_ANTI_REPLAY_WINDOW)
            # Without anti-replay a stamp is skipped unjudged (docs/dataplane.md §3).
            start += TIME_HEADER_LENGTH
        elif next_header == NEXT_HEADER_IPV4:
            if stamped:
                return drop(DropReason.MISSING_TIME_HEADER)
        else:
            return drop(DropReason.BAD_NEXT_HEADER)
        inner_length = end - start
        if inner_length < IPV4_HEADER_LENGTH:
            return drop(DropReason.BAD_INNER_HEADER)
        first = plain[start]
        if (
            first >> 4 != 4
            or not IPV4_HEADER_LENGTH <= (first & 0x0F) << 2 <= inner_length
            or (plain[start + 2] << 8 | plain[start + 3]) != inner_length
        ):
            return drop(DropReason.BAD_INNER_HEADER)
        return plain[start:end]

    def open_esp(esp: bytes) -> tuple[int, bytes] | Dropped:
        plain = open_at(esp, 0)
        if isinstance(plain, Dropped):
            return plain
        end = unpad(plain, start)
        if isinstance(end, Dropped):
            return end
        return plain[-1], plain[start:end]

    return _Receiving(decapsulate, open_esp)
