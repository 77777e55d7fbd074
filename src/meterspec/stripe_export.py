"""The hand-off to Stripe (specs/exports.md, MS-EXP-001 to MS-EXP-009): Invoices and Adjustments
as the request bodies of Stripe's API, and what a caller that sends them does with each answer.

    Invoice | Adjustment --customers--> invoice items (POST /v1/invoiceitems)
                                    or  meter events (POST /v1/billing/meter_events)
    each with an idempotency key that is a function of the document and the line

No network, no clock: `export_document` returns the requests, and `after_attempt` says what
follows a sent one (the report state machine of MS-EXP-008).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from meterspec.errors import MeterspecError, Problem
from meterspec.ids import digest_id
from meterspec.invoices import Invoice, InvoiceLine
from meterspec.quantity import EXACT, format_quantity
from meterspec.reconcile import Adjustment
from meterspec.timestamps import NANOS_PER_SECOND, Instant, parse_timestamp

__all__ = ["MAPPING", "MAX_ATTEMPTS", "Objects", "Outcome", "StripeRequest", "after_attempt",
           "customer_problems", "export_document", "retry_delay", "stripe_exponent"]

MAPPING = "meterspec/stripe/v1"
"""The version of the Stripe mapping, part of every idempotency key (MS-EXP-005)."""
INVOICE_ITEMS = "POST /v1/invoiceitems"
"""The endpoint of invoice items (MS-EXP-004)."""
METER_EVENTS = "POST /v1/billing/meter_events"
"""The endpoint of meter events (MS-EXP-006)."""
Objects = Literal["invoice-items", "meter-events"]
"""What an export creates: invoice items or meter events."""

ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF",
                          "UGX", "VND", "VUV", "XAF", "XOF", "XPF"})
"""Currencies Stripe prices in whole units, zero decimals (docs.stripe.com/currencies; this
mapping's table of minor units where they are not 2)."""
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
"""Currencies with three decimals at Stripe, whose last digit must be 0."""
MAX_SAFE_INTEGER = 2**53 - 1
"""2^53 - 1, the largest integer every JSON parser reads exactly (the reason of MS-CNV-001)."""
MAX_METER_DIGITS = 15
"""The most significant digits Stripe accepts in a meter event value."""

MAX_ATTEMPTS = 8
"""The most attempts of one request (MS-EXP-008)."""
FIRST_DELAY_SECONDS, MAX_DELAY_SECONDS = 30, 3_600
KEY_LIFETIME_SECONDS = 86_400
"""How long Stripe keeps an idempotency key, at least: no retry after it (MS-EXP-008)."""


@dataclass(frozen=True, slots=True)
class StripeRequest:
    """One request for the caller to send: the endpoint, the Idempotency-Key header, the body
    (form parameters as JSON, in a fixed order)."""

    endpoint: str
    """The method and Stripe API path, e.g. `POST /v1/invoiceitems`."""
    idempotency_key: str
    """The Idempotency-Key header: a digest of the request, the same on every export
    (MS-EXP-005)."""
    body: dict[str, Any]
    """The form parameters, as JSON values in a fixed order."""

    def to_builtins(self) -> dict[str, Any]:
        """The request as the JSON object of one output line (endpoint, idempotencyKey, body)."""
        return {"endpoint": self.endpoint, "idempotencyKey": self.idempotency_key,
                "body": self.body}


def stripe_exponent(code: str) -> int:
    """MS-EXP-003: the power of ten from a unit of `code` to Stripe's `amount` integer."""
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


def _not_exportable(path: str, message: str) -> Problem:
    return Problem("not-exportable", path, message, "MS-EXP-003")


def _amount(rounded: str, code: str, path: str, problems: list[Problem]) -> int:
    """MS-EXP-003: a rounded amount as Stripe's integer, or a problem (never rounded here)."""
    scaled = EXACT.scaleb(Decimal(rounded), stripe_exponent(code))
    if scaled != scaled.to_integral_value():
        problems.append(_not_exportable(path, f"{rounded} {code} is not a whole number of "
                                        f"Stripe's {code} minor units"))
        return 0
    minor = int(scaled)
    if code in THREE_DECIMAL and minor % 10:
        problems.append(_not_exportable(path, f"Stripe charges {code} in multiples of 10 "
                                        f"minor units; {rounded} is not one"))
    elif abs(minor) > MAX_SAFE_INTEGER:
        problems.append(_not_exportable(path, f"{minor} minor units is beyond 2^53 - 1"))
    return minor


def _seconds(instant: Instant) -> tuple[int, int]:
    """(floor, ceiling) of an instant in whole seconds."""
    return instant // NANOS_PER_SECOND, -(-instant // NANOS_PER_SECOND)


def _stripe_period(start: str, end: str) -> dict[str, int]:
    """MS-EXP-004: the half-open [start, end) as Stripe's inclusive whole seconds."""
    return {"start": _seconds(parse_timestamp(start))[0],
            "end": _seconds(parse_timestamp(end))[1] - 1}


def _key(kind: str, document_id: str, line: int) -> str:
    """MS-EXP-005: the idempotency key of one line of one document."""
    return digest_id("msx_", (MAPPING, kind, document_id, str(line)))


def customer_problems(customers: object) -> list[Problem]:
    """MS-EXP-002: the customer map is a JSON object of non-empty strings."""
    if not isinstance(customers, Mapping):
        return [Problem("wrong-type", "", "the customer map is a JSON object from subject to "
                        "Stripe customer id", "MS-EXP-002")]
    return [Problem("wrong-type" if not isinstance(value, str) else "empty-string",
                    "/" + name.replace("~", "~0").replace("/", "~1"),
                    "a Stripe customer id is a non-empty string", "MS-EXP-002")
            for name, value in customers.items() if not isinstance(value, str) or not value]


def _common_metadata(document: Invoice | Adjustment, key: str, line: int) -> dict[str, str]:
    return {"meterspec_mapping": MAPPING, "meterspec_key": key,
            "meterspec_workspace_id": document.workspace_id,
            "meterspec_universe_id": document.universe_id,
            "meterspec_subject": document.subject, "meterspec_line": str(line)}


def _line_metadata(line: InvoiceLine) -> dict[str, str]:
    rated = line.rated
    plan = {} if line.plan is None else {"meterspec_line_plan": f"{line.plan.id}@"
                                         f"{line.plan.version}"}
    found = {"meterspec_charge_id": rated.charge_id, **plan}
    if rated.unit is not None:
        found["meterspec_unit"] = rated.unit
    if rated.quantity is not None:
        found["meterspec_quantity"] = rated.quantity
    if line.usage is not None:
        found["meterspec_reading_id"] = line.usage.reading_id
        found["meterspec_records_digest"] = line.usage.records_digest
    return found


def _description(prefix: str, line: InvoiceLine, quantity: str | None) -> str:
    rated = line.rated
    if rated.unit is None or quantity is None:
        return prefix + rated.charge_id
    return f"{prefix}{rated.charge_id}: {quantity} {rated.unit}"


def _invoice_items(document: Invoice | Adjustment, customer: str,
                   problems: list[Problem]) -> list[StripeRequest]:
    """MS-EXP-004/005: one invoice item per line whose rounded amount is not 0."""
    requests: list[StripeRequest] = []
    if isinstance(document, Invoice):
        lines = [(i, line, line.rated.amount.rounded, line.rated.amount.precise,
                  line.rated.quantity) for i, line in enumerate(document.lines)]
        prefix, path = "", "/lines/{}/rated/amount/rounded"
        head = {"meterspec_invoice_id": document.id, "meterspec_revision": document.revision}
    else:
        lines = [(i, adj.after, adj.amount.rounded, adj.amount.precise, adj.billable_quantity)
                 for i, adj in enumerate(document.lines)]
        prefix, path = "adjustment: ", "/lines/{}/amount/rounded"
        head = {"meterspec_adjustment_id": document.id, "meterspec_invoice_id":
                document.invoice_id, "meterspec_from_revision": document.from_revision,
                "meterspec_to_revision": document.to_revision}
    plan = {"meterspec_plan": f"{document.plan.id}@{document.plan.version}"}
    for index, line, rounded, precise, quantity in lines:
        if Decimal(rounded).is_zero():
            continue
        key = _key("invoiceitem", document.id, index)
        amount = _amount(rounded, document.currency, path.format(index), problems)
        service = line.service_period or document.period
        body = {"customer": customer, "amount": amount, "currency": document.currency.lower(),
                "description": _description(prefix, line, quantity),
                "period": _stripe_period(service.start, service.end),
                "metadata": {**_common_metadata(document, key, index), **head, **plan,
                             **_line_metadata(line), "meterspec_amount_precise": precise,
                             "meterspec_amount_rounded": rounded}}
        requests.append(StripeRequest(INVOICE_ITEMS, key, body))
    return requests


def _significant_digits(quantity: str) -> int:
    digits = Decimal(quantity).normalize().as_tuple().digits
    return len(digits)


def _difference(after: str | None, before: str | None) -> str | None:
    if after is None or before is None:
        return None
    return format_quantity(EXACT.subtract(Decimal(after), Decimal(before)))


def _meter_events(document: Invoice | Adjustment, customer: str,
                  problems: list[Problem]) -> list[StripeRequest]:
    """MS-EXP-006: one meter event per line with a unit and a quantity (an adjustment line:
    the change of the quantity), valued as that quantity's canonical text."""
    if isinstance(document, Invoice):
        lines = [(i, line, line.rated.quantity, f"/lines/{i}/rated/quantity")
                 for i, line in enumerate(document.lines)]
    else:
        lines = [(i, adj.after, _difference(adj.after.rated.quantity, adj.before.rated.quantity),
                  f"/lines/{i}/after/rated/quantity") for i, adj in enumerate(document.lines)]
    requests: list[StripeRequest] = []
    for index, line, value, path in lines:
        if line.rated.unit is None or value is None or (
                not isinstance(document, Invoice) and Decimal(value).is_zero()):
            continue
        if _significant_digits(value) > MAX_METER_DIGITS:
            problems.append(_not_exportable(path, f"{value} has more than {MAX_METER_DIGITS} "
                                            "significant digits, more than a Stripe meter "
                                            "event value holds"))
            continue
        key = _key("meter_event", document.id, index)
        service = line.service_period or document.period
        body = {"event_name": line.rated.unit, "identifier": key,
                "payload": {"stripe_customer_id": customer, "value": value},
                "timestamp": _stripe_period(service.start, service.end)["end"]}
        requests.append(StripeRequest(METER_EVENTS, key, body))
    return requests


def export_document(document: Invoice | Adjustment, customers: Mapping[str, str],
                    objects: Objects = "invoice-items") -> list[StripeRequest]:
    """MS-EXP-001 to MS-EXP-006: the Stripe requests of one checked Invoice or Adjustment, all
    or none: MeterspecError with every reason the document cannot be exported exactly."""
    customer = customers.get(document.subject)
    if customer is None:
        raise MeterspecError([_not_exportable("/subject", f"no Stripe customer for subject "
                                              f"{document.subject[:64]!r} in the customer map")])
    problems: list[Problem] = []
    export = _invoice_items if objects == "invoice-items" else _meter_events
    requests = export(document, customer, problems)
    if problems:
        raise MeterspecError(problems)
    return requests


# ------------------------------------------------------------------ the report (MS-EXP-008)

State = Literal["done", "failed-retryable", "failed-permanent"]
"""The report states after an attempt (MS-EXP-008)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What follows one sent request: its next state and, to retry, when."""

    state: State
    """The request's next report state (MS-EXP-008)."""
    next_attempt_at: Instant | None = None
    """For `failed-retryable`, when to send it again, ns since the epoch; else None."""


def retry_delay(attempt: int) -> int:
    """MS-EXP-009: seconds from the end of failed attempt `attempt` to the next one."""
    return min(FIRST_DELAY_SECONDS << (attempt - 1), MAX_DELAY_SECONDS)


def _retryable(status: int | None) -> bool:
    return status is None or status in (409, 429) or status >= 500


def after_attempt(attempt: int, first_sent_at: Instant, finished_at: Instant,
                  status: int | None) -> Outcome:
    """MS-EXP-008/009: the state after attempt `attempt` (1 to MAX_ATTEMPTS) of a request first
    sent at `first_sent_at`, which ended at `finished_at` with HTTP `status` (None: no answer).
    2xx: done. No answer, 409, 429, 5xx: retry with the same key, unless attempts are spent
    or the retry would fall after the key's 24 hours; any other status: permanent."""
    if not 1 <= attempt <= MAX_ATTEMPTS:
        raise ValueError(f"attempts are numbered 1 to {MAX_ATTEMPTS}")
    if finished_at < first_sent_at:
        raise ValueError("an attempt cannot finish before the first was sent")
    if status is not None and 200 <= status <= 299:
        return Outcome("done")
    if not _retryable(status) or attempt == MAX_ATTEMPTS:
        return Outcome("failed-permanent")
    next_at = finished_at + retry_delay(attempt) * NANOS_PER_SECOND
    if next_at >= first_sent_at + KEY_LIFETIME_SECONDS * NANOS_PER_SECOND:
        return Outcome("failed-permanent")
    return Outcome("failed-retryable", next_at)
