"""The GDOI SA payload family: SA (1), SA KEK (15), SA TEK (16) and GAP (22).

Inside GROUPKEY-PULL/PUSH the SA payload does not carry RFC 2408 proposals but
a chain of SA attribute payloads (gdoi-wire.md §4.1)::

    DOI (4) | Situation (4) | SA Attribute Next Payload (2) | RESERVED2 (2)
    [SAK] [GAP] SAT*        -- each with its own generic header

The SA payload's length covers the whole nested chain.  The two dialects
differ in the SA TEK ID Data Len width, the four octets after the SA KEK SPI,
and whether GAP exists (gdoi-wire.md §0.2, §10); the decoders take both from
``ctx.dialect``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar, Self

from groupvpn.wire.attributes import DataAttribute, pull_attributes, push_attributes
from groupvpn.wire.buffer import Buffer, DecodeError
from groupvpn.wire.constants import FIXED_ID_LENGTHS, IdType, NotifyType, PayloadType
from groupvpn.wire.gdoi_numbers import TekProtocol
from groupvpn.wire.payloads import (
    DecodeContext,
    Payload,
    pull_generic_header,
    push_generic_header,
)

KEK_SPI_LENGTH = 16
TEK_SPI_LENGTH = 4


# --- identity fields (SRC/DST of SA KEK and SA TEK) ----------------------------------


@dataclass(frozen=True, slots=True)
class GdoiId:
    """One SRC or DST identity of an SA KEK / SA TEK: ID type, port and data."""

    id_type: int
    port: int
    data: bytes

    @classmethod
    def ipv4(cls, address: str, port: int = 0) -> GdoiId:
        return cls(IdType.IPV4_ADDR, port, ipaddress.IPv4Address(address).packed)

    @classmethod
    def ipv4_subnet(cls, network: str, port: int = 0) -> GdoiId:
        """``"10.0.0.0/24"`` -> ID_IPV4_ADDR_SUBNET (address then mask)."""
        net = ipaddress.IPv4Network(network)
        return cls(IdType.IPV4_ADDR_SUBNET, port, net.network_address.packed + net.netmask.packed)

    @classmethod
    def ipv6(cls, address: str, port: int = 0) -> GdoiId:
        return cls(IdType.IPV6_ADDR, port, ipaddress.IPv6Address(address).packed)

    @classmethod
    def ipv6_subnet(cls, network: str, port: int = 0) -> GdoiId:
        net = ipaddress.IPv6Network(network)
        return cls(IdType.IPV6_ADDR_SUBNET, port, net.network_address.packed + net.netmask.packed)

    def describe(self) -> str:
        """A log-safe rendering such as ``10.0.0.0/24:848`` or ``id-type-11:000004d2``."""
        if self.id_type == IdType.IPV4_ADDR and len(self.data) == 4:
            text = str(ipaddress.IPv4Address(self.data))
        elif self.id_type == IdType.IPV6_ADDR and len(self.data) == 16:
            text = str(ipaddress.IPv6Address(self.data))
        elif (
            self.id_type in (IdType.IPV4_ADDR_SUBNET, IdType.IPV6_ADDR_SUBNET)
            and len(self.data) == FIXED_ID_LENGTHS[self.id_type]
        ):
            size = len(self.data) // 2
            address = ipaddress.ip_address(self.data[:size])
            mask = int.from_bytes(self.data[size:])
            prefix = mask.bit_count()
            if mask == ((1 << prefix) - 1) << (size * 8 - prefix):
                text = f"{address}/{prefix}"
            else:  # a non-contiguous mask
                text = f"{address}/{ipaddress.ip_address(self.data[size:])}"
        else:
            text = f"id-type-{self.id_type}:{self.data.hex()}"
        return f"{text}:{self.port}" if self.port else text

    def push(self, out: Buffer, length_octets: int) -> None:
        limit = 0xFF if length_octets == 1 else 0xFFFF
        if len(self.data) > limit:
            raise ValueError(f"ID data of {len(self.data)} octets needs more than {limit}")
        out.push_uint8(self.id_type)
        out.push_uint16(self.port)
        if length_octets == 1:
            out.push_uint8(len(self.data))
        else:
            out.push_uint16(len(self.data))
        out.push_bytes(self.data)

    @classmethod
    def pull(cls, buf: Buffer, length_octets: int, what: str) -> GdoiId:
        start = buf.tell()
        id_type = buf.pull_uint8(f"{what} ID type")
        port = buf.pull_uint16(f"{what} ID port")
        if length_octets == 1:
            length = buf.pull_uint8(f"{what} ID data length")
        else:
            length = buf.pull_uint16(f"{what} ID data length")
        if length > buf.remaining():
            raise DecodeError(
                f"{what} ID data length {length} exceeds the {buf.remaining()} octets left",
                buf.tell() - length_octets,
            )
        expected = FIXED_ID_LENGTHS.get(id_type)
        if expected is not None and length != expected:
            raise DecodeError(
                f"{what} ID type {id_type} needs {expected} octets of data, got {length}",
                start,
                NotifyType.INVALID_ID_INFORMATION,
            )
        return cls(id_type, port, buf.pull_bytes(length, f"{what} ID data"))


# --- SA KEK (15) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaKekPayload(Payload):
    """SA KEK: the rekey SA (gdoi-wire.md §4.2).  ID Data Len is 1 octet in both dialects.

    ``pop_algorithm`` / ``pop_key_length`` are RFC 3547's POP fields; RFC 6407 calls
    the same four octets RESERVED2, so the v2 decoder requires both to be zero.
    """

    payload_type: ClassVar[int] = PayloadType.SA_KEK
    protocol: int  # IP protocol of the rekey datagrams (17 = UDP)
    src: GdoiId
    dst: GdoiId
    spi: bytes  # 16 octets = CKY-I | CKY-R of GROUPKEY-PUSH
    attributes: tuple[DataAttribute, ...]
    pop_algorithm: int = 0  # v1 only; RESERVED2 (high half) in v2
    pop_key_length: int = 0  # v1 only; RESERVED2 (low half) in v2

    def encode_body(self) -> bytes:
        if len(self.spi) != KEK_SPI_LENGTH:
            raise ValueError(f"SA KEK SPI must be {KEK_SPI_LENGTH} octets, not {len(self.spi)}")
        out = Buffer()
        out.push_uint8(self.protocol)
        self.src.push(out, 1)
        self.dst.push(out, 1)
        out.push_bytes(self.spi)
        out.push_uint16(self.pop_algorithm)
        out.push_uint16(self.pop_key_length)
        push_attributes(out, self.attributes)
        return out.getvalue()

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        protocol = buf.pull_uint8("SA KEK protocol")
        src = GdoiId.pull(buf, 1, "SA KEK SRC")
        dst = GdoiId.pull(buf, 1, "SA KEK DST")
        spi = buf.pull_bytes(KEK_SPI_LENGTH, "SA KEK SPI")
        field_start = buf.tell()
        pop_algorithm = buf.pull_uint16("SA KEK POP algorithm / RESERVED2")
        pop_key_length = buf.pull_uint16("SA KEK POP key length / RESERVED2")
        if not ctx.dialect.sak_has_pop_fields and (pop_algorithm or pop_key_length):
            raise DecodeError(
                f"SA KEK RESERVED2 is {pop_algorithm:04x}{pop_key_length:04x}, must be 0",
                field_start,
            )
        attributes = pull_attributes(buf, "SA KEK")
        return cls(protocol, src, dst, spi, attributes, pop_algorithm, pop_key_length)


# --- SA TEK (16) -----------------------------------------------------------------------

#: TEK protocols whose body is the ESP/AH layout of gdoi-wire.md §4.4.
_IPSEC_TEK_PROTOCOLS = frozenset({TekProtocol.IPSEC_ESP, TekProtocol.IPSEC_AH})


@dataclass(frozen=True, slots=True)
class IpsecTek:
    """The ESP/AH protocol-specific body of an SA TEK."""

    protocol: int  # IP protocol selector, 0 = any
    src: GdoiId
    dst: GdoiId
    transform_id: int  # EspTransform / AhTransform
    spi: bytes  # 4 octets
    attributes: tuple[DataAttribute, ...]  # IpsecAttribute types

    def push(self, out: Buffer, id_length_octets: int) -> None:
        if len(self.spi) != TEK_SPI_LENGTH:
            raise ValueError(f"SA TEK SPI must be {TEK_SPI_LENGTH} octets, not {len(self.spi)}")
        out.push_uint8(self.protocol)
        self.src.push(out, id_length_octets)
        self.dst.push(out, id_length_octets)
        out.push_uint8(self.transform_id)
        out.push_bytes(self.spi)
        push_attributes(out, self.attributes)

    @classmethod
    def pull(cls, buf: Buffer, id_length_octets: int) -> IpsecTek:
        protocol = buf.pull_uint8("SA TEK protocol")
        src = GdoiId.pull(buf, id_length_octets, "SA TEK SRC")
        dst = GdoiId.pull(buf, id_length_octets, "SA TEK DST")
        transform_id = buf.pull_uint8("SA TEK transform ID")
        spi = buf.pull_bytes(TEK_SPI_LENGTH, "SA TEK SPI")
        attributes = pull_attributes(buf, "SA TEK")
        return cls(protocol, src, dst, transform_id, spi, attributes)


@dataclass(frozen=True, slots=True)
class SaTekPayload(Payload):
    """SA TEK: one traffic SA.  ``spec`` is an :class:`IpsecTek` for ESP/AH, else opaque bytes.

    The ESP/AH ID Data Len width comes from the dialect, so encoding takes it too
    (v2's 2-octet width by default).
    """

    payload_type: ClassVar[int] = PayloadType.SA_TEK
    protocol_id: int  # TekProtocol
    spec: IpsecTek | bytes
    id_length_octets: int = 2  # not a wire field: the dialect's SRC/DST ID Data Len width

    def __post_init__(self) -> None:
        if (self.protocol_id in _IPSEC_TEK_PROTOCOLS) != isinstance(self.spec, IpsecTek):
            raise ValueError(
                f"SA TEK protocol {self.protocol_id} needs "
                + ("an IpsecTek body" if self.protocol_id in _IPSEC_TEK_PROTOCOLS else "bytes")
            )
        if self.id_length_octets not in (1, 2):
            raise ValueError(f"ID data length width {self.id_length_octets} is not 1 or 2")

    @property
    def ipsec(self) -> IpsecTek | None:
        return self.spec if isinstance(self.spec, IpsecTek) else None

    def encode_body(self) -> bytes:
        out = Buffer()
        out.push_uint8(self.protocol_id)
        if isinstance(self.spec, IpsecTek):
            self.spec.push(out, self.id_length_octets)
        else:
            out.push_bytes(self.spec)
        return out.getvalue()

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        protocol_id = buf.pull_uint8("SA TEK protocol-ID")
        width = ctx.dialect.sat_id_length_octets
        if protocol_id in _IPSEC_TEK_PROTOCOLS:
            return cls(protocol_id, IpsecTek.pull(buf, width), width)
        return cls(protocol_id, buf.pull_rest(), width)


# --- GAP (22, v2 only) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GapPayload(Payload):
    """Group Associated Policy (RFC 6407): data attributes only (GapAttribute types)."""

    payload_type: ClassVar[int] = PayloadType.GAP
    attributes: tuple[DataAttribute, ...]

    def encode_body(self) -> bytes:
        out = Buffer()
        push_attributes(out, self.attributes)
        return out.getvalue()

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        return cls(pull_attributes(buf, "GAP"))


# --- the GDOI SA (1) -------------------------------------------------------------------

_NESTED_NAMES: dict[int, str] = {
    PayloadType.SA_KEK: "SA KEK",
    PayloadType.GAP: "GAP",
    PayloadType.SA_TEK: "SA TEK",
}


@dataclass(frozen=True, slots=True)
class GdoiSaPayload(Payload):
    """The SA payload of GROUPKEY-PULL/PUSH: at most one SAK, at most one GAP, then SATs."""

    payload_type: ClassVar[int] = PayloadType.SA
    doi: int  # 2 = GDOI
    situation: int  # 0
    kek: SaKekPayload | None = None
    gap: GapPayload | None = None
    teks: tuple[SaTekPayload, ...] = ()

    def nested(self) -> tuple[Payload, ...]:
        """The SA attribute payloads in wire order."""
        head: tuple[Payload, ...] = tuple(p for p in (self.kek, self.gap) if p is not None)
        return head + self.teks

    def encode_body(self) -> bytes:
        nested = self.nested()
        if not nested:
            raise ValueError("a GDOI SA needs at least one SA KEK, GAP or SA TEK")
        out = Buffer()
        out.push_uint32(self.doi)
        out.push_uint32(self.situation)
        out.push_uint16(nested[0].payload_type)
        out.push_uint16(0)
        for index, payload in enumerate(nested):
            following = nested[index + 1].payload_type if index + 1 < len(nested) else 0
            push_generic_header(out, following, payload.encode_body())
        return out.getvalue()

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        doi = buf.pull_uint32("GDOI SA DOI")
        situation = buf.pull_uint32("GDOI SA situation")
        field_start = buf.tell()
        current = buf.pull_uint16("GDOI SA attribute next payload")
        reserved = buf.pull_uint16("GDOI SA RESERVED2")
        if reserved != 0:
            raise DecodeError(f"GDOI SA RESERVED2 is {reserved}, must be 0", field_start + 2)
        if current == PayloadType.NONE:
            raise DecodeError("GDOI SA carries no SA KEK, GAP or SA TEK", field_start)
        kek: SaKekPayload | None = None
        gap: GapPayload | None = None
        teks: list[SaTekPayload] = []
        while current != PayloadType.NONE:
            start = buf.tell()
            name = _NESTED_NAMES.get(current)
            if name is None or (current == PayloadType.GAP and not ctx.dialect.has_gap):
                raise DecodeError(
                    f"payload type {current} inside a GDOI SA ({ctx.dialect.name} dialect)",
                    start,
                    NotifyType.INVALID_PAYLOAD_TYPE,
                )
            following, _, size = pull_generic_header(buf, name)
            with buf.pull_block(size, name) as body:
                if current == PayloadType.SA_KEK:
                    if kek is not None or gap is not None or teks:
                        raise DecodeError("SA KEK must come first and only once", start)
                    kek = SaKekPayload.decode_body(body, ctx)
                elif current == PayloadType.GAP:
                    if gap is not None or teks:
                        raise DecodeError("GAP must precede the SA TEKs and occur once", start)
                    gap = GapPayload.decode_body(body, ctx)
                else:
                    teks.append(SaTekPayload.decode_body(body, ctx))
            current = following
        buf.expect_end("GDOI SA")
        return cls(doi, situation, kek, gap, tuple(teks))
