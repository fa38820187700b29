"""Fixed-base windowing gives exactly pow()'s g^x, for both integer types."""

from __future__ import annotations

import random

import pytest

from groupvpn.crypto import dh
from groupvpn.crypto.fixed_base import WINDOW_BITS, FixedBaseTable

NUMBER_TYPES = [pytest.param(int, id="int")]
try:
    import gmpy2  # type: ignore[import-untyped]

    NUMBER_TYPES.append(pytest.param(gmpy2.mpz, id="mpz"))
except ImportError:  # pragma: no cover
    pass


@pytest.mark.parametrize("number", NUMBER_TYPES)
@pytest.mark.parametrize("group_number", [2, 14])
def test_table_matches_pow(number: type, group_number: int) -> None:
    group = dh.MODP_GROUPS[group_number]
    table = FixedBaseTable(group.generator, group.prime, 256, number)
    rng = random.Random(group_number)
    top = (1 << 256) - 1
    # Edges: zero digits in every window, a single set bit, all ones, window borders.
    exponents = [0, 1, 2, 255, 256, 1 << 255, top, top ^ 0xFF, int("01" * 32, 16)]
    exponents += [rng.getrandbits(256) for _ in range(20)]
    for x in exponents:
        result = table.power(x)
        assert result == pow(group.generator, x, group.prime)
        assert type(result) is int


def test_table_with_an_odd_base_and_a_partial_window() -> None:
    # 20 bits do not fill a whole number of 8-bit windows: the table rounds up.
    table = FixedBaseTable(7, 1_000_003, 20)
    assert table.exponent_bits == 3 * WINDOW_BITS
    for x in (0, 5, 1 << 19, (1 << 24) - 1):
        assert table.power(x) == pow(7, x, 1_000_003)


@pytest.mark.parametrize("exponent", [-1, 1 << 256])
def test_table_refuses_exponents_it_does_not_cover(exponent: int) -> None:
    table = FixedBaseTable(2, dh.MODP_GROUPS[2].prime, 256)
    with pytest.raises(ValueError):
        table.power(exponent)


def test_dh_exchange_uses_the_table_and_agrees_with_pow() -> None:
    group = dh.MODP_GROUPS[14]
    x = random.Random(5).getrandbits(dh.PRIVATE_EXPONENT_BITS) | 2
    expected = pow(group.generator, x, group.prime).to_bytes(group.length_octets, "big")
    assert dh.DhExchange(group, x).public_value == expected
    # A long injected exponent (known-answer tests) takes the general path.
    long_x = group.prime - 2
    expected_long = pow(group.generator, long_x, group.prime).to_bytes(group.length_octets, "big")
    assert dh.DhExchange(group, long_x).public_value == expected_long
