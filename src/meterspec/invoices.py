"""Invoices (MS-INV): records and a request in, one deterministic invoice per subscription and
billing period out, each line traceable to the reading and the records behind it.

    records --Aggregator over the subscription's periods--> readings of (subject, unit)
            --plan version effective at the period start--> rated charges --> Invoice

Streaming like meterspec.readings: `InvoiceBuilder.add` takes one record at a time (a bad one
raises and changes nothing), `invoices()` finishes. Memory grows with the record ids of the
billed periods, which the audit digest needs (MS-INV-005).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import cached_property, lru_cache
from itertools import pairwise
from typing import NamedTuple, cast

import msgspec

from meterspec.accounts import Group, SourceUsage, account_reading_id, group_problems, groups
from meterspec.billing_periods import BillingCycle, cycle_problems, periods
from meterspec.contracts import (
    Aggregation,
    AggregationRequest,
    MeterReading,
    MeterRecord,
    Window,
)
from meterspec.errors import MeterspecError, Problem, pointer, walk
from meterspec.ids import digest_id, encode_fields, reading_ids
from meterspec.money import Amount, total
from meterspec.plans import (
    Plan,
    PlanVersions,
    RatedCharge,
    plan_semantic_problems,
    plan_value_problems,
    rated_charge_semantic_problems,
    rated_charge_value_problems,
)
from meterspec.proration import rate_segment, written_amount
from meterspec.quantity import EXACT, ZERO, format_quantity
from meterspec.readings import Aggregator, parse_record, reading_parameter
from meterspec.schema import schema_problems
from meterspec.subscriptions import (
    Subscription,
    has_lifecycle,
    lifecycle_problems,
    segments,
    terms,
)
from meterspec.timestamps import Instant, format_timestamp, parse_timestamp

__all__ = ["Invoice", "InvoiceBuilder", "InvoiceLine", "InvoiceRequest", "LineUsage",
           "Subscription", "build_invoices", "invoice_id", "records_digest",
           "request_problems", "revision"]

MAX_PERIODS = 120
"""The most periods one request may bill per subscription (MS-BIL-004)."""


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True,
            kw_only=True):
    pass


class UsageRule(_Wire, frozen=True):
    """How a unit's quantity for a period is read (MS-INV-002): an aggregation and its
    parameter, as in an AggregationRequest."""

    aggregation: Aggregation
    """How the unit's records become a line's quantity: an aggregation of MS-AGG-002."""
    dimension: str | None = None
    """The dimension counted, for unique-count only (MS-AGG-016)."""
    scale: int | None = None
    """Fraction digits of a time-weighted average, for time-weighted-avg only (MS-AGG-015)."""


class InvoiceRequest(_Wire, frozen=True, kw_only=True):
    """Everything an invoice depends on besides the records (MS-INV-001)."""

    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the tenant billed; only its records are read."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the tenant's universe."""
    at: str
    """A timestamp: the last period billed is the one holding it (MS-BIL-004)."""
    periods: int = 1
    """How many consecutive periods to bill, 1 to 120, ending with the one holding `at`."""
    plans: list[Plan]
    """Every version of every plan the subscriptions use (MS-PRC-003 picks the one effective at each
    period)."""
    usage: dict[str, UsageRule]
    """Per priced unit, the rule reading its quantity (MS-INV-002)."""
    subscriptions: list[Subscription]
    """The subjects billed, each once, with their plan and cycle (MS-INV-001, MS-SUB-001)."""


class PlanRef(_Wire, frozen=True):
    """The plan and version an invoice was rated with."""
    id: str
    """The plan's id."""
    version: int
    """The version of the plan that rated the invoice or line (MS-PRC-003)."""


class LineUsage(_Wire, frozen=True):
    """The audit trail of one line (MS-INV-005): the reading it was rated from and a digest of
    the ids of the records inside the period; `carriedIn` names the records whose level a
    time-weighted average carried into the period."""

    reading_id: str = msgspec.field(name="readingID")
    """Wire `readingID`: the MS-ID-003 id of the reading the line was rated from, computed even
    without records."""
    aggregation: Aggregation
    """The aggregation that read the quantity (the usage rule's)."""
    record_count: int = msgspec.field(name="recordCount")
    """Wire `recordCount`: how many of the group's records lie inside the line's window."""
    records_digest: str = msgspec.field(name="recordsDigest")
    """Wire `recordsDigest`: `rds_` + digest of those records' ids in code-point order
    (MS-INV-005)."""
    carried_in: list[str] | None = msgspec.field(default=None, name="carriedIn")
    """Wire `carriedIn`: for a time-weighted average, the sorted ids of the records that set the
    opening level (MS-AGG-012); absent when none."""
    sources: list[SourceUsage] | None = None
    """For an account's line, each source group's reading, in the order listed (MS-ACC-003)."""


class InvoiceLine(_Wire, frozen=True):
    """One charge of the plan rated for the period, with its audit trail (absent for flat);
    on a segmented period, the segment it covers and the plan that rated it (MS-PRO-006)."""

    rated: RatedCharge
    """The rated charge: quantities and amounts of one charge (MS-PRC-016)."""
    usage: LineUsage | None = None
    """The audit trail of the quantity (MS-INV-005); None for a flat charge."""
    service_period: Window | None = msgspec.field(default=None, name="servicePeriod")
    """Wire `servicePeriod`: the segment the line covers, when it is not the whole period
    (MS-PRO-006)."""
    plan: PlanRef | None = None
    """The plan version that rated the line, when the period has several segments (MS-PRO-006)."""


class Invoice(_Wire, frozen=True):
    """One subject's bill for one billing period (MS-INV-003)."""

    id: str
    """`inv_` + digest of the tenant, subject and period: the same for every rebuild
    (MS-INV-004)."""
    revision: str
    """`rev_` + digest of the numbers and the records behind them: changes with any of them
    (MS-INV-006)."""
    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the tenant billed."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the tenant's universe."""
    subject: str
    """The subject billed."""
    period: Window
    """The billing period, canonical bounds."""
    cycle: BillingCycle
    """The billing cycle, all three members written out (defaults included)."""
    plan: PlanRef
    """The plan version of the period's first segment."""
    currency: str
    """The plan's ISO 4217 currency code."""
    lines: list[InvoiceLine]
    """One line per charge of the plan (per segment), in plan order (MS-INV-003)."""
    subtotal: Amount
    """The lines' total: precise and rounded amounts each summed, never rounded again
    (MS-MNY-007)."""
    total: Amount
    """The subtotal plus invoice-level items; this version has none, so it equals the subtotal."""


# ------------------------------------------------------------------ identifiers


def invoice_id(workspace: str, universe: str, subject: str, period: Window) -> str:
    """MS-INV-004: the same subject and period always name the same invoice."""
    return _digest("inv_", ("meterspec/invoice/v1", workspace, universe, subject,
                            period.start, period.end))


def records_digest(record_ids: Iterable[str]) -> str:
    """MS-INV-005: the digest of a multiset of record ids, in code-point order."""
    return digest_id("rds_", ("meterspec/records/v1", *sorted(record_ids)))


def _extended(line: InvoiceLine) -> bool:
    return (line.service_period is not None or line.plan is not None
            or (line.usage is not None and line.usage.sources is not None))


def revision(invoice: Invoice) -> str:
    """MS-INV-006: names the invoice's numbers; any change of a quantity, an amount or the
    records behind a line changes it. An invoice with segmented or account lines names their
    windows, plans and sources too (MS-PRO-007, `v2`); any other keeps the `v1` revision."""
    extended = any(_extended(line) for line in invoice.lines)
    tag = "meterspec/invoice-revision/v2" if extended else "meterspec/invoice-revision/v1"
    fields = [tag, invoice.id, invoice.plan.id, str(invoice.plan.version), invoice.currency,
              str(len(invoice.lines))]
    for line in invoice.lines:
        rated, usage = line.rated, line.usage
        fields += [rated.charge_id, rated.quantity or "", rated.billable_quantity or "",
                   rated.amount.precise, rated.amount.rounded,
                   "" if usage is None else str(usage.record_count),
                   "" if usage is None else usage.records_digest,
                   "" if usage is None or usage.carried_in is None
                   else records_digest(usage.carried_in)]
        if extended:
            window, plan = line.service_period, line.plan
            sources = [] if usage is None or usage.sources is None else usage.sources
            fields += ["" if window is None else window.start,
                       "" if window is None else window.end,
                       "" if plan is None else plan.id,
                       "" if plan is None else str(plan.version), str(len(sources))]
            for source in sources:
                fields += [source.workspace_id, source.universe_id, source.subject,
                           source.quantity, str(source.record_count), source.records_digest]
    fields += [invoice.subtotal.precise, invoice.subtotal.rounded, invoice.total.precise,
               invoice.total.rounded]
    return _digest("rev_", fields)


def _digest(prefix: str, fields: Iterable[str]) -> str:
    """digest_id (MS-ID-001) with each field's encoding cached: the invoices of a request
    repeat most of their fields (tenant, subject, period bounds, amounts, digests)."""
    return prefix + hashlib.sha256(b"".join(map(_encoded, fields))).hexdigest()[:32]


@lru_cache(maxsize=4096)
def _encoded(field: str) -> bytes:
    return encode_fields((field,))


# ------------------------------------------------------------------ request checks


def _prefixed(problems: Iterable[Problem], prefix: str) -> list[Problem]:
    return [Problem(p.code, prefix + p.path, p.message, p.requirement) for p in problems]


# Where a request holds timestamps: its `at` and each subscription's life (MS-SUB-001).
_TIMESTAMPS: tuple[tuple[str, ...], ...] = (
    ("at",), ("subscriptions", "*", "start"), ("subscriptions", "*", "end"),
    ("subscriptions", "*", "trialEnd"), ("subscriptions", "*", "cancellation", "requestedAt"),
    ("subscriptions", "*", "planChanges", "*", "at"))


def request_value_problems(document: object, reported: set[str]) -> list[Problem]:
    """Timestamp, quantity and amount problems of a raw request the schema cannot state."""
    problems: list[Problem] = []
    for fields in _TIMESTAMPS:
        for path, value in walk(document, fields, ""):
            if isinstance(value, str) and path not in reported:
                try:
                    parse_timestamp(value, path)
                except MeterspecError as error:
                    problems += error.problems
    below = _below_items(reported, 2)
    for path, plan in walk(document, ("plans", "*"), ""):
        problems += _prefixed(plan_value_problems(plan, below.get(path, set())), path)
    for path, cycle in walk(document, ("subscriptions", "*", "cycle"), ""):
        problems += _cycle_value_problems(cycle, path, reported)
    return problems


def _below_items(reported: set[str], tokens: int) -> dict[str, set[str]]:
    """The reported paths below each item whose path has `tokens` reference tokens (a plan,
    /plans/3, is 2), relative to it: each item's checks then cost its own problems, not every
    problem of the document."""
    found: dict[str, set[str]] = {}
    for path in reported:
        parts = path.split("/", tokens + 1)
        if len(parts) == tokens + 2:
            found.setdefault("/".join(parts[:-1]), set()).add("/" + parts[-1])
    return found


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
    try:
        _probe(rule)
    except MeterspecError as error:
        return _prefixed(error.problems, pointer("usage", unit))
    return []


def request_semantic_problems(request: InvoiceRequest,
                              schedules: Schedules | None = None) -> list[Problem]:
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
        problems += lifecycle_problems(subscription, path)
    if any(s.sources is not None for s in request.subscriptions):  # MS-ACC-001
        seen = {(p.code, p.path) for p in problems}
        problems += [p for p in group_problems(
            ((f"/subscriptions/{i}", s.sources, s.subject)
             for i, s in enumerate(request.subscriptions)),
            request.workspace_id, request.universe_id) if (p.code, p.path) not in seen]
    # The periods, and the plan version of each, only mean something once all else is right.
    return problems or _period_problems(request, schedules or Schedules(request))


def _period_problems(request: InvoiceRequest, schedules: Schedules) -> list[Problem]:
    """MS-BIL-002 (periods within the supported years) and MS-INV-001 (an effective plan
    version at each billed period's start)."""
    problems: list[Problem] = []
    for index, subscription in enumerate(request.subscriptions):
        if has_lifecycle(subscription):
            try:
                schedules.schedule_of(subscription)
            except MeterspecError as error:  # paths below the subscription, or /at
                problems += [p if p.path == "/at" else Problem(
                    p.code, f"/subscriptions/{index}{p.path}", p.message, p.requirement)
                    for p in error.problems]
            continue
        try:
            start = schedules.first_unrated(subscription.cycle, subscription.plan_id)
        except MeterspecError as error:
            problems += error.problems
            continue
        if start is not None:
            problems.append(Problem(
                "no-effective-plan", f"/subscriptions/{index}/planID", f"no version of "
                f"plan {subscription.plan_id!r} is effective at {format_timestamp(start)}",
                "MS-INV-001"))
    return problems


def request_problems(request: InvoiceRequest,
                     schedules: Schedules | None = None) -> list[Problem]:
    """Every problem of a request built in code or decoded (MS-ERR-002)."""
    document = msgspec.to_builtins(request)
    problems = schema_problems("invoice-request", document)
    problems += request_value_problems(document, {p.path for p in problems})
    return problems or request_semantic_problems(request, schedules)


# ------------------------------------------------------------------ billed periods


class Schedule(NamedTuple):
    """What the subscriptions with the same terms share: their billed segments as windows and
    as reading-id input, the plan version rating each, the billed period (invoice) and the
    fraction of it each covers (MS-SUB-007, MS-PRO-001), the units those versions price, per
    unit an empty Aggregator over the windows (resolved once, then copied), and how an instant
    finds its window: `cuts`, every window bound in order, and `intervals`, the window of each
    interval between two cuts (-1 for a gap; None when intervals are windows)."""

    windows: list[Window]
    """The billed segments, oldest first: the windows readings are taken over."""
    encoded: list[bytes]
    """Each window's bounds as reading-id input (MS-ID-003), encoded once."""
    plans: list[Plan]
    """The plan version rating each window."""
    units: frozenset[str]
    """The units those plan versions price."""
    aggregators: dict[str, Aggregator]
    """Per unit, an empty Aggregator over the windows, copied for each group."""
    periods: list[Window]
    """The billed period (invoice) each window belongs to."""
    fractions: list[Fraction]
    """The fraction of its period each window covers (MS-PRO-001)."""
    cuts: list[int]
    """Every window bound as ns since the epoch, in order: where an instant's interval is found."""
    intervals: list[int] | None
    """The window of each interval between two cuts (-1 for a gap), or None when the intervals are
    the windows."""
    positions: list[int] | None
    """The interval each window is, or None when the intervals are the windows."""

    def aggregator(self, unit: str, rule: UsageRule) -> Aggregator:
        """An empty aggregator reading `unit` over the windows (MS-INV-002)."""
        template = self.aggregators.get(unit)
        if template is None:
            template = self.aggregators[unit] = Aggregator(AggregationRequest(
                rule.aggregation, rule.dimension, rule.scale, windows=self.windows))
        return template.fresh()

    def interval_of(self, window: int) -> int:
        """The index of the interval between cuts that a window is."""
        return window if self.positions is None else self.positions[window]


class Schedules:
    """The billed periods of a request's subscriptions, computed once per distinct cycle, and
    the plan versions rating them, chosen once per distinct (cycle, plan): checking a request
    and billing it cost in proportion to the request, not to subscriptions x periods x plans.
    A subscription with a life of its own (MS-SUB) has its segments computed once per
    distinct set of terms."""

    def __init__(self, request: InvoiceRequest) -> None:
        self._request = request
        self._bounds: dict[BillingCycle, list[int] | tuple[Problem, ...]] = {}
        self._unrated: dict[tuple[BillingCycle, str], Instant | None] = {}
        self._terms: dict[object, Schedule | tuple[Problem, ...]] = {}
        self.schedule = lru_cache(maxsize=256)(self._schedule)
        """The Schedule of one set of subscription terms, cached."""

    @cached_property
    def _versions(self) -> PlanVersions:
        return PlanVersions(self._request.plans)

    def bounds(self, cycle: BillingCycle) -> list[int]:
        """The starts of the billed periods, then the end of the last (MS-BIL-004): a list,
        not an array of 64-bit integers, which holds nanoseconds only up to year 2262
        (MS-TIME-003 needs years 1 to 9999)."""
        found = self._bounds.get(cycle)
        if found is None:
            try:
                spans = periods(cycle, parse_timestamp(self._request.at),
                                self._request.periods, "/at")
                found = [start for start, _ in spans] + [spans[-1][1]]
            except MeterspecError as error:
                found = error.problems
            self._bounds[cycle] = found
        if isinstance(found, tuple):
            raise MeterspecError(found)
        return found

    def first_unrated(self, cycle: BillingCycle, plan_id: str) -> Instant | None:
        """The first billed period start at which no version of the plan is effective."""
        key = (cycle, plan_id)
        if key not in self._unrated:
            starts = self.bounds(cycle)[:-1]
            self._unrated[key] = next(
                (s for s in starts if self._versions.select(plan_id, s) is None), None)
        return self._unrated[key]

    def schedule_of(self, subscription: Subscription) -> Schedule:
        """The subscription's schedule; MeterspecError with its period problems (paths below
        the subscription, or /at) when a segment has no plan version or one currency too
        many (MS-SUB-007)."""
        if not has_lifecycle(subscription):
            return self.schedule(subscription.cycle, subscription.plan_id)
        key = terms(subscription)
        found = self._terms.get(key)
        if found is None:
            try:
                found = self._lifecycle_schedule(subscription)
            except MeterspecError as error:
                found = error.problems
            self._terms[key] = found
        if not isinstance(found, Schedule):
            raise MeterspecError(found)
        return found

    def _schedule(self, cycle: BillingCycle, plan_id: str) -> Schedule:
        bounds = self.bounds(cycle)
        windows = [Window(format_timestamp(s), format_timestamp(e)) for s, e in pairwise(bounds)]
        plans = [self._versions.select(plan_id, start) for start in bounds[:-1]]
        assert None not in plans  # checked by first_unrated
        chosen = cast(list[Plan], plans)
        units = frozenset(c.unit for p in chosen for c in p.charges if c.unit is not None)
        return Schedule(windows, [encode_fields((w.start, w.end)) for w in windows], chosen,
                        units, {}, windows, [Fraction(1)] * len(windows), bounds, None, None)

    def _lifecycle_schedule(self, subscription: Subscription) -> Schedule:
        """MS-SUB-005..007: the segments of the requested periods the subscription bills."""
        spans = list(pairwise(self.bounds(subscription.cycle)))
        found = segments(subscription, spans)
        problems: dict[tuple[str, str], Problem] = {}  # once per code and member
        plans: list[Plan] = []
        currencies: dict[int, str] = {}
        for segment in found:
            plan = self._versions.select(segment.plan_id, segment.start)
            if plan is None:
                problems.setdefault(("no-effective-plan", segment.named_by), Problem(
                    "no-effective-plan", segment.named_by, f"no version of plan "
                    f"{segment.plan_id!r} is effective at {format_timestamp(segment.start)}",
                    "MS-SUB-007"))
                continue
            plans.append(plan)
            code = currencies.setdefault(segment.period, plan.currency)
            if code != plan.currency:
                problems.setdefault(("invalid-value", segment.named_by), Problem(
                    "invalid-value", segment.named_by, f"a period is billed in one currency: "
                    f"{plan.currency} after {code}", "MS-SUB-007"))
        if problems:
            raise MeterspecError(problems.values())
        windows = [Window(format_timestamp(g.start), format_timestamp(g.end)) for g in found]
        period_windows = [Window(format_timestamp(spans[g.period][0]),
                                 format_timestamp(spans[g.period][1])) for g in found]
        fractions = [Fraction(g.end - g.start, spans[g.period][1] - spans[g.period][0])
                     for g in found]
        cuts = sorted({t for g in found for t in (g.start, g.end)})
        starts = {g.start: index for index, g in enumerate(found)}
        intervals = [starts.get(cut, -1) for cut in cuts[:-1]]
        positions = [index for index, window in enumerate(intervals) if window >= 0]
        units = frozenset(c.unit for p in plans for c in p.charges if c.unit is not None)
        return Schedule(windows, [encode_fields((w.start, w.end)) for w in windows], plans,
                        units, {}, period_windows, fractions, cuts, intervals, positions)


# ------------------------------------------------------------------ building


@dataclass
class _Slot:
    """One (group, unit) with records: its aggregator, the ids of its records per window and,
    for a time-weighted average, the records at the latest instant of each interval between
    window bounds and of the time before the first (index -1), which carry levels into later
    windows (MS-AGG-012)."""

    aggregator: Aggregator
    ids: dict[int, list[str]] = field(default_factory=dict)
    latest: dict[int, tuple[Instant, list[str]]] = field(default_factory=dict)

    def merge(self, other: _Slot) -> None:
        """The slot of both record sets: aggregators merged, ids joined (the digest sorts
        them), the latest records of each interval compared by instant."""
        self.aggregator.merge(other.aggregator)
        for index, ids in other.ids.items():
            self.ids.setdefault(index, []).extend(ids)
        for index, (instant, ids) in other.latest.items():
            best = self.latest.get(index)
            if best is None or instant > best[0]:
                self.latest[index] = (instant, list(ids))
            elif instant == best[0]:
                best[1].extend(ids)

    def carried(self, count: int) -> list[tuple[Instant, list[str]] | None]:
        """Per interval, the records at the latest instant before its start."""
        found: list[tuple[Instant, list[str]] | None] = []
        for index in range(-1, count - 1):
            found.append(self.latest.get(index, found[-1] if found else None))
        return found


@dataclass
class _Billed:
    """A subscription being billed: where its windows are (`cuts`, `intervals`: Schedule's),
    the groups it bills (one, or an account's sources, MS-ACC-001) and per group its slots."""

    subscription: Subscription
    cuts: list[int]
    intervals: list[int] | None
    groups: list[Group]
    slots: list[dict[str, _Slot]]

    def empty(self) -> _Billed:
        return _Billed(self.subscription, self.cuts, self.intervals, self.groups,
                       [{} for _ in self.groups])


_NO_RECORDS = records_digest(())
_Column = tuple[str, UsageRule, list[tuple[_Slot | None, Callable[[bytes], str],
                                          dict[str, MeterReading],
                                          list[tuple[Instant, list[str]] | None]]]]


class InvoiceBuilder:
    """Streaming invoices for one request: add records, then take the invoices. A record costs
    O(log periods); an invoice of a subject without records costs a few digests."""

    def __init__(self, request: InvoiceRequest) -> None:
        self._schedules = Schedules(request)
        problems = request_problems(request, self._schedules)
        if problems:
            raise MeterspecError(problems)
        self.request = request
        """The request being billed (already checked)."""
        self._parameters = {unit: reading_parameter(_probe(rule))
                            for unit, rule in request.usage.items()}
        self._kinds = {unit: rule.aggregation for unit, rule in request.usage.items()}
        self._plans = {id(plan): plan for plan in request.plans}
        self._rated = lru_cache(maxsize=1024)(self._rate)
        self._billed: dict[str, _Billed] = {}
        tenant = (request.workspace_id, request.universe_id)
        for subscription in request.subscriptions:
            billed = groups(subscription.sources, *tenant, subscription.subject)
            if has_lifecycle(subscription):
                schedule = self._schedules.schedule_of(subscription)
                cuts, intervals = schedule.cuts, schedule.intervals
            else:
                cuts, intervals = self._schedules.bounds(subscription.cycle), None
            self._billed[subscription.subject] = _Billed(subscription, cuts, intervals,
                                                         billed, [{} for _ in billed])
        # A billing account's groups are found by their triple; without accounts, a record is
        # the request's tenant's or nobody's (MS-EVT-002) and its subject finds its bill.
        self._routes: dict[Group, tuple[_Billed, int]] | None = None
        if any(s.sources is not None for s in request.subscriptions):
            self._routes = {group: (billed, index) for billed in self._billed.values()
                            for index, group in enumerate(billed.groups)}

    def add(self, record: MeterRecord, path: str = "") -> None:
        """Add one record; MeterspecError (and no change) if it is malformed. Records of
        groups the request does not bill (other tenants, subjects, units) are skipped."""
        instant, quantity = parse_record(record, path)
        self.add_parsed(record, instant, quantity)

    def add_parsed(self, record: MeterRecord, instant: Instant, quantity: Decimal) -> None:
        """add() of a record already parsed (meterspec.readings.parse_record's instant and
        quantity): the CLI parses each record once, to count its identity, then adds it."""
        if self._routes is None:
            if (record.workspace_id, record.universe_id) != (self.request.workspace_id,
                                                             self.request.universe_id):
                return
            billed = self._billed.get(record.subject)
            if billed is None:
                return
            source = 0
        else:
            route = self._routes.get((record.workspace_id, record.universe_id, record.subject))
            if route is None:
                return
            billed, source = route
        unit = record.measurement.unit
        slots = billed.slots[source]
        slot = slots.get(unit)
        if slot is None:
            schedule = self._schedules.schedule_of(billed.subscription)
            if unit not in schedule.units:
                return
            slot = slots[unit] = _Slot(schedule.aggregator(unit, self.request.usage[unit]))
        slot.aggregator.add(record.workspace_id, record.universe_id, record.subject, unit,
                            record.dimensions, instant, quantity)
        index = bisect_right(billed.cuts, instant) - 1
        count = len(billed.cuts) - 1
        if 0 <= index < count:
            window = index if billed.intervals is None else billed.intervals[index]
            if window >= 0:
                slot.ids.setdefault(window, []).append(record.id)
        if slot.aggregator.weighted and index < count - 1:
            best = slot.latest.get(index)
            if best is None or instant > best[0]:
                slot.latest[index] = (instant, [record.id])
            elif instant == best[0]:
                best[1].append(record.id)

    def invoices(self) -> list[Invoice]:
        """One invoice per subscription and billed period: subscriptions in request order,
        periods oldest first (MS-INV-003, MS-SUB-005)."""
        return list(self.iter_invoices())

    def iter_invoices(self, first: int = 0, last: int | None = None) -> Iterator[Invoice]:
        """invoices(), one at a time, so a writer need not hold them all (12 000 000 at the
        documented maximum); of the subscriptions [first, last) only, for a writer of one
        block (meterspec.parallel)."""
        for billed in itertools.islice(self._billed.values(), first, last):
            yield from self._finish(billed)

    def fresh(self) -> InvoiceBuilder:
        """An empty builder of the same request, sharing its checked schedules (a forked
        reader of one range, meterspec.parallel, starts from one)."""
        empty = copy.copy(self)
        empty._billed = {subject: billed.empty() for subject, billed in self._billed.items()}
        if self._routes is not None:
            empty._routes = {group: (billed, index) for billed in empty._billed.values()
                             for index, group in enumerate(billed.groups)}
        return empty

    def slots(self) -> dict[str, list[dict[str, _Slot]]]:
        """What the added records made: per subject, per group it bills and per unit, the
        aggregator and the record ids (picklable: meterspec.parallel moves them between
        processes)."""
        return {subject: billed.slots for subject, billed in self._billed.items()
                if any(billed.slots)}

    def merge_slots(self, slots: dict[str, list[dict[str, _Slot]]]) -> None:
        """Fold in the slots of another builder of the same request (MS-AGG-005: the same
        invoices as adding its records here)."""
        for subject, theirs in slots.items():
            for mine, found in zip(self._billed[subject].slots, theirs, strict=True):
                for unit, slot in found.items():
                    if unit not in mine:
                        mine[unit] = slot
                    else:
                        mine[unit].merge(slot)

    def _rate(self, plan: int, quantities: tuple[tuple[str, str], ...], fraction: Fraction,
              ) -> list[RatedCharge]:
        """The plan's lines for the quantities over the fraction of a period (most invoices
        share a few: cached); a whole period is MS-PRC-018's rating, a part MS-PRO's."""
        return rate_segment(self._plans[plan], {u: Decimal(q) for u, q in quantities},
                            fraction, self._kinds)

    def _columns(self, billed: _Billed, schedule: Schedule) -> list[_Column]:
        """Per priced unit and per group billed: the slot, the reading ids by window, the
        readings by window start and the records carried into each window."""
        request, count = self.request, len(schedule.cuts) - 1
        columns: list[_Column] = []
        for unit in sorted(schedule.units):
            rule = request.usage[unit]
            per_group = []
            for (workspace, universe, subject), slots in zip(billed.groups, billed.slots,
                                                             strict=True):
                slot = slots.get(unit)
                ids = reading_ids(workspace, universe, subject, unit, rule.aggregation,
                                  self._parameters[unit])
                readings = {} if slot is None else {
                    r.window.start: r for r in slot.aggregator.iter_readings()}
                carried: list[tuple[Instant, list[str]] | None] = (
                    slot.carried(count) if slot is not None and slot.aggregator.weighted
                    else [None] * count)
                per_group.append((slot, ids, readings, carried))
            columns.append((unit, rule, per_group))
        return columns

    def _usage(self, billed: _Billed, schedule: Schedule, index: int, column: _Column,
               ) -> tuple[str, LineUsage]:
        """A window's quantity of one unit and its audit trail (MS-INV-005), summed over an
        account's groups (MS-ACC-002, MS-ACC-003)."""
        _, rule, per_group = column
        window = schedule.windows[index]
        position = schedule.interval_of(index)
        parts = []
        for slot, ids, readings, carried in per_group:
            reading = readings.get(window.start)
            if reading is None:
                rid, records, value = ids(schedule.encoded[index]), 0, None
            else:
                rid, records, value = (reading.id, reading.record_count,
                                       reading.measurement.quantity)
            found = None if slot is None else slot.ids.get(index)
            latest = carried[position]
            # MS-INV-002: no reading, or an empty min/max/latest, rates quantity 0.
            parts.append((rid, records, "0" if value is None else value, found or [],
                          sorted(latest[1]) if latest else None))
        if billed.subscription.sources is None:
            rid, records, value, found, carry = parts[0]
            return value, LineUsage(
                reading_id=rid, aggregation=rule.aggregation, record_count=records,
                records_digest=records_digest(found) if found else _NO_RECORDS,
                carried_in=carry)
        total_quantity = ZERO
        for part in parts:
            total_quantity = EXACT.add(total_quantity, Decimal(part[2]))
        every = [record for part in parts for record in part[3]]
        carried_in = sorted(record for part in parts for record in part[4] or ())
        sources = [SourceUsage(
            workspace_id=workspace, universe_id=universe, subject=subject, reading_id=rid,
            quantity=value, record_count=records,
            records_digest=records_digest(found) if found else _NO_RECORDS, carried_in=carry)
            for (workspace, universe, subject), (rid, records, value, found, carry)
            in zip(billed.groups, parts, strict=True)]
        return format_quantity(total_quantity), LineUsage(
            reading_id=account_reading_id([part[0] for part in parts]),
            aggregation=rule.aggregation, record_count=sum(part[1] for part in parts),
            records_digest=records_digest(every) if every else _NO_RECORDS,
            carried_in=carried_in or None, sources=sources)

    def _finish(self, billed: _Billed) -> Iterator[Invoice]:
        request, subscription = self.request, billed.subscription
        schedule = self._schedules.schedule_of(subscription)
        columns = self._columns(billed, schedule)
        segmented = {period.start for period, next_period in pairwise(schedule.periods)
                     if period == next_period}
        lines: list[InvoiceLine] = []
        for index, (window, plan) in enumerate(zip(schedule.windows, schedule.plans,
                                                   strict=True)):
            period, fraction = schedule.periods[index], schedule.fractions[index]
            quantities: list[tuple[str, str]] = []
            usages: dict[str, LineUsage] = {}
            for column in columns:
                quantity, usages[column[0]] = self._usage(billed, schedule, index, column)
                quantities.append((column[0], quantity))
            part = None if window == period else window
            ref = PlanRef(id=plan.id, version=plan.version) if period.start in segmented \
                else None
            lines += [InvoiceLine(rated=rated, usage=usages.get(rated.unit or ""),
                                  service_period=part, plan=ref)
                      for rated in self._rated(id(plan), tuple(quantities), fraction)]
            if index + 1 == len(schedule.windows) or schedule.periods[index + 1] != period:
                first = schedule.plans[index - _segment_count(schedule, index) + 1]
                yield _invoice(request, subscription, period, first, lines)
                lines = []


def _segment_count(schedule: Schedule, last: int) -> int:
    """How many windows, up to and including `last`, belong to its period."""
    count = 1
    while last - count >= 0 and schedule.periods[last - count] == schedule.periods[last]:
        count += 1
    return count


def _probe(rule: UsageRule) -> Aggregator:
    """An aggregator of the rule over one window: its parameters, checked (MS-INV-002)."""
    return Aggregator(AggregationRequest(
        rule.aggregation, rule.dimension, rule.scale,
        windows=[Window("1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z")]))


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
    for fields in (("period", "start"), ("period", "end"),
                   ("lines", "*", "servicePeriod", "start"),
                   ("lines", "*", "servicePeriod", "end")):
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
        below = _below_items(reported, len(where))
        for path, rated in walk(document, where, ""):
            problems += _prefixed(rated_charge_value_problems(rated, below.get(path, set())),
                                  path)
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
    problems += service_period_problems(invoice.period, invoice.lines)
    if invoice.id != invoice_id(invoice.workspace_id, invoice.universe_id, invoice.subject,
                                invoice.period):
        problems.append(Problem("inconsistent-amount", "/id", "the id is not the one the "
                                "tenant, subject and period give", "MS-INV-004"))
    if not problems and invoice.revision != revision(invoice):
        problems.append(Problem("inconsistent-amount", "/revision", "the revision is not the "
                                "one the invoice's numbers give", "MS-INV-006"))
    return problems


def service_period_problems(period: Window, lines: Iterable[InvoiceLine]) -> list[Problem]:
    """MS-PRO-008: each servicePeriod lies in the period and is not empty, and a prorated flat
    line's precise amount is its fee times the fraction, written per MS-PRO-005."""
    problems: list[Problem] = []
    try:  # timestamps that do not parse are the value checks' to report (MS-ERR-002)
        low, high = parse_timestamp(period.start), parse_timestamp(period.end)
    except MeterspecError:
        return problems
    for index, line in enumerate(lines):
        window = line.service_period
        if window is None:
            continue
        try:
            start, end = parse_timestamp(window.start), parse_timestamp(window.end)
        except MeterspecError:
            continue
        if not low <= start < end <= high:
            problems.append(Problem("invalid-window", f"/lines/{index}/servicePeriod", "a "
                                    "service period is a non-empty part of the invoice's "
                                    "period", "MS-PRO-008"))
            continue
        rated = line.rated
        if rated.model == "flat":
            fraction = Fraction(end - start, high - low)
            expected = written_amount(Fraction(Decimal(rated.subtotal)) * fraction)
            if rated.amount.precise != expected:
                problems.append(Problem(
                    "inconsistent-amount", f"/lines/{index}/rated/amount/precise",
                    f"a flat fee over {fraction} of the period is {expected}", "MS-PRO-008"))
    return problems
