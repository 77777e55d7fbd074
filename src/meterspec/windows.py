"""Aggregation windows (MS-WIN): half-open [start, end) in UTC microseconds, either listed
explicitly or tumbling calendar periods in an IANA time zone."""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from meterspec.contracts import AggregationRequest, Tumbling
from meterspec.errors import MeterspecError, Problem
from meterspec.timestamps import Micros, from_datetime, parse_timestamp, to_datetime

MAX_WINDOWS = 100_000
Span = tuple[Micros, Micros]


class Windows:
    """The request's windows, sorted by (start, end), with lookup of the windows holding an
    instant. Tumbling windows partition their range; explicit ones may overlap or leave gaps."""

    def __init__(self, spans: list[Span]) -> None:
        self.spans = sorted(set(spans))
        self._starts = [s for s, _ in self.spans]
        self._contiguous = all(
            a[1] == b[0] for a, b in zip(self.spans, self.spans[1:], strict=False))
        self.start = self.spans[0][0]
        self.end = max(e for _, e in self.spans)

    def containing(self, instant: Micros) -> list[int]:
        """Indexes of every window with start <= instant < end (MS-WIN-001)."""
        if not self.start <= instant < self.end:
            return []
        last = bisect_right(self._starts, instant) - 1
        if self._contiguous:
            return [last]
        return [i for i in range(last, -1, -1) if self.spans[i][1] > instant][::-1]


def request_windows(request: AggregationRequest) -> Windows:
    """Resolve and check the request's windows (MS-WIN-002/003), every problem at once."""
    problems: list[Problem] = []
    spans: list[Span] = []
    if (request.windows is None) == (request.tumbling is None):
        raise MeterspecError.single("invalid-request", "", "a request has exactly one of "
                                    "windows and tumbling", "MS-WIN-002")
    if request.windows is not None:
        if len(request.windows) > MAX_WINDOWS:
            raise MeterspecError.single("too-many-items", "/windows",
                                        f"at most {MAX_WINDOWS} windows", "MS-WIN-004")
        for i, window in enumerate(request.windows):
            try:
                span = (parse_timestamp(window.start, f"/windows/{i}/start"),
                        parse_timestamp(window.end, f"/windows/{i}/end"))
            except MeterspecError as error:
                problems.extend(error.problems)
                continue
            if span[0] >= span[1]:
                problems.append(Problem("invalid-window", f"/windows/{i}",
                                        "a window's start must be before its end", "MS-WIN-001"))
            spans.append(span)
    elif request.tumbling is not None:
        spans = tumbling_spans(request.tumbling)
    if problems:
        raise MeterspecError(problems)
    if len(spans) != len(set(spans)):
        raise MeterspecError.single("duplicate-item", "/windows",
                                    "the same window is listed twice", "MS-WIN-002")
    return Windows(spans)


def tumbling_spans(tumbling: Tumbling) -> list[Span]:
    """MS-WIN-003: consecutive calendar periods in the zone, from start to end; both bounds must
    be period boundaries in that zone."""
    try:
        zone = ZoneInfo(tumbling.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise MeterspecError.single(
            "invalid-time-zone", "/tumbling/timeZone",
            f"{tumbling.time_zone[:64]!r} is not an IANA time zone name", "MS-WIN-003") from None
    start = parse_timestamp(tumbling.start, "/tumbling/start")
    end = parse_timestamp(tumbling.end, "/tumbling/end")
    if start >= end:
        raise MeterspecError.single("invalid-window", "/tumbling",
                                    "start must be before end", "MS-WIN-001")
    boundaries = _boundaries(zone, tumbling.size, start, end)
    if boundaries[0] != start:
        raise MeterspecError.single(
            "unaligned-window", "/tumbling/start",
            f"start is not the beginning of a {tumbling.size} in {tumbling.time_zone}",
            "MS-WIN-003")
    if boundaries[-1] != end:
        raise MeterspecError.single(
            "unaligned-window", "/tumbling/end",
            f"end is not the beginning of a {tumbling.size} in {tumbling.time_zone}",
            "MS-WIN-003")
    return list(pairwise(boundaries))


def _boundaries(zone: ZoneInfo, size: str, start: Micros, end: Micros) -> list[Micros]:
    """Period starts from the one at or before `start` through the first at or after `end`."""
    local = to_datetime(start).astimezone(zone).replace(tzinfo=None)
    if size == "minute":
        period = local.replace(second=0, microsecond=0)
    elif size == "hour":
        period = local.replace(minute=0, second=0, microsecond=0)
    elif size == "day":
        period = local.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        period = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    out: list[Micros] = []
    while not out or out[-1] < end:
        out.extend(i for i in _instants(zone, period, size in ("minute", "hour"))
                   if not out or i > out[-1])
        if len(out) > MAX_WINDOWS + 2:
            raise MeterspecError.single("too-many-items", "/tumbling",
                                        f"at most {MAX_WINDOWS} windows", "MS-WIN-004")
        period = _next(period, size)
    return out[max(bisect_right(out, start) - 1, 0):]


def _instants(zone: ZoneInfo, wall: datetime, repeat: bool) -> list[Micros]:
    """Instants at which the zone's clock shows `wall`. A skipped wall time yields the instant
    the clock jumps past it (day and month) or nothing (minute and hour); a repeated one
    yields its first occurrence, and for minute and hour also its second."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    exists = first.astimezone(zone).replace(tzinfo=None) == wall
    if not exists:
        return [] if repeat else [from_datetime(first)]
    if repeat and second != first:
        return [from_datetime(first), from_datetime(second)]
    return [from_datetime(first)]


def _next(period: datetime, size: str) -> datetime:
    if size == "minute":
        return period + timedelta(minutes=1)
    if size == "hour":
        return period + timedelta(hours=1)
    if size == "day":
        return period + timedelta(days=1)
    if period.month == 12:
        return period.replace(year=period.year + 1, month=1)
    return period.replace(month=period.month + 1)
