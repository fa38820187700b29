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

import math
import secrets
import struct
import sys
from ipaddress import IPv4Address

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from groupvpn.dataplane.antireplay import (
    NEXT_HEADER_GROUP_TIME,
    NEXT_HEADER_IPV4,
    TIME_HEADER_LENGTH,
    TimeWindow,
    group_time_ms,
    time_header,
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
_SEQUENCE_MODULUS = 1 << 32
_DF = 0x40  # in the flags octet (byte 6)

#: RFC 4303 §2.4: padding octets are 1, 2, 3, ... (at most 255 of them).
_PADDING = bytes(range(1, 256))
#: The outer header up to the checksum; the addresses follow, copied from the inner one.
_OUTER = struct.Struct("!BBHHBBBBH")
_NATIVE_ORDER = sys.byteorder


def _ones_complement_sum(header: bytes | bytearray) -> int:
    """The RFC 1071 sum of an IPv4 header, folded to 16 bits, in *native* byte order.

    The one's complement sum does not depend on byte order (RFC 1071 §2(B)), so we
    add native 16-bit words in C and write the result back natively: the octets come
    out right on either endianness.  A header with a correct checksum sums to 0xFFFF.
    """
    total = sum(memoryview(header).cast("H"))
    total = (total & 0xFFFF) + (total >> 16)
    return (total & 0xFFFF) + (total >> 16)


def ipv4_checksum(header: bytes | bytearray) -> bytes:
    """The two checksum octets for ``header`` (whose checksum field is zero)."""
    return (~_ones_complement_sum(header) & 0xFFFF).to_bytes(2, _NATIVE_ORDER)


def is_ipv4_packet(packet: bytes) -> bool:
    """One whole IPv4 packet: version 4, a header length that fits, total length = len."""
    length = len(packet)
    if length < IPV4_HEADER_LENGTH:
        return False
    first = packet[0]
    header_length = (first & 0x0F) << 2
    return (
        first >> 4 == 4
        and IPV4_HEADER_LENGTH <= header_length <= length
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
    """

    __slots__ = (
        "_aead",
        "_cbc_in",
        "_cbc_out",
        "_ip_id",
        "_mac",
        "_nonce_counter",
        "_salt",
        "_sender_id",
        "_sequence",
        "counters",
        "spi",
        "suite",
        "window",
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
        self.window = window
        self.counters = counters if counters is not None else DropCounters()
        self._sequence = sequence % _SEQUENCE_MODULUS
        self._ip_id = secrets.randbelow(1 << 16) if ip_id is None else ip_id & 0xFFFF
        self._sender_id = _sender_octets(sender_id)
        self._nonce_counter = nonce_counter
        self._aead: AESGCM | None = None
        self._salt = b""
        self._cbc_out: CbcEncryptor | None = None
        self._cbc_in: CbcDecryptor | None = None
        self._mac: TruncatedHmac | None = None
        if suite.is_aead:
            if self._sender_id is None:
                raise ValueError("an AES-GCM SA needs this member's IPv4 address as sender ID")
            if integrity_key:
                raise ValueError(f"{suite.cipher} takes no integrity key")
            self._aead = AESGCM(encryption_key[: suite.key_length])
            self._salt = encryption_key[suite.key_length :]
        else:
            self._cbc_out = CbcEncryptor(suite, encryption_key, cbc_counter)
            self._cbc_in = CbcDecryptor(suite, encryption_key)
            self._mac = TruncatedHmac(suite, integrity_key)

    def __repr__(self) -> str:
        return f"EspSa({self.suite.name}, spi={self.spi.hex()}, sequence={self._sequence})"

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
        counters = self.counters
        if not is_ipv4_packet(inner):
            return counters.refuse(Refusal.BAD_INNER_HEADER)
        if self.window.milliseconds is None:
            stamp, next_header = b"", NEXT_HEADER_IPV4
        else:
            header = None if group_time is None else time_header(group_time)
            if header is None:
                return counters.refuse(Refusal.NO_GROUP_CLOCK)
            stamp, next_header = header, NEXT_HEADER_GROUP_TIME
        suite = self.suite
        payload_length = len(stamp) + len(inner)
        total = IPV4_HEADER_LENGTH + suite.esp_length(payload_length)
        if total > MAX_IPV4_LENGTH:
            return counters.refuse(Refusal.TOO_BIG)
        pad = -(payload_length + 2) % suite.alignment
        plaintext = b"".join((stamp, inner, _PADDING[:pad], bytes((pad, next_header))))
        esp = self._seal(plaintext)
        if esp is None:
            return counters.refuse(Refusal.NONCE_EXHAUSTED)
        return self._outer_header(inner, total) + esp

    def seal(self, payload: bytes, next_header: int) -> bytes | Refused:
        """The ESP packet (SPI to ICV) for ``payload`` with ``next_header``; no IP header.

        The ESP layer alone, as RFC 3602 and the GCM test cases show their packets.
        """
        pad = -(len(payload) + 2) % self.suite.alignment
        esp = self._seal(b"".join((payload, _PADDING[:pad], bytes((pad, next_header & 0xFF)))))
        return self.counters.refuse(Refusal.NONCE_EXHAUSTED) if esp is None else esp

    def _seal(self, plaintext: bytes) -> bytes | None:
        """SPI | sequence | IV | ciphertext | ICV of a padded plaintext; None: out of nonces."""
        header = self.spi + self._sequence.to_bytes(4, "big")
        if self._aead is not None:
            counter = self._nonce_counter
            if counter > MAX_NONCE_COUNTER:
                return None
            assert self._sender_id is not None
            iv = self._sender_id + counter.to_bytes(4, "big")
            sealed = header + iv + self._aead.encrypt(self._salt + iv, plaintext, header)
            self._nonce_counter = counter + 1
        else:
            assert self._cbc_out is not None and self._mac is not None
            signed = header + self._cbc_out.encrypt(plaintext)
            sealed = signed + self._mac.tag(signed)
        self._sequence = (self._sequence + 1) % _SEQUENCE_MODULUS
        return sealed

    def _outer_header(self, inner: bytes, total: int) -> bytes:
        """RFC 5374 address preservation: the inner addresses, TOS, TTL and DF, protocol 50."""
        ident = self._ip_id
        self._ip_id = (ident + 1) & 0xFFFF
        header = bytearray(IPV4_HEADER_LENGTH)
        _OUTER.pack_into(
            header, 0, 0x45, inner[1], total, ident, inner[6] & _DF, 0, inner[8], IPPROTO_ESP, 0
        )
        header[12:20] = inner[12:20]
        header[10:12] = ipv4_checksum(header)
        return bytes(header)

    # -- inbound -----------------------------------------------------------------------

    def decapsulate(self, packet: bytes, group_time: float | None) -> bytes | Dropped:
        """The inner IPv4 packet of an outer IPv4 ESP ``packet``, or why it was dropped.

        ``group_time`` is our group clock in seconds; with anti-replay on and no
        group time, authentic packets are dropped as ``no-group-clock``.
        """
        counters = self.counters
        length = len(packet)
        if length < IPV4_HEADER_LENGTH:
            return counters.drop(DropReason.TRUNCATED)
        first = packet[0]
        header_length = (first & 0x0F) << 2
        if first >> 4 != 4 or header_length < IPV4_HEADER_LENGTH:
            return counters.drop(DropReason.BAD_OUTER_HEADER)
        total = packet[2] << 8 | packet[3]
        if length < header_length or length < total:
            return counters.drop(DropReason.TRUNCATED)
        if (
            total != length
            or packet[9] != IPPROTO_ESP
            or packet[6] & 0x3F  # MF, or fragment offset high bits
            or packet[7]
            or _ones_complement_sum(packet[:header_length]) != 0xFFFF
        ):
            return counters.drop(DropReason.BAD_OUTER_HEADER)
        opened = self.open(packet[header_length:])
        if isinstance(opened, Dropped):
            return opened
        next_header, payload = opened
        if next_header == NEXT_HEADER_GROUP_TIME:
            if len(payload) < TIME_HEADER_LENGTH:
                return counters.drop(DropReason.BAD_INNER_HEADER)
            window = self.window
            if window.milliseconds is not None:
                if group_time is None or not math.isfinite(group_time):
                    return counters.drop(DropReason.NO_GROUP_CLOCK)
                sent = int.from_bytes(payload[:TIME_HEADER_LENGTH], "big")
                if not window.accepts(sent, group_time_ms(group_time)):
                    return counters.drop(DropReason.OUTSIDE_ANTI_REPLAY_WINDOW)
            inner = payload[TIME_HEADER_LENGTH:]
        elif next_header == NEXT_HEADER_IPV4:
            if self.window.milliseconds is not None:
                return counters.drop(DropReason.MISSING_TIME_HEADER)
            inner = payload
        else:
            return counters.drop(DropReason.BAD_NEXT_HEADER)
        if not is_ipv4_packet(inner):
            return counters.drop(DropReason.BAD_INNER_HEADER)
        return inner

    def open(self, esp: bytes) -> tuple[int, bytes] | Dropped:
        """(next header, payload) of an ESP packet (SPI to ICV), or why it was dropped.

        Authenticity is checked before anything else is believed: the HMAC over
        SPI | sequence | IV | ciphertext before decrypting (CBC), or the GCM tag,
        which covers SPI | sequence as associated data.
        """
        counters = self.counters
        suite = self.suite
        length = len(esp)
        icv_length = suite.icv_length
        data_start = ESP_HEADER_LENGTH + suite.iv_length
        ciphertext_length = length - data_start - icv_length
        if ciphertext_length < (2 if suite.is_aead else suite.block_size):
            return counters.drop(DropReason.TRUNCATED)
        if esp[:SPI_LENGTH] != self.spi:
            return counters.drop(DropReason.BAD_SPI)
        if self._aead is not None:
            try:
                plain = self._aead.decrypt(
                    self._salt + esp[ESP_HEADER_LENGTH:data_start],
                    esp[data_start:],
                    esp[:ESP_HEADER_LENGTH],
                )
            except InvalidTag:
                return counters.drop(DropReason.BAD_ICV)
        else:
            assert self._mac is not None and self._cbc_in is not None
            if ciphertext_length % suite.block_size:
                return counters.drop(DropReason.BAD_LENGTH)
            signed_end = length - icv_length
            if not self._mac.verify(esp[:signed_end], esp[signed_end:]):
                return counters.drop(DropReason.BAD_ICV)
            plain = self._cbc_in.decrypt(esp[ESP_HEADER_LENGTH:signed_end])
        pad = plain[-2]
        end = len(plain) - 2 - pad
        if end < 0 or plain[end : end + pad] != _PADDING[:pad]:
            return counters.drop(DropReason.BAD_PADDING)
        return plain[-1], plain[:end]
