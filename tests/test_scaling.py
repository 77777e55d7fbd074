"""Inputs chosen to be expensive cost time in proportion to their size: per-record, per-event
and per-subscription work never grows with the size of another input. Checked structurally
(calls and comparisons counted) or, where only time tells, as a generous CPU-time ratio
between an input and one ten times larger; never against absolute seconds."""

from __future__ import annotations

import builtins
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec import aggregations, metering
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
from meterspec.metering import Meter
from meterspec.quantity import format_quantity
from meterspec.readings import Aggregator, aggregate
from meterspec.timestamps import format_timestamp, parse_timestamp

BASE = parse_timestamp("2024-01-01T00:00:00Z")
MINUTE = 60_000_000
AGGREGATIONS = ["sum", "count", "min", "max", "latest", "time-weighted-avg", "unique-count"]


def at(minute: int) -> str:
    return format_timestamp(BASE + minute * MINUTE)


def cpu(work: Callable[[], object]) -> float:
    """CPU seconds of one call (process time: other processes on the machine do not count)."""
    start = time.process_time()
    work()
    return time.process_time() - start


def make_record(minute: int, quantity: str, subject: str = "s", region: str | None = None,
                ident: str = "r") -> MeterRecord:
    return MeterRecord(id=ident, workspace_id="w", universe_id="u", subject=subject,
                       recorded_at=at(minute), measurement=Measurement(quantity, "calls"),
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

    run(100)  # warm caches
    small, large = cpu(lambda: run(400)), cpu(lambda: run(4_000))
    assert large < 30 * small, (small, large)


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
