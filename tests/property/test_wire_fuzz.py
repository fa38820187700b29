"""Property and fuzz tests for every wire decoder.

The rule, as h11 states it for its reader: no matter what bytes a peer sends,
a decoder either decodes them or raises DecodeError, never any other
exception.  And whatever decodes re-encodes to exactly the octets it came from.

(a) generated payloads of every type, both dialects: encode -> decode -> equal;
(b) random bytes and mutated valid encodings into every decoder entry point;
(c) h11's three-way reader check on every known-answer message: the whole input
    decodes, every proper prefix fails, trailing junk fails (or is returned as
    ``trailing`` where padding is allowed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.buffer import Buffer, DecodeError
from groupvpn.wire.constants import (
    FIXED_ID_LENGTHS,
    HEADER_LENGTH,
    ExchangeType,
    PayloadType,
)
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.gdoi import (
    GapPayload,
    GdoiId,
    GdoiSaPayload,
    IpsecTek,
    KeyDownloadPayload,
    KeyPacket,
    SaKekPayload,
    SaTekPayload,
    SeqPayload,
)
from groupvpn.wire.gdoi_numbers import KdType, TekProtocol
from groupvpn.wire.message import (
    PayloadChain,
    decode_message,
    decode_payloads,
    encode_message,
    encode_payloads,
)
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
    Proposal,
    SaPayload,
    SigPayload,
    Transform,
    VendorIdPayload,
)
from tests.vectors import cisco_loopback as loopback
from tests.vectors import gdoi_cisco as vec

T = TypeVar("T")

BOUNDED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIALECTS = (V1, V2)
EXCHANGES = (
    ExchangeType.IDENTITY_PROTECTION,
    ExchangeType.AGGRESSIVE,
    ExchangeType.INFORMATIONAL,
    ExchangeType.GROUPKEY_PULL,
    ExchangeType.GROUPKEY_PUSH,
)
CONTEXTS = [DecodeContext(exchange, dialect) for exchange in EXCHANGES for dialect in DIALECTS]
PAYLOAD_CLASSES: list[type[Payload]] = [
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
    GdoiSaPayload,
    SaKekPayload,
    SaTekPayload,
    GapPayload,
    KeyDownloadPayload,
    SeqPayload,
]

FREE_ID_TYPES = [t for t in range(256) if t not in FIXED_ID_LENGTHS]

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
small_bytes = st.binary(max_size=48)


# --- strategies: (a) ---------------------------------------------------------------------

attribute = st.one_of(
    st.builds(DataAttribute, st.integers(0, 0x7FFF), u16),
    st.builds(DataAttribute, st.integers(0, 0x7FFF), st.binary(max_size=40)),
)
attributes = st.lists(attribute, max_size=5).map(tuple)


@st.composite
def id_type_and_data(draw: st.DrawFn) -> tuple[int, bytes]:
    if draw(st.booleans()):
        id_type = draw(st.sampled_from(sorted(FIXED_ID_LENGTHS)))
        size = FIXED_ID_LENGTHS[id_type]
        return id_type, draw(st.binary(min_size=size, max_size=size))
    return draw(st.sampled_from(FREE_ID_TYPES)), draw(small_bytes)


gdoi_id = st.builds(lambda td, port: GdoiId(td[0], port, td[1]), id_type_and_data(), u16)


def sa_kek(dialect: Dialect) -> st.SearchStrategy[SaKekPayload]:
    pop = u16 if dialect.sak_has_pop_fields else st.just(0)
    return st.builds(
        SaKekPayload,
        u8,
        gdoi_id,
        gdoi_id,
        st.binary(min_size=16, max_size=16),
        attributes,
        pop,
        pop,
    )


def sa_tek(dialect: Dialect) -> st.SearchStrategy[SaTekPayload]:
    ipsec = st.builds(
        IpsecTek, u8, gdoi_id, gdoi_id, u8, st.binary(min_size=4, max_size=4), attributes
    )
    width = st.just(dialect.sat_id_length_octets)
    return st.one_of(
        st.builds(
            SaTekPayload,
            st.sampled_from([TekProtocol.IPSEC_ESP, TekProtocol.IPSEC_AH]),
            ipsec,
            width,
        ),
        st.builds(
            SaTekPayload,
            u8.filter(lambda p: p not in (TekProtocol.IPSEC_ESP, TekProtocol.IPSEC_AH)),
            small_bytes,
            width,
        ),
    )


gap = st.builds(GapPayload, attributes)


def gdoi_sa(dialect: Dialect) -> st.SearchStrategy[GdoiSaPayload]:
    return st.builds(
        GdoiSaPayload,
        u32,
        u32,
        st.none() | sa_kek(dialect),
        (st.none() | gap) if dialect.has_gap else st.none(),
        st.lists(sa_tek(dialect), max_size=3).map(tuple),
    ).filter(lambda sa: bool(sa.nested()))


@st.composite
def key_packet(draw: st.DrawFn) -> KeyPacket:
    kd_type = draw(st.sampled_from([*KdType, 0, 5, 200]))
    size = {KdType.KEK: 16, KdType.SID: 0}.get(kd_type)
    spi = draw(small_bytes if size is None else st.binary(min_size=size, max_size=size))
    return KeyPacket(kd_type, spi, draw(attributes))


key_download = st.builds(KeyDownloadPayload, st.lists(key_packet(), max_size=4).map(tuple))
seq = st.builds(SeqPayload, u32)


def gdoi_payload(dialect: Dialect) -> st.SearchStrategy[Payload]:
    choices: list[st.SearchStrategy[Payload]] = [
        gdoi_sa(dialect),
        sa_kek(dialect),
        sa_tek(dialect),
        key_download,
        seq,
    ]
    if dialect.has_gap:
        choices.append(gap)
    return st.one_of(choices)


@st.composite
def ike_id(draw: st.DrawFn) -> IdPayload:
    id_type, data = draw(id_type_and_data())
    return IdPayload(id_type, draw(u8), draw(u16), data)


@st.composite
def delete(draw: st.DrawFn) -> DeletePayload:
    size = draw(st.integers(0, 16))
    spis = draw(st.lists(st.binary(min_size=size, max_size=size), max_size=4))
    return DeletePayload(draw(u32), draw(u8), size, tuple(spis))


transform = st.builds(Transform, u8, u8, attributes)
proposal = st.builds(
    Proposal, u8, u8, st.binary(max_size=16), st.lists(transform, max_size=3).map(tuple)
)
isakmp_sa = st.builds(SaPayload, u32, u32, st.lists(proposal, min_size=1, max_size=3).map(tuple))

# Payloads every exchange decodes the same way (everything but the SA).
common_payload: st.SearchStrategy[Payload] = st.one_of(
    st.builds(KePayload, small_bytes),
    ike_id(),
    st.builds(CertPayload, u8, small_bytes),
    st.builds(CertRequestPayload, u8, small_bytes),
    st.builds(HashPayload, small_bytes),
    st.builds(SigPayload, small_bytes),
    st.builds(NoncePayload, st.binary(min_size=8, max_size=256)),
    st.builds(NotifyPayload, u32, u8, u16, st.binary(max_size=16), small_bytes),
    delete(),
    st.builds(VendorIdPayload, small_bytes),
    st.builds(NatDPayload, small_bytes),
    st.builds(NatDDraftPayload, small_bytes),
)

phase1_ctx = st.builds(
    DecodeContext,
    st.sampled_from(
        [ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE, ExchangeType.INFORMATIONAL]
    ),
    st.sampled_from(DIALECTS),
)


@st.composite
def payload_in_context(draw: st.DrawFn) -> tuple[Payload, DecodeContext]:
    if draw(st.booleans()):
        ctx = draw(phase1_ctx)
        return draw(st.one_of(isakmp_sa, common_payload)), ctx
    dialect = draw(st.sampled_from(DIALECTS))
    exchange = draw(st.sampled_from([ExchangeType.GROUPKEY_PULL, ExchangeType.GROUPKEY_PUSH]))
    return draw(st.one_of(gdoi_payload(dialect), common_payload)), DecodeContext(exchange, dialect)


@st.composite
def chain_in_context(draw: st.DrawFn) -> tuple[list[Payload], DecodeContext]:
    if draw(st.booleans()):
        ctx = draw(phase1_ctx)
        element: st.SearchStrategy[Payload] = st.one_of(isakmp_sa, common_payload)
    else:
        dialect = draw(st.sampled_from(DIALECTS))
        exchange = draw(st.sampled_from([ExchangeType.GROUPKEY_PULL, ExchangeType.GROUPKEY_PUSH]))
        ctx = DecodeContext(exchange, dialect)
        element = st.one_of(gdoi_payload(dialect), common_payload)
    return draw(st.lists(element, max_size=5)), ctx


@BOUNDED
@given(payload_in_context())
def test_every_payload_type_roundtrips(case: tuple[Payload, DecodeContext]) -> None:
    payload, ctx = case
    body = payload.encode_body()
    buf = Buffer(body)
    assert type(payload).decode_body(buf, ctx) == payload
    assert buf.eof()


@BOUNDED
@given(chain_in_context(), st.binary(max_size=16))
def test_payload_chains_roundtrip(
    case: tuple[list[Payload], DecodeContext], padding: bytes
) -> None:
    payloads, ctx = case
    first, octets = encode_payloads(payloads)
    chain = decode_payloads(octets + padding, first, ctx, allow_trailing=True)
    assert chain.payloads == tuple(payloads)
    assert chain.trailing == padding
    assert b"".join(chain.raw) == octets


@BOUNDED
@given(chain_in_context(), st.binary(min_size=8, max_size=8), u32)
def test_messages_roundtrip(
    case: tuple[list[Payload], DecodeContext], cookie: bytes, message_id: int
) -> None:
    payloads, ctx = case
    data = encode_message(cookie, bytes(8), ctx.exchange_type, payloads, message_id)
    message = decode_message(data, ctx.dialect)
    assert message.payloads == tuple(payloads)
    assert message.header.length == len(data)


# --- (b) only DecodeError, and whatever decodes re-encodes exactly ---------------------


def decodes_or_decode_error(call: Callable[[], T]) -> T | None:
    """Run a decoder; DecodeError is an answer, any other exception fails the test."""
    try:
        return call()
    except DecodeError as error:
        assert error.offset is None or error.offset >= 0
        return None


def check_chain(data: bytes, first_type: int, ctx: DecodeContext, allow_trailing: bool) -> None:
    chain: PayloadChain | None = decodes_or_decode_error(
        lambda: decode_payloads(data, first_type, ctx, allow_trailing=allow_trailing)
    )
    if chain is not None:
        first, octets = encode_payloads(chain.payloads)
        assert octets + chain.trailing == data
        assert first == (first_type if chain.payloads else PayloadType.NONE)


def check_message(data: bytes, dialect: Dialect) -> None:
    message = decodes_or_decode_error(lambda: decode_message(data, dialect))
    if message is not None:
        header = message.header
        again = encode_message(
            header.initiator_cookie,
            header.responder_cookie,
            header.exchange_type,
            message.payloads,
            header.message_id,
            header.flags,
        )
        assert again == data


def check_body(cls: type[Payload], data: bytes, ctx: DecodeContext) -> None:
    def decode() -> Payload:
        buf = Buffer(data)
        payload = cls.decode_body(buf, ctx)
        buf.expect_end(cls.__name__)
        return payload

    payload = decodes_or_decode_error(decode)
    if payload is not None:
        assert payload.encode_body() == data


def with_length(data: bytes) -> bytes:
    """Make the header's Length field agree, so the payload decoder is reached."""
    if len(data) < HEADER_LENGTH:
        return data
    return data[:24] + len(data).to_bytes(4) + data[28:]


@BOUNDED
@given(st.binary(max_size=200), st.sampled_from(DIALECTS), st.booleans())
def test_random_bytes_decode_message(data: bytes, dialect: Dialect, fix_length: bool) -> None:
    check_message(with_length(data) if fix_length else data, dialect)


@BOUNDED
@given(
    st.binary(min_size=28, max_size=28),
    st.sampled_from(EXCHANGES),
    st.sampled_from([0, *range(1, 19), 22, 130, 255]),
    st.binary(max_size=200),
    st.sampled_from(DIALECTS),
)
def test_random_payloads_behind_a_valid_header(
    header: bytes, exchange: int, first: int, body: bytes, dialect: Dialect
) -> None:
    data = header[:16] + bytes([first, 0x10, exchange, 0]) + header[20:24] + body
    check_message(with_length(data), dialect)


@BOUNDED
@given(
    st.binary(max_size=200),
    st.integers(0, 255),
    st.sampled_from(CONTEXTS),
    st.booleans(),
)
def test_random_bytes_decode_payloads(
    data: bytes, first_type: int, ctx: DecodeContext, allow_trailing: bool
) -> None:
    check_chain(data, first_type, ctx, allow_trailing)


@BOUNDED
@given(st.sampled_from(PAYLOAD_CLASSES), st.binary(max_size=120), st.sampled_from(CONTEXTS))
def test_random_bytes_decode_body(cls: type[Payload], data: bytes, ctx: DecodeContext) -> None:
    check_body(cls, data, ctx)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """Bit flips, overwrites, truncations, insertions and deletions of ``data``."""
    out = bytearray(data)
    for op in draw(st.lists(st.sampled_from("fstid"), min_size=1, max_size=4)):
        if op == "f" and out:
            out[draw(st.integers(0, len(out) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif op == "s" and out:
            out[draw(st.integers(0, len(out) - 1))] = draw(u8)
        elif op == "t":
            del out[draw(st.integers(0, len(out))) :]
        elif op == "i":
            at = draw(st.integers(0, len(out)))
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "d" and out:
            at = draw(st.integers(0, len(out) - 1))
            del out[at : at + draw(st.integers(1, 8))]
    return bytes(out)


@BOUNDED
@given(st.data(), payload_in_context())
def test_mutated_payload_bodies(data: st.DataObject, case: tuple[Payload, DecodeContext]) -> None:
    payload, ctx = case
    body = data.draw(mutated(payload.encode_body()))
    check_body(type(payload), body, ctx)
    # The same octets under every other dialect and exchange, too.
    check_body(type(payload), body, data.draw(st.sampled_from(CONTEXTS)))


@BOUNDED
@given(st.data(), chain_in_context(), st.booleans())
def test_mutated_payload_chains(
    data: st.DataObject, case: tuple[list[Payload], DecodeContext], allow_trailing: bool
) -> None:
    payloads, ctx = case
    first, octets = encode_payloads(payloads)
    check_chain(data.draw(mutated(octets)), first, ctx, allow_trailing)
    check_chain(data.draw(mutated(octets)), first, data.draw(st.sampled_from(CONTEXTS)), True)


KNOWN_MESSAGES = [loopback.MM1, loopback.MM2, loopback.MM3, loopback.MM4, loopback.MM5]
KNOWN_CHAINS: list[tuple[bytes, int]] = [
    (vec.PULL2_PLAINTEXT, PayloadType.HASH),
    (vec.PULL4_PLAINTEXT, PayloadType.HASH),
    (vec.PULL2_SA, PayloadType.SA),
    (vec.MM5_NOTIFY, PayloadType.NOTIFY),
    (vec.PULL1_GROUP_ID, PayloadType.ID),
]


@BOUNDED
@given(st.data(), st.sampled_from(KNOWN_MESSAGES), st.sampled_from(DIALECTS), st.booleans())
def test_mutated_known_messages(
    data: st.DataObject, message: bytes, dialect: Dialect, fix_length: bool
) -> None:
    mutant = data.draw(mutated(message))
    check_message(with_length(mutant) if fix_length else mutant, dialect)


@BOUNDED
@given(st.data(), st.sampled_from(KNOWN_CHAINS), st.sampled_from(CONTEXTS), st.booleans())
def test_mutated_known_chains(
    data: st.DataObject, known: tuple[bytes, int], ctx: DecodeContext, allow_trailing: bool
) -> None:
    octets, first = known
    check_chain(data.draw(mutated(octets)), first, ctx, allow_trailing)


# --- (c) h11's three-way reader check on the known answers ----------------------------

PULL_V1 = DecodeContext(ExchangeType.GROUPKEY_PULL, V1)
CLEARTEXT_MESSAGES = {
    "MM1": loopback.MM1,
    "MM2": loopback.MM2,
    "MM3": loopback.MM3,
    "MM4": loopback.MM4,
}
# Known payload chains with their padding stripped: (octets, first type, context).
STRICT_CHAINS = {
    "PULL2": (vec.PULL2_PLAINTEXT[: -vec.PULL2_PADDING], PayloadType.HASH, PULL_V1),
    "PULL4": (vec.PULL4_PLAINTEXT[: -vec.PULL4_PADDING], PayloadType.HASH, PULL_V1),
    "PULL2-SA": (vec.PULL2_SA, PayloadType.SA, PULL_V1),
    "MM5-NOTIFY": (
        vec.MM5_NOTIFY,
        PayloadType.NOTIFY,
        DecodeContext(ExchangeType.IDENTITY_PROTECTION, V1),
    ),
    "PULL1-ID": (vec.PULL1_GROUP_ID, PayloadType.ID, PULL_V1),
}
JUNK = [b"\x00", b"\x00" * 7, b"\xff\xff\xff\xff", bytes(range(16))]


@pytest.mark.parametrize("name", sorted(CLEARTEXT_MESSAGES))
def test_three_way_messages(name: str) -> None:
    data = CLEARTEXT_MESSAGES[name]
    assert len(decode_message(data).payloads) >= 1
    for size in range(len(data)):
        prefix = data[:size]
        with pytest.raises(DecodeError):
            decode_message(prefix)
        # Also with the header's Length made to agree, so the payload chain is what fails.
        with pytest.raises(DecodeError):
            decode_message(with_length(prefix))
    for junk in JUNK:
        with pytest.raises(DecodeError):
            decode_message(data + junk)
        with pytest.raises(DecodeError, match="after the last payload"):
            decode_message(with_length(data + junk))


@pytest.mark.parametrize("name", sorted(STRICT_CHAINS))
def test_three_way_payload_chains(name: str) -> None:
    data, first, ctx = STRICT_CHAINS[name]
    whole = decode_payloads(data, first, ctx)
    assert whole.trailing == b""
    assert encode_payloads(whole.payloads) == (first, data)
    for size in range(len(data)):
        for allow_trailing in (False, True):
            with pytest.raises(DecodeError):
                decode_payloads(data[:size], first, ctx, allow_trailing=allow_trailing)
    for junk in JUNK:
        with pytest.raises(DecodeError, match="after the last payload"):
            decode_payloads(data + junk, first, ctx)
        padded = decode_payloads(data + junk, first, ctx, allow_trailing=True)
        assert padded.payloads == whole.payloads and padded.trailing == junk


@BOUNDED
@given(st.sampled_from(sorted(STRICT_CHAINS)), st.binary(min_size=1, max_size=32))
def test_three_way_trailing_junk(name: str, junk: bytes) -> None:
    data, first, ctx = STRICT_CHAINS[name]
    with pytest.raises(DecodeError):
        decode_payloads(data + junk, first, ctx)
    assert decode_payloads(data + junk, first, ctx, allow_trailing=True).trailing == junk
