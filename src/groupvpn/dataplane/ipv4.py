"""The IPv4 a member does as a router on its TUN: headers, TTL, fragments, ICMP errors.

Everything here works on whole IPv4 packets as bytes and is used by the data-plane
engine (:mod:`.engine`): reading the header fields and transport ports that selectors
match on, decrementing the TTL, fragmenting an inner packet that is too big for the
path once ESP is added (RFC 791), and building the ICMP errors a router sends back
(RFC 792, RFC 1191, with the restrictions of RFC 1122 §3.2.2 and RFC 1812 §4.3.2.7).
Callers have checked that a packet is one whole IPv4 packet (version 4, a header
length that fits, total length = its length) before calling anything but
:func:`header_fields`.
"""

from __future__ import annotations

import struct

IPV4_HEADER_LENGTH = 20
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

#: Flags and fragment offset (octets 6-7).
DF = 0x4000
MF = 0x2000
OFFSET_MASK = 0x1FFF

#: ICMP types and codes (RFC 792, RFC 1191).
ICMP_DESTINATION_UNREACHABLE = 3
ICMP_FRAGMENTATION_NEEDED = 4  # code of type 3; the next-hop MTU is in the header
ICMP_TIME_EXCEEDED = 11
ICMP_TTL_EXCEEDED_IN_TRANSIT = 0  # code of type 11
#: ICMP queries and answers: the only ICMP messages an error may be sent about
#: (RFC 1812 §4.3.2.7: never about an ICMP error, nor about an unknown type).
ICMP_QUERIES = frozenset({0, 8, 9, 10, 13, 14, 15, 16, 17, 18})
#: RFC 1812 §4.3.2.3: an ICMP error quotes as much of the packet as fits in 576 octets.
ICMP_ERROR_MAX_LENGTH = 576
#: RFC 1812 §4.3.2.5: ICMP errors are sent with precedence 6 (internetwork control).
ICMP_ERROR_TOS = 0xC0
ICMP_ERROR_TTL = 64

#: The fixed header: version/IHL, TOS, total length, identification, flags/fragment
#: offset, TTL, protocol, checksum, source, destination (as integers).
HEADER = struct.Struct("!BBHHHBBHII")
#: What the data plane reads of every packet: version/IHL, TOS, total length,
#: flags/fragment offset, TTL, protocol, checksum, and source and destination as one
#: 64-bit integer (the identification is skipped).  The engine reads these once per
#: outbound packet and hands them to ``EspSa.encapsulate``, which needs the same.
FIELDS = struct.Struct("!BBH2xHBBHQ")
#: The part of :data:`FIELDS` the inbound selector check reads: protocol, addresses.
SELECTED = struct.Struct("!9xB2xQ")
#: Source and destination port of TCP and UDP.
PORTS = struct.Struct("!HH")


def ipv4_checksum(header: bytes | bytearray) -> bytes:
    """The two checksum octets for an IPv4 ``header`` whose checksum field is zero.

    The RFC 1071 one's complement sum of 16-bit words equals the header read as one
    big integer modulo 0xFFFF (2^16 = 1 there), with 0xFFFF standing for 0 (the sum
    of a header, which has a nonzero version, is never zero): one C-level division
    instead of a loop over words.  A correct header therefore reads as a multiple
    of 0xFFFF, which is how ``EspSa.decapsulate`` checks it; and any split of the
    header into big-endian integers of whole 16-bit words sums to the same value
    modulo 0xFFFF, which is how the ESP fast paths compute and check it from the
    fields ``struct`` gives them.
    """
    value = int.from_bytes(header, "big")
    return (0xFFFE - (value - 1) % 0xFFFF if value else 0xFFFF).to_bytes(2, "big")


def header_fields(packet: bytes) -> tuple[int, int, int, int, int, int, int, int, int, int]:
    """The fixed header's fields (see :data:`HEADER`); the caller checked the length."""
    return HEADER.unpack_from(packet)


def is_multicast(address: int) -> bool:
    """224.0.0.0/4, as an integer address."""
    return address >> 28 == 0xE


def ports(packet: bytes, header_length: int, protocol: int, fragment: int) -> tuple[int, int]:
    """(source port, destination port) of a packet for selector matching.

    TCP and UDP give their ports.  ``(-1, -1)``: the protocol has no ports, so only
    a selector with port 0 (any) matches.  ``(-2, -2)``: the ports cannot be read (a
    non-first fragment, or a first fragment cut inside the transport header), so
    any port selector matches: a member that cannot tell encrypts rather than send
    a piece of a protected flow in clear (RFC 4301 §7 leaves the choice to us).
    """
    if protocol != IPPROTO_TCP and protocol != IPPROTO_UDP:
        return -1, -1
    if fragment & OFFSET_MASK or len(packet) < header_length + 4:
        return -2, -2
    return PORTS.unpack_from(packet, header_length)


def decrement_ttl(packet: bytes) -> bytes:
    """The packet with its TTL one lower and the checksum updated; the caller checked TTL > 1.

    The 16-bit word holding TTL and protocol drops by 0x0100, so the checksum (the
    complement of the sum) grows by 0x0100 with the end-around carry: RFC 1141, as
    the Linux kernel's ip_decrease_ttl() does it.
    """
    checksum = (packet[10] << 8 | packet[11]) + 0x100
    checksum = (checksum + (checksum >= 0xFFFF)) & 0xFFFF
    copy = bytearray(packet)
    copy[8] -= 1
    copy[10] = checksum >> 8
    copy[11] = checksum & 0xFF
    return bytes(copy)


def copied_options(header: bytes) -> bytes:
    """The options a fragment after the first repeats (copied flag set), padded to 4 octets.

    RFC 791: options with the copied flag (the high bit of the type) go into every
    fragment, the others only into the first.  A malformed option list ends the scan.
    """
    copied = bytearray()
    index, end = IPV4_HEADER_LENGTH, len(header)
    while index < end:
        kind = header[index]
        if kind == 0:  # end of option list
            break
        if kind == 1:  # no operation
            index += 1
            continue
        if index + 1 >= end:
            break
        length = header[index + 1]
        if length < 2 or index + length > end:
            break
        if kind & 0x80:
            copied += header[index : index + length]
        index += length
    copied += bytes(-len(copied) % 4)  # padded with end-of-option-list octets
    return bytes(copied)


def fragment(packet: bytes, max_length: int) -> list[bytes] | None:
    """The packet cut into fragments of at most ``max_length`` octets each (RFC 791).

    Works on packets that are fragments already (offsets add up, the last piece keeps
    the original MF).  None if not even one fragment fits: the header and 8 octets
    of data must fit ``max_length``, or the offsets would overflow 13 bits.
    """
    header_length = (packet[0] & 0x0F) << 2
    data_length = len(packet) - header_length
    field = packet[6] << 8 | packet[7]
    first_offset = field & OFFSET_MASK
    flags = field & 0x8000  # the reserved bit travels; DF is clear, MF is decided below
    header = packet[:header_length]
    later = packet[:IPV4_HEADER_LENGTH] + copied_options(header)
    first_chunk = (max_length - header_length) & ~7
    later_chunk = (max_length - len(later)) & ~7
    if first_chunk < 8 or later_chunk < 8:
        return None
    if first_offset + (data_length + 7) // 8 > OFFSET_MASK + 1:
        return None
    pieces = []
    position, chunk = 0, first_chunk
    while position < data_length:
        end = min(position + chunk, data_length)
        more = MF if end < data_length else field & MF
        piece = bytearray(header)
        piece[0] = 0x40 | len(header) >> 2
        piece[2:4] = (len(header) + end - position).to_bytes(2, "big")
        piece[6:8] = (flags | more | (first_offset + (position >> 3))).to_bytes(2, "big")
        piece[10:12] = b"\0\0"
        piece[10:12] = ipv4_checksum(piece)
        piece += packet[header_length + position : header_length + end]
        pieces.append(bytes(piece))
        position, chunk, header = end, later_chunk, later
    return pieces


def may_send_icmp_error(packet: bytes) -> bool:
    """Whether a router may answer this packet with an ICMP error (RFC 1812 §4.3.2.7).

    Not about an ICMP error (or an ICMP type we do not know), not about a fragment
    other than the first, not about a packet to a multicast or broadcast address, and
    not to a source that is no single host (0/8, 127/8, multicast, 240/4, broadcast).
    """
    _, _, _, _, field, _, protocol, _, source, destination = HEADER.unpack_from(packet)
    if field & OFFSET_MASK or destination >> 28 == 0xE or destination == 0xFFFFFFFF:
        return False
    if source >> 24 in (0, 127) or source >= 0xE0000000:
        return False
    if protocol == IPPROTO_ICMP:
        header_length = (packet[0] & 0x0F) << 2
        return len(packet) > header_length and packet[header_length] in ICMP_QUERIES
    return True


def icmp_error(packet: bytes, kind: int, code: int, rest: int, source: bytes) -> bytes:
    """An ICMP error from ``source`` (4 octets) to the sender of ``packet``.

    ``rest`` is the 32-bit word after the checksum (the next-hop MTU for
    "fragmentation needed"); the message quotes the start of ``packet``, as much as
    fits in 576 octets (RFC 1812 §4.3.2.3).
    """
    quote = packet[: ICMP_ERROR_MAX_LENGTH - IPV4_HEADER_LENGTH - 8]
    message = bytearray(struct.pack("!BBHI", kind, code, 0, rest) + quote)
    message[2:4] = ipv4_checksum(message + b"\0" if len(message) % 2 else message)
    header = bytearray(
        HEADER.pack(
            0x45, ICMP_ERROR_TOS, IPV4_HEADER_LENGTH + len(message), 0, 0,
            ICMP_ERROR_TTL, IPPROTO_ICMP, 0, 0, 0,
        )
    )  # fmt: skip
    header[12:20] = source + packet[12:16]
    header[10:12] = ipv4_checksum(header)
    return bytes(header + message)


def fragmentation_needed(packet: bytes, next_hop_mtu: int, source: bytes) -> bytes:
    """ICMP "fragmentation needed and DF set" with the next-hop MTU (RFC 1191 §4)."""
    return icmp_error(
        packet, ICMP_DESTINATION_UNREACHABLE, ICMP_FRAGMENTATION_NEEDED,
        next_hop_mtu & 0xFFFF, source,
    )  # fmt: skip


def time_exceeded(packet: bytes, source: bytes) -> bytes:
    """ICMP "time to live exceeded in transit" (RFC 792)."""
    return icmp_error(packet, ICMP_TIME_EXCEEDED, ICMP_TTL_EXCEEDED_IN_TRANSIT, 0, source)
