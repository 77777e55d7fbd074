"""Domain events (specs/events.md, MS-DEV): facts the pipeline emits for other systems.

Every event is a flat JSON object `{id, type, workspaceID, universeID, subject, ...}` whose
content is a pure function of the facts it reports (no emission time, no running figures) and
whose id is the MS-ID-001 digest of that content, so a retry emits the same bytes under the same
id and any consumer deduplicates it by id. The version of a type is carried by its name
(`usage.recorded` is version 1, a version 2 would be `usage.recorded.v2`, MS-DEV-004).

    MeterRecord --usage_recorded--> UsageRecorded                        usage.recorded
    quotas.decide --------------------> QuotaEvent                quota.warning / .exceeded
    an invoice's fields --invoice_generated / billing_period_closed--> InvoiceGenerated, ...

Constructors check and canonicalise their inputs and raise MeterspecError with every problem.
`semantic_problems` checks a decoded event is exactly what its constructor builds from its
content (canonical values, the right id); `value_problems` checks the quantities, timestamps and
currencies of a raw document beside its schema problems (MS-ERR-002).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TypeVar

import msgspec

from meterspec import json_text
from meterspec.contracts import Measurement, MeterRecord, Window
from meterspec.errors import MeterspecError, Problem, pointer, walk
from meterspec.ids import digest_id
from meterspec.invoices import Invoice
from meterspec.money import Amount, currency, is_rounded
from meterspec.quantity import ZERO, format_quantity, parse_quantity
from meterspec.quotas import QuotaEvent, QuotaEventType
from meterspec.timestamps import format_timestamp, parse_timestamp

__all__ = ["EVENT_TYPES", "BillingPeriodClosed", "DomainEvent", "EventType", "InvoiceGenerated",
           "QuotaEvent", "UsageRecorded", "billing_period_closed", "decode_domain_event",
           "event_type", "invoice_generated", "semantic_problems", "usage_recorded",
           "value_problems"]

F = TypeVar("F", bound="_InvoiceFact")
"""An invoice fact type: InvoiceGenerated or BillingPeriodClosed."""
PREFIX = "dev_"
"""The prefix of every domain event id (MS-DEV-003)."""
USAGE_RECORDED_TAG = "meterspec/usage-recorded/v1"
"""The first field of a usage.recorded id's digest (MS-DEV-007)."""
INVOICE_GENERATED_TAG = "meterspec/invoice-generated/v1"
"""The first field of an invoice.generated id's digest (MS-DEV-009)."""
BILLING_PERIOD_CLOSED_TAG = "meterspec/billing-period-closed/v1"
"""The first field of a billing.period.closed id's digest (MS-DEV-010)."""
QUOTA_EVENT_TAG = "meterspec/quota-event/v1"
"""The first field of a quota event id's digest (MS-QTA-011), which meterspec.quotas computes."""
_INVOICE_ID = re.compile(r"inv_[0-9a-f]{32}")
_REVISION = re.compile(r"rev_[0-9a-f]{32}")
# MS-MNY-006: an output amount in canonical form (no exponent, so Decimal() of it is cheap).
_CANONICAL_AMOUNT = re.compile(r"0|-?(0\.[0-9]*[1-9]|[1-9][0-9]*(\.[0-9]*[1-9])?)")


class _Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class UsageRecorded(_Event, frozen=True):
    """MS-DEV-007: a MeterRecord was accepted; the record's content without meteredAt."""

    id: str
    """`dev_` + digest of the event's content: a pure function of the fact (MS-DEV-003)."""
    type: Literal["usage.recorded"]
    """Always `usage.recorded`."""
    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the record's workspace."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the record's universe."""
    subject: str
    """The record's subject."""
    record_id: str = msgspec.field(name="recordID")
    """Wire `recordID`: the record's id (MS-ID-002)."""
    source_event_id: str = msgspec.field(name="sourceEventID")
    """Wire `sourceEventID`: the id of the event the record was measured from."""
    recorded_at: str = msgspec.field(name="recordedAt")
    """Wire `recordedAt`: the event's time, canonical."""
    measurement: Measurement
    """The record's canonical quantity and unit."""
    dimensions: dict[str, str]
    """The record's dimensions."""


class _InvoiceFact(_Event, frozen=True):
    """The fields an invoice event takes from its invoice (MS-DEV-009, MS-DEV-010)."""

    id: str
    type: str
    workspace_id: str = msgspec.field(name="workspaceID")
    universe_id: str = msgspec.field(name="universeID")
    subject: str
    invoice_id: str = msgspec.field(name="invoiceID")
    revision: str
    period: Window
    currency: str
    total: Amount


class InvoiceGenerated(_InvoiceFact, frozen=True):
    """MS-DEV-009: a revision of an invoice was issued."""

    type: Literal["invoice.generated"]
    """Always `invoice.generated`."""


class BillingPeriodClosed(_InvoiceFact, frozen=True):
    """MS-DEV-010: a subject's billing period is closed; its invoice is final at `revision`."""

    type: Literal["billing.period.closed"]
    """Always `billing.period.closed`."""


DomainEvent = UsageRecorded | QuotaEvent | InvoiceGenerated | BillingPeriodClosed
"""Any domain event of the catalogue (MS-DEV-001)."""


@dataclass(frozen=True)
class EventType:
    """One row of the catalogue (MS-DEV-001): a type name with its version, the codec kind and
    schema file of that version, and the business instant a CloudEvent's `time` carries
    (MS-CE-002), if the type has one."""

    name: str
    """The type name, e.g. `usage.recorded` (MS-DEV-004)."""
    version: int
    """The version of the type's content; a new version is a new type name."""
    kind: str
    """The codec kind that validates and encodes its payloads (meterspec.codec)."""
    struct: type[Any]
    """The msgspec Struct of its payload."""
    schema: str
    """The file name of its JSON Schema in schemas/."""
    business_time: Callable[[Any], str | None]
    """The payload's business instant, which a CloudEvent's `time` carries (MS-CE-002), or None."""


def _no_time(_: Any) -> str | None:
    return None


EVENT_TYPES: dict[str, EventType] = {t.name: t for t in (
    EventType("usage.recorded", 1, "usage-recorded", UsageRecorded,
              "domain-event-usage-recorded.schema.json", lambda e: e.recorded_at),
    EventType("quota.warning", 1, "quota-event", QuotaEvent,
              "domain-event-quota.schema.json", _no_time),
    EventType("quota.exceeded", 1, "quota-event", QuotaEvent,
              "domain-event-quota.schema.json", _no_time),
    EventType("invoice.generated", 1, "invoice-generated", InvoiceGenerated,
              "domain-event-invoice-generated.schema.json", _no_time),
    EventType("billing.period.closed", 1, "billing-period-closed", BillingPeriodClosed,
              "domain-event-billing-period-closed.schema.json", lambda e: e.period.end),
)}
"""The catalogue: type name -> its EventType (MS-DEV-001)."""
KINDS = {t.kind: t.struct for t in EVENT_TYPES.values()}
"""Codec kind -> the Struct of its domain events."""


def event_type(name: object, path: str = "/type") -> EventType:
    """The catalogue entry of a type name, or MeterspecError `unknown-event-type` (MS-DEV-005):
    an unknown type, and an unknown version of a known one, are never read as a known type."""
    if not isinstance(name, str):
        raise MeterspecError.single("wrong-type", path, "a domain event's type is a JSON string",
                                    "MS-DEV-001")
    found = EVENT_TYPES.get(name)
    if found is None:
        raise MeterspecError.single(
            "unknown-event-type", path, f"{name[:64]!r} is not a domain event type (and "
            f"version) this implementation knows: {', '.join(EVENT_TYPES)}", "MS-DEV-005")
    return found


# ------------------------------------------------------------------ constructors


def _identifier(value: str, path: str, requirement: str, problems: list[Problem]) -> None:
    if not value:
        problems.append(Problem("empty-string", path, "must not be empty", requirement))


def _timestamp(text: str, path: str, problems: list[Problem]) -> str | None:
    try:
        return format_timestamp(parse_timestamp(text, path))
    except MeterspecError as error:
        problems.extend(error.problems)
        return None


def usage_recorded_id(workspace: str, universe: str, subject: str, record_id: str,
                      source_event_id: str, recorded_at: str, quantity: str, unit: str,
                      dimensions: dict[str, str]) -> str:
    """MS-DEV-007: `dev_` + MS-ID-001 over the tag and every field, dimensions as their count
    and then key, value in code-point order of the keys."""
    fields = [USAGE_RECORDED_TAG, workspace, universe, subject, record_id, source_event_id,
              recorded_at, quantity, unit, str(len(dimensions))]
    for key in sorted(dimensions):
        fields += (key, dimensions[key])
    return digest_id(PREFIX, fields)


def usage_recorded(record: MeterRecord) -> UsageRecorded:
    """MS-DEV-007: the usage.recorded event of an accepted record. Its time and quantity are
    written in canonical form and meteredAt (a processing time) is left out, so every spelling
    and every retry of the record gives the same bytes. Problems point into the record."""
    problems: list[Problem] = []
    for wire, value in (("/id", record.id), ("/workspaceID", record.workspace_id),
                        ("/universeID", record.universe_id), ("/subject", record.subject),
                        ("/sourceEventID", record.source_event_id),
                        ("/measurement/unit", record.measurement.unit)):
        _identifier(value, wire, "MS-DEV-007", problems)
    recorded_at = _timestamp(record.recorded_at, "/recordedAt", problems)
    quantity = None
    try:
        quantity = format_quantity(parse_quantity(record.measurement.quantity,
                                                  "/measurement/quantity"))
    except MeterspecError as error:
        problems.extend(error.problems)
    if problems or recorded_at is None or quantity is None:
        raise MeterspecError(problems)
    dimensions = {key: record.dimensions[key] for key in sorted(record.dimensions)}
    return UsageRecorded(
        usage_recorded_id(record.workspace_id, record.universe_id, record.subject, record.id,
                          record.source_event_id, recorded_at, quantity,
                          record.measurement.unit, dimensions),
        "usage.recorded", record.workspace_id, record.universe_id, record.subject, record.id,
        record.source_event_id, recorded_at, Measurement(quantity, record.measurement.unit),
        dimensions)


def invoice_event_id(tag: str, workspace: str, universe: str, subject: str, invoice_id: str,
                     revision: str, period: Window, currency_code: str, total: Amount) -> str:
    """MS-DEV-009, MS-DEV-010: `dev_` + MS-ID-001 over the type's tag and every field."""
    return digest_id(PREFIX, (tag, workspace, universe, subject, invoice_id, revision,
                              period.start, period.end, currency_code, total.precise,
                              total.rounded))


def _invoice_fields(invoice_id: str, revision: str, workspace_id: str, universe_id: str,
                    subject: str, period: Window, currency_code: str, total: Amount,
                    requirement: str) -> Window:
    """Check the fields an invoice event takes from its invoice; return the period."""
    problems: list[Problem] = []
    for wire, value in (("/workspaceID", workspace_id), ("/universeID", universe_id),
                        ("/subject", subject)):
        _identifier(value, wire, requirement, problems)
    for wire, value, pattern, prefix in (("/invoiceID", invoice_id, _INVOICE_ID, "inv_"),
                                         ("/revision", revision, _REVISION, "rev_")):
        if not pattern.fullmatch(value):
            problems.append(Problem("invalid-value", wire, f"must be {prefix} and 32 lowercase "
                                    "hexadecimal digits (an MS-ID-001 id)", requirement))
    start = _timestamp(period.start, "/period/start", problems)
    end = _timestamp(period.end, "/period/end", problems)
    for wire, text, canonical in (("/period/start", period.start, start),
                                  ("/period/end", period.end, end)):
        if canonical is not None and canonical != text:
            problems.append(Problem("not-canonical", wire, f"{text[:64]!r} is not "
                                    f"{canonical!r}, its canonical form", "MS-DEV-002"))
    if start is not None and end is not None and not (
            parse_timestamp(start) < parse_timestamp(end)):
        problems.append(Problem("invalid-window", "/period", "the period's start must be "
                                "before its end", "MS-WIN-001"))
    found = None
    try:
        found = currency(currency_code, "/currency")
    except MeterspecError as error:
        problems.extend(error.problems)
    for wire, text in (("/total/precise", total.precise), ("/total/rounded", total.rounded)):
        if not _CANONICAL_AMOUNT.fullmatch(text):
            problems.append(Problem("not-canonical", wire, f"{text[:64]!r} is not an amount in "
                                    "canonical form", "MS-MNY-006"))
    if (found is not None and _CANONICAL_AMOUNT.fullmatch(total.rounded)
            and not is_rounded(Decimal(total.rounded), found)):
        problems.append(Problem("inconsistent-amount", "/total/rounded", "a rounded amount has "
                                f"at most {found.minor_units} digits after the point in "
                                f"{found.code}", "MS-MNY-005"))
    if problems:
        raise MeterspecError(problems)
    return period


def invoice_generated(invoice_id: str, revision: str, workspace_id: str, universe_id: str,
                      subject: str, period: Window, currency_code: str,
                      total: Amount) -> InvoiceGenerated:
    """MS-DEV-009: the invoice.generated event of one revision of an invoice, from the
    invoice's fields as they are (an invoice's values are canonical already). Problems point
    into the event."""
    return _invoice_event(InvoiceGenerated, "invoice.generated", INVOICE_GENERATED_TAG,
                          "MS-DEV-009", invoice_id, revision, workspace_id, universe_id,
                          subject, period, currency_code, total)


def billing_period_closed(invoice_id: str, revision: str, workspace_id: str, universe_id: str,
                          subject: str, period: Window, currency_code: str,
                          total: Amount) -> BillingPeriodClosed:
    """MS-DEV-010: the billing.period.closed event of a subject's period, naming the final
    revision of its invoice. Problems point into the event."""
    return _invoice_event(BillingPeriodClosed, "billing.period.closed",
                          BILLING_PERIOD_CLOSED_TAG, "MS-DEV-010", invoice_id, revision,
                          workspace_id, universe_id, subject, period, currency_code, total)


def _invoice_event(kind: type[F], name: str, tag: str, requirement: str, invoice_id: str,
                   revision: str, workspace_id: str, universe_id: str, subject: str,
                   period: Window, currency_code: str, total: Amount) -> F:
    _invoice_fields(invoice_id, revision, workspace_id, universe_id, subject, period,
                    currency_code, total, requirement)
    return kind(invoice_event_id(tag, workspace_id, universe_id, subject, invoice_id, revision,
                                 period, currency_code, total),
                name, workspace_id, universe_id, subject, invoice_id, revision,
                Window(period.start, period.end), currency_code,
                Amount(total.precise, total.rounded))


def quota_event_id(event: QuotaEvent) -> str:
    """MS-QTA-011 (the id meterspec.quotas gives), recomputed from a quota event's content."""
    return digest_id("qev_", (QUOTA_EVENT_TAG, event.type, event.workspace_id,
                              event.universe_id, event.subject, event.unit, event.period.start,
                              event.period.end, event.limit, event.threshold))


def _quota_event(event: QuotaEvent) -> QuotaEvent:
    """MS-DEV-008: check a quota event as MS-QTA-010/011 define it and rebuild it from its
    content (canonical values, the digest id)."""
    problems: list[Problem] = []
    for wire, value in (("/workspaceID", event.workspace_id), ("/universeID", event.universe_id),
                        ("/subject", event.subject), ("/unit", event.unit)):
        _identifier(value, wire, "MS-QTA-011", problems)
    start = _timestamp(event.period.start, "/period/start", problems)
    end = _timestamp(event.period.end, "/period/end", problems)
    if start is not None and end is not None and not (
            parse_timestamp(start) < parse_timestamp(end)):
        problems.append(Problem("invalid-window", "/period", "the period's start must be "
                                "before its end", "MS-WIN-001"))
    levels: dict[str, Decimal] = {}
    for wire, text in (("/limit", event.limit), ("/threshold", event.threshold)):
        try:
            levels[wire] = parse_quantity(text, wire)
        except MeterspecError as error:
            problems.extend(error.problems)
    limit, threshold = levels.get("/limit"), levels.get("/threshold")
    if limit is not None and limit < ZERO:
        problems.append(Problem("out-of-range", "/limit", "a quota's limit is at least 0",
                                "MS-QTA-001"))
    elif limit is not None and threshold is not None:
        kind: QuotaEventType = event.type
        if kind == "quota.exceeded" and threshold != limit:
            problems.append(Problem("invalid-value", "/threshold", "quota.exceeded is the "
                                    "crossing of the limit itself", "MS-QTA-010"))
        if kind == "quota.warning" and not ZERO <= threshold <= limit:
            problems.append(Problem("out-of-range", "/threshold", "a warning level lies "
                                    "between 0 and the limit", "MS-QTA-004"))
    if problems or start is None or end is None or limit is None or threshold is None:
        raise MeterspecError(problems)
    canonical = QuotaEvent("", event.type, event.workspace_id, event.universe_id, event.subject,
                           event.unit, Window(start, end), format_quantity(limit),
                           format_quantity(threshold))
    return msgspec.structs.replace(canonical, id=quota_event_id(canonical))


# ------------------------------------------------------------------ checking decoded events


def _rebuild(event: DomainEvent) -> DomainEvent:
    if isinstance(event, UsageRecorded):
        record = MeterRecord(event.record_id, event.workspace_id, event.universe_id,
                             event.subject, event.recorded_at, event.measurement,
                             event.dimensions, event.source_event_id)
        try:
            return usage_recorded(record)
        except MeterspecError as error:  # paths into the record -> paths into the event
            raise MeterspecError(msgspec.structs.replace(
                p, path="/recordID" if p.path == "/id" else p.path)
                for p in error.problems) from None
    if isinstance(event, QuotaEvent):
        return _quota_event(event)
    build = invoice_generated if isinstance(event, InvoiceGenerated) else billing_period_closed
    return build(event.invoice_id, event.revision, event.workspace_id, event.universe_id,
                 event.subject, event.period, event.currency, event.total)


def _differences(got: Any, want: Any, path: str) -> list[tuple[str, Any, Any]]:
    if isinstance(want, msgspec.Struct):
        found: list[tuple[str, Any, Any]] = []
        for field in msgspec.structs.fields(want):
            found += _differences(getattr(got, field.name), getattr(want, field.name),
                                  path + pointer(field.encode_name))
        return found
    if isinstance(want, dict):  # key order is part of the canonical form (MS-MET-006)
        return [] if list(got.items()) == list(want.items()) else [(path, got, want)]
    return [] if got == want else [(path, got, want)]


def semantic_problems(event: DomainEvent) -> list[Problem]:
    """MS-DEV-011: everything a schema cannot say about a decoded domain event. It must be
    exactly the event its constructor builds from its content: values in canonical form
    (`not-canonical`, MS-DEV-002) and the id the content gives (`inconsistent-id`,
    MS-DEV-003), besides the rules of its type (a real period, a known currency, ...)."""
    try:
        rebuilt = _rebuild(event)
    except MeterspecError as error:
        return list(error.problems)
    problems: list[Problem] = []
    for path, got, want in _differences(event, rebuilt, ""):
        if path == "/id":
            problems.append(Problem("inconsistent-id", "/id", f"the id of this content is "
                                    f"{want!r}", "MS-DEV-003"))
        else:
            problems.append(Problem("not-canonical", path, f"{str(got)[:64]!r} is not "
                                    f"{want!r}, its canonical form", "MS-DEV-002"))
    return problems


# Where each kind keeps its quantities (q), timestamps (t) and currency (c).
_VALUES: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "usage-recorded": ((("recordedAt",), "t"), (("measurement", "quantity"), "q")),
    "quota-event": ((("period", "start"), "t"), (("period", "end"), "t"), (("limit",), "q"),
                    (("threshold",), "q")),
    "invoice-generated": ((("period", "start"), "t"), (("period", "end"), "t"),
                          (("currency",), "c")),
    "billing-period-closed": ((("period", "start"), "t"), (("period", "end"), "t"),
                              (("currency",), "c")),
}


def value_problems(kind: str) -> Callable[[object, set[str]], list[Problem]]:
    """The codec's value check for one kind: the calendar dates, digit bounds and currency
    list a schema cannot state, on every value the schema did not already report
    (MS-ERR-002)."""
    checks: dict[str, Callable[[object, str], object]] = {
        "t": parse_timestamp, "q": parse_quantity, "c": currency}

    def check(document: object, reported: set[str]) -> list[Problem]:
        problems: list[Problem] = []
        for fields, what in _VALUES[kind]:
            for path, value in walk(document, fields, ""):
                if isinstance(value, str) and path not in reported:
                    try:
                        checks[what](value, path)
                    except MeterspecError as error:
                        problems.extend(error.problems)
        return problems

    return check


def decode_domain_event(data: bytes | str) -> DomainEvent:
    """One domain event of any known type, dispatched on its `type` (MS-DEV-005): an unknown
    type or version is `unknown-event-type` at /type, never decoded as another type."""
    from meterspec.codec import decode  # the codec imports this module

    document = json_text.load(data)  # MS-ERR-007 to MS-ERR-011
    if not isinstance(document, dict):
        raise MeterspecError.single("wrong-type", "", "a domain event is a JSON object",
                                    "MS-DEV-001")
    if "type" not in document:
        raise MeterspecError.single("missing-field", "/type", "required field 'type' is "
                                    "missing", "MS-DEV-001")
    found = event_type(document["type"])
    event: DomainEvent = decode(found.kind, data, found.struct, fast=False)
    return event


def invoice_generated_for(invoice: Invoice) -> InvoiceGenerated:
    """invoice_generated with the fields of an Invoice (meterspec.invoices)."""
    return invoice_generated(invoice.id, invoice.revision, invoice.workspace_id,
                             invoice.universe_id, invoice.subject, invoice.period,
                             invoice.currency, invoice.total)


def billing_period_closed_for(invoice: Invoice) -> BillingPeriodClosed:
    """billing_period_closed for the final revision of an Invoice."""
    return billing_period_closed(invoice.id, invoice.revision, invoice.workspace_id,
                                 invoice.universe_id, invoice.subject, invoice.period,
                                 invoice.currency, invoice.total)
