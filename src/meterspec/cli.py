"""The `meterspec` command: the I/O edge around the pure core (files, stdin, exit codes).

Inputs are read in bounded pieces (MS-ERR-012, meterspec.lines). Outputs are checked not to be
inputs before anything is opened, buffered, and any failure to write one ends the command with
one line on stderr and exit 2 (MS-ERR-013). Record streams count each record once (MS-ING-020).
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import select
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from msgspec.structs import replace

from meterspec import SPEC_VERSION, __version__
from meterspec import cli_guide as guide  # issue 17: did-you-mean, examples, '-', hints
from meterspec.cli_edges import EDGE_INPUTS, register_edges  # issue 16 part B
from meterspec.codec import (
    STRUCTS,
    decode,
    decode_config,
    decode_event,
    decode_record,
    decode_request,
    encode,
)
from meterspec.contracts import MeterReading, MeterRecord
from meterspec.errors import MeterspecError, Problem
from meterspec.event_stream import EventDeduplicator
from meterspec.lines import is_blank, line_too_long, read_document, read_lines
from meterspec.metering import Meter, check_event
from meterspec.pipeline import event_feeder
from meterspec.readings import Aggregator, parse_record
from meterspec.record_stream import RecordDeduplicator
from meterspec.server import cli as server_cli  # issue 15: serve, keys (light import)
from meterspec.store import cli as store_cli  # issue 14: ingest, store, --store (light import)
from meterspec.timestamps import Instant, format_timestamp, parse_timestamp

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from meterspec import parallel
    from meterspec.invoices import Invoice, InvoiceBuilder, InvoiceRequest
    from meterspec.reconcile import Adjustment

# The billing and conformance modules are imported by the commands that use them, so that
# `meterspec run` starts without them (issue 12: start-up under 0.3 s of CPU).
MAX_PERIODS = 120  # MS-BIL-004; tests/test_cli.py checks it equals meterspec.invoices'

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
PROGRESS_EVERY = 50_000
OUTPUT_BUFFER_BYTES = 1 << 20
DEDUP_HELP = (" A record repeated in the stream (same workspaceID, universeID and id) counts "
              "once: duplicates are dropped (they may differ in meteredAt) and conflicts "
              "(any other difference) rejected as record-conflict (MS-ING-020).")
EVENT_DEDUP_HELP = (" An event repeated in the input (same workspaceID, universeID and id) "
                    "counts once: a repeat with the same content is dropped and counted, one "
                    "with other content rejected as event-conflict; the first counts "
                    "(MS-ING-021). To keep the seen state across runs, ingest into a store "
                    "(meterspec ingest --store URL) and run --store URL.")


# ------------------------------------------------------------------ outputs (MS-ERR-013)

class OutputError(Exception):
    """An output could not be written or flushed: the command ends with exit 2."""

    def __init__(self, name: str, error: OSError) -> None:
        super().__init__(f"cannot write {name}: {error.strerror or error}")


class ReaderGoneError(Exception):
    """Standard output was closed by its reader (`| head`): stop reading, say so."""


class _Sink(io.RawIOBase):
    """The raw end of one output, under a large buffer. Any failure to write it becomes an
    OutputError naming it (ReaderGoneError for a standard output whose reader left); after the
    first failure it drops everything, so no later flush (at close, at exit) fails again."""

    def __init__(self, name: str, write: Callable[[ReadableBuffer], int],
                 close: Callable[[], None] | None = None, *, stdout: bool = False) -> None:
        super().__init__()
        self.label, self._write, self._close, self._stdout = name, write, close, stdout
        self.dead = False

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        if self.dead:
            return memoryview(data).nbytes
        try:
            return self._write(data)
        except BrokenPipeError as error:
            self.dead = True
            if self._stdout:
                raise ReaderGoneError from None
            raise OutputError(self.label, error) from None
        except OSError as error:
            self.dead = True
            raise OutputError(self.label, error) from None

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._close is not None:
                self._close()
        except OSError as error:  # NFS and others report a failed write only here
            if not self.dead:
                self.dead = True
                raise OutputError(self.label, error) from None
        finally:
            super().close()


def _fd_writer(fd: int) -> Callable[[ReadableBuffer], int]:
    def write(data: ReadableBuffer) -> int:
        while True:
            try:
                return os.write(fd, data)
            except BlockingIOError:  # a non-blocking pipe (some parents set one): wait
                select.select([], [fd], [])
    return write


def _stream_writer(stream: BinaryIO) -> Callable[[ReadableBuffer], int]:
    """Write through a stream that has no file descriptor (an in-memory sys.stdout)."""
    def write(data: ReadableBuffer) -> int:
        stream.write(data)
        stream.flush()
        return memoryview(data).nbytes
    return write


def _fileno(stream: object) -> int | None:
    try:
        return int(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None


class _Outputs:
    """Every output of one command, opened only once the same-file check has passed; flushed
    and closed together so that exit 0 or 1 means every byte was written."""

    def __init__(self) -> None:
        self._writers: list[tuple[io.BufferedWriter[_Sink], _Sink]] = []

    def _add(self, sink: _Sink) -> BinaryIO:
        writer = io.BufferedWriter(sink, OUTPUT_BUFFER_BYTES)
        self._writers.append((writer, sink))
        return writer

    def file(self, name: str, path: str) -> BinaryIO:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        return self._add(_Sink(name, _fd_writer(fd), lambda: os.close(fd)))

    def standard(self, name: str, stream: TextIO, *, stdout: bool = False) -> BinaryIO:
        fd = _fileno(stream)
        if fd is None:
            return self._add(_Sink(name, _stream_writer(stream.buffer), stdout=stdout))
        stream.flush()  # anything already written through the text layer comes first
        return self._add(_Sink(name, _fd_writer(fd), stdout=stdout))

    def finish(self) -> None:
        """Flush every output, then close the files: OutputError or ReaderGoneError if any
        fails. May be called again after ReaderGoneError to finish the others."""
        for writer, _ in self._writers:
            if not writer.closed:
                writer.flush()
        for writer, _ in self._writers:
            if not writer.closed:
                writer.close()

    def abandon(self) -> None:
        """Give up on unwritten bytes (the command has failed) and close quietly."""
        for writer, sink in self._writers:
            sink.dead = True
            with suppress(OutputError, ReaderGoneError, OSError, ValueError):
                writer.close()


def _regular(status: os.stat_result | None) -> os.stat_result | None:
    """Only regular files can be written over; /dev/null, ttys and pipes cannot."""
    return status if status is not None and stat.S_ISREG(status.st_mode) else None


def _stat(path: str) -> os.stat_result | None:
    try:
        return _regular(os.stat(path))
    except (OSError, ValueError):  # missing (an output not yet made), or unreadable: the
        return None                # open that follows reports what matters


def _fstat(stream: object) -> os.stat_result | None:
    fd = _fileno(stream)
    try:
        return None if fd is None else _regular(os.fstat(fd))
    except OSError:
        return None


def _overwritten_input(args: argparse.Namespace) -> str | None:
    """MS-ERR-013: the first output that is the same file as an input (device and inode, so
    a link or another spelling is caught), described; None when there is none."""
    inputs = [(f"{flag} {getattr(args, name)}", _stat(getattr(args, name)))
              for name, flag in (("config", "--config"), ("request", "--request"),
                                 ("closed", "--closed"), *EDGE_INPUTS)
              if getattr(args, name, None) is not None]
    if args.file == "-":
        inputs.append(("standard input", _fstat(sys.stdin)))
    elif args.file is not None:  # None: the input is a store (--store, issue 14)
        inputs.append((f"the input {args.file}", _stat(args.file)))
    outputs = [("standard output", _fstat(sys.stdout))]
    if args.errors is None:
        outputs.append(("standard error (the error report)", _fstat(sys.stderr)))
    else:
        outputs.append((f"--errors {args.errors}", _stat(args.errors)))
    if getattr(args, "events", None) is not None:
        outputs.append((f"--events {args.events}", _stat(args.events)))
    for output, written in outputs:
        for source, read in inputs:
            if written is not None and read is not None and (
                    written.st_dev, written.st_ino) == (read.st_dev, read.st_ino):
                return (f"{output} is the same file as {source}; refusing to write over an "
                        "input (MS-ERR-013)")
    return _shared_output(args, outputs)


def _shared_output(args: argparse.Namespace,
                   outputs: list[tuple[str, os.stat_result | None]]) -> str | None:
    """Two named outputs (or one and standard output) that are one file would interleave
    and truncate each other; refused like an input written over (MS-ERR-013)."""
    named = [(flag, path) for flag, path in (("--errors", args.errors),
                                             ("--events", getattr(args, "events", None)))
             if path is not None]
    if len(named) == 2 and os.path.realpath(named[0][1]) == os.path.realpath(named[1][1]):
        return "--errors and --events name the same file; refusing (MS-ERR-013)"
    seen: dict[tuple[int, int], str] = {}
    for output, written in outputs:
        if written is None:
            continue
        key = (written.st_dev, written.st_ino)
        if key in seen and "standard error" not in output + seen[key]:
            return f"{output} is the same file as {seen[key]}; refusing (MS-ERR-013)"
        seen[key] = output
    return None


def _say(text: str) -> None:
    """One line on stderr. A stderr that cannot be written is given up on: the exit status
    still tells."""
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# ------------------------------------------------------------------ inputs (MS-ERR-012)

class Report:
    """Error report (MS-ERR-004): one Problem per line, with line number and event id; and
    the counts the summary gives."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.rejected = 0
        self.duplicates = 0

    def reject(self, error: MeterspecError, line: int | None = None) -> None:
        self.rejected += 1
        for problem in error.problems:
            self.stream.write(encode(replace(problem, line=line)))
            self.stream.write(b"\n")


@dataclass
class Streams:
    """What a command reads and writes, all opened by _main."""

    source: BinaryIO
    out: BinaryIO
    report: Report
    events: BinaryIO | None = None


class BadDocumentError(Exception):
    """A config or request file that cannot be used: nothing can be computed."""

    def __init__(self, path: str, error: MeterspecError) -> None:
        super().__init__(path)
        self.path, self.error = path, error


def _progress(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class Progress:
    """A progress line on stderr for long runs (lines read, rate, elapsed), only when stderr
    is a terminal: never in a pipe, a file or CI, never on stdout."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = sys.stderr.isatty() and not os.environ.get("CI")
        self.started = time.monotonic()
        self.every = PROGRESS_EVERY if self.shown else 0  # 0: `number % 0` is never asked

    def show(self, number: int) -> None:
        elapsed = time.monotonic() - self.started
        rate = number / elapsed if elapsed > 0 else 0.0
        _progress(f"\r{self.label}: {number:,} lines, {rate:,.0f}/s, {elapsed:,.0f} s")

    def done(self, number: int) -> None:
        if self.shown and number >= PROGRESS_EVERY:
            _progress("\r\033[K")


def _lines(source: BinaryIO, label: str,
           reject: Callable[[MeterspecError, int], None]) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with 1-based numbers, each at most 1 MiB: a longer one goes to
    `reject` as line-too-long (MS-ERR-012); progress on stderr when it is a terminal."""
    progress = Progress(label)
    every = progress.every
    number = 0
    for number, line in read_lines(source):
        if every and number % every == 0:
            progress.show(number)
        if line is None:
            reject(line_too_long(), number)
        elif not is_blank(line):
            yield number, line
    progress.done(number)


_DOCUMENT_HEADS: dict[str, bytes] = {}
"""The first bytes of each document read, by path: a hint may say what it looks like."""


def _document_bytes(path: str) -> bytes:
    """A whole-document file ('-': standard input), at most 64 MiB (MS-ERR-012), without a
    leading BOM."""
    with guide.open_input(path) as file:
        try:
            data = read_document(file)
        except MeterspecError as error:
            raise BadDocumentError(path, error) from None
    _DOCUMENT_HEADS[path] = data[:guide.HEAD_BYTES]
    return data


def _records(source: BinaryIO, report: Report,
             label: str) -> Iterator[tuple[int, MeterRecord, Instant, Decimal]]:
    """The good records of a stream, each identity once (MS-ING-020): a bad record or a
    conflicting repeat is rejected, an identical repeat dropped and counted."""
    dedup = RecordDeduplicator()
    for number, line in _lines(source, label, report.reject):
        try:
            record = decode_record(line)
            instant, quantity = parse_record(record)  # a bad record is not an identity seen
            if dedup.add(record, instant, quantity) == "duplicate":
                report.duplicates = dedup.duplicates
                continue
        except MeterspecError as error:
            report.reject(error, number)
            continue
        yield number, record, instant, quantity


# ------------------------------------------------------------------ commands

def _meter_for(path: str) -> Meter:
    try:
        return Meter(decode_config(_document_bytes(path)))
    except MeterspecError as error:
        raise BadDocumentError(path, error) from None


def _aggregator_for(path: str) -> Aggregator:
    try:
        return Aggregator(decode_request(_document_bytes(path)))
    except MeterspecError as error:
        raise BadDocumentError(path, error) from None


def _meter(args: argparse.Namespace, streams: Streams) -> int:
    meter = _meter_for(args.config)
    metered_at = args.metered_at
    count = 0
    for number, line in _lines(streams.source, "meter", streams.report.reject):
        try:
            records = meter.records(decode_event(line), metered_at)
        except MeterspecError as error:
            streams.report.reject(error, number)
            continue
        for record in records:
            streams.out.write(encode(record))
            streams.out.write(b"\n")
        count += len(records)
    return count


def _in_parallel(args: argparse.Namespace, streams: Streams,
                 make_job: Callable[[str, str], parallel.Job],
                 finish: Callable[[list[parallel.Part], str], int]) -> int | None:
    """--jobs N > 1: the input read by N forked processes (meterspec.parallel), their
    problems copied to the report in file order, then `finish(parts, spool_dir)` merges and
    writes; its count, or None when the command must read on one process after all (a record
    identity in two ranges, or no fork). Standard input is spooled to a file first."""
    from meterspec import parallel

    if not parallel.AVAILABLE:
        return None
    with tempfile.TemporaryDirectory(prefix="meterspec-") as spool_dir:
        path = (parallel.spool_input(streams.source, spool_dir) if args.file == "-"
                else args.file)
        parts = parallel.read_in_parallel(make_job(path, spool_dir), args.jobs)
        if parts is None:  # only the order of the whole file says which copy counts
            if args.file == "-":
                streams.source = open(path, "rb")  # noqa: SIM115 (closed at exit)
            return None
        parallel.copy_spools(parts, streams.report.stream)
        streams.report.rejected += sum(part.rejected for part in parts)
        streams.report.duplicates += sum(part.duplicates for part in parts)
        return finish(parts, spool_dir)


def _readings_in_parallel(args: argparse.Namespace, streams: Streams,
                          aggregator: Aggregator) -> Callable[[list[parallel.Part], str], int]:
    from meterspec import parallel

    def finish(parts: list[parallel.Part], spool_dir: str) -> int:
        groups, write = parallel.reading_writer(parts)
        return parallel.write_in_parallel(groups, write, [streams.out], args.jobs, spool_dir)
    return finish


def _aggregate(args: argparse.Namespace, streams: Streams) -> int:
    aggregator = _aggregator_for(args.request)
    if args.jobs > 1:
        from meterspec import parallel

        def fresh() -> tuple[Callable[[MeterRecord, Instant, Decimal], None],
                             Callable[[], Aggregator]]:
            part = aggregator.fresh()

            def add(record: MeterRecord, instant: Instant, quantity: Decimal) -> None:
                part.add(record.workspace_id, record.universe_id, record.subject,
                         record.measurement.unit, record.dimensions, instant, quantity)
            return add, lambda: parallel.handed_back(part)

        def job(path: str, spool_dir: str) -> parallel.Job:
            aggregator.spill_into(spool_dir)
            return parallel.records_job(path, spool_dir, fresh)
        written = _in_parallel(args, streams, job,
                               _readings_in_parallel(args, streams, aggregator))
        if written is not None:
            return written
    for _, record, instant, quantity in _records(streams.source, streams.report, "aggregate"):
        aggregator.add(record.workspace_id, record.universe_id, record.subject,
                       record.measurement.unit, record.dimensions, instant, quantity)
    return _write_readings(aggregator, streams.out)


def _run(args: argparse.Namespace, streams: Streams) -> int:
    meter = _meter_for(args.config)
    aggregator = _aggregator_for(args.request)
    if args.jobs > 1:
        from meterspec import parallel

        def job(path: str, spool_dir: str) -> parallel.Job:
            aggregator.spill_into(spool_dir)
            return parallel.events_job(path, spool_dir, meter, aggregator)
        written = _in_parallel(args, streams, job,
                               _readings_in_parallel(args, streams, aggregator))
        if written is not None:
            return written
    dedup = EventDeduplicator()  # MS-ING-021: each event identity once
    feed, reject = event_feeder(meter, aggregator, dedup), streams.report.reject
    progress = Progress("run")
    every = progress.every
    number = 0
    for number, line in read_lines(streams.source):  # _lines() inlined: the hot loop
        if every and number % every == 0:
            progress.show(number)
        if line is None:
            reject(line_too_long(), number)
        elif line[:1] == b"{" or not is_blank(line):
            try:
                feed(line)
            except MeterspecError as error:
                reject(error, number)
    progress.done(number)
    streams.report.duplicates += dedup.duplicates
    return _write_readings(aggregator, streams.out)


def _document(kind: str, path: str) -> Any:
    """A config or request file decoded and checked, or BadDocumentError."""
    try:
        return decode(kind, _document_bytes(path), STRUCTS[kind], fast=False)
    except MeterspecError as error:
        raise BadDocumentError(path, error) from None


def _feed(builders: list[InvoiceBuilder], streams: Streams, label: str) -> None:
    for number, record, instant, quantity in _records(streams.source, streams.report, label):
        try:
            for builder in builders:
                builder.add_parsed(record, instant, quantity)
        except MeterspecError as error:
            streams.report.reject(error, number)


def _write(values: Iterable[object], out: BinaryIO) -> int:
    written = 0
    for value in values:
        out.write(encode(value))
        out.write(b"\n")
        written += 1
    return written


def _invoice(args: argparse.Namespace, streams: Streams) -> int:
    from meterspec.domain_events import invoice_generated_for
    from meterspec.invoices import InvoiceBuilder

    request: InvoiceRequest = _document("invoice-request", args.request)
    if args.periods is not None:
        request = replace(request, periods=args.periods)
    try:
        builder = InvoiceBuilder(request)
    except MeterspecError as error:
        raise BadDocumentError(args.request, error) from None
    outs = [streams.out] if streams.events is None else [streams.out, streams.events]

    def write(first: int, last: int, files: list[BinaryIO]) -> int:
        """The invoices of subscriptions [first, last), streamed: never all in memory."""
        written = 0
        for invoice in builder.iter_invoices(first, last):
            files[0].write(encode(invoice) + b"\n")
            if len(files) > 1:  # MS-DEV-009: one invoice.generated per invoice
                files[1].write(encode(invoice_generated_for(invoice)) + b"\n")
            written += 1
        return written

    if args.jobs > 1:
        from meterspec import parallel

        def fresh() -> tuple[Callable[[MeterRecord, Instant, Decimal], None],
                             Callable[[], Any]]:
            part = builder.fresh()
            return part.add_parsed, part.slots

        def finish(parts: list[parallel.Part], spool_dir: str) -> int:
            for part in parts:
                builder.merge_slots(part.state)
            return parallel.write_in_parallel(len(request.subscriptions), write, outs,
                                              args.jobs, spool_dir)

        written = _in_parallel(
            args, streams, lambda path, spool_dir: parallel.records_job(path, spool_dir, fresh),
            finish)
        if written is not None:
            return written
    _feed([builder], streams, "invoice")
    return write(0, len(request.subscriptions), outs)


def _closed_invoices(path: str) -> list[Invoice]:
    """reconcile --closed: every line a closed Invoice, or the file is unusable."""
    from meterspec.invoices import Invoice

    def unusable(error: MeterspecError, number: int) -> None:
        raise BadDocumentError(f"{path}, line {number}", error)

    closed: list[Invoice] = []
    with guide.open_input(path) as file:
        for number, line in _lines(file, "closed", unusable):
            try:
                closed.append(decode("invoice", line, Invoice, fast=False))
            except MeterspecError as error:
                unusable(error, number)
    return closed


def _reconcile(args: argparse.Namespace, streams: Streams) -> int:
    from meterspec.invoices import InvoiceBuilder
    from meterspec.reconcile import rebuild_requests, reconcile

    request: InvoiceRequest = _document("invoice-request", args.request)
    closed = _closed_invoices(args.closed)
    try:
        groups = [(InvoiceBuilder(rebuilt), invoices)
                  for rebuilt, invoices in rebuild_requests(request, closed)]
    except MeterspecError as error:
        raise BadDocumentError(args.closed, error) from None
    _feed([builder for builder, _ in groups], streams, "reconcile")
    found: dict[str, Adjustment] = {}
    for builder, invoices in groups:
        for invoice, rebuilt in zip(invoices, builder.iter_invoices(), strict=True):
            try:
                adjustment = reconcile(invoice, rebuilt)
            except MeterspecError as error:
                raise BadDocumentError(args.closed, error) from None
            if adjustment is not None:
                found[invoice.id] = adjustment
    adjustments = [found[invoice.id] for invoice in closed if invoice.id in found]
    return _write(adjustments, streams.out)


def _project(args: argparse.Namespace, streams: Streams) -> int:
    from meterspec.invoices import InvoiceBuilder
    from meterspec.projection import projections

    request: InvoiceRequest = _document("invoice-request", args.request)
    request = replace(request, at=args.as_of, periods=1)
    try:
        builder = InvoiceBuilder(request)
    except MeterspecError as error:
        raise BadDocumentError(args.request, error) from None
    as_of = parse_timestamp(request.at)
    for number, record, instant, _ in _records(streams.source, streams.report, "project"):
        if instant < as_of:  # MS-PRJ-001: only what is known by asOf
            try:
                builder.add(record)
            except MeterspecError as error:
                streams.report.reject(error, number)
    return _write(projections(request, builder.invoices()), streams.out)


def _quota(args: argparse.Namespace, streams: Streams) -> int:
    from meterspec.quotas import QuotaCheck, decide

    written = 0
    for number, line in _lines(streams.source, "quota", streams.report.reject):
        try:
            decision = decide(decode("quota-check", line, QuotaCheck, fast=False))
        except MeterspecError as error:
            streams.report.reject(error, number)
            continue
        written += _write([decision], streams.out)
    return written


def _write_readings(aggregator: Aggregator, out: BinaryIO) -> int:
    written, write = 0, out.write
    for line in aggregator.iter_reading_lines():
        write(line)
        written += 1
    return written


def _validate(args: argparse.Namespace, streams: Streams) -> int:
    struct = STRUCTS[args.kind]
    lines = args.lines or args.file.endswith((".ndjson", ".jsonl"))
    if not lines:  # issue 17: NDJSON told from one document by its first lines
        lines, streams.source = guide.detect_lines(streams.source)
    if lines:
        documents: Iterator[tuple[int, bytes]] = _lines(streams.source, "validate",
                                                        streams.report.reject)
    else:
        try:
            documents = iter([(1, read_document(streams.source))])
        except MeterspecError as error:
            raise BadDocumentError(_input_name(args.file), error) from None
    valid = 0
    for number, data in documents:
        try:
            value = decode(args.kind, data, struct, fast=False)
            _check_semantics(args.kind, value)
        except MeterspecError as error:
            streams.report.reject(error, number if lines else None)
            if not lines and error.problems[0].code == "invalid-json" and data.count(b"\n{"):
                args.guide_hint = ("read as one JSON document; if it holds one document per "
                                   "line (NDJSON), pass --lines")
            continue
        valid += 1
    return valid


def _check_semantics(kind: str, value: object) -> None:
    """What a schema cannot say: digit bounds, real calendar dates, window order, filters."""
    if kind == "config":
        Meter(value)  # type: ignore[arg-type]
    elif kind == "request":
        Aggregator(value)  # type: ignore[arg-type]
    elif kind == "event":
        problems = check_event(value)[1]  # type: ignore[arg-type]
        if problems:
            raise MeterspecError(problems)
    elif kind == "record":
        parse_record(value)  # type: ignore[arg-type]
    elif kind == "reading":
        _check_reading_window(value)  # type: ignore[arg-type]


def _check_reading_window(reading: MeterReading) -> None:
    """MS-AGG-001: a reading's window is in canonical form (MS-TIME-004) and not empty."""
    problems: list[Problem] = []
    instants = []
    for name in ("start", "end"):
        text = getattr(reading.window, name)
        instant = parse_timestamp(text, f"/window/{name}")
        instants.append(instant)
        if format_timestamp(instant) != text:
            problems.append(Problem("not-canonical", f"/window/{name}", f"{text!r} is not "
                                    f"{format_timestamp(instant)!r}, its canonical form",
                                    "MS-AGG-001"))
    if instants[0] >= instants[1]:
        problems.append(Problem("invalid-window", "/window",
                                "a window's start must be before its end", "MS-WIN-001"))
    if problems:
        raise MeterspecError(problems)


JOBS_HELP = ("read the input with N processes (default 1): the file is cut into N ranges at "
             "line ends and the partial results merged; the output is byte for byte the one "
             "of --jobs 1. Standard input is first copied to a temporary file.")


def _jobs(text: str) -> int:
    """--jobs: an integer 1..64, or argparse's usage error."""
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError("an integer from 1 to 64")
    return int(text)


def _period_count(text: str) -> int:
    """--periods: an integer 1..MAX_PERIODS (MS-BIL-004), or argparse's usage error."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_PERIODS:
        raise argparse.ArgumentTypeError(f"an integer from 1 to {MAX_PERIODS}")
    return int(text)


def version_text() -> str:
    """`meterspec --version`: the package, the spec it implements and the suite it ships."""
    from meterspec.conformance.cases import suite_version
    from meterspec.conformance.data import default_root

    suite = suite_version(default_root()) or "unknown"
    return f"meterspec {__version__} (spec {SPEC_VERSION}, suite {suite})"


class _Version(argparse.Action):
    """--version, computed only when asked for (it reads the shipped suite)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit()


def _parser(conformance: bool = True) -> argparse.ArgumentParser:
    parser = guide.GuidingParser(
        prog="meterspec", description="Usage events -> meter records -> meter readings -> "
        "invoices.", epilog="Input lines hold at most 1 MiB and documents at most 64 MiB "
        "(MS-ERR-012); no output may be one of the inputs (MS-ERR-013).")
    parser.add_argument("--version", action=_Version,
                        help="print the versions of meterspec, of the specification it "
                        "implements and of the conformance suite it ships, and exit")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, run: Callable[..., int],
                more: str = "") -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text + more)
        sub.set_defaults(run=run)
        sub.add_argument("--errors", metavar="FILE",
                         help="write the error report here instead of stderr")
        return sub

    sub = command("meter", "Write the MeterRecords of NDJSON events as NDJSON.", _meter)
    sub.add_argument("--config", required=True, help="MeteringConfig JSON file")
    sub.add_argument("--metered-at", help="RFC 3339 time to stamp as meteredAt")
    sub.add_argument("file", help="events NDJSON file, '-' for stdin")

    sub = command("aggregate", "Write the MeterReadings of NDJSON records.", _aggregate,
                  DEDUP_HELP)
    sub.add_argument("--request", required=True, help="AggregationRequest JSON file")
    sub.add_argument("--jobs", type=_jobs, default=1, metavar="N", help=JOBS_HELP)
    sub.add_argument("file", help="records NDJSON file, '-' for stdin")

    sub = command("run", "Meter events and aggregate them in one streaming pass.", _run,
                  EVENT_DEDUP_HELP)
    sub.add_argument("--config", required=True, help="MeteringConfig JSON file")
    sub.add_argument("--request", required=True, help="AggregationRequest JSON file")
    sub.add_argument("--jobs", type=_jobs, default=1, metavar="N", help=JOBS_HELP)
    sub.add_argument("file", help="events NDJSON file, '-' for stdin")

    sub = command("invoice", "Write the Invoices of NDJSON records as NDJSON.", _invoice,
                  DEDUP_HELP)
    sub.add_argument("--request", required=True, help="InvoiceRequest JSON file")
    sub.add_argument("--periods", type=_period_count, help="bill this many periods (1 to "
                     f"{MAX_PERIODS}) up to the request's `at` (a usage history), overriding "
                     "the request's `periods`")
    sub.add_argument("--events", metavar="FILE", help="also write an invoice.generated domain "
                     "event per invoice here, as NDJSON")
    sub.add_argument("--jobs", type=_jobs, default=1, metavar="N", help=JOBS_HELP)
    sub.add_argument("file", help="records NDJSON file, '-' for stdin")

    sub = command("reconcile", "Write the Adjustments that bring closed invoices up to date "
                  "with every record now known.", _reconcile, DEDUP_HELP)
    sub.add_argument("--request", required=True, help="InvoiceRequest JSON file (its plans, "
                     "usage rules and subscriptions; `at` and `periods` are ignored)")
    sub.add_argument("--closed", required=True, help="closed Invoices, NDJSON")
    sub.add_argument("file", help="records NDJSON file, '-' for stdin")

    sub = command("project", "Project each subscription's period in progress to its end.",
                  _project, DEDUP_HELP)
    sub.add_argument("--request", required=True, help="InvoiceRequest JSON file (`at` and "
                     "`periods` are replaced by --as-of)")
    sub.add_argument("--as-of", required=True, help="RFC 3339 instant: records before it "
                     "count, its period is projected")
    sub.add_argument("file", help="records NDJSON file, '-' for stdin")

    sub = command("quota", "Decide NDJSON QuotaChecks; write the QuotaDecisions as NDJSON.",
                  _quota)
    sub.add_argument("file", help="QuotaChecks NDJSON file, '-' for stdin")

    sub = command("validate", "Check documents against the schemas and the spec.", _validate)
    sub.add_argument("kind", choices=sorted(STRUCTS))
    sub.add_argument("file", help="one JSON document, or NDJSON (one per line: told by its "
                     "first lines, a .ndjson/.jsonl name or --lines), '-' for stdin")
    sub.add_argument("--lines", action="store_true", help="one document per line, whatever "
                     "the first lines look like")

    store_cli.register(commands, command)  # issue 14: ingest, store, and --store for readers
    register_edges(commands, command)  # issue 16 part B: convert, export
    server_cli.register(commands)  # issue 15: serve, keys create

    sub = commands.add_parser(  # issue 17: meterspec.completion, from this very parser
        "completion", help="Write a shell completion script for bash, zsh or fish.",
        description="Write a shell completion script to standard output. bash: eval \"$("
        "meterspec completion bash)\" in ~/.bashrc; zsh: the same with zsh in ~/.zshrc; fish: "
        "meterspec completion fish > ~/.config/fish/completions/meterspec.fish")
    sub.add_argument("shell", choices=("bash", "zsh", "fish"))

    if conformance:
        from meterspec.conformance import command as conformance_command

        conformance_command.register(commands)
    else:  # listed in --help; its module (and jsonschema) only loads when it is the command
        commands.add_parser("conformance", help="Check, build or run the conformance suite.",
                            add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    guide.explain(parser)  # issue 17: every command's --help gets an example, exit statuses
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Issue 13: `run` and `aggregate` with --engine NAME go to meterspec.engines.cli (which
    # imports no engine unless asked); without --engine nothing here changes.
    from meterspec.engines.cli import engine_requested
    from meterspec.engines.cli import main as engine_main

    if engine_requested(argv):
        return engine_main(argv)
    words = [word for word in argv if not word.startswith("-")]
    args = _parser(conformance=words[:1] == ["conformance"]).parse_args(argv)
    twice = guide.stdin_twice(argv)  # issue 17: '-' in any file argument, once
    if twice is not None:
        _say(f"meterspec: {twice}")
        return EXIT_USAGE
    if args.command == "completion":  # issue 17: generated from the whole parser
        from meterspec.completion import script

        sys.stdout.write(script(args.shell, _parser(conformance=True)))
        return EXIT_OK
    if args.command == "store":  # issue 14: meterspec store init|migrate|check|export|...
        return store_cli.run_store_command(args)
    if args.command in ("serve", "keys"):  # issue 15: meterspec serve, keys create
        return server_cli.run(args)
    if args.command != "conformance":
        # The pipeline makes no reference cycles, and a command ends with its process: the
        # cycle collector would only walk millions of live states (15% of a time-weighted run).
        collecting = gc.isenabled()
        gc.disable()
        try:
            return _main(args)
        finally:
            if collecting:
                gc.enable()
    from meterspec.conformance import command

    try:
        return command.run_command(args)
    except BrokenPipeError:  # `meterspec conformance ... | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _input_name(path: str) -> str:
    return "standard input" if path == "-" else path


def _summary(args: argparse.Namespace, report: Report, written: int | None) -> str:
    noun = {"validate": "valid documents", "aggregate": "readings", "run": "readings",
            "invoice": "invoices", "reconcile": "adjustments", "quota": "decisions",
            "project": "projections", "ingest": "events accepted",
            "convert": "events", "export": "lines"}
    parts = [] if written is None else [f"{written} {noun.get(args.command, 'records')}"]
    if report.duplicates:
        parts.append(f"{report.duplicates} duplicate{'s' * (report.duplicates != 1)} dropped")
    parts.append(f"{report.rejected} rejected")
    return f"meterspec {args.command}: {', '.join(parts)}"


def _main(args: argparse.Namespace) -> int:
    for option in ("metered_at", "as_of"):  # timestamps given on the command line
        if getattr(args, option, None) is not None:
            flag = "--" + option.replace("_", "-")
            try:
                setattr(args, option, format_timestamp(parse_timestamp(getattr(args, option),
                                                                       flag)))
            except MeterspecError as error:
                _say(f"meterspec: {error}")
                return EXIT_USAGE
    refusal = store_cli.refusal(args) or _overwritten_input(args)  # store_cli: issue 14
    if refusal is not None:  # before anything is opened, read or written
        _say(f"meterspec: {refusal}")
        return EXIT_USAGE
    outputs = _Outputs()
    try:
        return _execute(args, outputs)
    finally:
        outputs.abandon()  # a no-op once every output is finished


def _execute(args: argparse.Namespace, outputs: _Outputs) -> int:
    with ExitStack() as stack:
        try:
            source = (store_cli.source(args, stack)  # issue 14: --store URL
                      if getattr(args, "store", None) is not None and args.command != "ingest"
                      else sys.stdin.buffer if args.file == "-"
                      else stack.enter_context(open(args.file, "rb")))
            # Flushed in this order at the end: the result, side outputs, the report.
            out = outputs.standard("the output to standard output", sys.stdout, stdout=True)
            events = (None if getattr(args, "events", None) is None else outputs.file(
                f"the invoice.generated events to {args.events}", args.events))
            errors = (outputs.standard("the error report to standard error", sys.stderr)
                      if args.errors is None
                      else outputs.file(f"the error report to {args.errors}", args.errors))
        except OSError as error:
            _say(f"meterspec: {guide.os_error_text(error)}")
            return EXIT_USAGE
        report = Report(errors)
        try:
            try:
                written = args.run(args, Streams(source, out, report, events))
                outputs.finish()
            except ReaderGoneError:  # MS-ERR-013: stop reading; the other outputs still complete
                outputs.finish()
                _say(_summary(args, report, None) + "; stopped: standard output was closed "
                     "by its reader")
                return EXIT_REJECTED if report.rejected else EXIT_OK
        except BadDocumentError as bad:
            _say(f"meterspec: {bad.path} is not usable:")
            for problem in bad.error.problems:
                _say(encode(problem).decode())
            hint = guide.mismatch(args, guide.input_named(args, bad.path),
                                  _DOCUMENT_HEADS.get(bad.path))
            if hint is not None:
                _say(f"meterspec: hint: {hint}")
            return EXIT_USAGE
        except OutputError as error:
            _say(f"meterspec: {error}")
            return EXIT_USAGE
        except OSError as error:  # reading: outputs raise OutputError instead
            _say(f"meterspec: {guide.os_error_text(error)}")
            return EXIT_USAGE
        except KeyboardInterrupt:
            return 130
    _say(_summary(args, report, written))
    hint = getattr(args, "guide_hint", None) or (
        None if written or not report.rejected else guide.mismatch(args, "file"))
    if hint is not None:  # nothing accepted: was the input the wrong kind of file?
        _say(f"meterspec: hint: {hint}")
    return EXIT_REJECTED if report.rejected else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
