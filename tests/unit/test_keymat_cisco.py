"""Known answers for the phase 1 and GROUPKEY-PULL formulas from the Cisco GDOI trace.

Source of every expected value: Cisco GDOI reference implementation trace,
stv0g/gdoid samples/loopback/sample_output_ks, as reproduced in gdoi-wire.md §9
(copied into tests/vectors/cisco_loopback.py).  Main mode, 3DES-CBC, SHA1, PSK,
MODP group 2; then one GROUPKEY-PULL (M-ID 483c11c0).

Payloads are sliced by their generic headers here, not decoded with the GDOI
payload classes, so these tests check the formulas and nothing else.
"""

from __future__ import annotations

import pytest

from groupvpn.crypto import keymat
from groupvpn.crypto.ciphers import CIPHERS, cbc_decrypt
from groupvpn.crypto.hashes import HASHES
from groupvpn.crypto.iv import IvManager
from groupvpn.wire.constants import HEADER_LENGTH, ExchangeType, PayloadType
from groupvpn.wire.dialect import V1
from groupvpn.wire.message import decode_payloads, pull_header
from groupvpn.wire.payloads import DecodeContext, HashPayload, IdPayload, NotifyPayload
from tests.pcaputil import split_payloads
from tests.vectors import cisco_loopback as vec

SHA1 = HASHES["sha1"]
TDES = CIPHERS["3des-cbc"]
BLOCK = TDES.block_size


def body(payloads: list[tuple[int, bytes]], payload_type: int) -> bytes:
    (raw,) = [raw for kind, raw in payloads if kind == payload_type]
    return raw[4:]


def clear(message: bytes) -> list[tuple[int, bytes]]:
    return split_payloads(message, pull_header(message).next_payload, HEADER_LENGTH)


def keys() -> keymat.Phase1Keys:
    return keymat.derive_phase1_keys(
        SHA1, TDES, vec.PSK, vec.NI_B, vec.NR_B, vec.G_XY, vec.CKY_I, vec.CKY_R
    )


class Trace:
    """Decrypts the trace in order with one IvManager, as an SA would."""

    def __init__(self) -> None:
        self.keys = keys()
        self.ivs = IvManager()
        self.ivs.set_phase1_iv(keymat.phase1_initial_iv(SHA1, g_xi(), g_xr(), BLOCK))

    def open(self, message: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
        header = pull_header(message)
        iv = self.ivs.iv_for(header.message_id, SHA1, BLOCK)
        ciphertext = message[HEADER_LENGTH:]
        plaintext = cbc_decrypt(TDES, self.keys.encryption_key, iv, ciphertext)
        # Each next IV of a chain = last ciphertext block of the previous message.
        self.ivs.update(header.message_id, ciphertext[-BLOCK:])
        self.ivs.confirm(header.message_id)
        return plaintext, split_payloads(plaintext, header.next_payload)


def g_xi() -> bytes:
    return body(clear(vec.MM3), PayloadType.KE)


def g_xr() -> bytes:
    return body(clear(vec.MM4), PayloadType.KE)


def sai_b() -> bytes:
    return body(clear(vec.MM1), PayloadType.SA)


def test_nonces_and_ke_come_from_the_messages() -> None:
    assert body(clear(vec.MM3), PayloadType.NONCE) == vec.NI_B
    assert body(clear(vec.MM4), PayloadType.NONCE) == vec.NR_B
    # MODP group 2: KE data is exactly 128 octets (gdoi-wire.md §1.8).
    assert len(g_xi()) == len(g_xr()) == len(vec.G_XY) == 128


def test_skeyids_and_3des_key() -> None:
    derived = keys()
    assert keymat.skeyid_psk(SHA1, vec.PSK, vec.NI_B, vec.NR_B) == vec.SKEYID
    assert derived.skeyid == vec.SKEYID
    assert derived.skeyid_d == vec.SKEYID_D
    assert derived.skeyid_a == vec.SKEYID_A
    assert derived.skeyid_e == vec.SKEYID_E
    # SHA1 gives 20 octets, 3DES needs 24: the RFC 2409 App. B expansion is used.
    assert derived.encryption_key == vec.KEY_3DES
    assert keymat.expand_encryption_key(SHA1, vec.SKEYID_E, 24) == vec.KEY_3DES


def test_keys_never_appear_in_repr() -> None:
    text = repr(keys())
    for secret in (vec.SKEYID, vec.SKEYID_D, vec.SKEYID_A, vec.SKEYID_E, vec.KEY_3DES):
        assert secret.hex() not in text.lower()


def test_phase1_ivs() -> None:
    assert keymat.phase1_initial_iv(SHA1, g_xi(), g_xr(), BLOCK) == vec.IV_MM5
    assert vec.MM5[-BLOCK:] == vec.IV_MM6


def test_mm5_mm6_decrypt_and_authenticate() -> None:
    trace = Trace()
    mm5_plain, mm5 = trace.open(vec.MM5)
    assert trace.ivs.phase1_iv() == vec.IV_MM6
    _, mm6 = trace.open(vec.MM6)
    assert [kind for kind, _ in mm5] == [PayloadType.ID, PayloadType.HASH, PayloadType.NOTIFY]
    assert [kind for kind, _ in mm6][:2] == [PayloadType.ID, PayloadType.HASH]

    common = (SHA1, vec.SKEYID, g_xi(), g_xr(), vec.CKY_I, vec.CKY_R, sai_b())
    expected_i = keymat.hash_i(*common, body(mm5, PayloadType.ID))
    expected_r = keymat.hash_r(*common, body(mm6, PayloadType.ID))
    assert expected_i == body(mm5, PayloadType.HASH) == vec.HASH_I
    assert expected_r == body(mm6, PayloadType.HASH) == vec.HASH_R
    # The swap in HASH_R matters: the HASH_I ordering with IDir_b gives another value.
    assert keymat.hash_i(*common, body(mm6, PayloadType.ID)) != vec.HASH_R

    # The project's phase 1 decoder reads the decrypted MM5 (zero padding trails it).
    chain = decode_payloads(
        mm5_plain,
        pull_header(vec.MM5).next_payload,
        DecodeContext(ExchangeType.IDENTITY_PROTECTION, V1),
        allow_trailing=True,
    )
    assert [type(p) for p in chain.payloads] == [IdPayload, HashPayload, NotifyPayload]
    assert chain.raw == tuple(raw for _, raw in mm5)


def test_pull_iv_from_last_phase1_block() -> None:
    last_mm6_block = vec.MM6[-BLOCK:]
    assert (
        keymat.phase2_initial_iv(SHA1, last_mm6_block, vec.PULL_MESSAGE_ID, BLOCK) == vec.IV_PULL1
    )
    trace = Trace()
    trace.open(vec.MM5)
    trace.open(vec.MM6)
    assert trace.ivs.iv_for(vec.PULL_MESSAGE_ID, SHA1, BLOCK) == vec.IV_PULL1


def test_groupkey_pull_hashes() -> None:
    trace = Trace()
    trace.open(vec.MM5)
    trace.open(vec.MM6)
    _, pull1 = trace.open(vec.PULL1)
    _, pull2 = trace.open(vec.PULL2)
    _, pull3 = trace.open(vec.PULL3)
    _, pull4 = trace.open(vec.PULL4)
    assert [kind for kind, _ in pull1] == [PayloadType.HASH, PayloadType.NONCE, PayloadType.ID]
    assert [kind for kind, _ in pull2] == [PayloadType.HASH, PayloadType.NONCE, PayloadType.SA]
    assert [kind for kind, _ in pull3] == [PayloadType.HASH]
    assert [kind for kind, _ in pull4] == [PayloadType.HASH, PayloadType.KD]

    ni_b = body(pull1, PayloadType.NONCE)
    nr_b = body(pull2, PayloadType.NONCE)
    assert (ni_b, nr_b) == (vec.PULL_NI_B, vec.PULL_NR_B)

    def after_hash(payloads: list[tuple[int, bytes]]) -> bytes:
        assert payloads[0][0] == PayloadType.HASH  # HASH is always first (§5.2)
        return b"".join(raw for _, raw in payloads[1:])

    mid, key = vec.PULL_MESSAGE_ID, vec.SKEYID_A
    hash1 = keymat.pull_hash1(SHA1, key, mid, after_hash(pull1))
    hash2 = keymat.pull_hash2(SHA1, key, mid, ni_b, after_hash(pull2))
    hash3 = keymat.pull_hash3(SHA1, key, mid, ni_b, nr_b, after_hash(pull3))
    hash4 = keymat.pull_hash4(SHA1, key, mid, ni_b, nr_b, after_hash(pull4))
    assert hash1 == body(pull1, PayloadType.HASH) == vec.PULL_HASH1
    assert hash2 == body(pull2, PayloadType.HASH) == vec.PULL_HASH2
    assert hash3 == body(pull3, PayloadType.HASH) == vec.PULL_HASH3
    assert hash4 == body(pull4, PayloadType.HASH) == vec.PULL_HASH4
    # gdoi-wire.md §0.2 item 3: the Quick Mode style 0x00 prefix does not match.
    assert keymat.pull_hash3(SHA1, key, mid, b"\x00" + ni_b, nr_b, b"") != vec.PULL_HASH3


def test_pull_chain_follows_last_ciphertext_blocks() -> None:
    trace = Trace()
    for message in (vec.MM5, vec.MM6, vec.PULL1, vec.PULL2, vec.PULL3):
        trace.open(message)
        assert trace.ivs.iv_for(pull_header(message).message_id, SHA1, BLOCK) == message[-BLOCK:]
    # The phase 1 chain did not move while the PULL chain advanced.
    assert trace.ivs.phase1_iv() == vec.MM6[-BLOCK:]


@pytest.mark.parametrize("message_id", [-1, 1 << 32])
def test_message_id_must_fit_four_octets(message_id: int) -> None:
    with pytest.raises(ValueError):
        keymat.pull_hash1(SHA1, vec.SKEYID_A, message_id, b"")
