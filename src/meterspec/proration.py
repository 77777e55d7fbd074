"""Proration (MS-PRO): rating a segment that covers the fraction f = (e - s) / (pe - ps) of
its billing period, f an exact rational of nanoseconds.

    levels (flat, time-weighted-avg, min, max, latest, unique-count): amount x f
    counters (sum, count): includedQuantity x f, minimumAmount x f, maximumAmount x f

The amount stays exact (a Fraction) until the line's one half-even rounding (MS-MNY-005);
`precise` is written exactly when it can be, otherwise rounded to odd at 30 fraction digits,
which keeps `rounded` equal to `precise` rounded half to even (MS-PRO-005).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction

import msgspec

from meterspec.money import Amount, format_money, round_money
from meterspec.plans import Plan, RatedCharge
from meterspec.pricing import rate_checked_plan
from meterspec.quantity import EXACT, format_quantity

__all__ = [
    "ALLOWANCE_DIGITS",
    "COUNTERS",
    "ODD_DIGITS",
    "exact_decimal",
    "prorate_charges",
    "prorated_allowance",
    "rate_segment",
    "round_to_odd",
    "written_amount",
]

COUNTERS: frozenset[str] = frozenset({"sum", "count"})
"""Aggregations whose quantity grows with the time covered (MS-PRO-004); the others are
levels (MS-PRO-003), as in MS-PRJ-002."""
ODD_DIGITS = 30
"""Fraction digits of a prorated precise amount whose exact value has no finite decimal form
(rounded to odd, MS-PRO-005)."""
ALLOWANCE_DIGITS = 20
"""Fraction digits of a prorated included quantity, rounded half to even (MS-PRO-004)."""


def exact_decimal(value: Fraction) -> Decimal | None:
    """The value as a Decimal when its decimal expansion is finite, else None."""
    denominator, twos, fives = value.denominator, 0, 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator != 1:
        return None
    digits = max(twos, fives)
    scaled = value.numerator * 10**digits // value.denominator
    return Decimal(scaled).scaleb(-digits, context=EXACT)


def round_to_odd(value: Fraction, digits: int = ODD_DIGITS) -> Decimal:
    """Cut toward zero after `digits` fraction digits; when something non-zero was cut and the
    last kept digit is 0 or 5, move it one unit away from zero (MS-PRO-005). The result is
    never a tie of a coarser rounding that `value` is not, and lies on its side of each."""
    magnitude = abs(value)
    kept, rest = divmod(magnitude.numerator * 10**digits, magnitude.denominator)
    if rest and kept % 5 == 0:
        kept += 1
    return Decimal(-kept if value < 0 else kept).scaleb(-digits, context=EXACT)


def written_amount(value: Fraction) -> str:
    """`precise` of a prorated amount: exact when its expansion is finite, otherwise rounded
    to odd at 30 fraction digits (MS-PRO-005)."""
    exact = exact_decimal(value)
    return format_money(round_to_odd(value) if exact is None else exact)


def prorated_allowance(included: Decimal, fraction: Fraction) -> Decimal:
    """MS-PRO-004: includedQuantity x f, rounded half to even to 20 fraction digits."""
    scaled = Fraction(included) * fraction * 10**ALLOWANCE_DIGITS
    return Decimal(round(scaled)).scaleb(-ALLOWANCE_DIGITS, context=EXACT)


def _amount(value: Fraction, currency_code: str) -> Amount:
    """The line's amount: the exact value written per MS-PRO-005, rounded once."""
    precise = written_amount(value)
    return Amount(precise, format_money(round_money(Decimal(precise), currency_code)))


def prorate_charges(plan: Plan, fraction: Fraction, kinds: Mapping[str, str]) -> Plan:
    """The plan whose full-period rating gives a counter's lines of the segment: each counter
    charge with its included quantity prorated and its minimum and maximum removed (they are
    applied, prorated and exact, by rate_segment)."""
    charges = []
    for charge in plan.charges:
        if charge.unit is not None and kinds.get(charge.unit) in COUNTERS:
            included = charge.included_quantity
            allowance = None if included is None else format_quantity(
                prorated_allowance(Decimal(included), fraction))
            charge = msgspec.structs.replace(charge, included_quantity=allowance,
                                             minimum_amount=None, maximum_amount=None)
        charges.append(charge)
    return msgspec.structs.replace(plan, charges=charges)


def rate_segment(plan: Plan, quantities: Mapping[str, Decimal | str], fraction: Fraction,
                 kinds: Mapping[str, str]) -> list[RatedCharge]:
    """MS-PRO-002..005: the lines of a checked plan for a segment covering `fraction` of its
    period, `kinds` giving each unit's aggregation. With fraction 1 these are the lines of
    the whole period (MS-PRC-018), unchanged."""
    if fraction == 1:
        return rate_checked_plan(plan, quantities)
    whole = rate_checked_plan(plan, quantities)
    counted = rate_checked_plan(prorate_charges(plan, fraction, kinds), quantities)
    lines: list[RatedCharge] = []
    for charge, level, counter in zip(plan.charges, whole, counted, strict=True):
        if charge.unit is not None and kinds.get(charge.unit) in COUNTERS:
            exact = Fraction(Decimal(counter.subtotal))
            if charge.minimum_amount is not None:
                exact = max(exact, Fraction(Decimal(charge.minimum_amount)) * fraction)
            if charge.maximum_amount is not None:
                exact = min(exact, Fraction(Decimal(charge.maximum_amount)) * fraction)
            rated = counter
        else:
            exact = Fraction(Decimal(level.amount.precise)) * fraction
            rated = level
        lines.append(msgspec.structs.replace(rated, amount=_amount(exact, plan.currency)))
    return lines

