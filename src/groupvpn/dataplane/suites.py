"""The ESP transforms a group SA can use, by their Junos names, with every size ESP needs.

The ciphers and the HMAC integrity algorithms are the ones the key server hands out
(:data:`groupvpn.server.tek.ESP_CIPHERS`, :data:`~groupvpn.server.tek.ESP_INTEGRITY`):
their names, IPsec DOI numbers and key lengths come from there, so the control plane
and the data plane cannot disagree about them.  AES-GCM (RFC 4106, 16-octet ICV) is a
combined mode with no separate integrity algorithm; Junos calls it ``aes-128-gcm`` /
``aes-256-gcm`` (``[edit security ipsec proposal] encryption-algorithm``), and its
keying material is the AES key followed by a 4-octet salt (RFC 4106 §8.1), which is
what ``TEK_ALGORITHM_KEY`` carries (gdoi-wire.md §4.5).

Everything here is a table lookup done when a key is installed; a name we do not know
is a ``ValueError`` then, never a surprise on the packet path.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import CipherAlgorithm
from cryptography.hazmat.primitives.ciphers.algorithms import AES

from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY, GCM_SALT_LENGTH

#: RFC 4106 §3.1: the explicit IV of AES-GCM in ESP.
GCM_IV_LENGTH = 8
#: ESP_AES_GCM_16: the only ICV length we offer (the strongest of RFC 4106's 8/12/16).
GCM_ICV_LENGTH = 16
#: RFC 4303 §2.4: the ciphertext ends on a 4-octet boundary whatever the cipher.
ESP_ALIGNMENT = 4

#: Integrity algorithm name -> (hash, truncated ICV length): RFC 2403, 2404, 4868.
_HMACS: dict[str, tuple[type[hashes.HashAlgorithm], int]] = {
    "hmac-md5-96": (hashes.MD5, 12),
    "hmac-sha1-96": (hashes.SHA1, 12),
    "hmac-sha-256-128": (hashes.SHA256, 16),
}

#: CBC cipher name -> block (and IV) size: RFC 2405 (DES), RFC 2451 (3DES), RFC 3602 (AES).
_CBC_BLOCKS = {
    "des-cbc": 8,
    "3des-cbc": 8,
    "aes-128-cbc": 16,
    "aes-192-cbc": 16,
    "aes-256-cbc": 16,
}

#: The AES-GCM ciphers (the combined ones) by name.
_GCM_CIPHERS = tuple(name for name, cipher in ESP_CIPHERS.items() if cipher.combined)


@dataclass(frozen=True, slots=True)
class EspSuite:
    """One ESP transform: a cipher and (for CBC) an integrity algorithm, with their sizes."""

    cipher: str  # Junos name: "aes-128-cbc", "aes-128-gcm", ...
    integrity: str | None  # Junos name: "hmac-sha1-96", ...; None for AES-GCM
    transform_id: int  # IPsec DOI ESP transform ID (RFC 2407 §4.4.4, IANA)
    key_length: int  # cipher key, octets, without the GCM salt
    salt_length: int  # GCM: 4 (RFC 4106 §8.1); CBC: 0
    block_size: int  # cipher block, octets
    iv_length: int  # explicit IV in every packet
    icv_length: int  # integrity check value at the end of every packet
    integrity_key_length: int  # HMAC key, octets; 0 for GCM
    alignment: int  # payload + pad length + next header is a multiple of this

    @property
    def name(self) -> str:
        """``aes-128-cbc/hmac-sha1-96`` or ``aes-128-gcm``: for logs and tables."""
        return self.cipher if self.integrity is None else f"{self.cipher}/{self.integrity}"

    @property
    def is_aead(self) -> bool:
        return self.integrity is None

    @property
    def keying_material_length(self) -> int:
        """Octets of TEK_ALGORITHM_KEY: the cipher key, then the salt for GCM."""
        return self.key_length + self.salt_length

    @property
    def hash_algorithm(self) -> hashes.HashAlgorithm:
        """The HMAC hash; ValueError for GCM, which has none."""
        if self.integrity is None:
            raise ValueError(f"{self.cipher} has no separate integrity algorithm")
        return _HMACS[self.integrity][0]()

    def esp_length(self, payload_length: int) -> int:
        """Octets of the ESP packet (SPI to ICV) carrying ``payload_length`` octets.

        The payload is padded so payload + pad length + next header fill whole
        ``alignment`` units, with the least padding that does (RFC 4303 §2.4).
        """
        trailer = payload_length + 2
        padded = trailer + (-trailer % self.alignment)
        return 8 + self.iv_length + padded + self.icv_length

    def cipher_algorithm(self, key: bytes) -> CipherAlgorithm:
        """The block cipher of a CBC suite keyed with ``key`` (ValueError on a wrong length).

        Single DES is EDE with K1 = K2 = K3 (E_K D_K E_K = E_K): cryptography has no
        DES class and deprecates 8-octet TripleDES keys, so it gets the tripled key.
        """
        if len(key) != self.key_length:
            raise ValueError(f"{self.cipher} needs a {self.key_length}-octet key, got {len(key)}")
        if self.cipher.startswith("aes-"):
            return AES(key)
        if self.cipher == "3des-cbc":
            return TripleDES(key)
        if self.cipher == "des-cbc":
            return TripleDES(key * 3)
        raise ValueError(f"no block cipher for {self.cipher}")


def _cbc_suite(cipher: str, integrity: str) -> EspSuite:
    spec, mac = ESP_CIPHERS[cipher], ESP_INTEGRITY[integrity]
    block = _CBC_BLOCKS[cipher]
    return EspSuite(
        cipher=cipher,
        integrity=integrity,
        transform_id=spec.transform_id,
        key_length=spec.key_length,
        salt_length=0,
        block_size=block,
        iv_length=block,
        icv_length=_HMACS[integrity][1],
        integrity_key_length=mac.key_length,
        alignment=block,
    )


def _gcm_suite(cipher: str) -> EspSuite:
    spec = ESP_CIPHERS[cipher]
    assert spec.salt_length == GCM_SALT_LENGTH
    return EspSuite(
        cipher=cipher,
        integrity=None,
        transform_id=spec.transform_id,
        key_length=spec.key_length,
        salt_length=spec.salt_length,
        block_size=16,
        iv_length=GCM_IV_LENGTH,
        icv_length=GCM_ICV_LENGTH,
        integrity_key_length=0,
        alignment=ESP_ALIGNMENT,
    )


#: Every suite, keyed by (cipher, integrity) as the SA TEK names them.
ESP_SUITES: dict[tuple[str, str | None], EspSuite] = {
    (suite.cipher, suite.integrity): suite
    for suite in (
        *(_cbc_suite(cipher, integrity) for cipher in _CBC_BLOCKS for integrity in _HMACS),
        *(_gcm_suite(cipher) for cipher in _GCM_CIPHERS),
    )
}


def esp_suite(cipher: str, integrity: str | None) -> EspSuite:
    """The suite of a cipher and integrity name pair; ValueError if there is none.

    AES-GCM carries its own integrity (RFC 4106 §2), so it pairs only with ``None``,
    and a CBC cipher only with an HMAC: ESP without integrity is not offered.
    """
    suite = ESP_SUITES.get((cipher, integrity))
    if suite is None:
        raise ValueError(f"no ESP suite {cipher} with integrity {integrity}")
    return suite
