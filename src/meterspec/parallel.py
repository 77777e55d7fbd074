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
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, BinaryIO, NamedTuple

from msgspec.structs import replace

from meterspec.codec import decode_record, encode
from meterspec.errors import MeterspecError
from meterspec.event_stream import EventDeduplicator
from meterspec.lines import is_blank, line_too_long, read_lines
from meterspec.metering import Meter
from meterspec.pipeline import event_feeder
from meterspec.readings import Aggregator, parse_record, sort_key
from meterspec.record_stream import RecordDeduplicator

_COUNT_BLOCK = 1 << 20
_FORK = multiprocessing.get_context("fork") if hasattr(os, "fork") else None
AVAILABLE = _FORK is not None
"""--jobs needs fork: the readers and writers inherit the command's objects."""


@dataclass(frozen=True)
class Range:
    """Bytes [start, end) of the input, whose first line is line `first_line` of the file."""

    start: int
    """Offset of the range's first byte in the file."""
    end: int
    """Offset just after its last byte (exclusive)."""
    first_line: int
    """The 1-based file line number of the range's first line, for problem reports."""


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
        """Up to size bytes of the range (all that is left with -1)."""
        data = self.file.read(self.left if size < 0 else min(size, self.left))
        self.left -= len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        """The next line of the range, at most limit bytes."""
        if self.left <= 0:
            return b""
        line = self.file.readline(self.left if limit < 0 else min(limit, self.left))
        self.left -= len(line)
        return line


@dataclass
class Part:
    """What one process made of one range: its partial state (an Aggregator, or an invoice
    builder's slots), its counts, the record identities it counted (record streams) and the
    spool file of its problems."""

    state: Any
    """The partial state to merge: an Aggregator, or an invoice builder's slots."""
    rejected: int
    """How many lines of the range were rejected."""
    duplicates: int
    """How many repeated records the range dropped (record streams)."""
    identities: frozenset[int] | None
    """The 128-bit digests of the record identities the range counted (meterspec.record_stream),
    or None for event streams."""
    spool: str
    """The path of the file holding the range's problems, in line order."""


class Consumer(NamedTuple):
    """One range's consumer: `feed` takes a line or raises MeterspecError; `state` gives the
    partial state to send back; for record streams, `identities` and `duplicates` say which
    record identities it counted and how many repeats it dropped."""

    feed: Callable[[bytes], None]
    """Takes one line; raises MeterspecError when it is rejected."""
    state: Callable[[], Any]
    """Returns the partial state to send back to the parent."""
    identities: Callable[[], frozenset[int]] | None = None
    """For record streams: the record identities counted so far."""
    duplicates: Callable[[], int] | None = None
    """For record streams: how many repeats were dropped."""


@dataclass(frozen=True)
class Job:
    """What the ranges are read into: `start()` makes a fresh consumer from the command's own
    objects, which the forked readers inherit (never pickled); a reader may read several
    ranges, each into its own consumer."""

    path: str
    """The input file the ranges are read from."""
    spool_dir: str
    """The directory for each range's problem spool file."""
    start: Callable[[], Consumer]
    """Makes a fresh Consumer for one range."""


_JOB: Job | None = None  # set before forking: the readers inherit it


def events_job(path: str, spool_dir: str, meter: Meter, aggregator: Aggregator) -> Job:
    """`run`: event lines metered and aggregated (meterspec.pipeline's hot loop)."""
    def start() -> Consumer:
        fresh, dedup = aggregator.fresh(), EventDeduplicator()
        return Consumer(event_feeder(meter, fresh, dedup), lambda: handed_back(fresh),
                        dedup.identities, lambda: dedup.duplicates)
    return Job(path, spool_dir, start)


def handed_back(aggregator: Aggregator) -> Aggregator:
    """An aggregator about to be sent to the parent: its time-weighted points go to a run
    first, so what travels is a list of files, not every point pickled."""
    if aggregator.weighted:
        aggregator.spill()
    return aggregator


def records_job(path: str, spool_dir: str,
                start_state: Callable[[], tuple[Callable[[Any, Any, Any], None],
                                                Callable[[], Any]]]) -> Job:
    """`aggregate` and `invoice`: record lines, each identity once within the range
    (MS-ING-020). `start_state()` gives a fresh (add, state): add(record, instant, quantity)
    takes a good record, state() the partial state."""
    def start() -> Consumer:
        dedup = RecordDeduplicator()
        add, state = start_state()

        def feed(line: bytes) -> None:
            record = decode_record(line)
            instant, quantity = parse_record(record)
            if dedup.add(record, instant, quantity) == "new":
                add(record, instant, quantity)

        return Consumer(feed, state, dedup.identities, lambda: dedup.duplicates)
    return Job(path, spool_dir, start)


def read_range(part: Range) -> Part:
    """A reader's job: one range into a fresh consumer, its problems to a spool."""
    assert _JOB is not None
    consumer = _JOB.start()
    rejected = 0
    spool = tempfile.NamedTemporaryFile(dir=_JOB.spool_dir, delete=False, suffix=".ndjson")  # noqa: SIM115
    with spool, open(_JOB.path, "rb") as file:
        reader = RangeReader(file, part.start, part.end)
        feed = consumer.feed
        for number, line in read_lines(reader, first=part.first_line,
                                       start_of_input=part.start == 0):
            if line is None:
                error: MeterspecError = line_too_long()
            elif line[:1] == b"{" or not is_blank(line):
                try:
                    feed(line)
                    continue
                except MeterspecError as caught:
                    error = caught
            else:
                continue
            rejected += 1
            for problem in error.problems:
                spool.write(encode(replace(problem, line=number)) + b"\n")
    return Part(consumer.state(), rejected,
                consumer.duplicates() if consumer.duplicates else 0,
                consumer.identities() if consumer.identities else None, spool.name)


def read_in_parallel(job: Job, jobs: int) -> list[Part] | None:
    """Every range read by its own forked process, in range order; None when record
    identities repeat across ranges (the caller reads the file on one process instead)."""
    global _JOB
    _JOB = job
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=_FORK) as pool:
            parts = list(pool.map(read_range, split(job.path, jobs)))
    finally:
        _JOB = None
    seen: set[int] = set()
    for part in parts:
        if part.identities is not None and not seen.isdisjoint(part.identities):
            for spool in parts:
                os.unlink(spool.spool)
            return None
        seen |= part.identities or frozenset()
    return parts


# What forked writers inherit (copy-on-write: never pickled): a function writing the output
# lines of items [first, last) to the files it is given.
_WRITING: Callable[[int, int, list[BinaryIO]], int] | None = None


def _write_block(block: tuple[int, int, list[str]]) -> int:
    assert _WRITING is not None
    first, last, paths = block
    with ExitStack() as files:
        outs = [files.enter_context(open(path, "wb", buffering=1 << 20)) for path in paths]
        return _WRITING(first, last, outs)


def write_in_parallel(items: int, write: Callable[[int, int, list[BinaryIO]], int],
                      outs: list[BinaryIO], jobs: int, spool_dir: str) -> int:
    """The output of `items` items (groups, subscriptions) written by `jobs` forked
    processes, each a contiguous block, into one spool per output, copied to `outs` in
    order: the bytes one process writes. `write(first, last, files)` writes a block."""
    global _WRITING
    for out in outs:
        out.flush()  # the forked writers must not inherit unwritten bytes
    if items < 2 * jobs:
        return write(0, items, outs)
    step = -(-items // jobs)
    blocks = [(first, min(first + step, items),
               [os.path.join(spool_dir, f"out-{first}-{n}") for n in range(len(outs))])
              for first in range(0, items, step)]
    _WRITING = write
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=_FORK) as pool:
            counts = list(pool.map(_write_block, blocks))
    finally:
        _WRITING = None
    for _, _, paths in blocks:
        for path, out in zip(paths, outs, strict=True):
            with open(path, "rb") as block:
                shutil.copyfileobj(block, out, 1 << 20)
            os.unlink(path)
    return sum(counts)


def reading_writer(parts: list[Part]) -> tuple[int, Callable[[int, int, list[BinaryIO]], int]]:
    """The groups of the ranges' aggregators and the function writing the readings of a block
    of them: each writer merges only its own groups (MS-AGG-005), so merging is parallel
    too."""
    aggregators: list[Aggregator] = [part.state for part in parts]
    keys = sorted(set().union(*(a.group_keys() for a in aggregators)), key=sort_key)

    def write(first: int, last: int, outs: list[BinaryIO]) -> int:
        block = keys[first:last]
        wanted = set(block)
        whole = aggregators[0].fresh()
        for aggregator in aggregators:
            whole.merge(aggregator.subset(wanted))
        written, put = 0, outs[0].write
        for line in whole.iter_reading_lines(block):
            put(line)
            written += 1
        return written

    return len(keys), write


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
