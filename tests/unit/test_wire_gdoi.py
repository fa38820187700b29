"""GDOI payload codecs: known answers from the Cisco reference traces, dialects, strictness."""

from __future__ import annotations

import pytest

from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.buffer import Buffer, DecodeError
from groupvpn.wire.constants import ExchangeType, IdType, NotifyType, PayloadType
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
    gdoi_payload_class,
)
from groupvpn.wire.gdoi_numbers import (
    AddressPreservation,
    EspTransform,
    GapAttribute,
    IpsecAttribute,
    KdType,
    KekAlgorithm,
    KekAttribute,
    KekKeyAttribute,
    SaDirection,
    SidAttribute,
    SigAlgorithm,
    SigHashAlgorithm,
    TekKeyAttribute,
    TekProtocol,
)
from groupvpn.wire.message import decode_payloads, encode_payloads
from groupvpn.wire.payloads import DecodeContext, HashPayload, NoncePayload, Payload
from tests.vectors import gdoi_cisco as vec

PULL_V1 = DecodeContext(ExchangeType.GROUPKEY_PULL, V1)
PULL_V2 = DecodeContext(ExchangeType.GROUPKEY_PULL, V2)
PUSH_V2 = DecodeContext(ExchangeType.GROUPKEY_PUSH, V2)


def decode_body(cls: type[Payload], body: bytes, ctx: DecodeContext) -> Payload:
    buf = Buffer(body)
    payload = cls.decode_body(buf, ctx)
    buf.expect_end("test")
    return payload


def roundtrip(payload: Payload, ctx: DecodeContext) -> bytes:
    body = payload.encode_body()
    assert decode_body(type(payload), body, ctx) == payload
    return body


# --- known answers ----------------------------------------------------------------------


def test_pull2_sa_without_kek_two_teks():
    # Cisco GDOI reference implementation trace (loopback), as reproduced in gdoi-wire.md §4.1.
    chain = decode_payloads(vec.PULL2_SA, PayloadType.SA, PULL_V1)
    (sa,) = chain.payloads
    assert isinstance(sa, GdoiSaPayload)
    assert (sa.doi, sa.situation, sa.kek, sa.gap) == (2, 0, None, None)
    assert len(sa.teks) == 2
    first, second = sa.teks
    assert first.protocol_id == TekProtocol.IPSEC_ESP
    tek = first.ipsec
    assert tek is not None
    assert tek.protocol == 0
    assert tek.src == GdoiId(IdType.IPV4_ADDR, 4, bytes([172, 19, 137, 42]))
    assert tek.dst == GdoiId.ipv4("239.192.1.1", 4)
    assert tek.transform_id == EspTransform.ESP_3DES
    assert tek.spi == bytes.fromhex("1122aabb")
    assert tek.attributes == (
        DataAttribute(IpsecAttribute.ENCAPSULATION_MODE, 1),
        DataAttribute(IpsecAttribute.AUTHENTICATION_ALGORITHM, 2),
        DataAttribute(IpsecAttribute.SA_LIFE_TYPE, 1),
        DataAttribute(IpsecAttribute.SA_LIFE_DURATION, 3600),
    )
    assert second.ipsec is not None and second.ipsec.spi == bytes.fromhex("3344ccdd")
    assert second.ipsec.dst.describe() == "239.192.1.2:2"
    assert encode_payloads(chain.payloads) == (PayloadType.SA, vec.PULL2_SA)


def test_sak_example():
    # Cisco GDOI reference implementation trace (three-clients), as reproduced in
    # gdoi-wire.md §4.2.
    assert vec.SAK[0] == PayloadType.SA_TEK and int.from_bytes(vec.SAK[2:4]) == len(vec.SAK)
    body = vec.SAK[4:]
    sak = decode_body(SaKekPayload, body, PULL_V1)
    assert isinstance(sak, SaKekPayload)
    assert sak.protocol == 17
    assert sak.src == GdoiId.ipv4("10.0.224.44", 848)
    assert sak.dst == GdoiId.ipv4("239.10.1.1", 848)
    assert sak.spi == vec.KEK_SPI
    assert (sak.pop_algorithm, sak.pop_key_length) == (0, 0)
    assert sak.attributes == (
        DataAttribute(KekAttribute.KEK_ALGORITHM, KekAlgorithm.TRIPLE_DES),
        DataAttribute(KekAttribute.SIG_HASH_ALGORITHM, SigHashAlgorithm.SHA1),
        DataAttribute(KekAttribute.SIG_ALGORITHM, SigAlgorithm.RSA),
    )
    assert sak.encode_body() == body
    # The same octets are a valid RFC 6407 SA KEK (RESERVED2 = 0).
    assert decode_body(SaKekPayload, body, PULL_V2) == sak


def test_three_clients_pull2_plaintext():
    # Cisco GDOI reference implementation trace (three-clients, member 1), as reproduced
    # in gdoi-wire.md §9.
    chain = decode_payloads(vec.PULL2_PLAINTEXT, PayloadType.HASH, PULL_V1, allow_trailing=True)
    assert chain.trailing == bytes(vec.PULL2_PADDING)
    hash_, nonce, sa = chain.payloads
    assert isinstance(hash_, HashPayload) and len(hash_.data) == 20
    assert isinstance(nonce, NoncePayload)
    assert nonce.data == bytes.fromhex("29a5c670d1ed0e52e63f4a3705f04e4f")
    assert isinstance(sa, GdoiSaPayload)
    assert sa.kek is not None and sa.kek.spi == vec.KEK_SPI
    assert sa.kek.dst.describe() == "239.10.1.1:848"
    assert [t.ipsec.spi.hex() for t in sa.teks if t.ipsec] == ["1122aabb", "3344ccdd"]
    assert all(t.ipsec and t.ipsec.src == GdoiId.ipv4("10.0.224.37") for t in sa.teks[:1])
    assert sa.teks[1].ipsec is not None
    assert sa.teks[1].ipsec.src == GdoiId.ipv4("10.0.224.40")
    assert sa.teks[1].ipsec.dst == GdoiId.ipv4("239.1.1.2")
    assert sa.teks[0].ipsec is not None
    assert sa.teks[0].ipsec.attributes[-1] == DataAttribute(IpsecAttribute.SA_LIFE_DURATION, 60)
    # The raw SA octets are what HASH(2) covers.
    assert chain.raw[2] == vec.PULL2_PLAINTEXT[44 : 44 + 0x9B]
    first, octets = encode_payloads(chain.payloads)
    assert first == PayloadType.HASH
    assert octets + chain.trailing == vec.PULL2_PLAINTEXT


def test_three_clients_pull4_plaintext_kd_with_kek_and_two_teks():
    # Cisco GDOI reference implementation trace (three-clients, member 1), as reproduced
    # in gdoi-wire.md §9; its KD is the §4.5 example (one KEK, two TEK key packets).
    chain = decode_payloads(vec.PULL4_PLAINTEXT, PayloadType.HASH, PULL_V1, allow_trailing=True)
    assert chain.trailing == bytes(vec.PULL4_PADDING)
    hash_, seq, kd = chain.payloads
    assert isinstance(hash_, HashPayload)
    assert seq == SeqPayload(0)
    assert isinstance(kd, KeyDownloadPayload)
    assert len(chain.raw[2]) == 0x161
    kek, tek1, tek2 = kd.packets
    assert kek.kd_type == KdType.KEK and kek.spi == vec.KEK_SPI
    assert kek.attributes[0] == DataAttribute(
        KekKeyAttribute.KEK_ALGORITHM_KEY, vec.KEK_IV + vec.KEK_KEY
    )
    sig_key = kek.attributes[1]
    assert sig_key.type == KekKeyAttribute.SIG_ALGORITHM_KEY
    assert isinstance(sig_key.value, bytes) and len(sig_key.value) == 162
    assert sig_key.value.startswith(vec.KEK_SIG_KEY_PREFIX)
    for packet, spi, (cipher_key, integrity_key) in (
        (tek1, "1122aabb", vec.TEK1_KEYS),
        (tek2, "3344ccdd", vec.TEK2_KEYS),
    ):
        assert packet.kd_type == KdType.TEK and packet.spi.hex() == spi
        assert packet.attributes == (
            DataAttribute(TekKeyAttribute.TEK_ALGORITHM_KEY, cipher_key),
            DataAttribute(TekKeyAttribute.TEK_INTEGRITY_KEY, integrity_key),
        )
    assert kd.find(KdType.TEK) == (tek1, tek2)
    first, octets = encode_payloads(chain.payloads)
    assert first == PayloadType.HASH
    assert octets + chain.trailing == vec.PULL4_PLAINTEXT


def test_key_packet_repr_hides_key_material():
    chain = decode_payloads(vec.PULL4_PLAINTEXT, PayloadType.HASH, PULL_V1, allow_trailing=True)
    text = repr(chain.payloads[2])
    for secret in (vec.KEK_KEY, vec.TEK1_KEYS[0], vec.TEK2_KEYS[1]):
        assert secret.hex() not in text
        assert repr(secret) not in text
        assert secret.decode() not in text
    assert "<32 octets>" in text and "<162 octets>" in text and "KEK" in text
    sid = KeyPacket(KdType.SID, b"", (DataAttribute(SidAttribute.NUMBER_OF_SID_BITS, 8),))
    assert "1=8" in repr(sid)


# --- dialects ---------------------------------------------------------------------------


def v2_sa() -> GdoiSaPayload:
    kek = SaKekPayload(
        17,
        GdoiId.ipv4("192.0.2.1", 848),
        GdoiId.ipv4("239.10.1.1", 848),
        bytes(range(16)),
        (
            DataAttribute(KekAttribute.KEK_ALGORITHM, KekAlgorithm.AES),
            DataAttribute(KekAttribute.KEK_KEY_LENGTH, 256),
            DataAttribute(KekAttribute.KEK_KEY_LIFETIME, (86400).to_bytes(4)),
            DataAttribute(KekAttribute.SIG_HASH_ALGORITHM, SigHashAlgorithm.SHA256),
            DataAttribute(KekAttribute.SIG_ALGORITHM, SigAlgorithm.RSA),
        ),
    )
    gap = GapPayload(
        (
            DataAttribute(GapAttribute.ACTIVATION_TIME_DELAY, 15),
            DataAttribute(GapAttribute.DEACTIVATION_TIME_DELAY, 30),
        )
    )
    teks = tuple(
        SaTekPayload(
            TekProtocol.IPSEC_ESP,
            IpsecTek(
                0,
                GdoiId.ipv4_subnet(f"10.{n}.0.0/16"),
                GdoiId.ipv4_subnet("10.0.0.0/8"),
                EspTransform.ESP_AES_GCM_16,
                n.to_bytes(4),
                (
                    DataAttribute(IpsecAttribute.KEY_LENGTH, 256),
                    DataAttribute(IpsecAttribute.SA_LIFE_TYPE, 1),
                    DataAttribute.basic_or_variable(IpsecAttribute.SA_LIFE_DURATION, 100000),
                    DataAttribute(
                        IpsecAttribute.ADDRESS_PRESERVATION,
                        AddressPreservation.SOURCE_AND_DESTINATION,
                    ),
                    DataAttribute(IpsecAttribute.SA_DIRECTION, SaDirection.SYMMETRIC),
                ),
            ),
            id_length_octets=2,
        )
        for n in (1, 2)
    )
    return GdoiSaPayload(2, 0, kek, gap, teks)


def test_v2_sa_with_gap_and_two_octet_id_lengths_roundtrips():
    sa = v2_sa()
    first, octets = encode_payloads([sa])
    assert first == PayloadType.SA
    # SA attribute next payload = SAK; SAK -> GAP -> SAT -> SAT -> 0.
    assert octets[12:14] == b"\x00\x0f"
    sak_length = int.from_bytes(octets[18:20])
    assert octets[16] == PayloadType.GAP
    gap_at = 16 + sak_length
    assert octets[gap_at] == PayloadType.SA_TEK
    sat_at = gap_at + int.from_bytes(octets[gap_at + 2 : gap_at + 4])
    # SAT body: protocol-ID, protocol, SRC type, port (2), then a 2-octet data length of 8.
    assert octets[sat_at + 4 : sat_at + 11].hex() == "01" + "00" + "04" + "0000" + "0008"
    chain = decode_payloads(octets, PayloadType.SA, PULL_V2)
    assert chain.payloads == (sa,)
    assert sa.teks[0].ipsec is not None
    assert sa.teks[0].ipsec.src.describe() == "10.1.0.0/16"
    # In v1 there is no GAP, and inside the SA it is an unsupported payload type.
    with pytest.raises(DecodeError) as info:
        decode_payloads(octets, PayloadType.SA, PULL_V1)
    assert info.value.notify == NotifyType.INVALID_PAYLOAD_TYPE


def test_gap_top_level_only_in_v2():
    gap = GapPayload((DataAttribute(GapAttribute.SENDER_ID_REQUEST, 4),))
    first, octets = encode_payloads([gap])
    assert decode_payloads(octets, first, PULL_V2).payloads == (gap,)
    with pytest.raises(DecodeError) as info:
        decode_payloads(octets, first, PULL_V1)
    assert info.value.notify == NotifyType.INVALID_PAYLOAD_TYPE


def test_v1_sat_body_does_not_decode_as_v2_and_back():
    v1_sat_body = decode_payloads(vec.PULL2_SA, PayloadType.SA, PULL_V1).payloads[0]
    assert isinstance(v1_sat_body, GdoiSaPayload)
    with pytest.raises(DecodeError):
        decode_payloads(vec.PULL2_SA, PayloadType.SA, PULL_V2)
    sat_body = v1_sat_body.teks[0].encode_body()
    with pytest.raises(DecodeError):
        decode_body(SaTekPayload, sat_body, PULL_V2)
    v2_sat = v2_sa().teks[0]
    with pytest.raises(DecodeError):
        decode_body(SaTekPayload, v2_sat.encode_body(), PULL_V1)
    with pytest.raises(DecodeError):
        decode_payloads(encode_payloads([v2_sa()])[1], PayloadType.SA, PULL_V1)


def test_sat_width_follows_the_object():
    tek = v2_sa().teks[0]
    assert tek.ipsec is not None
    as_v1 = SaTekPayload(tek.protocol_id, tek.ipsec, id_length_octets=1)
    assert len(as_v1.encode_body()) == len(tek.encode_body()) - 2
    assert roundtrip(as_v1, PULL_V1)
    assert roundtrip(tek, PULL_V2)


def test_sak_pop_fields_only_in_v1():
    sak = SaKekPayload(
        17, GdoiId.ipv4("10.0.0.1"), GdoiId.ipv4("239.0.0.1"), bytes(16), (), 1, 1024
    )
    roundtrip(sak, PULL_V1)
    with pytest.raises(DecodeError, match="RESERVED2"):
        decode_body(SaKekPayload, sak.encode_body(), PULL_V2)


def test_gdoi_payload_class_per_dialect():
    expected: dict[int, type[Payload]] = {
        PayloadType.SA: GdoiSaPayload,
        PayloadType.SA_KEK: SaKekPayload,
        PayloadType.SA_TEK: SaTekPayload,
        PayloadType.KD: KeyDownloadPayload,
        PayloadType.SEQ: SeqPayload,
    }
    dialect: Dialect
    for dialect in (V1, V2):
        for payload_type, cls in expected.items():
            assert gdoi_payload_class(payload_type, dialect) is cls
        assert gdoi_payload_class(PayloadType.POP, dialect) is None
        assert gdoi_payload_class(PayloadType.HASH, dialect) is None
    assert gdoi_payload_class(PayloadType.GAP, V2) is GapPayload
    assert gdoi_payload_class(PayloadType.GAP, V1) is None


def test_pop_payload_is_unsupported():
    octets = bytes.fromhex("00000008") + bytes(4)
    for ctx in (PULL_V1, PULL_V2):
        with pytest.raises(DecodeError) as info:
            decode_payloads(octets, PayloadType.POP, ctx)
        assert info.value.notify == NotifyType.INVALID_PAYLOAD_TYPE


# --- other protocol IDs, KD types, SEQ --------------------------------------------------


def test_opaque_tek_protocol_roundtrips():
    tek = SaTekPayload(TekProtocol.IEC_61850, b"\x06\x2b\x06\x01\x04\x01\x00\x00")
    roundtrip(tek, PULL_V2)
    assert tek.ipsec is None
    assert decode_body(SaTekPayload, bytes([128]), PULL_V2) == SaTekPayload(128, b"")


def test_sat_needs_the_body_its_protocol_says():
    with pytest.raises(ValueError):
        SaTekPayload(TekProtocol.IPSEC_ESP, b"opaque")
    with pytest.raises(ValueError):
        SaTekPayload(3, v2_sa().teks[0].spec)


def test_kd_with_sid_and_lkh_packets():
    kd = KeyDownloadPayload(
        (
            KeyPacket(
                KdType.SID,
                b"",
                (
                    DataAttribute(SidAttribute.NUMBER_OF_SID_BITS, 8),
                    DataAttribute(SidAttribute.SID_VALUE, b"\x01"),
                ),
            ),
            KeyPacket(KdType.LKH, bytes(16), (DataAttribute(1, bytes(40)),)),
            KeyPacket(KdType.TEK, b"\x00\x00\x00\x01", ()),
        )
    )
    body = roundtrip(kd, PUSH_V2)
    assert body[:4] == b"\x00\x03\x00\x00"


def test_seq_payload():
    assert roundtrip(SeqPayload(0xFFFFFFFF), PUSH_V2) == b"\xff\xff\xff\xff"
    for body in (b"", b"\x00\x00\x01", b"\x00\x00\x00\x01\x00"):
        with pytest.raises(DecodeError, match="SEQ"):
            decode_body(SeqPayload, body, PUSH_V2)


# --- strictness -------------------------------------------------------------------------


def mutate(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes([value]) + data[offset + 1 :]


SA_BODY = vec.PULL2_SA[4:]
KD_BODY = bytes.fromhex("00010000") + bytes.fromhex("0100000f0411223344000100020102")


@pytest.mark.parametrize(
    ("cls", "body", "ctx", "message"),
    [
        # GDOI SA: RESERVED2, empty chain, unknown nested type, order, nested reserved.
        (GdoiSaPayload, mutate(SA_BODY, 11, 1), PULL_V1, "RESERVED2"),
        (GdoiSaPayload, SA_BODY[:8] + bytes(4), PULL_V1, "no SA KEK"),
        (GdoiSaPayload, mutate(SA_BODY, 9, 18), PULL_V1, "payload type 18"),
        (GdoiSaPayload, mutate(SA_BODY, 13, 1), PULL_V1, "RESERVED"),
        (GdoiSaPayload, mutate(SA_BODY, 12, PayloadType.SA_KEK), PULL_V1, "first"),
        # Nested length running past the SA.
        (GdoiSaPayload, mutate(SA_BODY, 15, 0x2C), PULL_V1, ".*"),
        # SA TEK: ID length that does not match the IPv4 ID type.
        (SaTekPayload, mutate(SA_BODY[16 : 0x2B + 12], 5, 5), PULL_V1, "needs 4"),
        # KD: RESERVED2, key packet RESERVED, count mismatch, KD length too short.
        (KeyDownloadPayload, mutate(KD_BODY, 3, 1), PUSH_V2, "RESERVED2"),
        (KeyDownloadPayload, mutate(KD_BODY, 5, 1), PUSH_V2, "RESERVED"),
        (KeyDownloadPayload, mutate(KD_BODY, 1, 2), PUSH_V2, "announces 2"),
        (KeyDownloadPayload, mutate(KD_BODY, 1, 0), PUSH_V2, "announces 0"),
        (KeyDownloadPayload, mutate(KD_BODY, 7, 4), PUSH_V2, "shorter"),
        (KeyDownloadPayload, mutate(KD_BODY, 7, 0x0C), PUSH_V2, ".*"),
        (KeyDownloadPayload, mutate(KD_BODY, 7, 0x0E), PUSH_V2, ".*"),
        # A KEK key packet needs a 16-octet SPI.
        (KeyDownloadPayload, mutate(KD_BODY, 4, KdType.KEK), PUSH_V2, "SPI size"),
    ],
)
def test_malformed_bodies_raise_decode_error(cls, body, ctx, message):
    with pytest.raises(DecodeError, match=message) as info:
        decode_body(cls, body, ctx)
    assert info.value.offset is not None


def test_sa_tek_id_length_error_names_invalid_id_information():
    sat_body = vec.PULL2_SA[20 : 20 + 0x2B - 4]
    assert decode_body(SaTekPayload, sat_body, PULL_V1)
    bad = mutate(sat_body, 2, IdType.IPV6_ADDR)
    with pytest.raises(DecodeError) as info:
        decode_body(SaTekPayload, bad, PULL_V1)
    assert info.value.notify == NotifyType.INVALID_ID_INFORMATION


def test_encode_rejects_what_cannot_be_sent():
    with pytest.raises(ValueError):
        GdoiSaPayload(2, 0).encode_body()
    with pytest.raises(ValueError):
        SaKekPayload(
            17, GdoiId.ipv4("10.0.0.1"), GdoiId.ipv4("10.0.0.2"), bytes(8), ()
        ).encode_body()
    with pytest.raises(ValueError):
        GdoiId(IdType.FQDN, 0, bytes(256)).push(Buffer(), 1)
    tek = v2_sa().teks[0]
    assert tek.ipsec is not None
    with pytest.raises(ValueError):
        IpsecTek(0, tek.ipsec.src, tek.ipsec.dst, 3, bytes(5), ()).push(Buffer(), 2)


def test_identity_helpers():
    assert GdoiId.ipv4_subnet("10.1.0.0/16").data.hex() == "0a010000ffff0000"
    assert GdoiId.ipv6("2001:db8::1", 848).describe() == "2001:db8::1:848"
    assert GdoiId.ipv6_subnet("2001:db8::/32").describe() == "2001:db8::/32"
    assert GdoiId(IdType.KEY_ID, 0, b"\x00\x00\x04\xd2").describe() == "id-type-11:000004d2"
    odd_mask = GdoiId(IdType.IPV4_ADDR_SUBNET, 0, bytes.fromhex("0a000000ff00ff00"))
    assert odd_mask.describe() == "10.0.0.0/255.0.255.0"
