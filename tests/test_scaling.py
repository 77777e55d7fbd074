"""Inputs chosen to be expensive cost time in proportion to their size: per-record, per-event
and per-subscription work never grows with the size of another input. Checked structurally
(calls and comparisons counted) or, where only time tells, as a generous CPU-time ratio
between an input and one ten times larger; never against absolute seconds."""

from __future__ import annotations

import builtins
import gc
import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec import aggregations, billing_periods, invoices, metering, plans, readings, windows
from meterspec.billing_periods import BillingCycle
from meterspec.contracts import (
    Aggregation,
    AggregationRequest,
    EventPayload,
    Measurement,
    MeasurementSpec,
    MeteringConfig,
    MeterRecord,
    Window,
)
from meterspec.invoices import (
    MAX_PERIODS,
    Invoice,
    InvoiceBuilder,
    InvoiceRequest,
    PlanRef,
    Subscription,
    UsageRule,
    request_problems,
    request_value_problems,
)
from meterspec.metering import Meter
from meterspec.money import Amount
from meterspec.plans import Charge, Plan, PlanVersions
from meterspec.projection import projections
from meterspec.quantity import format_quantity
from meterspec.readings import Aggregator, aggregate
from meterspec.reconcile import rebuild_requests
from meterspec.timestamps import format_timestamp, parse_timestamp

BASE = parse_timestamp("2024-01-01T00:00:00Z")
MINUTE = 60_000_000_000  # nanoseconds
AGGREGATIONS = ["sum", "count", "min", "max", "latest", "time-weighted-avg", "unique-count"]


def at(minute: int) -> str:
    return format_timestamp(BASE + minute * MINUTE)


def cpu(work: Callable[[], object]) -> float:
    """CPU seconds of one call (process time: other processes on the machine do not count)."""
    start = time.process_time()
    work()
    return time.process_time() - start


def ratio(work: Callable[[int], object], small: int, repeats: int = 5) -> float:
    """CPU time of work(10 * small) over work(small), after one warm-up run: the best of
    `repeats` runs of each, with the collector paused, so that a run of a few milliseconds is
    not decided by a garbage collection or a neighbour's cache misses."""
    work(small)

    def best(size: int) -> float:
        gc.collect()
        gc.disable()
        try:
            return min(cpu(lambda: work(size)) for _ in range(repeats))
        finally:
            gc.enable()

    return best(10 * small) / max(best(small), 1e-9)


def make_record(minute: int, quantity: str, subject: str = "s", region: str | None = None,
                ident: str = "r", unit: str = "calls") -> MeterRecord:
    return MeterRecord(id=ident, workspace_id="w", universe_id="u", subject=subject,
                       recorded_at=at(minute), measurement=Measurement(quantity, unit),
                       dimensions={} if region is None else {"region": region},
                       source_event_id=ident)


# ------------------------------------------------------------------ windows (MS-WIN, MS-AGG)

Key = tuple[str, tuple[str | None, ...], str, str]


def naive_readings(records: list[MeterRecord], request: AggregationRequest
                   ) -> dict[Key, tuple[str | None, int]]:
    """MS-AGG written as plainly as possible: every window scans every record."""
    assert request.windows is not None
    windows = [(w.start, w.end, parse_timestamp(w.start), parse_timestamp(w.end))
               for w in request.windows]
    names = request.group_by or []
    groups: dict[tuple[str, tuple[str | None, ...]], list[tuple[int, Decimal, dict[str, str]]]]
    groups = defaultdict(list)
    for r in records:
        groups[(r.subject, tuple(r.dimensions.get(n) for n in names))].append(
            (parse_timestamp(r.recorded_at), Decimal(r.measurement.quantity), r.dimensions))
    last_end = max(e for _, _, _, e in windows)
    weighted = request.aggregation == "time-weighted-avg"
    found: dict[Key, tuple[str | None, int]] = {}
    for group, points in groups.items():
        if not any(s <= t < e for t, _, _ in points for _, _, s, e in windows) and not (
                weighted and any(t < last_end for t, _, _ in points)):
            continue  # MS-AGG-017: not active
        for start, end, s, e in windows:
            inside = [(t, q, d) for t, q, d in points if s <= t < e]
            value = naive_value(request, points, inside, s, e)
            found[(group[0], group[1], start, end)] = (
                None if value is None else format_quantity(value), len(inside))
    return found


def naive_value(request: AggregationRequest, points: list[tuple[int, Decimal, dict[str, str]]],
                inside: list[tuple[int, Decimal, dict[str, str]]], s: int, e: int
                ) -> Decimal | None:
    quantities = [q for _, q, _ in inside]
    match request.aggregation:
        case "sum":
            return sum(quantities, Decimal(0))
        case "count":
            return Decimal(len(inside))
        case "min":
            return min(quantities, default=None)
        case "max":
            return max(quantities, default=None)
        case "latest":
            return max(((t, q) for t, q, _ in inside), default=(0, None))[1]
        case "unique-count":
            return Decimal(len({d["region"] for _, _, d in inside if "region" in d}))
    before = [(t, q) for t, q, _ in points if t < s]
    level = Fraction(max(before)[1]) if before else Fraction(0)
    area, since = Fraction(0), s
    for t in sorted({t for t, _, _ in inside}):
        area += level * (t - since)
        level, since = Fraction(max(q for u, q, _ in inside if u == t)), t
    area += level * (e - since)
    return Decimal(round(area / (e - s) * 10**6)).scaleb(-6)


def reading_map(records: list[MeterRecord], request: AggregationRequest
                ) -> dict[Key, tuple[str | None, int]]:
    return {(r.subject, tuple((r.group or {}).values()), r.window.start, r.window.end):
            (r.measurement.quantity, r.record_count) for r in aggregate(records, request)}


window_lists = st.lists(
    st.tuples(st.integers(0, 12), st.integers(1, 8)).map(lambda p: (p[0], p[0] + p[1])),
    min_size=1, max_size=8, unique=True)
record_lists = st.lists(
    st.tuples(st.integers(-3, 22), st.sampled_from(["0", "1", "2.5", "-1", "10", "1.0"]),
              st.sampled_from(["a", "b"]), st.sampled_from([None, "x", "y"])),
    max_size=25)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@settings(max_examples=150, deadline=None)
@given(spans=window_lists, rows=record_lists, grouped=st.booleans())
def test_overlapping_windows_match_a_naive_scan(aggregation: str, spans: list[tuple[int, int]],
                                                rows: list[tuple[int, str, str, str | None]],
                                                grouped: bool) -> None:
    """Windows that overlap, nest, touch and leave gaps: the segment states merged per window
    give what scanning every record for every window gives, empty windows of active groups
    included (MS-AGG-010, MS-AGG-017)."""
    request = AggregationRequest(
        aggregation,  # type: ignore[arg-type]
        dimension="region" if aggregation == "unique-count" else None,
        group_by=["region"] if grouped else None,
        windows=[Window(at(a), at(b)) for a, b in spans])
    records = [make_record(*row, ident=f"r{i}") for i, row in enumerate(rows)]
    assert reading_map(records, request) == naive_readings(records, request)


class Instant(int):
    """An instant that counts the comparisons made with it."""

    compared = 0

    def __lt__(self, other: int) -> bool:
        Instant.compared += 1
        return int(self) < other

    def __gt__(self, other: int) -> bool:
        Instant.compared += 1
        return int(self) > other


@pytest.mark.parametrize("layout", ["nested", "staircase", "gaps"])
def test_a_record_costs_log_windows_and_one_state(layout: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """100 000 windows (MS-WIN-004) that all hold the record, or none of the others: finding
    where it goes takes ~log2(2W) comparisons, and it is added to one state, not one per
    window."""
    count = 100_000
    spans = {"nested": [(0, i + 1) for i in range(count)],
             "staircase": [(i, i + count) for i in range(count)],
             "gaps": [(2 * i, 2 * i + 1) for i in range(count)]}[layout]
    request = AggregationRequest("sum", windows=[Window(at(a), at(b)) for a, b in spans])
    aggregator = Aggregator(request)
    adds = 0
    original = aggregations.Sum.add

    def counted(self: aggregations.Sum, *args: Any) -> None:
        nonlocal adds
        adds += 1
        original(self, *args)

    monkeypatch.setattr(aggregations.Sum, "add", counted)
    for minute in (0, 2, 2 * (count // 3)):  # inside a window in every layout
        Instant.compared = 0
        aggregator.add("w", "u", "s", "calls", {}, Instant(BASE + minute * MINUTE), Decimal(1))
        assert Instant.compared <= 20  # log2(200 000) < 18
    assert adds == 3


def test_nested_windows_read_in_w_log_w() -> None:
    """Reading W nested windows merges O(log S) segment states per window, not every state
    inside it: ten times the windows and records costs far less than a hundred times."""

    def run(count: int) -> None:
        aggregation: Aggregation
        for aggregation in ("sum", "time-weighted-avg", "unique-count"):
            request = AggregationRequest(
                aggregation,
                dimension="region" if aggregation == "unique-count" else None,
                windows=[Window(at(0), at(i + 1)) for i in range(count)])
            records = [make_record(i, "1", region=str(i), ident=f"r{i}") for i in range(count)]
            readings = aggregate(records, request)
            assert readings[-1].record_count == count

    assert ratio(run, 400, repeats=3) < 30


# ------------------------------------------------------------------ metering (MS-MET-006)


def test_an_event_costs_its_own_properties_not_the_config_dimensions(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A config listing 100 000 dimensions: each event sorts only its own properties."""
    config = MeteringConfig([MeasurementSpec("calls", quantity="1")],
                            dimensions=[f"d{i:06d}" for i in range(100_000)])
    meter = Meter(config)
    largest = 0

    def sorting(items: Iterable[str]) -> list[str]:
        nonlocal largest
        found = builtins.sorted(items)
        largest = max(largest, len(found))
        return found

    monkeypatch.setattr(metering, "sorted", sorting, raising=False)
    event = EventPayload(id="e", workspace_id="w", universe_id="u", type="t", subject="s",
                         time=at(0), properties={"d000001": "x", "d099999": "y", "other": "z"})
    [record] = meter.records(event)
    assert record.dimensions == {"d000001": "x", "d099999": "y"}
    assert largest == 3


# ------------------------------------------------------------------ invoices (MS-INV, MS-BIL)

PLANS = [Plan(id="team", version=1, currency="USD", effective_from="2000-01-01T00:00:00Z",
              effective_to="2020-01-01T00:00:00Z",
              charges=[Charge(id="platform", model="flat", amount="49"),
                       Charge(id="seats", model="per-unit", unit="seats", unit_price="10")]),
         Plan(id="team", version=2, currency="USD", effective_from="2020-01-01T00:00:00Z",
              charges=[Charge(id="platform", model="flat", amount="59"),
                       Charge(id="api", model="per-unit", unit="api_call", unit_price="0.01")])]
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Tokyo"]


def invoice_request(count: int, periods: int = MAX_PERIODS, distinct: int = 8) -> InvoiceRequest:
    """`count` subscriptions on `distinct` cycles (in 4 zones; past 112, anchors in other
    years with the same periods), billed on 2 plan versions."""

    def cycle(k: int) -> BillingCycle:
        return BillingCycle(anchor_date=f"{2019 - k // 112}-01-{1 + k // 4 % 28:02d}",
                            time_zone=ZONES[k % 4])

    return InvoiceRequest(
        workspace_id="w", universe_id="u", at="2024-02-15T00:00:00Z", periods=periods,
        plans=PLANS, usage={"seats": UsageRule("time-weighted-avg"),
                            "api_call": UsageRule("sum")},
        subscriptions=[Subscription(f"s{i}", "team", cycle(i % distinct))
                       for i in range(count)])


def counting(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    """Count the calls of module.name (a one-item list, read after the work)."""
    calls = [0]
    original = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_request_checks_compute_each_cycle_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """2 000 subscriptions x 120 periods on 8 cycles: the periods are computed per cycle (121
    period starts each, not a search per period per subscription) and each plan version's
    dates are parsed once, not once per subscription and period."""
    request = invoice_request(2_000)
    starts = counting(monkeypatch, billing_periods, "_start")
    parses = counting(monkeypatch, plans, "parse_timestamp")
    assert request_problems(request) == []
    assert starts[0] <= 8 * (MAX_PERIODS + 1 + 4)
    assert parses[0] <= 4 * len(PLANS)  # checked, then the timeline: never per period


def test_distinct_cycles_cost_their_periods_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """2 000 distinct cycles: one period computation each, and the zones' local midnights
    are shared between them."""
    request = invoice_request(2_000, distinct=2_000)
    periods_calls = counting(monkeypatch, invoices, "periods")
    midnights = counting(monkeypatch, billing_periods, "wall_start")
    billing_periods._midnight.cache_clear()
    assert request_problems(request) == []
    assert periods_calls[0] == len({s.cycle for s in request.subscriptions})
    assert midnights[0] <= 4 * 28 * (MAX_PERIODS + 8)


def test_a_zone_is_read_once_whatever_the_subscriptions() -> None:
    """Time zones are cached by name: 2 000 subscriptions in 4 zones read 4 zone files."""
    windows._zone.cache_clear()
    assert request_problems(invoice_request(2_000)) == []
    assert windows._zone.cache_info().misses == len(ZONES)


def test_plan_choice_is_a_bisection() -> None:
    """10 000 versions of one plan: choosing one for a period start takes ~log2(20 000)
    comparisons."""
    versions = PlanVersions(
        Plan(id="p", version=v, currency="USD", effective_from=at(v), charges=[])
        for v in range(1, 10_001))
    Instant.compared = 0
    chosen = versions.select("p", Instant(BASE + 5_000 * MINUTE))
    assert chosen is not None and chosen.version == 5_000
    assert Instant.compared <= 20


version_lists = st.lists(st.tuples(st.integers(0, 10), st.one_of(st.none(), st.integers(1, 12)),
                                   st.integers(1, 5)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(rows=version_lists, minute=st.integers(-1, 14))
def test_plan_timeline_matches_a_scan(rows: list[tuple[int, int | None, int]],
                                      minute: int) -> None:
    """MS-PRC-003 as a scan: of the versions effective at the instant, the latest
    effectiveFrom, then the highest version."""
    chosen: dict[int, Plan] = {}
    for start, length, version in rows:
        chosen.setdefault(version, Plan(
            id="p", version=version, currency="USD", effective_from=at(start),
            effective_to=None if length is None else at(start + length), charges=[]))
    instant = BASE + minute * MINUTE
    effective = [p for p in chosen.values() if parse_timestamp(p.effective_from) <= instant
                 and (p.effective_to is None or instant < parse_timestamp(p.effective_to))]
    expected = max(effective, key=lambda p: (parse_timestamp(p.effective_from), p.version),
                   default=None)
    assert PlanVersions(chosen.values()).select("p", instant) is expected


def test_invoice_builder_builds_aggregators_for_records_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """2 000 subscriptions x 120 periods and two records: aggregators (each resolving 120
    windows) are built for the two (subject, unit) pairs with records, not for every
    subscription; invoices stream one at a time."""
    request = invoice_request(2_000)
    resolved = counting(monkeypatch, readings, "request_windows")
    builder = InvoiceBuilder(request)
    for subject, minute in (("s1", 0), ("s1", 60), ("s9", 0)):  # s1 and s9 share a cycle
        builder.add(make_record(minute, "5", subject=subject, unit="api_call"))
    assert resolved[0] == 5  # the usage rules' one-window probes (4), one per schedule
    stream = builder.iter_invoices()
    first = next(stream)
    assert first.subject == "s0" and len(list(itertools.islice(stream, 119))) == 119


# ------------------------------------------------------------------ the rest of the core


def test_an_event_costs_the_measurements_of_its_type() -> None:
    """10 000 measurements, each for its own event type: an event is checked against the
    measurements of its type and of every type only."""

    def meter(count: int) -> Meter:
        return Meter(MeteringConfig([MeasurementSpec(f"u{i}", quantity="1",
                                                     event_types=[f"t{i}"])
                                     for i in range(count)] +
                                    [MeasurementSpec("all", quantity="1")]))

    event = EventPayload(id="e", workspace_id="w", universe_id="u", type="t7",
                         subject="s", time=at(0), properties={})

    def per_event(meter: Meter) -> None:
        for _ in range(2_000):
            assert [r.measurement.unit for r in meter.records(event)] == ["u7", "all"]

    meters = {1: meter(1_000), 10: meter(10_000)}
    assert ratio(lambda size: per_event(meters[size]), 1) < 3


def test_rebuild_requests_is_linear_in_closed_invoices() -> None:
    """Closed invoices of one period start: a repeated one is found with a set, not by
    comparing each with every earlier one (MS-REC-001)."""
    zero = Amount("0", "0")

    def run(count: int) -> None:
        request = invoice_request(count, periods=1)
        closed = [Invoice(id=f"inv_{i}", revision="r", workspace_id="w", universe_id="u",
                          subject=s.subject, period=Window(at(0), at(1)), cycle=s.cycle,
                          plan=PlanRef(id="team", version=2), currency="USD", lines=[],
                          subtotal=zero, total=zero)
                  for i, s in enumerate(request.subscriptions)]
        [(_, grouped)] = rebuild_requests(request, closed)
        assert len(grouped) == count

    assert ratio(run, 1_000) < 30


def test_value_checks_cost_each_plan_its_own_problems() -> None:
    """Many plans beside many schema problems elsewhere: each plan's value checks look at
    the problems below it only."""

    def run(count: int) -> None:
        document = {"at": at(0), "subscriptions": [],
                    "plans": [{"effectiveFrom": at(0)} for _ in range(count)]}
        reported = {f"/subscriptions/{i}/planID" for i in range(count)}
        assert request_value_problems(document, reported) == []

    assert ratio(run, 1_000) < 30


@settings(max_examples=300, deadline=None)
@given(paths=st.sets(st.lists(st.sampled_from(["plans", "0", "1", "10", "", "a~1b", "x"]),
                              max_size=5).map(lambda t: "".join("/" + p for p in t))),
       tokens=st.integers(1, 3))
def test_problems_below_items_match_a_scan(paths: set[str], tokens: int) -> None:
    """The reported paths below each item a walk reaches (exactly `tokens` tokens)."""
    below = invoices._below_items(paths, tokens)
    items = {"/".join(p.split("/")[:tokens + 1]) for p in paths if p.count("/") >= tokens}
    for item in items | {"/plans" * tokens}:
        expected = {p[len(item):] for p in paths if p.startswith(item + "/")}
        assert below.get(item, set()) == expected, item


def test_projections_choose_plan_versions_without_scanning(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Projecting many invoices parses each plan version's dates once, not once per
    invoice (MS-PRJ-001, MS-PRC-003)."""
    request = invoice_request(300, periods=1)
    so_far = InvoiceBuilder(request).invoices()
    parses = counting(monkeypatch, plans, "parse_timestamp")
    assert len(projections(request, so_far)) == 300
    assert parses[0] <= 2 * len(PLANS)
