"""CBC block ciphers for IKEv1 phase 1 and GDOI, by their Junos names.

IKEv1 encrypts everything after the ISAKMP header with the negotiated cipher in
CBC mode and does its own padding (RFC 2409 App. B, gdoi-wire.md §2.5), so the
functions here neither pad nor unpad: input that is not a whole number of
blocks is a caller bug and raises ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, modes
from cryptography.hazmat.primitives.ciphers.algorithms import AES

from groupvpn.wire.constants import IkeEncryption


@dataclass(frozen=True, slots=True)
class CipherSuite:
    """One CBC cipher as IKE negotiates it.

    ``ike_key_length_bits`` is the value of the Key Length attribute (RFC 2409
    App. A, type 14): required for AES, which has several key sizes, and
    ``None`` for DES/3DES, whose key size is fixed and for which the attribute
    must be absent.
    """

    name: str
    key_length: int  # octets
    block_size: int  # octets
    ike_id: int  # Encryption Algorithm attribute value (RFC 2409 App. A)
    ike_key_length_bits: int | None


CIPHERS: dict[str, CipherSuite] = {
    suite.name: suite
    for suite in (
        CipherSuite("des-cbc", 8, 8, IkeEncryption.DES_CBC, None),
        CipherSuite("3des-cbc", 24, 8, IkeEncryption.TRIPLE_DES_CBC, None),
        CipherSuite("aes-128-cbc", 16, 16, IkeEncryption.AES_CBC, 128),
        CipherSuite("aes-192-cbc", 24, 16, IkeEncryption.AES_CBC, 192),
        CipherSuite("aes-256-cbc", 32, 16, IkeEncryption.AES_CBC, 256),
    )
}

_BY_IKE: dict[tuple[int, int | None], CipherSuite] = {
    (suite.ike_id, suite.ike_key_length_bits): suite for suite in CIPHERS.values()
}


def cipher_from_ike(encryption_id: int, key_length_bits: int | None) -> CipherSuite | None:
    """The suite for a received transform, or None if we do not support that combination.

    A lookup on the exact pair enforces RFC 2409 App. A both ways: AES without a
    Key Length (or with 160 bits, say) and DES/3DES *with* one are refused.
    """
    return _BY_IKE.get((encryption_id, key_length_bits))


def _algorithm(suite: CipherSuite, key: bytes) -> CipherAlgorithm:
    if len(key) != suite.key_length:
        raise ValueError(f"{suite.name} needs a {suite.key_length}-octet key, got {len(key)}")
    if suite.ike_id == IkeEncryption.AES_CBC:
        return AES(key)
    if suite.ike_id == IkeEncryption.TRIPLE_DES_CBC:
        return TripleDES(key)
    if suite.ike_id == IkeEncryption.DES_CBC:
        # EDE with K1 = K2 = K3 collapses to single DES (E_K D_K E_K = E_K).
        # cryptography has no DES class and warns on 8-octet TripleDES keys,
        # so we hand it the tripled key; the FIPS 81 KAT in the tests proves it.
        return TripleDES(key * 3)
    raise ValueError(f"no implementation for cipher {suite.name}")


def _check_lengths(suite: CipherSuite, iv: bytes, data: bytes, what: str) -> None:
    if len(iv) != suite.block_size:
        raise ValueError(f"{suite.name} needs a {suite.block_size}-octet IV, got {len(iv)}")
    if len(data) % suite.block_size:
        raise ValueError(
            f"{what} of {len(data)} octets is not a multiple of the "
            f"{suite.block_size}-octet {suite.name} block"
        )


def cbc_encrypt(suite: CipherSuite, key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """CBC-encrypt whole blocks; the caller has already padded ``plaintext``."""
    _check_lengths(suite, iv, plaintext, "plaintext")
    encryptor = Cipher(_algorithm(suite, key), modes.CBC(iv)).encryptor()
    return encryptor.update(plaintext) + encryptor.finalize()


def cbc_decrypt(suite: CipherSuite, key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """CBC-decrypt whole blocks; the padding stays on (ISAKMP parsers skip it)."""
    _check_lengths(suite, iv, ciphertext, "ciphertext")
    decryptor = Cipher(_algorithm(suite, key), modes.CBC(iv)).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()
