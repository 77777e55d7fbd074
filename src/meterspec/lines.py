"""Bounded reading of input (MS-ERR-007, MS-ERR-012): NDJSON lines of at most 1 MiB and whole
documents of at most 64 MiB, read in chunks so that no input, however long its lines, can make
memory grow; a UTF-8 byte-order mark at the very start of a stream is dropped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from meterspec.errors import MeterspecError

MAX_LINE_BYTES = 1_048_576
"""The most bytes of one NDJSON line, without its line feed and an optional carriage return before
it (1 MiB, MS-ERR-012)."""
MAX_DOCUMENT_BYTES = 67_108_864
"""The most bytes of a whole-document input (64 MiB, MS-ERR-012)."""
BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark, skipped at the start of an input."""
LINE_CHUNK_BYTES = 1 << 16
"""How many bytes a line reader reads at a time."""
DOCUMENT_CHUNK_BYTES = 1 << 20
"""How many bytes a document reader reads at a time."""


class Readable(Protocol):
    """A binary stream: a file, a pipe, sys.stdin.buffer, BytesIO."""

    def read(self, size: int = ..., /) -> bytes:
        """Up to size bytes; fewer at the end, none after it."""


def is_blank(line: bytes) -> bool:
    """A line with nothing but JSON whitespace (space, tab, a CR before the LF) is skipped
    (MS-ERR-012); a form feed or vertical tab is not whitespace in JSON, so it is a bad line."""
    return not line.strip(b" \t\r")


def line_too_long(limit: int = MAX_LINE_BYTES) -> MeterspecError:
    """The line-too-long error (MS-ERR-012)."""
    return MeterspecError.single("line-too-long", "", f"a line holds at most {limit:,} bytes",
                                 "MS-ERR-012")


def document_too_large(limit: int = MAX_DOCUMENT_BYTES) -> MeterspecError:
    """The document-too-large error (MS-ERR-012)."""
    return MeterspecError.single("document-too-large", "",
                                 f"a document holds at most {limit:,} bytes", "MS-ERR-012")


def _chunks(source: Readable, size: int) -> Iterator[bytes]:
    """The stream's bytes in pieces of at most `size` (fewer when a pipe has fewer ready, so
    lines come out as they arrive), without a BOM at the very start (MS-ERR-007)."""
    read: Callable[[int], bytes | None] = getattr(source, "read1", source.read)
    head = b""
    while len(head) < len(BOM):  # a pipe may hand out the BOM a byte at a time
        chunk = read(size)
        if not chunk:
            break
        head += chunk
    if head.startswith(BOM):
        head = head[len(BOM):]
    if head:
        yield head
    while chunk := read(size):
        yield chunk


def read_lines(source: Readable, limit: int = MAX_LINE_BYTES,
               chunk_size: int = LINE_CHUNK_BYTES, *, first: int = 1,
               start_of_input: bool = True) -> Iterator[tuple[int, bytes | None]]:
    """Every line of an NDJSON stream with its 1-based number, blank lines included, without
    its "\\n" (and a "\\r" before it). A line over `limit` bytes is None, given as soon as it is
    known to be too long; its bytes are dropped as they are read, up to the next "\\n".
    `first` numbers the first line and `start_of_input` says whether a BOM may open it: a
    range of a file (meterspec.parallel) starts elsewhere."""
    readline = getattr(source, "readline", None)
    if readline is not None and chunk_size == LINE_CHUNK_BYTES:
        return _read_lines_by_line(readline, limit, first, start_of_input)
    if first != 1 or not start_of_input:
        raise ValueError("a range of a file is read with its readline")
    return _read_lines_in_chunks(source, limit, chunk_size)


def _read_lines_in_chunks(source: Readable, limit: int,
                          chunk_size: int) -> Iterator[tuple[int, bytes | None]]:
    """read_lines() over fixed-size reads, for a stream without readline."""
    number = 0
    pending: list[bytes] = []  # the start of the current line, at most limit + 1 bytes
    size = 0
    skipping = False  # inside a line already reported as too long
    for chunk in _chunks(source, chunk_size):
        *ended, rest = chunk.split(b"\n")
        for part in ended:
            if skipping:
                skipping = False
                continue
            number += 1
            if pending:
                pending.append(part)
                part = b"".join(pending)
                pending.clear()
                size = 0
            if part.endswith(b"\r"):
                part = part[:-1]
            yield number, part if len(part) <= limit else None
        if rest and not skipping:
            size += len(rest)
            if size > limit + 1:  # too long even if only "\r\n" follows
                number += 1
                yield number, None
                pending.clear()
                size = 0
                skipping = True
            else:
                pending.append(rest)
    if pending:  # a last line without "\n": its "\r", if any, is content
        number += 1
        line = b"".join(pending)
        yield number, line if len(line) <= limit else None


def _read_lines_by_line(readline: Callable[[int], bytes], limit: int, first: int,
                        start_of_input: bool) -> Iterator[tuple[int, bytes | None]]:
    """read_lines() over the stream's own bounded readline (C speed): at most limit + 2 bytes
    (with "\\r\\n") per call, so a line without end is never held whole."""
    number = first - 1
    # A line without "\n" is too long exactly when it holds more than `limit` bytes (a read
    # stops short of its budget only at the end of the stream), so the first read may take
    # the BOM's three bytes more: the BOM is not counted (MS-ERR-007).
    line = readline(limit + 2 + len(BOM))
    if start_of_input and line.startswith(BOM):
        line = line[len(BOM):]
    while line:
        number += 1
        if line[-1:] == b"\n":
            line = line[:-2] if line[-2:] == b"\r\n" else line[:-1]
            yield number, line if len(line) <= limit else None
        elif len(line) <= limit:  # the last line, without "\n": a "\r" is content
            yield number, line
        else:
            yield number, None
            while line and line[-1:] != b"\n":  # drop the rest as it is read
                line = readline(LINE_CHUNK_BYTES)
        line = readline(limit + 2)


def read_document(source: Readable, limit: int = MAX_DOCUMENT_BYTES,
                  chunk_size: int = DOCUMENT_CHUNK_BYTES) -> bytes:
    """A whole document (config, request, plan), without a leading BOM; MeterspecError
    `document-too-large` as soon as more than `limit` bytes have been read."""
    pieces: list[bytes] = []
    size = 0
    for chunk in _chunks(source, chunk_size):
        size += len(chunk)
        if size > limit:
            raise document_too_large(limit)
        pieces.append(chunk)
    return b"".join(pieces)
