"""Finite-field Diffie-Hellman over the Oakley/MODP groups IKEv1 uses.

Why not cryptography's FFDH: it is deprecated in cryptography 50, and for the
RFC 2409 groups (unknown to OpenSSL) it re-validates the prime on every peer
import, about 26 ms for group 2.  The modular exponentiation is GMP's, through
gmpy2, when it is installed: for group 14 it is about 0.5 ms against 6 ms for
stdlib ``pow()``, and that difference is what lets one key-server core admit
several hundred registrations a second (docs/benchmarks.md).  Without gmpy2 the
same code runs on ``pow()`` and gives the same results, only slower.

Neither ``pow()`` nor ``gmpy2.powmod`` is constant-time.  That is acceptable
because every exponent is ephemeral: one DH exchange, then forgotten, so a
timing observer gets one sample per secret (the decision in docs/design.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from groupvpn.crypto.fixed_base import FixedBaseTable

try:
    import gmpy2  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - exercised only where gmpy2 has no wheel
    gmpy2 = None


def _stdlib_modexp(base: int, exponent: int, modulus: int) -> int:
    return pow(base, exponent, modulus)


def _gmp_modexp(base: int, exponent: int, modulus: int) -> int:
    assert gmpy2 is not None
    return int(gmpy2.powmod(base, exponent, modulus))


#: base ** exponent mod modulus, by the fastest implementation available.
modexp: Callable[[int, int, int], int] = _gmp_modexp if gmpy2 is not None else _stdlib_modexp
MODEXP_IMPLEMENTATION = "gmpy2" if gmpy2 is not None else "pow"


@dataclass(frozen=True, slots=True)
class DhGroup:
    number: int  # Group Description attribute value (RFC 2409 App. A)
    prime: int
    generator: int
    length_octets: int  # KE payload and g^xy are always this long


def _prime(*lines: str) -> int:
    return int("".join(lines), 16)


# Each prime is p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + k); the
# unit tests regenerate all four from that formula instead of trusting this hex.

# RFC 2409 §6.1, First Oakley Group: n = 768, k = 149686
_MODP_768 = _prime(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A63A3620FFFFFFFFFFFFFFFF",
)

# RFC 2409 §6.2, Second Oakley Group: n = 1024, k = 129093
_MODP_1024 = _prime(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
)

# RFC 3526 §2, 1536-bit MODP group: n = 1536, k = 741804
_MODP_1536 = _prime(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF",
)

# RFC 3526 §3, 2048-bit MODP group: n = 2048, k = 124476
_MODP_2048 = _prime(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
)

MODP_GROUPS: dict[int, DhGroup] = {
    group.number: group
    for group in (
        DhGroup(1, _MODP_768, 2, 96),
        DhGroup(2, _MODP_1024, 2, 128),
        DhGroup(5, _MODP_1536, 2, 192),
        DhGroup(14, _MODP_2048, 2, 256),
    )
}

#: 256 bits is at least twice the security strength of every group here (group
#: 14 is rated at 112 bits, NIST SP 800-57), so a short exponent costs nothing
#: in strength and makes the exponentiation 8x faster than a full-length one.
PRIVATE_EXPONENT_BITS = 256


@cache
def _generator_table(group: DhGroup) -> FixedBaseTable:
    number = gmpy2.mpz if gmpy2 is not None else int
    return FixedBaseTable(group.generator, group.prime, PRIVATE_EXPONENT_BITS, number)


def _pad(value: int, length: int) -> bytes:
    # KE data and g^xy are fixed-length, left-padded with zeros (gdoi-wire.md §1.8);
    # dropping leading zeros would break SKEYID and the IV derivation ~1/256 of the time.
    return value.to_bytes(length, "big")


class DhExchange:
    """Our half of one Diffie-Hellman exchange: a private exponent and g^x."""

    __slots__ = ("_private", "group", "public_value")

    def __init__(self, group: DhGroup, private_exponent: int | None = None) -> None:
        """``private_exponent`` is for known-answer tests only; normally it is random."""
        if private_exponent is None:
            private_exponent = 0
            while private_exponent < 2:  # 0 or 1 would make g^x guessable
                private_exponent = secrets.randbits(PRIVATE_EXPONENT_BITS)
        elif not 1 < private_exponent < group.prime - 1:
            raise ValueError("private exponent must satisfy 1 < x < p-1")
        self.group = group
        self._private = private_exponent
        # g^x = generator ** x mod p   (RFC 2409 §5: KE data)
        if private_exponent.bit_length() <= PRIVATE_EXPONENT_BITS:
            public = _generator_table(group).power(private_exponent)
        else:  # a long exponent injected by a known-answer test
            public = modexp(group.generator, private_exponent, group.prime)
        self.public_value: bytes = _pad(public, group.length_octets)

    def __repr__(self) -> str:
        # Never print the private exponent, even in a debugger or a log of the SA.
        return f"DhExchange(group={self.group.number})"

    # g^xy = (g^y)^x mod p, padded to the length of p
    def shared_secret(self, peer_public_value: bytes) -> bytes:
        """g^xy from the peer's KE data; ValueError if the peer value is unusable."""
        group = self.group
        if len(peer_public_value) != group.length_octets:
            raise ValueError(
                f"peer DH public value is {len(peer_public_value)} octets, "
                f"group {group.number} needs exactly {group.length_octets}"
            )
        y = int.from_bytes(peer_public_value, "big")
        # 0, 1 and p-1 force g^xy into {0, 1, p-1}; p or more is not a field element.
        # (p is a safe prime, so any other y has order q or 2q > x and g^xy != 1.)
        if not 1 < y < group.prime - 1:
            raise ValueError(
                f"peer DH public value is outside 1 < y < p-1 for group {group.number}"
            )
        return _pad(modexp(y, self._private, group.prime), group.length_octets)
