"""Every IKEv1 (RFC 2409) and GROUPKEY-PULL (RFC 3547/6407) key and hash formula.

This is the one place where these formulas live, as pure functions of bytes, so
each can be checked against the known-answer vectors in tests/unit/test_keymat_*.
Notation (gdoi-wire.md §2.3-§2.6, §5.2): ``|`` is concatenation, ``prf`` is HMAC
with the negotiated hash, ``_b`` means a payload body (after the 4-octet generic
header), a payload name without ``_b`` means the whole payload as sent, and
M-ID is the message ID as 4 big-endian octets.
"""

from __future__ import annotations

from dataclasses import dataclass

from groupvpn.crypto.ciphers import CipherSuite
from groupvpn.crypto.hashes import HashAlgorithm, digest, prf


def _mid(message_id: int) -> bytes:
    if not 0 <= message_id <= 0xFFFFFFFF:
        raise ValueError(f"message ID {message_id} does not fit 4 octets")
    return message_id.to_bytes(4, "big")


# --- SKEYID and its children (RFC 2409 §5) ---------------------------------------


# SKEYID = prf(pre-shared-key, Ni_b | Nr_b)   (pre-shared key authentication)
def skeyid_psk(hash_alg: HashAlgorithm, psk: bytes, ni_b: bytes, nr_b: bytes) -> bytes:
    return prf(hash_alg, psk, ni_b + nr_b)


# SKEYID = prf(Ni_b | Nr_b, g^xy)   (signature authentication)
def skeyid_signature(hash_alg: HashAlgorithm, ni_b: bytes, nr_b: bytes, g_xy: bytes) -> bytes:
    return prf(hash_alg, ni_b + nr_b, g_xy)


# SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
def skeyid_d(
    hash_alg: HashAlgorithm, skeyid: bytes, g_xy: bytes, cky_i: bytes, cky_r: bytes
) -> bytes:
    return prf(hash_alg, skeyid, g_xy + cky_i + cky_r + b"\x00")


# SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
def skeyid_a(
    hash_alg: HashAlgorithm,
    skeyid: bytes,
    skeyid_d: bytes,
    g_xy: bytes,
    cky_i: bytes,
    cky_r: bytes,
) -> bytes:
    return prf(hash_alg, skeyid, skeyid_d + g_xy + cky_i + cky_r + b"\x01")


# SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
def skeyid_e(
    hash_alg: HashAlgorithm,
    skeyid: bytes,
    skeyid_a: bytes,
    g_xy: bytes,
    cky_i: bytes,
    cky_r: bytes,
) -> bytes:
    return prf(hash_alg, skeyid, skeyid_a + g_xy + cky_i + cky_r + b"\x02")


# Ka = SKEYID_e[:len] or (K1 | K2 | ...)[:len], K1 = prf(SKEYID_e, 0), Kn = prf(SKEYID_e, Kn-1)
def expand_encryption_key(hash_alg: HashAlgorithm, skeyid_e: bytes, key_length: int) -> bytes:
    if key_length < 0:
        raise ValueError(f"key length {key_length} is negative")
    # RFC 2409 App. B: the expansion is used only when SKEYID_e is shorter than the key.
    if len(skeyid_e) >= key_length:
        return skeyid_e[:key_length]
    # 3DES with SHA1 (24 > 20 octets) and AES-256 with SHA1 or MD5 land here.
    blocks: list[bytes] = []
    block = prf(hash_alg, skeyid_e, b"\x00")
    while True:
        blocks.append(block)
        if len(blocks) * len(block) >= key_length:
            return b"".join(blocks)[:key_length]
        block = prf(hash_alg, skeyid_e, block)


@dataclass(frozen=True, slots=True, repr=False)
class Phase1Keys:
    """The phase 1 key material of one IKE SA."""

    skeyid: bytes
    skeyid_d: bytes
    skeyid_a: bytes
    skeyid_e: bytes
    encryption_key: bytes

    def __repr__(self) -> str:
        # Keys must never reach a log line or a traceback; lengths help debugging.
        return (
            f"Phase1Keys(<{len(self.skeyid)}-octet SKEYIDs, "
            f"{len(self.encryption_key)}-octet encryption key, redacted>)"
        )


# SKEYID, SKEYID_d, SKEYID_a, SKEYID_e and Ka for pre-shared key authentication
def derive_phase1_keys(
    hash_alg: HashAlgorithm,
    cipher: CipherSuite,
    psk: bytes,
    ni_b: bytes,
    nr_b: bytes,
    g_xy: bytes,
    cky_i: bytes,
    cky_r: bytes,
) -> Phase1Keys:
    root = skeyid_psk(hash_alg, psk, ni_b, nr_b)
    derive = skeyid_d(hash_alg, root, g_xy, cky_i, cky_r)
    auth = skeyid_a(hash_alg, root, derive, g_xy, cky_i, cky_r)
    enc = skeyid_e(hash_alg, root, auth, g_xy, cky_i, cky_r)
    return Phase1Keys(
        root, derive, auth, enc, expand_encryption_key(hash_alg, enc, cipher.key_length)
    )


# --- IVs (RFC 2409 App. B) --------------------------------------------------------


def _truncate(value: bytes, block_size: int) -> bytes:
    if not 0 < block_size <= len(value):
        raise ValueError(f"cannot take a {block_size}-octet IV from {len(value)} octets")
    return value[:block_size]


# IV(phase 1) = hash(g^xi | g^xr) truncated to the cipher block size
def phase1_initial_iv(hash_alg: HashAlgorithm, g_xi: bytes, g_xr: bytes, block_size: int) -> bytes:
    return _truncate(digest(hash_alg, g_xi + g_xr), block_size)


# IV(phase 2 / informational / PULL) = hash(last phase-1 CBC block | M-ID) truncated to the block
def phase2_initial_iv(
    hash_alg: HashAlgorithm, last_phase1_block: bytes, message_id: int, block_size: int
) -> bytes:
    return _truncate(digest(hash_alg, last_phase1_block + _mid(message_id)), block_size)


# --- phase 1 authentication (RFC 2409 §5) ------------------------------------------


# HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)
def hash_i(
    hash_alg: HashAlgorithm,
    skeyid: bytes,
    g_xi: bytes,
    g_xr: bytes,
    cky_i: bytes,
    cky_r: bytes,
    sai_b: bytes,
    idii_b: bytes,
) -> bytes:
    return prf(hash_alg, skeyid, g_xi + g_xr + cky_i + cky_r + sai_b + idii_b)


# HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)
def hash_r(
    hash_alg: HashAlgorithm,
    skeyid: bytes,
    g_xi: bytes,
    g_xr: bytes,
    cky_i: bytes,
    cky_r: bytes,
    sai_b: bytes,
    idir_b: bytes,
) -> bytes:
    # Same parameter order as hash_i so callers cannot mix them up; the swap of
    # the DH values and cookies is the formula's, done here and only here.
    # SAi_b stays the *initiator's* SA body in both hashes.
    return prf(hash_alg, skeyid, g_xr + g_xi + cky_r + cky_i + sai_b + idir_b)


# --- protected exchanges after phase 1 ---------------------------------------------


# HASH(1) = prf(SKEYID_a, M-ID | N/D)   (RFC 2409 §5.7, N/D = whole Notify/Delete payloads)
def informational_hash(
    hash_alg: HashAlgorithm, skeyid_a: bytes, message_id: int, protected_payloads: bytes
) -> bytes:
    return prf(hash_alg, skeyid_a, _mid(message_id) + protected_payloads)


# GROUPKEY-PULL (gdoi-wire.md §5.2): every payload after HASH in the same message
# is hashed whole, nonces of earlier messages enter as bodies only, and unlike
# Quick Mode HASH(3) there is no leading 0x00 octet.


# HASH(1) = prf(SKEYID_a, M-ID | Ni | ID)
def pull_hash1(
    hash_alg: HashAlgorithm, skeyid_a: bytes, message_id: int, payloads_after_hash: bytes
) -> bytes:
    return prf(hash_alg, skeyid_a, _mid(message_id) + payloads_after_hash)


# HASH(2) = prf(SKEYID_a, M-ID | Ni_b | Nr | SA)
def pull_hash2(
    hash_alg: HashAlgorithm,
    skeyid_a: bytes,
    message_id: int,
    ni_b: bytes,
    payloads_after_hash: bytes,
) -> bytes:
    return prf(hash_alg, skeyid_a, _mid(message_id) + ni_b + payloads_after_hash)


# HASH(3) = prf(SKEYID_a, M-ID | Ni_b | Nr_b [| GAP])
def pull_hash3(
    hash_alg: HashAlgorithm,
    skeyid_a: bytes,
    message_id: int,
    ni_b: bytes,
    nr_b: bytes,
    payloads_after_hash: bytes,
) -> bytes:
    return prf(hash_alg, skeyid_a, _mid(message_id) + ni_b + nr_b + payloads_after_hash)


# HASH(4) = prf(SKEYID_a, M-ID | Ni_b | Nr_b [| SEQ] | KD)
def pull_hash4(
    hash_alg: HashAlgorithm,
    skeyid_a: bytes,
    message_id: int,
    ni_b: bytes,
    nr_b: bytes,
    payloads_after_hash: bytes,
) -> bytes:
    return prf(hash_alg, skeyid_a, _mid(message_id) + ni_b + nr_b + payloads_after_hash)
