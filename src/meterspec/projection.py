"""Projection (MS-PRJ): what a period in progress will cost if usage goes on as it has so far.

An estimate for dashboards and alerts, never a bill: the so-far numbers are an invoice built
from the records before `asOf`, and the projected quantity of each unit follows its aggregation:
counters (sum, count) grow at their average rate so far; a time-weighted average keeps its
last level to the period's end; levels and extremes (min, max, latest, unique-count) stay as
they are. A projected counter is rounded half to even to PROJECTION_SCALE fraction digits (a
rate is rarely an exact decimal), as a time-weighted average is rounded to its scale.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction

import msgspec

from meterspec.contracts import Aggregation, MeterRecord, Window
from meterspec.errors import MeterspecError, Problem, walk
from meterspec.invoices import (
    Invoice,
    InvoiceBuilder,
    InvoiceLine,
    InvoiceRequest,
    PlanRef,
    invoice_value_problems,
)
from meterspec.money import Amount, currency, total
from meterspec.plans import Plan, PlanVersions
from meterspec.proration import rate_segment
from meterspec.quantity import EXACT, format_quantity
from meterspec.readings import parse_record
from meterspec.timestamps import format_timestamp, parse_timestamp

__all__ = ["PROJECTION_SCALE", "Projection", "project"]

PROJECTION_SCALE = 6
"""Fraction digits of a projected quantity, rounded once half to even (MS-PRJ-002)."""
GROWING: frozenset[str] = frozenset({"sum", "count"})
"""Aggregations whose quantity is extrapolated to the whole period; the others keep their value so
far (MS-PRJ-002)."""


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True,
            kw_only=True):
    pass


class ProjectedLine(_Wire, frozen=True, kw_only=True):
    """One charge so far and projected to the period's end (MS-PRJ-003)."""

    charge_id: str = msgspec.field(name="chargeID")
    """Wire `chargeID`: the charge the line rates."""
    unit: str | None = None
    """The unit priced; absent for a flat charge."""
    aggregation: Aggregation | None = None
    """The aggregation reading the unit; absent for a flat charge."""
    quantity: str | None = None
    """The quantity so far, from the records strictly before `asOf` (MS-PRJ-001)."""
    projected_quantity: str | None = msgspec.field(default=None, name="projectedQuantity")
    """Wire `projectedQuantity`: the quantity extrapolated to the whole period (MS-PRJ-002)."""
    amount: Amount
    """The amount the quantity so far rates to."""
    projected_amount: Amount = msgspec.field(name="projectedAmount")
    """Wire `projectedAmount`: the projected quantity rated with the same plan version."""
    service_period: Window | None = msgspec.field(default=None, name="servicePeriod")
    """Wire `servicePeriod`: the segment the line covers, when it is not the whole period
    (MS-PRO-009)."""
    plan: PlanRef | None = None
    """The plan version rating the line, when the period has several segments."""


class Projection(_Wire, frozen=True):
    """A subject's period in progress, so far and projected (MS-PRJ-003)."""

    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the tenant projected."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the tenant's universe."""
    subject: str
    """The subject projected."""
    period: Window
    """The billing period holding `asOf`, canonical bounds."""
    as_of: str = msgspec.field(name="asOf")
    """Wire `asOf`: the instant of the estimate (the request's `at`); records from it on are
    ignored."""
    plan: PlanRef
    """The plan version rating the period."""
    currency: str
    """The plan's currency code."""
    lines: list[ProjectedLine]
    """Per charge, the amount so far and projected, in plan order (MS-PRJ-003)."""
    total: Amount
    """The total of the lines' amounts so far (MS-MNY-007)."""
    projected_total: Amount = msgspec.field(name="projectedTotal")
    """Wire `projectedTotal`: the total of the projected amounts; an estimate, never billed."""


def projected_quantity(aggregation: str, so_far: Decimal, elapsed: int, length: int) -> Decimal:
    """MS-PRJ-002: a counter at its average rate so far (nothing elapsed: as it is); any
    other aggregation as it is."""
    if aggregation not in GROWING or elapsed <= 0 or elapsed >= length:
        return so_far
    # One rounding, of the exact rational: round() of a Fraction is half to even.
    exact = Fraction(so_far) * length / elapsed
    units = round(exact * 10**PROJECTION_SCALE)
    return Decimal(units).scaleb(-PROJECTION_SCALE, context=EXACT).normalize(EXACT) \
        if units else Decimal(0)


def project(request: InvoiceRequest, records: Iterable[MeterRecord]) -> list[Projection]:
    """MS-PRJ-001: one projection per subscription for its period holding `request.at` (the
    `asOf` instant), from the records strictly before it. MeterspecError lists every bad
    record (paths /records/<index>/...) and a request with `periods` other than 1."""
    if request.periods != 1:
        raise MeterspecError.single("invalid-request", "/periods", "a projection is of the "
                                    "one period in progress", "MS-PRJ-001")
    builder = InvoiceBuilder(request)
    as_of = parse_timestamp(request.at)
    problems: list[Problem] = []
    for index, record in enumerate(records):
        path = f"/records/{index}"
        try:
            instant, _ = parse_record(record, path)
            if instant < as_of:
                builder.add(record, path)
        except MeterspecError as error:
            problems += error.problems
    if problems:
        raise MeterspecError(problems)
    return projections(request, builder.invoices())


def projections(request: InvoiceRequest, so_far: list[Invoice]) -> list[Projection]:
    """The projection of each invoice built from the records before `request.at`."""
    as_of = parse_timestamp(request.at)
    versions = PlanVersions(request.plans)
    numbered = {(plan.id, plan.version): plan for plan in request.plans}
    kinds: dict[str, str] = {unit: rule.aggregation for unit, rule in request.usage.items()}
    return [_projection(versions, numbered, kinds, invoice, as_of) for invoice in so_far]


def _segments(invoice: Invoice) -> list[list[InvoiceLine]]:
    """The invoice's lines, one list per segment (consecutive lines of one window and plan,
    MS-PRO-006)."""
    found: list[list[InvoiceLine]] = []
    for line in invoice.lines:
        if found and (found[-1][0].service_period, found[-1][0].plan) == (
                line.service_period, line.plan):
            found[-1].append(line)
        else:
            found.append([line])
    return found


def _projection(versions: PlanVersions, numbered: dict[tuple[str, int], Plan],
                kinds: dict[str, str], invoice: Invoice, as_of: int) -> Projection:
    period_start = parse_timestamp(invoice.period.start)
    period_end = parse_timestamp(invoice.period.end)
    lines: list[ProjectedLine] = []
    for segment in _segments(invoice):
        window, ref = segment[0].service_period, segment[0].plan
        if ref is None:
            plan = versions.select(invoice.plan.id, period_start if window is None
                                   else parse_timestamp(window.start))
        else:
            plan = numbered.get((ref.id, ref.version))
        assert plan is not None  # the builder billed this segment with it
        start, end = ((period_start, period_end) if window is None else
                      (parse_timestamp(window.start), parse_timestamp(window.end)))
        quantities: dict[str, Decimal] = {}
        for line in segment:
            unit, usage = line.rated.unit, line.usage
            if unit is not None and usage is not None and line.rated.quantity is not None:
                # MS-PRJ-002 over the line's own window (MS-PRO-009)
                quantities[unit] = projected_quantity(usage.aggregation,
                                                      Decimal(line.rated.quantity),
                                                      as_of - start, end - start)
        fraction = Fraction(end - start, period_end - period_start)
        projected = rate_segment(plan, quantities, fraction, kinds)
        lines += [ProjectedLine(
            charge_id=line.rated.charge_id, unit=line.rated.unit,
            aggregation=None if line.usage is None else line.usage.aggregation,
            quantity=line.rated.quantity,
            projected_quantity=None if line.rated.unit is None
            else format_quantity(quantities[line.rated.unit]),
            amount=line.rated.amount, projected_amount=rated.amount,
            service_period=line.service_period, plan=line.plan)
            for line, rated in zip(segment, projected, strict=True)]
    return Projection(
        workspace_id=invoice.workspace_id, universe_id=invoice.universe_id,
        subject=invoice.subject, period=invoice.period, as_of=format_timestamp(as_of),
        plan=invoice.plan, currency=invoice.currency, lines=lines, total=invoice.total,
        projected_total=total(line.projected_amount for line in lines))


def projection_value_problems(document: object, reported: set[str]) -> list[Problem]:
    """The period's and asOf's timestamps and the currency, beyond the schema."""
    problems = invoice_value_problems(document, reported, ())
    for path, value in walk(document, ("asOf",), ""):
        if isinstance(value, str) and path not in reported:
            try:
                parse_timestamp(value, path)
            except MeterspecError as error:
                problems += error.problems
    for path, value in walk(document, ("currency",), ""):
        if path not in reported:
            try:
                currency(value, path)
            except MeterspecError as error:
                problems += error.problems
    return problems


def projection_problems(projection: Projection) -> list[Problem]:
    """MS-PRJ-003: asOf lies in the period, each amount is rounded half to even from its
    precise value, and both totals are the sums of their lines (MS-MNY-007)."""
    problems: list[Problem] = []
    try:  # values that do not parse are the value checks' to report (MS-ERR-002)
        start, end, as_of = (parse_timestamp(projection.period.start),
                             parse_timestamp(projection.period.end),
                             parse_timestamp(projection.as_of))
        found = currency(projection.currency)
    except MeterspecError:
        return problems
    if not start <= as_of < end:
        problems.append(Problem("invalid-window", "/asOf", "asOf must lie in the period",
                                "MS-PRJ-001"))
    for index, line in enumerate(projection.lines):
        for name, amount in (("amount", line.amount), ("projectedAmount", line.projected_amount)):
            if Amount.of(Decimal(amount.precise), found) != amount:
                problems.append(Problem("inconsistent-amount", f"/lines/{index}/{name}",
                                        "rounded must be precise rounded half to even",
                                        "MS-MNY-005"))
    for name, value, parts in (
            ("total", projection.total, [line.amount for line in projection.lines]),
            ("projectedTotal", projection.projected_total,
             [line.projected_amount for line in projection.lines])):
        if value != total(parts):
            problems.append(Problem("inconsistent-amount", f"/{name}", f"{name} is the sum of "
                                    "the lines", "MS-MNY-007"))
    return problems
