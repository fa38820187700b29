"""IKEv1 hash algorithms by their Junos names, and the IKEv1 prf.

IKEv1 negotiates a hash, not a PRF: the PRF attribute (RFC 2409 App. A, type
13) has no defined values, so ``prf`` is always HMAC with the negotiated hash
(RFC 2409 §4, gdoi-wire.md §2.3).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from groupvpn.wire.constants import IkeHash


@dataclass(frozen=True, slots=True)
class HashAlgorithm:
    name: str  # Junos keyword ("sha-256")
    ike_id: int  # Hash Algorithm attribute value (RFC 2409 App. A, RFC 4868)
    digest_size: int  # octets
    hashlib_name: str


HASHES: dict[str, HashAlgorithm] = {
    alg.name: alg
    for alg in (
        HashAlgorithm("md5", IkeHash.MD5, 16, "md5"),
        HashAlgorithm("sha1", IkeHash.SHA1, 20, "sha1"),
        HashAlgorithm("sha-256", IkeHash.SHA2_256, 32, "sha256"),
        HashAlgorithm("sha-384", IkeHash.SHA2_384, 48, "sha384"),
    )
}

_BY_IKE: dict[int, HashAlgorithm] = {alg.ike_id: alg for alg in HASHES.values()}


def hash_from_ike(hash_id: int) -> HashAlgorithm | None:
    """The algorithm for a received Hash Algorithm attribute, or None if unsupported."""
    return _BY_IKE.get(hash_id)


# hash(m) = the plain negotiated hash
def digest(alg: HashAlgorithm, data: bytes) -> bytes:
    return hashlib.new(alg.hashlib_name, data).digest()


# prf(k, m) = HMAC-hash(k, m)   (RFC 2409 §4: no PRF negotiated -> HMAC of the hash)
def prf(alg: HashAlgorithm, key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, alg.hashlib_name)
