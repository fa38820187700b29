"""GROUPKEY-PUSH signatures: RSA PKCS#1 v1.5 over a digest (gdoi-wire.md §6.2).

The Cisco GDOI reference implementation signs ``hash("rekey" | HDR' | payloads)``
with PKCS#1 v1.5 *type 1 padding around the bare digest*, without the DigestInfo
that RFC 8017's EMSA-PKCS1-v1_5 puts in front of it (reproduced from its trace,
gdoi-wire.md §9).  Whether RFC 6407 peers do the same is unverified, so the
encoding is a parameter: :attr:`SignatureEncoding.RAW_DIGEST` (the default, what
the trace shows) or :attr:`SignatureEncoding.DIGEST_INFO`.

How each is computed, and why:

* DIGEST_INFO: ``cryptography``'s ``sign(digest, PKCS1v15(), Prehashed(h))`` and
  ``verify(...)``, i.e. OpenSSL.
* RAW_DIGEST, verifying: OpenSSL again, through
  ``recover_data_from_signature(sig, PKCS1v15(), None)``, which checks the type 1
  padding and returns what it wraps; we compare that with the digest.
* RAW_DIGEST, signing: ``cryptography`` has no way to sign without DigestInfo
  (``Prehashed`` always adds it, and ``sign`` refuses ``None``), so we build the
  type 1 block ourselves (:func:`emsa_pkcs1_type1`, RFC 8017 §9.2 steps 3-5
  without step 2) and apply the RSA private key with CRT exponentiations done by
  GMP's ``mpz_powm_sec`` (through gmpy2, a project dependency), GMP's
  side-channel-silent exponentiation that Nettle's RSA is built on.  Around it:
  the message is blinded with a fresh random ``r^e`` (so timing says nothing about
  it), and every signature is checked by OpenSSL's public operation before it
  leaves (a faulty CRT half would otherwise reveal a factor of ``n``).  Without
  gmpy2 the exponentiations fall back to ``pow()`` with a randomised exponent
  ``d + k(p-1)``; a key server signs once per rekey or heartbeat, over data it
  chose, so a timing observer gets few samples of inputs he cannot pick.
"""

from __future__ import annotations

import enum
import hmac
import math
import secrets
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa, utils
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from groupvpn.wire.gdoi_numbers import SigHashAlgorithm

try:
    import gmpy2  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - exercised only where gmpy2 has no wheel
    gmpy2 = None


class SignatureEncoding(enum.StrEnum):
    """What PKCS#1 v1.5 type 1 padding wraps in a PUSH signature."""

    RAW_DIGEST = "raw-digest"  # the bare digest: Cisco reference trace [VEC]
    DIGEST_INFO = "digest-info"  # DigestInfo | digest, as RFC 8017 EMSA-PKCS1-v1_5


#: What we send and expect unless told otherwise: the only form a real trace shows.
DEFAULT_SIGNATURE_ENCODING = SignatureEncoding.RAW_DIGEST


@dataclass(frozen=True, slots=True)
class SigHashSpec:
    """A SIG_HASH_ALGORITHM (gdoi-wire.md §4.2) and how to compute it."""

    algorithm: int  # SIG_HASH_ALGORITHM value
    name: str  # Junos keyword
    hashlib_name: str
    digest_size: int
    hash_class: type[hashes.HashAlgorithm] = field(repr=False)

    def digest(self, data: bytes) -> bytes:
        h = hashes.Hash(self.hash_class())
        h.update(data)
        return h.finalize()

    def cryptography_hash(self) -> hashes.HashAlgorithm:
        return self.hash_class()


SIG_HASH_ALGORITHMS: dict[int, SigHashSpec] = {
    spec.algorithm: spec
    for spec in (
        SigHashSpec(SigHashAlgorithm.MD5, "md5", "md5", 16, hashes.MD5),
        SigHashSpec(SigHashAlgorithm.SHA1, "sha1", "sha1", 20, hashes.SHA1),
        SigHashSpec(SigHashAlgorithm.SHA256, "sha-256", "sha256", 32, hashes.SHA256),
        SigHashSpec(SigHashAlgorithm.SHA384, "sha-384", "sha384", 48, hashes.SHA384),
        SigHashSpec(SigHashAlgorithm.SHA512, "sha-512", "sha512", 64, hashes.SHA512),
    )
}


def sig_hash(algorithm: int) -> SigHashSpec:
    """The spec for a SIG_HASH_ALGORITHM value; ValueError if we do not support it."""
    spec = SIG_HASH_ALGORITHMS.get(algorithm)
    if spec is None:
        raise ValueError(f"SIG_HASH_ALGORITHM {algorithm} is not supported")
    return spec


class PushSigner(Protocol):
    """Signs PUSH digests with the key server's private key (never shows it)."""

    @property
    def signature_length(self) -> int:
        """Octets of every signature (the RSA modulus length): HDR' needs it up front."""
        ...

    def sign_digest(
        self, digest: bytes, spec: SigHashSpec, encoding: SignatureEncoding
    ) -> bytes: ...


def emsa_pkcs1_type1(payload: bytes, length: int) -> bytes:
    """``00 01 FF..FF 00 payload`` of ``length`` octets (RFC 8017 §9.2 steps 3-5)."""
    padding = length - len(payload) - 3
    if padding < 8:  # RFC 8017: at least eight octets of 0xFF
        raise ValueError(f"a {length}-octet RSA key cannot sign {len(payload)} octets")
    return b"\x00\x01" + b"\xff" * padding + b"\x00" + payload


class RsaPushSigner:
    """A :class:`PushSigner` over an RSA private key.  Its repr shows the size only."""

    __slots__ = ("_key",)

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise TypeError("GROUPKEY-PUSH signing needs an RSA private key")
        self._key = private_key

    @property
    def signature_length(self) -> int:
        return (self._key.key_size + 7) // 8

    def sign_digest(self, digest: bytes, spec: SigHashSpec, encoding: SignatureEncoding) -> bytes:
        if len(digest) != spec.digest_size:
            raise ValueError(f"{spec.name} digest of {len(digest)} octets")
        if encoding is SignatureEncoding.DIGEST_INFO:
            return self._key.sign(digest, PKCS1v15(), utils.Prehashed(spec.cryptography_hash()))
        block = emsa_pkcs1_type1(digest, self.signature_length)
        signature = _rsa_private(self._key, int.from_bytes(block, "big")).to_bytes(
            self.signature_length, "big"
        )
        # OpenSSL checks our output before anyone else sees it.
        if not verify_digest(self._key.public_key(), signature, digest, spec, encoding):
            raise RuntimeError("RSA signature failed its own verification")
        return signature

    def __repr__(self) -> str:
        return f"RsaPushSigner(rsa-{self._key.key_size})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("an RsaPushSigner holds a private key and cannot be pickled")


def verify_digest(
    public_key: rsa.RSAPublicKey,
    signature: bytes,
    digest: bytes,
    spec: SigHashSpec,
    encoding: SignatureEncoding,
) -> bool:
    """Whether ``signature`` is a valid PKCS#1 v1.5 signature of ``digest``."""
    if len(signature) != (public_key.key_size + 7) // 8:
        return False
    try:
        if encoding is SignatureEncoding.DIGEST_INFO:
            public_key.verify(
                signature, digest, PKCS1v15(), utils.Prehashed(spec.cryptography_hash())
            )
            return True
        recovered = public_key.recover_data_from_signature(signature, PKCS1v15(), None)
    except (InvalidSignature, ValueError):
        return False
    return hmac.compare_digest(recovered, digest)


# --- the raw RSA private operation (see the module docstring for why it exists) ---------


def _powmod_secret(base: int, exponent: int, modulus: int, group_order: int) -> int:
    """base ** exponent mod modulus for a secret exponent (modulus an odd prime)."""
    if gmpy2 is not None:
        return int(gmpy2.powmod_sec(base, exponent, modulus))
    # Fermat: adding a random multiple of p - 1 changes nothing but the bits pow() walks.
    return pow(base, exponent + secrets.randbits(64) * group_order, modulus)


def _rsa_private(key: rsa.RSAPrivateKey, message: int) -> int:
    """message ** d mod n by CRT, blinded, with the result checked against message."""
    private = key.private_numbers()
    n, e = private.public_numbers.n, private.public_numbers.e
    p, q = private.p, private.q
    if not 0 <= message < n:
        raise ValueError("message representative out of range")
    while True:
        r = secrets.randbelow(n - 3) + 2
        if math.gcd(r, n) == 1:
            break
    blinded = message * pow(r, e, n) % n
    s_p = _powmod_secret(blinded % p, private.dmp1, p, p - 1)
    s_q = _powmod_secret(blinded % q, private.dmq1, q, q - 1)
    blinded_signature = s_q + (private.iqmp * (s_p - s_q) % p) * q
    signature = blinded_signature * pow(r, -1, n) % n
    if pow(signature, e, n) != message:
        raise RuntimeError("RSA private operation failed its check")
    return signature
