"""The commands of the edges (issue 16 part B), registered by meterspec.cli:

    meterspec convert FILE                                    numbers at the edge (MS-CNV)
    meterspec export stripe --invoices FILE --customers FILE  Stripe request bodies (MS-EXP)
    meterspec export ledger --invoices FILE [--format csv|json]  ledger rows (MS-EXP)

They use cli.py's machinery (bounded lines, the error report, outputs checked against inputs,
exit statuses of MS-ERR-004) through the `command` factory it passes in; their inputs beyond
the main one are named in EDGE_INPUTS, so the same-file check of MS-ERR-013 covers them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from meterspec.cli import Streams

EDGE_INPUTS: tuple[tuple[str, str], ...] = (("customers", "--customers"),)
"""Inputs of these commands beyond `file` (attribute, flag), for cli._overwritten_input."""

Command = Callable[..., argparse.ArgumentParser]
"""cli's factory of one subcommand parser (name, help, ...), passed in so this module does not
import cli."""


def register_edges(commands: Any, command: Command) -> None:
    """Add `convert` and `export` to the parser (`command` is cli._parser's factory)."""
    sub = command("convert", "Convert NDJSON events whose property values may be JSON numbers "
                  "into EventPayloads: each number from its text into its canonical quantity "
                  "string, never through a float; anything else is reported (MS-CNV).",
                  _convert)
    sub.add_argument("file", help="payloads NDJSON file, '-' for stdin")

    sub = command("export", "Write closed Invoices and their Adjustments as Stripe request "
                  "bodies (one JSON object a line: endpoint, idempotencyKey, body; nothing is "
                  "sent) or as ledger rows, one per invoice line and adjustment line "
                  "(specs/exports.md, MS-EXP).", _export)
    sub.add_argument("target", choices=("stripe", "ledger"))
    sub.add_argument("--invoices", dest="file", required=True, metavar="FILE",
                     help="Invoices and Adjustments, NDJSON (what `meterspec invoice` and "
                     "`meterspec reconcile` write), '-' for stdin")
    sub.add_argument("--customers", metavar="FILE", help="stripe: a JSON object from subject "
                     "to Stripe customer id (cus_...)")
    sub.add_argument("--objects", choices=("invoice-items", "meter-events"),
                     default="invoice-items", help="stripe: invoice items priced by "
                     "meterspec (default), or meter events for Stripe to price; never both "
                     "for one charge (MS-EXP-006)")
    sub.add_argument("--format", choices=("csv", "json"), default="csv",
                     help="ledger: CSV with a header (default) or one JSON object a row")


def _convert(args: argparse.Namespace, streams: Streams) -> int:
    """MS-CNV-004: every good line converted, every bad one reported with its line number."""
    from meterspec.cli import _lines
    from meterspec.codec import encode
    from meterspec.convert import convert_line
    from meterspec.errors import MeterspecError

    written = 0
    for number, line in _lines(streams.source, "convert", streams.report.reject):
        try:
            event = convert_line(line)
        except MeterspecError as error:
            streams.report.reject(error, number)
            continue
        streams.out.write(encode(event) + b"\n")
        written += 1
    return written


def _billed_document(line: bytes) -> Any:
    """An Invoice, or an Adjustment when the line's object has `fromRevision` (MS-REC-002),
    decoded and checked in full (MS-INV-007, MS-REC-003)."""
    from meterspec.codec import decode
    from meterspec.invoices import Invoice
    from meterspec.reconcile import Adjustment

    try:
        is_adjustment = "fromRevision" in msgspec.json.decode(line, type=dict[str, Any])
    except (msgspec.DecodeError, msgspec.ValidationError):
        is_adjustment = False  # decode() below reports what is wrong with the line
    if is_adjustment:
        return decode("adjustment", line, Adjustment, fast=False)
    return decode("invoice", line, Invoice, fast=False)


def _customers(args: argparse.Namespace) -> dict[str, str]:
    from meterspec import json_text
    from meterspec.cli import BadDocumentError, _document_bytes
    from meterspec.errors import MeterspecError, Problem
    from meterspec.stripe_export import customer_problems

    if args.customers is None:
        raise BadDocumentError("--customers", MeterspecError([Problem(
            "missing-field", "", "export stripe needs --customers FILE: a JSON object from "
            "subject to Stripe customer id", "MS-EXP-002")]))
    try:
        customers = json_text.load(_document_bytes(args.customers))
    except MeterspecError as error:
        raise BadDocumentError(args.customers, error) from None
    problems = customer_problems(customers)
    if problems:
        raise BadDocumentError(args.customers, MeterspecError(problems))
    return dict(customers)


def _export(args: argparse.Namespace, streams: Streams) -> int:
    """MS-EXP: every good document exported whole, every bad one reported with its line
    number and exported not at all."""
    from meterspec.cli import _lines
    from meterspec.errors import MeterspecError

    customers = _customers(args) if args.target == "stripe" else {}
    if args.target == "ledger" and args.format == "csv":
        from meterspec.ledger_export import csv_text
        streams.out.write(next(csv_text(())).encode())
    written = 0
    for number, line in _lines(streams.source, "export", streams.report.reject):
        try:
            document = _billed_document(line)
            written += _write_document(args, document, customers, streams)
        except MeterspecError as error:
            streams.report.reject(error, number)
    return written


def _write_document(args: argparse.Namespace, document: Any, customers: dict[str, str],
                    streams: Streams) -> int:
    from meterspec import ledger_export, stripe_export

    if args.target == "stripe":
        lines = [msgspec.json.encode(request.to_builtins()) for request in
                 stripe_export.export_document(document, customers, args.objects)]
    elif args.format == "json":
        lines = [msgspec.json.encode(row) for row in ledger_export.rows([document])]
    else:
        lines = [text.encode() for text in list(ledger_export.csv_text([document]))[1:]]
    for line in lines:
        streams.out.write(line if args.format == "csv" and args.target == "ledger"
                          else line + b"\n")
    return len(lines)
