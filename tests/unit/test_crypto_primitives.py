"""Ciphers, hashes, MODP Diffie-Hellman, the App. B key expansion and the IV chains."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from groupvpn.crypto import dh, keymat
from groupvpn.crypto.ciphers import CIPHERS, CipherSuite, cbc_decrypt, cbc_encrypt, cipher_from_ike
from groupvpn.crypto.dh import MODP_GROUPS, PRIVATE_EXPONENT_BITS, DhExchange, DhGroup
from groupvpn.crypto.hashes import HASHES, digest, hash_from_ike, prf
from groupvpn.crypto.iv import DEFAULT_MAX_CHAINS, IvManager
from groupvpn.wire.constants import IkeEncryption, IkeHash


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def ecb(suite: CipherSuite, key: bytes, plaintext: bytes) -> bytes:
    """ECB from single-block CBC with a zero IV (C = E(0 xor P))."""
    size = suite.block_size
    return b"".join(
        cbc_encrypt(suite, key, bytes(size), plaintext[i : i + size])
        for i in range(0, len(plaintext), size)
    )


# --- ciphers --------------------------------------------------------------------


def test_des_fips81_known_answers() -> None:
    des = CIPHERS["des-cbc"]
    key = h("0123456789abcdef")
    # FIPS 81 (1980), Appendix B, ECB example: "Now is t" -> 3fa40e8a984d4815.
    assert ecb(des, key, b"Now is t") == h("3fa40e8a984d4815")
    # FIPS 81, Appendix C, CBC example with IV 1234567890abcdef.
    iv = h("1234567890abcdef")
    expected = h("e5c7cdde872bf27c 43e934008c389c0f 683788499a7c05f6")
    assert cbc_encrypt(des, key, iv, b"Now is the time for all ") == expected
    assert cbc_decrypt(des, key, iv, expected) == b"Now is the time for all "


def test_3des_sp800_67_known_answer() -> None:
    # NIST SP 800-67 Rev. 1/2, TDEA example (ECB; the plaintext typo "qufck" is NIST's).
    tdes = CIPHERS["3des-cbc"]
    key = h("0123456789ABCDEF 23456789ABCDEF01 456789ABCDEF0123")
    expected = h("A826FD8CE53B855F CCE21C8112256FE6 68D5C05DD9B6B900")
    assert ecb(tdes, key, b"The qufck brown fox jump") == expected


# NIST SP 800-38A Appendix F.2.1 / F.2.3 / F.2.5 (CBC-AES128/192/256.Encrypt).
SP800_38A_IV = h("000102030405060708090a0b0c0d0e0f")
SP800_38A_PLAINTEXT = h(
    """
    6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
    30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710
    """
)
SP800_38A_CBC = {
    "aes-128-cbc": (
        "2b7e151628aed2a6abf7158809cf4f3c",
        """7649abac8119b246cee98e9b12e9197d 5086cb9b507219ee95db113a917678b2
           73bed6b8e3c1743b7116e69e22229516 3ff1caa1681fac09120eca307586e1a7""",
    ),
    "aes-192-cbc": (
        "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
        """4f021db243bc633d7178183a9fa071e8 b4d9ada9ad7dedf4e5e738763f69145a
           571b242012fb7ae07fa9baac3df102e0 08b0e27988598881d920a9e64f5615cd""",
    ),
    "aes-256-cbc": (
        "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
        """f58c4c04d6e5f1ba779eabfb5f7bfbd6 9cfc4e967edb808d679f777bc6702c7d
           39f23369a9d9bacfa530e26304231461 b2eb05e2c39be9fcda6c19078c6a9d1b""",
    ),
}


@pytest.mark.parametrize("name", sorted(SP800_38A_CBC))
def test_aes_cbc_sp800_38a(name: str) -> None:
    key, ciphertext = (h(x) for x in SP800_38A_CBC[name])
    suite = CIPHERS[name]
    assert cbc_encrypt(suite, key, SP800_38A_IV, SP800_38A_PLAINTEXT) == ciphertext
    assert cbc_decrypt(suite, key, SP800_38A_IV, ciphertext) == SP800_38A_PLAINTEXT


@pytest.mark.parametrize("name", sorted(CIPHERS))
def test_cbc_roundtrip_and_strict_lengths(name: str) -> None:
    suite = CIPHERS[name]
    key, iv = bytes(range(suite.key_length)), bytes(suite.block_size)
    plaintext = bytes(range(3 * suite.block_size))
    ciphertext = cbc_encrypt(suite, key, iv, plaintext)
    assert len(ciphertext) == len(plaintext)
    assert cbc_decrypt(suite, key, iv, ciphertext) == plaintext
    # No padding is added or removed: partial blocks are a caller bug.
    with pytest.raises(ValueError, match="multiple"):
        cbc_encrypt(suite, key, iv, plaintext[:-1])
    with pytest.raises(ValueError, match="multiple"):
        cbc_decrypt(suite, key, iv, ciphertext + b"\x00")
    with pytest.raises(ValueError, match="key"):
        cbc_encrypt(suite, key + b"\x00", iv, plaintext)
    with pytest.raises(ValueError, match="IV"):
        cbc_encrypt(suite, key, iv[:-1], plaintext)


def test_cipher_table() -> None:
    assert sorted(CIPHERS) == ["3des-cbc", "aes-128-cbc", "aes-192-cbc", "aes-256-cbc", "des-cbc"]
    for name, suite in CIPHERS.items():
        assert suite.name == name
        if suite.ike_key_length_bits is not None:
            assert suite.ike_key_length_bits == 8 * suite.key_length


def test_cipher_from_ike() -> None:
    aes = IkeEncryption.AES_CBC
    assert cipher_from_ike(IkeEncryption.DES_CBC, None) is CIPHERS["des-cbc"]
    assert cipher_from_ike(IkeEncryption.TRIPLE_DES_CBC, None) is CIPHERS["3des-cbc"]
    assert cipher_from_ike(aes, 128) is CIPHERS["aes-128-cbc"]
    assert cipher_from_ike(aes, 192) is CIPHERS["aes-192-cbc"]
    assert cipher_from_ike(aes, 256) is CIPHERS["aes-256-cbc"]
    # RFC 2409 App. A: AES needs a Key Length, fixed-length ciphers must not have one.
    assert cipher_from_ike(aes, None) is None
    assert cipher_from_ike(aes, 160) is None
    assert cipher_from_ike(IkeEncryption.TRIPLE_DES_CBC, 192) is None
    assert cipher_from_ike(IkeEncryption.DES_CBC, 64) is None
    assert cipher_from_ike(IkeEncryption.BLOWFISH_CBC, None) is None


# --- hashes ---------------------------------------------------------------------


def test_hash_table_and_lookup() -> None:
    assert sorted(HASHES) == ["md5", "sha-256", "sha-384", "sha1"]
    assert hash_from_ike(IkeHash.MD5) is HASHES["md5"]
    assert hash_from_ike(IkeHash.SHA1) is HASHES["sha1"]
    assert hash_from_ike(IkeHash.SHA2_256) is HASHES["sha-256"]
    assert hash_from_ike(IkeHash.SHA2_384) is HASHES["sha-384"]
    assert hash_from_ike(IkeHash.TIGER) is None
    assert hash_from_ike(IkeHash.SHA2_512) is None
    for alg in HASHES.values():
        assert len(digest(alg, b"abc")) == alg.digest_size
        assert len(prf(alg, b"k", b"abc")) == alg.digest_size


def test_digest_known_answers() -> None:
    # FIPS 180-2 Appendix A.1 / B.1 "abc"; RFC 1321 A.5 "abc".
    assert digest(HASHES["md5"], b"abc") == h("900150983cd24fb0d6963f7d28e17f72")
    assert digest(HASHES["sha1"], b"abc") == h("a9993e364706816aba3e25717850c26c9cd0d89d")
    assert digest(HASHES["sha-256"], b"abc") == h(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_prf_is_hmac_known_answers() -> None:
    # RFC 2202 test case 1 (HMAC-MD5, HMAC-SHA1); RFC 4231 test case 1 (SHA-256/384).
    assert prf(HASHES["md5"], b"\x0b" * 16, b"Hi There") == h("9294727a3638bb1c13f48ef8158bfc9d")
    assert prf(HASHES["sha1"], b"\x0b" * 20, b"Hi There") == h(
        "b617318655057264e28bc0b6fb378c8ef146be00"
    )
    assert prf(HASHES["sha-256"], b"\x0b" * 20, b"Hi There") == h(
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    )
    assert prf(HASHES["sha-384"], b"\x0b" * 20, b"Hi There") == h(
        "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
        "faea9ea9076ede7f4af152e8b2fa9cb6"
    )


# --- MODP groups ----------------------------------------------------------------


def _arctan_inverse(x: int, one: int) -> int:
    """floor(one * arctan(1/x)) up to a few units, by the alternating Taylor series."""
    total = term = one // x
    x_squared, n, sign = x * x, 1, -1
    while term:
        term //= x_squared
        total += sign * (term // (2 * n + 1))
        n, sign = n + 1, -sign
    return total


def _floor_pi_times_2_to(bits: int) -> int:
    """floor(pi * 2^bits) with Machin's pi = 16 arctan(1/5) - 4 arctan(1/239).

    64 guard bits absorb the truncation error of the series (a few units in
    the last place per term), so the result is exact for these sizes.
    """
    guard = 64
    one = 1 << (bits + guard)
    return (16 * _arctan_inverse(5, one) - 4 * _arctan_inverse(239, one)) >> guard


# RFC 2409 §6.1/§6.2 and RFC 3526 §2/§3: group -> (n, k) in
# p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + k)   (gdoi-wire.md §1.8)
MODP_FORMULA = {1: (768, 149686), 2: (1024, 129093), 5: (1536, 741804), 14: (2048, 124476)}


def _is_probable_prime(n: int) -> bool:
    """Miller-Rabin with fixed bases: deterministic, and plenty to catch a typo."""
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for base in (2, 3, 5, 7, 11):
        x = pow(base, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


@pytest.mark.parametrize("number", sorted(MODP_FORMULA))
def test_modp_primes_regenerate_from_pi(number: int) -> None:
    n, k = MODP_FORMULA[number]
    regenerated = 2**n - 2 ** (n - 64) - 1 + 2**64 * (_floor_pi_times_2_to(n - 130) + k)
    group = MODP_GROUPS[number]
    assert group.number == number
    assert group.prime == regenerated
    assert group.generator == 2
    assert group.length_octets * 8 == n == group.prime.bit_length()
    # Common prefix and the 64 low one-bits every Oakley/MODP prime has.
    assert f"{group.prime:X}".startswith("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1")
    assert group.prime & (2**64 - 1) == 2**64 - 1


@pytest.mark.parametrize("number", sorted(MODP_FORMULA))
def test_modp_primes_are_safe_primes(number: int) -> None:
    p = MODP_GROUPS[number].prime
    assert _is_probable_prime(p)
    assert _is_probable_prime((p - 1) // 2)


def test_modp_suffixes_match_the_reference_table() -> None:
    # gdoi-wire.md §1.8 table, "prime ends with".
    suffix = {1: "E9A63A3620", 2: "49286651ECE65381", 5: "F1746C08CA237327", 14: "15728E5A8AACAA68"}
    for number, tail in suffix.items():
        assert re.search(tail + "F{16}$", f"{MODP_GROUPS[number].prime:X}")


@pytest.mark.parametrize("number", sorted(MODP_GROUPS))
def test_dh_both_sides_agree(number: int) -> None:
    group = MODP_GROUPS[number]
    alice, bob = DhExchange(group), DhExchange(group)
    assert len(alice.public_value) == len(bob.public_value) == group.length_octets
    secret = alice.shared_secret(bob.public_value)
    assert secret == bob.shared_secret(alice.public_value)
    assert len(secret) == group.length_octets


@pytest.mark.parametrize("number", sorted(MODP_GROUPS))
def test_gmp_and_stdlib_exponentiation_agree(number: int) -> None:
    # The daemons use GMP (gmpy2 is a dependency); pow() is the fallback.  Both
    # must give the same g^x and g^xy, including at the edges of the exponent range.
    p = MODP_GROUPS[number].prime
    rng = random.Random(number)
    exponents = [2, p - 2, (1 << dh.PRIVATE_EXPONENT_BITS) - 1] + [
        rng.getrandbits(dh.PRIVATE_EXPONENT_BITS) for _ in range(5)
    ]
    for x in exponents:
        base = rng.randrange(2, p - 1)
        assert dh._gmp_modexp(2, x, p) == dh._stdlib_modexp(2, x, p)
        assert dh._gmp_modexp(base, x, p) == dh._stdlib_modexp(base, x, p)
    assert isinstance(dh._gmp_modexp(2, 5, p), int)


def test_dh_agrees_across_implementations(monkeypatch: pytest.MonkeyPatch) -> None:
    # A member without gmpy2 and a server with it compute the same secret.
    group = MODP_GROUPS[14]
    monkeypatch.setattr(dh, "modexp", dh._stdlib_modexp)
    slow = DhExchange(group)
    monkeypatch.setattr(dh, "modexp", dh._gmp_modexp)
    fast = DhExchange(group)
    assert fast.shared_secret(slow.public_value) == slow.shared_secret(fast.public_value)


def test_dh_injected_exponents_and_padding() -> None:
    group = MODP_GROUPS[2]
    alice, bob = DhExchange(group, 2), DhExchange(group, 3)
    # Small values keep their full length: left-padded with zeros.
    assert alice.public_value == (4).to_bytes(128, "big")
    assert bob.public_value == (8).to_bytes(128, "big")
    assert alice.shared_secret(bob.public_value) == (64).to_bytes(128, "big")
    assert bob.shared_secret(alice.public_value) == (64).to_bytes(128, "big")


def test_dh_private_exponent_is_short_random_and_hidden() -> None:
    group = MODP_GROUPS[14]
    exchanges = [DhExchange(group) for _ in range(4)]
    assert len({e.public_value for e in exchanges}) == 4
    # A recognisable exponent never shows in repr.
    marked = DhExchange(group, 0xDEADBEEFCAFE)
    assert "deadbeef" not in repr(marked).lower() and str(0xDEADBEEFCAFE) not in repr(marked)
    assert PRIVATE_EXPONENT_BITS >= 2 * 112  # >= twice group 14's strength


@pytest.mark.parametrize("exponent", [0, 1, -5])
def test_dh_rejects_bad_injected_exponent(exponent: int) -> None:
    with pytest.raises(ValueError):
        DhExchange(MODP_GROUPS[2], exponent)
    with pytest.raises(ValueError):
        DhExchange(MODP_GROUPS[2], MODP_GROUPS[2].prime - 1)


def _bad_peer_value(group: DhGroup, label: str) -> bytes:
    size, p = group.length_octets, group.prime
    return {
        "zero": bytes(size),
        "one": (1).to_bytes(size, "big"),
        "p-1": (p - 1).to_bytes(size, "big"),
        "p": p.to_bytes(size, "big"),
        "all-ones": b"\xff" * size,
        "short": (5).to_bytes(size - 1, "big"),
        "long": (5).to_bytes(size + 1, "big"),
        "empty": b"",
    }[label]


@pytest.mark.parametrize("number", sorted(MODP_GROUPS))
@pytest.mark.parametrize("label", ["zero", "one", "p-1", "p", "all-ones", "short", "long", "empty"])
def test_dh_rejects_bad_peer_values(number: int, label: str) -> None:
    group = MODP_GROUPS[number]
    with pytest.raises(ValueError, match=r"octets|1 < y < p-1"):
        DhExchange(group).shared_secret(_bad_peer_value(group, label))


def test_dh_accepts_the_edges_just_inside() -> None:
    group = MODP_GROUPS[1]
    ours = DhExchange(group)
    for y in (2, group.prime - 2):
        assert len(ours.shared_secret(y.to_bytes(group.length_octets, "big"))) == 96


# --- RFC 2409 App. B key expansion ----------------------------------------------


@pytest.mark.parametrize(
    ("hash_name", "cipher_name"), list(itertools.product(sorted(HASHES), sorted(CIPHERS)))
)
def test_expansion_for_every_combination(hash_name: str, cipher_name: str) -> None:
    alg, suite = HASHES[hash_name], CIPHERS[cipher_name]
    skeyid_e = prf(alg, b"key", b"SKEYID_e stand-in")
    key = keymat.expand_encryption_key(alg, skeyid_e, suite.key_length)
    assert len(key) == suite.key_length
    if alg.digest_size >= suite.key_length:
        # Long enough: the key is the leading octets of SKEYID_e itself.
        assert key == skeyid_e[: suite.key_length]
    else:
        # Too short: K1 = prf(SKEYID_e, 0x00), K2 = prf(SKEYID_e, K1), ...
        k1 = prf(alg, skeyid_e, b"\x00")
        k2 = prf(alg, skeyid_e, k1)
        assert key == (k1 + k2)[: suite.key_length]
    keys = keymat.derive_phase1_keys(alg, suite, b"psk", b"ni", b"nr", b"gxy", bytes(8), bytes(8))
    assert len(keys.encryption_key) == suite.key_length
    assert len(keys.skeyid) == len(keys.skeyid_a) == alg.digest_size


def test_expansion_needs_three_blocks_for_aes256_with_md5() -> None:
    md5 = HASHES["md5"]
    skeyid_e = bytes(range(16))
    k1 = prf(md5, skeyid_e, b"\x00")
    k2 = prf(md5, skeyid_e, k1)
    assert keymat.expand_encryption_key(md5, skeyid_e, 32) == k1 + k2
    assert keymat.expand_encryption_key(md5, skeyid_e, 40)[32:] == prf(md5, skeyid_e, k2)[:8]


# --- IV chains ------------------------------------------------------------------

SHA1 = HASHES["sha1"]
P1_IV = bytes(range(16, 32))


def _manager(**kwargs: int) -> IvManager:
    ivs = IvManager(**kwargs)
    ivs.set_phase1_iv(P1_IV)
    return ivs


def test_phase1_iv_needs_keys() -> None:
    ivs = IvManager()
    with pytest.raises(LookupError):
        ivs.phase1_iv()
    with pytest.raises(LookupError):
        ivs.iv_for(7, SHA1, 16)


def test_update_without_confirm_keeps_the_iv() -> None:
    ivs = _manager()
    ivs.update(0, b"A" * 16)
    assert ivs.phase1_iv() == P1_IV
    assert ivs.iv_for(0, SHA1, 16) == P1_IV
    ivs.confirm(0)
    assert ivs.phase1_iv() == b"A" * 16
    # confirm without a new candidate changes nothing.
    ivs.confirm(0)
    assert ivs.phase1_iv() == b"A" * 16
    # A later candidate replaces an earlier unconfirmed one.
    ivs.update(0, b"B" * 16)
    ivs.update(0, b"C" * 16)
    ivs.confirm(0)
    assert ivs.phase1_iv() == b"C" * 16


def test_new_message_id_starts_from_the_last_confirmed_phase1_block() -> None:
    ivs = _manager()
    ivs.update(0, b"unconfirmed-blk!")
    first = ivs.iv_for(0x1234, SHA1, 16)
    assert first == keymat.phase2_initial_iv(SHA1, P1_IV, 0x1234, 16)
    assert first == digest(SHA1, P1_IV + h("00001234"))[:16]


def test_chains_are_per_message_id() -> None:
    ivs = _manager()
    start_1, start_2 = ivs.iv_for(1, SHA1, 16), ivs.iv_for(2, SHA1, 16)
    assert start_1 != start_2
    ivs.update(1, b"1" * 16)
    assert ivs.iv_for(1, SHA1, 16) == start_1  # not confirmed yet
    ivs.confirm(1)
    assert ivs.iv_for(1, SHA1, 16) == b"1" * 16
    assert ivs.iv_for(2, SHA1, 16) == start_2
    assert ivs.phase1_iv() == P1_IV
    ivs.update(2, b"2" * 16)
    ivs.confirm(1)  # the wrong chain's confirm does not move chain 2
    assert ivs.iv_for(2, SHA1, 16) == start_2
    ivs.forget(1)
    assert ivs.iv_for(1, SHA1, 16) == start_1


def test_chain_count_is_bounded_oldest_dropped() -> None:
    ivs = _manager()
    total = DEFAULT_MAX_CHAINS + 8
    for mid in range(1, total + 1):
        ivs.update(mid, mid.to_bytes(16, "big"))
        ivs.confirm(mid)
    assert ivs.chain_count == DEFAULT_MAX_CHAINS
    for mid in range(1, 9):  # the oldest fell out and would start afresh
        assert ivs.iv_for(mid, SHA1, 16) == keymat.phase2_initial_iv(SHA1, P1_IV, mid, 16)
    for mid in range(9, total + 1):
        assert ivs.iv_for(mid, SHA1, 16) == mid.to_bytes(16, "big")


def test_unconfirmed_flood_does_not_evict_confirmed_chains() -> None:
    ivs = _manager(max_chains=4)
    ivs.update(99, b"9" * 16)
    ivs.confirm(99)
    ivs.update(0, b"P" * 16)
    for mid in range(1000, 1100):  # messages that never authenticate
        ivs.update(mid, bytes(16))
    assert ivs.iv_for(99, SHA1, 16) == b"9" * 16
    assert ivs.chain_count == 1
    ivs.confirm(0)  # the phase 1 candidate is kept apart and survived
    assert ivs.phase1_iv() == b"P" * 16
    ivs.confirm(1000)  # evicted candidate: nothing to confirm
    assert ivs.iv_for(1000, SHA1, 16) == keymat.phase2_initial_iv(SHA1, b"P" * 16, 1000, 16)


def test_phase1_chain_cannot_be_forgotten_and_bound_is_positive() -> None:
    with pytest.raises(ValueError):
        _manager().forget(0)
    with pytest.raises(ValueError):
        IvManager(max_chains=0)
