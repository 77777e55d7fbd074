"""Time-weighted points beyond a memory budget, on disk (issue 12: memory bounded by groups
and windows, not by events).

A time-weighted average needs every distinct instant of its group (the level between two
records is the earlier one's), and input need not be sorted, so its state grows with the
records. Past a budget of points, the points of every group are written out as a *run*,
sorted by group (MS-AGG-017 order) with each group's points together, and dropped from
memory; the carried-in point of each group stays in memory (one per group). Reading back
walks the runs in group order, one group at a time, so memory holds the budget, one group's
points and one entry per run.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import weakref
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import msgspec

_FRAME = struct.Struct("<I")
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode

Entry = tuple[Any, list[int], list[str], list[int]]
"""One entry of a run: a group key, then its points as parallel lists (instants, quantities as
exact decimal strings, counts); quantities travel as text because msgpack integers stop at 64
bits."""


class Runs:
    """The runs of one aggregator, in files under one directory; mergeable by concatenation
    (MS-AGG-005: a point is in one run only, and runs are read together)."""

    def __init__(self, directory: str | None = None) -> None:
        self._directory = directory
        self.paths: list[str] = []
        """The run files written so far, in order."""

    def _where(self) -> str:
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="meterspec-spill-")
            weakref.finalize(self, shutil.rmtree, self._directory, True)
        return self._directory

    def write(self, entries: Iterator[Entry]) -> None:
        """One run: `entries` in group order, each group once."""
        descriptor, path = tempfile.mkstemp(dir=self._where(), suffix=".run")
        with os.fdopen(descriptor, "wb", buffering=1 << 20) as run:
            for entry in entries:
                frame = _encode(entry)
                run.write(_FRAME.pack(len(frame)))
                run.write(frame)
        self.paths.append(path)

    def extend(self, other: Runs) -> None:
        """Take over the other's runs (it is left empty)."""
        self.paths.extend(other.paths)
        other.paths = []

    def __getstate__(self) -> dict[str, Any]:
        """A copy in another process reads the runs but never removes them: the process
        that made the directory (or the caller who lent it) does."""
        return {"_directory": self._directory, "paths": self.paths}

    def reader(self, order: Callable[[Any], Any]) -> RunReader:
        """`order` gives a spilled group key (msgpack lists) its place in the runs' order."""
        return RunReader(self.paths, order)


class RunReader:
    """Every run read once, in lockstep, one group at a time: groups are asked for in the
    order the runs were written in, from any first group on (a writer of a later block of
    groups skips the earlier ones)."""

    def __init__(self, paths: list[str], order: Callable[[Any], Any]) -> None:
        self._order = order
        self._files = [open(path, "rb", buffering=1 << 16) for path in paths]  # noqa: SIM115
        self._heads: list[Entry | None] = [self._next(file) for file in self._files]

    @staticmethod
    def _next(file: Any) -> Entry | None:
        size = file.read(_FRAME.size)
        if not size:
            file.close()
            return None
        entry = _decode(file.read(_FRAME.unpack(size)[0]))
        return (entry[0], entry[1], entry[2], entry[3])

    def points(self, place: Any) -> Iterator[tuple[int, Decimal, int]]:
        """The spilled points (instant, quantity, count), from every run, of the group at
        `place` in the runs' order."""
        order = self._order
        for index, head in enumerate(self._heads):
            while head is not None and order(head[0]) < place:  # groups before `place`
                head = self._heads[index] = self._next(self._files[index])
            if head is not None and order(head[0]) == place:
                _, instants, quantities, counts = head
                for instant, quantity, count in zip(instants, quantities, counts,
                                                    strict=True):
                    yield instant, Decimal(quantity), count
                self._heads[index] = self._next(self._files[index])

    def close(self) -> None:
        """Close every run file."""
        for file in self._files:
            file.close()
