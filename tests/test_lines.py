"""Bounded input reading (MS-ERR-007, MS-ERR-012): NDJSON lines of at most a limit, reading
resumed after an over-long line without holding it, whole documents bounded, and a UTF-8 BOM
ignored only at the very start. Checked against a reference written here with bytes.split."""

from __future__ import annotations

import io
import itertools
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterspec.errors import MeterspecError
from meterspec.lines import (
    MAX_DOCUMENT_BYTES,
    MAX_LINE_BYTES,
    read_document,
    read_lines,
)

BOM = b"\xef\xbb\xbf"


class Pieces(io.RawIOBase):
    """A stream that hands out the given pieces one read at a time, as a pipe does."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = [p for p in pieces if p]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self.pieces:
            return 0
        piece = self.pieces[0]
        count = min(len(buffer), len(piece))
        buffer[:count] = piece[:count]
        if count == len(piece):
            self.pieces.pop(0)
        else:
            self.pieces[0] = piece[count:]
        return count


def _reference(data: bytes, limit: int) -> list[tuple[int, bytes | None]]:
    """What MS-ERR-012 says, the slow and obvious way: the BOM dropped at the very start, lines
    split at LF, a CR before an LF not counted, a line over `limit` bytes is None."""
    if data.startswith(BOM):
        data = data[len(BOM):]
    parts = data.split(b"\n")
    final = parts.pop()  # after the last LF: an unterminated last line, or b""
    lines = [p[:-1] if p.endswith(b"\r") else p for p in parts]
    if final:
        lines.append(final)
    return [(n, line if len(line) <= limit else None) for n, line in enumerate(lines, 1)]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


alphabet = st.sampled_from([b"a", b"b", b"\n", b"\r", b"\r\n", BOM, b" "])


@given(st.lists(alphabet, max_size=60).map(b"".join), st.integers(0, 6),
       st.lists(st.integers(0, 400), max_size=12), st.integers(1, 9),
       st.booleans())
def test_lines_agree_with_the_reference(data: bytes, limit: int, cuts: list[int],
                                        chunk_size: int, bom: bool) -> None:
    data = BOM + data if bom else data
    source = io.BufferedReader(Pieces(_split(data, cuts)), buffer_size=max(chunk_size, 1))
    assert list(read_lines(source, limit, chunk_size)) == _reference(data, limit)


@given(st.lists(alphabet, max_size=60).map(b"".join), st.integers(0, 6))
def test_lines_of_a_plain_bytes_reader(data: bytes, limit: int) -> None:
    assert list(read_lines(io.BytesIO(data), limit)) == _reference(data, limit)


def test_the_bom_is_dropped_at_the_start_even_one_byte_at_a_time() -> None:
    data = BOM + b"{}\n" + BOM + b"{}\n"
    source = Pieces([data[i:i + 1] for i in range(len(data))])
    assert list(read_lines(source, 10)) == [(1, b"{}"), (2, BOM + b"{}")]


def test_exactly_the_limit_is_allowed_with_lf_or_crlf() -> None:
    line = b"x" * MAX_LINE_BYTES
    data = line + b"\n" + line + b"\r\n" + line + b"y\n" + line + b"\r\r\n" + line
    assert [(n, None if v is None else len(v)) for n, v in read_lines(io.BytesIO(data))] == [
        (1, MAX_LINE_BYTES), (2, MAX_LINE_BYTES), (3, None), (4, None), (5, MAX_LINE_BYTES)]


def test_an_over_long_line_is_reported_as_soon_as_it_is_over() -> None:
    """The report does not wait for a line feed that may never come (/dev/zero)."""

    def endless() -> io.RawIOBase:
        class Zeros(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
                buffer[:] = bytes(len(buffer))
                return len(buffer)
        return Zeros()

    lines = read_lines(io.BufferedReader(endless()), 100)
    assert next(lines) == (1, None)


def test_an_over_long_line_is_never_held() -> None:
    """50 MB without a line feed, then a good line: memory stays near one chunk."""
    size = 50_000_000

    class Big(io.RawIOBase):
        sent = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            if self.sent < size:
                count = min(len(buffer), size - self.sent)
                buffer[:count] = b"x" * count
            elif self.sent == size:
                tail = b"\n{}\n"
                buffer[:len(tail)] = tail
                count = len(tail)
            else:
                return 0
            self.sent += count
            return count

    tracemalloc.start()
    try:
        got = list(read_lines(io.BufferedReader(Big(), 1 << 16)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == [(1, None), (2, b"{}")]
    assert peak < 2 * MAX_LINE_BYTES + (1 << 20), peak


@pytest.mark.parametrize(("data", "limit", "expected"), [
    (b"", 3, b""),
    (b"abc", 3, b"abc"),
    (BOM + b"abc", 3, b"abc"),
    (b"ab" + BOM, 3, None),   # a BOM elsewhere is content: over the limit here
    (BOM + BOM, 3, BOM),      # only the first one is dropped
    (b"abcd", 3, None),
])
def test_documents_are_bounded(data: bytes, limit: int, expected: bytes | None) -> None:
    if expected is None:
        with pytest.raises(MeterspecError) as caught:
            read_document(io.BytesIO(data), limit)
        [problem] = caught.value.problems
        assert (problem.code, problem.path, problem.requirement) == (
            "document-too-large", "", "MS-ERR-012")
    else:
        assert read_document(io.BytesIO(data), limit) == expected


def test_document_limit_is_64_mib_and_line_limit_1_mib() -> None:
    assert (MAX_DOCUMENT_BYTES, MAX_LINE_BYTES) == (67_108_864, 1_048_576)
