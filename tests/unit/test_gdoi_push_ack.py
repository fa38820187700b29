"""The unicast rekey ACK: HDR, HASH, SEQ, ID with a per-member key (docs/rekey-wire.md).

No known answers exist (RFC 8263's numbers could not be verified), so these tests
pin the properties the key server relies on: an ACK names the member and the SEQ,
only the member's own ack key makes one, and anything else is a typed rejection.
"""

from __future__ import annotations

import hmac
from dataclasses import replace

import pytest

from groupvpn.gdoi.push_ack import (
    ACK_EXCHANGE_TYPE,
    ACK_KEY_LABEL,
    KEK_ACK_REQUESTED,
    AckKey,
    AckOpened,
    AckRejected,
    AckRejection,
    ack_requested_attribute,
    acks_requested,
    build_ack,
    derive_ack_key,
    open_ack,
)
from groupvpn.gdoi.push_sig import sig_hash
from groupvpn.server.kek import KEK_CIPHERS, SIG_HASHES, KekPolicy, new_kek
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.constants import HEADER_LENGTH, PayloadType
from groupvpn.wire.gdoi import GdoiId, SeqPayload
from groupvpn.wire.message import encode_payloads, pull_header
from groupvpn.wire.payloads import HashPayload, IdPayload

KEK_SPI = bytes.fromhex("0102030405060708a1a2a3a4a5a6a7a8")
SHA256 = sig_hash(3)
MEMBER1 = IdPayload.ipv4("198.51.100.11")
MEMBER2 = IdPayload.ipv4("198.51.100.12")
KEY1 = derive_ack_key(SHA256, b"\x11" * 32, bytes(range(16)))
KEY2 = derive_ack_key(SHA256, b"\x22" * 32, bytes(range(16, 32)))
KEYS = {(KEK_SPI, MEMBER1.data): KEY1, (KEK_SPI, MEMBER2.data): KEY2}


def lookup(spi: bytes, identity: IdPayload) -> AckKey | None:
    return KEYS.get((spi, identity.data))


def test_the_ack_key_is_prf_of_skeyid_a_over_the_label_and_the_phase1_cookies():
    skeyid_a, cookies = b"\x5a" * 20, bytes(range(16))
    key = derive_ack_key(SHA256, skeyid_a, cookies)
    assert key.key == hmac.digest(skeyid_a, b"GROUPKEY-PUSH ACK" + cookies, "sha256")
    assert ACK_KEY_LABEL == b"GROUPKEY-PUSH ACK"
    assert key.key.hex() not in repr(key)
    assert derive_ack_key(SHA256, skeyid_a, bytes(range(1, 17))).key != key.key
    assert derive_ack_key(sig_hash(2), skeyid_a, cookies).key != key.key
    with pytest.raises(ValueError):
        derive_ack_key(SHA256, skeyid_a, bytes(8))


def test_an_ack_is_clear_hdr_hash_seq_id_under_the_kek_cookies():
    data = build_ack(KEK_SPI, 7, MEMBER1, KEY1)
    header = pull_header(data)
    assert header.initiator_cookie + header.responder_cookie == KEK_SPI
    assert (header.exchange_type, header.flags, header.message_id) == (ACK_EXCHANGE_TYPE, 0, 0)
    assert header.next_payload == PayloadType.HASH
    # HASH = prf(ack key, KEK SPI | SEQ | ID), SEQ and ID whole as they follow HASH.
    _, after_hash = encode_payloads([SeqPayload(7), MEMBER1])
    digest = hmac.digest(KEY1.key, KEK_SPI + after_hash, "sha256")
    hash_payload = encode_payloads([HashPayload(digest), SeqPayload(7), MEMBER1])[1]
    assert data[HEADER_LENGTH:] == hash_payload
    assert data[HEADER_LENGTH:].endswith(after_hash)


@pytest.mark.parametrize(
    "identity", [MEMBER1, IdPayload.fqdn("gm1.example"), IdPayload.key_id(b"k")]
)
def test_an_ack_round_trips_and_names_member_and_seq(identity: IdPayload):
    keys = {identity.data: KEY1}
    opened = open_ack(build_ack(KEK_SPI, 12, identity, KEY1), lambda _s, i: keys.get(i.data))
    assert opened == AckOpened(KEK_SPI, 12, identity)


def _reason(data: bytes) -> AckRejection:
    result = open_ack(data, lookup)
    assert isinstance(result, AckRejected), result
    return result.reason


def test_an_ack_made_with_another_members_key_is_forged():
    # member 2 (or anyone but member 1) claims member 1 got SEQ 5
    forged = build_ack(KEK_SPI, 5, MEMBER1, KEY2)
    assert _reason(forged) is AckRejection.BAD_HASH


def test_an_ack_with_a_changed_seq_or_identity_is_forged():
    data = bytearray(build_ack(KEK_SPI, 5, MEMBER1, KEY1))
    seq_at = len(data) - 12 - 4  # ID payload is 12 octets, SEQ body the 4 before it
    data[seq_at + 3] ^= 1
    assert _reason(bytes(data)) is AckRejection.BAD_HASH
    swapped = build_ack(KEK_SPI, 5, MEMBER1, KEY1).replace(MEMBER1.data, MEMBER2.data)
    assert _reason(swapped) is AckRejection.BAD_HASH


def test_an_ack_from_an_old_registration_is_forged():
    old = derive_ack_key(SHA256, b"\x11" * 32, bytes(range(100, 116)))
    assert _reason(build_ack(KEK_SPI, 5, MEMBER1, old)) is AckRejection.BAD_HASH


def test_an_ack_for_an_unknown_member_or_kek_is_its_own_reason():
    stranger = IdPayload.ipv4("203.0.113.9")
    assert _reason(build_ack(KEK_SPI, 5, stranger, KEY1)) is AckRejection.UNKNOWN_MEMBER
    other_kek = bytes(16)
    assert _reason(build_ack(other_kek, 5, MEMBER1, KEY1)) is AckRejection.UNKNOWN_MEMBER


def test_malformed_acks():
    good = build_ack(KEK_SPI, 5, MEMBER1, KEY1)
    assert _reason(good[:-1]) is AckRejection.MALFORMED
    assert _reason(good + b"\x00") is AckRejection.MALFORMED
    longer = good + b"\x00\x00\x00\x00"
    assert _reason(longer[:24] + len(longer).to_bytes(4, "big") + longer[28:]) is (
        AckRejection.MALFORMED
    )
    for offset, value in ((18, 33), (19, 1), (23, 1)):  # exchange, E flag, message ID
        changed = bytearray(good)
        changed[offset] = value
        assert _reason(bytes(changed)) is AckRejection.MALFORMED
    hash_only = encode_payloads([HashPayload(bytes(32))])[1]
    header = good[:16] + bytes([PayloadType.HASH, 0x10, ACK_EXCHANGE_TYPE, 0, 0, 0, 0, 0])
    short = header + (HEADER_LENGTH + len(hash_only)).to_bytes(4, "big") + hash_only
    assert _reason(short) is AckRejection.MALFORMED


def test_kek_ack_requested_marks_an_sa_kek():
    kek = new_kek(KekPolicy(KEK_CIPHERS["aes-128-cbc"], SIG_HASHES["sha1"]), 0.0, set())
    source, destination = GdoiId.ipv4("192.0.2.1", 848), GdoiId.ipv4("198.51.100.11", 848)
    plain = kek.sa_kek(0.0, source, destination, 2048)
    assert not acks_requested(plain)
    asked = plain.__class__(
        plain.protocol, plain.src, plain.dst, plain.spi,
        (*plain.attributes, ack_requested_attribute()),
    )  # fmt: skip
    assert acks_requested(asked)
    assert ack_requested_attribute().type == KEK_ACK_REQUESTED
    # RFC 8263 registers several values (ACK methods): any non-zero one asks, 0 does not.
    for value, asks in ((3, True), (0, False)):
        other = DataAttribute.basic(KEK_ACK_REQUESTED, value)
        attributes = (*plain.attributes, other)
        assert acks_requested(replace(plain, attributes=attributes)) is asks


def test_building_checks_its_arguments():
    with pytest.raises(ValueError):
        build_ack(bytes(8), 1, MEMBER1, KEY1)
    with pytest.raises(ValueError):
        build_ack(KEK_SPI, 1 << 32, MEMBER1, KEY1)


def test_an_ack_moved_to_another_groups_kek_spi_acknowledges_nothing():
    # One phase 1 SA, so one ack key, serves a member's VPNs in two groups: an ACK of
    # SEQ 7 in one group, re-headered with the other group's KEK SPI, must not count.
    other_spi = bytes(range(16, 32))
    assert other_spi != KEK_SPI
    moved = other_spi + build_ack(KEK_SPI, 7, MEMBER1, KEY1)[16:]
    opened = open_ack(moved, lambda _s, _i: KEY1)
    assert isinstance(opened, AckRejected) and opened.reason is AckRejection.BAD_HASH
