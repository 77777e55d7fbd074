"""Price plans and rated charges: the wire Structs, their checks, version selection (MS-PRC).

Like meterspec.contracts, the Structs hold wire values (decimal strings, timestamps as text) so
they round-trip to the same JSON; schemas/plan.schema.json and rated-charge.schema.json are the
source of truth they agree with. meterspec.pricing rates them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from decimal import Decimal
from heapq import heappop, heappush
from typing import Literal, TypeVar

import msgspec

from meterspec.errors import MeterspecError, Problem, walk
from meterspec.money import Amount, currency, parse_money, round_money
from meterspec.quantity import EXACT, ZERO, parse_quantity
from meterspec.schema import schema_problems
from meterspec.timestamps import Instant, parse_timestamp

Model = Literal["per-unit", "graduated", "volume", "package", "flat"]
"""The pricing models of a charge (MS-PRC-004)."""
TIERED: frozenset[str] = frozenset({"graduated", "volume"})
"""The models priced by a tier list."""
T = TypeVar("T")
"""The type of a value parsed from a plan's text."""


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Tier(_Wire, frozen=True):
    """One tier: units in (previous upTo, upTo] (MS-PRC-007); upTo null = no upper bound."""

    up_to: str | None = msgspec.field(name="upTo")
    """Wire `upTo`: the tier's inclusive upper bound in billable units, above the previous tier's;
    null only for the open last tier (MS-PRC-006, MS-PRC-007)."""
    unit_price: str = msgspec.field(name="unitPrice")
    """Wire `unitPrice`: the price of each unit in the tier, an amount in the plan's currency; may
    be negative."""
    flat_fee: str | None = msgspec.field(default=None, name="flatFee")
    """Wire `flatFee`: an amount charged once when the tier is entered; default 0."""


class Charge(_Wire, frozen=True, kw_only=True):
    """One priced thing of a plan: a model and the fields that model uses (MS-PRC-004)."""

    id: str
    """Names the charge and its invoice line; unique within the plan (MS-PRC-001)."""
    model: Model
    """`per-unit`, `graduated`, `volume`, `package` or `flat`; it decides which other fields the
    charge has (MS-PRC-004)."""
    unit: str | None = None
    """The measurement unit the charge prices; every model but `flat`."""
    unit_price: str | None = msgspec.field(default=None, name="unitPrice")
    """Wire `unitPrice`: the price per billable unit of a per-unit charge (MS-PRC-008)."""
    tiers: list[Tier] | None = None
    """The tier list of a graduated or volume charge, ordered by `upTo` (MS-PRC-006)."""
    package_size: str | None = msgspec.field(default=None, name="packageSize")
    """Wire `packageSize`: the units in one package, above 0 (MS-PRC-012)."""
    package_price: str | None = msgspec.field(default=None, name="packagePrice")
    """Wire `packagePrice`: the price of each started package."""
    amount: str | None = None
    """A flat charge's amount, billed once per period whatever the usage (MS-PRC-013)."""
    included_quantity: str | None = msgspec.field(default=None, name="includedQuantity")
    """Wire `includedQuantity`: usage not billed each period, at least 0, default 0; it absorbs the
    first positive units (MS-PRC-005)."""
    minimum_amount: str | None = msgspec.field(default=None, name="minimumAmount")
    """Wire `minimumAmount`: the least the charge bills per period, a commitment that applies at
    zero usage too (MS-PRC-014)."""
    maximum_amount: str | None = msgspec.field(default=None, name="maximumAmount")
    """Wire `maximumAmount`: the most the charge bills per period (MS-PRC-014)."""


class Plan(_Wire, frozen=True, kw_only=True):
    """One version of a plan, effective over [effectiveFrom, effectiveTo) (MS-PRC-001/002)."""

    id: str
    """The plan's id, shared by all its versions."""
    version: int
    """The version number, from 1; with the id it names one document (MS-PRC-003)."""
    currency: str
    """The ISO 4217 code every amount of the plan is in (MS-MNY-001)."""
    effective_from: str = msgspec.field(name="effectiveFrom")
    """Wire `effectiveFrom`: the first instant this version is effective (MS-PRC-002)."""
    effective_to: str | None = msgspec.field(default=None, name="effectiveTo")
    """Wire `effectiveTo`: the first instant it no longer is (exclusive); absent means no end."""
    charges: list[Charge]
    """The charges, in invoice-line order; at least one."""


class RatedTier(_Wire, frozen=True, kw_only=True):
    """One row of a rated charge's breakdown (MS-PRC-016): the tier's bounds as defined, the
    units it priced, its unit price, the flat fee charged (0 when not entered) and the exact
    amount units x unitPrice + flatFee."""

    tier: int
    """The tier's 0-based index in the charge's list."""
    from_: str = msgspec.field(name="from")
    """Wire `from`: the tier's lower bound (exclusive): the previous `upTo`, or 0."""
    to: str | None
    """The tier's `upTo` (inclusive), or None for the open last tier."""
    units: str
    """The billable units priced in this tier, canonical."""
    unit_price: str = msgspec.field(name="unitPrice")
    """Wire `unitPrice`: the tier's unit price, canonical."""
    flat_fee: str = msgspec.field(name="flatFee")
    """Wire `flatFee`: the fee charged: the tier's fee when entered, else 0."""
    amount: str
    """units * unitPrice + flatFee, exact and canonical."""


class RatedCharge(_Wire, frozen=True, kw_only=True):
    """One charge rated for one period: an invoice line's numbers (MS-PRC-016)."""

    charge_id: str = msgspec.field(name="chargeID")
    """Wire `chargeID`: the id of the charge rated."""
    model: Model
    """The charge's pricing model."""
    currency: str
    """The plan's currency code."""
    unit: str | None = None
    """The unit priced; absent for a flat charge."""
    quantity: str | None = None
    """The period's quantity as read (MS-INV-002), canonical; absent for a flat charge."""
    included_quantity: str | None = msgspec.field(default=None, name="includedQuantity")
    """Wire `includedQuantity`: the part of the quantity the allowance absorbed (MS-PRC-005)."""
    billable_quantity: str | None = msgspec.field(default=None, name="billableQuantity")
    """Wire `billableQuantity`: the quantity minus the included part: what the model prices."""
    packages: str | None = None
    """The number of packages billed, ceil(max(0, billable) / packageSize); package charges only."""
    tiers: list[RatedTier] | None = None
    """The breakdown: one row per tier holding a non-zero number of units, in tier order."""
    subtotal: str
    """The model's exact amount, before the minimum and maximum (MS-PRC-014)."""
    amount: Amount
    """The amount after the minimum, maximum and any proration: precise and rounded once
    (MS-MNY-004)."""


# ------------------------------------------------------------------ value checks

_Check = Callable[[object, str], object]

# Where a plan holds quantities, amounts and timestamps ('*' = every list item). These checks
# run on the raw document even beside schema problems (MS-ERR-002).
_PLAN_VALUES: tuple[tuple[tuple[str, ...], _Check], ...] = (
    (("effectiveFrom",), parse_timestamp),
    (("effectiveTo",), parse_timestamp),
    (("currency",), currency),
    (("charges", "*", "includedQuantity"), parse_quantity),
    (("charges", "*", "packageSize"), parse_quantity),
    (("charges", "*", "tiers", "*", "upTo"), parse_quantity),
    (("charges", "*", "unitPrice"), parse_money),
    (("charges", "*", "packagePrice"), parse_money),
    (("charges", "*", "amount"), parse_money),
    (("charges", "*", "minimumAmount"), parse_money),
    (("charges", "*", "maximumAmount"), parse_money),
    (("charges", "*", "tiers", "*", "unitPrice"), parse_money),
    (("charges", "*", "tiers", "*", "flatFee"), parse_money),
)


def _value_problems(document: object, reported: set[str],
                    where: tuple[tuple[tuple[str, ...], _Check], ...]) -> list[Problem]:
    problems: list[Problem] = []
    for fields, check in where:
        for path, value in walk(document, fields, ""):
            # Strings only: a value of another type is the schema's wrong-type (or, for upTo,
            # the null that means "no bound").
            if not isinstance(value, str) or path in reported:
                continue
            try:
                check(value, path)
            except MeterspecError as error:
                problems.extend(error.problems)
    return problems


def plan_value_problems(document: object, reported: set[str]) -> list[Problem]:
    """Quantity, amount, timestamp and currency problems in a raw plan document that its
    schema cannot state (MS-QTY-002, MS-MNY-001, MS-MNY-002, MS-TIME-001)."""
    return _value_problems(document, reported, _PLAN_VALUES)


def rated_charge_value_problems(document: object, reported: set[str]) -> list[Problem]:
    """A rated charge's currency must be a known one (MS-MNY-001)."""
    return _value_problems(document, reported, ((("currency",), currency),))


# ------------------------------------------------------------------ plan checks


def _parsed(parse: Callable[[object], T], text: str | None) -> T | None:
    """The parsed value, or None when absent or unparseable: the rule checks run beside the
    value checks, which report a bad value; a rule that needs it is skipped (MS-ERR-002)."""
    if text is None:
        return None
    try:
        return parse(text)
    except MeterspecError:
        return None


def _quantity(text: str | None) -> Decimal | None:
    return _parsed(parse_quantity, text)


def _money(text: str | None) -> Decimal | None:
    return _parsed(parse_money, text)


def tier_problems(tiers: list[Tier], path: str) -> list[Problem]:
    """MS-PRC-006: upTo values are positive and strictly increasing, and exactly the last tier
    is open (upTo null). Every offending upTo is reported, once, with every reason."""
    problems: list[Problem] = []
    previous = ZERO
    last = len(tiers) - 1
    for index, tier in enumerate(tiers):
        reasons: list[str] = []
        if tier.up_to is None:
            if index != last:
                reasons.append("only the last tier may be open (upTo null)")
        elif (bound := _quantity(tier.up_to)) is not None:
            if bound <= previous:
                reasons.append("upTo must be positive" if index == 0 else
                               "upTo must be greater than the previous tier's upTo")
            if index == last:
                reasons.append("the last tier must be open (upTo null) so that every quantity "
                               "has a price")
            previous = bound
        if reasons:
            problems.append(Problem("invalid-tiers", f"{path}/{index}/upTo", "; ".join(reasons),
                                    "MS-PRC-006"))
    return problems


def charge_problems(charge: Charge, path: str = "") -> list[Problem]:
    """Checks of one charge that need values, not only shape (MS-PRC-005/006/012/014).
    A value that does not parse is skipped here: plan_value_problems reports it."""
    problems: list[Problem] = []
    if charge.tiers is not None:
        problems += tier_problems(charge.tiers, f"{path}/tiers")
    size = _quantity(charge.package_size)
    if size is not None and size <= 0:
        problems.append(Problem("out-of-range", f"{path}/packageSize",
                                "a package size must be greater than 0", "MS-PRC-012"))
    included = _quantity(charge.included_quantity)
    if included is not None and included < 0:
        problems.append(Problem("out-of-range", f"{path}/includedQuantity",
                                "an included quantity cannot be negative", "MS-PRC-005"))
    low, high = _money(charge.minimum_amount), _money(charge.maximum_amount)
    if low is not None and high is not None and low > high:
        problems.append(Problem("out-of-range", f"{path}/maximumAmount",
                                "maximumAmount must not be less than minimumAmount",
                                "MS-PRC-014"))
    return problems


def plan_semantic_problems(plan: Plan) -> list[Problem]:
    """Checks of a schema-valid plan whose values parse: effective period (MS-PRC-002), unique
    charge ids (MS-PRC-001), tiers, package sizes, included quantities and bounds."""
    problems: list[Problem] = []
    start = _parsed(parse_timestamp, plan.effective_from)
    end = _parsed(parse_timestamp, plan.effective_to)
    if start is not None and end is not None and end <= start:
        problems.append(Problem("invalid-window", "/effectiveTo", "effectiveTo must be after "
                                "effectiveFrom", "MS-PRC-002"))
    seen: set[str] = set()
    for index, charge in enumerate(plan.charges):
        if charge.id in seen:
            problems.append(Problem("duplicate-item", f"/charges/{index}/id",
                                    f"charge id {charge.id!r} is used twice", "MS-PRC-001"))
        seen.add(charge.id)
        problems += charge_problems(charge, f"/charges/{index}")
    return sorted(problems, key=lambda p: (p.path, p.code))


def plan_problems(plan: Plan) -> list[Problem]:
    """Every problem of a plan built in code or decoded: its schema, its values, then the
    checks that need a well-formed plan (MS-ERR-002)."""
    document = msgspec.to_builtins(plan)
    problems = schema_problems("plan", document)
    problems += plan_value_problems(document, {p.path for p in problems})
    if problems:
        return sorted(problems, key=lambda p: (p.path, p.code))
    return plan_semantic_problems(plan)


def check_plan(plan: Plan) -> Plan:
    """The plan itself, or MeterspecError with every problem in it."""
    problems = plan_problems(plan)
    if problems:
        raise MeterspecError(problems)
    return plan


# ------------------------------------------------------------------ version selection


class PlanVersions:
    """MS-PRC-003 for many windows: each plan's versions as a timeline of which version is
    chosen from each effectiveFrom or effectiveTo on (a version is effective over
    [effectiveFrom, effectiveTo), MS-PRC-002), so choosing costs a bisection however many
    versions a plan has."""

    def __init__(self, versions: Iterable[Plan]) -> None:
        by_id: dict[str, dict[int, Plan]] = {}
        for plan in versions:
            numbers = by_id.setdefault(plan.id, {})
            if numbers.setdefault(plan.version, plan) != plan:
                raise MeterspecError.single(
                    "duplicate-item", "", f"plan {plan.id!r} has two different versions "
                    f"numbered {plan.version}", "MS-PRC-003")
        self._timelines = {plan_id: _timeline(list(numbers.values()))
                           for plan_id, numbers in by_id.items()}

    def select(self, plan_id: str, at: Instant) -> Plan | None:
        """The version of `plan_id` that rates a window starting at `at`, None if none."""
        bounds, chosen = self._timelines.get(plan_id, ([], []))
        index = bisect_right(bounds, at) - 1
        return chosen[index] if index >= 0 else None


def _timeline(versions: list[Plan]) -> tuple[list[Instant], list[Plan | None]]:
    """(bounds, chosen): chosen[i] is effective over [bounds[i], bounds[i + 1]): of the versions
    effective there, the latest effectiveFrom, then the highest version."""
    spans = sorted(((parse_timestamp(p.effective_from),
                     None if p.effective_to is None else parse_timestamp(p.effective_to), i)
                    for i, p in enumerate(versions)), key=lambda span: span[0])
    bounds = sorted({t for start, end, _ in spans for t in (start, end) if t is not None})
    chosen: list[Plan | None] = []
    started: list[tuple[Instant, int, Instant | None, int]] = []  # a heap, greatest first
    taken = 0
    for bound in bounds:
        while taken < len(spans) and spans[taken][0] <= bound:
            start, end, i = spans[taken]
            heappush(started, (-start, -versions[i].version, end, i))
            taken += 1
        while started and started[0][2] is not None and started[0][2] <= bound:
            heappop(started)  # ended: never effective again
        chosen.append(versions[started[0][3]] if started else None)
    return bounds, chosen


def select_plan(versions: Iterable[Plan], plan_id: str, window_start: str | Instant) -> Plan | None:
    """MS-PRC-003: the version of plan `plan_id` that rates a window is the one effective at
    the window's start: of the versions effective then, the one with the latest effectiveFrom,
    then the highest version. A version that starts inside the window applies from the next
    window on. None when no version is effective."""
    at = (parse_timestamp(window_start, "windowStart") if isinstance(window_start, str)
          else window_start)
    return PlanVersions(p for p in versions if p.id == plan_id).select(plan_id, at)


# ------------------------------------------------------------------ rated-charge checks


def rated_charge_semantic_problems(rated: RatedCharge) -> list[Problem]:
    """MS-PRC-017: a rated charge's numbers agree with each other: billable = quantity -
    included, each row's amount = units x unitPrice + flatFee, the subtotal of a tiered model is
    the sum of its rows, and the rounded amount is the precise one rounded half to even."""
    problems: list[Problem] = []

    def disagree(path: str, message: str) -> None:
        problems.append(Problem("inconsistent-amount", path, message, "MS-PRC-017"))

    number = Decimal
    if (rated.quantity is not None and rated.included_quantity is not None
            and rated.billable_quantity is not None
            and number(rated.billable_quantity) != EXACT.subtract(
                number(rated.quantity), number(rated.included_quantity))):
        disagree("/billableQuantity", "billableQuantity is not quantity - includedQuantity")
    if rated.tiers is not None:
        total = ZERO
        for index, row in enumerate(rated.tiers):
            expected = EXACT.add(EXACT.multiply(number(row.units), number(row.unit_price)),
                                 number(row.flat_fee))
            if number(row.amount) != expected:
                disagree(f"/tiers/{index}/amount", "amount is not units x unitPrice + flatFee")
            total = EXACT.add(total, number(row.amount))
        if number(rated.subtotal) != total:
            disagree("/subtotal", "subtotal is not the sum of the tier amounts")
    found = _parsed(currency, rated.currency)  # an unknown one is a value problem
    if found is not None and number(rated.amount.rounded) != round_money(
            number(rated.amount.precise), found):
        disagree("/amount/rounded", "rounded is not precise rounded half to even to the "
                 "currency's minor units")
    return problems
