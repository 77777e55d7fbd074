"""MeterRecords -> MeterReadings (MS-AGG): select records by window, group them by
(workspaceID, universeID, subject, unit[, groupBy values]) and finish one reading per active
group and window. Memory grows with groups and windows, not with records (except for
time-weighted-avg, whose state keeps the distinct instants inside the range)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import msgspec

from meterspec.aggregations import (
    Count,
    Latest,
    Max,
    Min,
    Sum,
    TimeWeightedAverage,
    UniqueCount,
    WindowState,
)
from meterspec.contracts import (
    AggregationRequest,
    MeterReading,
    MeterRecord,
    ReadingMeasurement,
    Window,
)
from meterspec.errors import MeterspecError, Problem
from meterspec.ids import encode_fields, reading_ids
from meterspec.overlaps import window_results
from meterspec.quantity import EXACT, ZERO, format_quantity, parse_quantity
from meterspec.spill import RunReader, Runs
from meterspec.timestamps import Instant, format_timestamp, parse_timestamp
from meterspec.windows import request_windows

DEFAULT_SCALE = 6
"""Fraction digits of a time-weighted average when the request gives no scale (MS-AGG-015)."""
_ENCODER = msgspec.json.Encoder()
_MAX_CELLS = 4096  # segments a group keeps as lists; more windows than this keep states
POINT_BUDGET = 1 << 18
"""Time-weighted points held in memory (about 200 bytes each) before the rest go to disk."""
GroupKey = tuple[str, str, str, str, tuple[str | None, ...]]
"""(workspaceID, universeID, subject, unit, groupBy values): the records that aggregate together
(MS-AGG-004)."""

_WINDOW_STATES: dict[str, Callable[[AggregationRequest], WindowState]] = {
    "sum": lambda _: Sum(),
    "count": lambda _: Count(),
    "min": lambda _: Min(),
    "max": lambda _: Max(),
    "latest": lambda _: Latest(),
    "unique-count": lambda r: UniqueCount(r.dimension or ""),
}


class Aggregator:
    """Streaming, mergeable aggregation of records under one request: one state per group and
    segment of the windows (meterspec.overlaps), so a record costs O(log W) however many
    windows hold it."""

    def __init__(self, request: AggregationRequest, *, point_budget: int = POINT_BUDGET,
                 spill_dir: str | None = None) -> None:
        """`point_budget` time-weighted points are kept in memory, the rest spilled to runs
        on disk (meterspec.spill) under `spill_dir` (default: a temporary directory)."""
        problems: list[Problem] = []
        if request.aggregation == "unique-count" and not request.dimension:
            problems.append(Problem("missing-field", "/dimension",
                                    "unique-count needs a dimension", "MS-AGG-016"))
        if request.aggregation != "unique-count" and request.dimension is not None:
            problems.append(Problem("invalid-request", "/dimension",
                                    "dimension applies to unique-count only", "MS-AGG-016"))
        if request.scale is not None and (
                request.aggregation != "time-weighted-avg" or not 0 <= request.scale <= 20):
            problems.append(Problem("invalid-request", "/scale", "scale is an integer 0..20 "
                                    "and applies to time-weighted-avg only", "MS-AGG-015"))
        try:
            self.windows = request_windows(request)
            """The request's windows, resolved and checked (MS-WIN-002, MS-WIN-003)."""
        except MeterspecError as error:
            problems.extend(error.problems)
        if problems:
            raise MeterspecError(problems)
        self.request = request
        """The request, already checked."""
        self.group_by = tuple(request.group_by or ())
        """The dimensions grouped by, in request order."""
        self.scale = DEFAULT_SCALE if request.scale is None else request.scale
        """The fraction digits of a time-weighted average: the request's, or 6."""
        self.weighted = request.aggregation == "time-weighted-avg"
        """Whether the aggregation is time-weighted-avg, whose state is per group rather than per
        window."""
        self._new_state = _WINDOW_STATES.get(request.aggregation)
        self._groups: dict[GroupKey, dict[int, WindowState]] = {}
        self._weighted: dict[GroupKey, TimeWeightedAverage] = {}
        # Sums and counts over few disjoint windows (tumbling ones) keep two plain lists per
        # group, a total and a count per segment, instead of a state object per window.
        segments = len(self.windows.bounds) - 1
        self._cells: dict[GroupKey, list[list[Any]]] | None = (
            {} if request.aggregation in ("sum", "count") and self.windows.disjoint
            and segments <= _MAX_CELLS else None)
        self._segments = segments
        self.needs_dimensions = bool(self.group_by) or request.aggregation == "unique-count"
        """Whether add() reads its dimensions: a caller may pass {} when not."""
        self.point_budget = point_budget
        """The time-weighted points kept in memory before the rest are spilled to disk."""
        self._points = 0  # time-weighted points added since the last spill
        self._runs = Runs(spill_dir)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (meterspec.parallel moves partial aggregators between processes): the
        state factory is a lambda, rebuilt from the request."""
        state = dict(self.__dict__)
        del state["_new_state"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._new_state = _WINDOW_STATES.get(self.request.aggregation)

    def fresh(self) -> Aggregator:
        """An empty aggregator over the same request, sharing its checked and resolved
        windows (an invoice builder needs one per subject and unit, all over the same
        periods)."""
        empty = copy.copy(self)
        empty._groups, empty._weighted = {}, {}
        empty._points, empty._runs = 0, Runs(self._runs._directory)
        empty._cells = None if self._cells is None else {}
        return empty

    def add(
        self,
        workspace: str,
        universe: str,
        subject: str,
        unit: str,
        dimensions: Mapping[str, str],
        instant: Instant,
        quantity: Decimal,
    ) -> None:
        """Add one parsed record (MS-AGG-003/004)."""
        group_by = self.group_by
        key = (workspace, universe, subject, unit,
               tuple(map(dimensions.get, group_by)) if group_by else ())
        cells = self._cells
        if cells is not None:
            segment = self.windows.segment(instant)
            if segment is None:
                return
            group = cells.get(key)
            if group is None:
                group = cells[key] = [[ZERO] * self._segments, [0] * self._segments]
            totals, counts = group
            totals[segment] = EXACT.add(totals[segment], quantity)
            counts[segment] += 1
            return
        if self.weighted:
            if instant < self.windows.end:
                state = self._weighted.get(key)
                if state is None:
                    state = self._weighted[key] = TimeWeightedAverage(self.windows.start)
                state.add(instant, quantity)
                self._points += 1
                if self._points >= self.point_budget:
                    self.spill()
            return
        segment = self.windows.segment(instant)
        if segment is None:
            return
        states = self._groups.get(key)
        if states is None:
            states = self._groups[key] = {}
        window_state = states.get(segment)
        if window_state is None:
            assert self._new_state is not None
            window_state = states[segment] = self._new_state(self.request)
        window_state.add(instant, quantity, dimensions)

    def cells_of_segments(self) -> tuple[dict[GroupKey, list[list[Any]]], int,
                                         Callable[[Instant], int | None], bool] | None:
        """For a sum or count without groupBy kept in per-group lists: the lists (key ->
        [totals, counts] per segment), the number of segments, the segment of an instant, and
        whether only counts matter; None otherwise. meterspec.pipeline writes to them
        directly, as add() would."""
        if self._cells is None or self.group_by:
            return None
        return (self._cells, self._segments, self.windows.segment,
                self.request.aggregation == "count")

    def spill_into(self, directory: str) -> None:
        """Spill to runs under `directory` (which the caller removes), not to a temporary
        directory of this process: forked readers (meterspec.parallel) inherit the choice,
        so the runs they write outlive them."""
        self._runs = Runs(directory)

    def spill(self) -> None:
        """Write every time-weighted point held in memory to a run on disk and drop them
        (the carried-in points stay): memory stays within the point budget."""
        self._points = 0
        states = self._weighted
        self._runs.write(
            (list(key), list(ordered), [str(states[key].points[t][0]) for t in ordered],
             [states[key].points[t][1] for t in ordered])
            for key in sorted(states, key=sort_key) if states[key].points
            for ordered in [sorted(states[key].points)])
        for state in states.values():
            state.points.clear()

    def weighted_states(self) -> tuple[dict[GroupKey, TimeWeightedAverage], Instant,
                                       Instant] | None:
        """For a time-weighted-avg without groupBy: its states (key -> state), the start of
        the windows' range and its end; None otherwise. meterspec.pipeline adds to them
        directly, as add() would."""
        if not self.weighted or self.group_by:
            return None
        return self._weighted, self.windows.start, self.windows.end

    def add_record(self, record: MeterRecord, path: str = "") -> None:
        """Parse and add one MeterRecord; raises MeterspecError for a bad quantity or time."""
        instant, quantity = parse_record(record, path)
        self.add(record.workspace_id, record.universe_id, record.subject,
                 record.measurement.unit, record.dimensions, instant, quantity)

    def merge(self, other: Aggregator) -> None:
        """Fold another aggregator over the same request into this one (MS-AGG-005)."""
        if other.request != self.request:
            raise ValueError("only aggregators of the same request merge")
        if self._cells is not None and other._cells is not None:
            for key, (totals, counts) in other._cells.items():
                group = self._cells.get(key)
                if group is None:
                    group = self._cells[key] = [[ZERO] * self._segments, [0] * self._segments]
                group[0] = [EXACT.add(a, b) for a, b in zip(group[0], totals, strict=True)]
                group[1] = [a + b for a, b in zip(group[1], counts, strict=True)]
        self._runs.extend(other._runs)
        for key, theirs in other._weighted.items():
            mine = self._weighted.get(key)
            if mine is None:
                mine = self._weighted[key] = TimeWeightedAverage(self.windows.start)
            mine.merge(theirs)
        for key, their_states in other._groups.items():
            states = self._groups.setdefault(key, {})
            for index, state in their_states.items():
                if index in states:
                    states[index].merge(state)
                else:
                    fresh = states[index] = self._new_state(self.request)  # type: ignore[misc]
                    fresh.merge(state)

    def group_keys(self) -> set[GroupKey]:
        """The active groups, unordered."""
        return set(self._groups) | set(self._weighted) | set(self._cells or {})

    def subset(self, keys: set[GroupKey]) -> Aggregator:
        """An aggregator holding only these groups' states (shared, not copied) and every
        spilled run: the part of this one a writer of a block of groups merges
        (meterspec.parallel)."""
        part = self.fresh()
        part._runs = Runs(self._runs._directory)
        part._runs.paths = list(self._runs.paths)
        part._groups = {key: self._groups[key] for key in keys & self._groups.keys()}
        part._weighted = {key: self._weighted[key] for key in keys & self._weighted.keys()}
        if self._cells is not None:
            part._cells = {key: self._cells[key] for key in keys & self._cells.keys()}
        return part

    def readings(self) -> list[MeterReading]:
        """One reading per active group and window, sorted (MS-AGG-017)."""
        return list(self.iter_readings())

    def ordered_keys(self) -> list[GroupKey]:
        """The active groups in MS-AGG-017 order."""
        return sorted(self.group_keys(), key=sort_key)

    def _groups_in_order(self, keys: list[GroupKey] | None = None
                         ) -> Iterator[tuple[GroupKey, tuple[tuple[str, str | None], ...],
                                             Callable[[bytes], str],
                                             Iterable[tuple[Decimal | None, int]]]]:
        """Per active group in MS-AGG-017 order (or per key of `keys`): its key, its groupBy
        pairs, its reading-id function and its (result, recordCount) per window."""
        request = self.request
        cells = self._cells or {}
        firsts = [first for first, _ in self.windows.ranges]
        counting = request.aggregation == "count"
        spilled = self._runs.reader(_spilled_order) if self._runs.paths else None
        try:
            yield from self._results_of(keys, cells, firsts, counting, spilled)
        finally:
            if spilled is not None:
                spilled.close()

    def _results_of(self, keys: list[GroupKey] | None, cells: dict[GroupKey, list[list[Any]]],
                    firsts: list[int], counting: bool, spilled: RunReader | None
                    ) -> Iterator[tuple[GroupKey, tuple[tuple[str, str | None], ...],
                                        Callable[[bytes], str],
                                        Iterable[tuple[Decimal | None, int]]]]:
        spans = self.windows.spans
        request = self.request
        parameter = reading_parameter(self)
        for key in self.ordered_keys() if keys is None else keys:
            workspace, universe, subject, unit, values = key
            group = tuple(zip(self.group_by, values, strict=True))
            ids = reading_ids(workspace, universe, subject, unit, request.aggregation,
                              parameter, group)
            if key in cells:
                totals, counts = cells[key]
                results: Iterable[tuple[Decimal | None, int]] = (
                    (Decimal(counts[s]) if counting else totals[s], counts[s]) for s in firsts)
            elif self.weighted:
                state = self._weighted[key]
                if spilled is not None:
                    state = state.with_points(spilled.points(sort_key(key)))
                results = state.results(spans, self.scale)
            elif self.windows.disjoint:
                states = self._groups[key]
                empty = self._new_state(request)  # type: ignore[misc]
                results = ((s.result(), s.count) for s in
                           (states.get(first, empty) for first, _ in self.windows.ranges))
            else:
                results = window_results(self._groups[key], self.windows.ranges,
                                         lambda: self._new_state(request))  # type: ignore[misc]
            yield key, group, ids, results

    def _window_bounds(self) -> list[tuple[str, str]]:
        return [(format_timestamp(start), format_timestamp(end))
                for start, end in self.windows.spans]

    def iter_readings(self) -> Iterator[MeterReading]:
        """readings(), one at a time, so a writer need not hold them all."""
        windows = [(Window(*pair), encode_fields(pair)) for pair in self._window_bounds()]
        request = self.request
        for key, group, ids, results in self._groups_in_order():
            workspace, universe, subject, unit, _ = key
            for (window, encoded), (value, count) in zip(windows, results, strict=True):
                yield MeterReading(
                    id=ids(encoded),
                    workspace_id=workspace,
                    universe_id=universe,
                    subject=subject,
                    measurement=ReadingMeasurement(
                        None if value is None else format_quantity(value), unit),
                    aggregation=request.aggregation,
                    window=window,
                    record_count=count,
                    group=dict(group) if request.group_by is not None else None,
                )

    def iter_reading_lines(self, keys: list[GroupKey] | None = None) -> Iterator[bytes]:
        """The readings as NDJSON lines, byte for byte `encode(reading) + b"\\n"` for each
        of iter_readings() (tests/test_aggregations.py holds them equal), without building a
        MeterReading per window: a group's fields are encoded once, a window's once, and each
        line is those pieces around its id, quantity and count (output was half of a run)."""
        encode = _ENCODER.encode
        bounds = self._window_bounds()
        windows = [(encode(Window(*pair)), encode_fields(pair)) for pair in bounds]
        request = self.request
        aggregation = encode(request.aggregation)
        grouped = request.group_by is not None
        for key, group, ids, results in self._groups_in_order(keys):
            workspace, universe, subject, unit, _ = key
            head = (b'","workspaceID":' + encode(workspace) + b',"universeID":'
                    + encode(universe) + b',"subject":' + encode(subject)
                    + b',"measurement":{"quantity":')
            middle = b',"unit":' + encode(unit) + b'},"aggregation":' + aggregation \
                + b',"window":'
            tail = (b',"group":' + encode(dict(group)) if grouped else b"") + b"}\n"
            for (window, encoded), (value, count) in zip(windows, results, strict=True):
                quantity = (b"null" if value is None else b'"0"' if not value  # empty days
                            else b'"' + format_quantity(value).encode() + b'"')
                yield b'{"id":"%b%b%b%b%b,"recordCount":%d%b' % (
                    ids(encoded).encode(), head, quantity, middle, window, count, tail)


def reading_parameter(aggregator: Aggregator) -> str:
    """The `parameter` field of MS-ID-003 for the aggregator's request."""
    request = aggregator.request
    if request.aggregation == "unique-count":
        return f"dimension={request.dimension}"
    return f"scale={aggregator.scale}" if aggregator.weighted else ""


_RECORD_IDENTITY = (("id", "id"), ("workspaceID", "workspace_id"),
                    ("universeID", "universe_id"), ("subject", "subject"),
                    ("sourceEventID", "source_event_id"))


def parse_record(record: MeterRecord, path: str = "") -> tuple[Instant, Decimal]:
    """A record's instant and quantity, or MeterspecError with every problem in it: what the
    Struct's types cannot say (non-empty identifiers, real timestamps, quantity grammar)."""
    problems = [Problem("empty-string", f"{path}/{wire}", f"{wire} must not be empty",
                        "MS-MET-007")
                for wire, attribute in _RECORD_IDENTITY if not getattr(record, attribute)]
    if not record.measurement.unit:
        problems.append(Problem("empty-string", f"{path}/measurement/unit",
                                "unit must not be empty", "MS-MET-007"))
    quantity, instant = Decimal(0), 0
    try:
        quantity = parse_quantity(record.measurement.quantity, path + "/measurement/quantity")
    except MeterspecError as error:
        problems.extend(error.problems)
    try:
        instant = parse_timestamp(record.recorded_at, path + "/recordedAt")
    except MeterspecError as error:
        problems.extend(error.problems)
    if isinstance(record.metered_at, str):
        try:
            parse_timestamp(record.metered_at, path + "/meteredAt")
        except MeterspecError as error:
            problems.extend(error.problems)
    if problems:
        raise MeterspecError(problems)
    return instant, quantity


def _spilled_order(spilled: list[Any]) -> tuple[str, str, str, str, tuple[tuple[int, str], ...]]:
    """The MS-AGG-017 place of a group key read back from a run (msgpack lists)."""
    return sort_key((spilled[0], spilled[1], spilled[2], spilled[3], tuple(spilled[4])))


def sort_key(key: GroupKey) -> tuple[str, str, str, str, tuple[tuple[int, str], ...]]:
    """The order of readings' groups (MS-AGG-017): tenant, subject and unit, then group values with
    null first."""
    return (*key[:4], tuple((0, "") if v is None else (1, v) for v in key[4]))


def aggregate(records: Iterable[MeterRecord], request: AggregationRequest) -> list[MeterReading]:
    """Readings for records under request; raises MeterspecError listing every bad record
    (paths prefixed with the record's index) rather than return a partial result."""
    aggregator = Aggregator(request)
    problems: list[Problem] = []
    for index, record in enumerate(records):
        try:
            aggregator.add_record(record, f"/{index}")
        except MeterspecError as error:
            problems.extend(error.problems)
    if problems:
        raise MeterspecError(problems)
    return aggregator.readings()
