"""NDJSON inputs read line for line as the reference reads them (meterspec.lines), by an
engine that only splits on line feeds.

An engine's line reader (DuckDB's CSV reader with one column) numbers lines like
meterspec.lines exactly when the file is plain: no byte-order mark at its start (MS-ERR-007),
no carriage return (which such readers take for a line end), no NUL byte (their field
separator), no line over 1 MiB (MS-ERR-012) and valid UTF-8 (MS-ERR-007; engines validate
UTF-8 loosely or not per line). `prepare` scans a file once in large chunks; a plain file is
read by the engine as it is. Any other file is copied line by line through the reference's
own reader into a plain one, each line that is not plain replaced by an empty line (so
numbers do not move) and handed to `flag`, which describes it with the reference.
"""

from __future__ import annotations

import codecs
import mmap
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from meterspec.lines import BOM, is_blank, read_lines
from meterspec.lines import MAX_LINE_BYTES as MAX_LINE_BYTES  # one limit, patched in tests

CHUNK_BYTES = 1 << 20
Flag = Callable[[int, bytes | None], None]
"""Called with a line's number and bytes (None: over the limit) for each line the engine
must not read."""


@dataclass(frozen=True)
class Prepared:
    """A file the engine may read with a plain line reader, holding `lines` lines."""

    path: str
    lines: int


def prepare(path: str, workdir: str, flag: Flag, first: int = 1) -> Prepared:
    """The file itself if it is plain, else a plain copy in `workdir` (lines numbered from
    `first`, so several inputs number on from each other)."""
    lines = _plain_lines(path)
    if lines is not None:
        return Prepared(path, lines)
    copy = os.path.join(workdir, f"plain-{first}.ndjson")
    with open(path, "rb") as source, open(copy, "wb") as out:
        count = _copy_plain(source, out, flag, first)
    return Prepared(copy, count)


def looks_plain(path: str) -> bool:
    """A first look for an engine whose line reader validates UTF-8 and measures lines
    itself: no byte-order mark (nor its first byte) at the start, no CR, no NUL (memchr over
    a mapping, no copy). The engine still checks the rest, and calls `prepare` when anything
    is off."""
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return True
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return (data[:1] != BOM[:1] and data.find(b"\r") < 0
                    and data.find(b"\x00") < 0)


def spool(source: BinaryIO, workdir: str) -> str:
    """Standard input (or any stream) copied to a file the engine can read."""
    path = os.path.join(workdir, "stdin.ndjson")
    with open(path, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK_BYTES)
    return path


def _plain_lines(path: str) -> int | None:
    """The number of lines of a plain file (see the module), None for any other file."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    lines, since_break, last = 0, 0, b"\n"
    with open(path, "rb") as file:
        first = True
        while chunk := file.read(CHUNK_BYTES):
            if first and chunk.startswith(BOM[:len(chunk)]):
                return None
            first = False
            if b"\r" in chunk or b"\x00" in chunk:
                return None
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return None
            breaks = chunk.count(b"\n")
            if breaks:
                head = chunk.find(b"\n")
                if since_break + head > MAX_LINE_BYTES:
                    return None
                # A line wholly inside one chunk is shorter than the chunk, so only the
                # lines that cross chunks can be over the limit.
                since_break = len(chunk) - chunk.rfind(b"\n") - 1
            else:
                since_break += len(chunk)
            if since_break > MAX_LINE_BYTES:
                return None
            lines += breaks
            last = chunk[-1:]
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return None
    return lines + (last != b"\n")


def _copy_plain(source: BinaryIO, out: BinaryIO, flag: Flag, first: int) -> int:
    """Copy the reference's lines (meterspec.lines.read_lines: BOM, CR LF, the 1 MiB limit),
    each plain line as it is and any other as an empty line after flagging it."""
    count = 0
    write = out.write
    for number, line in read_lines(source, MAX_LINE_BYTES):  # the limit _plain_lines checks
        count = number
        if line is not None and _plain(line):
            write(line)
        elif line is None or not is_blank(line):
            flag(first + number - 1, line)
        write(b"\n")
    return count


def _plain(line: bytes) -> bool:
    if b"\r" in line or b"\x00" in line:
        return False
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
