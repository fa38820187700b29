"""g^x for a fixed g and p by table lookup: fixed-base windowing (HAC §14.6.3).

Every Diffie-Hellman exchange starts with g^x for the group's own g and p, so
the powers of g can be computed once.  Writing the exponent in base 2^w,
x = sum(d_i * 2^(w*i)), gives g^x = prod(g^(d_i * 2^(w*i))); with a table of
g^(d * 2^(w*i)) for every window i and digit d, g^x costs one multiplication
per window (32 for a 256-bit exponent with w = 8) instead of the ~256 squarings
and ~50 multiplications of a general modular exponentiation: about 4x faster
for group 14 (benchmarks/registration.py measures the whole registration).

The table holds 2^w entries per window, about 2.3 MB for group 14, built once
per group on first use (about 20 ms) and shared by every exchange.  Like
``pow()`` this is not constant-time, which docs/design.md accepts for one-use
exponents.  Exponents too long for the table fall back to ``modexp``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

WINDOW_BITS = 8


class FixedBaseTable:
    """Powers of ``base`` modulo ``modulus`` for exponents below 2^exponent_bits."""

    __slots__ = ("_modulus", "_rows", "exponent_bits")

    def __init__(
        self,
        base: int,
        modulus: int,
        exponent_bits: int,
        number: Callable[[int], Any] = int,
    ) -> None:
        """``number`` converts to the integer type used for the arithmetic (gmpy2.mpz)."""
        windows = -(-exponent_bits // WINDOW_BITS)
        self.exponent_bits = windows * WINDOW_BITS
        self._modulus = modulus = number(modulus)
        one = number(1)
        window_base = number(base) % modulus  # base^(2^(w*i)) for the current window i
        rows = []
        for _ in range(windows):
            row = [one]
            for _digit in range(1, 1 << WINDOW_BITS):
                row.append(row[-1] * window_base % modulus)
            rows.append(row)
            window_base = row[-1] * window_base % modulus
        self._rows = rows

    def power(self, exponent: int) -> int:
        """base^exponent mod modulus, for 0 <= exponent < 2^exponent_bits."""
        if not 0 <= exponent < 1 << self.exponent_bits:
            raise ValueError(f"exponent outside the table's {self.exponent_bits} bits")
        modulus, mask = self._modulus, (1 << WINDOW_BITS) - 1
        result = self._rows[0][exponent & mask]
        for row in self._rows[1:]:
            exponent >>= WINDOW_BITS
            if digit := exponent & mask:
                result = result * row[digit] % modulus
        return int(result)
