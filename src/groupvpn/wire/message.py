"""ISAKMP header (RFC 2408 §3.1) and the generic payload chain (§3.2).

Decoding is strict: the header's Length must equal the datagram, every payload
length must fit, the chain must end with Next Payload 0 exactly at the end of
the data.  Only an encrypted body may carry octets after the last payload
(block-cipher padding); they are returned as ``trailing`` so that encode after
decode reproduces the input.
"""

from __future__ import annotations

from dataclasses import dataclass

from groupvpn.wire import gdoi
from groupvpn.wire.buffer import Buffer, DecodeError
from groupvpn.wire.constants import (
    HEADER_LENGTH,
    ISAKMP_VERSION,
    ExchangeType,
    Flag,
    NotifyType,
    PayloadType,
)
from groupvpn.wire.dialect import V1, Dialect
from groupvpn.wire.payloads import (
    CertPayload,
    CertRequestPayload,
    DecodeContext,
    DeletePayload,
    HashPayload,
    IdPayload,
    KePayload,
    NatDDraftPayload,
    NatDPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SaPayload,
    SigPayload,
    VendorIdPayload,
    pull_generic_header,
)

_KNOWN_FLAGS = Flag.ENCRYPTION | Flag.COMMIT | Flag.AUTHENTICATION_ONLY

#: Payload bodies every exchange understands.
_COMMON_PAYLOADS: dict[int, type[Payload]] = {
    cls.payload_type: cls
    for cls in (
        SaPayload,
        KePayload,
        IdPayload,
        CertPayload,
        CertRequestPayload,
        HashPayload,
        SigPayload,
        NoncePayload,
        NotifyPayload,
        DeletePayload,
        VendorIdPayload,
        NatDPayload,
        NatDDraftPayload,
    )
}

_GDOI_EXCHANGES = (ExchangeType.GROUPKEY_PULL, ExchangeType.GROUPKEY_PUSH)


def payload_class(payload_type: int, ctx: DecodeContext) -> type[Payload] | None:
    """The class that decodes ``payload_type`` in this message, or None if unsupported.

    The SA payload has two layouts: RFC 2408 proposals in phase 1, and the GDOI
    SA (SA KEK / GAP / SA TEK) inside GROUPKEY-PULL and GROUPKEY-PUSH.
    """
    if ctx.exchange_type in _GDOI_EXCHANGES:
        gdoi_class = gdoi.gdoi_payload_class(payload_type, ctx.dialect)
        if gdoi_class is not None:
            return gdoi_class
    return _COMMON_PAYLOADS.get(payload_type)


@dataclass(frozen=True, slots=True)
class IsakmpHeader:
    initiator_cookie: bytes
    responder_cookie: bytes
    next_payload: int
    exchange_type: int
    flags: int
    message_id: int
    length: int
    version: int = ISAKMP_VERSION

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & Flag.ENCRYPTION)

    def encode(self) -> bytes:
        out = Buffer()
        out.push_bytes(self.initiator_cookie)
        out.push_bytes(self.responder_cookie)
        out.push_uint8(self.next_payload)
        out.push_uint8(self.version)
        out.push_uint8(self.exchange_type)
        out.push_uint8(self.flags)
        out.push_uint32(self.message_id)
        out.push_uint32(self.length)
        return out.getvalue()


def pull_header(data: bytes) -> IsakmpHeader:
    """Decode and check the fixed header of a whole datagram."""
    buf = Buffer(data)
    if len(data) < HEADER_LENGTH:
        raise DecodeError(f"datagram of {len(data)} octets is shorter than an ISAKMP header", 0)
    initiator_cookie = buf.pull_bytes(8)
    responder_cookie = buf.pull_bytes(8)
    next_payload = buf.pull_uint8()
    version = buf.pull_uint8()
    if version >> 4 != 1:
        raise DecodeError(f"major version {version >> 4}", 17, NotifyType.INVALID_MAJOR_VERSION)
    if version & 0x0F != 0:
        raise DecodeError(f"minor version {version & 0x0F}", 17, NotifyType.INVALID_MINOR_VERSION)
    exchange_type = buf.pull_uint8()
    flags = buf.pull_uint8()
    if flags & ~_KNOWN_FLAGS:
        raise DecodeError(f"unknown flags 0x{flags:02x}", 19, NotifyType.INVALID_FLAGS)
    message_id = buf.pull_uint32()
    length = buf.pull_uint32()
    if length != len(data):
        raise DecodeError(
            f"header length {length} but datagram has {len(data)} octets",
            24,
            NotifyType.UNEQUAL_PAYLOAD_LENGTHS,
        )
    return IsakmpHeader(
        initiator_cookie,
        responder_cookie,
        next_payload,
        exchange_type,
        flags,
        message_id,
        length,
        version,
    )


@dataclass(frozen=True, slots=True)
class PayloadChain:
    """Decoded payloads, each with the exact octets it arrived as (generic header included)."""

    payloads: tuple[Payload, ...]
    raw: tuple[bytes, ...]
    trailing: bytes = b""


def encode_payloads(payloads: tuple[Payload, ...] | list[Payload]) -> tuple[int, bytes]:
    """Encode a chain; return (type of the first payload, octets)."""
    out = Buffer()
    for index, payload in enumerate(payloads):
        following = payloads[index + 1].payload_type if index + 1 < len(payloads) else 0
        body = payload.encode_body()
        if len(body) + 4 > 0xFFFF:
            raise ValueError(f"payload {payload.payload_type} body too long ({len(body)} octets)")
        out.push_uint8(following)
        out.push_uint8(0)
        out.push_uint16(len(body) + 4)
        out.push_bytes(body)
    first = payloads[0].payload_type if payloads else PayloadType.NONE
    return first, out.getvalue()


def decode_payloads(
    data: bytes,
    first_type: int,
    ctx: DecodeContext,
    start: int = 0,
    allow_trailing: bool = False,
) -> PayloadChain:
    """Decode the chain that starts at ``data[start]`` with payload type ``first_type``."""
    buf = Buffer(data, start)
    payloads: list[Payload] = []
    raw: list[bytes] = []
    current = first_type
    while current != PayloadType.NONE:
        payload_start = buf.tell()
        cls = payload_class(current, ctx)
        if cls is None:
            raise DecodeError(
                f"unsupported payload type {current}",
                payload_start,
                NotifyType.INVALID_PAYLOAD_TYPE,
            )
        what = f"payload {current}"
        following, _, body_length = pull_generic_header(buf, what)
        with buf.pull_block(body_length, what) as body:
            payloads.append(cls.decode_body(body, ctx))
        raw.append(data[payload_start : buf.tell()])
        current = following
    trailing = buf.pull_rest()
    if trailing and not allow_trailing:
        raise DecodeError(
            f"{len(trailing)} octets after the last payload", buf.tell() - len(trailing)
        )
    return PayloadChain(tuple(payloads), tuple(raw), trailing)


@dataclass(frozen=True, slots=True)
class Message:
    """A cleartext ISAKMP message: header plus payloads."""

    header: IsakmpHeader
    payloads: tuple[Payload, ...]
    raw_payloads: tuple[bytes, ...] = ()


def encode_message(
    initiator_cookie: bytes,
    responder_cookie: bytes,
    exchange_type: int,
    payloads: tuple[Payload, ...] | list[Payload],
    message_id: int = 0,
    flags: int = 0,
) -> bytes:
    """Encode a cleartext message (phase 1 before keys, or an unprotected Notify)."""
    first, body = encode_payloads(payloads)
    header = IsakmpHeader(
        initiator_cookie,
        responder_cookie,
        first,
        exchange_type,
        flags,
        message_id,
        HEADER_LENGTH + len(body),
    )
    return header.encode() + body


def decode_message(data: bytes, dialect: Dialect = V1) -> Message:
    """Decode a whole cleartext datagram (the E flag must be clear)."""
    header = pull_header(data)
    if header.encrypted:
        raise DecodeError("message is encrypted", 19, NotifyType.INVALID_FLAGS)
    ctx = DecodeContext(header.exchange_type, dialect)
    chain = decode_payloads(data, header.next_payload, ctx, HEADER_LENGTH)
    return Message(header, chain.payloads, chain.raw)
