"""Allocation (specs/pricing.md MS-MNY-009): parts that sum to the amount exactly, in minor
units, by the largest remainder method with ties to the earlier part.

Hand-worked examples, and the laws as hypothesis properties: the parts sum to the amount, each
is within one minor unit of its exact share, a zero weight gets zero, negation commutes with
allocation, and no part that was owed more gets less than one that was owed less.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.allocation import allocate, split_minor_units
from meterspec.errors import MeterspecError


@pytest.mark.parametrize(("amount", "code", "weights", "parts"), [
    # 100 cents by 1:1:1 -> 33.33 each, 1 cent left, equal remainders: the first part.
    ("1", "USD", ["1", "1", "1"], ["0.34", "0.33", "0.33"]),
    # 100 cents by 1:2 -> 33.33 and 66.67: floors 33, 66, the cent to the larger remainder,
    # the second part (giving it to the first part would make 0.34 and 0.66).
    ("1", "USD", ["1", "2"], ["0.33", "0.67"]),
    # 10 yen by 3 parts of 0.5, 0.25, 0.25: 5, 2.5, 2.5 -> 5, 2, 2, one yen to the earlier tie.
    ("10", "JPY", ["0.5", "0.25", "0.25"], ["5", "3", "2"]),
    # a negative amount: the parts of its absolute value, negated.
    ("-1", "USD", ["1", "2"], ["-0.33", "-0.67"]),
    # zero weights get zero; KWD has 3 minor units: 1000 fils by 0:1:1 -> 0, 500, 500.
    ("1", "KWD", ["0", "1", "1"], ["0", "0.5", "0.5"]),
    ("0", "USD", ["1", "3"], ["0", "0"]),
])
def test_hand_worked_allocations(amount: str, code: str, weights: list[str],
                                 parts: list[str]) -> None:
    """MS-MNY-009 on the examples its text gives."""
    assert allocate(amount, code, weights) == parts


@pytest.mark.parametrize(("amount", "code", "weights", "expected"), [
    ("0.001", "USD", ["1"], [("invalid-value", "/amount")]),
    ("1", "usd", [], [("empty-list", "/weights"), ("unknown-currency", "/currency")]),
    ("1", "USD", ["-1", "2"], [("out-of-range", "/weights/0")]),
    ("1", "USD", ["0", "0"], [("invalid-value", "/weights")]),
    ("x", "USD", ["1", "1.2.3"], [("invalid-amount", "/amount"),
                                  ("invalid-quantity", "/weights/1")]),
    ("1", "USD", ["1"] * 10_001, [("too-many-items", "/weights")]),
])
def test_allocation_problems(amount: str, code: str, weights: list[str],
                             expected: list[tuple[str, str]]) -> None:
    """MS-MNY-009: every problem of the inputs, together."""
    with pytest.raises(MeterspecError) as caught:
        allocate(amount, code, weights)
    assert sorted((p.code, p.path) for p in caught.value.problems) == expected


weight_lists = st.lists(st.integers(0, 1000).map(Fraction), min_size=1, max_size=12).filter(
    lambda weights: sum(weights) > 0)


@settings(max_examples=400, deadline=None)
@given(units=st.integers(-10**9, 10**9), weights=weight_lists)
def test_the_parts_sum_to_the_whole_and_follow_the_shares(units: int,
                                                          weights: list[Fraction]) -> None:
    """MS-MNY-009: exact sum, each part within one minor unit of its share (never below its
    share rounded down), zero weight zero, symmetric around zero, and a part owed a larger
    remainder never gets less rounding than one owed a smaller one."""
    parts = split_minor_units(units, weights)
    assert sum(parts) == units
    total = sum(weights)
    shares = [abs(units) * w / total for w in weights]
    for part, share, weight in zip(parts, shares, weights, strict=True):
        assert abs(abs(part) - share) < 1
        assert abs(part) >= share.numerator // share.denominator
        if weight == 0:
            assert part == 0
    assert split_minor_units(-units, weights) == [-part for part in parts]
    bumped = [abs(p) - s.numerator // s.denominator for p, s in zip(parts, shares, strict=True)]
    for i, (share_i, bump_i) in enumerate(zip(shares, bumped, strict=True)):
        for j, (share_j, bump_j) in enumerate(zip(shares, bumped, strict=True)):
            rest_i, rest_j = share_i - int(share_i), share_j - int(share_j)
            if bump_j and not bump_i:  # j got a unit, i did not: j was owed at least as much
                assert rest_j > rest_i or (rest_j == rest_i and j < i)


def test_allocation_takes_decimals_too() -> None:
    assert allocate(Decimal("10.00"), "EUR", [Decimal("1E+1"), Decimal("0.3")]) == [
        "9.71", "0.29"]
