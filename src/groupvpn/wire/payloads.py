"""ISAKMP payload bodies of RFC 2408 §3.4-3.16 (the generic header lives in message.py).

Each payload is a frozen dataclass with ``encode_body()`` and a ``decode_body``
classmethod that must consume its window exactly.  The payload's own generic
header (next payload, reserved, length) is handled once, in
:mod:`groupvpn.wire.message`, for every payload type.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar, Self

from groupvpn.wire.attributes import DataAttribute, pull_attributes, push_attributes
from groupvpn.wire.buffer import Buffer, DecodeError
from groupvpn.wire.constants import FIXED_ID_LENGTHS, IdType, NotifyType, PayloadType
from groupvpn.wire.dialect import Dialect


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """What a payload decoder may need to know about the message around it."""

    exchange_type: int
    dialect: Dialect


class Payload:
    """Base of every payload body.  Subclasses set ``payload_type``."""

    payload_type: ClassVar[int]

    def encode_body(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        raise NotImplementedError


def push_generic_header(out: Buffer, next_payload: int, body: bytes) -> None:
    if len(body) + 4 > 0xFFFF:
        raise ValueError(f"payload body of {len(body)} octets does not fit a 16-bit length")
    out.push_uint8(next_payload)
    out.push_uint8(0)
    out.push_uint16(len(body) + 4)
    out.push_bytes(body)


def pull_generic_header(buf: Buffer, what: str) -> tuple[int, int, int]:
    """Return (next payload, body start, body length) and check the length fits."""
    start = buf.tell()
    if buf.remaining() < 4:
        raise DecodeError(f"{what}: generic header needs 4 octets, {buf.remaining()} left", start)
    next_payload = buf.pull_uint8(f"{what} next payload")
    reserved = buf.pull_uint8(f"{what} reserved")
    if reserved != 0:
        raise DecodeError(f"{what} RESERVED octet is {reserved}, must be 0", start + 1)
    length = buf.pull_uint16(f"{what} length")
    if length < 4:
        raise DecodeError(
            f"{what} length {length} is shorter than its header",
            start + 2,
            NotifyType.UNEQUAL_PAYLOAD_LENGTHS,
        )
    if length - 4 > buf.remaining():
        raise DecodeError(
            f"{what} length {length} runs past the end ({buf.remaining() + 4} octets left)",
            start + 2,
            NotifyType.UNEQUAL_PAYLOAD_LENGTHS,
        )
    return next_payload, buf.tell(), length - 4


# --- SA / Proposal / Transform (RFC 2408 §3.4-3.6) ----------------------------


@dataclass(frozen=True, slots=True)
class Transform:
    number: int
    transform_id: int
    attributes: tuple[DataAttribute, ...]

    def encode(self, out: Buffer, last: bool) -> None:
        body = Buffer()
        body.push_uint8(self.number)
        body.push_uint8(self.transform_id)
        body.push_uint16(0)
        push_attributes(body, self.attributes)
        push_generic_header(
            out, PayloadType.NONE if last else PayloadType.TRANSFORM, body.getvalue()
        )

    @classmethod
    def pull(cls, buf: Buffer) -> tuple[Transform, int]:
        next_payload, start, size = pull_generic_header(buf, "transform")
        with buf.pull_block(size, "transform") as body:
            number = body.pull_uint8("transform number")
            transform_id = body.pull_uint8("transform id")
            reserved = body.pull_uint16("transform RESERVED2")
            if reserved != 0:
                raise DecodeError(f"transform RESERVED2 is {reserved}, must be 0", start + 2)
            attributes = pull_attributes(body, "transform")
        return cls(number, transform_id, attributes), next_payload


@dataclass(frozen=True, slots=True)
class Proposal:
    number: int
    protocol_id: int
    spi: bytes
    transforms: tuple[Transform, ...]

    def encode(self, out: Buffer, last: bool) -> None:
        if len(self.transforms) > 255:
            raise ValueError("more than 255 transforms in one proposal")
        body = Buffer()
        body.push_uint8(self.number)
        body.push_uint8(self.protocol_id)
        body.push_uint8(len(self.spi))
        body.push_uint8(len(self.transforms))
        body.push_bytes(self.spi)
        for index, transform in enumerate(self.transforms):
            transform.encode(body, last=index == len(self.transforms) - 1)
        push_generic_header(
            out, PayloadType.NONE if last else PayloadType.PROPOSAL, body.getvalue()
        )

    @classmethod
    def pull(cls, buf: Buffer) -> tuple[Proposal, int]:
        next_payload, start, size = pull_generic_header(buf, "proposal")
        with buf.pull_block(size, "proposal") as body:
            number = body.pull_uint8("proposal number")
            protocol_id = body.pull_uint8("proposal protocol id")
            spi_size = body.pull_uint8("proposal SPI size")
            count = body.pull_uint8("proposal transform count")
            spi = body.pull_bytes(spi_size, "proposal SPI")
            transforms = []
            following: int = PayloadType.TRANSFORM if count else PayloadType.NONE
            while following == PayloadType.TRANSFORM:
                transform, following = Transform.pull(body)
                transforms.append(transform)
            if following != PayloadType.NONE:
                raise DecodeError(f"transform chain continues with payload type {following}", start)
            if len(transforms) != count:
                raise DecodeError(
                    f"proposal announces {count} transforms but carries {len(transforms)}", start
                )
        return cls(number, protocol_id, spi, tuple(transforms)), next_payload


@dataclass(frozen=True, slots=True)
class SaPayload(Payload):
    """The RFC 2408 SA layout (phase 1, under the IPsec or the GDOI DOI)."""

    payload_type: ClassVar[int] = PayloadType.SA
    doi: int
    situation: int
    proposals: tuple[Proposal, ...]

    def encode_body(self) -> bytes:
        if not self.proposals:
            # decode_body requires at least one proposal (RFC 2408 §3.4).
            raise ValueError("an SA payload needs at least one proposal")
        out = Buffer()
        out.push_uint32(self.doi)
        out.push_uint32(self.situation)
        for index, proposal in enumerate(self.proposals):
            proposal.encode(out, last=index == len(self.proposals) - 1)
        return out.getvalue()

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        start = buf.tell()
        doi = buf.pull_uint32("SA DOI")
        situation = buf.pull_uint32("SA situation")
        proposals = []
        following: int = PayloadType.PROPOSAL
        while following == PayloadType.PROPOSAL:
            proposal, following = Proposal.pull(buf)
            proposals.append(proposal)
        if following != PayloadType.NONE:
            raise DecodeError(f"proposal chain continues with payload type {following}", start)
        return cls(doi, situation, tuple(proposals))


# --- simple payloads -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _OpaquePayload(Payload):
    """A payload whose body is one opaque octet string."""

    data: bytes

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        return cls(buf.pull_rest())


@dataclass(frozen=True, slots=True)
class KePayload(_OpaquePayload):
    payload_type: ClassVar[int] = PayloadType.KE


@dataclass(frozen=True, slots=True)
class HashPayload(_OpaquePayload):
    payload_type: ClassVar[int] = PayloadType.HASH


@dataclass(frozen=True, slots=True)
class SigPayload(_OpaquePayload):
    payload_type: ClassVar[int] = PayloadType.SIG


@dataclass(frozen=True, slots=True)
class VendorIdPayload(_OpaquePayload):
    payload_type: ClassVar[int] = PayloadType.VENDOR_ID


@dataclass(frozen=True, slots=True)
class NoncePayload(_OpaquePayload):
    payload_type: ClassVar[int] = PayloadType.NONCE

    def encode_body(self) -> bytes:
        if not 8 <= len(self.data) <= 256:
            raise ValueError(f"nonce of {len(self.data)} octets (must be 8..256)")
        return self.data

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        # RFC 2409 §5: nonces are 8 to 256 octets.
        if not 8 <= buf.remaining() <= 256:
            raise DecodeError(f"nonce of {buf.remaining()} octets (must be 8..256)", buf.tell())
        return cls(buf.pull_rest())


@dataclass(frozen=True, slots=True)
class NatDPayload(_OpaquePayload):
    """NAT-D (RFC 3947): carried by strongSwan; we read it and leave it."""

    payload_type: ClassVar[int] = PayloadType.NAT_D


@dataclass(frozen=True, slots=True)
class NatDDraftPayload(_OpaquePayload):
    payload_type: ClassVar[int] = PayloadType.NAT_D_DRAFT


@dataclass(frozen=True, slots=True)
class CertPayload(Payload):
    payload_type: ClassVar[int] = PayloadType.CERT
    encoding: int
    data: bytes

    def encode_body(self) -> bytes:
        return bytes([self.encoding]) + self.data

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        return cls(buf.pull_uint8("certificate encoding"), buf.pull_rest())


@dataclass(frozen=True, slots=True)
class CertRequestPayload(Payload):
    payload_type: ClassVar[int] = PayloadType.CR
    cert_type: int
    authority: bytes

    def encode_body(self) -> bytes:
        return bytes([self.cert_type]) + self.authority

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        return cls(buf.pull_uint8("certificate type"), buf.pull_rest())


@dataclass(frozen=True, slots=True)
class IdPayload(Payload):
    """Identification payload (RFC 2407 §4.6.2); GDOI reuses it for the group ID."""

    payload_type: ClassVar[int] = PayloadType.ID
    id_type: int
    protocol: int
    port: int
    data: bytes

    def encode_body(self) -> bytes:
        out = Buffer()
        out.push_uint8(self.id_type)
        out.push_uint8(self.protocol)
        out.push_uint16(self.port)
        out.push_bytes(self.data)
        return out.getvalue()

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        start = buf.tell()
        id_type = buf.pull_uint8("ID type")
        protocol = buf.pull_uint8("ID protocol")
        port = buf.pull_uint16("ID port")
        data = buf.pull_rest()
        expected = FIXED_ID_LENGTHS.get(id_type)
        if expected is not None and len(data) != expected:
            raise DecodeError(
                f"ID type {id_type} needs {expected} octets of data, got {len(data)}", start
            )
        return cls(id_type, protocol, port, data)

    # Constructors and a readable form for the identity types operators configure.
    @classmethod
    def ipv4(cls, address: str) -> IdPayload:
        return cls(IdType.IPV4_ADDR, 0, 0, ipaddress.IPv4Address(address).packed)

    @classmethod
    def fqdn(cls, name: str) -> IdPayload:
        return cls(IdType.FQDN, 0, 0, name.encode("ascii"))

    @classmethod
    def user_fqdn(cls, name: str) -> IdPayload:
        return cls(IdType.USER_FQDN, 0, 0, name.encode("ascii"))

    @classmethod
    def key_id(cls, key: bytes) -> IdPayload:
        return cls(IdType.KEY_ID, 0, 0, key)

    def describe(self) -> str:
        """A one-line, log-safe rendering such as ``fqdn:peer.lab``."""
        if self.id_type == IdType.IPV4_ADDR:
            return f"ipv4:{ipaddress.IPv4Address(self.data)}"
        if self.id_type in (IdType.FQDN, IdType.USER_FQDN):
            kind = "fqdn" if self.id_type == IdType.FQDN else "user-fqdn"
            return f"{kind}:{_printable(self.data)}"
        if self.id_type == IdType.KEY_ID:
            return f"key-id:{self.data.hex()}"
        return f"id-type-{self.id_type}:{self.data.hex()}"


def _printable(data: bytes) -> str:
    """Peer-supplied text made safe for one log line: anything but printable ASCII is escaped."""
    return "".join(
        chr(octet) if 0x20 < octet < 0x7F and octet != 0x5C else f"\\x{octet:02x}" for octet in data
    )


@dataclass(frozen=True, slots=True)
class NotifyPayload(Payload):
    payload_type: ClassVar[int] = PayloadType.NOTIFY
    doi: int
    protocol_id: int
    notify_type: int
    spi: bytes = b""
    data: bytes = b""

    def encode_body(self) -> bytes:
        out = Buffer()
        out.push_uint32(self.doi)
        out.push_uint8(self.protocol_id)
        out.push_uint8(len(self.spi))
        out.push_uint16(self.notify_type)
        out.push_bytes(self.spi)
        out.push_bytes(self.data)
        return out.getvalue()

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        doi = buf.pull_uint32("notify DOI")
        protocol_id = buf.pull_uint8("notify protocol id")
        spi_size = buf.pull_uint8("notify SPI size")
        notify_type = buf.pull_uint16("notify type")
        spi = buf.pull_bytes(spi_size, "notify SPI")
        return cls(doi, protocol_id, notify_type, spi, buf.pull_rest())

    @property
    def is_error(self) -> bool:
        return self.notify_type < NotifyType.CONNECTED


@dataclass(frozen=True, slots=True)
class DeletePayload(Payload):
    payload_type: ClassVar[int] = PayloadType.DELETE
    doi: int
    protocol_id: int
    spi_size: int
    spis: tuple[bytes, ...]

    def encode_body(self) -> bytes:
        if any(len(spi) != self.spi_size for spi in self.spis):
            raise ValueError("every SPI in a Delete payload must be spi_size octets")
        out = Buffer()
        out.push_uint32(self.doi)
        out.push_uint8(self.protocol_id)
        out.push_uint8(self.spi_size)
        out.push_uint16(len(self.spis))
        for spi in self.spis:
            out.push_bytes(spi)
        return out.getvalue()

    @classmethod
    def decode_body(cls, buf: Buffer, ctx: DecodeContext) -> Self:
        doi = buf.pull_uint32("delete DOI")
        protocol_id = buf.pull_uint8("delete protocol id")
        spi_size = buf.pull_uint8("delete SPI size")
        count = buf.pull_uint16("delete SPI count")
        spis = tuple(buf.pull_bytes(spi_size, "delete SPI") for _ in range(count))
        return cls(doi, protocol_id, spi_size, spis)
