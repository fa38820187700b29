"""Known answers for the IKEv1 phase 1 formulas from real strongSwan handshakes.

Source: strongSwan 5.9.8 charon IKEv1 PSK handshakes captured in the project
lab, with the keys charon logged at ``ike = 4`` (tests/vectors/strongswan/
README.md).  g^xy comes from the log (it needs a private exponent); everything
else is derived here from the capture and the PSK and must equal what
strongSwan computed: SKEYID, SKEYID_d/a/e, Ka, IV0, HASH_I, HASH_R.  The
encrypted messages, including the Informational (INITIAL-CONTACT) strongSwan
sends right after phase 1, must decrypt with the IV chains and decode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from groupvpn.crypto import keymat
from groupvpn.crypto.ciphers import CipherSuite, cbc_decrypt, cipher_from_ike
from groupvpn.crypto.dh import MODP_GROUPS, DhGroup
from groupvpn.crypto.hashes import HashAlgorithm, hash_from_ike
from groupvpn.crypto.iv import IvManager
from groupvpn.wire.constants import HEADER_LENGTH, ExchangeType, IkeAttribute, PayloadType
from groupvpn.wire.dialect import V1
from groupvpn.wire.message import IsakmpHeader, decode_message, decode_payloads, pull_header
from groupvpn.wire.payloads import DecodeContext, HashPayload, SaPayload
from tests.pcaputil import isakmp_messages, split_payloads

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "strongswan"
PSK = b"gdoi-lab-psk-0123456789"

# sample name -> (exchange, cipher, hash, DH group) as the file name says
SAMPLES = {
    "strongswan-am-3des-sha1-modp1024-500": (ExchangeType.AGGRESSIVE, "3des-cbc", "sha1", 2),
    "strongswan-mm-aes128-sha1-modp2048-500": (
        ExchangeType.IDENTITY_PROTECTION,
        "aes-128-cbc",
        "sha1",
        14,
    ),
    "strongswan-mm-aes256-sha256-modp2048-848": (
        ExchangeType.IDENTITY_PROTECTION,
        "aes-256-cbc",
        "sha-256",
        14,
    ),
}


@dataclass
class Message:
    header: IsakmpHeader
    from_initiator: bool
    wire: bytes
    plaintext: bytes  # payload octets after the header (decrypted, padding kept)
    payloads: list[tuple[int, bytes]]

    def bodies(self, payload_type: int) -> list[bytes]:
        return [raw[4:] for kind, raw in self.payloads if kind == payload_type]


@dataclass
class Handshake:
    name: str
    logged: dict[str, str]
    cipher: CipherSuite
    hash: HashAlgorithm
    group: DhGroup
    keys: keymat.Phase1Keys
    iv0: bytes
    sai_b: bytes
    g_xi: bytes
    g_xr: bytes
    ni_b: bytes
    nr_b: bytes
    messages: list[Message] = field(default_factory=list)

    def logged_bytes(self, key: str) -> bytes:
        return bytes.fromhex(self.logged[key])

    def phase1(self, from_initiator: bool) -> list[Message]:
        return [
            m
            for m in self.messages
            if m.header.message_id == 0 and m.from_initiator == from_initiator
        ]


def _only(values: list[bytes]) -> bytes:
    (value,) = values
    return value


def _accepted_suite(message: bytes) -> tuple[CipherSuite, HashAlgorithm, DhGroup]:
    """The responder's single accepted transform, through the project's own decoder."""
    (sa,) = [p for p in decode_message(message).payloads if isinstance(p, SaPayload)]
    values = {a.type: a.value for a in sa.proposals[0].transforms[0].attributes}
    key_length = values.get(IkeAttribute.KEY_LENGTH)
    assert key_length is None or isinstance(key_length, int)
    encryption, hash_id, group = (
        values[IkeAttribute.ENCRYPTION_ALGORITHM],
        values[IkeAttribute.HASH_ALGORITHM],
        values[IkeAttribute.GROUP_DESCRIPTION],
    )
    assert isinstance(encryption, int) and isinstance(hash_id, int) and isinstance(group, int)
    cipher = cipher_from_ike(encryption, key_length)
    hash_alg = hash_from_ike(hash_id)
    assert cipher is not None and hash_alg is not None
    return cipher, hash_alg, MODP_GROUPS[group]


@cache
def handshake(name: str) -> Handshake:
    (logged,) = json.loads((VECTORS / f"{name}.keys.json").read_text())
    datagrams = isakmp_messages(VECTORS / f"{name}.pcap")
    initiator = datagrams[0].src
    wires = [d.payload for d in datagrams]
    clear = [
        Message(h, d.src == initiator, d.payload, d.payload[HEADER_LENGTH:], [])
        for d in datagrams
        if not (h := pull_header(d.payload)).encrypted
    ]
    for m in clear:
        m.payloads = split_payloads(m.wire, m.header.next_payload, HEADER_LENGTH)
    cipher, hash_alg, group = _accepted_suite(clear[1].wire)
    ke_i, ke_r = (
        next(m for m in clear if m.bodies(PayloadType.KE) and m.from_initiator == side)
        for side in (True, False)
    )
    cky_i, cky_r = clear[1].header.initiator_cookie, clear[1].header.responder_cookie
    g_xy = bytes.fromhex(logged["g_xy"])
    ni_b, nr_b = _only(ke_i.bodies(PayloadType.NONCE)), _only(ke_r.bodies(PayloadType.NONCE))
    keys = keymat.derive_phase1_keys(hash_alg, cipher, PSK, ni_b, nr_b, g_xy, cky_i, cky_r)
    g_xi, g_xr = _only(ke_i.bodies(PayloadType.KE)), _only(ke_r.bodies(PayloadType.KE))
    iv0 = keymat.phase1_initial_iv(hash_alg, g_xi, g_xr, cipher.block_size)
    shake = Handshake(
        name,
        logged,
        cipher,
        hash_alg,
        group,
        keys,
        iv0,
        _only(clear[0].bodies(PayloadType.SA)),
        g_xi,
        g_xr,
        ni_b,
        nr_b,
    )

    # Decrypt every encrypted message in capture order, driving the IV chains the
    # way an SA does: the last ciphertext block is confirmed as the next IV only
    # after the message decrypted to a well-formed payload chain.
    ivs = IvManager()
    ivs.set_phase1_iv(iv0)
    for d, wire in zip(datagrams, wires, strict=True):
        header = pull_header(wire)
        if not header.encrypted:
            shake.messages.append(next(m for m in clear if m.wire == wire))
            continue
        ciphertext = wire[HEADER_LENGTH:]
        iv = ivs.iv_for(header.message_id, hash_alg, cipher.block_size)
        plaintext = cbc_decrypt(cipher, keys.encryption_key, iv, ciphertext)
        ivs.update(header.message_id, ciphertext[-cipher.block_size :])
        payloads = split_payloads(plaintext, header.next_payload)
        ivs.confirm(header.message_id)
        shake.messages.append(Message(header, d.src == initiator, wire, plaintext, payloads))
    return shake


@pytest.fixture(params=sorted(SAMPLES))
def shake(request: pytest.FixtureRequest) -> Handshake:
    name: str = request.param
    return handshake(name)


def test_samples_are_the_suites_they_claim(shake: Handshake) -> None:
    exchange, cipher, hash_name, group = SAMPLES[shake.name]
    assert {m.header.exchange_type for m in shake.messages if m.header.message_id == 0} == {
        exchange
    }
    assert (shake.cipher.name, shake.hash.name, shake.group.number) == (cipher, hash_name, group)
    # KE data and g^xy are full-length strings of the group (gdoi-wire.md §1.8).
    length = shake.group.length_octets
    assert len(shake.g_xi) == len(shake.g_xr) == len(shake.logged_bytes("g_xy")) == length
    header = shake.messages[1].header
    assert header.initiator_cookie == shake.logged_bytes("icookie")
    assert header.responder_cookie == shake.logged_bytes("rcookie")


def test_skeyids_ka_and_iv0(shake: Handshake) -> None:
    assert shake.keys.skeyid == shake.logged_bytes("skeyid")
    assert shake.keys.skeyid_d == shake.logged_bytes("skeyid_d")
    assert shake.keys.skeyid_a == shake.logged_bytes("skeyid_a")
    assert shake.keys.skeyid_e == shake.logged_bytes("skeyid_e")
    # 3DES+SHA1 expands (App. B), AES-128+SHA1 truncates, AES-256+SHA-256 is SKEYID_e.
    assert shake.keys.encryption_key == shake.logged_bytes("ka")
    assert len(shake.keys.encryption_key) == shake.cipher.key_length
    assert shake.iv0 == shake.logged_bytes("iv0")


def test_hash_i_and_hash_r(shake: Handshake) -> None:
    # Main mode: IDii/HASH_I in MM5, IDir/HASH_R in MM6 (both decrypted).
    # Aggressive mode: IDii in AM1, IDir and HASH_R in AM2 in clear, HASH_I in AM3.
    def first(messages: list[Message], payload_type: int) -> bytes:
        return next(body for m in messages for body in m.bodies(payload_type))

    initiator, responder = shake.phase1(True), shake.phase1(False)
    common = (
        shake.hash,
        shake.keys.skeyid,
        shake.g_xi,
        shake.g_xr,
        shake.logged_bytes("icookie"),
        shake.logged_bytes("rcookie"),
        shake.sai_b,
    )
    expected_i = keymat.hash_i(*common, first(initiator, PayloadType.ID))
    expected_r = keymat.hash_r(*common, first(responder, PayloadType.ID))
    assert expected_i == first(initiator, PayloadType.HASH) == shake.logged_bytes("hash_i")
    assert expected_r == first(responder, PayloadType.HASH) == shake.logged_bytes("hash_r")


def test_encrypted_messages_decode(shake: Handshake) -> None:
    encrypted = [m for m in shake.messages if m.header.encrypted]
    assert encrypted
    for m in encrypted:
        ctx = DecodeContext(m.header.exchange_type, V1)
        chain = decode_payloads(m.plaintext, m.header.next_payload, ctx, allow_trailing=True)
        assert chain.raw == tuple(raw for _, raw in m.payloads)
        # Only padding is left.  strongSwan always pads, with a whole block of
        # zeros when the payloads already end on a block boundary.
        assert len(chain.trailing) <= shake.cipher.block_size


def test_informational_iv_and_hash(shake: Handshake) -> None:
    phase1_encrypted = [
        m for m in shake.messages if m.header.encrypted and m.header.message_id == 0
    ]
    (info,) = [m for m in shake.messages if m.header.exchange_type == ExchangeType.INFORMATIONAL]
    block = shake.cipher.block_size
    # IV = hash(last phase 1 ciphertext block | M-ID): decrypting with it gave HASH first.
    expected_iv = keymat.phase2_initial_iv(
        shake.hash, phase1_encrypted[-1].wire[-block:], info.header.message_id, block
    )
    plaintext = cbc_decrypt(
        shake.cipher, shake.keys.encryption_key, expected_iv, info.wire[HEADER_LENGTH:]
    )
    assert plaintext == info.plaintext
    assert info.payloads[0][0] == PayloadType.HASH
    protected = b"".join(raw for _, raw in info.payloads[1:])
    digest = keymat.informational_hash(
        shake.hash, shake.keys.skeyid_a, info.header.message_id, protected
    )
    ctx = DecodeContext(ExchangeType.INFORMATIONAL, V1)
    chain = decode_payloads(plaintext, info.header.next_payload, ctx, allow_trailing=True)
    assert isinstance(chain.payloads[0], HashPayload)
    assert digest == chain.payloads[0].data
