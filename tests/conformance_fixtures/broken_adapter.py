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
import json
import re
import sys
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import msgspec

from meterspec import aggregations, codec, ids, metering, readings, timestamps, windows
from meterspec import quantity as quantities
from meterspec.aggregations import Latest, Max, Min, Sum, TimeWeightedAverage, UniqueCount
from meterspec.conformance import adapter
from meterspec.contracts import Filter, MeasurementSpec, MeterReading, MeterRecord
from meterspec.errors import MeterspecError
from meterspec.metering import Meter
from meterspec.quantity import EXACT, ZERO
from meterspec.readings import Aggregator
from meterspec.timestamps import Micros

Install = Callable[[], None]
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
    def divide_half_up(area: Decimal, length: int, scale: int) -> int:
        numerator, denominator = area.as_integer_ratio()
        denominator *= length
        scaled: int = numerator * 10**scale
        quotient, remainder = divmod(scaled, denominator)
        return quotient + 1 if 2 * remainder >= denominator else quotient
    aggregations._divide_half_even = divide_half_up


@fault("window-end-inclusive", "a record at a window's end counts in it: [start, end] "
       "instead of [start, end) (MS-WIN-001)")
def _window_end_inclusive() -> None:
    def containing(self: windows.Windows, instant: Micros) -> list[int]:
        return [i for i, (start, end) in enumerate(self.spans) if start <= instant <= end]
    windows.Windows.containing = containing  # type: ignore[method-assign]


@fault("latest-last-seen", "latest breaks ties at one instant by input order, last seen wins, "
       "instead of the greatest quantity (MS-AGG-009)")
def _latest_last_seen() -> None:
    def add(self: Latest, instant: Micros, quantity: Decimal,
            dimensions: Mapping[str, str]) -> None:
        if self.point is None or instant >= self.point[0]:
            self.point = (instant, quantity)
        self.count += 1
    Latest.add = add  # type: ignore[method-assign]


@fault("float-sum", "sum adds binary floats and prints the float (MS-QTY-003, MS-AGG-006)")
def _float_sum() -> None:
    def add(self: Sum, instant: Micros, quantity: Decimal,
            dimensions: Mapping[str, str]) -> None:
        self.total = Decimal(repr(float(self.total) + float(quantity)))
        self.count += 1
    Sum.add = add  # type: ignore[method-assign]


@fault("twa-no-carry-in", "time-weighted-avg looks only at the window's own records: the level "
       "at the window's start is 0, not the last earlier record's (MS-AGG-012)")
def _twa_no_carry_in() -> None:
    divide = aggregations._divide_half_even

    def results(self: TimeWeightedAverage, spans: list[tuple[Micros, Micros]],
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


def _merge_tenant_axis(axis: int) -> None:
    """Group records without one tenant axis (0 workspaceID, 1 universeID); each merged
    reading reports the tenant of the first record it saw."""
    original = Aggregator.add
    first_seen: dict[tuple[object, ...], tuple[str, str]] = {}

    def add(self: Aggregator, workspace: str, universe: str, subject: str, unit: str,
            dimensions: Mapping[str, str], instant: Micros, quantity: Decimal) -> None:
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
    def minimum(self: Min, instant: Micros, quantity: Decimal,
            dimensions: Mapping[str, str]) -> None:
        if self.value is None or str(quantity) < str(self.value):
            self.value = quantity
        self.count += 1

    def maximum(self: Max, instant: Micros, quantity: Decimal,
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
            dimensions: Mapping[str, str], instant: Micros, quantity: Decimal) -> None:
        filled = {**{name: "" for name in self.group_by}, **dimensions}
        original(self, workspace, universe, subject, unit, filled, instant, quantity)
    Aggregator.add = add  # type: ignore[method-assign]


@fault("fixed-length-days", "tumbling days are 24 hours from the start, ignoring daylight "
       "saving time (MS-WIN-003)")
def _fixed_length_days() -> None:
    original = windows.tumbling_spans
    day = 86_400_000_000

    def tumbling_spans(tumbling: Any) -> list[tuple[Micros, Micros]]:
        spans = original(tumbling)
        if tumbling.size != "day":
            return spans
        start = spans[0][0]
        return [(start + k * day, start + (k + 1) * day) for k in range(len(spans))]
    replace_everywhere(original, tumbling_spans)


@fault("twa-tie-last-seen", "time-weighted-avg keeps the last-seen of two records at one instant "
       "instead of the greatest quantity (MS-AGG-011)")
def _twa_tie_last_seen() -> None:
    def add(self: TimeWeightedAverage, instant: Micros, quantity: Decimal) -> None:
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

    def results(self: TimeWeightedAverage, spans: list[tuple[Micros, Micros]],
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

    def init(self: Aggregator, request: Any) -> None:
        original(self, request)
        self.scale = 6
    Aggregator.__init__ = init  # type: ignore[method-assign]


@fault("empty-sum-null", "sum over an empty window is null, as SQL's SUM of no rows "
       "(MS-AGG-005, MS-AGG-010)")
def _empty_sum_null() -> None:
    def result(self: Sum) -> Decimal | None:
        return self.total if self.count else None
    Sum.result = result  # type: ignore[method-assign]


@fault("unique-count-counts-missing", "unique-count counts records without the dimension as one "
       "more distinct value (MS-AGG-016)")
def _unique_count_counts_missing() -> None:
    def add(self: UniqueCount, instant: Micros, quantity: Decimal,
            dimensions: Mapping[str, str]) -> None:
        self.values.add(dimensions.get(self.dimension, "\x00missing"))
        self.count += 1
    UniqueCount.add = add  # type: ignore[method-assign]


@fault("overlap-first-window-only", "a record inside overlapping windows counts only in the "
       "first of them (MS-WIN-002)")
def _overlap_first_window_only() -> None:
    original = windows.Windows.containing

    def containing(self: windows.Windows, instant: Micros) -> list[int]:
        return original(self, instant)[:1]
    windows.Windows.containing = containing  # type: ignore[method-assign]


@fault("readings-in-input-order", "readings come out in the order their groups first appear in "
       "the input, not sorted (MS-AGG-017)")
def _readings_in_input_order() -> None:
    first_seen: dict[object, int] = {}
    init, add = Aggregator.__init__, Aggregator.add

    def start(self: Aggregator, request: Any) -> None:
        first_seen.clear()
        init(self, request)

    def remember(self: Aggregator, workspace: str, universe: str, subject: str, unit: str,
                 dimensions: Mapping[str, str], instant: Micros, quantity: Decimal) -> None:
        key = (workspace, universe, subject, unit,
               tuple(dimensions.get(name) for name in self.group_by))
        first_seen.setdefault(key, len(first_seen))
        add(self, workspace, universe, subject, unit, dimensions, instant, quantity)

    def sort_key(key: object) -> int:
        return first_seen.get(key, len(first_seen))
    Aggregator.__init__ = start  # type: ignore[method-assign]
    Aggregator.add = remember  # type: ignore[method-assign]
    readings._sort_key = sort_key  # type: ignore[assignment]


@fault("twa-float", "time-weighted-avg divides in binary floating point, then rounds "
       "(MS-AGG-015)")
def _twa_float() -> None:
    def divide_float(area: Decimal, length: int, scale: int) -> int:
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
    month = 30 * 86_400_000_000

    def tumbling_spans(tumbling: Any) -> list[tuple[Micros, Micros]]:
        spans = original(tumbling)
        if tumbling.size != "month":
            return spans
        start = spans[0][0]
        return [(start + k * month, start + (k + 1) * month) for k in range(len(spans))]
    replace_everywhere(original, tumbling_spans)


def _lenient_windows(accept: Callable[[list[tuple[Micros, Micros]]], bool]) -> None:
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

    def parse_timestamp(text: object, path: str = "") -> Micros:
        micros = original(text, path)
        return micros - micros % 1000
    replace_everywhere(original, parse_timestamp)


_FRACTION = re.compile(r"\.([0-9]{7,9})(?=[Zz+-])")


@fault("timestamp-rounded", "timestamps finer than a microsecond are rounded, not truncated "
       "(MS-TIME-003)")
def _timestamp_rounded() -> None:
    original = timestamps.parse_timestamp

    def parse_timestamp(text: object, path: str = "") -> Micros:
        micros = original(text, path)
        match = _FRACTION.search(text) if isinstance(text, str) else None
        if match is not None and match.group(1)[6] >= "5":
            micros += 1
        return micros
    replace_everywhere(original, parse_timestamp)


_OFFSET = re.compile(r"[+-][0-9]{2}:[0-9]{2}$")


@fault("offset-ignored", "a timestamp's UTC offset is dropped, local time read as UTC "
       "(MS-TIME-002)")
def _offset_ignored() -> None:
    original = timestamps.parse_timestamp

    def parse_timestamp(text: object, path: str = "") -> Micros:
        micros = original(text, path)  # still reject what is invalid with its offset
        if isinstance(text, str) and _OFFSET.search(text):
            return original(_OFFSET.sub("Z", text), path)
        return micros
    replace_everywhere(original, parse_timestamp)


_FIELDS = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                     r"(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2})")


@fault("calendar-rollover", "impossible dates and times roll over as JavaScript's Date.UTC "
       "does: Feb 30 is Mar 1, second 60 is the next minute (MS-TIME-001)")
def _calendar_rollover() -> None:
    original = timestamps.parse_timestamp

    def parse_timestamp(text: object, path: str = "") -> Micros:
        try:
            return original(text, path)
        except MeterspecError as error:
            match = _FIELDS.fullmatch(text) if isinstance(text, str) else None
            if error.code != "invalid-timestamp" or match is None:
                raise
            year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
            fraction, offset = match.group(7), match.group(8)
            if not 1 <= month <= 12:
                raise
            days = date(year, month, 1).toordinal() - date(1970, 1, 1).toordinal() + day - 1
            seconds = days * 86_400 + hour * 3600 + minute * 60 + second
            if offset not in ("Z", "z"):
                sign = -1 if offset[0] == "-" else 1
                seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
            return seconds * 1_000_000 + (int((fraction + "00000")[:6]) if fraction else 0)
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

    def measure(self: Meter, event: Any) -> Any:
        try:
            return original(self, event)
        except MeterspecError as error:
            if not all(p.path.startswith("/properties/") for p in error.problems):
                raise
            every = self._rules
            self._rules = tuple(r for r in every if r.source_property is None
                                or quantities.is_quantity(event.properties.get(r.source_property)))
            try:
                instant, measured, dims = original(self, event)
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
