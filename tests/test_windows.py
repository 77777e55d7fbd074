"""MS-WIN-001..004: half-open windows, explicit lists and DST-correct tumbling calendar periods.
Every expected instant below was worked out by hand from the zone's UTC offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from conftest import record

from meterspec.contracts import AggregationRequest, Tumbling, Window
from meterspec.errors import MeterspecError
from meterspec.readings import Aggregator, aggregate
from meterspec.timestamps import format_timestamp
from meterspec.windows import request_windows

Pair = tuple[str, str]


def tumbling(size: str, start: str, end: str, zone: str = "UTC") -> list[Pair]:
    request = AggregationRequest(
        "count", tumbling=Tumbling(size, start, end, zone))  # type: ignore[arg-type]
    return [(format_timestamp(a), format_timestamp(b)) for a, b in request_windows(request).spans]


def problems_of(request: AggregationRequest) -> list[tuple[str, str]]:
    with pytest.raises(MeterspecError) as info:
        Aggregator(request)
    return [(p.code, p.path) for p in info.value.problems]


def hours(pairs: list[Pair]) -> list[float]:
    def instant(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    return [(instant(b) - instant(a)) / timedelta(hours=1) for a, b in pairs]


# --- half-open edges (MS-WIN-001, MS-AGG-003) -------------------------------------------------

def test_half_open_edges() -> None:
    request = AggregationRequest(
        "count", tumbling=Tumbling("hour", "2024-01-01T10:00:00Z", "2024-01-01T12:00:00Z"))
    records = [
        record("2024-01-01T10:00:00Z", "1"),                # start: first window
        record("2024-01-01T10:59:59.999999Z", "1"),         # last microsecond: first window
        record("2024-01-01T11:00:00Z", "1"),                # end of first = start of second
        record("2024-01-01T11:59:59.999999999Z", "1"),      # truncated: still second
        record("2024-01-01T12:00:00Z", "1"),                # end of the last window: nowhere
        record("2024-01-01T09:59:59.999999Z", "1"),         # before: nowhere
        record("2024-01-01T12:00:00+01:00", "1"),           # = 11:00Z: second
    ]
    readings = aggregate(records, request)
    assert [(r.window.start, r.measurement.quantity, r.record_count) for r in readings] == [
        ("2024-01-01T10:00:00Z", "2", 2),
        ("2024-01-01T11:00:00Z", "3", 3),
    ]
    assert readings[0].window.end == "2024-01-01T11:00:00Z"


def test_record_exactly_at_end_of_an_explicit_window_is_outside_it() -> None:
    request = AggregationRequest("count", windows=[
        Window("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000001Z")])
    at_start = aggregate([record("2024-01-01T00:00:00Z", "1")], request)
    assert [r.record_count for r in at_start] == [1]
    assert aggregate([record("2024-01-01T00:00:00.000001Z", "1")], request) == []


# --- tumbling windows in time zones (MS-WIN-003) ----------------------------------------------

def test_new_york_spring_forward_day_is_23_hours() -> None:
    pairs = tumbling("day", "2024-03-09T05:00:00Z", "2024-03-12T04:00:00Z", "America/New_York")
    assert pairs == [
        ("2024-03-09T05:00:00Z", "2024-03-10T05:00:00Z"),
        ("2024-03-10T05:00:00Z", "2024-03-11T04:00:00Z"),
        ("2024-03-11T04:00:00Z", "2024-03-12T04:00:00Z"),
    ]
    assert hours(pairs) == [24, 23, 24]


def test_new_york_fall_back_day_is_25_hours() -> None:
    pairs = tumbling("day", "2024-11-03T04:00:00Z", "2024-11-04T05:00:00Z", "America/New_York")
    assert pairs == [("2024-11-03T04:00:00Z", "2024-11-04T05:00:00Z")]
    assert hours(pairs) == [25]


def test_fall_back_hour_windows_repeat_local_one_oclock() -> None:
    pairs = tumbling("hour", "2024-11-03T04:00:00Z", "2024-11-03T08:00:00Z", "America/New_York")
    assert pairs == [
        ("2024-11-03T04:00:00Z", "2024-11-03T05:00:00Z"),  # 00:00 EDT
        ("2024-11-03T05:00:00Z", "2024-11-03T06:00:00Z"),  # 01:00 EDT
        ("2024-11-03T06:00:00Z", "2024-11-03T07:00:00Z"),  # 01:00 EST, the repeat
        ("2024-11-03T07:00:00Z", "2024-11-03T08:00:00Z"),  # 02:00 EST
    ]
    whole_day = tumbling("hour", "2024-11-03T04:00:00Z", "2024-11-04T05:00:00Z",
                         "America/New_York")
    assert len(whole_day) == 25
    assert set(hours(whole_day)) == {1}


def test_hour_window_can_start_at_the_repeated_hour() -> None:
    pairs = tumbling("hour", "2024-11-03T06:00:00Z", "2024-11-03T07:00:00Z", "America/New_York")
    assert pairs == [("2024-11-03T06:00:00Z", "2024-11-03T07:00:00Z")]


def test_spring_forward_hour_windows_skip_local_two_oclock() -> None:
    pairs = tumbling("hour", "2024-03-10T05:00:00Z", "2024-03-10T08:00:00Z", "America/New_York")
    assert pairs == [
        ("2024-03-10T05:00:00Z", "2024-03-10T06:00:00Z"),  # 00:00 EST
        ("2024-03-10T06:00:00Z", "2024-03-10T07:00:00Z"),  # 01:00 EST
        ("2024-03-10T07:00:00Z", "2024-03-10T08:00:00Z"),  # 03:00 EDT
    ]
    whole_day = tumbling("hour", "2024-03-10T05:00:00Z", "2024-03-11T04:00:00Z",
                         "America/New_York")
    assert len(whole_day) == 23


def test_spring_forward_minute_windows() -> None:
    pairs = tumbling("minute", "2024-03-10T06:58:00Z", "2024-03-10T07:02:00Z",
                     "America/New_York")
    assert pairs == [
        ("2024-03-10T06:58:00Z", "2024-03-10T06:59:00Z"),  # 01:58 EST
        ("2024-03-10T06:59:00Z", "2024-03-10T07:00:00Z"),  # 01:59 EST
        ("2024-03-10T07:00:00Z", "2024-03-10T07:01:00Z"),  # 03:00 EDT
        ("2024-03-10T07:01:00Z", "2024-03-10T07:02:00Z"),  # 03:01 EDT
    ]


def test_fall_back_minute_windows_are_all_one_minute() -> None:
    pairs = tumbling("minute", "2024-11-03T05:58:00Z", "2024-11-03T06:02:00Z",
                     "America/New_York")
    assert pairs == [
        ("2024-11-03T05:58:00Z", "2024-11-03T05:59:00Z"),  # 01:58 EDT
        ("2024-11-03T05:59:00Z", "2024-11-03T06:00:00Z"),  # 01:59 EDT
        ("2024-11-03T06:00:00Z", "2024-11-03T06:01:00Z"),  # 01:00 EST
        ("2024-11-03T06:01:00Z", "2024-11-03T06:02:00Z"),  # 01:01 EST
    ]
    around = tumbling("minute", "2024-11-03T04:58:00Z", "2024-11-03T07:02:00Z",
                      "America/New_York")
    assert len(around) == 124
    assert set(hours(around)) == {1 / 60}


def test_month_windows_in_new_york() -> None:
    pairs = tumbling("month", "2024-01-01T05:00:00Z", "2024-05-01T04:00:00Z",
                     "America/New_York")
    assert pairs == [
        ("2024-01-01T05:00:00Z", "2024-02-01T05:00:00Z"),
        ("2024-02-01T05:00:00Z", "2024-03-01T05:00:00Z"),
        ("2024-03-01T05:00:00Z", "2024-04-01T04:00:00Z"),  # DST starts inside March
        ("2024-04-01T04:00:00Z", "2024-05-01T04:00:00Z"),
    ]


def test_month_windows_across_a_year_end_in_kolkata() -> None:
    pairs = tumbling("month", "2023-11-30T18:30:00Z", "2024-02-29T18:30:00Z", "Asia/Kolkata")
    assert pairs == [
        ("2023-11-30T18:30:00Z", "2023-12-31T18:30:00Z"),
        ("2023-12-31T18:30:00Z", "2024-01-31T18:30:00Z"),
        ("2024-01-31T18:30:00Z", "2024-02-29T18:30:00Z"),
    ]


def test_month_windows_in_utc_default_zone() -> None:
    pairs = tumbling("month", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z")
    assert pairs == [("2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z")]


def test_skipped_midnight_starts_the_day_when_the_clock_jumps() -> None:
    # America/Santiago, 2024-09-08: at 00:00 -04 (04:00Z) the clock jumps to 01:00 -03.
    days = tumbling("day", "2024-09-07T04:00:00Z", "2024-09-09T03:00:00Z", "America/Santiago")
    assert days == [
        ("2024-09-07T04:00:00Z", "2024-09-08T04:00:00Z"),
        ("2024-09-08T04:00:00Z", "2024-09-09T03:00:00Z"),
    ]
    # The skipped hour (local 00:00) yields no hour window.
    hour_pairs = tumbling("hour", "2024-09-08T03:00:00Z", "2024-09-08T05:00:00Z",
                          "America/Santiago")
    assert hour_pairs == [
        ("2024-09-08T03:00:00Z", "2024-09-08T04:00:00Z"),  # 23:00 -04 on the 7th
        ("2024-09-08T04:00:00Z", "2024-09-08T05:00:00Z"),  # 01:00 -03 on the 8th
    ]


def test_minute_windows_in_utc() -> None:
    pairs = tumbling("minute", "2024-01-01T23:59:00Z", "2024-01-02T00:01:00Z")
    assert pairs == [("2024-01-01T23:59:00Z", "2024-01-02T00:00:00Z"),
                     ("2024-01-02T00:00:00Z", "2024-01-02T00:01:00Z")]


def test_tumbling_bounds_may_be_written_with_any_offset() -> None:
    pairs = tumbling("day", "2024-03-10T00:00:00-05:00", "2024-03-11T00:00:00-04:00",
                     "America/New_York")
    assert pairs == [("2024-03-10T05:00:00Z", "2024-03-11T04:00:00Z")]


UNALIGNED = [
    # (size, zone, start, end, pointer)
    ("day", "America/New_York", "2024-03-10T00:00:00Z", "2024-03-11T04:00:00Z",
     "/tumbling/start"),  # UTC midnight is 19:00 in New York
    ("day", "America/New_York", "2024-03-10T05:00:00Z", "2024-03-11T05:00:00Z",
     "/tumbling/end"),    # 24 hours after a midnight is 01:00 on a 23-hour day
    ("hour", "UTC", "2024-01-01T00:00:00.000001Z", "2024-01-01T02:00:00Z", "/tumbling/start"),
    ("hour", "UTC", "2024-01-01T00:00:00Z", "2024-01-01T01:59:59.999999Z", "/tumbling/end"),
    ("hour", "Asia/Kolkata", "2024-01-01T00:00:00Z", "2024-01-01T02:30:00Z",
     "/tumbling/start"),  # 05:30 local
    ("minute", "UTC", "2024-01-01T00:00:30Z", "2024-01-01T00:02:00Z", "/tumbling/start"),
    ("month", "UTC", "2024-01-02T00:00:00Z", "2024-03-01T00:00:00Z", "/tumbling/start"),
    ("month", "UTC", "2024-01-01T00:00:00Z", "2024-02-28T00:00:00Z", "/tumbling/end"),
]


@pytest.mark.parametrize(("size", "zone", "start", "end", "path"), UNALIGNED)
def test_unaligned_bounds_are_rejected(size: str, zone: str, start: str, end: str,
                                       path: str) -> None:
    request = AggregationRequest(
        "sum", tumbling=Tumbling(size, start, end, zone))  # type: ignore[arg-type]
    with pytest.raises(MeterspecError) as info:
        Aggregator(request)
    assert [(p.code, p.path) for p in info.value.problems] == [("unaligned-window", path)]
    assert info.value.requirement == "MS-WIN-003"


def test_unaligned_start_and_end_are_both_reported() -> None:
    request = AggregationRequest(
        "sum", tumbling=Tumbling("hour", "2024-01-01T00:30:00Z", "2024-01-01T05:30:00Z"))
    assert problems_of(request) == [("unaligned-window", "/tumbling/start"),
                                    ("unaligned-window", "/tumbling/end")]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "America/New_York ", "../etc/passwd",
                                  "/usr/share/zoneinfo/UTC", "america/new_york"])
def test_invalid_time_zone(zone: str) -> None:
    request = AggregationRequest(
        "sum", tumbling=Tumbling("day", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", zone))
    assert problems_of(request) == [("invalid-time-zone", "/tumbling/timeZone")]


@pytest.mark.parametrize(("start", "end"), [
    ("2024-01-02T00:00:00Z", "2024-01-02T00:00:00Z"),
    ("2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z"),
    ("2024-01-02T00:00:00Z", "2024-01-02T01:00:00+01:00"),  # same instant, other offset
])
def test_empty_or_reversed_tumbling_range(start: str, end: str) -> None:
    request = AggregationRequest("sum", tumbling=Tumbling("day", start, end))
    assert problems_of(request) == [("invalid-window", "/tumbling")]


# --- explicit windows (MS-WIN-001/002/004) ----------------------------------------------------

def test_zero_length_and_reversed_explicit_windows_are_all_reported() -> None:
    request = AggregationRequest("sum", windows=[
        Window("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
        Window("2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z"),
        Window("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000001Z"),  # fine
        Window("2024-01-01T01:00:00+01:00", "2024-01-01T00:00:00Z"),    # same instant
        Window("2024-01-01T00:00:00Z", "not a time"),
    ])
    assert problems_of(request) == [
        ("invalid-window", "/windows/0"),
        ("invalid-window", "/windows/1"),
        ("invalid-window", "/windows/3"),
        ("invalid-timestamp", "/windows/4/end"),
    ]


def test_duplicate_explicit_windows_are_rejected_even_when_spelled_differently() -> None:
    request = AggregationRequest("sum", windows=[
        Window("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
        Window("2024-01-01T01:00:00+01:00", "2024-01-02T00:00:00.000000000Z"),
    ])
    assert problems_of(request) == [("duplicate-item", "/windows")]


def test_request_needs_exactly_one_of_windows_and_tumbling() -> None:
    both = AggregationRequest(
        "sum", windows=[Window("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z")],
        tumbling=Tumbling("day", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"))
    assert problems_of(both) == [("invalid-request", "")]
    assert problems_of(AggregationRequest("sum")) == [("invalid-request", "")]


def test_empty_explicit_window_list_is_a_problem_not_a_crash() -> None:
    with pytest.raises(MeterspecError):
        Aggregator(AggregationRequest("sum", windows=[]))


def test_overlapping_explicit_windows_each_count_the_record() -> None:
    request = AggregationRequest("count", windows=[
        Window("2024-01-01T01:00:00Z", "2024-01-01T03:00:00Z"),
        Window("2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z"),
        Window("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
        Window("2024-01-01T05:00:00Z", "2024-01-01T06:00:00Z"),  # after a gap
    ])
    records = [record("2024-01-01T01:30:00Z", "1"),
               record("2024-01-01T04:00:00Z", "1"),   # only in the day-long window
               record("2024-01-01T05:00:00Z", "1")]
    readings = aggregate(records, request)
    # Sorted by (start, end), whatever the listing order.
    assert [(r.window.start, r.window.end, r.record_count) for r in readings] == [
        ("2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z", 1),
        ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", 3),
        ("2024-01-01T01:00:00Z", "2024-01-01T03:00:00Z", 1),
        ("2024-01-01T05:00:00Z", "2024-01-01T06:00:00Z", 1),
    ]


def test_records_in_a_gap_between_explicit_windows_are_ignored() -> None:
    request = AggregationRequest("sum", windows=[
        Window("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
        Window("2024-01-01T02:00:00Z", "2024-01-01T03:00:00Z"),
    ])
    readings = aggregate([record("2024-01-01T00:30:00Z", "5"),
                          record("2024-01-01T01:30:00Z", "7"),
                          record("2024-01-01T02:30:00Z", "11")], request)
    assert [r.measurement.quantity for r in readings] == ["5", "11"]


def _minutes(n: int) -> str:
    end = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=n)
    return end.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_explicit_window_limit() -> None:
    base = datetime(2024, 1, 1, tzinfo=UTC)

    def windows(n: int) -> list[Window]:
        day = base.strftime("%Y-%m-%d")
        stamps = [f"{day}T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z" if i < 86_400
                  else (base + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
                  for i in range(n + 1)]
        return [Window(a, b) for a, b in pairwise(stamps)]

    assert len(request_windows(AggregationRequest("sum", windows=windows(100_000))).spans) \
        == 100_000
    assert problems_of(AggregationRequest("sum", windows=windows(100_001))) == [
        ("too-many-items", "/windows")]


def test_tumbling_window_limit_accepts_exactly_100000() -> None:
    request = AggregationRequest("sum", tumbling=Tumbling("minute", _minutes(0),
                                                          _minutes(100_000)))
    assert len(request_windows(request).spans) == 100_000


def test_tumbling_window_limit_rejects_100001() -> None:
    request = AggregationRequest("sum", tumbling=Tumbling("minute", _minutes(0),
                                                          _minutes(100_001)))
    try:
        count = len(request_windows(request).spans)
    except MeterspecError as error:
        assert error.code == "too-many-items"
        return
    raise AssertionError(f"{count} tumbling windows accepted")


def test_tumbling_window_limit_rejects_far_more() -> None:
    request = AggregationRequest("sum", tumbling=Tumbling("minute", _minutes(0),
                                                          _minutes(200_000)))
    assert problems_of(request) == [("too-many-items", "/tumbling")]


def test_tumbling_days_at_the_top_of_the_range() -> None:
    assert tumbling("day", "9999-12-30T00:00:00Z", "9999-12-31T00:00:00Z") == [
        ("9999-12-30T00:00:00Z", "9999-12-31T00:00:00Z")]


def test_tumbling_start_at_the_bottom_of_the_range() -> None:
    request = AggregationRequest("sum", tumbling=Tumbling(
        "hour", "0001-01-01T00:00:00Z", "0001-01-01T01:00:00Z", "Asia/Tokyo"))
    # Tokyo's local mean time is +09:18:59, so neither bound is on a local hour.
    assert problems_of(request) == [("unaligned-window", "/tumbling/start"),
                                    ("unaligned-window", "/tumbling/end")]
