"""Aggregations as mergeable partial states (MS-AGG-005): start empty, add records one at a
time, merge two states, finish into a result. Results depend only on the multiset of records
added, never on order or partitioning; ties are broken by value, never by arrival."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Protocol, Self

from meterspec.quantity import EXACT, ZERO
from meterspec.timestamps import Instant


class WindowState(Protocol):
    """The state of one aggregation for one group in one window."""

    count: int
    """The number of records added (the reading's recordCount)."""

    def add(self, instant: Instant, quantity: Decimal, dimensions: Mapping[str, str]) -> None:
        """Count one record: its instant, quantity and dimensions."""

    def merge(self, other: Self) -> None:
        """Fold in another state of the same aggregation, as if its records had been added here."""

    def result(self) -> Decimal | None:
        """The window's value, or None when the aggregation has none for an empty window."""


class Sum:
    """MS-AGG-006: exact sum; empty window yields 0."""

    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.total, self.count = ZERO, 0

    def add(self, instant: Instant, quantity: Decimal, dimensions: Mapping[str, str]) -> None:
        """Add the record's quantity, exactly."""
        self.total = EXACT.add(self.total, quantity)
        self.count += 1

    def merge(self, other: Sum) -> None:
        """Add the other state's total and count."""
        self.total = EXACT.add(self.total, other.total)
        self.count += other.count

    def result(self) -> Decimal | None:
        """The exact sum (0 for an empty window)."""
        return self.total


class Count:
    """MS-AGG-007: number of records, whatever their quantity; empty window yields 0."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0
        """The number of records added."""

    def add(self, instant: Instant, quantity: Decimal, dimensions: Mapping[str, str]) -> None:
        """Count the record, whatever its quantity."""
        self.count += 1

    def merge(self, other: Count) -> None:
        """Add the other state's count."""
        self.count += other.count

    def result(self) -> Decimal | None:
        """The number of records (0 for an empty window)."""
        return Decimal(self.count)


class Min:
    """MS-AGG-008: least quantity; empty window yields null."""

    __slots__ = ("count", "value")

    def __init__(self) -> None:
        self.value: Decimal | None = None
        """The extreme quantity so far (least for Min, greatest for Max), None before any record."""
        self.count = 0
        """The number of records added."""

    def add(self, instant: Instant, quantity: Decimal, dimensions: Mapping[str, str]) -> None:
        """Keep the quantity if it is the smallest so far."""
        if self.value is None or quantity < self.value:
            self.value = quantity
        self.count += 1

    def merge(self, other: Min) -> None:
        """Keep the smaller of the two states' values."""
        if other.value is not None:
            self.add(0, other.value, {})
            self.count += other.count - 1

    def result(self) -> Decimal | None:
        """The smallest quantity, or None for an empty window."""
        return self.value


class Max(Min):
    """MS-AGG-008: greatest quantity; empty window yields null."""

    __slots__ = ()

    def add(self, instant: Instant, quantity: Decimal, dimensions: Mapping[str, str]) -> None:
        """Keep the quantity if it is the largest so far."""
        if self.value is None or quantity > self.value:
            self.value = quantity
        self.count += 1


class Latest:
    """MS-AGG-009: quantity of the record with the greatest recordedAt; records at the same
    instant are ordered by quantity and the greatest wins. Empty window yields null."""

    __slots__ = ("count", "point")

    def __init__(self) -> None:
        self.point: tuple[Instant, Decimal] | None = None
        """(instant in ns, quantity) of the latest record so far, None before any record."""
        self.count = 0
        """The number of records added."""

    def add(self, instant: Instant, quantity: Decimal, dimensions: Mapping[str, str]) -> None:
        """Keep the record if it is the latest so far (at one instant, the greatest quantity)."""
        if self.point is None or (instant, quantity) > self.point:
            self.point = (instant, quantity)
        self.count += 1

    def merge(self, other: Latest) -> None:
        """Keep the later of the two states' records, by the same rule as add."""
        if other.point is not None:
            self.add(*other.point, {})
            self.count += other.count - 1

    def result(self) -> Decimal | None:
        """The latest record's quantity, or None for an empty window."""
        return None if self.point is None else self.point[1]


class UniqueCount:
    """MS-AGG-016: number of distinct values of one dimension among the window's records;
    records without the dimension count toward recordCount only. Empty window yields 0."""

    __slots__ = ("count", "dimension", "values")

    def __init__(self, dimension: str) -> None:
        self.dimension = dimension
        """The dimension whose distinct values are counted."""
        self.values: set[str] = set()
        """The distinct values seen so far."""
        self.count = 0
        """The number of records added, with or without the dimension."""

    def add(self, instant: Instant, quantity: Decimal, dimensions: Mapping[str, str]) -> None:
        """Note the record's value of the counted dimension (a record without it counts as no
        value)."""
        value = dimensions.get(self.dimension)
        if value is not None:
            self.values.add(value)
        self.count += 1

    def merge(self, other: UniqueCount) -> None:
        """Take the union of the two states' values."""
        self.values |= other.values
        self.count += other.count

    def result(self) -> Decimal | None:
        """The number of distinct values (0 for an empty window)."""
        return Decimal(len(self.values))


class TimeWeightedAverage:
    """MS-AGG-011..015: the quantities of one group as a step function of time, averaged over
    each window. State for the whole group: the latest point before the first window (the only
    one that can carry in) and every point inside the windows' range. Points at the same
    instant collapse to the greatest quantity (the MS-AGG-009 tie rule)."""

    __slots__ = ("before", "points", "range_start")

    def __init__(self, range_start: Instant) -> None:
        self.range_start = range_start
        """The start of the earliest window, ns: points before it can only carry in."""
        self.before: tuple[Instant, Decimal] | None = None
        """(instant, quantity) of the latest point before `range_start`, the only one that can carry
        in (MS-AGG-012)."""
        self.points: dict[Instant, tuple[Decimal, int]] = {}
        """Per instant in the windows' range, the greatest quantity at it and the number of records
        there."""

    def add(self, instant: Instant, quantity: Decimal) -> None:
        """Note one level change: the quantity holds from this instant on."""
        if instant < self.range_start:
            if self.before is None or (instant, quantity) > self.before:
                self.before = (instant, quantity)
            return
        held = self.points.get(instant)
        if held is None:
            self.points[instant] = (quantity, 1)
        else:
            self.points[instant] = (max(held[0], quantity), held[1] + 1)

    def with_points(self, more: Iterable[tuple[Instant, Decimal, int]]
                    ) -> TimeWeightedAverage:
        """A copy holding these points too (read back from disk, meterspec.spill), each
        merged as merge() merges: the greatest quantity at an instant, the counts added."""
        copy = TimeWeightedAverage(self.range_start)
        copy.before, points = self.before, dict(self.points)
        for instant, quantity, count in more:
            held = points.get(instant)
            points[instant] = (quantity, count) if held is None else (
                max(held[0], quantity), held[1] + count)
        copy.points = points
        return copy

    def merge(self, other: TimeWeightedAverage) -> None:
        """Fold in the other state's level changes."""
        if other.before is not None:
            self.add(*other.before)
        for instant, (quantity, count) in other.points.items():
            held = self.points.get(instant)
            merged = (quantity, count) if held is None else (
                max(held[0], quantity), held[1] + count)
            self.points[instant] = merged

    def results(
        self, spans: list[tuple[Instant, Instant]], scale: int
    ) -> Iterator[tuple[Decimal, int]]:
        """(average, recordCount) per window: one half-even rounding to `scale` digits. The
        area of a window is the difference of two exact integrals from the first point, so a
        window costs O(log P) however many points it holds (windows may overlap)."""
        times = sorted(self.points)
        points = self.points
        # Exact integers: a level in units of 10^-20 (no quantity has more fraction digits,
        # MS-QTY-002), times nanoseconds. Decimal arithmetic here cost a multiply and an add
        # per point; integers cost a fraction of that.
        levels = [_units(points[t][0]) for t in times]
        seen, areas = [0], [0]
        for i, instant in enumerate(times):
            seen.append(seen[-1] + points[instant][1])
            if i:
                areas.append(areas[-1] + levels[i - 1] * (instant - times[i - 1]))
        opening = _units(self.before[1]) if self.before is not None else 0
        origin = times[0] if times else 0

        def integral(instant: Instant) -> int:
            """Of the level from the first point (or 0) to `instant`; negative before it."""
            i = bisect_right(times, instant) - 1
            if i < 0:
                return opening * (instant - origin)
            return areas[i] + levels[i] * (instant - times[i])

        for start, end in spans:
            area = integral(end) - integral(start)
            count = seen[bisect_left(times, end)] - seen[bisect_left(times, start)]
            quotient = _divide_half_even(area, (end - start) * _UNIT, scale)
            yield EXACT.scaleb(Decimal(quotient), -scale), count


_UNIT = 10**20


def _units(quantity: Decimal) -> int:
    """A quantity as an integer number of 10^-20 (exact within MS-QTY-002's bounds)."""
    return int(EXACT.scaleb(quantity, 20))


def _divide_half_even(area: Decimal | int, length: int, scale: int) -> int:
    """round(area / length * 10**scale), half to even, in integers only (MS-AGG-015)."""
    numerator, denominator = area.as_integer_ratio()

    denominator *= length
    scaled: int = numerator * 10**scale
    quotient, remainder = divmod(scaled, denominator)  # floor division: remainder >= 0
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2):
        quotient += 1
    return quotient
