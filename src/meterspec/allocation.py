"""Allocation (MS-MNY-009): an amount split over weights into parts that add up to it exactly.

    amount in minor units --exact shares, rounded down--> parts
        --the units left over, one each to the largest remainders (ties: earlier part)--> parts

Pure integer and Fraction arithmetic: no float, no rounding mode, the same parts everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

from meterspec.errors import MeterspecError, Problem
from meterspec.money import Currency, currency, format_money, parse_money
from meterspec.quantity import EXACT, parse_quantity

__all__ = ["MAX_PARTS", "allocate", "allocation_problems", "split_minor_units"]

MAX_PARTS = 10_000
"""The most weights one allocation takes (`too-many-items` beyond, MS-MNY-009)."""


def split_minor_units(units: int, weights: Sequence[Fraction | Decimal | int]) -> list[int]:
    """Split `units` minor units by non-negative weights (not all zero): the largest remainder
    method, equal remainders to the earlier part, a negative amount split as its absolute
    value and negated (MS-MNY-009)."""
    total = sum((Fraction(w) for w in weights), Fraction(0))
    if total <= 0 or any(Fraction(w) < 0 for w in weights):
        raise ValueError("weights are non-negative and not all zero")
    whole = abs(units)
    shares = [whole * Fraction(w) / total for w in weights]
    parts = [share.numerator // share.denominator for share in shares]
    left = whole - sum(parts)
    # Largest remainder first, then the earlier part: sorted() is stable, so the index breaks
    # ties without being part of the key.
    order = sorted(range(len(parts)), key=lambda i: shares[i] - parts[i], reverse=True)
    for index in order[:left]:
        parts[index] += 1
    return [-part if units < 0 else part for part in parts]


def allocation_problems(amount: object, currency_code: object, weights: object,
                        ) -> tuple[list[Problem], tuple[int, Currency, list[Decimal]] | None]:
    """Every problem of an allocation's inputs (paths /amount, /currency, /weights/<i>), or
    none and the amount in minor units, the currency and the weights."""
    problems: list[Problem] = []
    found: Currency | None = None
    value: Decimal | None = None
    try:
        found = currency(currency_code, "/currency")
    except MeterspecError as error:
        problems += error.problems
    try:
        value = parse_money(amount, "/amount")
    except MeterspecError as error:
        problems += error.problems
    parsed: list[Decimal] = []
    if not isinstance(weights, list):
        problems.append(Problem("wrong-type", "/weights", "the weights are a JSON array",
                                "MS-MNY-009"))
    elif not weights:
        problems.append(Problem("empty-list", "/weights", "at least one weight",
                                "MS-MNY-009"))
    elif len(weights) > MAX_PARTS:
        problems.append(Problem("too-many-items", "/weights", f"at most {MAX_PARTS} weights",
                                "MS-MNY-009"))
    else:
        for index, weight in enumerate(weights):
            try:
                number = parse_quantity(weight, f"/weights/{index}")
            except MeterspecError as error:
                problems += error.problems
                continue
            if number < 0:
                problems.append(Problem("out-of-range", f"/weights/{index}", "a weight is not "
                                        "negative", "MS-MNY-009"))
            parsed.append(number)
        if len(parsed) == len(weights) and not problems and all(w == 0 for w in parsed):
            problems.append(Problem("invalid-value", "/weights", "the weights are not all "
                                    "zero: nothing would take the amount", "MS-MNY-009"))
    units: int | None = None
    if value is not None and found is not None:
        scaled = EXACT.scaleb(value, found.minor_units)
        if scaled != scaled.to_integral_value():
            problems.append(Problem("invalid-value", "/amount", f"{amount!s:.40} has digits "
                                    f"below the minor unit of {found.code}", "MS-MNY-009"))
        else:
            units = int(scaled)
    if problems or units is None or found is None:
        return problems, None
    return [], (units, found, parsed)


def allocate(amount: Decimal | str, currency_code: str | Currency,
             weights: Sequence[Decimal | str]) -> list[str]:
    """MS-MNY-009: the parts of `amount` by `weights`, canonical amounts in weight order;
    MeterspecError with every problem of the inputs."""
    code = currency_code.code if isinstance(currency_code, Currency) else currency_code
    text = amount if isinstance(amount, str) else format_money(amount)
    listed = [w if isinstance(w, str) else format_money(w) for w in weights]
    problems, checked = allocation_problems(text, code, listed)
    if checked is None:
        raise MeterspecError(problems)
    units, found, parsed = checked
    return [format_money(Decimal(part).scaleb(-found.minor_units, context=EXACT))
            for part in split_minor_units(units, parsed)]
