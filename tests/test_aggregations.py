"""MS-AGG-003..017 and MS-ID-003/004: laws every aggregation obeys (hypothesis), then worked
examples whose expected values were computed by hand."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from conftest import ms_id, record, record_lists, stamp
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.codec import encode
from meterspec.contracts import AggregationRequest, MeterReading, MeterRecord, Tumbling, Window
from meterspec.readings import Aggregator, aggregate

AGGREGATIONS = ["sum", "count", "min", "max", "latest", "time-weighted-avg", "unique-count"]
GROUP_BYS: list[list[str] | None] = [None, ["tier", "region"]]

# Tumbling hours, and explicit windows that overlap, leave gaps and include a 1-microsecond one.
WINDOW_SETS: list[dict[str, Any]] = [
    {"tumbling": Tumbling("hour", "2024-01-01T10:00:00Z", "2024-01-01T13:00:00Z")},
    {"windows": [
        Window("2024-01-01T10:00:00Z", "2024-01-01T11:30:00Z"),
        Window("2024-01-01T11:00:00Z", "2024-01-01T12:00:00Z"),
        Window("2024-01-01T12:30:00Z", "2024-01-01T13:00:00Z"),
        Window("2024-01-01T10:00:00Z", "2024-01-01T10:00:00.000001Z"),
    ]},
]


def make_request(aggregation: str, group_by: list[str] | None,
                 windows: dict[str, Any]) -> AggregationRequest:
    return AggregationRequest(
        aggregation,  # type: ignore[arg-type]
        dimension="region" if aggregation == "unique-count" else None,
        group_by=group_by, **windows)


def encoded(readings: list[MeterReading]) -> bytes:
    return b"\n".join(encode(r) for r in readings)


def test_strategy_base_instant() -> None:
    assert stamp(0, 0) == "2024-01-01T10:00:00Z"
    assert stamp(-90, 1) == "2024-01-01T08:30:00.000001Z"
    assert stamp(300, 999_999) == "2024-01-01T15:00:00.999999Z"


# --- laws (MS-AGG-005, MS-ID-004) -------------------------------------------------------------

law_cases = pytest.mark.parametrize(
    ("aggregation", "group_by"), list(itertools.product(AGGREGATIONS, GROUP_BYS)),
    ids=[f"{a}-{'grouped' if g else 'ungrouped'}"
         for a, g in itertools.product(AGGREGATIONS, GROUP_BYS)])


@law_cases
@settings(max_examples=40, deadline=None)
@given(records=record_lists, windows=st.sampled_from(WINDOW_SETS), data=st.data())
def test_order_independence(aggregation: str, group_by: list[str] | None,
                            records: list[MeterRecord], windows: dict[str, Any],
                            data: st.DataObject) -> None:
    request = make_request(aggregation, group_by, windows)
    shuffled = data.draw(st.permutations(records))
    assert encoded(aggregate(shuffled, request)) == encoded(aggregate(records, request))


@law_cases
@settings(max_examples=60, deadline=None)
@given(records=record_lists, windows=st.sampled_from(WINDOW_SETS), data=st.data())
def test_partition_and_merge_invariance(aggregation: str, group_by: list[str] | None,
                                        records: list[MeterRecord], windows: dict[str, Any],
                                        data: st.DataObject) -> None:
    request = make_request(aggregation, group_by, windows)
    k = data.draw(st.integers(1, 4))
    owners = data.draw(st.lists(st.integers(0, k - 1), min_size=len(records),
                                max_size=len(records)))
    parts = [Aggregator(request) for _ in range(k)]
    for owner, rec in zip(owners, records, strict=True):
        parts[owner].add_record(rec)
    if data.draw(st.booleans()):
        merged = Aggregator(request)
        for part in data.draw(st.permutations(parts)):
            merged.merge(part)
    else:
        merged = parts[0]
        for part in parts[1:]:
            merged.merge(part)
    assert encoded(merged.readings()) == encoded(aggregate(records, request))


@law_cases
@settings(max_examples=10, deadline=None)
@given(records=record_lists, windows=st.sampled_from(WINDOW_SETS))
def test_encoding_is_byte_identical_on_repeat(aggregation: str, group_by: list[str] | None,
                                              records: list[MeterRecord],
                                              windows: dict[str, Any]) -> None:
    request = make_request(aggregation, group_by, windows)
    first = aggregate(records, request)
    again = aggregate(list(records), make_request(aggregation, group_by, windows))
    assert [encode(r) for r in first] == [encode(r) for r in again]
    assert [encode(r) for r in first] == [encode(r) for r in first]


@law_cases
@settings(max_examples=25, deadline=None)
@given(records=record_lists, windows=st.sampled_from(WINDOW_SETS))
def test_reading_invariants(aggregation: str, group_by: list[str] | None,
                            records: list[MeterRecord], windows: dict[str, Any]) -> None:
    """MS-AGG-004/017: sorted, one per active group and window, group iff groupBy, and the
    id recomputed from the reading's own fields by an independent MS-ID implementation."""
    request = make_request(aggregation, group_by, windows)
    readings = aggregate(records, request)
    keys = [(r.workspace_id, r.universe_id, r.subject, r.measurement.unit,
             tuple((0, "") if v is None else (1, v) for v in (r.group or {}).values()),
             r.window.start, r.window.end) for r in readings]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    parameter = {"unique-count": "dimension=region", "time-weighted-avg": "scale=6"}.get(
        aggregation, "")
    for reading in readings:
        assert (reading.group is not None) == (group_by is not None)
        fields = ["meterspec/reading/v1", reading.workspace_id, reading.universe_id,
                  reading.subject, reading.measurement.unit, aggregation, parameter,
                  reading.window.start, reading.window.end, str(len(group_by or []))]
        for name in group_by or []:
            value = (reading.group or {})[name]
            fields += [name, "!" if value is None else "=" + value]
        assert reading.id == ms_id("rdg_", fields)


# --- hand-computed examples -------------------------------------------------------------------

HOURS = Tumbling("hour", "2024-01-01T10:00:00Z", "2024-01-01T12:00:00Z")


def run(aggregation: str, records: list[MeterRecord], *, tumbling: Tumbling | None = HOURS,
        windows: list[Window] | None = None, group_by: list[str] | None = None,
        dimension: str | None = None, scale: int | None = None) -> list[MeterReading]:
    request = AggregationRequest(
        aggregation,  # type: ignore[arg-type]
        dimension=dimension, scale=scale, group_by=group_by,
        windows=windows, tumbling=None if windows is not None else tumbling)
    return aggregate(records, request)


def values(readings: list[MeterReading]) -> list[tuple[str | None, int]]:
    return [(r.measurement.quantity, r.record_count) for r in readings]


def test_sum_never_mixes_tenants_subjects_or_units() -> None:
    t = "2024-01-01T10:30:00Z"
    records = [
        record(t, "1", workspace="w1", universe="u1", subject="s1", unit="calls"),
        record(t, "2", workspace="w1", universe="u1", subject="s1", unit="calls"),
        record(t, "10", workspace="w1", universe="u1", subject="s1", unit="bytes"),
        record(t, "5", workspace="w2", universe="u1", subject="s1", unit="calls"),
        record(t, "7", workspace="w1", universe="u2", subject="s1", unit="calls"),
        record(t, "0.5", workspace="w1", universe="u1", subject="s2", unit="calls"),
    ]
    readings = run("sum", records, tumbling=Tumbling(
        "hour", "2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z"))
    assert [(r.workspace_id, r.universe_id, r.subject, r.measurement.unit,
             r.measurement.quantity, r.record_count) for r in readings] == [
        ("w1", "u1", "s1", "bytes", "10", 1),
        ("w1", "u1", "s1", "calls", "3", 2),
        ("w1", "u1", "s2", "calls", "0.5", 1),
        ("w1", "u2", "s1", "calls", "7", 1),
        ("w2", "u1", "s1", "calls", "5", 1),
    ]
    assert all(r.group is None for r in readings)
    assert all(b"group" not in encode(r) for r in readings)


def test_sum_and_count_of_mixed_spellings() -> None:
    """MS-AGG-006, MS-AGG-007: exact sum; count ignores quantities."""
    records = [record("2024-01-01T10:00:00Z", q) for q in ("1.50", "-0.5", "1e1", "-0", "0.25")]
    assert values(run("sum", records))[0] == ("11.25", 5)
    assert values(run("count", records))[0] == ("5", 5)


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_latest_tie_at_same_instant_picks_greatest_quantity(order: tuple[int, ...]) -> None:
    """MS-AGG-009: ties at one instant go to the greatest quantity, whatever the order."""
    pool = [record("2024-01-01T10:30:00Z", "3"), record("2024-01-01T10:30:00Z", "7"),
            record("2024-01-01T10:30:00+00:00", "-1"), record("2024-01-01T10:10:00Z", "9")]
    records = [pool[i] for i in order]
    assert values(run("latest", records))[0] == ("7", 4)
    later = [*records, record("2024-01-01T10:30:00.000001Z", "1")]
    assert values(run("latest", later))[0] == ("1", 5)


@pytest.mark.parametrize("texts", [("1.0", "1"), ("1", "1.0"), ("1.00", "1e0", "1.0")])
def test_min_max_latest_of_equal_values_are_canonical(texts: tuple[str, ...]) -> None:
    """MS-AGG-008, MS-AGG-009: equal values written differently give one canonical output."""
    records = [record("2024-01-01T10:30:00Z", t) for t in texts]
    for aggregation in ("min", "max", "latest"):
        assert values(run(aggregation, records))[0] == ("1", len(texts))


def test_min_max_are_numeric_not_textual() -> None:
    """MS-AGG-008: min and max compare numerically."""
    records = [record("2024-01-01T10:30:00Z", t) for t in ("9", "10", "-2.5", "3e1", "-10")]
    assert values(run("min", records))[0] == ("-10", 5)
    assert values(run("max", records))[0] == ("30", 5)


def test_empty_window_results() -> None:
    records = [record("2024-01-01T10:30:00Z", "4", dimensions={"region": "a"})]
    expected: dict[str, list[tuple[str | None, int]]] = {
        "sum": [("4", 1), ("0", 0)],
        "count": [("1", 1), ("0", 0)],
        "min": [("4", 1), (None, 0)],
        "max": [("4", 1), (None, 0)],
        "latest": [("4", 1), (None, 0)],
        "unique-count": [("1", 1), ("0", 0)],
        "time-weighted-avg": [("2", 1), ("4", 0)],  # (0*30 + 4*30)/60; then carry-in 4
    }
    for aggregation, want in expected.items():
        dimension = "region" if aggregation == "unique-count" else None
        readings = run(aggregation, records, dimension=dimension)
        assert values(readings) == want, aggregation
        assert [r.window.start for r in readings] == ["2024-01-01T10:00:00Z",
                                                      "2024-01-01T11:00:00Z"]
    empty = run("min", records)[1]
    assert b'"quantity":null' in encode(empty)


def test_empty_window_of_twa_without_carry_in_is_zero() -> None:
    windows = [Window("2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z"),
               Window("2024-01-01T12:00:00Z", "2024-01-01T13:00:00Z")]
    readings = run("time-weighted-avg", [record("2024-01-01T11:30:00Z", "8")], windows=windows)
    # Active: the record is before the end of the last window. The gap value carries in.
    assert values(readings) == [("0", 0), ("8", 0)]


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_active_group_rule(aggregation: str) -> None:
    dimension = "region" if aggregation == "unique-count" else None
    after = [record("2024-01-01T12:00:00Z", "5", subject="late")]
    assert run(aggregation, after, dimension=dimension) == []
    before = [record("2024-01-01T09:00:00Z", "5", subject="early")]
    readings = run(aggregation, before, dimension=dimension)
    if aggregation == "time-weighted-avg":
        assert values(readings) == [("5", 0), ("5", 0)]
    else:
        assert readings == []


def test_twa_seats_example() -> None:
    """MS-AGG-011, MS-AGG-012, MS-AGG-014: step function, carry-in, last value to the end."""
    records = [
        record("2024-01-01T08:00:00Z", "3"),   # superseded by the 09:30 value
        record("2024-01-01T09:30:00Z", "5"),   # carries in at 10:00
        record("2024-01-01T10:15:00Z", "10"),
        record("2024-01-01T10:45:00Z", "2"),   # runs to 11:00, and carries into 11:00-12:00
        record("2024-01-01T12:00:00Z", "100"),  # at the end of the range: ignored
    ]
    # (5*15 + 10*30 + 2*15) / 60 = 405/60 = 6.75
    assert values(run("time-weighted-avg", records)) == [("6.75", 2), ("2", 0)]


def test_twa_without_carry_in_counts_zero_before_the_first_value() -> None:
    """MS-AGG-013: nothing carried in counts as level 0."""
    records = [record("2024-01-01T10:30:00Z", "4"), record("2024-01-01T10:45:00Z", "8")]
    # (0*30 + 4*15 + 8*15) / 60 = 3; then 8 carries in
    assert values(run("time-weighted-avg", records)) == [("3", 2), ("8", 0)]


def test_twa_value_at_window_start_is_not_a_carry_in() -> None:
    records = [record("2024-01-01T10:00:00Z", "6"), record("2024-01-01T09:00:00Z", "100")]
    assert values(run("time-weighted-avg", records))[0] == ("6", 1)


TWO_MICROS = [Window("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000002Z")]


@pytest.mark.parametrize(("first", "second", "scale", "expected"), [
    ("0.000001", "0.000002", None, "0.000002"),    # 0.0000015 -> even 2
    ("0.000002", "0.000003", None, "0.000002"),    # 0.0000025 -> even 2
    ("0.000003", "0.000004", None, "0.000004"),    # 0.0000035 -> even 4
    ("-0.000002", "-0.000003", None, "-0.000002"),  # -0.0000025 -> even -2
    ("-0.000001", "0.000002", None, "0"),          # 0.0000005 -> even 0
    ("1", "2", 0, "2"),                            # 1.5 -> 2
    ("2", "3", 0, "2"),                            # 2.5 -> 2
    ("0", "1", 0, "0"),                            # 0.5 -> 0
    ("-1", "-2", 0, "-2"),                         # -1.5 -> -2
    ("-2", "-3", 0, "-2"),                         # -2.5 -> -2
    ("0.1", "0.2", 1, "0.2"),                      # 0.15 -> 0.2
    ("0.2", "0.3", 1, "0.2"),                      # 0.25 -> 0.2
])
def test_twa_half_even_ties(first: str, second: str, scale: int | None, expected: str) -> None:
    """MS-AGG-015: one half-even rounding at the stated scale."""
    records = [record("2024-01-01T00:00:00Z", first),
               record("2024-01-01T00:00:00.000001Z", second)]
    assert values(run("time-weighted-avg", records, windows=TWO_MICROS, scale=scale)) == [
        (expected, 2)]


TEN_MICROS = [Window("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.00001Z")]


@pytest.mark.parametrize(("first", "expected"), [
    ("1.000005", "1"),          # (1.000005 + 9) / 10 = 1.0000005 -> 1.000000
    ("1.000015", "1.000002"),   # 1.0000015 -> 1.000002
    ("1.000025", "1.000002"),   # 1.0000025 -> 1.000002
])
def test_twa_ties_over_ten_microseconds(first: str, expected: str) -> None:
    records = [record("2024-01-01T00:00:00Z", first),
               record("2024-01-01T00:00:00.000001Z", "1")]
    assert values(run("time-weighted-avg", records, windows=TEN_MICROS)) == [(expected, 2)]


def test_twa_rounds_once_not_twice() -> None:
    window = [Window("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.0001Z")]  # 100 microseconds
    records = [record("2024-01-01T00:00:00.000099Z", "0.000349")]
    # 0.000349 / 100 = 0.00000349 -> 0.000003 (rounding to 7 digits first would give 0.000004)
    assert values(run("time-weighted-avg", records, windows=window)) == [("0.000003", 1)]


@pytest.mark.parametrize(("scale", "expected"), [
    (None, "6.75"), (6, "6.75"), (2, "6.75"), (1, "6.8"), (0, "7")])
def test_twa_scale_parameter(scale: int | None, expected: str) -> None:
    records = [record("2024-01-01T09:30:00Z", "5"), record("2024-01-01T10:15:00Z", "10"),
               record("2024-01-01T10:45:00Z", "2")]
    window = [Window("2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z")]
    [reading] = run("time-weighted-avg", records, windows=window, scale=scale)
    assert reading.measurement.quantity == expected
    parameter = f"scale={6 if scale is None else scale}"
    assert reading.id == ms_id("rdg_", [
        "meterspec/reading/v1", "ws", "prod", "cust-1", "calls", "time-weighted-avg",
        parameter, "2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z", "0"])


@pytest.mark.parametrize(("scale", "expected"), [
    (None, "0.333333"), (0, "0"), (3, "0.333"), (20, "0.33333333333333333333")])
def test_twa_one_third(scale: int | None, expected: str) -> None:
    records = [record("2024-01-01T10:00:00Z", "1"), record("2024-01-01T11:00:00Z", "0")]
    window = [Window("2024-01-01T10:00:00Z", "2024-01-01T13:00:00Z")]
    assert values(run("time-weighted-avg", records, windows=window, scale=scale)) == [
        (expected, 2)]


def test_twa_two_thirds_at_scale_20() -> None:
    records = [record("2024-01-01T10:00:00Z", "2"), record("2024-01-01T11:00:00Z", "0")]
    window = [Window("2024-01-01T10:00:00Z", "2024-01-01T13:00:00Z")]
    assert values(run("time-weighted-avg", records, windows=window, scale=20)) == [
        ("0.66666666666666666667", 2)]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_twa_points_at_the_same_instant_collapse_to_the_greatest(
        order: tuple[int, ...]) -> None:
    pool = [record("2024-01-01T00:00:00Z", "3"), record("2024-01-01T00:00:00Z", "7"),
            record("2024-01-01T00:00:00.000005Z", "1")]
    records = [pool[i] for i in order]
    # 7 for 5 microseconds, 1 for 5: (35 + 5) / 10 = 4
    assert values(run("time-weighted-avg", records, windows=TEN_MICROS)) == [("4", 3)]


def test_twa_carry_in_at_the_same_instant_collapses_too() -> None:
    records = [record("2024-01-01T09:00:00Z", "7"), record("2024-01-01T09:00:00Z", "3")]
    assert values(run("time-weighted-avg", records)) == [("7", 0), ("7", 0)]


def test_twa_negative_levels() -> None:
    records = [record("2024-01-01T09:00:00Z", "-4"), record("2024-01-01T10:30:00Z", "2")]
    # (-4*30 + 2*30) / 60 = -1
    assert values(run("time-weighted-avg", records)) == [("-1", 1), ("2", 0)]


def test_unique_count_ignores_records_without_the_dimension() -> None:
    t = "2024-01-01T10:30:00Z"
    records = [record(t, "1", dimensions={"region": "a"}),
               record(t, "1", dimensions={"region": "a"}),
               record(t, "1", dimensions={"region": "b"}),
               record(t, "1", dimensions={"region": "A"}),   # case-sensitive: distinct
               record(t, "1", dimensions={"zone": "a"}),
               record(t, "1")]
    readings = run("unique-count", records, dimension="region")
    assert values(readings) == [("3", 6), ("0", 0)]
    assert readings[0].id == ms_id("rdg_", [
        "meterspec/reading/v1", "ws", "prod", "cust-1", "calls", "unique-count",
        "dimension=region", "2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z", "0"])


def test_group_values_null_for_absent_dimension_sort_first() -> None:
    t = "2024-01-01T10:30:00Z"
    records = [record(t, "1", dimensions={"region": "b"}),
               record(t, "2"),
               record(t, "4", dimensions={"region": "a", "tier": "x"}),
               record(t, "8", dimensions={"region": ""})]
    readings = run("sum", records, group_by=["region"],
                   tumbling=Tumbling("hour", "2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z"))
    assert [(r.group, r.measurement.quantity) for r in readings] == [
        ({"region": None}, "2"), ({"region": ""}, "8"), ({"region": "a"}, "4"),
        ({"region": "b"}, "1")]
    assert b'"group":{"region":null}' in encode(readings[0])
    ids = [r.id for r in readings]
    assert len(set(ids)) == 4
    base = ["meterspec/reading/v1", "ws", "prod", "cust-1", "calls", "sum", "",
            "2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z", "1", "region"]
    assert ids == [ms_id("rdg_", [*base, "!"]), ms_id("rdg_", [*base, "="]),
                   ms_id("rdg_", [*base, "=a"]), ms_id("rdg_", [*base, "=b"])]


def test_empty_group_by_gives_an_empty_group() -> None:
    [reading, _] = run("count", [record("2024-01-01T10:30:00Z", "1")], group_by=[])
    assert reading.group == {}
    assert b'"group":{}' in encode(reading)


def _one_reading_id(**changes: Any) -> str:
    fields: dict[str, Any] = {"workspace": "w", "universe": "u", "subject": "s", "unit": "calls",
                              "dimensions": {"region": "a"}}
    window_end = changes.pop("end", "2024-01-01T11:00:00Z")
    group_by = changes.pop("group_by", None)
    fields.update(changes)
    [reading] = run("sum", [record("2024-01-01T10:30:00Z", "1", **fields)],
                    windows=[Window("2024-01-01T10:00:00Z", window_end)], group_by=group_by)
    return reading.id


def test_reading_ids_differ_on_every_axis() -> None:
    ids = [
        _one_reading_id(),
        _one_reading_id(workspace="w2"),
        _one_reading_id(universe="u2"),
        _one_reading_id(subject="s2"),
        _one_reading_id(unit="bytes"),
        _one_reading_id(end="2024-01-01T11:00:00.000001Z"),
        _one_reading_id(group_by=["region"]),
        _one_reading_id(group_by=["region"], dimensions={"region": "b"}),
        _one_reading_id(group_by=["region"], dimensions={}),
        # Length prefixes: ("ab", "c") and ("a", "bc") must not collide.
        _one_reading_id(subject="sa", unit="b"),
        _one_reading_id(subject="s", unit="ab"),
    ]
    assert len(set(ids)) == len(ids)
    # No groupBy and an empty groupBy both have zero group entries: the recipe gives one id.
    assert _one_reading_id(group_by=[]) == ids[0]
    assert ids[0] == ms_id("rdg_", ["meterspec/reading/v1", "w", "u", "s", "calls", "sum", "",
                                    "2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z", "0"])
    assert ids[5] == ms_id("rdg_", ["meterspec/reading/v1", "w", "u", "s", "calls", "sum", "",
                                    "2024-01-01T10:00:00Z", "2024-01-01T11:00:00.000001Z",
                                    "0"])
    assert ids[7] == ms_id("rdg_", ["meterspec/reading/v1", "w", "u", "s", "calls", "sum", "",
                                    "2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z", "1",
                                    "region", "=b"])


def test_reading_id_uses_utf8_byte_lengths() -> None:
    [reading] = run("count", [record("2024-01-01T10:30:00Z", "1", subject="zürich-😀")],
                    windows=[Window("2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z")])
    assert reading.id == ms_id("rdg_", [
        "meterspec/reading/v1", "ws", "prod", "zürich-😀", "calls", "count", "",
        "2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z", "0"])
    assert reading.id.startswith("rdg_") and len(reading.id) == 36


def test_merge_refuses_a_different_request() -> None:
    a = Aggregator(AggregationRequest("sum", tumbling=HOURS))
    b = Aggregator(AggregationRequest("count", tumbling=HOURS))
    with pytest.raises(ValueError, match="same request"):
        a.merge(b)


@pytest.mark.parametrize("aggregation", ["sum", "count"])
@settings(max_examples=60, deadline=None)
@given(records=record_lists, windows=st.sampled_from(WINDOW_SETS))
def test_cells_equal_window_states(aggregation: str, records: list[MeterRecord],
                                   windows: dict[str, Any]) -> None:
    """Issue 12: sums and counts over disjoint windows keep plain lists per group instead of
    a state object per window; the readings must be the same bytes either way."""
    request = make_request(aggregation, ["region"], windows)
    fast = Aggregator(request)
    slow = Aggregator(request)
    slow._cells = None  # the general path: one Sum or Count state per group and window
    for item in records:
        fast.add_record(item)
        slow.add_record(item)
    assert encoded(fast.readings()) == encoded(slow.readings())


@law_cases
@settings(max_examples=30, deadline=None)
@given(records=record_lists, windows=st.sampled_from(WINDOW_SETS))
def test_reading_lines_are_the_encoded_readings(aggregation: str, group_by: list[str] | None,
                                                records: list[MeterRecord],
                                                windows: dict[str, Any]) -> None:
    """Issue 12: the CLI writes iter_reading_lines(), built from pre-encoded pieces; they must
    be exactly the bytes of encoding each MeterReading."""
    aggregator = Aggregator(make_request(aggregation, group_by, windows))
    for item in records:
        aggregator.add_record(item)
    assert list(aggregator.iter_reading_lines()) == [
        encode(reading) + b"\n" for reading in aggregator.iter_readings()]


def test_reading_lines_escape_what_json_must() -> None:
    """Quotes, backslashes, control and non-ASCII characters in every string field."""
    odd = 'a"b\\c\n\u2028é\x01'
    item = record("2024-01-01T10:00:00Z", "1.50", subject=odd, workspace=odd, universe=odd,
                  unit=odd, dimensions={"region": odd})
    request = AggregationRequest(aggregation="sum", group_by=["region", "tier"],
                                 windows=[Window("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z")])
    aggregator = Aggregator(request)
    aggregator.add_record(item)
    [line] = aggregator.iter_reading_lines()
    assert line == encode(aggregator.readings()[0]) + b"\n"
    assert json.loads(line)["group"] == {"region": odd, "tier": None}


@pytest.mark.parametrize("group_by", GROUP_BYS)
@settings(max_examples=40, deadline=None)
@given(records=record_lists, windows=st.sampled_from(WINDOW_SETS), budget=st.integers(1, 5),
       data=st.data())
def test_spilled_time_weighted_points_give_the_same_readings(
        group_by: list[str] | None, records: list[MeterRecord], windows: dict[str, Any],
        budget: int, data: st.DataObject) -> None:
    """Issue 12: past `point_budget` points go to runs on disk (meterspec.spill); the readings,
    also of aggregators merged with spilled ones and of any block of groups written alone
    (as --jobs writers do), are the bytes of an aggregator that never spilled."""
    request = make_request("time-weighted-avg", group_by, windows)
    whole = Aggregator(request)
    for item in records:
        whole.add_record(item)
    expected = list(whole.iter_reading_lines())
    k = data.draw(st.integers(1, 3))
    parts = [Aggregator(request, point_budget=budget) for _ in range(k)]
    for index, item in enumerate(records):
        parts[index % k].add_record(item)
    for part in parts[1:]:
        parts[0].merge(part)
    assert list(parts[0].iter_reading_lines()) == expected
    keys = parts[0].ordered_keys()
    cut = data.draw(st.integers(0, len(keys)))
    assert [*parts[0].iter_reading_lines(keys[:cut]),
            *parts[0].iter_reading_lines(keys[cut:])] == expected
