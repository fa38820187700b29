"""A tiny capture reader for test vectors: UDP over IPv4 out of pcap or pcapng files.

Plus :func:`split_payloads`, a generic-header-only ISAKMP payload slicer.

Stdlib only, so that key-derivation tests do not need tshark or scapy.  It reads
classic pcap (either byte order, micro- or nanosecond magic) and pcapng (the
Section Header, Interface Description, Enhanced and Simple Packet blocks; the
lab's tshark writes pcapng even to a ``.pcap`` name).  Link types: 1
(Ethernet, optionally one 802.1Q tag) and 101/228 (raw IPv4).  Anything else,
and IPv4 fragments, raise ValueError instead of being silently skipped, so a
test can never pass on a capture it only half read.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_IPV4 = 228

_PCAP_MAGICS = {0xA1B2C3D4, 0xA1B23C4D}  # microsecond, nanosecond timestamps
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER = 0x1A2B3C4D
_PCAPNG_IDB = 1
_PCAPNG_SPB = 3
_PCAPNG_EPB = 6

_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_VLAN = 0x8100
_IPPROTO_UDP = 17
NON_ESP_MARKER = b"\x00\x00\x00\x00"  # RFC 3948 §2.2


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def read_frames(path: str | Path) -> list[tuple[int, bytes]]:
    """Every captured frame as (link type, bytes), in file order."""
    data = Path(path).read_bytes()
    if len(data) < 4:
        raise ValueError(f"{path}: too short for a capture file")
    if struct.unpack_from("<I", data)[0] == _PCAPNG_SHB:
        return _read_pcapng(data)
    return _read_pcap(data)


def _read_pcap(data: bytes) -> list[tuple[int, bytes]]:
    for order in ("<", ">"):
        if struct.unpack_from(order + "I", data)[0] in _PCAP_MAGICS:
            break
    else:
        raise ValueError("not a pcap or pcapng file")
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    frames = []
    pos = 24
    while pos < len(data):
        if pos + 16 > len(data):
            raise ValueError(f"truncated pcap record header at {pos}")
        incl_len = struct.unpack_from(order + "I", data, pos + 8)[0]
        pos += 16
        if pos + incl_len > len(data):
            raise ValueError(f"truncated pcap record at {pos}")
        frames.append((linktype, data[pos : pos + incl_len]))
        pos += incl_len
    return frames


def _read_pcapng(data: bytes) -> list[tuple[int, bytes]]:
    frames: list[tuple[int, bytes]] = []
    linktypes: list[int] = []  # per interface, reset by each section header
    order = "<"
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError(f"truncated pcapng block at {pos}")
        if struct.unpack_from("<I", data, pos)[0] == _PCAPNG_SHB:
            # The byte-order magic decides how this section (and the SHB's own
            # length field) is read.
            magic = struct.unpack_from("<I", data, pos + 8)[0]
            order = "<" if magic == _PCAPNG_BYTE_ORDER else ">"
            linktypes = []
        block_type, block_len = struct.unpack_from(order + "II", data, pos)
        if block_len < 12 or block_len % 4 or pos + block_len > len(data):
            raise ValueError(f"bad pcapng block length {block_len} at {pos}")
        body = data[pos + 8 : pos + block_len - 4]
        if block_type == _PCAPNG_IDB:
            linktypes.append(struct.unpack_from(order + "H", body)[0])
        elif block_type == _PCAPNG_EPB:
            interface, _, _, captured = struct.unpack_from(order + "IIII", body)
            frames.append((linktypes[interface], body[20 : 20 + captured]))
        elif block_type == _PCAPNG_SPB:
            original = struct.unpack_from(order + "I", body)[0]
            frames.append((linktypes[0], body[4 : 4 + original]))
        pos += block_len
    return frames


def _ipv4_packet(linktype: int, frame: bytes) -> bytes | None:
    """The IPv4 packet inside a frame, or None for a non-IPv4 Ethernet frame (ARP...)."""
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        return frame if frame and frame[0] >> 4 == 4 else None
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"unsupported link type {linktype}")
    offset = 12
    ethertype = struct.unpack_from("!H", frame, offset)[0]
    if ethertype == _ETHERTYPE_VLAN:
        offset += 4
        ethertype = struct.unpack_from("!H", frame, offset)[0]
    return frame[offset + 2 :] if ethertype == _ETHERTYPE_IPV4 else None


def _udp_in_ipv4(packet: bytes) -> UdpDatagram | None:
    header_len = (packet[0] & 0x0F) * 4
    total_len, frag = struct.unpack_from("!H2xH", packet, 2)
    if packet[9] != _IPPROTO_UDP:
        return None
    if frag & 0x3FFF:  # MF flag or a fragment offset
        raise ValueError("fragmented IPv4 packets are not supported")
    src = str(ipaddress.IPv4Address(packet[12:16]))
    dst = str(ipaddress.IPv4Address(packet[16:20]))
    # Slice by the IP and UDP lengths: Ethernet pads short frames to 60 octets.
    udp = packet[header_len:total_len]
    sport, dport, udp_len = struct.unpack_from("!HHH", udp)
    return UdpDatagram(src, sport, dst, dport, udp[8:udp_len])


def udp_datagrams(path: str | Path) -> list[UdpDatagram]:
    """All UDP-over-IPv4 datagrams of a capture, in file order."""
    out = []
    for linktype, frame in read_frames(path):
        packet = _ipv4_packet(linktype, frame)
        if packet is None:
            continue
        datagram = _udp_in_ipv4(packet)
        if datagram is not None:
            out.append(datagram)
    return out


def strip_non_esp_marker(payload: bytes) -> bytes:
    """IKE behind the RFC 3948 non-ESP marker (strongSwan on any port but 500) as plain ISAKMP.

    An ISAKMP message starts with the initiator cookie, which is never zero,
    so four leading zero octets can only be the marker.
    """
    return payload[4:] if payload.startswith(NON_ESP_MARKER) else payload


def isakmp_messages(path: str | Path, port: int | None = None) -> list[UdpDatagram]:
    """UDP datagrams (to or from ``port`` if given) with any non-ESP marker removed."""
    return [
        UdpDatagram(d.src, d.sport, d.dst, d.dport, strip_non_esp_marker(d.payload))
        for d in udp_datagrams(path)
        if port is None or port in (d.sport, d.dport)
    ]


def split_payloads(data: bytes, first_type: int, start: int = 0) -> list[tuple[int, bytes]]:
    """ISAKMP payloads as (type, octets incl. the generic header), following Next Payload.

    Only the 4-octet generic headers (RFC 2408 §3.2) are read, so key-derivation
    tests can slice payloads without depending on any payload decoder; octets
    after the payload whose Next Payload is 0 (cipher padding) are ignored.
    """
    out = []
    current, pos = first_type, start
    while current != 0:
        if pos + 4 > len(data):
            raise ValueError(f"payload {current} header runs past the end at {pos}")
        following, _, length = struct.unpack_from("!BBH", data, pos)
        if length < 4 or pos + length > len(data):
            raise ValueError(f"payload {current} has a bad length {length} at {pos}")
        out.append((current, data[pos : pos + length]))
        current, pos = following, pos + length
    return out
