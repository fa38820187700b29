"""Heartbeats and the group clock in pushes (docs/rekey-wire.md).

A heartbeat is a signed push with a fresh SEQ and no keys: SEQ, the group's current
SA TEKs (remaining lifetimes) each carrying GROUP_CLOCK, SIG.  A member reads from it
that the server is alive, which TEK SPIs are current (so it can tell it missed a
rekey) and the group time.
"""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from groupvpn.crypto.ciphers import cbc_decrypt
from groupvpn.gdoi.push import (
    GROUP_CLOCK_ATTRIBUTE,
    PushOpened,
    PushRejected,
    PushRejection,
    build_heartbeat,
    build_push,
    open_push,
    read_group_clock,
    stamp_group_clock,
)
from groupvpn.gdoi.push_sig import RsaPushSigner, sig_hash
from groupvpn.server.tek import new_tek
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.constants import HEADER_LENGTH, Doi, ExchangeType, PayloadType
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.gdoi import GdoiSaPayload, IpsecTek
from groupvpn.wire.gdoi_numbers import IpsecAttribute
from groupvpn.wire.message import decode_payloads
from groupvpn.wire.payloads import DecodeContext
from tests.unit.test_gdoi_push import POLICY, a_kek, material, receivers_for, rekey_content, sat

DIALECTS = pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
CLOCK = 1_234_567_890_123  # ms


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


def _clock_values(sa: GdoiSaPayload) -> list[bytes]:
    return [
        a.as_bytes()
        for t in sa.teks
        if isinstance(t.spec, IpsecTek)
        for a in t.spec.attributes
        if a.type == GROUP_CLOCK_ATTRIBUTE
    ]


@DIALECTS
def test_a_heartbeat_lists_the_current_teks_with_the_group_clock_and_no_keys(
    private_key: rsa.RSAPrivateKey, dialect: Dialect
):
    kek = a_kek()
    teks = [new_tek(POLICY, 0.0, set()), new_tek(POLICY, 0.0, set())]
    sats = [sat(t, 600.0, dialect) for t in teks]
    datagram = build_heartbeat(
        42, sats, CLOCK, material(kek), RsaPushSigner(private_key), sig_hash(2), dialect=dialect
    )
    opened = open_push(datagram, receivers_for(kek, private_key.public_key(), dialect, 41))
    assert isinstance(opened, PushOpened), opened
    assert opened.is_heartbeat and not opened.carries_new_teks and opened.new_kek is None
    assert opened.key_download is None and opened.deletes == ()
    assert (opened.sequence, opened.group_clock) == (42, CLOCK)
    assert opened.tek_spis == tuple(t.spi for t in teks)
    assert opened.sa is not None
    assert _clock_values(opened.sa) == [CLOCK.to_bytes(8, "big")] * 2
    # The remaining lifetime at 600 s of a 3600 s TEK, as a registration would say it.
    lifetimes = [
        a.as_int()
        for t in opened.sa.teks
        if isinstance(t.spec, IpsecTek)
        for a in t.spec.attributes
        if a.type == IpsecAttribute.SA_LIFE_DURATION
    ]
    assert lifetimes == [3000, 3000]


@DIALECTS
def test_a_heartbeat_of_a_group_without_teks_is_seq_and_sig(
    private_key: rsa.RSAPrivateKey, dialect: Dialect
):
    kek = a_kek()
    datagram = build_heartbeat(
        3, [], CLOCK, material(kek), RsaPushSigner(private_key), sig_hash(2), dialect=dialect
    )
    opened = open_push(datagram, receivers_for(kek, private_key.public_key(), dialect, 2))
    assert isinstance(opened, PushOpened)
    assert opened.is_heartbeat and opened.sa is None and opened.group_clock is None
    assert opened.tek_spis == ()


def test_a_replayed_heartbeat_is_refused_like_any_push(private_key: rsa.RSAPrivateKey):
    kek = a_kek()
    sats = [sat(new_tek(POLICY, 0.0, set()), 0.0, V2)]
    datagram = build_heartbeat(
        5, sats, CLOCK, material(kek), RsaPushSigner(private_key), sig_hash(2), dialect=V2
    )
    result = open_push(datagram, receivers_for(kek, private_key.public_key(), V2, 5))
    assert isinstance(result, PushRejected) and result.reason is PushRejection.REPLAYED_SEQ


def test_a_rekey_carries_the_group_clock_too(private_key: rsa.RSAPrivateKey):
    kek = a_kek()
    content = rekey_content(9, [new_tek(POLICY, 0.0, set())], 0.0, V2)
    stamped = dataclasses.replace(content, group_clock=CLOCK)
    datagram = build_push(
        stamped, material(kek), RsaPushSigner(private_key), sig_hash(2), dialect=V2
    )
    opened = open_push(datagram, receivers_for(kek, private_key.public_key(), V2))
    assert isinstance(opened, PushOpened)
    assert opened.group_clock == CLOCK and not opened.is_heartbeat and opened.carries_new_teks


def test_stamping_replaces_an_older_clock_and_reading_needs_agreement():
    sats = tuple(sat(new_tek(POLICY, 0.0, set()), 0.0, V2) for _ in range(3))
    sa = GdoiSaPayload(Doi.GDOI, 0, teks=sats)
    assert read_group_clock(sa) is None and read_group_clock(None) is None
    once = stamp_group_clock(sa, 1, V2)
    twice = stamp_group_clock(once, 2, V2)
    assert read_group_clock(twice) == 2 and len(_clock_values(twice)) == 3
    first = twice.teks[0]
    assert isinstance(first.spec, IpsecTek)
    other = DataAttribute.variable(GROUP_CLOCK_ATTRIBUTE, (3).to_bytes(8, "big"))
    changed = dataclasses.replace(first.spec, attributes=(*first.spec.attributes[:-1], other))
    disagreeing = dataclasses.replace(
        twice, teks=(dataclasses.replace(first, spec=changed), *twice.teks[1:])
    )
    with pytest.raises(ValueError, match="different"):
        read_group_clock(disagreeing)
    short = DataAttribute.variable(GROUP_CLOCK_ATTRIBUTE, b"\x00\x01")
    basic = DataAttribute.basic(GROUP_CLOCK_ATTRIBUTE, 7)
    for bad in (short, basic):
        spec = dataclasses.replace(first.spec, attributes=(bad,))
        with pytest.raises(ValueError, match="8-octet"):
            broken = dataclasses.replace(first, spec=spec)
            read_group_clock(GdoiSaPayload(Doi.GDOI, 0, teks=(broken,)))
    with pytest.raises(ValueError):
        stamp_group_clock(sa, 1 << 64, V2)
    with pytest.raises(ValueError):
        stamp_group_clock(sa, -1, V2)


def test_a_push_whose_teks_disagree_on_the_clock_is_malformed(private_key: rsa.RSAPrivateKey):
    kek = a_kek()
    teks = [new_tek(POLICY, 0.0, set()) for _ in range(2)]
    content = rekey_content(4, teks, 0.0, V2)
    assert content.sa is not None
    one = stamp_group_clock(content.sa, 1, V2)
    two = stamp_group_clock(content.sa, 2, V2)
    mixed_sa = dataclasses.replace(one, teks=(one.teks[0], two.teks[1]))
    mixed = dataclasses.replace(content, sa=mixed_sa)
    signer = RsaPushSigner(private_key)
    datagram = build_push(mixed, material(kek), signer, sig_hash(2), dialect=V2)
    result = open_push(datagram, receivers_for(kek, private_key.public_key(), V2))
    assert isinstance(result, PushRejected) and result.reason is PushRejection.MALFORMED


def test_the_heartbeat_payload_chain_is_seq_sa_sig(private_key: rsa.RSAPrivateKey):
    """What tshark gets to see once decrypted (tests/interop/test_push_tshark.py)."""
    kek = a_kek()
    sats = [sat(new_tek(POLICY, 0.0, set()), 0.0, V2)]
    datagram = build_heartbeat(
        8, sats, CLOCK, material(kek), RsaPushSigner(private_key), sig_hash(2), dialect=V2
    )
    keys = material(kek)
    plaintext = cbc_decrypt(keys.cipher, keys.key, keys.iv, datagram[HEADER_LENGTH:])
    chain = decode_payloads(
        plaintext, PayloadType.SEQ, DecodeContext(ExchangeType.GROUPKEY_PUSH, V2),
        allow_trailing=True,
    )  # fmt: skip
    types = [p.payload_type for p in chain.payloads]
    assert types == [PayloadType.SEQ, PayloadType.SA, PayloadType.SIG]
