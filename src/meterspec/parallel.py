"""`--jobs N`: one input file cut into N byte ranges at line ends, each read and aggregated by
its own process; the partial states are mergeable (MS-AGG-005), so the parent merges them and
writes exactly what one process writes (tests/test_parallel.py compares the bytes).

A range's problems go to its own spool file, with the line numbers of the whole file (the
parent counts the lines before each range), and the parent copies the spools in order, so the
error report is the one a single process writes too. Record streams count each record once
(MS-ING-020) within a range; when one identity appears in two ranges, the parent runs the
command on one process instead, because which copy counts depends on the order of the whole
file.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import BinaryIO

from msgspec.structs import replace

from meterspec.codec import decode_record, encode
from meterspec.contracts import AggregationRequest, MeteringConfig
from meterspec.errors import MeterspecError
from meterspec.lines import is_blank, line_too_long, read_lines
from meterspec.metering import Meter
from meterspec.pipeline import event_feeder
from meterspec.readings import Aggregator, GroupKey, parse_record
from meterspec.record_stream import RecordDeduplicator

_COUNT_BLOCK = 1 << 20


@dataclass(frozen=True)
class Range:
    """Bytes [start, end) of the input, whose first line is line `first_line` of the file."""

    start: int
    end: int
    first_line: int


def split(path: str, parts: int) -> list[Range]:
    """Up to `parts` ranges of about equal size, each ending after a line feed (or at the end
    of the file), with the number of the first line of each."""
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as file:
        for part in range(1, parts):
            target = max(size * part // parts, cuts[-1])
            file.seek(target)
            found = _next_line_start(file, target, size)
            if cuts[-1] < found < size:
                cuts.append(found)
        cuts.append(size)
        ranges, line = [], 1
        for start, end in pairwise(cuts):
            ranges.append(Range(start, end, line))
            line += _count_lines(file, start, end)
    return ranges


def _next_line_start(file: BinaryIO, position: int, size: int) -> int:
    """The first offset after the line feed at or after `position` (reads in blocks, so a
    line of any length costs no memory)."""
    while position < size:
        block = file.read(_COUNT_BLOCK)
        found = block.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(block)
    return size


def _count_lines(file: BinaryIO, start: int, end: int) -> int:
    file.seek(start)
    count, left = 0, end - start
    while left > 0:
        block = file.read(min(_COUNT_BLOCK, left))
        if not block:
            break
        count += block.count(b"\n")
        left -= len(block)
    return count


class RangeReader:
    """readline() over bytes [start, end) of an open file, for meterspec.lines.read_lines."""

    def __init__(self, file: BinaryIO, start: int, end: int) -> None:
        file.seek(start)
        self.file, self.left = file, end - start

    def read(self, size: int = -1, /) -> bytes:
        data = self.file.read(self.left if size < 0 else min(size, self.left))
        self.left -= len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        line = self.file.readline(self.left if limit < 0 else min(limit, self.left))
        self.left -= len(line)
        return line


@dataclass
class Part:
    """What one process made of one range: its aggregator, its counts, the identities it
    counted (record streams) and the spool file of its problems."""

    aggregator: Aggregator
    rejected: int
    duplicates: int
    identities: frozenset[int] | None
    spool: str


@dataclass(frozen=True)
class Task:
    """One range to read: the command's documents travel as Structs (picklable)."""

    kind: str  # "run" (events) or "aggregate" (records)
    path: str
    part: Range
    spool_dir: str
    request: AggregationRequest
    config: MeteringConfig | None = None


def _lines_of(task: Task, file: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    reader = RangeReader(file, task.part.start, task.part.end)
    return read_lines(reader, first=task.part.first_line, start_of_input=task.part.start == 0)


def read_range(task: Task) -> Part:
    """A worker's job: read one range into a fresh aggregator, its problems to a spool."""
    aggregator = Aggregator(task.request, spill_dir=task.spool_dir)  # runs outlive the worker
    rejected = duplicates = 0
    spool = tempfile.NamedTemporaryFile(dir=task.spool_dir, delete=False, suffix=".ndjson")  # noqa: SIM115

    def reject(error: MeterspecError, number: int) -> None:
        nonlocal rejected
        rejected += 1
        for problem in error.problems:
            spool.write(encode(replace(problem, line=number)) + b"\n")

    identities: frozenset[int] | None = None
    with spool, open(task.path, "rb") as file:
        lines = _lines_of(task, file)
        if task.kind == "run":
            assert task.config is not None
            feed: Callable[[bytes], None] = event_feeder(Meter(task.config), aggregator)
        else:
            dedup = RecordDeduplicator()

            def feed(line: bytes) -> None:
                nonlocal duplicates
                record = decode_record(line)
                instant, quantity = parse_record(record)
                if dedup.add(record, instant, quantity) == "duplicate":
                    duplicates += 1
                    return
                aggregator.add(record.workspace_id, record.universe_id, record.subject,
                               record.measurement.unit, record.dimensions, instant, quantity)
        for number, line in lines:
            if line is None:
                reject(line_too_long(), number)
            elif line[:1] == b"{" or not is_blank(line):
                try:
                    feed(line)
                except MeterspecError as error:
                    reject(error, number)
        if task.kind != "run":
            identities = dedup.identities()
    return Part(aggregator, rejected, duplicates, identities, spool.name)


def read_in_parallel(tasks: list[Task], jobs: int) -> list[Part] | None:
    """Every range read by its own process, in range order; None when record identities
    repeat across ranges (the caller reads the file on one process instead)."""
    context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        parts = list(pool.map(read_range, tasks))
    seen: set[int] = set()
    for part in parts:
        if part.identities is not None and not seen.isdisjoint(part.identities):
            for spool in parts:
                os.unlink(spool.spool)
            return None
        seen |= part.identities or frozenset()
    return parts


def merged(parts: list[Part]) -> Aggregator:
    """The aggregators of the ranges as one (MS-AGG-005: merging equals adding in order)."""
    whole = parts[0].aggregator
    for part in parts[1:]:
        whole.merge(part.aggregator)
    return whole


# The aggregator a forked renderer inherits (copy-on-write: it is never pickled).
_RENDERING: tuple[Aggregator, list[GroupKey]] | None = None


def _render_block(block: tuple[int, int, str]) -> int:
    """A worker's job: the reading lines of groups [first, last) into a file."""
    assert _RENDERING is not None
    aggregator, keys = _RENDERING
    first, last, path = block
    written = 0
    with open(path, "wb", buffering=1 << 20) as out:
        for line in aggregator.iter_reading_lines(keys[first:last]):
            out.write(line)
            written += 1
    return written


def write_in_parallel(aggregator: Aggregator, jobs: int, out: BinaryIO,
                      spool_dir: str) -> int:
    """The reading lines written by `jobs` forked processes, each a contiguous block of the
    groups in their output order, copied to `out` in order: the bytes one process writes."""
    global _RENDERING
    keys = aggregator.ordered_keys()
    if not hasattr(os, "fork") or len(keys) < 2 * jobs:
        return _write_lines(aggregator.iter_reading_lines(keys), out)
    step = -(-len(keys) // jobs)
    blocks = [(first, min(first + step, len(keys)), os.path.join(spool_dir, f"out-{first}"))
              for first in range(0, len(keys), step)]
    _RENDERING = (aggregator, keys)
    try:
        with ProcessPoolExecutor(max_workers=jobs,
                                 mp_context=multiprocessing.get_context("fork")) as pool:
            counts = list(pool.map(_render_block, blocks))
    finally:
        _RENDERING = None
    for _, _, path in blocks:
        with open(path, "rb") as block:
            shutil.copyfileobj(block, out, 1 << 20)
        os.unlink(path)
    return sum(counts)


def _write_lines(lines: Iterator[bytes], out: BinaryIO) -> int:
    written, write = 0, out.write
    for line in lines:
        write(line)
        written += 1
    return written


def copy_spools(parts: list[Part], report: BinaryIO) -> None:
    """The ranges' problems into the report, in file order; the spools are removed."""
    for part in parts:
        with open(part.spool, "rb") as spool:
            shutil.copyfileobj(spool, report)
        os.unlink(part.spool)


def spool_input(source: BinaryIO, directory: str) -> str:
    """Standard input copied to a file, so it can be cut into ranges."""
    with tempfile.NamedTemporaryFile(dir=directory, delete=False, suffix=".ndjson") as copy:
        shutil.copyfileobj(source, copy, 1 << 20)
    return copy.name
