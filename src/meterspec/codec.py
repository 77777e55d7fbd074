"""JSON and NDJSON edges: bytes in, typed Structs out, every problem reported (MS-ERR)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import msgspec
from msgspec.structs import replace

from meterspec import (
    domain_events,
    ingestion,
    invoices,
    json_text,
    projection,
    quotas,
    ratelimit,
    reconcile,
)
from meterspec.contracts import (
    AggregationRequest,
    EventPayload,
    MeteringConfig,
    MeterReading,
    MeterRecord,
)
from meterspec.errors import MeterspecError, Problem, walk
from meterspec.json_text import repeats_a_name, string_count
from meterspec.metering import Meter
from meterspec.plans import (
    Plan,
    RatedCharge,
    plan_semantic_problems,
    plan_value_problems,
    rated_charge_semantic_problems,
    rated_charge_value_problems,
)
from meterspec.quantity import parse_quantity
from meterspec.readings import Aggregator
from meterspec.schema import schema_problems
from meterspec.timestamps import parse_timestamp

T = TypeVar("T")
STRUCTS: dict[str, type[Any]] = {
    "event": EventPayload,
    "config": MeteringConfig,
    "record": MeterRecord,
    "reading": MeterReading,
    "request": AggregationRequest,
    "problem": Problem,
    "plan": Plan,
    "rated-charge": RatedCharge,
    "ingestion-state": ingestion.IngestionState,
    "quota-policy": quotas.QuotaPolicy,
    "quota-check": quotas.QuotaCheck,
    "quota-decision": quotas.QuotaDecision,
    "rate-limit-policy": ratelimit.RateLimitPolicy,
    "rate-limit-state": ratelimit.RateLimitState,
    "invoice-request": invoices.InvoiceRequest,
    "invoice": invoices.Invoice,
    "usage-recorded": domain_events.UsageRecorded,
    "quota-event": quotas.QuotaEvent,
    "invoice-generated": domain_events.InvoiceGenerated,
    "billing-period-closed": domain_events.BillingPeriodClosed,
    "adjustment": reconcile.Adjustment,
    "projection": projection.Projection,
}
# Kinds whose own module checks their values (on the raw document, beside schema problems) and
# their semantics (on the decoded Struct, once nothing else is wrong): MS-ERR-002.
_OWN_VALUE_CHECKS: dict[str, Callable[[object, set[str]], list[Problem]]] = {
    "plan": plan_value_problems,
    "rated-charge": rated_charge_value_problems,
    "ingestion-state": ingestion.state_value_problems,
    "quota-policy": quotas.policy_value_problems,
    "quota-check": quotas.check_value_problems,
    "quota-decision": quotas.decision_value_problems,
    "rate-limit-state": ratelimit.state_value_problems,
    "invoice-request": invoices.request_value_problems,
    "invoice": invoices.invoice_value_problems,
    **{kind: domain_events.value_problems(kind) for kind in domain_events.KINDS},
    "adjustment": reconcile.adjustment_value_problems,
    "projection": projection.projection_value_problems,
}
def _problems_of(check: Callable[[], object]) -> list[Problem]:
    """The problems a check returns (a list) or raises (MeterspecError)."""
    try:
        found = check()
    except MeterspecError as error:
        return list(error.problems)
    return found if isinstance(found, list) else []


_SEMANTIC_CHECKS: dict[str, Callable[[Any], list[Problem]]] = {
    "config": lambda config: _problems_of(lambda: Meter(config)),
    "request": lambda request: _problems_of(lambda: Aggregator(request)),
    "plan": plan_semantic_problems,
    "rated-charge": rated_charge_semantic_problems,
    "ingestion-state": ingestion.state_problems,
    "quota-policy": quotas.policy_semantic_problems,
    "quota-check": quotas.check_problems,
    "rate-limit-policy": ratelimit.policy_problems,
    "rate-limit-state": ratelimit.state_problems,
    "invoice-request": invoices.request_semantic_problems,
    "invoice": invoices.invoice_problems,
    **dict.fromkeys(domain_events.KINDS, domain_events.semantic_problems),
    "adjustment": reconcile.adjustment_problems,
    "projection": projection.projection_problems,
}
_encoder = msgspec.json.Encoder()


def decode(kind: str, data: bytes | str, struct: type[T], *, fast: bool = True) -> T:
    """Decode one document of `kind`; on any error, raise MeterspecError with every schema
    problem in it. With `fast` (events and records), the typed decoder runs first and the
    schema only explains its failures; otherwise the careful parser and the schema always run."""
    if fast and kind in _STRINGS:
        try:
            value = msgspec.json.decode(data, type=struct)
        except (msgspec.DecodeError, RecursionError):
            pass
        else:
            if _unique_names(kind, value, data):
                return value
    document = json_text.load(data)  # text-level problems alone (MS-ERR-007 to MS-ERR-011)
    problems = schema_problems(kind, document)
    values = _value_problems(kind, document, {p.path for p in problems})
    if problems:
        problems += values
    else:  # well formed: the rules that need a Struct run even beside bad values (MS-ERR-002)
        try:
            # strict=False only lets 2.0 be the integer 2, as JSON Schema says it is; the
            # schema has already checked every type.
            value = msgspec.convert(document, type=struct, strict=False)
        except msgspec.ValidationError as error:  # schema and Struct disagree: a bug, say so
            problems = [Problem("invalid-value", "", str(error), "MS-ERR-001")]
        else:
            check = _SEMANTIC_CHECKS.get(kind)
            semantic = _problems_of(lambda: check(value)) if check else []
            # A rule check that trips over a value already reported adds nothing new.
            seen = {(p.code, p.path) for p in values}
            problems = values + [p for p in semantic if (p.code, p.path) not in seen]
            if not problems:
                return value
    event_id = document.get("id") if kind == "event" and isinstance(document, dict) else None
    if isinstance(event_id, str) and event_id:
        problems = [replace(p, event_id=event_id) for p in problems]
    raise MeterspecError(problems)


# Where quantities and timestamps live in each kind ('*' = every list item), so their
# grammar-beyond-the-schema checks (Feb 30, digit bounds) run even when the schema found
# other problems in the same document (MS-ERR-002).
_VALUES: dict[str, tuple[tuple[str, ...], ...]] = {
    "event": (("time",),),
    "record": (("recordedAt",), ("meteredAt",), ("measurement", "quantity")),
    "config": (("measurements", "*", "quantity"),),
    "request": (("windows", "*", "start"), ("windows", "*", "end"), ("tumbling", "start"),
                ("tumbling", "end")),
    "reading": (("window", "start"), ("window", "end")),
}


def _value_problems(kind: str, document: object, reported: set[str]) -> list[Problem]:
    """Timestamp and quantity problems a schema pattern cannot see, for fields the schema
    did not already report."""
    problems: list[Problem] = []
    for fields in _VALUES.get(kind, ()):
        for path, value in walk(document, fields, ""):
            if not isinstance(value, str) or path in reported:
                continue
            check = parse_quantity if fields[-1] == "quantity" else parse_timestamp
            try:
                check(value, path)
            except MeterspecError as error:
                problems.extend(error.problems)
    if kind in _OWN_VALUE_CHECKS:
        problems += _OWN_VALUE_CHECKS[kind](document, reported)
    return problems


def _event_strings(event: EventPayload) -> tuple[int, ...]:
    """The strings an event's text holds when no name repeats: a name and a string value per
    member; `properties` (a name and its members' names and values) may be absent or `{}`
    when empty."""
    count = 12 + 2 * len(event.properties)
    return (count + 1,) if event.properties else (count, count + 1)


def _record_strings(record: MeterRecord) -> tuple[int, ...]:
    """The same for a record: a name and a string per member, `measurement` and
    `dimensions` a name each, and meteredAt optional."""
    return (18 + 2 * len(record.dimensions) + (0 if record.metered_at is msgspec.UNSET else 2),)


# The kinds whose fast path (a typed decode) is proven free of repeated names (MS-ERR-009);
# every other kind, and every text they do not prove, goes through json_text.load.
_STRINGS: dict[str, Callable[[Any], tuple[int, ...]]] = {
    "event": _event_strings, "record": _record_strings}


def _unique_names(kind: str, value: object, data: bytes | str) -> bool:
    line = data.encode() if isinstance(data, str) else data
    found = string_count(line)
    if found is None:
        return not repeats_a_name(line)
    return found in _STRINGS[kind](value)


def decode_event(data: bytes | str) -> EventPayload:
    return decode("event", data, EventPayload)


def decode_record(data: bytes | str) -> MeterRecord:
    return decode("record", data, MeterRecord)


def decode_config(data: bytes | str) -> MeteringConfig:
    return decode("config", data, MeteringConfig, fast=False)


def decode_request(data: bytes | str) -> AggregationRequest:
    return decode("request", data, AggregationRequest, fast=False)


def decode_plan(data: bytes | str) -> Plan:
    return decode("plan", data, Plan, fast=False)


def decode_rated_charge(data: bytes | str) -> RatedCharge:
    return decode("rated-charge", data, RatedCharge, fast=False)


def encode(value: object) -> bytes:
    """Compact JSON with fields in contract order; byte-identical for equal values."""
    return _encoder.encode(value)


def encode_lines(values: Iterable[object]) -> Iterator[bytes]:
    for value in values:
        yield _encoder.encode(value) + b"\n"
