"""The key server's rekey signing key.

Members verify GROUPKEY-PUSH messages with the public half, which they receive
at registration in the KD KEK packet's SIG_ALGORITHM_KEY attribute as a DER
SubjectPublicKeyInfo (gdoi-wire.md §4.5).  The private half stays inside
:class:`SigningKey`: its ``repr`` shows the size and a fingerprint of the
public key only, and the one way out is :meth:`SigningKey.private_pem`, meant
for writing it to a file of mode 0600.

The server daemon keeps it in its state directory (``runtime.state``) through
:meth:`from_pem` / :meth:`private_pem`, and signs rekeys with :meth:`push_signer`.
"""

from __future__ import annotations

import hashlib
from typing import NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from groupvpn.gdoi.push_sig import RsaPushSigner

DEFAULT_BITS = 2048
#: The Cisco reference trace signs with RSA-1024 (gdoi-wire.md §9); nothing smaller.
MIN_BITS = 1024
_PUBLIC_EXPONENT = 65537


def public_key_fingerprint(public_der: bytes) -> str:
    """SHA-256 of a DER SubjectPublicKeyInfo: the same on the server and its members."""
    return "sha256:" + hashlib.sha256(public_der).hexdigest()


class SigningKey:
    """An RSA key pair whose public half members get as DER SubjectPublicKeyInfo."""

    __slots__ = ("_private", "bits", "public_der")

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise TypeError("the rekey signing key must be an RSA key")
        if private_key.key_size < MIN_BITS:
            raise ValueError(
                f"a {private_key.key_size}-bit signing key is too small (at least {MIN_BITS})"
            )
        self._private = private_key
        self.bits: int = private_key.key_size
        self.public_der: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def generate(cls, bits: int = DEFAULT_BITS) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=_PUBLIC_EXPONENT, key_size=bits))

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        """A key written by :meth:`private_pem` (unencrypted PKCS#8 PEM)."""
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("the rekey signing key must be an RSA key")
        return cls(key)

    def private_pem(self) -> bytes:
        """The private key as PKCS#8 PEM.  Secret: only for a file of mode 0600."""
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def push_signer(self) -> RsaPushSigner:
        """Signs GROUPKEY-PUSH digests with this key; the private key stays inside."""
        return RsaPushSigner(self._private)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the public key's DER, for logs and `show` (identifies, reveals nothing)."""
        return public_key_fingerprint(self.public_der)

    def __repr__(self) -> str:
        return f"SigningKey(rsa-{self.bits}, {self.fingerprint})"

    def __reduce__(self) -> NoReturn:
        # Pickling would copy the private key somewhere nobody decided it should go.
        raise TypeError("a SigningKey cannot be pickled; use private_pem() deliberately")
