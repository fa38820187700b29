"""The seed corpus and the mutations the fuzz tests draw from it.

``tests/fuzz/corpus/<target>/*.bin`` hold real messages (see make_corpus.py).
Mutations are those that find bugs in length-prefixed binary formats: bit
flips, truncation, insertion, octet overwrites, header-field rewrites, a length
field made consistent again, and splices of two seeds.  ``GROUPVPN_FUZZ_EXAMPLES``
scales every campaign (CI keeps the defaults; set it to 20000 for a long run).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from hypothesis import strategies as st

from groupvpn.crypto.ciphers import cbc_encrypt
from groupvpn.ike.sa import IkeSa
from groupvpn.wire.constants import HEADER_LENGTH, Flag

CORPUS = Path(__file__).parent / "corpus"


def examples(default: int) -> int:
    """How many examples a campaign runs: ``default`` unless GROUPVPN_FUZZ_EXAMPLES says more."""
    return int(os.environ.get("GROUPVPN_FUZZ_EXAMPLES", default))


@cache
def seeds(*targets: str) -> tuple[bytes, ...]:
    found = tuple(
        path.read_bytes() for target in targets for path in sorted((CORPUS / target).glob("*.bin"))
    )
    if not found:
        raise FileNotFoundError(f"no corpus for {targets}: run python -m tests.fuzz.make_corpus")
    return found


@st.composite
def mutated(draw: st.DrawFn, pool: tuple[bytes, ...]) -> bytes:
    """One seed from ``pool``, changed zero to four times."""
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(
            st.sampled_from(["flip", "truncate", "insert", "set", "header", "length", "splice"])
        )
        if kind == "flip" and data:
            index = draw(st.integers(0, len(data) - 1))
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif kind == "insert":
            index = draw(st.integers(0, len(data)))
            data[index:index] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "set" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.sampled_from([0, 1, 0x7F, 0xFF]))
        elif kind == "header" and len(data) >= HEADER_LENGTH:
            # Next payload, version, exchange type, flags, message ID.
            data[draw(st.sampled_from([16, 17, 18, 19, 20, 23]))] = draw(st.integers(0, 255))
        elif kind == "length" and len(data) >= HEADER_LENGTH:
            data[24:28] = len(data).to_bytes(4, "big")
        elif kind == "splice":
            other = draw(st.sampled_from(pool))
            cut = draw(st.integers(0, len(data)))
            data[cut:] = other[draw(st.integers(0, len(other))) :]
    return bytes(data)


def adopt(data: bytes, cookies: bytes, message_id: int | None = None) -> bytes:
    """``data`` with a live SA's cookies (and message ID), so it gets past the SA lookup."""
    if len(data) < HEADER_LENGTH:
        return data
    head = cookies + data[16:20]
    head += data[20:24] if message_id is None else message_id.to_bytes(4, "big")
    return head + data[24:]


def encrypt_under(sa: IkeSa, plain: bytes) -> bytes:
    """Header plus plaintext, encrypted with ``sa``'s keys and the IV its peer expects.

    Does not advance ``sa``'s IV chain (nothing of it is written): it plays a
    peer that holds the same keys, so fuzzed *plaintext* reaches the decoders
    and the exchange logic behind decryption.
    """
    if sa.keys is None or sa.agreed is None or len(plain) < HEADER_LENGTH:
        return plain
    cipher = sa.agreed.encryption
    body = plain[HEADER_LENGTH:]
    body += bytes(-len(body) % cipher.block_size)
    if not body:
        body = bytes(cipher.block_size)
    message_id = int.from_bytes(plain[20:24], "big")
    try:
        iv = sa.current_iv(message_id)
    except LookupError:
        return plain
    ciphertext = cbc_encrypt(cipher, sa.keys.encryption_key, iv, body)
    flags = plain[19] | Flag.ENCRYPTION
    length = (HEADER_LENGTH + len(ciphertext)).to_bytes(4, "big")
    return plain[:19] + bytes([flags]) + plain[20:24] + length + ciphertext
