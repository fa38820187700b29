"""GROUPKEY-PUSH signatures: RSA PKCS#1 v1.5 over a digest (gdoi-wire.md §6.2).

The Cisco GDOI reference implementation signs ``hash("rekey" | HDR' | payloads)``
with PKCS#1 v1.5 *type 1 padding around the bare digest*, without the DigestInfo
that RFC 8017's EMSA-PKCS1-v1_5 puts in front of it (reproduced from its trace,
gdoi-wire.md §9).  Whether RFC 6407 peers do the same is unverified, so the
encoding is a parameter: :attr:`SignatureEncoding.RAW_DIGEST` (the default, what
the trace shows) or :attr:`SignatureEncoding.DIGEST_INFO`.

Both are computed by OpenSSL through ``cryptography``: ``sign``/``verify`` with
``PKCS1v15()`` and either ``Prehashed(h)`` (DigestInfo) or ``NoDigestInfo()`` (the
bare digest, available since cryptography 41).  The private key never leaves the
library, so its constant-time, blinded RSA does the work.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa, utils
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from groupvpn.wire.gdoi_numbers import SigHashAlgorithm


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
        return self._key.sign(digest, PKCS1v15(), _digest_form(spec, encoding))

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
        # OpenSSL checks the type 1 padding and returns what it wraps.
        recovered = public_key.recover_data_from_signature(signature, PKCS1v15(), None)
    except (InvalidSignature, ValueError):
        return False
    return hmac.compare_digest(recovered, digest)


def _digest_form(
    spec: SigHashSpec, encoding: SignatureEncoding
) -> utils.Prehashed | utils.NoDigestInfo:
    if encoding is SignatureEncoding.DIGEST_INFO:
        return utils.Prehashed(spec.cryptography_hash())
    return utils.NoDigestInfo()
