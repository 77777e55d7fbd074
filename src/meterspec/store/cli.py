"""The store's commands, as meterspec.cli runs them: `meterspec ingest`, `meterspec store
init|migrate|check|export|expire|close`, and `--store URL` for run, aggregate, invoice,
reconcile and project, whose input then comes from a store instead of a file.

`ingest` reads events as `meterspec meter` does (bounded lines, MS-ERR-012; bad lines in the
error report with their line numbers, codes and paths, MS-ERR-004/005) and commits them in
batches: each batch is one transaction, and its summary line on standard output is written and
flushed only once the batch is committed, so a line printed is an acknowledgement (an event it
counts as accepted is durable). Conflicts and late events go to the error report too, and make
the exit status 1, like rejected lines.

With `--store`, `run` reads the store's effective events (MS-ING-013: corrections applied, each
identity once) and the record commands read the records of those events metered with
`--config`: the output is byte for byte the command's output on a file holding those events
(`meterspec store export --effective`) or their records (`meterspec meter` of that file).

Imported at every start of `meterspec` (to register the commands): it imports the store itself,
DuckDB and psycopg only when a command uses them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from meterspec.cli import Report, Streams
    from meterspec.store.base import BatchResult, Store
    from meterspec.store.batch import Batch

READERS = ("run", "aggregate", "invoice", "reconcile", "project")
DEFAULT_BATCH = 100_000
MAX_BATCH = 10_000_000
EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
URL_HELP = ("the store: duckdb:PATH (a DuckDB file, created on first ingest) or "
            "postgresql://USER@HOST/DB (add ?schema=NAME for another schema than meterspec)")
INGEST_MORE = (
    " Each batch of --batch-size lines is one transaction; its summary (a JSON line on "
    "standard output: accepted, duplicates, conflicts, late, rejected and their codes) is "
    "printed once it is committed, so a printed batch is durable and a batch not printed left "
    "nothing behind: send it again. An identity already known is a duplicate (same digest, "
    "dropped) or a conflict (another digest: the first payload stays, MS-ING-004). Rejected "
    "lines, conflicts and late events go to the error report with their line numbers; any of "
    "them makes the exit status 1.")
STORE_READ_HELP = ("read the input from this store instead of a file: its effective events "
                   "(corrections applied, each event once)")


def register(commands: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add `ingest` and `store`, and --store to the commands that can read a store.
    `command` is meterspec.cli's helper that adds a command with its --errors option."""
    sub = command("ingest", "Ingest NDJSON events into a store, each identity once.",
                  ingest_command, INGEST_MORE)
    sub.add_argument("--store", required=True, metavar="URL", help=URL_HELP)
    sub.add_argument("--batch-size", type=_batch_size, default=DEFAULT_BATCH, metavar="N",
                     help=f"lines per transaction (default {DEFAULT_BATCH:,})")
    sub.add_argument("file", help="events NDJSON file, '-' for stdin")

    for name in READERS:
        parser = commands.choices[name]
        parser.add_argument("--store", metavar="URL", help=STORE_READ_HELP + (
            "" if name == "run" else ", metered with --config into the records read"))
        if name != "run":
            parser.add_argument("--config", help="MeteringConfig JSON file (with --store)")
        for action in parser._actions:
            if action.dest == "file":
                action.nargs, action.default = "?", None
                action.help = f"{action.help} (none with --store)"
            elif action.dest == "closed":
                action.required = False
                action.help = f"{action.help}; with --store, default: the store's"
    _register_store(commands)


def _register_store(commands: Any) -> None:
    group = commands.add_parser(
        "store", help="Create, migrate, check, export or expire a store.",
        description="Manage a store of ingested events (see `meterspec ingest`).")
    sub = group.add_subparsers(dest="action", required=True)
    for action, text in (("init", "Create the store's tables (an empty store) at the current "
                                  "schema version; refuse anything else."),
                         ("migrate", "Bring a store written by an older meterspec to the "
                                     "current schema version (back it up first)."),
                         ("check", "Say the store's schema version and size, and check that "
                                   "its seen index agrees with its log.")):
        sub.add_parser(action, help=text, description=text).add_argument("url", help=URL_HELP)
    text = ("Write every accepted event exactly as it was ingested (NDJSON: byte for byte), "
            "or the effective events, in log order.")
    parser = sub.add_parser("export", help=text, description=text)
    parser.add_argument("url", help=URL_HELP)
    parser.add_argument("--format", choices=("ndjson", "parquet"), default="ndjson")
    parser.add_argument("--effective", action="store_true",
                        help="the effective events (corrections applied) instead of the log")
    parser.add_argument("--output", metavar="FILE",
                        help="write here (needed for parquet); default: standard output")
    text = ("Forget seen entries older than an instant (MS-ING-009; the log keeps every event): "
            "later events older than it are reported late-beyond-retention.")
    parser = sub.add_parser("expire", help=text, description=text)
    parser.add_argument("url", help=URL_HELP)
    parser.add_argument("--before", required=True, help="RFC 3339 instant")
    text = "Record NDJSON Invoices as closed (reconcile --store reads them)."
    parser = sub.add_parser("close", help=text, description=text)
    parser.add_argument("url", help=URL_HELP)
    parser.add_argument("file", help="Invoices NDJSON file, '-' for stdin")


def _batch_size(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"an integer from 1 to {MAX_BATCH:,}")
    return int(text)


# ------------------------------------------------------------------ checks before anything runs

def refusal(args: argparse.Namespace) -> str | None:
    """What is wrong with a command line that reads a store or a file, or None."""
    if args.command not in READERS:
        return None
    store = getattr(args, "store", None)
    if store is None:
        if args.file is None:
            return "an input file ('-' for stdin) or --store URL is required"
        if args.command == "reconcile" and args.closed is None:
            return "--closed is required (or --store URL, whose closed invoices are used)"
        return None
    if args.file is not None:
        return f"--store and an input file ({args.file}) cannot be read together"
    if getattr(args, "jobs", 1) > 1:
        return "--jobs splits files; with --store the input is one stream"
    if args.command != "run" and getattr(args, "config", None) is None:
        return "--config is required with --store: the store holds events, not records"
    return None


# ------------------------------------------------------------------ meterspec ingest

def ingest_command(args: argparse.Namespace, streams: Streams) -> int:
    """Batches of lines into the store; the number of events accepted."""
    from meterspec.lines import read_lines
    from meterspec.store import open_store
    from meterspec.store.batch import Batch

    store = open_store(args.store)
    try:
        store.require_current(create=True)
        accepted = 0
        source = "standard input" if args.file == "-" else args.file
        lines = read_lines(streams.source)
        more = True
        while more:
            batch = Batch()
            more = batch.fill(lines, args.batch_size)
            if batch.size:
                accepted += _commit(store, batch, source, streams)
        return accepted
    finally:
        store.close()


def _commit(store: Store, batch: Batch, source: str, streams: Streams) -> int:
    """One batch: ingest (a transaction), then its problems to the report and its summary to
    standard output, flushed: the acknowledgement."""
    from meterspec.errors import MeterspecError

    result = store.ingest(batch, source)
    found = list(result.rejected)
    found += [(c.position, MeterspecError([c.problem()])) for c in result.conflicts]
    found += [(late.position, MeterspecError([late.problem()])) for late in result.late]
    for position, error in sorted(found, key=lambda item: item[0]):
        streams.report.reject(error, batch.numbers[position])
    streams.report.duplicates += result.duplicates
    streams.report.stream.flush()
    streams.out.write(json.dumps(_summary(result, batch)).encode() + b"\n")
    streams.out.flush()
    return result.accepted


def _summary(result: BatchResult, batch: Batch) -> dict[str, object]:
    return {"batch": result.batch, "firstLine": batch.numbers[0],
            "lastLine": batch.numbers[-1], "events": result.size, "accepted": result.accepted,
            "duplicates": result.duplicates, "conflicts": len(result.conflicts),
            "late": len(result.late), "rejected": len(result.rejected),
            "codes": result.codes()}


# ------------------------------------------------------------------ --store for the readers

class ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks (the store's lines), for a
    BufferedReader: the commands read it as they read a file. A StoreError, or the log's
    MS-ING-019 conflict, surfaces from read() as the StoreError the CLI reports."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        from meterspec.errors import MeterspecError
        from meterspec.store.base import StoreError

        target = memoryview(buffer).cast("B")
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
            except MeterspecError as error:
                raise StoreError(f"the store's log cannot be read: {error}") from None
        count = min(len(target), len(self._pending))
        target[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


def source(args: argparse.Namespace, stack: ExitStack) -> BinaryIO:
    """The input of a reader command with --store: the effective events (run) or their
    records (the others), as a binary stream. Opens the store (read-only where the backend
    can) and refuses one of another schema version."""
    from meterspec.store import open_store

    store = open_store(args.store, read_only=True)
    stack.callback(store.close)
    store.require_current()
    if args.command == "run":
        chunks = store.effective_chunks()
    else:
        if args.command == "reconcile" and args.closed is None:
            args.closed = _closed_file(store, stack)
        metered = _Metered(store, args)
        args.run = metered.wrap(args.run)
        chunks = metered.chunks()
    return io.BufferedReader(ChunkReader(chunks), 1 << 16)


def _closed_file(store: Store, stack: ExitStack) -> str:
    """The store's closed invoices in a temporary file, for reconcile's --closed."""
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="meterspec-closed-"))
    path = os.path.join(folder, "closed.ndjson")
    with open(path, "wb") as out:
        for chunk in store.closed_invoice_chunks():
            out.write(chunk)
    return path


class _Metered:
    """The records of the store's effective events under --config, as NDJSON chunks; an event
    that cannot be metered goes to the command's error report with its line number in the
    effective events (`meterspec store export --effective`), as `meterspec meter` reports it."""

    def __init__(self, store: Store, args: argparse.Namespace) -> None:
        self.store, self.config = store, args.config
        self.report: Report | None = None

    def wrap(self, run: Callable[[argparse.Namespace, Streams], int]
             ) -> Callable[[argparse.Namespace, Streams], int]:
        def with_report(args: argparse.Namespace, streams: Streams) -> int:
            self.report = streams.report
            return run(args, streams)
        return with_report

    def chunks(self) -> Iterator[bytes]:
        from meterspec.cli import _meter_for
        from meterspec.codec import decode_event, encode
        from meterspec.errors import MeterspecError

        meter = _meter_for(self.config)  # BadDocumentError: exit 2 before any output
        number = 0
        for chunk in self.store.effective_chunks():
            pieces: list[bytes] = []
            for line in chunk.splitlines():
                number += 1
                try:
                    records = meter.records(decode_event(line))
                except MeterspecError as error:
                    assert self.report is not None
                    self.report.reject(error, number)
                    continue
                pieces += [encode(record) + b"\n" for record in records]
            yield b"".join(pieces)


# ------------------------------------------------------------------ meterspec store ...

def run_store_command(args: argparse.Namespace) -> int:
    """`meterspec store ACTION URL ...`: one line per fact on stdout, one line per failure on
    stderr (exit 2); `check` exits 1 when the store needs attention."""
    from meterspec.store.base import StoreError

    try:
        return _STORE_ACTIONS[args.action](args)
    except StoreError as error:
        _say(f"meterspec store: {error}")
        return EXIT_USAGE
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as error:
        _say(f"meterspec store: {error.strerror or error}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _say(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _init(args: argparse.Namespace) -> int:
    from meterspec.store import open_store
    from meterspec.store.schema import LATEST

    store = open_store(args.url)
    try:
        found = store.version()
        if found is not None:
            store.require_current()
            _print(f"{args.url}: already a store at schema version {found}")
            return EXIT_OK
        store.migrate()
    finally:
        store.close()
    _print(f"{args.url}: created at schema version {LATEST}")
    return EXIT_OK


def _migrate(args: argparse.Namespace) -> int:
    from meterspec.store import open_store
    from meterspec.store.base import StoreError
    from meterspec.store.schema import LATEST, MIGRATIONS

    store = open_store(args.url)
    try:
        if store.version() is None:
            raise StoreError(f"{args.url} is not a store yet: `meterspec store init` makes one")
        applied = store.migrate()
    finally:
        store.close()
    for version in applied:
        _print(f"{args.url}: migrated to schema version {version} "
               f"({MIGRATIONS[version - 1].summary})")
    if not applied:
        _print(f"{args.url}: already at schema version {LATEST}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from meterspec.store import open_store
    from meterspec.store.schema import LATEST
    from meterspec.timestamps import format_timestamp

    store = open_store(args.url, read_only=True)
    try:
        found = store.version()
        if found is None:
            _print(f"{args.url}: empty, not a store yet (`meterspec store init`)")
            return EXIT_PROBLEMS
        if found != LATEST:
            store.require_current()  # raises, saying what to do
        counts = store.counts()
        horizon = store.horizon()
        problems = store.problems()
    finally:
        store.close()
    _print(f"{args.url}: schema version {found} (current)")
    _print(", ".join(f"{count:,} {table.replace('_', ' ')}" for table, count in counts.items()))
    _print("horizon: " + ("none (nothing expired)" if horizon is None
                          else format_timestamp(horizon)))
    for problem in problems:
        _print(f"problem: {problem}")
    if not problems:
        _print("ok: the seen index agrees with the log")
    return EXIT_PROBLEMS if problems else EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from meterspec.errors import MeterspecError
    from meterspec.store import open_store
    from meterspec.store.base import StoreError

    if args.format == "parquet" and args.output is None:
        raise StoreError("--format parquet needs --output FILE")
    store_path = args.url[len("duckdb:"):] if args.url.startswith("duckdb:") else None
    if (args.output is not None and store_path is not None and os.path.exists(args.output)
            and os.path.exists(store_path) and os.path.samefile(args.output, store_path)):
        raise StoreError("--output is the store itself; refusing to write over it")
    store = open_store(args.url, read_only=True)
    try:
        store.require_current()
        if args.format == "parquet":
            written = store.export_parquet(args.output, args.effective)
            _say(f"meterspec store export: {written:,} events to {args.output}")
            return EXIT_OK
        chunks = store.effective_chunks() if args.effective else store.log_chunks()
        written = 0
        with ExitStack() as stack:
            out: BinaryIO = (sys.stdout.buffer if args.output is None else
                             stack.enter_context(open(args.output, "wb")))
            try:
                for chunk in chunks:
                    out.write(chunk)
                    written += chunk.count(b"\n")
            except MeterspecError as error:
                raise StoreError(f"the store's log cannot be read: {error}") from None
            out.flush()
    finally:
        store.close()
    _say(f"meterspec store export: {written:,} events")
    return EXIT_OK


def _expire(args: argparse.Namespace) -> int:
    from meterspec.errors import MeterspecError
    from meterspec.store import open_store
    from meterspec.store.base import StoreError
    from meterspec.timestamps import format_timestamp, parse_timestamp

    try:
        before = parse_timestamp(args.before, "--before")
    except MeterspecError as error:
        raise StoreError(str(error)) from None
    store = open_store(args.url)
    try:
        store.require_current()
        forgotten = store.expire(before)
        horizon = store.horizon()
    finally:
        store.close()
    assert horizon is not None
    _print(f"{args.url}: {forgotten:,} seen entries forgotten; horizon "
           f"{format_timestamp(horizon)}")
    return EXIT_OK


def _close(args: argparse.Namespace) -> int:
    from meterspec.errors import MeterspecError
    from meterspec.lines import is_blank, read_lines
    from meterspec.store import open_store
    from meterspec.store.base import StoreError

    lines: list[bytes] = []
    with ExitStack() as stack:
        stream: BinaryIO = (sys.stdin.buffer if args.file == "-"
                            else stack.enter_context(open(args.file, "rb")))
        for number, line in read_lines(stream):
            if line is None:
                raise StoreError(f"{args.file}, line {number}: longer than a line may be")
            if not is_blank(line):
                lines.append(line)
    store = open_store(args.url)
    try:
        store.require_current()
        try:
            recorded, known = store.close_invoices(lines)
        except MeterspecError as error:
            raise StoreError(f"{args.file}: not closed invoices: {error}") from None
    finally:
        store.close()
    _print(f"{args.url}: {recorded:,} invoices closed, {known:,} already closed")
    return EXIT_OK


_STORE_ACTIONS: dict[str, Callable[[argparse.Namespace], int]] = {
    "init": _init, "migrate": _migrate, "check": _check, "export": _export,
    "expire": _expire, "close": _close}
