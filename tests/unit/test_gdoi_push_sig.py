"""PUSH signatures: PKCS#1 v1.5 type 1 with and without DigestInfo.

Known answers: RFC 8017 §9.2 (EMSA-PKCS1-v1_5: ``00 01 FF..FF 00 T``, at least eight
FF octets, and the DER DigestInfo prefixes of its note 1).  Raising a signature to
the public exponent shows the block that was signed: ``T`` is the bare digest in the
Cisco form (gdoi-wire.md §6.2) and ``DigestInfo | digest`` in the RFC 8017 form.
"""

from __future__ import annotations

import pickle

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from groupvpn.gdoi.push_sig import (
    SIG_HASH_ALGORITHMS,
    RsaPushSigner,
    SignatureEncoding,
    sig_hash,
    verify_digest,
)
from groupvpn.wire.gdoi_numbers import SigHashAlgorithm

#: RFC 8017 §9.2 note 1: DER of DigestInfo up to the digest.
DIGEST_INFO_PREFIX: dict[int, str] = {
    SigHashAlgorithm.MD5: "3020300c06082a864886f70d020505000410",
    SigHashAlgorithm.SHA1: "3021300906052b0e03021a05000414",
    SigHashAlgorithm.SHA256: "3031300d060960864801650304020105000420",
    SigHashAlgorithm.SHA384: "3041300d060960864801650304020205000430",
    SigHashAlgorithm.SHA512: "3051300d060960864801650304020305000440",
}


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.mark.parametrize("encoding", list(SignatureEncoding))
@pytest.mark.parametrize("algorithm", sorted(SIG_HASH_ALGORITHMS))
def test_the_signed_block_is_rfc_8017_type_1_padding_around_the_chosen_form(
    private_key: rsa.RSAPrivateKey, encoding: SignatureEncoding, algorithm: int
):
    spec = sig_hash(algorithm)
    digest = spec.digest(b"rekey and more")
    signature = RsaPushSigner(private_key).sign_digest(digest, spec, encoding)
    numbers = private_key.public_key().public_numbers()
    block = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(256, "big")
    wrapped = digest
    if encoding is SignatureEncoding.DIGEST_INFO:
        wrapped = bytes.fromhex(DIGEST_INFO_PREFIX[algorithm]) + digest
    assert block == b"\x00\x01" + b"\xff" * (256 - 3 - len(wrapped)) + b"\x00" + wrapped


@pytest.mark.parametrize("encoding", list(SignatureEncoding))
@pytest.mark.parametrize("algorithm", sorted(SIG_HASH_ALGORITHMS))
def test_sign_and_verify_each_hash_and_encoding(
    private_key: rsa.RSAPrivateKey, encoding: SignatureEncoding, algorithm: int
):
    spec = sig_hash(algorithm)
    digest = spec.digest(b"data")
    signature = RsaPushSigner(private_key).sign_digest(digest, spec, encoding)
    public = private_key.public_key()
    assert len(signature) == 256
    assert verify_digest(public, signature, digest, spec, encoding)
    other = next(e for e in SignatureEncoding if e is not encoding)
    assert not verify_digest(public, signature, digest, spec, other)
    assert not verify_digest(public, signature, spec.digest(b"other"), spec, encoding)
    assert not verify_digest(public, signature[:-1], digest, spec, encoding)
    assert not verify_digest(public, signature + b"\x00", digest, spec, encoding)
    assert not verify_digest(public, bytes(256), digest, spec, encoding)
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert not verify_digest(public, tampered, digest, spec, encoding)


def test_the_raw_form_wraps_the_bare_digest(private_key: rsa.RSAPrivateKey):
    spec = sig_hash(SigHashAlgorithm.SHA1)
    digest = spec.digest(b"x")
    signature = RsaPushSigner(private_key).sign_digest(digest, spec, SignatureEncoding.RAW_DIGEST)
    recovered = private_key.public_key().recover_data_from_signature(signature, PKCS1v15(), None)
    assert recovered == digest


def test_the_signer_refuses_a_digest_of_the_wrong_size(private_key: rsa.RSAPrivateKey):
    with pytest.raises(ValueError):
        RsaPushSigner(private_key).sign_digest(
            bytes(16), sig_hash(SigHashAlgorithm.SHA1), SignatureEncoding.RAW_DIGEST
        )


def test_the_signer_shows_no_key_and_will_not_be_pickled(private_key: rsa.RSAPrivateKey):
    signer = RsaPushSigner(private_key)
    assert repr(signer) == "RsaPushSigner(rsa-2048)"
    assert signer.signature_length == 256
    with pytest.raises(TypeError):
        pickle.dumps(signer)
    with pytest.raises(TypeError):
        RsaPushSigner(private_key.public_key())  # type: ignore[arg-type]


def test_sig_hash_names_the_supported_algorithms():
    assert [sig_hash(a).name for a in sorted(SIG_HASH_ALGORITHMS)] == [
        "md5", "sha1", "sha-256", "sha-384", "sha-512",
    ]  # fmt: skip
    with pytest.raises(ValueError):
        sig_hash(0)
    with pytest.raises(ValueError):
        sig_hash(6)
