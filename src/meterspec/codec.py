"""JSON and NDJSON edges: bytes in, typed Structs out, every problem reported (MS-ERR)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import msgspec
from msgspec.structs import replace

from meterspec import json_text
from meterspec.contracts import AggregationRequest, EventPayload, MeteringConfig, MeterRecord
from meterspec.errors import MeterspecError, Problem, walk
from meterspec.json_text import repeats_a_name, string_count
from meterspec.quantity import parse_quantity
from meterspec.timestamps import parse_timestamp

if TYPE_CHECKING:
    from meterspec.plans import Plan, RatedCharge

T = TypeVar("T")
"""The Struct type a decode returns."""


class Kind(NamedTuple):
    """One kind of document: its Struct, the checks its own module makes of its values (on
    the raw document, beside schema problems) and of its meaning (on the decoded Struct, once
    nothing else is wrong): MS-ERR-002."""

    struct: type[Any]
    """The msgspec Struct a document of this kind decodes to."""
    value_problems: Callable[[object, set[str]], list[Problem]] | None
    """Checks of the raw document's values beyond its schema, given the paths already reported, or
    None."""
    semantic_problems: Callable[[Any], list[Problem]] | None
    """Checks of the decoded Struct's meaning, run once nothing else is wrong, or None."""


# kind -> (module, Struct, value check, semantic check), imported on first use: a command
# loads only the modules of the kinds it reads (start-up time, issue 12).
_KINDS: dict[str, tuple[str, str, str | None, str | None]] = {
    "event": ("meterspec.contracts", "EventPayload", None, None),
    "config": ("meterspec.contracts", "MeteringConfig", None, "meterspec.codec:config_problems"),
    "record": ("meterspec.contracts", "MeterRecord", None, None),
    "reading": ("meterspec.contracts", "MeterReading", None, None),
    "request": ("meterspec.contracts", "AggregationRequest", None,
                "meterspec.codec:request_problems"),
    "problem": ("meterspec.errors", "Problem", None, None),
    "plan": ("meterspec.plans", "Plan", "plan_value_problems", "plan_semantic_problems"),
    "rated-charge": ("meterspec.plans", "RatedCharge", "rated_charge_value_problems",
                     "rated_charge_semantic_problems"),
    "ingestion-state": ("meterspec.ingestion", "IngestionState", "state_value_problems",
                        "state_problems"),
    "quota-policy": ("meterspec.quotas", "QuotaPolicy", "policy_value_problems",
                     "policy_semantic_problems"),
    "quota-check": ("meterspec.quotas", "QuotaCheck", "check_value_problems", "check_problems"),
    "quota-decision": ("meterspec.quotas", "QuotaDecision", "decision_value_problems", None),
    "quota-state": ("meterspec.quota_reservations", "QuotaState", "state_value_problems",
                    "state_problems"),
    "rate-limit-policy": ("meterspec.ratelimit", "RateLimitPolicy", None, "policy_problems"),
    "rate-limit-state": ("meterspec.ratelimit", "RateLimitState", "state_value_problems",
                         "state_problems"),
    "invoice-request": ("meterspec.invoices", "InvoiceRequest", "request_value_problems",
                        "request_semantic_problems"),
    "invoice": ("meterspec.invoices", "Invoice", "invoice_value_problems", "invoice_problems"),
    "usage-recorded": ("meterspec.domain_events", "UsageRecorded", "value_problems()",
                       "semantic_problems"),
    "quota-event": ("meterspec.quotas", "QuotaEvent", "meterspec.domain_events:value_problems()",
                    "meterspec.domain_events:semantic_problems"),
    "invoice-generated": ("meterspec.domain_events", "InvoiceGenerated", "value_problems()",
                          "semantic_problems"),
    "billing-period-closed": ("meterspec.domain_events", "BillingPeriodClosed",
                              "value_problems()", "semantic_problems"),
    "adjustment": ("meterspec.reconcile", "Adjustment", "adjustment_value_problems",
                   "adjustment_problems"),
    "projection": ("meterspec.projection", "Projection", "projection_value_problems",
                   "projection_problems"),
}


@cache
def kind_of(kind: str) -> Kind:
    """The Struct and checks of a kind, importing its module now."""
    module, struct, value, semantic = _KINDS[kind]

    def resolve(name: str | None) -> Any:
        if name is None:
            return None
        where, _, attribute = name.rpartition(":")
        found = getattr(import_module(where or module), attribute.removesuffix("()"))
        return found(kind) if attribute.endswith("()") else found

    return Kind(getattr(import_module(module), struct), resolve(value), resolve(semantic))


class _Structs(Mapping[str, type[Any]]):
    """kind -> Struct, every kind known at once, each module imported when first asked."""

    def __getitem__(self, kind: str) -> type[Any]:
        return kind_of(kind).struct

    def __iter__(self) -> Iterator[str]:
        return iter(_KINDS)

    def __len__(self) -> int:
        return len(_KINDS)


STRUCTS: Mapping[str, type[Any]] = _Structs()
"""Document kind (`event`, `plan`, ...) -> its Struct; a kind's module is imported when first
asked."""


def _problems_of(check: Callable[[], object]) -> list[Problem]:
    """The problems a check returns (a list) or raises (MeterspecError)."""
    try:
        found = check()
    except MeterspecError as error:
        return list(error.problems)
    return found if isinstance(found, list) else []


def config_problems(config: Any) -> list[Problem]:
    """A config's rules beyond its schema: what compiling it finds (MS-MET)."""
    from meterspec.metering import Meter

    return _problems_of(lambda: Meter(config))


def request_problems(request: Any) -> list[Problem]:
    """A request's rules beyond its schema: what resolving its windows finds (MS-WIN, MS-AGG)."""
    from meterspec.readings import Aggregator

    return _problems_of(lambda: Aggregator(request))


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
    from meterspec.schema import schema_problems  # the careful path only

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
            check = kind_of(kind).semantic_problems
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
    own = kind_of(kind).value_problems
    if own is not None:
        problems += own(document, reported)
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


_EVENT = msgspec.json.Decoder(EventPayload)
_RECORD = msgspec.json.Decoder(MeterRecord)


def decode_event(data: bytes | str) -> EventPayload:
    """decode("event", ...), with the common case inlined: this runs once per event."""
    if type(data) is bytes:
        try:
            event = _EVENT.decode(data)
        except (msgspec.DecodeError, RecursionError):
            pass
        else:
            if b"\\" not in data:
                strings, least = data.count(b'"') >> 1, 12 + 2 * len(event.properties)
                if strings == least + 1 or (strings == least and not event.properties):
                    return event
            elif not repeats_a_name(data):
                return event
    return decode("event", data, EventPayload)


def decode_record(data: bytes | str) -> MeterRecord:
    """decode("record", ...), with the common case inlined: this runs once per record."""
    if type(data) is bytes:
        try:
            record = _RECORD.decode(data)
        except (msgspec.DecodeError, RecursionError):
            pass
        else:
            if b"\\" not in data:
                if data.count(b'"') >> 1 == 18 + 2 * len(record.dimensions) + (
                        0 if record.metered_at is msgspec.UNSET else 2):
                    return record
            elif not repeats_a_name(data):
                return record
    return decode("record", data, MeterRecord)


def decode_config(data: bytes | str) -> MeteringConfig:
    """A MeteringConfig from JSON text, checked against its schema."""
    return decode("config", data, MeteringConfig, fast=False)


def decode_request(data: bytes | str) -> AggregationRequest:
    """An AggregationRequest from JSON text, checked against its schema."""
    return decode("request", data, AggregationRequest, fast=False)


def decode_plan(data: bytes | str) -> Plan:
    """A Plan from JSON text, checked against its schema."""
    from meterspec.plans import Plan

    return decode("plan", data, Plan, fast=False)


def decode_rated_charge(data: bytes | str) -> RatedCharge:
    """A RatedCharge from JSON text, checked against its schema."""
    from meterspec.plans import RatedCharge

    return decode("rated-charge", data, RatedCharge, fast=False)


def encode(value: object) -> bytes:
    """Compact JSON with fields in contract order; byte-identical for equal values."""
    return _encoder.encode(value)


def encode_lines(values: Iterable[object]) -> Iterator[bytes]:
    """Each value as canonical JSON text ending with a newline: NDJSON lines."""
    for value in values:
        yield _encoder.encode(value) + b"\n"
