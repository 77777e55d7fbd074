"""A deliberately broken meterspec, to prove the conformance suite catches real mistakes.

    python tests/conformance_fixtures/broken_adapter.py --fault NAME
    python tests/conformance_fixtures/broken_adapter.py --list

It is the reference adapter (`meterspec.conformance.adapter`) with exactly one fault injected by
wrapping or replacing meterspec internals, in this process only. Each fault is a mistake real
metering systems make; tests/test_conformance_teeth.py runs the suite against every one of them
and expects at least one case to fail.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import decimal
import json
import math
import re
import sys
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from meterspec import (
    aggregations,
    billing_periods,
    cloudevents,
    codec,
    domain_events,
    ids,
    ingestion,
    invoices,
    json_text,
    lines,
    metering,
    money,
    overlaps,
    plans,
    pricing,
    projection,
    quotas,
    ratelimit,
    readings,
    reconcile,
    timestamps,
    windows,
)
from meterspec import quantity as quantities
from meterspec.aggregations import Latest, Max, Min, Sum, TimeWeightedAverage, UniqueCount
from meterspec.conformance import adapter
from meterspec.contracts import (
    EventPayload,
    Filter,
    MeasurementSpec,
    MeterReading,
    MeterRecord,
    Window,
)
from meterspec.errors import MeterspecError
from meterspec.metering import Meter
from meterspec.quantity import EXACT, ZERO
from meterspec.readings import Aggregator
from meterspec.timestamps import Instant

Install = Callable[[], None]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAULTS: dict[str, tuple[str, Install]] = {}


def fault(name: str, description: str) -> Callable[[Install], Install]:
    def register(install: Install) -> Install:
        FAULTS[name] = (description, install)
        return install
    return register


def replace_everywhere(original: object, replacement: object) -> None:
    """Rebind every meterspec module attribute that is `original` (modules import functions by
    name, so patching only the defining module would miss most callers)."""
    for module in list(sys.modules.values()):
        if module is None or not module.__name__.startswith("meterspec"):
            continue
        for name, value in list(vars(module).items()):
            if value is original:
                setattr(module, name, replacement)


# --- aggregation ------------------------------------------------------------------------------

@fault("twa-half-up", "time-weighted-avg rounds half up instead of half to even (MS-AGG-015)")
def _twa_half_up() -> None:
    def divide_half_up(area: Decimal | int, length: int, scale: int) -> int:
        numerator, denominator = area.as_integer_ratio()
        denominator *= length
        scaled: int = numerator * 10**scale
        quotient, remainder = divmod(scaled, denominator)
        return quotient + 1 if 2 * remainder >= denominator else quotient
    aggregations._divide_half_even = divide_half_up


@fault("window-end-inclusive", "a record at a window's end counts in it: [start, end] "
       "instead of [start, end) (MS-WIN-001)")
def _window_end_inclusive() -> None:
    original = windows.Windows.__init__

    def init(self: windows.Windows, spans: list[tuple[Instant, Instant]]) -> None:
        original(self, [(start, end + 1) for start, end in spans])  # [start, end] in ns
        self.spans = sorted(set(spans))  # the readings still name the windows as given
    windows.Windows.__init__ = init  # type: ignore[method-assign]


@fault("latest-last-seen", "latest breaks ties at one instant by input order, last seen wins, "
       "instead of the greatest quantity (MS-AGG-009)")
def _latest_last_seen() -> None:
    def add(self: Latest, instant: Instant, quantity: Decimal,
            dimensions: Mapping[str, str]) -> None:
        if self.point is None or instant >= self.point[0]:
            self.point = (instant, quantity)
        self.count += 1
    Latest.add = add  # type: ignore[method-assign]


def _sums_in_states() -> None:
    """Sums and counts through their Sum and Count states, which the faults below replace:
    the reference keeps those over few disjoint windows in plain per-group lists instead."""
    if hasattr(readings, "_MAX_CELLS"):
        readings._MAX_CELLS = -1


@fault("float-sum", "sum adds binary floats and prints the float (MS-QTY-003, MS-AGG-006)")
def _float_sum() -> None:
    _sums_in_states()

    def add(self: Sum, instant: Instant, quantity: Decimal,
            dimensions: Mapping[str, str]) -> None:
        self.total = Decimal(repr(float(self.total) + float(quantity)))
        self.count += 1
    Sum.add = add  # type: ignore[method-assign]


@fault("twa-no-carry-in", "time-weighted-avg looks only at the window's own records: the level "
       "at the window's start is 0, not the last earlier record's (MS-AGG-012)")
def _twa_no_carry_in() -> None:
    divide = aggregations._divide_half_even

    def results(self: TimeWeightedAverage, spans: list[tuple[Instant, Instant]],
                scale: int) -> Iterator[tuple[Decimal, int]]:
        times = sorted(self.points)
        for start, end in spans:
            i = bisect_left(times, start)
            level, area, since, count = ZERO, ZERO, start, 0
            while i < len(times) and times[i] < end:
                area = EXACT.add(area, EXACT.multiply(level, Decimal(times[i] - since)))
                since = times[i]
                level, seen = self.points[since]
                count += seen
                i += 1
            area = EXACT.add(area, EXACT.multiply(level, Decimal(end - since)))
            yield EXACT.scaleb(Decimal(divide(area, end - start, scale)), -scale), count
    TimeWeightedAverage.results = results  # type: ignore[method-assign]


@fault("twa-rounded-per-segment", "time-weighted-avg rounds each step's share of the "
       "window (level x duration / window length) to scale, then adds the rounded shares, "
       "instead of rounding the exact average once (MS-AGG-015)")
def _twa_rounded_per_segment() -> None:
    original = TimeWeightedAverage.results
    divide = aggregations._divide_half_even

    def results(self: TimeWeightedAverage, spans: list[tuple[Instant, Instant]],
                scale: int) -> Iterator[tuple[Decimal, int]]:
        times = sorted(self.points)
        counts = [count for _, count in original(self, spans, scale)]
        for (start, end), count in zip(spans, counts, strict=True):

            def share(level: Decimal, length: int, start: int = start, end: int = end) -> Decimal:
                area = EXACT.multiply(level, Decimal(length))
                return EXACT.scaleb(Decimal(divide(area, end - start, scale)), -scale)
            i = bisect_right(times, start) - 1
            level = (self.points[times[i]][0] if i >= 0
                     else self.before[1] if self.before is not None else ZERO)
            since, total = start, ZERO
            for instant in times[i + 1:]:
                if instant >= end:
                    break
                total = EXACT.add(total, share(level, instant - since))
                since, level = instant, self.points[instant][0]
            yield EXACT.add(total, share(level, end - since)), count
    TimeWeightedAverage.results = results  # type: ignore[method-assign]


def _merge_tenant_axis(axis: int) -> None:
    """Group records without one tenant axis (0 workspaceID, 1 universeID); each merged
    reading reports the tenant of the first record it saw."""
    original = Aggregator.add
    first_seen: dict[tuple[object, ...], tuple[str, str]] = {}

    def add(self: Aggregator, workspace: str, universe: str, subject: str, unit: str,
            dimensions: Mapping[str, str], instant: Instant, quantity: Decimal) -> None:
        kept = universe if axis == 0 else workspace
        key = (id(self), kept, subject, unit, *(dimensions.get(n) for n in self.group_by))
        workspace, universe = first_seen.setdefault(key, (workspace, universe))
        original(self, workspace, universe, subject, unit, dimensions, instant, quantity)
    Aggregator.add = add  # type: ignore[method-assign]


@fault("tenants-merged-workspace", "aggregation groups ignore workspaceID: two workspaces' "
       "usage of the same subject is summed together (MS-AGG-004, MS-EVT-002)")
def _tenants_merged_workspace() -> None:
    _merge_tenant_axis(0)


@fault("tenants-merged-universe", "aggregation groups ignore universeID: test and production "
       "usage of the same subject is summed together (MS-AGG-004, MS-EVT-002)")
def _tenants_merged_universe() -> None:
    _merge_tenant_axis(1)


@fault("empty-window-omitted", "windows without records yield no reading, as a SQL GROUP BY "
       "would (MS-AGG-010, MS-AGG-017)")
def _empty_window_omitted() -> None:
    original = Aggregator.iter_readings

    def iter_readings(self: Aggregator) -> Iterator[MeterReading]:
        return (r for r in original(self) if r.record_count > 0)
    Aggregator.iter_readings = iter_readings  # type: ignore[method-assign]


@fault("min-max-lexicographic", "min and max compare quantity strings, so '10' < '9' "
       "(MS-AGG-008)")
def _min_max_lexicographic() -> None:
    def minimum(self: Min, instant: Instant, quantity: Decimal,
            dimensions: Mapping[str, str]) -> None:
        if self.value is None or str(quantity) < str(self.value):
            self.value = quantity
        self.count += 1

    def maximum(self: Max, instant: Instant, quantity: Decimal,
            dimensions: Mapping[str, str]) -> None:
        if self.value is None or str(quantity) > str(self.value):
            self.value = quantity
        self.count += 1
    Min.add = minimum  # type: ignore[method-assign]
    Max.add = maximum  # type: ignore[method-assign]


@fault("group-missing-as-empty", "a record without a groupBy dimension is grouped under '' "
       "instead of null (MS-AGG-004, MS-ID-003)")
def _group_missing_as_empty() -> None:
    original = Aggregator.add

    def add(self: Aggregator, workspace: str, universe: str, subject: str, unit: str,
            dimensions: Mapping[str, str], instant: Instant, quantity: Decimal) -> None:
        filled = {**{name: "" for name in self.group_by}, **dimensions}
        original(self, workspace, universe, subject, unit, filled, instant, quantity)
    Aggregator.add = add  # type: ignore[method-assign]


@fault("fixed-length-days", "tumbling days are 24 hours from the start, ignoring daylight "
       "saving time (MS-WIN-003)")
def _fixed_length_days() -> None:
    original = windows.tumbling_spans
    day = 86_400_000_000_000  # nanoseconds

    def tumbling_spans(tumbling: Any) -> list[tuple[Instant, Instant]]:
        spans = original(tumbling)
        if tumbling.size != "day":
            return spans
        start = spans[0][0]
        return [(start + k * day, start + (k + 1) * day) for k in range(len(spans))]
    replace_everywhere(original, tumbling_spans)


@fault("twa-tie-last-seen", "time-weighted-avg keeps the last-seen of two records at one instant "
       "instead of the greatest quantity (MS-AGG-011)")
def _twa_tie_last_seen() -> None:
    def add(self: TimeWeightedAverage, instant: Instant, quantity: Decimal) -> None:
        if instant < self.range_start:
            if self.before is None or instant >= self.before[0]:
                self.before = (instant, quantity)
            return
        held = self.points.get(instant)
        self.points[instant] = (quantity, 1 if held is None else held[1] + 1)
    TimeWeightedAverage.add = add  # type: ignore[method-assign]


@fault("twa-covered-span", "time-weighted-avg divides by the time since the window's first "
       "record instead of the whole window (MS-AGG-013)")
def _twa_covered_span() -> None:
    original = TimeWeightedAverage.results

    def results(self: TimeWeightedAverage, spans: list[tuple[Instant, Instant]],
                scale: int) -> Iterator[tuple[Decimal, int]]:
        times = sorted(self.points)
        for start, end in spans:
            i = bisect_left(times, start)
            carried = self.before is not None or i > 0
            first = times[i] if i < len(times) and times[i] < end else end
            begin = start if carried or first == end else first
            yield next(original(self, [(begin, end)], scale))
    TimeWeightedAverage.results = results  # type: ignore[method-assign]


@fault("twa-scale-ignored", "time-weighted-avg always rounds to 6 digits, whatever the "
       "request's scale (MS-AGG-015)")
def _twa_scale_ignored() -> None:
    original = Aggregator.__init__

    def init(self: Aggregator, request: Any, **options: Any) -> None:
        original(self, request, **options)
        self.scale = 6
    Aggregator.__init__ = init  # type: ignore[method-assign]


@fault("empty-sum-null", "sum over an empty window is null, as SQL's SUM of no rows "
       "(MS-AGG-005, MS-AGG-010)")
def _empty_sum_null() -> None:
    _sums_in_states()

    def result(self: Sum) -> Decimal | None:
        return self.total if self.count else None
    Sum.result = result  # type: ignore[method-assign]


@fault("unique-count-counts-missing", "unique-count counts records without the dimension as one "
       "more distinct value (MS-AGG-016)")
def _unique_count_counts_missing() -> None:
    def add(self: UniqueCount, instant: Instant, quantity: Decimal,
            dimensions: Mapping[str, str]) -> None:
        self.values.add(dimensions.get(self.dimension, "\x00missing"))
        self.count += 1
    UniqueCount.add = add  # type: ignore[method-assign]


@fault("overlap-first-window-only", "a record inside overlapping windows counts only in the "
       "first of them (MS-WIN-002)")
def _overlap_first_window_only() -> None:
    def window_results(states: Mapping[int, aggregations.WindowState],
                       ranges: list[tuple[int, int]],
                       new_state: Callable[[], aggregations.WindowState],
                       ) -> Iterator[tuple[Decimal | None, int]]:
        owner: dict[int, int] = {}  # segment -> the first window holding it
        for index, (first, last) in enumerate(ranges):
            for segment in range(first, last):
                owner.setdefault(segment, index)
        for index, (first, last) in enumerate(ranges):
            total = new_state()
            for segment in range(first, last):
                if owner[segment] == index and segment in states:
                    total.merge(states[segment])
            yield total.result(), total.count
    replace_everywhere(overlaps.window_results, window_results)


@fault("readings-in-input-order", "readings come out in the order their groups first appear in "
       "the input, not sorted (MS-AGG-017)")
def _readings_in_input_order() -> None:
    first_seen: dict[object, int] = {}
    init, add = Aggregator.__init__, Aggregator.add

    def start(self: Aggregator, request: Any, **options: Any) -> None:
        first_seen.clear()
        init(self, request, **options)

    def remember(self: Aggregator, workspace: str, universe: str, subject: str, unit: str,
                 dimensions: Mapping[str, str], instant: Instant, quantity: Decimal) -> None:
        key = (workspace, universe, subject, unit,
               tuple(dimensions.get(name) for name in self.group_by))
        first_seen.setdefault(key, len(first_seen))
        add(self, workspace, universe, subject, unit, dimensions, instant, quantity)

    def ordered_keys(self: Aggregator) -> list[Any]:
        return sorted(self.group_keys(),
                      key=lambda key: first_seen.get(key, len(first_seen)))
    Aggregator.__init__ = start  # type: ignore[method-assign]
    Aggregator.add = remember  # type: ignore[method-assign]
    Aggregator.ordered_keys = ordered_keys  # type: ignore[method-assign]


@fault("twa-float", "time-weighted-avg divides in binary floating point, then rounds "
       "(MS-AGG-015)")
def _twa_float() -> None:
    def divide_float(area: Decimal | int, length: int, scale: int) -> int:
        factor: int = 10**scale
        return round(float(area) / length * factor)
    aggregations._divide_half_even = divide_float


@fault("reading-id-no-group", "reading ids leave out the groupBy values, so the groups of one "
       "subject share ids (MS-ID-003)")
def _reading_id_no_group() -> None:
    original = ids.reading_ids

    def reading_ids(workspace: str, universe: str, subject: str, unit: str, aggregation: str,
                    parameter: str, group: tuple[tuple[str, str | None], ...] = (),
                    ) -> Callable[[bytes], str]:
        return original(workspace, universe, subject, unit, aggregation, parameter, ())
    replace_everywhere(original, reading_ids)


@fault("fixed-length-months", "tumbling months are 30 days from the start (MS-WIN-003)")
def _fixed_length_months() -> None:
    original = windows.tumbling_spans
    month = 30 * 86_400_000_000_000  # nanoseconds

    def tumbling_spans(tumbling: Any) -> list[tuple[Instant, Instant]]:
        spans = original(tumbling)
        if tumbling.size != "month":
            return spans
        start = spans[0][0]
        return [(start + k * month, start + (k + 1) * month) for k in range(len(spans))]
    replace_everywhere(original, tumbling_spans)


def _lenient_windows(accept: Callable[[list[tuple[Instant, Instant]]], bool]) -> None:
    """Explicit windows the reference rejects are accepted when `accept` says so."""
    original = windows.request_windows

    def request_windows(request: Any) -> windows.Windows:
        if request.windows and request.tumbling is None:
            try:
                spans = [(timestamps.parse_timestamp(w.start), timestamps.parse_timestamp(w.end))
                         for w in request.windows]
            except MeterspecError:
                return original(request)
            if all(start <= end for start, end in spans) and accept(spans):
                return windows.Windows(spans)
        return original(request)
    replace_everywhere(original, request_windows)


@fault("zero-length-window-accepted", "a window whose start equals its end is accepted and "
       "yields empty readings (MS-WIN-001)")
def _zero_length_window_accepted() -> None:
    _lenient_windows(lambda spans: len(set(spans)) == len(spans))


@fault("duplicate-window-accepted", "the same window listed twice is accepted and read once, "
       "as a set would (MS-WIN-002)")
def _duplicate_window_accepted() -> None:
    _lenient_windows(lambda spans: all(start < end for start, end in spans))


# --- quantities and timestamps -------------------------------------------------------------

@fault("exponent-output", "quantities are printed with Decimal's str(), so 1000 becomes '1E+3' "
       "(MS-QTY-004)")
def _exponent_output() -> None:
    def format_quantity(value: Decimal) -> str:
        return "0" if value.is_zero() else str(value.normalize(EXACT))
    replace_everywhere(quantities.format_quantity, format_quantity)


@fault("trailing-zeros-kept", "quantities keep the zeros they were written with: '1.50' stays "
       "'1.50' (MS-QTY-004)")
def _trailing_zeros_kept() -> None:
    def format_quantity(value: Decimal) -> str:
        return format(value, "f")
    replace_everywhere(quantities.format_quantity, format_quantity)


_NOT_FINITE = re.compile(r"[+-]?(nan|inf|infinity)", re.IGNORECASE)


@fault("accept-nan", "quantities 'NaN' and 'Infinity' are accepted, as Decimal() and "
       "float() accept them (MS-QTY-001)")
def _accept_nan() -> None:
    original = quantities.parse_quantity

    def parse_quantity(text: object, path: str = "") -> Decimal:
        if isinstance(text, str) and _NOT_FINITE.fullmatch(text):
            return Decimal(text)
        return original(text, path)
    replace_everywhere(original, parse_quantity)


@fault("lenient-quantity", "quantities are parsed by Decimal(): '+1', '.5', '5.', '1_000' and "
       "' 1 ' are accepted (MS-QTY-001)")
def _lenient_quantity() -> None:
    original = quantities.parse_quantity

    def parse_quantity(text: object, path: str = "") -> Decimal:
        try:
            return original(text, path)
        except MeterspecError as error:
            if error.code != "invalid-quantity" or not isinstance(text, str):
                raise
            try:
                value = Decimal(text)
            except ArithmeticError:
                raise error from None
            if not value.is_finite():
                raise
            return value
    replace_everywhere(original, parse_quantity)


@fault("quantity-bounds-ignored", "quantities of any size are accepted, as an unbounded decimal "
       "type would (MS-QTY-002)")
def _quantity_bounds_ignored() -> None:
    original = quantities.parse_quantity

    def parse_quantity(text: object, path: str = "") -> Decimal:
        try:
            return original(text, path)
        except MeterspecError as error:
            if error.code != "quantity-out-of-range" or not isinstance(text, str):
                raise
            value = Decimal(text)
            if abs(value.adjusted()) > 200 or len(value.as_tuple().digits) > 200:
                raise  # 1e999999999 would cost this process gigabytes to print
            return value
    replace_everywhere(original, parse_quantity)


@fault("exponent-digits-unbounded", "a quantity's or an amount's exponent may have any "
       "number of digits, so 0e99999 is 0 and 1e00001 is 10 (MS-QTY-002, MS-MNY-002)")
def _exponent_digits_unbounded() -> None:
    quantities.MAX_EXPONENT_DIGITS = 1000


@fault("negative-rejected", "negative quantities are rejected as invalid, as a validator that "
       "thinks usage cannot go down would (MS-QTY-001)")
def _negative_rejected() -> None:
    original = quantities.parse_quantity

    def parse_quantity(text: object, path: str = "") -> Decimal:
        value = original(text, path)
        if value < 0:
            raise MeterspecError.single("invalid-quantity", path, "negative", "MS-QTY-001")
        return value
    replace_everywhere(original, parse_quantity)


@fault("millisecond-precision", "timestamps keep milliseconds only, as JavaScript's Date and "
       "Java's toEpochMilli do (MS-TIME-003)")
def _millisecond_precision() -> None:
    original = timestamps.parse_timestamp

    def parse_timestamp(text: object, path: str = "") -> Instant:
        nanos = original(text, path)
        return nanos - nanos % 1_000_000
    replace_everywhere(original, parse_timestamp)


@fault("microsecond-truncation", "timestamps are truncated to the microsecond toward the "
       "past, as version 1.0 said (MS-TIME-003 now carries nanoseconds)")
def _microsecond_truncation() -> None:
    original = timestamps.parse_timestamp

    def parse_timestamp(text: object, path: str = "") -> Instant:
        nanos = original(text, path)
        return nanos - nanos % 1000
    replace_everywhere(original, parse_timestamp)


_PAST_NINTH = re.compile(r"(\.[0-9]{9})([0-9]+)")


@fault("tenth-digit-rejected", "a timestamp with more than nine fraction digits is rejected, "
       "zeros past the ninth too, as a parser of at most nine digits does (MS-TIME-003)")
def _tenth_digit_rejected() -> None:
    original = timestamps.parse_timestamp

    def parse_timestamp(text: object, path: str = "") -> Instant:
        if isinstance(text, str) and _PAST_NINTH.search(text):
            raise MeterspecError.single("invalid-timestamp", path, "more than nine fraction "
                                        "digits", "MS-TIME-001")
        return original(text, path)
    replace_everywhere(original, parse_timestamp)


@fault("tenth-digit-truncated", "fraction digits past the ninth are cut off, non-zero ones "
       "too, instead of rejecting a non-zero one (MS-TIME-003)")
def _tenth_digit_truncated() -> None:
    original = timestamps.parse_timestamp

    def parse_timestamp(text: object, path: str = "") -> Instant:
        if isinstance(text, str):
            text = _PAST_NINTH.sub(lambda match: match.group(1), text)
        return original(text, path)
    replace_everywhere(original, parse_timestamp)


@fault("year-zero-invalid", "a date in year 0000 is invalid-timestamp, as a calendar that "
       "starts at year 1 says, instead of timestamp-out-of-range (MS-TIME-001)")
def _year_zero_invalid() -> None:
    original = timestamps.parse_timestamp

    def parse_timestamp(text: object, path: str = "") -> Instant:
        try:
            return original(text, path)
        except MeterspecError as error:
            if (error.code == "timestamp-out-of-range" and isinstance(text, str)
                    and text.startswith("0000-")):
                raise MeterspecError.single("invalid-timestamp", path, "no year 0",
                                            "MS-TIME-001") from None
            raise
    replace_everywhere(original, parse_timestamp)


def _trunc_div(a: int, b: int) -> int:
    """Integer division rounded toward zero, as C, Go, Java and Rust divide."""
    return -(-a // b) if (a < 0) != (b < 0) else a // b


_FIXED_PERIODS = (60 * timestamps.NANOS_PER_SECOND, 3600 * timestamps.NANOS_PER_SECOND,
                  timestamps.NANOS_PER_DAY)


@fault("division-toward-zero", "instants are divided by a window size or a second with "
       "truncation toward zero, as C, Go and Java integer division does: before 1970 a record "
       "lands in the next window and a fractional instant is written after the epoch "
       "(MS-TIME-003)")
def _division_toward_zero() -> None:
    def format_timestamp(instant: Instant) -> str:
        seconds = _trunc_div(instant, timestamps.NANOS_PER_SECOND)
        nanos = abs(instant - seconds * timestamps.NANOS_PER_SECOND)
        moment = EPOCH + timedelta(seconds=seconds)
        text = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
                f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")
        return text + ("." + f"{nanos:09d}".rstrip("0") if nanos else "") + "Z"
    replace_everywhere(timestamps.format_timestamp, format_timestamp)
    original = windows.Windows.segment

    def segment(self: windows.Windows, instant: Instant) -> int | None:
        lengths = {end - start for start, end in self.spans}
        size = next(iter(lengths)) if len(lengths) == 1 else 0
        if size not in _FIXED_PERIODS or any(start % size for start, _ in self.spans):
            return original(self, instant)
        start = _trunc_div(instant, size) * size  # the window a fixed-size period index names
        if all(start != s for s, _ in self.spans):
            return None
        return original(self, start)
    windows.Windows.segment = segment  # type: ignore[method-assign]


_OFFSET = re.compile(r"[+-][0-9]{2}:[0-9]{2}$")


@fault("offset-ignored", "a timestamp's UTC offset is dropped, local time read as UTC "
       "(MS-TIME-002)")
def _offset_ignored() -> None:
    original = timestamps.parse_timestamp

    def parse_timestamp(text: object, path: str = "") -> Instant:
        nanos = original(text, path)  # still reject what is invalid with its offset
        if isinstance(text, str) and _OFFSET.search(text):
            return original(_OFFSET.sub("Z", text), path)
        return nanos
    replace_everywhere(original, parse_timestamp)


_FIELDS = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                     r"(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2})")


@fault("calendar-rollover", "impossible dates and times roll over as JavaScript's Date.UTC "
       "does: Feb 30 is Mar 1, second 60 is the next minute (MS-TIME-001)")
def _calendar_rollover() -> None:
    original = timestamps.parse_timestamp

    def parse_timestamp(text: object, path: str = "") -> Instant:
        try:
            return original(text, path)
        except MeterspecError as error:
            match = _FIELDS.fullmatch(text) if isinstance(text, str) else None
            if error.code != "invalid-timestamp" or match is None:
                raise
            year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
            fraction, offset = match.group(7), match.group(8)
            if not 1 <= month <= 12 or year == 0:  # no year 0 in Python's date
                raise
            days = date(year, month, 1).toordinal() - date(1970, 1, 1).toordinal() + day - 1
            seconds = days * 86_400 + hour * 3600 + minute * 60 + second
            if offset not in ("Z", "z"):
                sign = -1 if offset[0] == "-" else 1
                seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
            return seconds * 1_000_000_000 + (int(fraction.ljust(9, "0")[:9]) if fraction else 0)
    replace_everywhere(original, parse_timestamp)


# --- metering ---------------------------------------------------------------------------------

@fault("record-id-no-tenant", "record ids hash the event id, unit and source but not "
       "workspaceID and universeID (MS-ID-002)")
def _record_id_no_tenant() -> None:
    def record_id(workspace: str, universe: str, event_id: str, unit: str, source: str) -> str:
        return ids.digest_id("rec_", ("meterspec/record/v1", event_id, unit, source))
    replace_everywhere(ids.record_id, record_id)


@fault("notin-missing-no-match", "notIn does not match an event without the property, as SQL's "
       "NOT IN with NULL (MS-MET-005)")
def _notin_missing_no_match() -> None:
    original = metering.compile_filter

    def compile_filter(spec: Filter, path: str) -> metering.Predicate:
        predicate = original(spec, path)
        if spec.not_in is None or spec.property is None:
            return predicate
        name = spec.property
        return lambda props: name in props and predicate(props)
    replace_everywhere(original, compile_filter)


@fault("dimensions-include-source", "without a dimensions list every property becomes a "
       "dimension, source properties included (MS-MET-006)")
def _dimensions_include_source() -> None:
    original = Meter.dimensions

    def dimensions(self: Meter, props: Mapping[str, str]) -> dict[str, str]:
        if self._dimensions is None:
            return {k: props[k] for k in sorted(props)}
        return original(self, props)
    Meter.dimensions = dimensions  # type: ignore[method-assign]


@fault("event-types-ignored", "a measurement's eventTypes are validated, then ignored: every "
       "type matches (MS-MET-003)")
def _event_types_ignored() -> None:
    original = Meter._rule

    def rule(spec: MeasurementSpec, path: str) -> Any:
        return original(spec, path)._replace(event_types=None)
    Meter._rule = staticmethod(rule)  # type: ignore[method-assign]


@fault("metered-at-verbatim", "meteredAt is copied as given, not written in canonical form "
       "(MS-MET-007, MS-TIME-004)")
def _metered_at_verbatim() -> None:
    original = Meter.records

    def records(self: Meter, event: Any, metered_at: str | None = None) -> list[MeterRecord]:
        made = original(self, event, metered_at)
        if metered_at is None:
            return made
        return [msgspec.structs.replace(r, metered_at=metered_at) for r in made]
    Meter.records = records  # type: ignore[method-assign]


@fault("record-id-constant-raw", "a constant measurement's record id uses the quantity as written "
       "in the config ('constant:1.0'), not its canonical form (MS-ID-002)")
def _record_id_constant_raw() -> None:
    original = Meter._rule

    def rule(spec: MeasurementSpec, path: str) -> Any:
        made = original(spec, path)
        if spec.quantity is None:
            return made
        return made._replace(source="constant:" + spec.quantity)
    Meter._rule = staticmethod(rule)  # type: ignore[method-assign]


@fault("id-length-in-characters", "ids length-prefix each field with its length in characters, "
       "not UTF-8 bytes, as JavaScript's string.length would (MS-ID-001)")
def _id_length_in_characters() -> None:
    def encode_fields(fields: Iterable[str]) -> bytes:
        return b"".join(b"%d:%b" % (len(f), f.encode()) for f in fields)
    replace_everywhere(ids.encode_fields, encode_fields)


@fault("unicode-normalized", "identifiers are NFC-normalised on the way in, so composed and "
       "decomposed spellings meet (MS-EVT-002)")
def _unicode_normalized() -> None:
    original = codec.decode_event

    def decode_event(data: bytes | str) -> Any:
        event = original(data)
        fields = {name: unicodedata.normalize("NFC", getattr(event, name)) for name in
                  ("id", "workspace_id", "universe_id", "type", "subject")}
        return msgspec.structs.replace(event, **fields)
    replace_everywhere(original, decode_event)


@fault("partial-event-billed", "an event whose measurement has a bad or missing source "
       "property still yields its other records (MS-MET-008)")
def _partial_event_billed() -> None:
    original = Meter.measure

    def measure(self: Meter, event: EventPayload, dimensions: bool = True
                ) -> tuple[Instant, list[metering.Measured], dict[str, str]]:
        try:
            return original(self, event, dimensions)
        except MeterspecError as error:
            if not all(p.path.startswith("/properties/") for p in error.problems):
                raise
            every = self._rules  # the bad measurements never match; the others stay in place
            self._rules = tuple(
                r if r.source_property is None
                or quantities.is_quantity(event.properties.get(r.source_property))
                else r._replace(matches=lambda _: False) for r in every)
            try:
                instant, measured, dims = original(self, event, dimensions)
            finally:
                self._rules = every
            if not measured:
                raise
            return instant, measured, dims
    Meter.measure = measure  # type: ignore[method-assign]


_EVENT_FIELDS = frozenset({"id", "workspaceID", "universeID", "type", "subject", "time",
                           "properties"})


@fault("unknown-field-ignored", "unknown event fields are dropped silently, so a misspelt "
       "'workspaceId' is not reported (MS-EVT-001)")
def _unknown_field_ignored() -> None:
    original = codec.decode_event

    def decode_event(data: bytes | str) -> Any:
        try:
            document = json.loads(data)
        except ValueError:
            return original(data)
        if isinstance(document, dict):
            kept = {k: v for k, v in document.items() if k in _EVENT_FIELDS}
            data = json.dumps(kept, ensure_ascii=False).encode()
        return original(data)
    replace_everywhere(original, decode_event)


# --- pricing ----------------------------------------------------------------------------------

@fault("tier-upto-exclusive", "a tier's upTo is exclusive: a quantity exactly at a boundary "
       "belongs to the next tier, as in systems that start the next tier at the boundary "
       "(MS-PRC-007)")
def _tier_upto_exclusive() -> None:
    def graduated(billable: Decimal, tiers: list[Any]) -> list[plans.RatedTier]:
        rows: list[plans.RatedTier] = []
        lower = ZERO
        for index, tier in enumerate(tiers):
            if index > 0 and billable < lower:
                break
            top = billable if tier.up_to is None else min(billable, tier.up_to)
            units = EXACT.subtract(top, lower)
            entered = units > 0 or (index > 0 and billable >= lower)
            if entered or not units.is_zero():
                rows.append(pricing._row(index, lower, tier, units,
                                         tier.flat_fee if entered else ZERO))
            if tier.up_to is None:
                break
            lower = tier.up_to
        return rows

    def volume(billable: Decimal, tiers: list[Any]) -> list[plans.RatedTier]:
        if billable <= 0:
            return original_volume(billable, tiers)
        lower = ZERO
        for index, tier in enumerate(tiers):
            if tier.up_to is None or billable < tier.up_to:
                return [pricing._row(index, lower, tier, billable, tier.flat_fee)]
            lower = tier.up_to
        raise AssertionError("unreachable")
    original_volume = pricing._volume
    pricing._graduated = graduated
    pricing._volume = volume


@fault("money-half-up", "amounts are rounded half up (away from zero on ties), the default of "
       "most billing systems, instead of half to even (MS-MNY-005)")
def _money_half_up() -> None:
    context = decimal.Context(prec=EXACT.prec, rounding=decimal.ROUND_HALF_UP,
                              Emax=EXACT.Emax, Emin=EXACT.Emin)

    def round_money(value: Decimal, currency: Any) -> Decimal:
        found = currency if isinstance(currency, money.Currency) else money.currency(currency)
        rounded = value.quantize(Decimal(1).scaleb(-found.minor_units), context=context)
        return ZERO if rounded.is_zero() else rounded
    replace_everywhere(money.round_money, round_money)


@fault("round-each-tier", "each tier's amount is rounded to cents before the tiers are added, "
       "not the line once at the end (MS-MNY-005)")
def _round_each_tier() -> None:
    original = pricing._row

    def row(index: int, lower: Decimal, tier: Any, units: Decimal,
            fee: Decimal) -> plans.RatedTier:
        made = original(index, lower, tier, units, fee)
        cents = Decimal(made.amount).quantize(Decimal("0.01"), context=decimal.Context(
            prec=EXACT.prec, rounding=decimal.ROUND_HALF_EVEN))
        return msgspec.structs.replace(made, amount=quantities.format_quantity(cents))
    pricing._row = row


@fault("first-tier-fee-at-zero", "the first tier's flat fee is charged at zero usage, as if "
       "it were a fixed fee (MS-PRC-011)")
def _first_tier_fee_at_zero() -> None:
    graduated, volume = pricing._graduated, pricing._volume

    def at_zero(model: Callable[[Decimal, list[Any]], list[plans.RatedTier]]
                ) -> Callable[[Decimal, list[Any]], list[plans.RatedTier]]:
        def rated(billable: Decimal, tiers: list[Any]) -> list[plans.RatedTier]:
            if billable.is_zero():
                return [pricing._row(0, ZERO, tiers[0], ZERO, tiers[0].flat_fee)]
            return model(billable, tiers)
        return rated
    pricing._graduated = at_zero(graduated)  # type: ignore[assignment]
    pricing._volume = at_zero(volume)  # type: ignore[assignment]


@fault("package-ignores-included", "a package charge counts packages over the raw quantity, "
       "its included units forgotten (MS-PRC-005, MS-PRC-012)")
def _package_ignores_included() -> None:
    original = pricing._rate

    def rate(charge: plans.Charge, quantity: Decimal, found: money.Currency) -> Any:
        if charge.model == "package":
            charge = msgspec.structs.replace(charge, included_quantity=None)
        return original(charge, quantity, found)
    pricing._rate = rate


@fault("package-floor", "the package count is rounded down, as an integer division would "
       "(MS-PRC-012)")
def _package_floor() -> None:
    def ceil_packages(billable: Decimal, size: Decimal) -> Decimal:
        return ZERO if billable <= 0 else EXACT.divide_int(billable, size)
    pricing._ceil_packages = ceil_packages


@fault("minimum-only-with-usage", "a charge's minimum applies only when there was usage, not at "
       "zero or negative usage (MS-PRC-014)")
def _minimum_only_with_usage() -> None:
    original = pricing._rate

    def rate(charge: plans.Charge, quantity: Decimal, found: money.Currency) -> Any:
        if quantity <= 0:
            charge = msgspec.structs.replace(charge, minimum_amount=None)
        return original(charge, quantity, found)
    pricing._rate = rate


@fault("negative-usage-zero", "a negative quantity is rated as 0, so a credit is silently "
       "dropped (MS-PRC-011)")
def _negative_usage_zero() -> None:
    original = pricing._rate

    def rate(charge: plans.Charge, quantity: Decimal, found: money.Currency) -> Any:
        return original(charge, max(quantity, ZERO), found)
    pricing._rate = rate


@fault("total-rounded-again", "a plan's total is the precise sum rounded once more, not the sum "
       "of the rounded lines (MS-MNY-007)")
def _total_rounded_again() -> None:
    original = adapter.OPERATIONS["rate-plan"]

    def rate_plan(case_input: dict[str, Any]) -> dict[str, Any]:
        answer = original(case_input)
        for rated in answer.get("output", []):
            precise = Decimal(rated["total"]["precise"])
            rated["total"]["rounded"] = quantities.format_quantity(
                money.round_money(precise, rated["currency"]))
        return answer
    adapter.OPERATIONS["rate-plan"] = rate_plan


@fault("version-highest-number", "of the plan versions effective at the period's start the "
       "highest version number wins, whatever their effectiveFrom (MS-PRC-003)")
def _version_highest_number() -> None:
    def select_plan(versions: Iterable[plans.Plan], plan_id: str,
                    window_start: str | Instant) -> plans.Plan | None:
        at = (timestamps.parse_timestamp(window_start) if isinstance(window_start, str)
              else window_start)
        effective = [p for p in versions if p.id == plan_id
                     and timestamps.parse_timestamp(p.effective_from) <= at
                     and (p.effective_to is None
                          or at < timestamps.parse_timestamp(p.effective_to))]
        return max(effective, key=lambda p: p.version) if effective else None
    plans.select_plan = select_plan


@fault("version-tie-first-listed", "of plan versions effective from the same instant, "
       "the first listed wins instead of the highest version (MS-PRC-003)")
def _version_tie_first_listed() -> None:
    def timeline(versions: list[plans.Plan]) -> tuple[list[Instant], list[plans.Plan | None]]:
        spans = sorted(((timestamps.parse_timestamp(p.effective_from),
                         None if p.effective_to is None
                         else timestamps.parse_timestamp(p.effective_to), i)
                        for i, p in enumerate(versions)), key=lambda span: span[0])
        bounds = sorted({t for start, end, _ in spans for t in (start, end) if t is not None})
        chosen: list[plans.Plan | None] = []
        for bound in bounds:
            effective = [(-start, i) for start, end, i in spans
                         if start <= bound and (end is None or bound < end)]
            chosen.append(versions[min(effective)[1]] if effective else None)
        return bounds, chosen
    plans._timeline = timeline


@fault("effective-to-inclusive", "a plan version is still effective at its effectiveTo "
       "instant (MS-PRC-002)")
def _effective_to_inclusive() -> None:
    original = plans._timeline

    def timeline(versions: list[plans.Plan]) -> tuple[list[Instant], list[plans.Plan | None]]:
        # Effective over [from, to] in nanoseconds: [from, to + 1 ns).
        later = [p if p.effective_to is None else msgspec.structs.replace(
            p, effective_to=timestamps.format_timestamp(
                timestamps.parse_timestamp(p.effective_to) + 1)) for p in versions]
        bounds, chosen = original(later)
        back = {id(shifted): plan for shifted, plan in zip(later, versions, strict=True)}
        return bounds, [None if c is None else back[id(c)] for c in chosen]
    plans._timeline = timeline


# --- ingestion --------------------------------------------------------------------------------

class _WorkspaceBlindKey(tuple[str, str, str]):
    """An identity that compares and hashes without its workspaceID."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, tuple) and tuple(self[1:]) == tuple(other[1:])

    def __hash__(self) -> int:
        return hash(tuple(self[1:]))


@fault("dedup-ignores-workspace", "deduplication keys on (universeID, id), so one workspace's "
       "event id hides another workspace's (MS-ING-001)")
def _dedup_ignores_workspace() -> None:
    original_ingest, original_identity = ingestion.ingest, ingestion.identity

    def identity(event: EventPayload) -> tuple[str, str, str]:
        return _WorkspaceBlindKey((event.workspace_id, event.universe_id, event.id))

    def ingest(batch: Iterable[EventPayload],
               state: ingestion.SeenState = ingestion.EMPTY) -> ingestion.IngestResult:
        blind = ingestion.SeenState._own(
            {_WorkspaceBlindKey(key): seen for key, seen in state.items()}, state.horizon)
        ingestion.identity = identity
        try:
            return original_ingest(batch, blind)
        finally:
            ingestion.identity = original_identity
    ingestion.ingest = ingest


@fault("conflict-overwrites", "the same identity with another payload replaces the accepted "
       "one (last write wins) instead of being reported (MS-ING-004)")
def _conflict_overwrites() -> None:
    original = ingestion.ingest

    def ingest(batch: Iterable[EventPayload],
               state: ingestion.SeenState = ingestion.EMPTY) -> ingestion.IngestResult:
        events = list(batch)
        result = original(events, state)
        seen = {key: result.state.get(key) for key in result.state}
        outcomes = list(result.outcomes)
        for conflict in result.conflicts:
            instant = timestamps.parse_timestamp(events[conflict.position].time)
            seen[conflict.identity] = ingestion.Seen(conflict.conflicting_digest, instant)
            outcomes[conflict.position] = "accepted"
        kept = {key: value for key, value in seen.items() if value is not None}
        return result._replace(conflicts=(), outcomes=tuple(outcomes),
                               state=ingestion.SeenState._own(kept, result.state.horizon))
    ingestion.ingest = ingest


@fault("horizon-checked-first", "the retention horizon is checked before the seen identities, "
       "so a known identity's payload with an old time is reported late, not as a conflict "
       "(MS-ING-003)")
def _horizon_checked_first() -> None:
    original = ingestion.ingest

    def ingest(batch: Iterable[EventPayload],
               state: ingestion.SeenState = ingestion.EMPTY) -> ingestion.IngestResult:
        events = list(batch)
        result = original(events, state)
        horizon = result.state.horizon
        if horizon is None:
            return result
        outcomes = list(result.outcomes)
        late = list(result.late)

        def too_old(position: int, key: ingestion.Identity) -> bool:
            instant = timestamps.parse_timestamp(events[position].time)
            if instant >= horizon:
                return False
            outcomes[position] = "late-beyond-retention"
            late.append(ingestion.Late(position, key, timestamps.format_timestamp(instant),
                                       timestamps.format_timestamp(horizon)))
            return True
        duplicates = [d for d in result.duplicates if not too_old(d.position, d.identity)]
        conflicts = [c for c in result.conflicts if not too_old(c.position, c.identity)]
        return result._replace(outcomes=tuple(outcomes), duplicates=tuple(duplicates),
                               conflicts=tuple(conflicts),
                               late=tuple(sorted(late, key=lambda item: item.position)))
    ingestion.ingest = ingest


@fault("digest-raw-time", "the payload digest hashes the time as written, so the same instant "
       "spelled with an offset is a conflict, not a duplicate (MS-ING-002)")
def _digest_raw_time() -> None:
    original = ingestion.digest_fields

    def digest_fields(event: EventPayload, instant: Instant) -> list[str]:
        fields = original(event, instant)
        fields[6] = event.time
        return fields
    ingestion.digest_fields = digest_fields


@fault("expire-lowers-horizon", "expiring sets the horizon to the given instant even when the "
       "state's horizon is later (MS-ING-009)")
def _expire_lowers_horizon() -> None:
    def expire(state: ingestion.SeenState, before: Instant) -> ingestion.SeenState:
        kept = {key: value for key, value in state.items() if value.time >= before}
        return ingestion.SeenState(kept, before)
    ingestion.expire = expire


def _rewrite_amendments(choose: Callable[[list[EventPayload]], EventPayload],
                        merge: bool) -> None:
    """Recompute amended events: the amendment `choose` picks from a target's amendments (in
    log order), its properties merged into the target's when `merge`."""
    original = ingestion.apply_corrections

    def apply_corrections(log: Iterable[EventPayload]) -> ingestion.Corrected:
        events = list(log)
        result = original(events)
        amended = dict(result.amended)
        by_id = {ingestion.identity(e): e for e in events}
        effective = []
        chosen = {}
        for event in result.effective:
            key = ingestion.identity(event)
            if key in amended:
                candidates = [e for e in events if e.type == ingestion.AMEND
                              and ingestion.identity(e)[:2] == key[:2]
                              and e.properties.get(ingestion.TARGET) == key[2]]
                winner = choose(candidates)
                chosen[key] = winner.id
                props = {k: v for k, v in winner.properties.items() if k != ingestion.TARGET}
                if merge:
                    props = {**by_id[key].properties, **props}
                event = msgspec.structs.replace(event, properties=props)
            effective.append(event)
        return result._replace(effective=tuple(effective),
                               amended=tuple((k, chosen.get(k, v)) for k, v in result.amended))
    ingestion.apply_corrections = apply_corrections


@fault("amendments-merge", "an amendment's properties are merged into the target's instead of "
       "replacing them, so a property cannot be removed (MS-ING-015)")
def _amendments_merge() -> None:
    _rewrite_amendments(lambda candidates: max(
        candidates, key=lambda e: (timestamps.parse_timestamp(e.time), e.id)), merge=True)


@fault("amendment-last-in-log", "of several amendments the last one in the log wins, not the "
       "latest by time (MS-ING-015, MS-ING-018)")
def _amendment_last_in_log() -> None:
    _rewrite_amendments(lambda candidates: candidates[-1], merge=False)


@fault("state-utf16-order", "seen-state entries are sorted in UTF-16 code unit order, as "
       "JavaScript and Java sort strings (MS-ING-007)")
def _state_utf16_order() -> None:
    def items(self: ingestion.SeenState) -> list[tuple[ingestion.Identity, ingestion.Seen]]:
        return sorted(self._seen.items(),
                      key=lambda item: tuple(part.encode("utf-16-be") for part in item[0]))
    ingestion.SeenState.items = items  # type: ignore[method-assign]


# --- quotas -----------------------------------------------------------------------------------

@fault("quota-limit-exclusive", "a HARD quota denies a request that would bring usage exactly to "
       "the limit: the limit is treated as exclusive (MS-QTA-004, MS-QTA-005)")
def _quota_limit_exclusive() -> None:
    original = quotas.decide

    def decide(check: quotas.QuotaCheck) -> quotas.QuotaDecision:
        decision = original(check)
        ceiling = quotas.policy_levels(check.policy).ceiling
        if (check.policy.mode != "HARD" or decision.decision == "deny"
                or Decimal(decision.usage) != ceiling):
            return decision
        usage = quantities.parse_quantity(check.usage)
        limit = Decimal(decision.limit)
        return msgspec.structs.replace(
            decision, decision="deny", reason="limit-exceeded",
            usage=quantities.format_quantity(usage),
            remaining=quantities.format_quantity(max(limit - usage, ZERO)), events=[])
    quotas.decide = decide


@fault("quota-period-utc", "quota periods and reset times are computed in UTC, whatever the "
       "policy's time zone (MS-QTA-003)")
def _quota_period_utc() -> None:
    original = quotas.period_at

    def period_at(policy: quotas.QuotaPolicy, now: Instant,
                  path: str = "/now") -> tuple[Instant, Instant]:
        utc = msgspec.structs.replace(policy, period=quotas.QuotaPeriod(policy.period.size))
        return original(utc, now, path)
    quotas.period_at = period_at


def _levels(change: Callable[[quotas.Levels], quotas.Levels]) -> None:
    original = quotas.policy_levels

    def policy_levels(policy: quotas.QuotaPolicy, path: str = "") -> quotas.Levels:
        return change(original(policy, path))
    replace_everywhere(original, policy_levels)


@fault("stale-usage-ignored", "the age of the usage is not looked at: stale usage is trusted "
       "(MS-QTA-009)")
def _stale_usage_ignored() -> None:
    _levels(lambda levels: msgspec.structs.replace(levels, max_staleness=None))


@fault("staleness-bound-inclusive", "usage exactly maxStalenessSeconds old is already stale "
       "(MS-QTA-009)")
def _staleness_bound_inclusive() -> None:
    _levels(lambda levels: levels if levels.max_staleness is None else msgspec.structs.replace(
        levels, max_staleness=levels.max_staleness - 1))


@fault("grace-ignored", "a HARD quota's grace is ignored: it denies at the limit itself "
       "(MS-QTA-004)")
def _grace_ignored() -> None:
    _levels(lambda levels: msgspec.structs.replace(levels, ceiling=levels.limit))


@fault("warning-every-time", "quota.warning is emitted by every admitted request at or above "
       "the warning level, not only by the one that crosses it (MS-QTA-010)")
def _warning_every_time() -> None:
    original = quotas.decide

    def decide(check: quotas.QuotaCheck) -> quotas.QuotaDecision:
        decision = original(check)
        levels = quotas.policy_levels(check.policy)
        kinds = [event.type for event in decision.events]
        if (decision.decision == "deny" or check.policy.mode == "DISABLED"
                or levels.warning is None or Decimal(decision.usage) < levels.warning
                or "quota.warning" in kinds):
            return decision
        threshold = quantities.format_quantity(levels.warning)
        event = quotas.QuotaEvent(
            quotas.quota_event_id("quota.warning", check, decision.period, decision.limit,
                                  threshold), "quota.warning", check.workspace_id,
            check.universe_id, check.subject, check.unit, decision.period, decision.limit,
            threshold)
        return msgspec.structs.replace(decision, events=[event, *decision.events])
    quotas.decide = decide


# --- rate limits ------------------------------------------------------------------------------

def _wrap_rate_limit(change: Callable[[ratelimit.RateDecision, ratelimit.RateLimitPolicy,
                                       ratelimit.RateState, Instant, int],
                                      ratelimit.RateDecision]) -> None:
    original = ratelimit.decide

    def decide(policy: ratelimit.RateLimitPolicy, state: ratelimit.RateState, now: Instant,
               cost: int = 1) -> ratelimit.RateDecision:
        return change(original(policy, state, now, cost), policy, state, now, cost)
    ratelimit.decide = decide


@fault("retry-after-off-by-one", "retryAfter is one nanosecond late: the instant after the "
       "oldest entry has left the window, not the instant it leaves (MS-RATE-005)")
def _retry_after_off_by_one() -> None:
    _wrap_rate_limit(lambda d, *_: d if d.retry_after is None else d._replace(
        retry_after=d.retry_after + 1))


@fault("too-costly-retry", "a request costlier than a limit gets a retryAfter of the window "
       "length, so callers retry what can never pass (MS-RATE-007)")
def _too_costly_retry() -> None:
    def change(d: ratelimit.RateDecision, policy: ratelimit.RateLimitPolicy,
               state: ratelimit.RateState, now: Instant, cost: int) -> ratelimit.RateDecision:
        if d.decision == "allow" or d.retry_after is not None:
            return d
        return d._replace(retry_after=max(ratelimit.WINDOW_NANOS[limit.window]
                                          for limit in policy.limits))
    _wrap_rate_limit(change)


@fault("window-start-inclusive", "the sliding window is [t - w, t]: an entry exactly one "
       "window old still counts (MS-RATE-002)")
def _window_start_inclusive() -> None:
    def used(entries: Iterable[tuple[Instant, int]], instant: Instant, window: int) -> int:
        return sum(cost for at, cost in entries if at >= instant - window)
    ratelimit._used = used


@fault("log-ahead-ignored", "log entries later than the caller's clock are ignored and "
       "dropped, as a query `at <= now` would, instead of deciding at the log's latest instant "
       "(MS-RATE-003)")
def _log_ahead_ignored() -> None:
    original = ratelimit.decide

    def decide(policy: ratelimit.RateLimitPolicy, state: ratelimit.RateState, now: Instant,
               cost: int = 1) -> ratelimit.RateDecision:
        visible = ratelimit.RateState(tuple(e for e in state.entries if e[0] <= now))
        return original(policy, visible, now, cost)
    ratelimit.decide = decide


@fault("prune-relative-to-now", "the log is pruned relative to the decision instant, so a "
       "denial forgets entries that a host with a slower clock still needs (MS-RATE-004)")
def _prune_relative_to_now() -> None:
    def change(d: ratelimit.RateDecision, policy: ratelimit.RateLimitPolicy,
               state: ratelimit.RateState, now: Instant, cost: int) -> ratelimit.RateDecision:
        entries = d.state.entries
        instant = max(now, entries[-1][0]) if entries else now
        longest = max(ratelimit.WINDOW_NANOS[limit.window] for limit in policy.limits)
        return d._replace(state=ratelimit.RateState(
            tuple(e for e in entries if e[0] > instant - longest)))
    _wrap_rate_limit(change)


# --- billing ----------------------------------------------------------------------------------

def _replace_start(day_of: Callable[[date, int, int, int], int | None],
                   zone_of: Callable[[billing_periods.BillingCycle], str] | None = None) -> None:
    """Period starts with the day of the month `day_of(anchor, n, year, month)` chooses (None:
    spill past the month's end), in the cycle's zone or `zone_of`'s."""
    def start(cycle: billing_periods.BillingCycle, first: date, n: int) -> Instant | None:
        months = first.year * 12 + first.month - 1 + n * cycle.interval_months
        year, month = divmod(months, 12)
        if not 1 <= year <= 9999:
            return None
        day = day_of(first, n * cycle.interval_months, year, month + 1)
        local = (datetime(year, month + 1, 1) + timedelta(days=first.day - 1) if day is None
                 else datetime(year, month + 1, day))
        zone = windows.time_zone(zone_of(cycle) if zone_of else cycle.time_zone)
        return windows.wall_start(zone, local)
    billing_periods._start = start


def _month_days(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


@fault("anchor-day-spills", "an anchor day past a month's end spills into the next month "
       "(31 January + 1 month = 2 March), as date arithmetic without clamping does (MS-BIL-002)")
def _anchor_day_spills() -> None:
    _replace_start(lambda first, shift, year, month: None)


@fault("anchor-day-drifts", "each period starts on the previous period's day, so an anchor on "
       "the 31st drifts to the 29th after February and stays there (MS-BIL-002)")
def _anchor_day_drifts() -> None:
    def day_of(first: date, shift: int, year: int, month: int) -> int:
        day, step = first.day, 1 if shift >= 0 else -1
        index = first.year * 12 + first.month - 1
        for k in range(step, shift + step, step):
            y, m = divmod(index + k, 12)
            day = min(day, _month_days(y, m + 1))
        return day
    _replace_start(day_of)


@fault("billing-midnight-utc", "billing periods start at midnight UTC whatever the cycle's zone "
       "(MS-BIL-003)")
def _billing_midnight_utc() -> None:
    _replace_start(lambda first, shift, year, month: min(first.day, _month_days(year, month)),
                   lambda cycle: "UTC")


@fault("midnight-later-offset", "local midnight is resolved with the offset in force after a "
       "transition (fold=1): a skipped midnight maps to the hour before the jump, a repeated "
       "one to its second occurrence (MS-BIL-003)")
def _midnight_later_offset() -> None:
    def wall_start(zone: ZoneInfo, wall: datetime) -> Instant | None:
        moment = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        return (moment - EPOCH) // timedelta(microseconds=1) * 1000
    billing_periods.wall_start = wall_start  # type: ignore[attr-defined]


@fault("invoice-total-from-precise", "an invoice's rounded subtotal and total are the precise "
       "sum of the lines rounded, not the sum of the rounded lines (MS-INV-003, MS-MNY-007)")
def _invoice_total_from_precise() -> None:
    original = invoices.with_totals

    def with_totals(invoice: invoices.Invoice) -> invoices.Invoice:
        result = original(invoice)
        rounded = money.round_money(Decimal(result.subtotal.precise), result.currency)
        amount = money.Amount(result.subtotal.precise, quantities.format_quantity(rounded))
        draft = msgspec.structs.replace(result, subtotal=amount, total=amount)
        return msgspec.structs.replace(draft, revision=invoices.revision(draft))
    replace_everywhere(original, with_totals)


@fault("carried-in-omitted", "an invoice line of a time-weighted average does not list the "
       "records that carried its level in (MS-INV-005)")
def _carried_in_omitted() -> None:
    original = invoices._invoice

    def _invoice(request: invoices.InvoiceRequest, subscription: invoices.Subscription,
                 window: Window, plan: plans.Plan,
                 lines: list[invoices.InvoiceLine]) -> invoices.Invoice:
        lines = [line if line.usage is None else msgspec.structs.replace(
            line, usage=msgspec.structs.replace(line.usage, carried_in=None)) for line in lines]
        return original(request, subscription, window, plan, lines)
    invoices._invoice = _invoice


@fault("records-before-period-dropped", "records before the billed periods are dropped before "
       "aggregating, so a time-weighted average carries no level in (MS-INV-002, MS-AGG-012)")
def _records_before_period_dropped() -> None:
    original = invoices.InvoiceBuilder.add

    def add(self: invoices.InvoiceBuilder, record: MeterRecord, path: str = "") -> None:
        instant, _ = readings.parse_record(record, path)
        billed = self._billed.get(record.subject)
        if billed is None or instant >= billed.cuts[0]:
            original(self, record, path)
    invoices.InvoiceBuilder.add = add  # type: ignore[method-assign]


@fault("invoice-tenants-merged", "an invoice bills the subject's records of every workspace "
       "and universe (MS-INV-002, MS-AGG-004)")
def _invoice_tenants_merged() -> None:
    original = invoices.InvoiceBuilder.add

    def add(self: invoices.InvoiceBuilder, record: MeterRecord, path: str = "") -> None:
        original(self, msgspec.structs.replace(
            record, workspace_id=self.request.workspace_id,
            universe_id=self.request.universe_id), path)
    invoices.InvoiceBuilder.add = add  # type: ignore[method-assign]


@fault("revision-amounts-only", "an invoice's revision covers its amounts only, not the "
       "records behind each line, so new records that change no amount go unnoticed "
       "(MS-INV-006)")
def _revision_amounts_only() -> None:
    original = invoices.revision

    def revision(invoice: invoices.Invoice) -> str:
        lines = [line if line.usage is None else msgspec.structs.replace(
            line, usage=msgspec.structs.replace(line.usage, record_count=0, records_digest="",
                                                carried_in=None)) for line in invoice.lines]
        return original(msgspec.structs.replace(invoice, lines=lines))
    replace_everywhere(original, revision)


@fault("adjustment-rounds-precise-delta", "an adjustment's rounded difference is the precise "
       "difference rounded, not the difference of the rounded amounts (MS-REC-004)")
def _adjustment_rounds_precise_delta() -> None:
    original = reconcile.reconcile

    def rounded(amount: money.Amount, currency: str) -> money.Amount:
        value = money.round_money(Decimal(amount.precise), currency)
        return money.Amount(amount.precise, quantities.format_quantity(value))

    def reconcile_(closed: invoices.Invoice,
                   rebuilt: invoices.Invoice) -> reconcile.Adjustment | None:
        found = original(closed, rebuilt)
        if found is None:
            return None
        lines = [msgspec.structs.replace(line, amount=rounded(line.amount, found.currency))
                 for line in found.lines]
        return msgspec.structs.replace(found, lines=lines, total=rounded(found.total,
                                                                         found.currency))
    reconcile.reconcile = reconcile_


@fault("projection-half-up", "a projected quantity is rounded half up, not half to even "
       "(MS-PRJ-002)")
def _projection_half_up() -> None:
    def projected_quantity(aggregation: str, so_far: Decimal, elapsed: int,
                           length: int) -> Decimal:
        if aggregation not in projection.GROWING or elapsed <= 0 or elapsed >= length:
            return so_far
        exact = Fraction(so_far) * length / elapsed * 10**projection.PROJECTION_SCALE
        units = math.floor(exact + Fraction(1, 2))
        return Decimal(units).scaleb(-projection.PROJECTION_SCALE, context=EXACT).normalize(EXACT)
    projection.projected_quantity = projected_quantity


@fault("projection-counts-later-records", "a projection counts the records at and after asOf "
       "that its input happens to hold (MS-PRJ-001)")
def _projection_counts_later_records() -> None:
    def project(request: invoices.InvoiceRequest,
                records: Iterable[MeterRecord]) -> list[projection.Projection]:
        builder = invoices.InvoiceBuilder(request)
        for record in records:
            builder.add(record)
        return projection.projections(request, builder.invoices())
    projection.project = project


# --- domain events and CloudEvents ------------------------------------------------------------

def _wrap_received(change: Callable[[EventPayload, cloudevents.Envelope], EventPayload]) -> None:
    original = cloudevents.event_from_cloudevent

    def event_from_cloudevent(data: object) -> cloudevents.ReceivedEvent:
        received = original(data)
        return msgspec.structs.replace(received,
                                       event=change(received.event, received.envelope))
    cloudevents.event_from_cloudevent = event_from_cloudevent


@fault("envelope-id-wins", "a received CloudEvent's id replaces the payload's id, so a retry "
       "with a fresh envelope id is a new event (MS-CE-009)")
def _envelope_id_wins() -> None:
    _wrap_received(lambda event, envelope: msgspec.structs.replace(event, id=envelope.id))


@fault("envelope-time-wins", "a received CloudEvent's time replaces the payload's time, so usage "
       "moves to the window of its delivery (MS-CE-009)")
def _envelope_time_wins() -> None:
    _wrap_received(lambda event, envelope: event if envelope.time is None
                   else msgspec.structs.replace(event, time=envelope.time))


@fault("data-string-parsed", "CloudEvent data that is a string is parsed as JSON, as some SDKs "
       "do (MS-CE-008)")
def _data_string_parsed() -> None:
    original = cloudevents._data

    def _data(document: dict[str, Any], problems: list[Any]) -> dict[str, Any] | None:
        data = document.get("data")
        if isinstance(data, str):
            with contextlib.suppress(ValueError):
                document = {**document, "data": json.loads(data)}
        return original(document, problems)
    cloudevents._data = _data


@fault("cloudevent-type-unversioned", "the CloudEvents type of a version 1 domain event has no "
       "version suffix: dev.meterspec.usage.recorded (MS-CE-003)")
def _cloudevent_type_unversioned() -> None:
    original = cloudevents.cloudevent_type

    def cloudevent_type(found: domain_events.EventType) -> str:
        return original(found).removesuffix(".v1")
    cloudevents.cloudevent_type = cloudevent_type


@fault("cloudevent-subject-unchecked", "the subject attribute is always the event's subject, "
       "control characters included (MS-CE-002)")
def _cloudevent_subject_unchecked() -> None:
    original = cloudevents.to_cloudevent

    def to_cloudevent(event: domain_events.DomainEvent, source: str) -> cloudevents.CloudEvent:
        return msgspec.structs.replace(original(event, source), subject=event.subject)
    cloudevents.to_cloudevent = to_cloudevent


@fault("source-unchecked", "any string is accepted as a CloudEvents source (MS-CE-004, "
       "MS-CE-006)")
def _source_unchecked() -> None:
    def _source_problems(source: object, path: str = "/source") -> list[Any]:
        return []
    cloudevents._source_problems = _source_problems


@fault("cloudevent-noncharacters-accepted", "CloudEvents Strings are checked for control "
       "characters and unpaired surrogates only: noncharacters (U+FDD0 to U+FDEF, U+FFFE, "
       "U+10FFFF, ...) pass in attributes and subjects (MS-CE-002, MS-CE-007)")
def _cloudevent_noncharacters_accepted() -> None:
    def _string_problem(value: str) -> str | None:
        for char in value:
            code = ord(char)
            if code <= 0x1F or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF:
                return f"U+{code:04X}"
        return None
    cloudevents._string_problem = _string_problem


def _wrap_usage_recorded(change: Callable[[MeterRecord, domain_events.UsageRecorded],
                                          dict[str, Any]]) -> None:
    """usage.recorded events built with some fields as `change` says, the id recomputed over
    the dimensions in the order given."""
    original = domain_events.usage_recorded

    def usage_recorded(record: MeterRecord) -> domain_events.UsageRecorded:
        event = original(record)
        fields = change(record, event)
        event = msgspec.structs.replace(event, **fields)
        parts = [domain_events.USAGE_RECORDED_TAG, event.workspace_id, event.universe_id,
                 event.subject, event.record_id, event.source_event_id, event.recorded_at,
                 event.measurement.quantity, event.measurement.unit, str(len(event.dimensions))]
        for key, value in event.dimensions.items():
            parts += (key, value)
        return msgspec.structs.replace(event, id=ids.digest_id("dev_", parts))
    domain_events.usage_recorded = usage_recorded


@fault("event-id-dimensions-as-given", "usage.recorded's id digests the dimensions in the "
       "record's order, not in code-point order of their keys (MS-DEV-007)")
def _event_id_dimensions_as_given() -> None:
    _wrap_usage_recorded(lambda record, event: {"dimensions": dict(record.dimensions)})


@fault("event-time-as-written", "usage.recorded copies the record's recordedAt as written, not "
       "in canonical form (MS-DEV-002)")
def _event_time_as_written() -> None:
    _wrap_usage_recorded(lambda record, event: {"recorded_at": record.recorded_at})


# --- JSON text (decode-text) -----------------------------------------------------------------

@fault("duplicate-names-last-wins", "a repeated name is no error: the last one wins, as most JSON "
       "parsers do (MS-ERR-009)")
def _duplicate_names_last_wins() -> None:
    original = json_text.load

    def load(data: bytes | str, **options: Any) -> Any:
        try:
            return original(data, **options)
        except MeterspecError as error:
            if any(problem.code != "duplicate-name" for problem in error.problems):
                raise
        return json.loads(data, parse_int=json_text._integer, parse_float=json_text._number)
    json_text.load = load
    codec._unique_names = lambda kind, value, data: True


@fault("depth-unbounded", "nesting has no limit: the parser recurses as deep as the text goes, "
       "so 65 levels are read and 100,000 crash it (MS-ERR-008)")
def _depth_unbounded() -> None:
    original = json_text.load
    json_text.MAX_DEPTH = sys.maxsize

    def load(data: bytes | str, **options: Any) -> Any:
        with contextlib.suppress(ValueError):  # a RecursionError is no ValueError: it crashes
            json.loads(data)
        return original(data, **options)
    json_text.load = load


@fault("bom-rejected", "a UTF-8 byte-order mark at the start of a file or stream is invalid-json, "
       "as a strict JSON parser says (MS-ERR-007)")
def _bom_rejected() -> None:
    lines.BOM = b"\x00not a BOM\x00"  # the readers strip nothing


@fault("large-numbers-invalid-json", "a number a double cannot hold (over 2^53, or overflowing "
       "or underflowing) is invalid-json instead of wrong-type or out-of-range (MS-ERR-011)")
def _large_numbers_invalid_json() -> None:
    integer, number = json_text._integer, json_text._number

    def _integer(text: str) -> int:
        value = integer(text)
        if abs(value) > 2**53:
            raise ValueError(f"{text[:20]} does not fit a double")
        return value

    def _number(text: str) -> int | Fraction:
        value, double = number(text), float(text)
        if math.isinf(double) or (double == 0 and value != 0):
            raise ValueError(f"{text[:20]} does not fit a double")
        return _integer(str(value)) if isinstance(value, int) else value
    json_text._integer, json_text._number = _integer, _number


def _read_lines(limit_of: Callable[[bytes], int]) -> None:
    """NDJSON lines held whole, whatever their length, then measured by `limit_of`."""
    original = lines.read_lines

    def read_lines(source: lines.Readable, limit: int = lines.MAX_LINE_BYTES,
                   chunk_size: int = lines.LINE_CHUNK_BYTES) -> Iterator[tuple[int, bytes | None]]:
        # A limit no line reaches, with room for a reader that adds to it (limit + 2).
        for number, line in original(source, sys.maxsize // 2, chunk_size):
            yield number, line if line is None or limit_of(line) <= limit else None
    replace_everywhere(original, read_lines)


@fault("lines-unbounded", "NDJSON lines are split without the 1 MiB limit: a line of any length "
       "is held and decoded (MS-ERR-012)")
def _lines_unbounded() -> None:
    _read_lines(lambda line: 0)


@fault("line-limit-in-characters", "the 1 MiB line limit counts characters, not bytes, as a "
       "reader of decoded text does (MS-ERR-012)")
def _line_limit_in_characters() -> None:
    _read_lines(lambda line: len(line.decode("utf-8", "replace")))


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(item) for item in value]
    return value


@fault("lone-surrogates-replaced", "a lone surrogate escape becomes U+FFFD, as lenient decoders "
       "make it, instead of invalid-json (MS-ERR-007)")
def _lone_surrogates_replaced() -> None:
    original = json_text.load
    json_text.has_lone_surrogate = lambda value: False

    def load(data: bytes | str, **options: Any) -> Any:
        return _without_surrogates(original(data, **options))
    json_text.load = load


@fault("invalid-utf8-replaced", "bytes that are not UTF-8 become U+FFFD, as a decoder with "
       "errors='replace' makes them, instead of invalid-json (MS-ERR-007)")
def _invalid_utf8_replaced() -> None:
    original = json_text.load

    def load(data: bytes | str, **options: Any) -> Any:
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace").encode("utf-8")
        return original(data, **options)
    json_text.load = load


@fault("json-nan-accepted", "NaN, Infinity and -Infinity are read as numbers, as Python's json "
       "module does by default (MS-ERR-007)")
def _json_nan_accepted() -> None:
    def _constant(name: str) -> Any:
        return float(name)
    json_text._constant = _constant


# --- errors -----------------------------------------------------------------------------------

@fault("first-problem-only", "a rejected input reports only its first problem (MS-ERR-002)")
def _first_problem_only() -> None:
    original = adapter.handle

    def handle(case: dict[str, Any]) -> dict[str, Any]:
        response = original(case)
        if "error" in response:
            response["error"] = response["error"][:1]
        return response
    adapter.handle = handle


@fault("measurement-beside-schema-problems", "an event with unknown, missing or mistyped "
       "members also reports its measurement problems (a missing or bad source property), "
       "which MS-ERR-002 says its schema problems hide")
def _measurement_beside_schema_problems() -> None:
    original = adapter.OPERATIONS["meter"]

    def _meter(case_input: dict[str, Any]) -> dict[str, Any]:
        try:
            return original(case_input)
        except MeterspecError as error:
            event = case_input.get("event")
            meter = Meter(codec.decode_config(json.dumps(case_input.get("config"))))
            if not isinstance(event, dict):
                raise
            try:
                codec.decode_event(json.dumps(event))
            except MeterspecError:  # schema problems: add what the measurements say
                props = event.get("properties")
                lenient = EventPayload(
                    id="x", workspace_id="x", universe_id="x", subject="x",
                    type=event["type"] if isinstance(event.get("type"), str) else "x",
                    time="2024-01-01T00:00:00Z",
                    properties={k: v for k, v in props.items() if isinstance(v, str)}
                    if isinstance(props, dict) else {})
                try:
                    meter.measure(lenient)
                except MeterspecError as more:
                    raise MeterspecError([*error.problems, *more.problems]) from None
            raise
    adapter.OPERATIONS["meter"] = _meter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--fault", choices=sorted(FAULTS), help="the one fault to inject")
    group.add_argument("--list", action="store_true", help="print the faults and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name in sorted(FAULTS):
            print(f"{name}\t{FAULTS[name][0]}")
        return 0
    FAULTS[args.fault][1]()
    reference = adapter.implementation

    def implementation() -> dict[str, Any]:
        return {**reference(), "name": f"meterspec-broken-{args.fault}"}
    adapter.implementation = implementation
    return adapter.main()


if __name__ == "__main__":
    sys.exit(main())
