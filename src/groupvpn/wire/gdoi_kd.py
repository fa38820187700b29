"""GDOI Key Download (17) and Sequence Number (18) payloads (gdoi-wire.md §4.5, §4.6).

Key packets carry key material, so :class:`KeyPacket` shows attribute types and
lengths in its ``repr``, never the octets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from groupvpn.wire.attributes import DataAttribute, pull_attributes, push_attributes
from groupvpn.wire.buffer import Buffer, DecodeError
from groupvpn.wire.constants import PayloadType
from groupvpn.wire.gdoi_numbers import KdType
from groupvpn.wire.payloads import DecodeContext, Payload

#: SPI sizes fixed by the key packet type.  A TEK's SPI size depends on its TEK
#: protocol (4 for ESP/AH), so the core checks it against the SA TEK instead.
_KD_SPI_SIZES: dict[int, int] = {KdType.KEK: 16, KdType.SID: 0}

#: KD Type, RESERVED, KD Length and SPI Size.
_KEY_PACKET_FIXED = 5


def _kd_type_name(kd_type: int) -> str:
    try:
        return KdType(kd_type).name
    except ValueError:
        return str(kd_type)


@dataclass(frozen=True, slots=True)
class KeyPacket:
    """One key packet: KD type, SPI and key attributes (TekKeyAttribute, KekKeyAttribute...)."""

    kd_type: int  # KdType
    spi: bytes
    attributes: tuple[DataAttribute, ...]

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{a.type}={a.value}"
            if isinstance(a.value, int)
            else f"{a.type}:<{len(a.value)} octets>"
            for a in self.attributes
        )
        return (
            f"KeyPacket(kd_type={_kd_type_name(self.kd_type)}, spi={self.spi.hex()}, "
            f"attributes=[{shown}])"
        )

    def push(self, out: Buffer) -> None:
        if len(self.spi) > 0xFF:
            raise ValueError(f"key packet SPI of {len(self.spi)} octets")
        attributes = Buffer()
        push_attributes(attributes, self.attributes)
        length = _KEY_PACKET_FIXED + len(self.spi) + attributes.written()
        if length > 0xFFFF:
            raise ValueError(f"key packet of {length} octets does not fit a 16-bit length")
        out.push_uint8(self.kd_type)
        out.push_uint8(0)
        out.push_uint16(length)
        out.push_uint8(len(self.spi))
        out.push_bytes(self.spi)
        out.push_bytes(attributes.getvalue())

    @classmethod
    def pull(cls, buf: Buffer, index: int) -> KeyPacket:
        what = f"key packet {index}"
        start = buf.tell()
        kd_type = buf.pull_uint8(f"{what} KD type")
        reserved = buf.pull_uint8(f"{what} RESERVED")
        if reserved != 0:
            raise DecodeError(f"{what} RESERVED is {reserved}, must be 0", start + 1)
        length = buf.pull_uint16(f"{what} KD length")
        if length < _KEY_PACKET_FIXED:
            raise DecodeError(f"{what} KD length {length} is shorter than its header", start + 2)
        with buf.pull_block(length - 4, what) as body:
            spi_size = body.pull_uint8(f"{what} SPI size")
            expected = _KD_SPI_SIZES.get(kd_type)
            if expected is not None and spi_size != expected:
                raise DecodeError(
                    f"{what} ({_kd_type_name(kd_type)}) SPI size {spi_size}, must be {expected}",
                    start + 4,
                )
            spi = body.pull_bytes(spi_size, f"{what} SPI")
            attributes = pull_attributes(body, what)
        return cls(kd_type, spi, attributes)


@dataclass(frozen=True, slots=True)
class KeyDownloadPayload(Payload):
    """Key Download: Number of Key Packets (2) | RESERVED2 (2) | key packets."""

    payload_type: ClassVar[int] = PayloadType.KD
    packets: tuple[KeyPacket, ...]

    def encode_body(self) -> bytes:
        if len(self.packets) > 0xFFFF:
            raise ValueError("more than 65535 key packets")
        out = Buffer()
        out.push_uint16(len(self.packets))
        out.push_uint16(0)
        for packet in self.packets:
            packet.push(out)
        return out.getvalue()

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        start = buf.tell()
        count = buf.pull_uint16("KD number of key packets")
        reserved = buf.pull_uint16("KD RESERVED2")
        if reserved != 0:
            raise DecodeError(f"KD RESERVED2 is {reserved}, must be 0", start + 2)
        packets = []
        for index in range(count):
            if buf.eof():
                raise DecodeError(f"KD announces {count} key packets but carries {index}", start)
            packets.append(KeyPacket.pull(buf, index))
        if not buf.eof():
            raise DecodeError(
                f"KD announces {count} key packets but {buf.remaining()} octets follow them",
                buf.tell(),
            )
        return cls(tuple(packets))

    def find(self, kd_type: int) -> tuple[KeyPacket, ...]:
        return tuple(packet for packet in self.packets if packet.kd_type == kd_type)


@dataclass(frozen=True, slots=True)
class SeqPayload(Payload):
    """Sequence Number: exactly four octets."""

    payload_type: ClassVar[int] = PayloadType.SEQ
    sequence: int

    def encode_body(self) -> bytes:
        out = Buffer()
        out.push_uint32(self.sequence)
        return out.getvalue()

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        if buf.remaining() != 4:
            raise DecodeError(f"SEQ body of {buf.remaining()} octets, must be 4", buf.tell())
        return cls(buf.pull_uint32("SEQ sequence number"))
