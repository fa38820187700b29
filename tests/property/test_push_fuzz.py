"""Fuzzing GROUPKEY-PUSH and ACK parsing: typed rejections only, and nothing forged gets in.

Whatever arrives, :func:`open_push` and :func:`open_ack` return a result object and
never raise.  And because pushes are signed and ACKs hashed, a mutated datagram that
is still accepted must say exactly what the original said (a flip inside the CBC
padding can survive: padding is not signed, and means nothing).

Inputs: random datagrams; random ciphertext behind a valid header with a known KEK
SPI (so decryption and the payload decoder run); random and mutated *plaintexts*
encrypted with the right KEK (so the shape and signature checks run); and mutations
(bit flips, truncation, insertion) of a valid push, heartbeat and ACK.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groupvpn.crypto.ciphers import cbc_decrypt, cbc_encrypt
from groupvpn.gdoi.push import (
    KekMaterial,
    PushContent,
    PushOpened,
    PushReceiver,
    PushRejected,
    build_heartbeat,
    build_push,
    open_push,
)
from groupvpn.gdoi.push_ack import (
    ACK_EXCHANGE_TYPE,
    AckKey,
    AckOpened,
    AckRejected,
    build_ack,
    derive_ack_key,
    open_ack,
)
from groupvpn.gdoi.push_sig import RsaPushSigner, sig_hash
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.constants import HEADER_LENGTH, Doi, ExchangeType, Flag, PayloadType
from groupvpn.wire.dialect import V1, V2
from groupvpn.wire.gdoi import (
    GdoiId,
    GdoiSaPayload,
    IpsecTek,
    KeyDownloadPayload,
    KeyPacket,
    SaTekPayload,
)
from groupvpn.wire.gdoi_numbers import KdType, TekProtocol
from groupvpn.wire.message import IsakmpHeader
from groupvpn.wire.payloads import IdPayload
from tests.unit.test_gdoi_push import CISCO_PUSH, cisco_receivers

PRIVATE = rsa.generate_private_key(65537, 1024)
SIGNER = RsaPushSigner(PRIVATE)
SHA1 = sig_hash(2)
KEK = KekMaterial.named(bytes(range(1, 17)), "aes-128-cbc", bytes(range(16)), b"\x42" * 16)
RECEIVERS = {
    KEK.spi: PushReceiver(KEK, PRIVATE.public_key(), SHA1, 0, V2),
}
V1_RECEIVERS = {
    KEK.spi: PushReceiver(KEK, PRIVATE.public_key(), SHA1, 0, V1),
}

_TEK = SaTekPayload(
    TekProtocol.IPSEC_ESP,
    IpsecTek(
        0, GdoiId.ipv4_subnet("10.0.0.0/8"), GdoiId.ipv4_subnet("10.0.0.0/8"), 12,
        b"\x00\x00\x10\x01", (DataAttribute.basic(6, 128), DataAttribute.basic(5, 2)),
    ),
)  # fmt: skip
_CONTENT = PushContent(
    5,
    sa=GdoiSaPayload(Doi.GDOI, 0, teks=(_TEK,)),
    key_download=KeyDownloadPayload(
        (KeyPacket(KdType.TEK, b"\x00\x00\x10\x01", (DataAttribute.variable(1, bytes(16)),)),)
    ),
    group_clock=77,
)
PUSH = build_push(_CONTENT, KEK, SIGNER, SHA1, dialect=V2)
HEARTBEAT = build_heartbeat(6, [_TEK], 78, KEK, SIGNER, SHA1, dialect=V2)
CISCO_RECEIVERS = cisco_receivers()
ORIGINALS = {
    PUSH: open_push(PUSH, RECEIVERS),
    HEARTBEAT: open_push(HEARTBEAT, RECEIVERS),
    CISCO_PUSH: open_push(CISCO_PUSH, CISCO_RECEIVERS),
}
assert all(isinstance(opened, PushOpened) for opened in ORIGINALS.values())

ACK_KEY = derive_ack_key(SHA1, b"\x07" * 20, bytes(range(16)))
MEMBER = IdPayload.ipv4("198.51.100.11")
ACK = build_ack(KEK.spi, 5, MEMBER, ACK_KEY)


def ack_lookup(spi: bytes, identity: IdPayload) -> AckKey | None:
    return ACK_KEY if (spi, identity) == (KEK.spi, MEMBER) else None


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _header(body_length: int, next_payload: int = PayloadType.SEQ) -> bytes:
    return IsakmpHeader(
        KEK.spi[:8], KEK.spi[8:], next_payload, ExchangeType.GROUPKEY_PUSH, Flag.ENCRYPTION,
        0, HEADER_LENGTH + body_length,
    ).encode()  # fmt: skip


def _check_push(data: bytes) -> None:
    for receivers in (RECEIVERS, V1_RECEIVERS, CISCO_RECEIVERS):
        result = open_push(data, receivers)
        assert isinstance(result, PushOpened | PushRejected)
        if isinstance(result, PushOpened):
            # Only something carrying a valid signature opens: one of the originals.
            assert result in ORIGINALS.values()


@FUZZ
@given(st.binary(max_size=600))
def test_random_datagrams(data: bytes) -> None:
    _check_push(data)
    assert isinstance(open_ack(data, ack_lookup), AckOpened | AckRejected)


_BLOCKS = st.integers(0, 40).flatmap(lambda n: st.binary(min_size=16 * n, max_size=16 * n))


@FUZZ
@given(_BLOCKS, st.integers(0, 255))
def test_random_ciphertext_behind_a_valid_header(body: bytes, first: int) -> None:
    _check_push(_header(len(body), first) + body)


@FUZZ
@given(st.binary(max_size=500), st.integers(0, 255))
def test_random_plaintext_encrypted_with_the_right_kek(plaintext: bytes, first: int) -> None:
    padded = plaintext + bytes(-len(plaintext) % 16)
    if not padded:
        return
    body = cbc_encrypt(KEK.cipher, KEK.key, KEK.iv, padded)
    _check_push(_header(len(body), first) + body)


_PLAINTEXT = cbc_decrypt(KEK.cipher, KEK.key, KEK.iv, PUSH[HEADER_LENGTH:])


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(_PLAINTEXT) - 1), st.integers(1, 255)), max_size=4))
def test_mutated_plaintext_encrypted_with_the_right_kek(flips: list[tuple[int, int]]) -> None:
    mutated = bytearray(_PLAINTEXT)
    for at, mask in flips:
        mutated[at] ^= mask
    body = cbc_encrypt(KEK.cipher, KEK.key, KEK.iv, bytes(mutated))
    _check_push(_header(len(body)) + body)


def _mutations(original: bytes) -> st.SearchStrategy[bytes]:
    size = len(original)
    flips = st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 255)), min_size=1)

    def flip(changes: list[tuple[int, int]]) -> bytes:
        out = bytearray(original)
        for at, mask in changes:
            out[at] ^= mask
        return bytes(out)

    truncate = st.integers(0, size - 1).map(lambda n: original[:n])
    insert = st.tuples(st.integers(0, size), st.binary(min_size=1, max_size=32)).map(
        lambda t: original[: t[0]] + t[1] + original[t[0] :]
    )
    relength = st.tuples(st.integers(0, size), st.binary(max_size=48)).map(
        lambda t: _fix_length(original[: t[0]] + t[1])
    )
    return st.one_of(flips.map(flip), truncate, insert, relength)


def _fix_length(data: bytes) -> bytes:
    """Keep the header's Length consistent so the mutation reaches the decoder."""
    if len(data) < HEADER_LENGTH:
        return data
    return data[:24] + len(data).to_bytes(4, "big") + data[28:]


@FUZZ
@given(st.sampled_from([PUSH, HEARTBEAT, CISCO_PUSH]).flatmap(_mutations))
def test_mutated_pushes(data: bytes) -> None:
    _check_push(data)


@FUZZ
@given(_mutations(ACK))
def test_mutated_acks(data: bytes) -> None:
    result = open_ack(data, ack_lookup)
    assert isinstance(result, AckOpened | AckRejected)
    if isinstance(result, AckOpened):
        assert result == open_ack(ACK, ack_lookup)


@FUZZ
@given(st.binary(max_size=200), st.integers(0, 255))
def test_random_ack_bodies_behind_a_valid_header(body: bytes, first: int) -> None:
    header = IsakmpHeader(
        KEK.spi[:8], KEK.spi[8:], first, ACK_EXCHANGE_TYPE, 0, 0, HEADER_LENGTH + len(body)
    ).encode()
    result = open_ack(header + body, ack_lookup)
    assert isinstance(result, AckRejected)
