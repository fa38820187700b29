"""ESP tunnel mode with address preservation (RFC 4303, RFC 5374) for one group SA.

An :class:`EspSa` holds one TEK's keys and both directions of it: a member encrypts
what it sends with the group's newest key and decrypts what arrives with whichever
key the SPI names.  Packets are bytes in and bytes (or a typed result) out; the
caller passes the group time in and owns sockets and routing.

Outbound (:meth:`EspSa.encapsulate`), for an inner IPv4 packet from the LAN::

    outer IPv4 | SPI | sequence | IV | E( [group time] | inner | padding | pad length | NH ) | ICV

The outer header copies the inner source and destination (address preservation),
TOS, TTL and the DF bit; its protocol is 50 and its checksum is computed here.  The
sequence number counts per SA and sender: RFC 4303 requires it, but receivers cannot
use it against replays because every member sends under the same key, so replays
are stopped by the group time instead (:mod:`.antireplay`).  Padding is 1, 2, 3, ...
up to the cipher's alignment (RFC 4303 §2.4).

Inbound (:meth:`EspSa.decapsulate`) checks, in this order, the outer header, the SPI,
the ICV (in constant time, before anything is decrypted for CBC; the GCM tag for
AES-GCM), the padding, the next header, the group time against the window and the
inner header, and returns the inner packet or a :class:`~.drops.Dropped`.  It never
raises, whatever the bytes.

IVs.  CBC suites derive each IV as E_K(counter) from a random start (see
:mod:`.transforms` for why members sharing a key do not collide).  AES-GCM must
never repeat a nonce under a key, and a group key has many senders, so the 8-octet
IV is the **sender's own IPv4 address** (the address the key server registered the
member by, unique in the group) followed by a **32-bit counter** of this SA; the
nonce is the 4-octet salt, then that IV (RFC 4106 §4).  Two members therefore never
share a nonce, and one member never repeats one: when the counter would wrap the SA
refuses to encrypt (``nonce-exhausted``) and the member must use a newer key.  A
member that restarts while a key it sent under is still current must not start that
key's counter again from where it may already have been: it persists the counter
(:attr:`EspSa.nonce_counter`) or waits for the next key.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from ipaddress import IPv4Address
from secrets import randbelow

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from groupvpn.dataplane.antireplay import (
    NEXT_HEADER_GROUP_TIME,
    NEXT_HEADER_IPV4,
    TIME_HEADER_LENGTH,
    TimeWindow,
)
from groupvpn.dataplane.drops import DropCounters, Dropped, DropReason, Refusal, Refused
from groupvpn.dataplane.suites import EspSuite
from groupvpn.dataplane.transforms import CbcDecryptor, CbcEncryptor, TruncatedHmac

IPPROTO_ESP = 50
IPV4_HEADER_LENGTH = 20
ESP_HEADER_LENGTH = 8  # SPI + sequence number
SPI_LENGTH = 4
MAX_IPV4_LENGTH = 0xFFFF
MAX_NONCE_COUNTER = 0xFFFFFFFF
_MAX_TIME_MS = (1 << (8 * TIME_HEADER_LENGTH)) - 1
_DF = 0x40  # in the flags octet (byte 6)

#: RFC 4303 §2.4: padding octets are 1, 2, 3, ... (at most 255 of them).
_PADDING = bytes(range(1, 256))
#: Padding, pad length and next header, ready-made for both next headers and every length.
_TRAILERS = {
    next_header: tuple(_PADDING[:pad] + bytes((pad, next_header)) for pad in range(256))
    for next_header in (NEXT_HEADER_IPV4, NEXT_HEADER_GROUP_TIME)
}
#: The outer header up to the checksum; the addresses follow, copied from the inner one.
_OUTER = struct.Struct("!BBHHHBBH")
#: Version/IHL, total length, flags/fragment offset and protocol of a received header.
_OUTER_FIELDS = struct.Struct("!BxHxxHxB")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


def ipv4_checksum(header: bytes | bytearray) -> bytes:
    """The two checksum octets for an IPv4 ``header`` whose checksum field is zero.

    The RFC 1071 one's complement sum of 16-bit words equals the header read as one
    big integer modulo 0xFFFF (2^16 = 1 there), with 0xFFFF standing for 0 (the sum
    of a header, which has a nonzero version, is never zero): one C-level division
    instead of a loop over words.  A correct header therefore reads as a multiple
    of 0xFFFF, which is how :meth:`EspSa.decapsulate` checks it.
    """
    value = int.from_bytes(header, "big")
    return (0xFFFE - (value - 1) % 0xFFFF if value else 0xFFFF).to_bytes(2, "big")


def is_ipv4_packet(packet: bytes) -> bool:
    """One whole IPv4 packet: version 4, a header length that fits, total length = len."""
    length = len(packet)
    if length < IPV4_HEADER_LENGTH:
        return False
    first = packet[0]
    return (
        first >> 4 == 4
        and IPV4_HEADER_LENGTH <= (first & 0x0F) << 2 <= length
        and (packet[2] << 8 | packet[3]) == length
    )


def esp_spi(packet: bytes) -> bytes | None:
    """The SPI of an IPv4 ESP packet, to find its SA; None if it cannot have one.

    Only lengths and the protocol are looked at: :meth:`EspSa.decapsulate` checks the
    rest.  A packet whose SPI names no SA is the caller's ``bad-spi`` drop.
    """
    if len(packet) < IPV4_HEADER_LENGTH or packet[9] != IPPROTO_ESP:
        return None
    start = (packet[0] & 0x0F) << 2
    if start < IPV4_HEADER_LENGTH or len(packet) < start + SPI_LENGTH:
        return None
    return bytes(packet[start : start + SPI_LENGTH])


def _sender_octets(sender_id: IPv4Address | bytes | None) -> bytes | None:
    if sender_id is None:
        return None
    octets = sender_id.packed if isinstance(sender_id, IPv4Address) else bytes(sender_id)
    if len(octets) != 4:
        raise ValueError(f"the AES-GCM sender ID is an IPv4 address (4 octets), not {octets!r}")
    return octets


def _no_cbc(data: bytes) -> bytes:
    raise AssertionError("an AES-GCM SA has no CBC or HMAC transform")


def _no_mac(data: bytes, icv: bytes) -> bool:
    raise AssertionError("an AES-GCM SA has no HMAC")


class EspSa:
    """One group SA (one TEK): encapsulation and decapsulation of tunnel-mode ESP.

    ``encryption_key`` is the TEK_ALGORITHM_KEY material: the cipher key, and for
    AES-GCM the key followed by the 4-octet salt.  ``integrity_key`` is the HMAC key
    (empty for AES-GCM).  ``window`` is the group's anti-replay window.
    ``sender_id`` is this member's own IPv4 address, required for AES-GCM (it makes
    the nonces of different members differ).  ``counters`` may be shared by many SAs.

    For known-answer tests, ``sequence`` (the next sequence number), ``cbc_counter``
    (the N whose encryption is the next CBC IV), ``nonce_counter`` (the next GCM IV
    counter) and ``ip_id`` (the next outer Identification) can be given; by default
    the sequence starts at 1, the nonce counter at 0 and the rest at random.

    The per-packet methods are written flat, with few calls and attribute lookups:
    at a few hundred thousand packets a second each Python operation is a visible
    share of the cost (``benchmarks/dataplane_crypto.py``).
    """

    __slots__ = (
        "_aead",
        "_alignment",
        "_block",
        "_cbc_decrypt",
        "_cbc_encrypt",
        "_fixed_length",
        "_icv_length",
        "_ip_id",
        "_iv_length",
        "_iv_prefix",
        "_mac_tag",
        "_mac_verify",
        "_nonce_counter",
        "_nonce_prefix",
        "_salt",
        "_sequence",
        "_window",
        "_window_ms",
        "counters",
        "spi",
        "suite",
    )

    def __init__(
        self,
        suite: EspSuite,
        spi: bytes,
        encryption_key: bytes,
        integrity_key: bytes = b"",
        *,
        window: TimeWindow,
        sender_id: IPv4Address | bytes | None = None,
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
        self.suite = suite
        self.spi = bytes(spi)
        self.counters = counters if counters is not None else DropCounters()
        self._window = window
        self._window_ms = window.milliseconds
        self._sequence = sequence & 0xFFFFFFFF
        self._ip_id = randbelow(1 << 16) if ip_id is None else ip_id & 0xFFFF
        self._nonce_counter = nonce_counter
        self._alignment = suite.alignment
        self._iv_length = suite.iv_length
        self._icv_length = suite.icv_length
        # Outer header, ESP header, IV and ICV: everything but payload and trailer.
        self._fixed_length = (
            IPV4_HEADER_LENGTH + ESP_HEADER_LENGTH + suite.iv_length + suite.icv_length
        )
        sender = _sender_octets(sender_id)
        self._cbc_encrypt: Callable[[bytes], bytes]
        self._cbc_decrypt: Callable[[bytes], bytes]
        self._mac_tag: Callable[[bytes], bytes]
        self._mac_verify: Callable[[bytes, bytes], bool]
        if suite.is_aead:
            if sender is None:
                raise ValueError("an AES-GCM SA needs this member's IPv4 address as sender ID")
            if integrity_key:
                raise ValueError(f"{suite.cipher} takes no integrity key")
            self._aead: AESGCM | None = AESGCM(encryption_key[: suite.key_length])
            self._salt = encryption_key[suite.key_length :]
            self._iv_prefix = sender
            self._nonce_prefix = self._salt + sender
            self._block = 2  # the smallest ciphertext: pad length and next header
            self._cbc_encrypt = self._cbc_decrypt = _no_cbc
            self._mac_tag, self._mac_verify = _no_cbc, _no_mac
        else:
            mac = TruncatedHmac(suite, integrity_key)
            self._aead = None
            self._salt = self._iv_prefix = self._nonce_prefix = b""
            self._block = suite.block_size
            self._cbc_encrypt = CbcEncryptor(suite, encryption_key, cbc_counter).encrypt
            self._cbc_decrypt = CbcDecryptor(suite, encryption_key).decrypt_all
            self._mac_tag, self._mac_verify = mac.tag, mac.verify

    def __repr__(self) -> str:
        return f"EspSa({self.suite.name}, spi={self.spi.hex()}, sequence={self._sequence})"

    @property
    def window(self) -> TimeWindow:
        """The group's anti-replay window (fixed for the SA's life)."""
        return self._window

    @property
    def sequence(self) -> int:
        """The sequence number the next packet will carry."""
        return self._sequence

    @property
    def nonce_counter(self) -> int:
        """AES-GCM: the IV counter of the next packet (persist it to survive a restart)."""
        return self._nonce_counter

    # -- outbound ----------------------------------------------------------------------

    def encapsulate(self, inner: bytes, group_time: float | None) -> bytes | Refused:
        """The outer IPv4 ESP packet carrying ``inner``, or why it was refused.

        ``group_time`` is the group clock in seconds (``GroupClock.group_time``);
        it is needed only with anti-replay on, and None then refuses the packet.
        """
        length = len(inner)
        if length < IPV4_HEADER_LENGTH:
            return self.counters.refuse(Refusal.BAD_INNER_HEADER)
        first = inner[0]
        if (
            first >> 4 != 4
            or not IPV4_HEADER_LENGTH <= (first & 0x0F) << 2 <= length
            or (inner[2] << 8 | inner[3]) != length
        ):
            return self.counters.refuse(Refusal.BAD_INNER_HEADER)
        if self._window_ms is None:
            stamp = b""
            trailers = _TRAILERS[NEXT_HEADER_IPV4]
        else:
            if group_time is None:
                return self.counters.refuse(Refusal.NO_GROUP_CLOCK)
            try:
                sent = round(group_time * 1000)  # ms (MS_PER_SECOND, inlined)
            except (ValueError, OverflowError):  # NaN or infinite: no usable clock
                return self.counters.refuse(Refusal.NO_GROUP_CLOCK)
            if not 0 <= sent <= _MAX_TIME_MS:
                return self.counters.refuse(Refusal.NO_GROUP_CLOCK)
            stamp = _U64.pack(sent)
            length += TIME_HEADER_LENGTH
            trailers = _TRAILERS[NEXT_HEADER_GROUP_TIME]
        pad = -(length + 2) % self._alignment
        total = self._fixed_length + length + 2 + pad
        if total > MAX_IPV4_LENGTH:
            return self.counters.refuse(Refusal.TOO_BIG)
        esp = self._seal(b"".join((stamp, inner, trailers[pad])))
        if esp is None:
            return self.counters.refuse(Refusal.NONCE_EXHAUSTED)
        # RFC 5374 address preservation: the inner addresses, TOS, TTL and DF, protocol
        # 50, our own Identification; the checksum as in ipv4_checksum, on the fields.
        tos, flags, ttl = inner[1], (inner[6] & _DF) << 8, inner[8]
        ident = self._ip_id
        self._ip_id = (ident + 1) & 0xFFFF
        addresses = inner[12:20]
        checksum = 0xFFFE - (
            0x4500 + tos + total + ident + flags + (ttl << 8) + IPPROTO_ESP - 1
            + int.from_bytes(addresses, "big")
        ) % 0xFFFF  # fmt: skip
        header = _OUTER.pack(0x45, tos, total, ident, flags, ttl, IPPROTO_ESP, checksum)
        return b"".join((header, addresses, *esp))

    def seal(self, payload: bytes, next_header: int) -> bytes | Refused:
        """The ESP packet (SPI to ICV) for ``payload`` with ``next_header``; no IP header.

        The ESP layer alone, as RFC 3602 and the GCM test cases show their packets.
        """
        pad = -(len(payload) + 2) % self._alignment
        esp = self._seal(b"".join((payload, _PADDING[:pad], bytes((pad, next_header & 0xFF)))))
        return self.counters.refuse(Refusal.NONCE_EXHAUSTED) if esp is None else b"".join(esp)

    def _seal(self, plaintext: bytes) -> tuple[bytes, ...] | None:
        """SPI | sequence | IV | ciphertext | ICV of a padded plaintext, in pieces.

        The pieces are joined once by the caller, with the outer header in front:
        every large intermediate object is an allocation outside Python's small-object
        allocator, so there is only one.  None: out of nonces.
        """
        sequence = self._sequence
        header = self.spi + _U32.pack(sequence)
        aead = self._aead
        if aead is not None:
            counter = self._nonce_counter
            if counter > MAX_NONCE_COUNTER:
                return None
            count = _U32.pack(counter)
            body = aead.encrypt(self._nonce_prefix + count, plaintext, header)
            self._nonce_counter = counter + 1
            self._sequence = (sequence + 1) & 0xFFFFFFFF
            return header, self._iv_prefix, count, body
        signed = header + self._cbc_encrypt(plaintext)
        self._sequence = (sequence + 1) & 0xFFFFFFFF
        return signed, self._mac_tag(signed)

    # -- inbound -----------------------------------------------------------------------

    def decapsulate(self, packet: bytes, group_time: float | None) -> bytes | Dropped:
        """The inner IPv4 packet of an outer IPv4 ESP ``packet``, or why it was dropped.

        ``group_time`` is our group clock in seconds; with anti-replay on and no
        group time, authentic packets are dropped as ``no-group-clock``.
        """
        length = len(packet)
        if length < IPV4_HEADER_LENGTH:
            return self.counters.drop(DropReason.TRUNCATED)
        first, total, fragment, protocol = _OUTER_FIELDS.unpack_from(packet)
        header_length = (first & 0x0F) << 2
        if first >> 4 != 4 or header_length < IPV4_HEADER_LENGTH:
            return self.counters.drop(DropReason.BAD_OUTER_HEADER)
        if length < header_length or length < total:
            return self.counters.drop(DropReason.TRUNCATED)
        if (
            total != length
            or protocol != IPPROTO_ESP
            or fragment & 0x3FFF  # MF or a fragment offset
            or int.from_bytes(packet[:header_length], "big") % 0xFFFF  # checksum
        ):
            return self.counters.drop(DropReason.BAD_OUTER_HEADER)
        opened = self._open(packet, header_length)
        if isinstance(opened, Dropped):
            return opened
        plain, start, end = opened
        next_header = plain[-1]
        if next_header == NEXT_HEADER_GROUP_TIME:
            if end - start < TIME_HEADER_LENGTH:
                return self.counters.drop(DropReason.BAD_INNER_HEADER)
            window = self._window_ms
            if window is not None:
                if group_time is None:
                    return self.counters.drop(DropReason.NO_GROUP_CLOCK)
                try:
                    now = round(group_time * 1000)  # ms (MS_PER_SECOND, inlined)
                except (ValueError, OverflowError):  # NaN or infinite: no usable clock
                    return self.counters.drop(DropReason.NO_GROUP_CLOCK)
                if not -window <= now - _U64.unpack_from(plain, start)[0] <= window:
                    return self.counters.drop(DropReason.OUTSIDE_ANTI_REPLAY_WINDOW)
            start += TIME_HEADER_LENGTH
        elif next_header == NEXT_HEADER_IPV4:
            if self._window_ms is not None:
                return self.counters.drop(DropReason.MISSING_TIME_HEADER)
        else:
            return self.counters.drop(DropReason.BAD_NEXT_HEADER)
        inner_length = end - start
        if inner_length < IPV4_HEADER_LENGTH:
            return self.counters.drop(DropReason.BAD_INNER_HEADER)
        first = plain[start]
        if (
            first >> 4 != 4
            or not IPV4_HEADER_LENGTH <= (first & 0x0F) << 2 <= inner_length
            or (plain[start + 2] << 8 | plain[start + 3]) != inner_length
        ):
            return self.counters.drop(DropReason.BAD_INNER_HEADER)
        return plain[start:end]

    def open(self, esp: bytes) -> tuple[int, bytes] | Dropped:
        """(next header, payload) of an ESP packet (SPI to ICV), or why it was dropped."""
        opened = self._open(esp, 0)
        if isinstance(opened, Dropped):
            return opened
        plain, start, end = opened
        return plain[-1], plain[start:end]

    def _open(self, packet: bytes, offset: int) -> tuple[bytes, int, int] | Dropped:
        """Authenticate and decrypt the ESP packet at ``offset``: (plaintext, start, end).

        The payload is ``plaintext[start:end]``; the next header is its last octet.
        Authenticity is checked before anything else is believed: the HMAC over SPI to
        the end of the ciphertext before decrypting (CBC), or the GCM tag, which
        covers SPI and sequence number as associated data.
        """
        length = len(packet)
        data = offset + ESP_HEADER_LENGTH + self._iv_length
        ciphertext_length = length - data - self._icv_length
        if ciphertext_length < self._block:
            return self.counters.drop(DropReason.TRUNCATED)
        if packet[offset : offset + SPI_LENGTH] != self.spi:
            return self.counters.drop(DropReason.BAD_SPI)
        aead = self._aead
        if aead is not None:
            try:
                plain = aead.decrypt(
                    self._salt + packet[offset + ESP_HEADER_LENGTH : data],
                    packet[data:],
                    packet[offset : offset + ESP_HEADER_LENGTH],
                )
            except InvalidTag:
                return self.counters.drop(DropReason.BAD_ICV)
            start = 0
        else:
            if ciphertext_length % self._block:
                return self.counters.drop(DropReason.BAD_LENGTH)
            signed_end = length - self._icv_length
            if not self._mac_verify(packet[offset:signed_end], packet[signed_end:]):
                return self.counters.drop(DropReason.BAD_ICV)
            plain = self._cbc_decrypt(packet[offset + ESP_HEADER_LENGTH : signed_end])
            start = self._block  # the decrypted IV block is meaningless
        pad = plain[-2]
        end = len(plain) - 2 - pad
        if end < start or plain[end : end + pad] != _PADDING[:pad]:
            return self.counters.drop(DropReason.BAD_PADDING)
        return plain, start, end
