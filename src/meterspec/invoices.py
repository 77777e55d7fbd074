"""Invoices (MS-INV): records and a request in, one deterministic invoice per subscription and
billing period out, each line traceable to the reading and the records behind it.

    records --Aggregator over the subscription's periods--> readings of (subject, unit)
            --plan version effective at the period start--> rated charges --> Invoice

Streaming like meterspec.readings: `InvoiceBuilder.add` takes one record at a time (a bad one
raises and changes nothing), `invoices()` finishes. Memory grows with the record ids of the
billed periods, which the audit digest needs (MS-INV-005).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from meterspec.billing_periods import BillingCycle, Period, cycle_problems, periods
from meterspec.contracts import Aggregation, AggregationRequest, MeterRecord, Window
from meterspec.errors import MeterspecError, Problem, pointer, walk
from meterspec.ids import digest_id, reading_id
from meterspec.money import Amount, total
from meterspec.plans import (
    Plan,
    RatedCharge,
    plan_semantic_problems,
    plan_value_problems,
    rated_charge_semantic_problems,
    rated_charge_value_problems,
    select_plan,
)
from meterspec.pricing import rate_checked_plan
from meterspec.readings import Aggregator, parse_record, reading_parameter
from meterspec.schema import schema_problems
from meterspec.timestamps import Micros, format_timestamp, parse_timestamp

__all__ = ["Invoice", "InvoiceBuilder", "InvoiceLine", "InvoiceRequest", "LineUsage",
           "build_invoices", "invoice_id", "records_digest", "request_problems", "revision"]

MAX_PERIODS = 120


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True,
            kw_only=True):
    pass


class UsageRule(_Wire, frozen=True):
    """How a unit's quantity for a period is read (MS-INV-002): an aggregation and its
    parameter, as in an AggregationRequest."""

    aggregation: Aggregation
    dimension: str | None = None
    scale: int | None = None


class Subscription(_Wire, frozen=True):
    """A subject billed on a plan, on its own cycle and time zone (MS-INV-001)."""

    subject: str
    plan_id: str = msgspec.field(name="planID")
    cycle: BillingCycle


class InvoiceRequest(_Wire, frozen=True, kw_only=True):
    """Everything an invoice depends on besides the records (MS-INV-001)."""

    workspace_id: str = msgspec.field(name="workspaceID")
    universe_id: str = msgspec.field(name="universeID")
    at: str
    periods: int = 1
    plans: list[Plan]
    usage: dict[str, UsageRule]
    subscriptions: list[Subscription]


class PlanRef(_Wire, frozen=True):
    id: str
    version: int


class LineUsage(_Wire, frozen=True):
    """The audit trail of one line (MS-INV-005): the reading it was rated from and a digest of
    the ids of the records inside the period; `carriedIn` names the records whose level a
    time-weighted average carried into the period."""

    reading_id: str = msgspec.field(name="readingID")
    aggregation: Aggregation
    record_count: int = msgspec.field(name="recordCount")
    records_digest: str = msgspec.field(name="recordsDigest")
    carried_in: list[str] | None = msgspec.field(default=None, name="carriedIn")


class InvoiceLine(_Wire, frozen=True):
    """One charge of the plan rated for the period, with its audit trail (absent for flat)."""

    rated: RatedCharge
    usage: LineUsage | None = None


class Invoice(_Wire, frozen=True):
    """One subject's bill for one billing period (MS-INV-003)."""

    id: str
    revision: str
    workspace_id: str = msgspec.field(name="workspaceID")
    universe_id: str = msgspec.field(name="universeID")
    subject: str
    period: Window
    cycle: BillingCycle
    plan: PlanRef
    currency: str
    lines: list[InvoiceLine]
    subtotal: Amount
    total: Amount


# ------------------------------------------------------------------ identifiers


def invoice_id(workspace: str, universe: str, subject: str, period: Window) -> str:
    """MS-INV-004: the same subject and period always name the same invoice."""
    return digest_id("inv_", ("meterspec/invoice/v1", workspace, universe, subject,
                              period.start, period.end))


def records_digest(record_ids: Iterable[str]) -> str:
    """MS-INV-005: the digest of a multiset of record ids, in code-point order."""
    return digest_id("rds_", ("meterspec/records/v1", *sorted(record_ids)))


def revision(invoice: Invoice) -> str:
    """MS-INV-006: names the invoice's numbers; any change of a quantity, an amount or the
    records behind a line changes it."""
    fields = ["meterspec/invoice-revision/v1", invoice.id, invoice.plan.id,
              str(invoice.plan.version), invoice.currency, str(len(invoice.lines))]
    for line in invoice.lines:
        rated, usage = line.rated, line.usage
        fields += [rated.charge_id, rated.quantity or "", rated.billable_quantity or "",
                   rated.amount.precise, rated.amount.rounded,
                   "" if usage is None else str(usage.record_count),
                   "" if usage is None else usage.records_digest,
                   "" if usage is None or usage.carried_in is None
                   else records_digest(usage.carried_in)]
    fields += [invoice.subtotal.precise, invoice.subtotal.rounded, invoice.total.precise,
               invoice.total.rounded]
    return digest_id("rev_", fields)


# ------------------------------------------------------------------ request checks


def _prefixed(problems: Iterable[Problem], prefix: str) -> list[Problem]:
    return [Problem(p.code, prefix + p.path, p.message, p.requirement) for p in problems]


def request_value_problems(document: object, reported: set[str]) -> list[Problem]:
    """Timestamp, quantity and amount problems of a raw request the schema cannot state."""
    problems: list[Problem] = []
    for path, value in walk(document, ("at",), ""):
        if isinstance(value, str) and path not in reported:
            try:
                parse_timestamp(value, path)
            except MeterspecError as error:
                problems += error.problems
    for path, plan in walk(document, ("plans", "*"), ""):
        inner = {p[len(path):] for p in reported if p.startswith(path + "/")}
        problems += _prefixed(plan_value_problems(plan, inner), path)
    for path, cycle in walk(document, ("subscriptions", "*", "cycle"), ""):
        problems += _cycle_value_problems(cycle, path, reported)
    return problems


def _cycle_value_problems(cycle: object, path: str, reported: set[str]) -> list[Problem]:
    """A raw cycle's anchor date and time zone (MS-BIL-001), beside schema problems."""
    if not isinstance(cycle, dict):
        return []
    anchor_date, zone = cycle.get("anchorDate"), cycle.get("timeZone", "UTC")
    checked = BillingCycle(
        anchor_date=anchor_date if isinstance(anchor_date, str) else "2000-01-01",
        time_zone=zone if isinstance(zone, str) else "UTC")
    return [p for p in cycle_problems(checked, path) if p.path not in reported]


def _usage_problems(unit: str, rule: UsageRule) -> list[Problem]:
    """The rule's aggregation parameters, checked as an AggregationRequest would be."""
    probe = AggregationRequest(rule.aggregation, rule.dimension, rule.scale,
                               windows=[Window("1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z")])
    try:
        Aggregator(probe)
    except MeterspecError as error:
        return _prefixed(error.problems, pointer("usage", unit))
    return []


def request_semantic_problems(request: InvoiceRequest) -> list[Problem]:
    """Checks of a well-formed request: each plan, the units, the subscriptions, and that each
    billed period has an effective plan version (MS-INV-001/002, MS-PRC-003)."""
    problems: list[Problem] = []
    versions: dict[tuple[str, int], Plan] = {}
    for index, plan in enumerate(request.plans):
        problems += _prefixed(plan_semantic_problems(plan), f"/plans/{index}")
        if versions.setdefault((plan.id, plan.version), plan) != plan:
            problems.append(Problem("duplicate-item", f"/plans/{index}/version",
                                    f"plan {plan.id!r} has two different versions numbered "
                                    f"{plan.version}", "MS-PRC-003"))
    for unit, rule in request.usage.items():
        problems += _usage_problems(unit, rule)
    priced = sorted({c.unit for p in request.plans for c in p.charges if c.unit is not None})
    problems += [Problem("missing-field", pointer("usage", unit), f"unit {unit!r} is priced by "
                         "a plan but has no usage rule", "MS-INV-002")
                 for unit in priced if unit not in request.usage]
    subjects: set[str] = set()
    for index, subscription in enumerate(request.subscriptions):
        path = f"/subscriptions/{index}"
        if subscription.subject in subjects:
            problems.append(Problem("duplicate-item", f"{path}/subject", f"subject "
                                    f"{subscription.subject!r} is subscribed twice", "MS-INV-001"))
        subjects.add(subscription.subject)
        problems += cycle_problems(subscription.cycle, f"{path}/cycle")
    # The periods, and the plan version of each, only mean something once all else is right.
    return problems or _period_problems(request)


def _period_problems(request: InvoiceRequest) -> list[Problem]:
    """MS-BIL-002 (periods within the supported years) and MS-INV-001 (an effective plan
    version at each billed period's start)."""
    problems: list[Problem] = []
    at = parse_timestamp(request.at)
    for index, subscription in enumerate(request.subscriptions):
        try:
            spans = periods(subscription.cycle, at, request.periods, "/at")
        except MeterspecError as error:
            problems += error.problems
            continue
        for start, _ in spans:
            if select_plan(request.plans, subscription.plan_id, start) is None:
                problems.append(Problem(
                    "no-effective-plan", f"/subscriptions/{index}/planID", f"no version of "
                    f"plan {subscription.plan_id!r} is effective at {format_timestamp(start)}",
                    "MS-INV-001"))
                break
    return problems


def request_problems(request: InvoiceRequest) -> list[Problem]:
    """Every problem of a request built in code or decoded (MS-ERR-002)."""
    document = msgspec.to_builtins(request)
    problems = schema_problems("invoice-request", document)
    problems += request_value_problems(document, {p.path for p in problems})
    return problems or request_semantic_problems(request)


# ------------------------------------------------------------------ building


@dataclass
class _Slot:
    """One (subject, unit) of one subscription: its reading and its records per period."""

    aggregator: Aggregator
    starts: list[Micros]
    end: Micros
    ids: list[list[str]]
    carry: list[tuple[Micros, list[str]] | None] = field(default_factory=list)


@dataclass
class _Billed:
    subscription: Subscription
    spans: list[Period]
    plans: list[Plan]
    slots: dict[str, _Slot]


class InvoiceBuilder:
    """Streaming invoices for one request: add records, then take the invoices."""

    def __init__(self, request: InvoiceRequest) -> None:
        problems = request_problems(request)
        if problems:
            raise MeterspecError(problems)
        self.request = request
        at = parse_timestamp(request.at)
        self._billed: dict[str, _Billed] = {}
        for subscription in request.subscriptions:
            spans = periods(subscription.cycle, at, request.periods)
            plans = [select_plan(request.plans, subscription.plan_id, start) for start, _ in spans]
            units = {c.unit for p in plans if p for c in p.charges if c.unit is not None}
            windows = [Window(format_timestamp(s), format_timestamp(e)) for s, e in spans]
            slots = {}
            for unit in sorted(units):
                rule = request.usage[unit]
                aggregator = Aggregator(AggregationRequest(
                    rule.aggregation, rule.dimension, rule.scale, windows=windows))
                slots[unit] = _Slot(aggregator, [s for s, _ in spans], spans[-1][1],
                                    [[] for _ in spans], [None for _ in spans])
            self._billed[subscription.subject] = _Billed(
                subscription, spans, [p for p in plans if p], slots)

    def add(self, record: MeterRecord, path: str = "") -> None:
        """Add one record; MeterspecError (and no change) if it is malformed. Records of
        other tenants, subjects or units are not this request's: they are skipped."""
        instant, quantity = parse_record(record, path)
        if (record.workspace_id, record.universe_id) != (self.request.workspace_id,
                                                         self.request.universe_id):
            return
        billed = self._billed.get(record.subject)
        slot = None if billed is None else billed.slots.get(record.measurement.unit)
        if slot is None:
            return
        slot.aggregator.add(record.workspace_id, record.universe_id, record.subject,
                            record.measurement.unit, record.dimensions, instant, quantity)
        index = bisect_right(slot.starts, instant) - 1
        if index >= 0 and instant < slot.end:
            slot.ids[index].append(record.id)
        if slot.aggregator.weighted:  # MS-AGG-012: the latest record before each start
            for later in range(index + 1, len(slot.starts)):
                best = slot.carry[later]
                if best is None or instant > best[0]:
                    slot.carry[later] = (instant, [record.id])
                elif instant == best[0]:
                    best[1].append(record.id)

    def invoices(self) -> list[Invoice]:
        """One invoice per subscription and period: subscriptions in request order, periods
        oldest first (MS-INV-003)."""
        return [invoice for billed in self._billed.values() for invoice in self._finish(billed)]

    def _finish(self, billed: _Billed) -> list[Invoice]:
        request, subject = self.request, billed.subscription.subject
        readings = {unit: {r.window.start: r for r in slot.aggregator.iter_readings()}
                    for unit, slot in billed.slots.items()}
        invoices = []
        for index, ((start, end), plan) in enumerate(zip(billed.spans, billed.plans,
                                                         strict=True)):
            window = Window(format_timestamp(start), format_timestamp(end))
            quantities: dict[str, Decimal] = {}
            usages: dict[str, LineUsage] = {}
            for unit, slot in billed.slots.items():
                reading = readings[unit].get(window.start)
                rule = request.usage[unit]
                if reading is None:
                    rid = reading_id(request.workspace_id, request.universe_id, subject, unit,
                                     rule.aggregation, reading_parameter(slot.aggregator),
                                     window.start, window.end)
                    count, value = 0, None
                else:
                    rid, count, value = reading.id, reading.record_count, \
                        reading.measurement.quantity
                # MS-INV-002: no reading, or an empty min/max/latest, rates quantity 0.
                quantities[unit] = Decimal(value) if value is not None else Decimal(0)
                carry = slot.carry[index]
                usages[unit] = LineUsage(
                    reading_id=rid, aggregation=rule.aggregation, record_count=count,
                    records_digest=records_digest(slot.ids[index]),
                    carried_in=sorted(carry[1]) if carry else None)
            lines = [InvoiceLine(rated=rated, usage=usages.get(rated.unit or ""))
                     for rated in rate_checked_plan(plan, quantities)]
            invoices.append(_invoice(request, billed.subscription, window, plan, lines))
        return invoices


def _invoice(request: InvoiceRequest, subscription: Subscription, window: Window, plan: Plan,
             lines: list[InvoiceLine]) -> Invoice:
    zero = Amount("0", "0")
    return with_totals(Invoice(
        id=invoice_id(request.workspace_id, request.universe_id, subscription.subject, window),
        revision="", workspace_id=request.workspace_id, universe_id=request.universe_id,
        subject=subscription.subject, period=window, cycle=subscription.cycle,
        plan=PlanRef(id=plan.id, version=plan.version), currency=plan.currency, lines=lines,
        subtotal=zero, total=zero))


def with_totals(invoice: Invoice) -> Invoice:
    """The invoice with its subtotal, total (MS-INV-003, MS-MNY-007) and revision (MS-INV-006)
    computed from its lines."""
    subtotal = total(line.rated.amount for line in invoice.lines)
    draft = msgspec.structs.replace(invoice, subtotal=subtotal, total=subtotal)
    return msgspec.structs.replace(draft, revision=revision(draft))


def build_invoices(request: InvoiceRequest, records: Iterable[MeterRecord]) -> list[Invoice]:
    """The invoices of a request; MeterspecError listing every bad record (paths
    /records/<index>/...) rather than a partial result."""
    builder = InvoiceBuilder(request)
    problems: list[Problem] = []
    for index, record in enumerate(records):
        try:
            builder.add(record, f"/records/{index}")
        except MeterspecError as error:
            problems += error.problems
    if problems:
        raise MeterspecError(problems)
    return builder.invoices()


# ------------------------------------------------------------------ checking an invoice


def invoice_value_problems(document: object, reported: set[str],
                           lines: tuple[tuple[str, ...], ...] = (("lines", "*", "rated"),),
                           ) -> list[Problem]:
    """The period's timestamps and the currencies of the rated charges at `lines`, beyond
    the schema."""
    problems: list[Problem] = []
    for fields in (("period", "start"), ("period", "end")):
        for path, value in walk(document, fields, ""):
            if isinstance(value, str) and path not in reported:
                try:
                    canonical = format_timestamp(parse_timestamp(value, path))
                except MeterspecError as error:
                    problems += error.problems
                    continue
                if canonical != value:  # MS-INV-003: output timestamps are canonical
                    problems.append(Problem("not-canonical", path, f"{value!r} is not "
                                            f"{canonical!r}, its canonical form", "MS-INV-003"))
    for where in lines:
        for path, rated in walk(document, where, ""):
            inner = {p[len(path):] for p in reported if p.startswith(path + "/")}
            problems += _prefixed(rated_charge_value_problems(rated, inner), path)
    return problems


def line_problems(line: InvoiceLine, currency_code: str, path: str) -> list[Problem]:
    """A line's numbers agree (MS-PRC-017) and it is in the invoice's currency."""
    problems = _prefixed(rated_charge_semantic_problems(line.rated), f"{path}/rated")
    if line.rated.currency != currency_code:
        problems.append(Problem("inconsistent-amount", f"{path}/rated/currency",
                                "every line is in the invoice's currency", "MS-INV-007"))
    return problems


def invoice_problems(invoice: Invoice) -> list[Problem]:
    """MS-INV-007: an invoice's numbers agree with each other, so one implementation can check
    another's: each line (MS-PRC-017) in the invoice's currency, the subtotal is the total of
    the lines (MS-MNY-007), the total equals the subtotal, and the id and revision are the
    ones its content gives. It cannot check the lines against records it does not hold."""
    problems: list[Problem] = []
    for index, line in enumerate(invoice.lines):
        problems += line_problems(line, invoice.currency, f"/lines/{index}")
    expected = total(line.rated.amount for line in invoice.lines)
    for name, value in (("subtotal", invoice.subtotal), ("total", invoice.total)):
        if value != expected:
            problems.append(Problem("inconsistent-amount", f"/{name}", f"the {name} must be "
                                    f"{expected.precise} precise, {expected.rounded} rounded: "
                                    "the sum of the lines", "MS-INV-007"))
    if invoice.id != invoice_id(invoice.workspace_id, invoice.universe_id, invoice.subject,
                                invoice.period):
        problems.append(Problem("inconsistent-amount", "/id", "the id is not the one the "
                                "tenant, subject and period give", "MS-INV-004"))
    if not problems and invoice.revision != revision(invoice):
        problems.append(Problem("inconsistent-amount", "/revision", "the revision is not the "
                                "one the invoice's numbers give", "MS-INV-006"))
    return problems
