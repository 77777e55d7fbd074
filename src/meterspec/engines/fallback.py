"""Exact results where a backend's fixed-width integers end: the time-weighted average of a
group whose levels are too large for a 128-bit integral (meterspec.engines.numbers.TwaBounds),
computed from the group's points with the reference's own state
(meterspec.aggregations.TimeWeightedAverage: exact integers, one half-even rounding).

Only such groups come here, each on its own, so the cost is that of the groups past the
bound, not of the job.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from meterspec.aggregations import TimeWeightedAverage
from meterspec.quantity import format_quantity


def time_weighted(points: Iterable[tuple[int, str]], start: int,
                  spans: list[tuple[int, int]], scale: int) -> list[tuple[str, int]]:
    """(canonical average, recordCount) per window of `spans` for one group's points
    (instant, canonical quantity) before the end of the range, the range starting at
    `start` (MS-AGG-011..015)."""
    state = TimeWeightedAverage(start)
    for instant, text in points:
        state.add(instant, Decimal(text))
    return [(format_quantity(value), count) for value, count in state.results(spans, scale)]
