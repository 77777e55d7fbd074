"""Overlapping windows (MS-WIN-002): a record is kept once, in the state of the one segment
holding it, and each window's result combines the segments it spans. Adding a record to every
window holding it would cost up to one state per window per record (100 000 nested windows);
here a window costs O(log S) merges over a group's S non-empty segments."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import cast

from meterspec.aggregations import UniqueCount, WindowState

Result = tuple[Decimal | None, int]
"""One window's (result, recordCount); the result is None when the aggregation has none for an empty
window."""


def window_results(states: Mapping[int, WindowState], ranges: Sequence[tuple[int, int]],
                   new_state: Callable[[], WindowState]) -> Iterator[Result]:
    """(result, recordCount) per window, where window i spans segments [first, last) =
    ranges[i] and `states` holds the non-empty segments' states (MS-AGG-005: merging the
    segments' states equals adding the window's records one by one)."""
    keys = sorted(states)
    spans = [(bisect_left(keys, first), bisect_left(keys, last)) for first, last in ranges]
    if keys and isinstance(states[keys[0]], UniqueCount):
        return _distinct([cast(UniqueCount, states[k]) for k in keys], spans)
    return _merged([states[k] for k in keys], spans, new_state)


def _merged(states: list[WindowState], spans: list[tuple[int, int]],
            new_state: Callable[[], WindowState]) -> Iterator[Result]:
    """A segment tree of merged states: each window merges at most 2 log S nodes."""
    size = 1 << max(len(states) - 1, 0).bit_length()
    tree: list[WindowState | None] = [None] * size + list(states) + [None] * (size - len(states))
    for node in range(size - 1, 0, -1):
        left, right = tree[2 * node], tree[2 * node + 1]
        if left is None or right is None:
            tree[node] = left or right
        else:
            tree[node] = both = new_state()
            both.merge(left)
            both.merge(right)
    for first, last in spans:
        if last - first == 1:
            only = states[first]
            yield only.result(), only.count
            continue
        total = new_state()
        low, high = first + size, last + size
        while low < high:  # the nodes of a real range are never padding (None)
            if low & 1:
                total.merge(cast(WindowState, tree[low]))
                low += 1
            if high & 1:
                high -= 1
                total.merge(cast(WindowState, tree[high]))
            low, high = low >> 1, high >> 1
        yield total.result(), total.count


def _distinct(states: list[UniqueCount], spans: list[tuple[int, int]]) -> Iterator[Result]:
    """Distinct values per window without uniting sets: windows by last segment, each value
    counted at its latest segment so far only, a Fenwick tree summing counts over segments."""
    counts = [0]
    for state in states:
        counts.append(counts[-1] + state.count)
    tree = [0] * (len(states) + 1)

    def add(position: int, delta: int) -> None:
        position += 1
        while position < len(tree):
            tree[position] += delta
            position += position & -position

    def before(position: int) -> int:
        found = 0
        while position > 0:
            found += tree[position]
            position -= position & -position
        return found

    latest: dict[str, int] = {}
    distinct = [0] * len(spans)
    swept = 0
    for index in sorted(range(len(spans)), key=lambda i: spans[i][1]):
        first, last = spans[index]
        for position in range(swept, last):
            for value in states[position].values:
                if value in latest:
                    add(latest[value], -1)
                add(position, 1)
                latest[value] = position
        swept = max(swept, last)
        distinct[index] = before(last) - before(first)
    for (first, last), found in zip(spans, distinct, strict=True):
        yield Decimal(found), counts[last] - counts[first]
