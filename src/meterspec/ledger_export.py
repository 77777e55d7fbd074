"""The ledger export (specs/exports.md, MS-EXP-010 to MS-EXP-012): Invoices and Adjustments as
rows a finance team loads into a spreadsheet or a warehouse, one row per invoice line and per
adjustment line, amounts as exact decimal strings, columns in a fixed order.

    Invoice | Adjustment --rows--> CSV (RFC 4180, header first) | NDJSON (one object a row)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from meterspec.ids import digest_id
from meterspec.invoices import Invoice, InvoiceLine
from meterspec.money import Amount, to_minor_units
from meterspec.reconcile import Adjustment
from meterspec.timestamps import format_timestamp, parse_timestamp

__all__ = ["COLUMNS", "MAPPING", "csv_text", "rows"]

MAPPING = "meterspec/ledger/v1"
"""The version of the ledger mapping, part of every row's entry id."""
COLUMNS = ("entry_id", "document_type", "document_id", "invoice_id", "revision",
           "workspace_id", "universe_id", "subject", "period_start", "period_end",
           "service_start", "service_end", "plan_id", "plan_version", "line", "charge_id",
           "model", "unit", "quantity", "billable_quantity", "currency", "amount_precise",
           "amount_rounded", "amount_minor", "reading_id", "record_count", "records_digest")
"""MS-EXP-011: the columns, in this order, in every row of this mapping version."""

Row = dict[str, str | None]
"""One ledger row: column name -> value, None for an empty cell (MS-EXP-011)."""


def _canonical(timestamp: str) -> str:
    return format_timestamp(parse_timestamp(timestamp))


def _row(document: Invoice | Adjustment, index: int, line: InvoiceLine, amount: Amount,
         quantity: str | None, billable: str | None) -> Row:
    is_invoice = isinstance(document, Invoice)
    service = line.service_period or document.period
    plan = line.plan or document.plan
    usage = line.usage
    row: Row = {
        "entry_id": digest_id("led_", (MAPPING, document.id, str(index))),
        "document_type": "invoice" if is_invoice else "adjustment",
        "document_id": document.id,
        "invoice_id": document.id if isinstance(document, Invoice) else document.invoice_id,
        "revision": document.revision if isinstance(document, Invoice) else document.to_revision,
        "workspace_id": document.workspace_id, "universe_id": document.universe_id,
        "subject": document.subject,
        "period_start": _canonical(document.period.start),
        "period_end": _canonical(document.period.end),
        "service_start": _canonical(service.start), "service_end": _canonical(service.end),
        "plan_id": plan.id, "plan_version": str(plan.version), "line": str(index),
        "charge_id": line.rated.charge_id, "model": line.rated.model, "unit": line.rated.unit,
        "quantity": quantity, "billable_quantity": billable, "currency": document.currency,
        "amount_precise": amount.precise, "amount_rounded": amount.rounded,
        "amount_minor": str(to_minor_units(amount.rounded_value, document.currency)),
        "reading_id": None if usage is None else usage.reading_id,
        "record_count": None if usage is None else str(usage.record_count),
        "records_digest": None if usage is None else usage.records_digest}
    return row


def rows(documents: Iterable[Invoice | Adjustment]) -> Iterator[Row]:
    """MS-EXP-010: one row per line of each document, in document then line order. An invoice
    line's row carries its numbers; an adjustment line's row carries the signed differences
    (its `amount` and `billableQuantity`) and no `quantity`, with the rebuilt line's audit
    trail (the records the correction adds)."""
    for document in documents:
        if isinstance(document, Invoice):
            for index, line in enumerate(document.lines):
                yield _row(document, index, line, line.rated.amount, line.rated.quantity,
                           line.rated.billable_quantity)
        else:
            for index, change in enumerate(document.lines):
                yield _row(document, index, change.after, change.amount, None,
                           change.billable_quantity)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMERIC = frozenset({"plan_version", "line", "quantity", "billable_quantity", "amount_precise",
                      "amount_rounded", "amount_minor", "record_count"})


def _cell(column: str, value: str | None) -> str:
    """MS-EXP-012: absent is the empty cell; a text cell that a spreadsheet would run as a
    formula starts with an apostrophe (numbers keep their sign)."""
    if value is None:
        return ""
    if column not in _NUMERIC and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_text(documents: Iterable[Invoice | Adjustment]) -> Iterator[str]:
    """MS-EXP-012: the header, then one CSV record per row (RFC 4180: CRLF, quoted only when
    needed), each a string to write."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield buffer.getvalue()
    for row in rows(documents):
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_cell(column, row[column]) for column in COLUMNS])
        yield buffer.getvalue()
