"""The cipher and MAC objects one SA keeps for its whole life: the fastest correct paths.

Creating a cipher context or an HMAC per packet costs more than the cryptography
itself (../shared/reference/python-performance.md §2), so an SA builds these once:

* :class:`CbcEncryptor`: one CBC encryptor for the SA's life.  A CBC context cannot be
  given a new IV, so each packet starts with one extra block ``N xor C_prev``, where
  ``N`` is a counter and ``C_prev`` the last block the context produced: the context
  outputs ``E_K(N)``, which becomes the packet's IV, and then exactly
  ``CBC(K, IV, plaintext)``.  This is NIST SP 800-38A Appendix C's first method (the
  IV is the forward cipher of a nonce under the same key), so IVs are unpredictable
  to anyone without the key, as CBC requires.
* :class:`CbcDecryptor`: one CBC decryptor; each packet is fed as ``IV || ciphertext``
  and the first output block is dropped, so every packet decrypts on its own, in any
  order, with any losses.
* :class:`TruncatedHmac`: a keyed HMAC computed once and ``copy()``-ed per packet.

AES-GCM needs nothing of the kind: one ``AESGCM`` object per SA is the fast path.

Why IVs do not collide across members sharing a TEK: every member draws its own
counter start uniformly from the whole block (2^128 values for AES, 2^64 for
DES/3DES) and then counts up, so two members' IVs collide only if their counter
ranges overlap.  For m members sending at most L packets each under one key that
happens with probability below m^2 * L / 2^bits: for 10,000 members and 2^32
packets each, about 2^-69 with AES.  With a 64-bit block the bound is about 2^-5 for the same
numbers, but a 64-bit block cipher already leaks through colliding ciphertext blocks
after about 2^32 blocks in total (Sweet32), so DES and 3DES keys must be rekeyed
long before either matters; the counter adds no weakness of its own.
"""

from __future__ import annotations

import hmac as stdlib_hmac
import secrets
from collections.abc import Callable

from cryptography.hazmat.primitives import hmac
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from groupvpn.dataplane.suites import EspSuite


class CbcEncryptor:
    """CBC encryption with IV = E_K(counter), on one context kept for the SA's life."""

    __slots__ = ("_block", "_counter", "_last", "_mask", "_update")

    def __init__(self, suite: EspSuite, key: bytes, counter_start: int | None = None) -> None:
        """``counter_start``: the first N (known-answer tests); default random, full block."""
        block = suite.block_size
        self._block = block
        modulus = 1 << (8 * block)
        self._mask = modulus - 1
        self._counter = (
            secrets.randbelow(modulus) if counter_start is None else counter_start
        ) % modulus
        # The context's chaining value starts as this all-zero IV; from then on it is
        # the last ciphertext block the context produced (``_last``).
        self._update = (
            Cipher(suite.cipher_algorithm(key), modes.CBC(bytes(block))).encryptor().update
        )
        self._last = 0

    @property
    def next_counter(self) -> int:
        """The N the next packet's IV will be encrypted from."""
        return self._counter

    def encrypt(self, plaintext: bytes) -> bytes:
        """``IV || CBC(K, IV, plaintext)`` for a ``plaintext`` of whole blocks."""
        iv, ciphertext = self.encrypt_apart(plaintext)
        return iv + ciphertext

    def encrypt_apart(self, plaintext: bytes | bytearray) -> tuple[bytes, bytes]:
        """``(IV, CBC(K, IV, plaintext))``, for a ``plaintext`` of whole blocks.

        Two ``update`` calls on the one context: the block ``N xor C_prev`` comes out as
        ``E_K(N)``, the IV, which is then the chaining value for ``plaintext``.  Apart,
        so that the caller joins them once into its packet, without a copy here.
        """
        block = self._block
        update = self._update
        iv = update((self._counter ^ self._last).to_bytes(block, "big"))
        ciphertext = update(plaintext)
        self._counter = (self._counter + 1) & self._mask
        self._last = int.from_bytes(ciphertext[-block:], "big")
        return iv, ciphertext


class CbcDecryptor:
    """CBC decryption of independent packets on one context kept for the SA's life."""

    __slots__ = ("_block", "decrypt_all")

    def __init__(self, suite: EspSuite, key: bytes) -> None:
        self._block = suite.block_size
        #: Like :meth:`decrypt`, but with the meaningless first block left on (no
        #: copy): the context's own ``update``, so a call costs no Python frame.
        self.decrypt_all: Callable[[bytes], bytes] = (
            Cipher(suite.cipher_algorithm(key), modes.CBC(bytes(self._block))).decryptor().update
        )

    def decrypt(self, iv_and_ciphertext: bytes) -> bytes:
        """The plaintext of ``IV || ciphertext``; the caller checked it is whole blocks.

        The first output block is D(IV) xor (whatever came before) and is thrown
        away; every later block is D(C_i) xor C_(i-1), with C_0 = IV.  Input that is
        not whole blocks would leave a partial block inside the context and spoil the
        next packet, so callers must check the length first (``EspSa`` does).
        """
        return self.decrypt_all(iv_and_ciphertext)[self._block :]


class TruncatedHmac:
    """HMAC with the SA's key, truncated to the ICV length (RFC 2403, 2404, 4868)."""

    __slots__ = ("length", "new")

    def __init__(self, suite: EspSuite, key: bytes) -> None:
        if len(key) != suite.integrity_key_length:
            raise ValueError(
                f"{suite.integrity} needs a {suite.integrity_key_length}-octet key, got {len(key)}"
            )
        #: A fresh HMAC context already keyed (the inner and outer pads hashed once,
        #: here): ``update`` it with the data, then ``finalize()[:length]``.
        self.new: Callable[[], hmac.HMAC] = hmac.HMAC(key, suite.hash_algorithm).copy
        #: The ICV length: the HMAC is truncated to this many octets.
        self.length = suite.icv_length

    def tag(self, data: bytes) -> bytes:
        mac = self.new()
        mac.update(data)
        return mac.finalize()[: self.length]

    def verify(self, data: bytes, icv: bytes) -> bool:
        """Constant-time comparison of the received ``icv`` with ours."""
        return stdlib_hmac.compare_digest(self.tag(data), icv)
