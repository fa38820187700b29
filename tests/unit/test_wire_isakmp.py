"""ISAKMP header and RFC 2408 payload codecs: round trips, known answers, header checks."""

from __future__ import annotations

import pytest

from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.buffer import Buffer, DecodeError
from groupvpn.wire.constants import (
    HEADER_LENGTH,
    Doi,
    ExchangeType,
    Flag,
    IdType,
    IkeAttribute,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from groupvpn.wire.dialect import V1, V2
from groupvpn.wire.message import (
    IsakmpHeader,
    decode_message,
    decode_payloads,
    encode_message,
    encode_payloads,
    pull_header,
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

MAIN_MODE = DecodeContext(ExchangeType.IDENTITY_PROTECTION, V1)

PHASE1_SA = SaPayload(
    Doi.GDOI,
    0,
    (
        Proposal(
            1,
            ProtocolId.ISAKMP,
            b"",
            (
                Transform(
                    0,
                    1,
                    (
                        DataAttribute(IkeAttribute.ENCRYPTION_ALGORITHM, 5),
                        DataAttribute(IkeAttribute.HASH_ALGORITHM, 2),
                        DataAttribute(IkeAttribute.AUTHENTICATION_METHOD, 1),
                        DataAttribute(IkeAttribute.GROUP_DESCRIPTION, 2),
                        DataAttribute(IkeAttribute.LIFE_TYPE, 1),
                        DataAttribute(IkeAttribute.LIFE_DURATION, 3600),
                    ),
                ),
            ),
        ),
    ),
)

EVERY_PAYLOAD: list[Payload] = [
    PHASE1_SA,
    SaPayload(
        Doi.IPSEC,
        1,
        (
            Proposal(1, ProtocolId.IPSEC_ESP, b"\x01\x02\x03\x04", ()),
            Proposal(
                2,
                ProtocolId.IPSEC_AH,
                b"\x05\x06\x07\x08",
                (
                    Transform(1, 3, (DataAttribute(1, b"\x00\x01\x51\x80"),)),
                    Transform(2, 2, ()),
                ),
            ),
        ),
    ),
    KePayload(bytes(range(128))),
    IdPayload.ipv4("127.0.0.1"),
    IdPayload.fqdn("gcks.example"),
    IdPayload.user_fqdn("gm@example"),
    IdPayload.key_id(b"\x00\x00\x04\xd2"),
    IdPayload(IdType.IPV6_ADDR_SUBNET, 17, 848, bytes(32)),
    CertPayload(4, b"\x30\x82\x01\x00"),
    CertRequestPayload(4, b""),
    HashPayload(bytes(20)),
    SigPayload(bytes(128)),
    NoncePayload(bytes(8)),
    NoncePayload(bytes(256)),
    NotifyPayload(Doi.IPSEC, ProtocolId.ISAKMP, NotifyType.INITIAL_CONTACT, bytes(16)),
    NotifyPayload(Doi.IPSEC, 0, NotifyType.R_U_THERE, b"", b"\x00\x00\x00\x01"),
    DeletePayload(Doi.GDOI, 1, 4, (b"\x11\x22\xaa\xbb", b"\x33\x44\xcc\xdd")),
    DeletePayload(Doi.IPSEC, ProtocolId.ISAKMP, 16, ()),
    VendorIdPayload(b"\xaf\xca\xd7\x13\x68\xa1\xf1\xc9\x6b\x86\x96\xfc\x77\x57\x01\x00"),
    NatDPayload(bytes(20)),
    NatDDraftPayload(bytes(16)),
]


@pytest.mark.parametrize("payload", EVERY_PAYLOAD, ids=lambda p: type(p).__name__)
def test_every_payload_roundtrips(payload):
    body = payload.encode_body()
    buf = Buffer(body)
    assert type(payload).decode_body(buf, MAIN_MODE) == payload
    assert buf.eof()
    first, octets = encode_payloads([payload])
    assert decode_payloads(octets, first, MAIN_MODE).payloads == (payload,)


def test_whole_chain_roundtrips():
    first, octets = encode_payloads(EVERY_PAYLOAD)
    chain = decode_payloads(octets, first, MAIN_MODE)
    assert chain.payloads == tuple(EVERY_PAYLOAD)
    assert b"".join(chain.raw) == octets
    assert encode_payloads([]) == (PayloadType.NONE, b"")


def test_header_roundtrips():
    header = IsakmpHeader(
        loopback.CKY_I,
        loopback.CKY_R,
        PayloadType.HASH,
        ExchangeType.GROUPKEY_PULL,
        1,
        0x483C11C0,
        84,
    )
    data = header.encode() + bytes(84 - HEADER_LENGTH)
    assert len(header.encode()) == HEADER_LENGTH
    assert pull_header(data) == header
    assert header.encrypted


# --- Cisco main mode messages -----------------------------------------------------------


def test_mm1_known_answer():
    # Cisco GDOI reference implementation trace (loopback), as reproduced in gdoi-wire.md §9.
    message = decode_message(loopback.MM1)
    header = message.header
    assert header.initiator_cookie == loopback.CKY_I and header.responder_cookie == bytes(8)
    assert (header.exchange_type, header.flags, header.message_id, header.length) == (2, 0, 0, 80)
    assert message.payloads == (PHASE1_SA,)
    assert message.raw_payloads == (loopback.MM1[HEADER_LENGTH:],)


@pytest.mark.parametrize("name", ["MM1", "MM2", "MM3", "MM4"])
def test_main_mode_messages_reencode_exactly(name):
    # Cisco GDOI reference implementation trace (loopback), as reproduced in gdoi-wire.md §9.
    data: bytes = getattr(loopback, name)
    message = decode_message(data)
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
    assert b"".join(message.raw_payloads) == data[HEADER_LENGTH:]


def test_mm3_mm4_ke_and_nonce():
    # Cisco GDOI reference implementation trace (loopback), as reproduced in gdoi-wire.md §9.
    for data, nonce in ((loopback.MM3, loopback.NI_B), (loopback.MM4, loopback.NR_B)):
        ke, ni = decode_message(data).payloads
        assert isinstance(ke, KePayload) and len(ke.data) == 128
        assert ni == NoncePayload(nonce)


def test_mm2_echoes_the_proposal():
    assert decode_message(loopback.MM2).payloads == decode_message(loopback.MM1).payloads
    assert decode_message(loopback.MM2).header.responder_cookie == loopback.CKY_R


def test_single_payload_known_answers():
    # Cisco GDOI reference implementation trace (loopback), as reproduced in gdoi-wire.md
    # §1.9, §1.10 and §3.2.
    assert vec.MM5_ID[0] == PayloadType.HASH  # the ID is followed by HASH_I in MM5
    identity = IdPayload.decode_body(Buffer(vec.MM5_ID[4:]), MAIN_MODE)
    assert identity == IdPayload.ipv4("127.0.0.1")
    assert identity.describe() == "ipv4:127.0.0.1"
    assert identity.encode_body() == vec.MM5_ID[4:]
    notify = decode_payloads(vec.MM5_NOTIFY, PayloadType.NOTIFY, MAIN_MODE).payloads[0]
    assert notify == NotifyPayload(
        Doi.IPSEC, ProtocolId.ISAKMP, NotifyType.INITIAL_CONTACT, loopback.CKY_I + loopback.CKY_R
    )
    assert encode_payloads([notify]) == (PayloadType.NOTIFY, vec.MM5_NOTIFY)
    pull = DecodeContext(ExchangeType.GROUPKEY_PULL, V1)
    group = decode_payloads(vec.PULL1_GROUP_ID, PayloadType.ID, pull).payloads
    assert group == (IdPayload.key_id((1234).to_bytes(4)),)
    assert encode_payloads(group) == (PayloadType.ID, vec.PULL1_GROUP_ID)


# --- header checks ----------------------------------------------------------------------


def patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


@pytest.mark.parametrize(
    ("data", "notify", "offset"),
    [
        (patched(loopback.MM1, 17, b"\x20"), NotifyType.INVALID_MAJOR_VERSION, 17),
        (patched(loopback.MM1, 17, b"\x00"), NotifyType.INVALID_MAJOR_VERSION, 17),
        (patched(loopback.MM1, 17, b"\x11"), NotifyType.INVALID_MINOR_VERSION, 17),
        (patched(loopback.MM1, 19, b"\x08"), NotifyType.INVALID_FLAGS, 19),
        (patched(loopback.MM1, 19, b"\x80"), NotifyType.INVALID_FLAGS, 19),
        (patched(loopback.MM1, 24, (81).to_bytes(4)), NotifyType.UNEQUAL_PAYLOAD_LENGTHS, 24),
        (patched(loopback.MM1, 24, (79).to_bytes(4)), NotifyType.UNEQUAL_PAYLOAD_LENGTHS, 24),
        (loopback.MM1 + b"\x00", NotifyType.UNEQUAL_PAYLOAD_LENGTHS, 24),
        # The E flag is known, but the cleartext decoder refuses an encrypted message.
        (loopback.MM5, NotifyType.INVALID_FLAGS, 19),
    ],
)
def test_header_checks_name_the_notify(data, notify, offset):
    with pytest.raises(DecodeError) as info:
        decode_message(data)
    assert info.value.notify == notify
    assert info.value.offset == offset


def test_encrypted_header_still_parses():
    header = pull_header(loopback.MM5)
    assert header.encrypted and header.flags == Flag.ENCRYPTION and header.length == 92
    assert header.next_payload == PayloadType.ID


def test_short_datagram():
    for size in (0, 1, HEADER_LENGTH - 1):
        with pytest.raises(DecodeError) as info:
            decode_message(loopback.MM1[:size])
        assert info.value.notify is None


def test_payload_chain_errors():
    body = loopback.MM1[HEADER_LENGTH:]
    # Unsupported first payload type.
    with pytest.raises(DecodeError) as info:
        decode_payloads(body, 99, MAIN_MODE)
    assert info.value.notify == NotifyType.INVALID_PAYLOAD_TYPE
    # Payload length past the end.
    with pytest.raises(DecodeError) as info:
        decode_payloads(patched(body, 2, b"\x00\x35"), PayloadType.SA, MAIN_MODE)
    assert info.value.notify == NotifyType.UNEQUAL_PAYLOAD_LENGTHS
    # Payload length shorter than the generic header.
    with pytest.raises(DecodeError) as info:
        decode_payloads(patched(body, 2, b"\x00\x03"), PayloadType.SA, MAIN_MODE)
    assert info.value.notify == NotifyType.UNEQUAL_PAYLOAD_LENGTHS
    # Non-zero RESERVED.
    with pytest.raises(DecodeError, match="RESERVED"):
        decode_payloads(patched(body, 1, b"\x01"), PayloadType.SA, MAIN_MODE)
    # A chain that promises another payload and ends.
    with pytest.raises(DecodeError, match="generic header"):
        decode_payloads(patched(body, 0, b"\x0a"), PayloadType.SA, MAIN_MODE)
    # Trailing octets in cleartext, but returned as padding where allowed.
    with pytest.raises(DecodeError, match="after the last payload"):
        decode_payloads(body + bytes(3), PayloadType.SA, MAIN_MODE)
    chain = decode_payloads(body + bytes(3), PayloadType.SA, MAIN_MODE, allow_trailing=True)
    assert chain.trailing == bytes(3)


@pytest.mark.parametrize(
    ("cls", "body", "message"),
    [
        (NoncePayload, bytes(7), "nonce"),
        (NoncePayload, bytes(257), "nonce"),
        (IdPayload, bytes([IdType.IPV4_ADDR, 0, 0, 0, 1, 2, 3]), "needs 4"),
        (IdPayload, bytes(3), "ID port"),
        (CertPayload, b"", "certificate encoding"),
        (NotifyPayload, bytes(7), "notify"),
        (NotifyPayload, bytes.fromhex("00000001 01 10 6002") + bytes(15), "notify SPI"),
        (DeletePayload, bytes.fromhex("00000001 03 04 0002") + bytes(7), "delete SPI"),
        # SA: transform count that does not match, RESERVED2 in a transform, bad chaining.
        (SaPayload, loopback.MM1[32:47] + b"\x02" + loopback.MM1[48:80], "announces 2"),
        (SaPayload, loopback.MM1[32:55] + b"\x01" + loopback.MM1[56:80], "RESERVED2"),
        (SaPayload, loopback.MM1[32:40] + b"\x05" + loopback.MM1[41:80], "continues"),
        (SaPayload, loopback.MM1[32:40], "proposal: generic header needs 4 octets"),
    ],
)
def test_malformed_isakmp_bodies(cls, body, message):
    with pytest.raises(DecodeError, match=message):
        buf = Buffer(body)
        cls.decode_body(buf, MAIN_MODE)
        buf.expect_end("body")


def test_payload_bodies_do_not_depend_on_dialect():
    for payload in EVERY_PAYLOAD:
        body = payload.encode_body()
        for dialect in (V1, V2):
            ctx = DecodeContext(ExchangeType.AGGRESSIVE, dialect)
            assert type(payload).decode_body(Buffer(body), ctx) == payload


def test_encoders_refuse_what_the_decoders_reject():
    # Fixed alongside the GDOI codecs: these used to encode octets our own decoder refuses.
    with pytest.raises(ValueError):
        SaPayload(Doi.GDOI, 0, ()).encode_body()
    for size in (0, 7, 257):
        with pytest.raises(ValueError):
            NoncePayload(bytes(size)).encode_body()
