"""Aggregation windows (MS-WIN): half-open [start, end) in UTC nanoseconds, either listed
explicitly or tumbling calendar periods in an IANA time zone."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib import resources
from itertools import accumulate, pairwise
from zoneinfo import ZoneInfo

from meterspec.contracts import AggregationRequest, Tumbling
from meterspec.errors import MeterspecError, Problem
from meterspec.timestamps import (
    MIN_INSTANT,
    NANOS_PER_SECOND,
    Instant,
    from_datetime,
    parse_timestamp,
    to_datetime,
)

MAX_WINDOWS = 100_000
"""The most windows one request may have (`too-many-items`)."""
_ZONE_PART = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*")
Span = tuple[Instant, Instant]
"""A window as [start, end) in ns since the epoch."""


class Windows:
    """The request's windows, sorted by (start, end). Tumbling windows partition their range;
    explicit ones may overlap or leave gaps (MS-WIN-002). Their bounds cut time into disjoint
    segments, so an instant lies in at most one segment (found by bisection, whatever the
    overlaps) and each window is a run of consecutive segments: `ranges[i]` = [first, last)."""

    def __init__(self, spans: list[Span]) -> None:
        self.spans = sorted(set(spans))
        """The distinct windows as (start, end) ns pairs, sorted."""
        self.bounds = sorted({instant for span in self.spans for instant in span})
        """Every window bound, sorted and distinct: they cut time into segments."""
        self.ranges = [(bisect_left(self.bounds, start), bisect_left(self.bounds, end))
                       for start, end in self.spans]
        """Per window, [first, last) of the segments it spans."""
        depth = [0] * len(self.bounds)
        for first, last in self.ranges:
            depth[first] += 1
            depth[last] -= 1
        self._covered = [d > 0 for d in accumulate(depth)]
        # One segment per window: no two windows share an instant.
        self.disjoint = all(last - first == 1 for first, last in self.ranges)
        """Whether each window is one segment (no two windows share an instant)."""
        self.start, self.end = self.bounds[0], self.bounds[-1]
        # Windows of one length, end to end (UTC days, hours, minutes): a segment is a
        # division away, no search needed.
        lengths = {b - a for a, b in pairwise(self.bounds)}
        self.size = lengths.pop() if len(lengths) == 1 and all(self._covered) else None
        """The common segment length in ns when the windows tile their range end to end, else
        None."""

    def segment(self, instant: Instant) -> int | None:
        """The segment holding `instant`, None when no window contains it (MS-WIN-001)."""
        if self.size is not None:
            return ((instant - self.start) // self.size
                    if self.start <= instant < self.end else None)
        index = bisect_right(self.bounds, instant) - 1
        return index if 0 <= index < len(self._covered) and self._covered[index] else None


def request_windows(request: AggregationRequest) -> Windows:
    """Resolve and check the request's windows (MS-WIN-002/003), every problem at once."""
    problems: list[Problem] = []
    spans: list[Span] = []
    if (request.windows is None) == (request.tumbling is None):
        raise MeterspecError.single("invalid-request", "", "a request has exactly one of "
                                    "windows and tumbling", "MS-WIN-002")
    if request.windows is not None:
        if len(request.windows) > MAX_WINDOWS:
            raise _too_many("/windows")
        if not request.windows:
            raise MeterspecError.single("empty-list", "/windows",
                                        "a request needs at least one window", "MS-WIN-002")
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
    be period boundaries in that zone. Reports every problem at once."""
    problems: list[Problem] = []
    bounds: list[Instant] = []
    for name in ("start", "end"):
        try:
            bounds.append(parse_timestamp(getattr(tumbling, name), f"/tumbling/{name}"))
        except MeterspecError as error:
            problems.extend(error.problems)
    try:
        zone = time_zone(tumbling.time_zone)
    except MeterspecError as error:
        problems.extend(error.problems)
    if problems:
        raise MeterspecError(problems)
    start, end = bounds
    if start >= end:
        raise MeterspecError.single("invalid-window", "/tumbling",
                                    "start must be before end", "MS-WIN-001")
    boundaries = period_boundaries(zone, tumbling.size, start, end)
    for name, instant in (("start", start), ("end", end)):
        if instant not in boundaries:
            problems.append(Problem(
                "unaligned-window", f"/tumbling/{name}", f"{name} is not the beginning of a "
                f"{tumbling.size} in {tumbling.time_zone}", "MS-WIN-003"))
    if problems:
        raise MeterspecError(problems)
    spans = list(pairwise(boundaries[boundaries.index(start):boundaries.index(end) + 1]))
    if len(spans) > MAX_WINDOWS:
        raise _too_many("/tumbling")
    return spans


def time_zone(name: str, path: str = "/tumbling/timeZone") -> ZoneInfo:
    """The IANA zone from the pinned tzdata package, never from the host (MS-WIN-003)."""
    zone = _zone(name)
    if zone is None:
        raise _unknown_zone(name, path)
    return zone


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    """Cached by name alone: a request naming one zone at 100 000 paths reads it once."""
    parts = name.split("/")
    if not all(_ZONE_PART.fullmatch(part) for part in parts):
        return None
    try:
        with resources.files("tzdata.zoneinfo").joinpath(*parts).open("rb") as data:
            return ZoneInfo.from_file(data, key=name)
    except (OSError, ValueError):
        return None


def _unknown_zone(name: str, path: str) -> MeterspecError:
    return MeterspecError.single("invalid-time-zone", path,
                                 f"{name[:64]!r} is not an IANA time zone name", "MS-WIN-003")


def _too_many(path: str) -> MeterspecError:
    return MeterspecError.single("too-many-items", path, f"at most {MAX_WINDOWS} windows",
                                 "MS-WIN-004")


def period_boundaries(zone: ZoneInfo, size: str, start: Instant, end: Instant) -> list[Instant]:
    """Sorted period starts from the last one at or before `start` to the first at or after
    `end` (fewer if the calendar ends first). A period's repeated occurrence can come after a
    later period's first one (fall back), so instants are collected, then sorted."""
    # A repeated wall-clock minute or hour lies up to a DST shift (at most 2 hours anywhere)
    # before the start's own wall time, so minute and hour periods begin 3 hours earlier.
    lead = 3 * 3600 * NANOS_PER_SECOND if size in ("minute", "hour") else 0
    try:
        moment = to_datetime(max(start - lead, MIN_INSTANT))
        local = moment.astimezone(zone).replace(tzinfo=None)
    except OverflowError:
        return []
    period: datetime | None = _floor(local, size)
    found: set[Instant] = set()
    inside = 0
    while period is not None:
        instants = _instants(zone, period, size in ("minute", "hour"))
        found.update(instants)
        inside += sum(1 for instant in instants if instant > start)
        if inside > MAX_WINDOWS + 2:
            raise _too_many("/tumbling")
        if instants and min(instants) >= end:
            break
        period = _next(period, size)
    ordered = sorted(found)
    return ordered[max(bisect_right(ordered, start) - 1, 0):]


def _floor(local: datetime, size: str) -> datetime:
    if size == "minute":
        return local.replace(second=0, microsecond=0)
    if size == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    if size == "day":
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _instants(zone: ZoneInfo, wall: datetime, repeat: bool) -> list[Instant]:
    """Instants at which the zone's clock shows `wall`. A skipped wall time yields the instant
    the clock jumps past it (day and month) or nothing (minute and hour); a repeated one
    yields its first occurrence, and for minute and hour also its second. Instants outside
    the supported years yield nothing."""
    try:
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    except OverflowError:
        return []
    if first.astimezone(zone).replace(tzinfo=None) != wall:
        return [] if repeat else [from_datetime(first)]
    if repeat and second != first:
        return [from_datetime(first), from_datetime(second)]
    return [from_datetime(first)]


def wall_start(zone: ZoneInfo, wall: datetime) -> Instant | None:
    """The instant a period whose first moment is `wall` (naive, on the zone's clock) starts:
    when the clock first shows it, or when the clock jumps past it (MS-WIN-003). None
    outside the supported years."""
    instants = _instants(zone, wall, repeat=False)
    return instants[0] if instants else None


def _next(period: datetime, size: str) -> datetime | None:
    """The next period's local start, or None past year 9999."""
    try:
        if size == "minute":
            return period + timedelta(minutes=1)
        if size == "hour":
            return period + timedelta(hours=1)
        if size == "day":
            return period + timedelta(days=1)
        if period.month == 12:
            return period.replace(year=period.year + 1, month=1)
        return period.replace(month=period.month + 1)
    except (OverflowError, ValueError):
        return None
