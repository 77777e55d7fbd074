"""What an engine's job produced, the same for every backend: its output file and the
problems of its rejected rows."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from meterspec.errors import MeterspecError


@dataclass
class Result:
    """The output (NDJSON lines in a file of the job's directory, or Parquet where the
    caller asked), how many lines, the problems of every rejected row by row number (in
    order, MS-ERR-004) and the identity duplicates dropped (MS-ING-020/021)."""

    path: str
    count: int
    problems: list[tuple[int, MeterspecError]] = field(default_factory=list)
    duplicates: int = 0

    def write_to(self, out: BinaryIO) -> None:
        """Copy the NDJSON output to a binary stream."""
        with open(self.path, "rb") as source:
            shutil.copyfileobj(source, out, 1 << 20)

    def lines(self) -> Iterator[bytes]:
        """The output's lines, newline included."""
        with open(self.path, "rb") as source:
            yield from source
