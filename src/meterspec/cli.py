"""The `meterspec` command: the I/O edge around the pure core (files, stdin, exit codes)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO

from msgspec.structs import replace

from meterspec.codec import (
    STRUCTS,
    decode,
    decode_config,
    decode_event,
    decode_record,
    decode_request,
    encode,
)
from meterspec.conformance import command as conformance
from meterspec.contracts import MeterReading
from meterspec.domain_events import invoice_generated_for
from meterspec.errors import MeterspecError, Problem
from meterspec.invoices import MAX_PERIODS, Invoice, InvoiceBuilder, InvoiceRequest
from meterspec.metering import Meter, check_event
from meterspec.projection import projections
from meterspec.quotas import QuotaCheck, decide
from meterspec.readings import Aggregator, parse_record
from meterspec.reconcile import Adjustment, rebuild_requests, reconcile
from meterspec.timestamps import format_timestamp, parse_timestamp

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
PROGRESS_EVERY = 50_000


class Report:
    """Error report (MS-ERR-004): one Problem per line, with line number and event id."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.rejected = 0

    def reject(self, error: MeterspecError, line: int | None = None) -> None:
        self.rejected += 1
        for problem in error.problems:
            self.stream.write(encode(replace(problem, line=line)))
            self.stream.write(b"\n")


def _lines(source: BinaryIO, label: str) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with 1-based numbers; progress on stderr when it is a terminal."""
    show = sys.stderr.isatty() and not os.environ.get("CI")
    number = 0
    for number, line in enumerate(source, start=1):
        if show and number % PROGRESS_EVERY == 0:
            sys.stderr.write(f"\r{label}: {number:,} lines")
            sys.stderr.flush()
        if line.strip():
            yield number, line
    if show and number >= PROGRESS_EVERY:
        sys.stderr.write("\r\033[K")


class BadDocumentError(Exception):
    """A config or request file that cannot be used: nothing can be computed."""

    def __init__(self, path: str, error: MeterspecError) -> None:
        super().__init__(path)
        self.path, self.error = path, error


def _meter_for(path: str) -> Meter:
    try:
        return Meter(decode_config(Path(path).read_bytes()))
    except MeterspecError as error:
        raise BadDocumentError(path, error) from None


def _aggregator_for(path: str) -> Aggregator:
    try:
        return Aggregator(decode_request(Path(path).read_bytes()))
    except MeterspecError as error:
        raise BadDocumentError(path, error) from None


def _meter(args: argparse.Namespace, source: BinaryIO, out: BinaryIO, report: Report) -> int:
    meter = _meter_for(args.config)
    metered_at = args.metered_at
    count = 0
    for number, line in _lines(source, "meter"):
        try:
            records = meter.records(decode_event(line), metered_at)
        except MeterspecError as error:
            report.reject(error, number)
            continue
        for record in records:
            out.write(encode(record))
            out.write(b"\n")
        count += len(records)
    return count


def _aggregate(args: argparse.Namespace, source: BinaryIO, out: BinaryIO,
               report: Report) -> int:
    aggregator = _aggregator_for(args.request)
    for number, line in _lines(source, "aggregate"):
        try:
            aggregator.add_record(decode_record(line))
        except MeterspecError as error:
            report.reject(error, number)
    return _write_readings(aggregator, out)


def _run(args: argparse.Namespace, source: BinaryIO, out: BinaryIO, report: Report) -> int:
    meter = _meter_for(args.config)
    aggregator = _aggregator_for(args.request)
    for number, line in _lines(source, "run"):
        try:
            event = decode_event(line)
            instant, measured, dimensions = meter.measure(event)
        except MeterspecError as error:
            report.reject(error, number)
            continue
        for m in measured:
            aggregator.add(event.workspace_id, event.universe_id, event.subject, m.unit,
                           dimensions, instant, m.quantity)
    return _write_readings(aggregator, out)


def _document(kind: str, path: str) -> Any:
    """A config or request file decoded and checked, or BadDocumentError."""
    try:
        return decode(kind, Path(path).read_bytes(), STRUCTS[kind], fast=False)
    except MeterspecError as error:
        raise BadDocumentError(path, error) from None


def _feed(builders: list[InvoiceBuilder], source: BinaryIO, report: Report,
          label: str) -> None:
    for number, line in _lines(source, label):
        try:
            record = decode_record(line)
            for builder in builders:
                builder.add(record)
        except MeterspecError as error:
            report.reject(error, number)


def _write(values: Iterable[object], out: BinaryIO) -> int:
    written = 0
    for value in values:
        out.write(encode(value))
        out.write(b"\n")
        written += 1
    return written


def _invoice(args: argparse.Namespace, source: BinaryIO, out: BinaryIO, report: Report) -> int:
    request: InvoiceRequest = _document("invoice-request", args.request)
    if args.periods is not None:
        request = replace(request, periods=args.periods)
    try:
        builder = InvoiceBuilder(request)
    except MeterspecError as error:
        raise BadDocumentError(args.request, error) from None
    _feed([builder], source, report, "invoice")
    invoices = builder.invoices()
    if args.events is not None:  # MS-DEV-009: one invoice.generated per invoice
        with open(args.events, "wb") as events:
            _write(map(invoice_generated_for, invoices), events)
    return _write(invoices, out)


def _reconcile(args: argparse.Namespace, source: BinaryIO, out: BinaryIO,
               report: Report) -> int:
    request: InvoiceRequest = _document("invoice-request", args.request)
    closed: list[Invoice] = []
    with open(args.closed, "rb") as file:
        for number, line in _lines(file, "closed"):
            try:
                closed.append(decode("invoice", line, Invoice, fast=False))
            except MeterspecError as error:
                raise BadDocumentError(f"{args.closed}, line {number}", error) from None
    try:
        groups = [(InvoiceBuilder(rebuilt), invoices)
                  for rebuilt, invoices in rebuild_requests(request, closed)]
    except MeterspecError as error:
        raise BadDocumentError(args.closed, error) from None
    _feed([builder for builder, _ in groups], source, report, "reconcile")
    found: dict[str, Adjustment] = {}
    for builder, invoices in groups:
        for invoice, rebuilt in zip(invoices, builder.invoices(), strict=True):
            try:
                adjustment = reconcile(invoice, rebuilt)
            except MeterspecError as error:
                raise BadDocumentError(args.closed, error) from None
            if adjustment is not None:
                found[invoice.id] = adjustment
    adjustments = [found[invoice.id] for invoice in closed if invoice.id in found]
    return _write(adjustments, out)


def _project(args: argparse.Namespace, source: BinaryIO, out: BinaryIO,
             report: Report) -> int:
    request: InvoiceRequest = _document("invoice-request", args.request)
    request = replace(request, at=args.as_of, periods=1)
    try:
        builder = InvoiceBuilder(request)
    except MeterspecError as error:
        raise BadDocumentError(args.request, error) from None
    as_of = parse_timestamp(request.at)
    for number, line in _lines(source, "project"):
        try:
            record = decode_record(line)
            if parse_record(record)[0] < as_of:  # MS-PRJ-001: only what is known by asOf
                builder.add(record)
        except MeterspecError as error:
            report.reject(error, number)
    return _write(projections(request, builder.invoices()), out)


def _quota(args: argparse.Namespace, source: BinaryIO, out: BinaryIO, report: Report) -> int:
    written = 0
    for number, line in _lines(source, "quota"):
        try:
            decision = decide(decode("quota-check", line, QuotaCheck, fast=False))
        except MeterspecError as error:
            report.reject(error, number)
            continue
        written += _write([decision], out)
    return written


def _write_readings(aggregator: Aggregator, out: BinaryIO) -> int:
    written = 0
    for reading in aggregator.iter_readings():
        out.write(encode(reading))
        out.write(b"\n")
        written += 1
    return written


def _validate(args: argparse.Namespace, source: BinaryIO, out: BinaryIO, report: Report) -> int:
    struct = STRUCTS[args.kind]
    lines = args.lines or args.file.endswith((".ndjson", ".jsonl"))
    documents = _lines(source, "validate") if lines else iter([(1, source.read())])
    valid = 0
    for number, data in documents:
        try:
            value = decode(args.kind, data, struct, fast=False)
            _check_semantics(args.kind, value)
        except MeterspecError as error:
            report.reject(error, number if lines else None)
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


def _period_count(text: str) -> int:
    """--periods: an integer 1..MAX_PERIODS (MS-BIL-004), or argparse's usage error."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_PERIODS:
        raise argparse.ArgumentTypeError(f"an integer from 1 to {MAX_PERIODS}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterspec", description="Usage events -> meter records -> meter readings -> "
        "invoices.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, run: Callable[..., int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(run=run)
        sub.add_argument("--errors", metavar="FILE",
                         help="write the error report here instead of stderr")
        return sub

    sub = command("meter", "Write the MeterRecords of NDJSON events as NDJSON.", _meter)
    sub.add_argument("--config", required=True, help="MeteringConfig JSON file")
    sub.add_argument("--metered-at", help="RFC 3339 time to stamp as meteredAt")
    sub.add_argument("file", help="events NDJSON file, '-' for stdin")

    sub = command("aggregate", "Write the MeterReadings of NDJSON records.", _aggregate)
    sub.add_argument("--request", required=True, help="AggregationRequest JSON file")
    sub.add_argument("file", help="records NDJSON file, '-' for stdin")

    sub = command("run", "Meter events and aggregate them in one streaming pass.", _run)
    sub.add_argument("--config", required=True, help="MeteringConfig JSON file")
    sub.add_argument("--request", required=True, help="AggregationRequest JSON file")
    sub.add_argument("file", help="events NDJSON file, '-' for stdin")

    sub = command("invoice", "Write the Invoices of NDJSON records as NDJSON.", _invoice)
    sub.add_argument("--request", required=True, help="InvoiceRequest JSON file")
    sub.add_argument("--periods", type=_period_count, help="bill this many periods (1 to "
                     f"{MAX_PERIODS}) up to the request's `at` (a usage history), overriding "
                     "the request's `periods`")
    sub.add_argument("--events", metavar="FILE", help="also write an invoice.generated domain "
                     "event per invoice here, as NDJSON")
    sub.add_argument("file", help="records NDJSON file, '-' for stdin")

    sub = command("reconcile", "Write the Adjustments that bring closed invoices up to date "
                  "with every record now known.", _reconcile)
    sub.add_argument("--request", required=True, help="InvoiceRequest JSON file (its plans, "
                     "usage rules and subscriptions; `at` and `periods` are ignored)")
    sub.add_argument("--closed", required=True, help="closed Invoices, NDJSON")
    sub.add_argument("file", help="records NDJSON file, '-' for stdin")

    sub = command("project", "Project each subscription's period in progress to its end.",
                  _project)
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
    sub.add_argument("file", help="JSON document, or NDJSON (.ndjson/.jsonl or --lines)")
    sub.add_argument("--lines", action="store_true", help="one document per line")

    conformance.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "conformance":
            return conformance.run_command(args)
        return _main(args)
    except BrokenPipeError:  # `meterspec ... | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(args: argparse.Namespace) -> int:
    for option in ("metered_at", "as_of"):  # timestamps given on the command line
        if getattr(args, option, None) is not None:
            flag = "--" + option.replace("_", "-")
            try:
                setattr(args, option, format_timestamp(parse_timestamp(getattr(args, option),
                                                                       flag)))
            except MeterspecError as error:
                sys.stderr.write(f"meterspec: {error}\n")
                return EXIT_USAGE
    with ExitStack() as stack:
        try:
            source = (sys.stdin.buffer if args.file == "-"
                      else stack.enter_context(open(args.file, "rb")))
            errors = (sys.stderr.buffer if args.errors is None
                      else stack.enter_context(open(args.errors, "wb")))
        except OSError as error:
            sys.stderr.write(f"meterspec: {error}\n")
            return EXIT_USAGE
        report = Report(errors)
        out = sys.stdout.buffer
        try:
            written = args.run(args, source, out, report)
            out.flush()
        except BadDocumentError as bad:
            sys.stderr.write(f"meterspec: {bad.path} is not usable:\n")
            Report(sys.stderr.buffer).reject(bad.error)
            return EXIT_USAGE
        except BrokenPipeError:
            raise  # handled in main(), not an unreadable file
        except OSError as error:
            sys.stderr.write(f"meterspec: {error}\n")
            return EXIT_USAGE
        except KeyboardInterrupt:
            return 130
        errors.flush()
    noun = {"validate": "valid documents", "aggregate": "readings", "run": "readings",
            "invoice": "invoices", "reconcile": "adjustments", "quota": "decisions",
            "project": "projections"}
    sys.stderr.write(f"meterspec {args.command}: {written} {noun.get(args.command, 'records')}"
                     f", {report.rejected} rejected\n")
    return EXIT_REJECTED if report.rejected else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
