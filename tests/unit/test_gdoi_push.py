"""GROUPKEY-PUSH: the Cisco reference push, round trips in both dialects, KEK rollover, rejections.

Known answers: the Cisco GDOI reference implementation's trace
``samples/three-clients/sample_output_ks`` (GitHub stv0g/gdoid) as reproduced in
gdoi-wire.md §9 ("PUSH message as sent (404 octets)") and §6.2 (its signature digest
6414d488…, HDR' length 0x190 against 0x194 sent).  The KEK is the trace's 3DES key
"ABCDEFGHIJKLMNOPQRSTUVWX" with the static IV "IVIVIVIV", and the RSA-1024 public key
the member got in PULL 4's KD (tests.vectors.gdoi_cisco).  The trace's private key is
not known, so the build side is checked by signing with a signer that returns the
trace's signature for exactly the trace's digest: the datagram must come out octet
for octet.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from ipaddress import IPv4Network

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)

from groupvpn.crypto.ciphers import CIPHERS, cbc_decrypt
from groupvpn.gdoi.push import (
    KekMaterial,
    PushContent,
    PushOpened,
    PushReceiver,
    PushRejected,
    PushRejection,
    build_push,
    open_push,
)
from groupvpn.gdoi.push_sig import (
    RsaPushSigner,
    SigHashSpec,
    SignatureEncoding,
    sig_hash,
    verify_digest,
)
from groupvpn.server.kek import KEK_CIPHERS, SIG_HASHES, Kek, KekPolicy, new_kek
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY, GroupPolicySpec, Tek, new_tek
from groupvpn.wire.constants import HEADER_LENGTH, Doi, ExchangeType, PayloadType
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.gdoi import (
    GdoiId,
    GdoiSaPayload,
    KeyDownloadPayload,
    KeyPacket,
    SaTekPayload,
    SeqPayload,
)
from groupvpn.wire.gdoi_numbers import KdType, KekKeyAttribute, TekProtocol
from groupvpn.wire.message import PayloadChain, decode_payloads, pull_header
from groupvpn.wire.payloads import DecodeContext, DeletePayload, SigPayload
from tests.vectors import gdoi_cisco as vec


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# --- the Cisco reference push (gdoi-wire.md §9) ------------------------------------------

CISCO_PUSH = _hex(
    """
    61626364 65666768 30313233 34353637 12102101 00000000 00000194 5175e4fc
    59135cf4 2973b12d 1d6abd59 e4b40f93 c2f6ff08 4688feab a0d3566e fc0b62f0
    1e3e69ca 9fb4f1ea fd2347f1 e87344a1 9533f966 11c29229 e610f717 8deb7458
    5e9d3117 32dc8cb5 15dbd797 4955e843 6e97e8a7 ec9559a2 17c06a9d 421fb6ca
    34bb6261 d5c91b6f 939a166d 08a3ec17 0007a8b2 c7192039 2e0f77bc 609e6d60
    7844abdb 4142992e 874acd1e 2085252f b0a02ad5 12385f5b 47cb0885 864c1961
    c41fdbf5 b70501ac 48d0e2b2 9c0b2629 70d08853 91bc60a4 bd123aba dd268a88
    24370f99 c5c64315 d3d6cb00 4c91cdc8 a5363dde 5a052936 b6445696 45d6273c
    497a9935 cdd30202 5f17d68c 83a9990c 35e7725d 041fa88f 1393e50f 99a12222
    336bb521 6166b2c8 94c9413a ea238054 d632e468 79ce7bdc a9c67d29 aaac3453
    b82ff88c d40087cc 5e9627d0 206b750f c413126b 612f7d66 56229d51 c9a4a701
    ddcc12a2 25e1b721 3086ad89 4fe47db8 b7249b55 be26bddf 112705a3 2065156c
    e84f46a5 0b86b382 4bde6bf4 7a601cc4 c70fdfab
    """
)
#: §6.2: SHA-1 over "rekey" | HDR' | SEQ | SA | KD.
CISCO_DIGEST = bytes.fromhex("6414d4880adb58b2effeb5407c9a5873acddf9e5")
CISCO_HDR_PRIME_LENGTH = 0x190
CISCO_KEK = KekMaterial.named(vec.KEK_SPI, "3des-cbc", vec.KEK_KEY, vec.KEK_IV)
CISCO_SHA1 = sig_hash(2)  # SIG_HASH_ALGORITHM = SHA1 in the trace's SA KEK


def cisco_public_key() -> RSAPublicKey:
    """The key server's public key, from the KD KEK packet of PULL 4 (§4.5)."""
    chain = decode_payloads(
        vec.PULL4_PLAINTEXT,
        PayloadType.HASH,
        DecodeContext(ExchangeType.GROUPKEY_PULL, V1),
        allow_trailing=True,
    )
    kd = next(p for p in chain.payloads if isinstance(p, KeyDownloadPayload))
    (packet,) = kd.find(KdType.KEK)
    der = next(
        a.as_bytes() for a in packet.attributes if a.type == KekKeyAttribute.SIG_ALGORITHM_KEY
    )
    key = load_der_public_key(der)
    assert isinstance(key, RSAPublicKey)
    return key


def cisco_receivers(last_sequence: int = 0) -> dict[bytes, PushReceiver]:
    receiver = PushReceiver(CISCO_KEK, cisco_public_key(), CISCO_SHA1, last_sequence, V1)
    return {vec.KEK_SPI: receiver}


def _cisco_plaintext() -> bytes:
    return cbc_decrypt(CIPHERS["3des-cbc"], vec.KEK_KEY, vec.KEK_IV, CISCO_PUSH[HEADER_LENGTH:])


def _cisco_chain() -> PayloadChain:
    return decode_payloads(
        _cisco_plaintext(),
        PayloadType.SEQ,
        DecodeContext(ExchangeType.GROUPKEY_PUSH, V1),
        allow_trailing=True,
    )


def test_the_cisco_push_header_is_the_kek_spi_exchange_33_encrypted_message_id_0():
    header = pull_header(CISCO_PUSH)
    assert header.initiator_cookie + header.responder_cookie == vec.KEK_SPI
    assert (header.exchange_type, header.flags, header.message_id) == (33, 1, 0)
    assert header.next_payload == PayloadType.SEQ and header.length == 404


def test_the_cisco_push_decrypts_with_the_static_kek_iv_to_seq_sa_kd_sig():
    chain = _cisco_chain()
    assert [type(p) for p in chain.payloads] == [
        SeqPayload, GdoiSaPayload, KeyDownloadPayload, SigPayload,
    ]  # fmt: skip
    assert chain.trailing == bytes(4)  # zero padding to the 8-octet block
    seq, sa, kd, sig = chain.payloads
    assert isinstance(seq, SeqPayload) and seq.sequence == 1
    assert isinstance(sa, GdoiSaPayload) and sa.kek is None and len(sa.teks) == 2
    assert isinstance(kd, KeyDownloadPayload) and len(kd.find(KdType.TEK)) == 2
    assert isinstance(sig, SigPayload) and len(sig.data) == 128  # RSA-1024


def test_the_cisco_signature_digest_covers_rekey_hdr_prime_and_the_payloads_before_sig():
    chain = _cisco_chain()
    signed = b"".join(chain.raw[:-1])
    assert HEADER_LENGTH + len(signed) + len(chain.raw[-1]) == CISCO_HDR_PRIME_LENGTH
    hdr_prime = CISCO_PUSH[:24] + CISCO_HDR_PRIME_LENGTH.to_bytes(4, "big")
    assert hashlib.sha1(b"rekey" + hdr_prime + signed).digest() == CISCO_DIGEST


def test_the_cisco_signature_is_pkcs1_type1_over_the_bare_digest():
    signature = _cisco_chain().payloads[-1]
    assert isinstance(signature, SigPayload)
    key = cisco_public_key()
    raw, info = SignatureEncoding.RAW_DIGEST, SignatureEncoding.DIGEST_INFO
    assert verify_digest(key, signature.data, CISCO_DIGEST, CISCO_SHA1, raw)
    assert not verify_digest(key, signature.data, CISCO_DIGEST, CISCO_SHA1, info)
    assert not verify_digest(key, signature.data, bytes(20), CISCO_SHA1, raw)


def test_a_member_opens_the_cisco_push():
    opened = open_push(CISCO_PUSH, cisco_receivers())
    assert isinstance(opened, PushOpened)
    assert (opened.kek_spi, opened.sequence) == (vec.KEK_SPI, 1)
    assert opened.tek_spis == (bytes.fromhex("2e22fbb7"), bytes.fromhex("2123d5f2"))
    assert opened.carries_new_teks and not opened.is_heartbeat
    assert opened.new_kek is None and opened.deletes == () and opened.group_clock is None


class ReplayingSigner:
    """Returns the trace's signature, but only for the trace's digest."""

    signature_length = 128

    def sign_digest(self, digest: bytes, spec: SigHashSpec, encoding: SignatureEncoding) -> bytes:
        assert (digest, spec, encoding) == (CISCO_DIGEST, CISCO_SHA1, SignatureEncoding.RAW_DIGEST)
        signature = _cisco_chain().payloads[-1]
        assert isinstance(signature, SigPayload)
        return signature.data


def test_building_the_cisco_push_reproduces_it_octet_for_octet():
    opened = open_push(CISCO_PUSH, cisco_receivers())
    assert isinstance(opened, PushOpened)
    content = PushContent(1, sa=opened.sa, key_download=opened.key_download)
    built = build_push(content, CISCO_KEK, ReplayingSigner(), CISCO_SHA1, dialect=V1)
    assert built == CISCO_PUSH


@pytest.mark.parametrize("last", [1, 2, 0xFFFFFFFF])
def test_the_cisco_push_is_a_replay_once_its_seq_or_a_later_one_was_accepted(last: int):
    rejected = open_push(CISCO_PUSH, cisco_receivers(last))
    assert isinstance(rejected, PushRejected)
    assert rejected.reason is PushRejection.REPLAYED_SEQ and rejected.kek_spi == vec.KEK_SPI


# --- a key server of ours: keys, signer, receivers ------------------------------------------

POLICY = GroupPolicySpec(
    "p1", IPv4Network("10.1.0.0/16"), IPv4Network("10.2.0.0/16"), 0, 0, 0,
    ESP_CIPHERS["aes-128-cbc"], ESP_INTEGRITY["hmac-sha1-96"], 3600,
)  # fmt: skip
SERVER = GdoiId.ipv4("192.0.2.1", 848)
MEMBER = GdoiId.ipv4("198.51.100.11", 848)


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def material(kek: Kek) -> KekMaterial:
    """The adapter from the server's Kek (and likewise the member's GroupKek)."""
    return KekMaterial.named(kek.spi, kek.policy.cipher.name, kek.key, kek.iv)


def receivers_for(
    kek: Kek,
    public_key: RSAPublicKey,
    dialect: Dialect,
    last: int = 0,
    encoding: SignatureEncoding = SignatureEncoding.RAW_DIGEST,
) -> dict[bytes, PushReceiver]:
    spec = sig_hash(kek.policy.sig_hash.algorithm)
    return {kek.spi: PushReceiver(material(kek), public_key, spec, last, dialect, encoding)}


def sat(tek: Tek, now: float, dialect: Dialect) -> SaTekPayload:
    return SaTekPayload(
        TekProtocol.IPSEC_ESP,
        tek.sa_tek(now, address_preservation=dialect.has_gap),
        dialect.sat_id_length_octets,
    )


def rekey_content(sequence: int, teks: list[Tek], now: float, dialect: Dialect) -> PushContent:
    sa = GdoiSaPayload(Doi.GDOI, 0, teks=tuple(sat(t, now, dialect) for t in teks))
    kd = KeyDownloadPayload(tuple(t.key_packet() for t in teks))
    return PushContent(sequence, sa=sa, key_download=kd)


def a_kek(cipher: str = "aes-128-cbc", hash_name: str = "sha1") -> Kek:
    return new_kek(KekPolicy(KEK_CIPHERS[cipher], SIG_HASHES[hash_name]), 0.0, set())


def a_push(
    private_key: rsa.RSAPrivateKey,
    kek: Kek,
    dialect: Dialect = V2,
    sequence: int = 1,
    encoding: SignatureEncoding = SignatureEncoding.RAW_DIGEST,
) -> tuple[bytes, Tek]:
    tek = new_tek(POLICY, 0.0, set())
    content = rekey_content(sequence, [tek], 10.0, dialect)
    spec = sig_hash(kek.policy.sig_hash.algorithm)
    signer = RsaPushSigner(private_key)
    return build_push(content, material(kek), signer, spec, dialect=dialect, encoding=encoding), tek


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
@pytest.mark.parametrize("cipher", sorted(KEK_CIPHERS))
@pytest.mark.parametrize("hash_name", ["md5", "sha1", "sha-256"])
def test_a_rekey_round_trips(
    private_key: rsa.RSAPrivateKey, dialect: Dialect, cipher: str, hash_name: str
):
    kek = a_kek(cipher, hash_name)
    teks = [new_tek(POLICY, 0.0, set()), new_tek(POLICY, 0.0, set())]
    content = rekey_content(7, teks, 10.0, dialect)
    spec = sig_hash(kek.policy.sig_hash.algorithm)
    datagram = build_push(content, material(kek), RsaPushSigner(private_key), spec, dialect=dialect)
    header = pull_header(datagram)
    assert header.initiator_cookie + header.responder_cookie == kek.spi
    assert (header.exchange_type, header.flags, header.message_id) == (33, 1, 0)
    assert (len(datagram) - HEADER_LENGTH) % kek.policy.cipher.block_size == 0
    opened = open_push(datagram, receivers_for(kek, private_key.public_key(), dialect, 6))
    assert isinstance(opened, PushOpened), opened
    assert opened.sequence == 7 and opened.kek_spi == kek.spi
    assert opened.sa == content.sa and opened.key_download == content.key_download
    assert opened.tek_spis == tuple(t.spi for t in teks)
    assert opened.carries_new_teks and not opened.is_heartbeat and opened.new_kek is None


@pytest.mark.parametrize("hash_name", ["sha-384", "sha-512"])
def test_the_longer_sig_hashes_round_trip_too(private_key: rsa.RSAPrivateKey, hash_name: str):
    kek = a_kek("aes-256-cbc", hash_name)
    datagram, _ = a_push(private_key, kek)
    assert isinstance(
        open_push(datagram, receivers_for(kek, private_key.public_key(), V2)), PushOpened
    )


@pytest.mark.parametrize("encoding", list(SignatureEncoding))
def test_each_signature_encoding_round_trips_and_the_other_one_refuses_it(
    private_key: rsa.RSAPrivateKey, encoding: SignatureEncoding
):
    kek = a_kek()
    datagram, _ = a_push(private_key, kek, encoding=encoding)
    public = private_key.public_key()
    same = receivers_for(kek, public, V2, encoding=encoding)
    assert isinstance(open_push(datagram, same), PushOpened)
    other = next(e for e in SignatureEncoding if e is not encoding)
    rejected = open_push(datagram, receivers_for(kek, public, V2, encoding=other))
    assert isinstance(rejected, PushRejected)
    assert rejected.reason is PushRejection.BAD_SIGNATURE


def test_one_push_is_signed_once_and_every_member_opens_the_same_octets(
    private_key: rsa.RSAPrivateKey,
):
    calls = []

    class CountingSigner(RsaPushSigner):
        def sign_digest(
            self, digest: bytes, spec: SigHashSpec, encoding: SignatureEncoding
        ) -> bytes:
            calls.append(digest)
            return super().sign_digest(digest, spec, encoding)

    kek = a_kek()
    content = rekey_content(3, [new_tek(POLICY, 0.0, set())], 0.0, V2)
    datagram = build_push(
        content, material(kek), CountingSigner(private_key), sig_hash(2), dialect=V2
    )
    members = [receivers_for(kek, private_key.public_key(), V2, last) for last in (0, 1, 2)]
    assert all(isinstance(open_push(datagram, m), PushOpened) for m in members)
    assert len(calls) == 1


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_deletes_come_before_the_sa(private_key: rsa.RSAPrivateKey, dialect: Dialect):
    """RFC 3547 §4.6 and RFC 6407 alike: Delete payloads follow SEQ; alone, no SA or KD."""
    kek = a_kek()
    delete = DeletePayload(Doi.GDOI, TekProtocol.IPSEC_ESP, 4, (b"\x00\x00\x12\x34",))
    tek = new_tek(POLICY, 0.0, set())
    content = dataclasses.replace(rekey_content(2, [tek], 0.0, dialect), deletes=(delete,))
    datagram = build_push(
        content, material(kek), RsaPushSigner(private_key), sig_hash(2), dialect=dialect
    )
    opened = open_push(datagram, receivers_for(kek, private_key.public_key(), dialect))
    assert isinstance(opened, PushOpened)
    assert opened.deletes == (delete,) and not opened.is_heartbeat
    only_delete = PushContent(3, deletes=(delete,))
    datagram = build_push(
        only_delete, material(kek), RsaPushSigner(private_key), sig_hash(2), dialect=dialect
    )
    opened = open_push(datagram, receivers_for(kek, private_key.public_key(), dialect, 2))
    assert isinstance(opened, PushOpened)
    assert opened.deletes == (delete,) and opened.sa is None and not opened.is_heartbeat


@pytest.mark.parametrize(
    "content",
    [
        PushContent(0),  # SEQ 0 is what PULL carries before any push
        PushContent(1 << 32),
        PushContent(1, key_download=KeyDownloadPayload(())),  # KD without SA
    ],
    ids=["seq-0", "seq-too-big", "kd-without-sa"],
)
def test_building_refuses_what_is_not_a_v1_push(private_key: rsa.RSAPrivateKey, content):
    with pytest.raises(ValueError):
        build_push(content, material(a_kek()), RsaPushSigner(private_key), sig_hash(2), dialect=V1)


def test_sa_tek_id_lengths_follow_the_dialect_of_the_push(private_key: rsa.RSAPrivateKey):
    kek = a_kek()
    content = rekey_content(1, [new_tek(POLICY, 0.0, set())], 0.0, V2)  # 2-octet widths
    datagram = build_push(
        content, material(kek), RsaPushSigner(private_key), sig_hash(2), dialect=V1
    )
    opened = open_push(datagram, receivers_for(kek, private_key.public_key(), V1))
    assert isinstance(opened, PushOpened) and opened.sa is not None
    assert opened.sa.teks[0].id_length_octets == 1
    assert content.sa is not None and content.sa.teks[0].ipsec is not None
    assert opened.tek_spis == (content.sa.teks[0].ipsec.spi,)


# --- KEK rollover ----------------------------------------------------------------------


def rollover(
    private_key: rsa.RSAPrivateKey, old: Kek, new: Kek, sequence: int, dialect: Dialect = V2
) -> tuple[bytes, PushContent]:
    public_der = private_key.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    tek = new_tek(POLICY, 0.0, set())
    sa = GdoiSaPayload(
        Doi.GDOI, 0, kek=new.sa_kek(100.0, SERVER, MEMBER, private_key.key_size),
        teks=(sat(tek, 100.0, dialect),),
    )  # fmt: skip
    kd = KeyDownloadPayload((new.key_packet(public_der), tek.key_packet()))
    content = PushContent(sequence, sa=sa, key_download=kd)
    spec = sig_hash(old.policy.sig_hash.algorithm)
    signer = RsaPushSigner(private_key)
    return build_push(content, material(old), signer, spec, dialect=dialect), content


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_a_kek_rollover_is_sent_under_the_old_kek_and_announces_the_new_one(
    private_key: rsa.RSAPrivateKey, dialect: Dialect
):
    old, new = a_kek("3des-cbc"), a_kek("aes-256-cbc", "sha-256")
    datagram, _ = rollover(private_key, old, new, 5, dialect)
    assert pull_header(datagram).initiator_cookie == old.spi[:8]
    public = private_key.public_key()
    opened = open_push(datagram, receivers_for(old, public, dialect, 4))
    assert isinstance(opened, PushOpened)
    assert opened.new_kek is not None and opened.new_kek.spi == new.spi
    assert opened.key_download is not None
    (packet,) = opened.key_download.find(KdType.KEK)
    assert packet.spi == new.spi and "octets" in repr(packet) and new.key.hex() not in repr(packet)
    # The next push comes under the new KEK: unknown until the member installed it.
    after, _ = a_push(private_key, new, dialect, sequence=6)
    unknown = open_push(after, receivers_for(old, public, dialect, 5))
    assert isinstance(unknown, PushRejected) and unknown.reason is PushRejection.UNKNOWN_KEK
    assert unknown.kek_spi == new.spi
    both = receivers_for(old, public, dialect, 5) | receivers_for(new, public, dialect, 5)
    assert isinstance(open_push(after, both), PushOpened)


def test_a_kek_packet_needs_its_new_sa_kek_and_the_other_way_round(private_key: rsa.RSAPrivateKey):
    old, new = a_kek(), a_kek()
    _, content = rollover(private_key, old, new, 5)
    assert content.sa is not None and content.key_download is not None
    signer, spec = RsaPushSigner(private_key), sig_hash(2)
    no_packet = dataclasses.replace(
        content,
        key_download=KeyDownloadPayload(content.key_download.find(KdType.TEK)),
    )
    no_sak = dataclasses.replace(content, sa=dataclasses.replace(content.sa, kek=None))
    wrong_spi = dataclasses.replace(
        content,
        key_download=KeyDownloadPayload(
            tuple(
                KeyPacket(p.kd_type, old.spi, p.attributes) if p.kd_type == KdType.KEK else p
                for p in content.key_download.packets
            )
        ),
    )
    for broken in (no_packet, no_sak, wrong_spi):
        with pytest.raises(ValueError, match="KEK"):
            build_push(broken, material(old), signer, spec, dialect=V2)


# --- rejections --------------------------------------------------------------------------


@pytest.fixture(name="signed")
def signed_fixture(
    private_key: rsa.RSAPrivateKey,
) -> Iterator[tuple[bytes, dict[bytes, PushReceiver], Kek]]:
    kek = a_kek()
    datagram, _ = a_push(private_key, kek, sequence=10)
    yield datagram, receivers_for(kek, private_key.public_key(), V2, 9), kek


def _reason(data: bytes, receivers: dict[bytes, PushReceiver]) -> PushRejection:
    result = open_push(data, receivers)
    assert isinstance(result, PushRejected), result
    return result.reason


def test_an_unknown_kek_spi_is_its_own_reason(signed):
    datagram, _, _ = signed
    assert _reason(datagram, {}) is PushRejection.UNKNOWN_KEK


def test_a_push_signed_with_another_key_is_refused(other_key: rsa.RSAPrivateKey, signed):
    _, receivers, kek = signed
    forged, _ = a_push(other_key, kek, sequence=11)
    assert _reason(forged, receivers) is PushRejection.BAD_SIGNATURE


def test_a_push_for_another_sig_hash_is_refused(signed):
    datagram, receivers, kek = signed
    (receiver,) = receivers.values()
    md5 = {kek.spi: dataclasses.replace(receiver, sig_hash=sig_hash(1))}
    assert _reason(datagram, md5) is PushRejection.BAD_SIGNATURE


@pytest.mark.parametrize("block", [0, 1, 2, -2, -1])
def test_tampered_ciphertext_never_opens(signed, block: int):
    datagram, receivers, kek = signed
    size = kek.policy.cipher.block_size
    blocks = (len(datagram) - HEADER_LENGTH) // size
    start = HEADER_LENGTH + (block % blocks) * size
    tampered = bytearray(datagram)
    for offset in range(size):  # garble a whole block: its plaintext and the next one's
        tampered[start + offset] ^= 0xA5
    assert _reason(bytes(tampered), receivers) in (
        PushRejection.MALFORMED, PushRejection.BAD_SIGNATURE,
    )  # fmt: skip


@pytest.mark.parametrize("last", [10, 11, 1000])
def test_a_seq_equal_to_or_below_the_last_accepted_is_a_replay(signed, last: int):
    datagram, receivers, kek = signed
    (receiver,) = receivers.values()
    replayed = {kek.spi: dataclasses.replace(receiver, last_sequence=last)}
    assert _reason(datagram, replayed) is PushRejection.REPLAYED_SEQ


def _with_length(data: bytes) -> bytes:
    return data[:24] + len(data).to_bytes(4, "big") + data[28:]


def test_truncated_pushes_are_malformed(signed):
    datagram, receivers, kek = signed
    size = kek.policy.cipher.block_size
    for cut in (1, size, 2 * size, len(datagram) - HEADER_LENGTH):
        assert _reason(datagram[:-cut], receivers) is PushRejection.MALFORMED
        assert _reason(_with_length(datagram[:-cut]), receivers) is PushRejection.MALFORMED
    for cut in (0, 5, 27):
        assert _reason(datagram[:cut], receivers) is PushRejection.MALFORMED


def test_trailing_junk_is_malformed(signed):
    datagram, receivers, kek = signed
    size = kek.policy.cipher.block_size
    assert _reason(datagram + b"\x00", receivers) is PushRejection.MALFORMED
    for junk in (bytes(size), b"\xff" * size, b"\x01" * (3 * size)):
        assert _reason(_with_length(datagram + junk), receivers) is PushRejection.MALFORMED
    assert _reason(_with_length(datagram + b"\x00" * 3), receivers) is PushRejection.MALFORMED


@pytest.mark.parametrize(
    ("offset", "value"),
    [(18, 32), (18, 5), (19, 0), (19, 3), (20, 1)],
    ids=["exchange-pull", "exchange-info", "not-encrypted", "commit-flag", "message-id"],
)
def test_header_fields_other_than_a_push_are_malformed(signed, offset: int, value: int):
    datagram, receivers, _ = signed
    changed = bytearray(datagram)
    changed[offset] = value
    assert _reason(bytes(changed), receivers) is PushRejection.MALFORMED


def test_rejections_say_why_without_key_material(signed):
    datagram, receivers, kek = signed
    result = open_push(datagram[:-1], receivers)
    assert isinstance(result, PushRejected) and result.detail
    assert kek.key.hex() not in repr(result) and kek.iv.hex() not in repr(result)
    (receiver,) = receivers.values()
    assert kek.key.hex() not in repr(receiver) and repr(kek.key) not in repr(receiver.kek)


def test_kek_material_checks_its_sizes():
    with pytest.raises(ValueError):
        KekMaterial.named(bytes(15), "aes-128-cbc", bytes(16), bytes(16))
    with pytest.raises(ValueError):
        KekMaterial.named(bytes(16), "aes-128-cbc", bytes(24), bytes(16))
    with pytest.raises(ValueError):
        KekMaterial.named(bytes(16), "3des-cbc", bytes(24), bytes(16))
    with pytest.raises(KeyError):
        KekMaterial.named(bytes(16), "rc5", bytes(16), bytes(16))
