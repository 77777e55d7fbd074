"""Rating: a charge and a period's quantity in, the exact amount and its breakdown out (MS-PRC).

Pure functions over exact Decimals. Quantities are never rounded; amounts are exact until the
single half-even rounding of the line (MS-MNY-005), done by money.Amount.of.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from meterspec.errors import MeterspecError, Problem, pointer
from meterspec.money import Amount, Currency, currency, format_money, parse_money
from meterspec.plans import (
    Charge,
    Plan,
    RatedCharge,
    RatedTier,
    Tier,
    check_plan,
    plan_problems,
)
from meterspec.quantity import EXACT, ZERO, format_quantity, parse_quantity

__all__ = ["rate", "rate_checked_plan", "rate_plan", "rate_tiers"]


@dataclass(frozen=True)
class _Tier:
    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal


def _tiers(tiers: list[Tier]) -> list[_Tier]:
    return [_Tier(None if t.up_to is None else parse_quantity(t.up_to),
                  parse_money(t.unit_price),
                  ZERO if t.flat_fee is None else parse_money(t.flat_fee)) for t in tiers]


def _row(index: int, lower: Decimal, tier: _Tier, units: Decimal, fee: Decimal) -> RatedTier:
    amount = EXACT.add(EXACT.multiply(units, tier.unit_price), fee)
    return RatedTier(tier=index, from_=format_quantity(lower),
                     to=None if tier.up_to is None else format_quantity(tier.up_to),
                     units=format_quantity(units), unit_price=format_money(tier.unit_price),
                     flat_fee=format_money(fee), amount=format_money(amount))


def _graduated(billable: Decimal, tiers: list[_Tier]) -> list[RatedTier]:
    """MS-PRC-009: units in tier i = clamp(q, lower, upTo) - lower; the first tier has no lower
    clamp, so a negative quantity is priced there (MS-PRC-011). A tier's flat fee is charged
    when it holds a positive number of units."""
    rows: list[RatedTier] = []
    lower = ZERO
    for index, tier in enumerate(tiers):
        if index > 0 and billable <= lower:
            break
        top = billable if tier.up_to is None else min(billable, tier.up_to)
        units = EXACT.subtract(top, lower)
        if not units.is_zero():
            rows.append(_row(index, lower, tier, units, tier.flat_fee if units > 0 else ZERO))
        if tier.up_to is None:
            break
        lower = tier.up_to
    return rows


def _volume(billable: Decimal, tiers: list[_Tier]) -> list[RatedTier]:
    """MS-PRC-010: the one tier with lower < q <= upTo prices every unit; q <= 0 enters no tier
    and is priced at the first tier's unit price without its flat fee (MS-PRC-011)."""
    if billable.is_zero():
        return []
    if billable < 0:
        return [_row(0, ZERO, tiers[0], billable, ZERO)]
    lower = ZERO
    for index, tier in enumerate(tiers):
        if tier.up_to is None or billable <= tier.up_to:
            return [_row(index, lower, tier, billable, tier.flat_fee)]
        lower = tier.up_to
    raise AssertionError("checked tiers end with an open tier")  # pragma: no cover


def rate_tiers(model: str, billable: Decimal, tiers: list[Tier]) -> list[RatedTier]:
    """The breakdown rows of a graduated or volume tier list for a billable quantity."""
    parsed = _tiers(tiers)
    return _graduated(billable, parsed) if model == "graduated" else _volume(billable, parsed)


def _ceil_packages(billable: Decimal, size: Decimal) -> Decimal:
    """MS-PRC-012: ceil(max(0, q) / size), exactly (no division that could round)."""
    if billable <= 0:
        return ZERO
    whole = EXACT.divide_int(billable, size)
    if not EXACT.remainder(billable, size).is_zero():
        whole = EXACT.add(whole, Decimal(1))
    return whole


def _quantity_of(value: Decimal | str, path: str) -> Decimal:
    """A quantity given as text (checked per MS-QTY-001/002) or as an exact finite Decimal
    (e.g. a reading's sum, which may exceed the input bounds). Never a float."""
    if isinstance(value, str):
        return parse_quantity(value, path)
    if isinstance(value, Decimal) and value.is_finite():
        return value
    raise MeterspecError.single("wrong-type", path, "a quantity must be a decimal string or a "
                                "finite Decimal (never a float)", "MS-QTY-003")


def _rate(charge: Charge, quantity: Decimal, found: Currency) -> RatedCharge:
    if charge.model == "flat":
        assert charge.amount is not None
        fee = parse_money(charge.amount)
        return RatedCharge(charge_id=charge.id, model="flat", currency=found.code,
                           subtotal=format_money(fee), amount=Amount.of(fee, found))
    # MS-PRC-005: the included quantity absorbs the first positive units, never a negative.
    included = ZERO if charge.included_quantity is None else parse_quantity(
        charge.included_quantity)
    used = min(max(quantity, ZERO), included)
    billable = EXACT.subtract(quantity, used)
    rows: list[RatedTier] | None = None
    packages: str | None = None
    if charge.model == "package":
        assert charge.package_size is not None and charge.package_price is not None
        count = _ceil_packages(billable, parse_quantity(charge.package_size))
        packages = format_quantity(count)
        subtotal = EXACT.multiply(count, parse_money(charge.package_price))
    else:
        if charge.model == "per-unit":  # MS-PRC-008: one open tier
            assert charge.unit_price is not None
            rows = _graduated(billable, [_Tier(None, parse_money(charge.unit_price), ZERO)])
        else:
            assert charge.tiers is not None
            rows = rate_tiers(charge.model, billable, charge.tiers)
        subtotal = ZERO
        for row in rows:
            subtotal = EXACT.add(subtotal, Decimal(row.amount))
    # MS-PRC-014: minimum, then maximum, on the exact subtotal; rounding comes after.
    amount = subtotal
    if charge.minimum_amount is not None:
        amount = max(amount, parse_money(charge.minimum_amount))
    if charge.maximum_amount is not None:
        amount = min(amount, parse_money(charge.maximum_amount))
    return RatedCharge(
        charge_id=charge.id, model=charge.model, currency=found.code, unit=charge.unit,
        quantity=format_quantity(quantity), included_quantity=format_quantity(used),
        billable_quantity=format_quantity(billable), packages=packages, tiers=rows,
        subtotal=format_money(subtotal), amount=Amount.of(amount, found))


def rate(charge: Charge, quantity: Decimal | str, currency_code: str | Currency) -> RatedCharge:
    """Rate one charge for one period's quantity of its unit (ignored by a flat charge).

    The charge is checked first (its schema, values and tiers); every problem is reported in
    one MeterspecError. The result carries the exact amount and the amount rounded half to even
    to the currency's minor units: the numbers of one invoice line (MS-PRC-016)."""
    problems: list[Problem] = []
    found: Currency | None = None
    value = ZERO
    try:
        found = currency_code if isinstance(currency_code, Currency) else currency(
            currency_code, "/currency")
    except MeterspecError as error:
        problems += error.problems
    try:
        value = _quantity_of(quantity, "/quantity")
    except MeterspecError as error:
        problems += error.problems
    # A charge's own problems do not depend on the currency: any known code will do here.
    problems += _charge_problems(charge, found.code if found else "USD")
    if problems or found is None:
        raise MeterspecError(problems)
    return _rate(charge, value, found)


def _charge_problems(charge: Charge, code: str) -> list[Problem]:
    """A lone charge is checked as the only charge of a plan, then its paths are re-rooted."""
    plan = Plan(id="charge", version=1, currency=code,
                effective_from="0001-01-01T00:00:00Z", charges=[charge])
    problems = plan_problems(plan)
    prefix = "/charges/0"
    return [Problem(p.code, p.path[len(prefix):] if p.path.startswith(prefix) else p.path,
                    p.message, p.requirement) for p in problems]


def rate_plan(plan: Plan, quantities_by_unit: Mapping[str, Decimal | str]) -> list[RatedCharge]:
    """MS-PRC-018: rate every charge of a plan for one period, in plan order. A unit missing from
    the mapping has quantity 0; units the plan does not price are ignored."""
    return rate_checked_plan(check_plan(plan), quantities_by_unit)


def rate_checked_plan(plan: Plan, quantities_by_unit: Mapping[str, Decimal | str],
                      ) -> list[RatedCharge]:
    """rate_plan for a plan its caller has already checked (check_plan), e.g. once per
    request rather than once per invoice: checking a plan costs far more than rating it."""
    found = currency(plan.currency, "/currency")
    quantities = {unit: _quantity_of(value, pointer(unit))
                  for unit, value in quantities_by_unit.items()}
    return [_rate(charge, quantities.get(charge.unit, ZERO) if charge.unit else ZERO, found)
            for charge in plan.charges]

