"""The CloudEvents 1.0 binding (specs/events.md, MS-CE), JSON structured mode.

Publishing: a domain event rides as the `data` of a CloudEvent whose `id` is the domain event's
id, so a consumer deduplicating on (source, id) drops retries (MS-CE-002, MS-CE-004).
Ingesting: a CloudEvent whose `data` is an EventPayload gives that EventPayload exactly; the
payload's id and time win over the envelope's, which are transport metadata (MS-CE-009).
Pure functions: no clock, no randomness, every problem reported with a JSON Pointer into the
CloudEvent (MS-ERR-002).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from meterspec import json_text
from meterspec.codec import decode
from meterspec.contracts import EventPayload
from meterspec.domain_events import DomainEvent, EventType, decode_domain_event, event_type
from meterspec.errors import MeterspecError, Problem, pointer
from meterspec.timestamps import parse_timestamp

D = TypeVar("D")
"""The type a receiver's data decodes to."""

__all__ = ["CloudEvent", "Envelope", "ReceivedEvent", "cloudevent_type",
           "domain_event_from_cloudevent", "event_from_cloudevent", "events_from_batch",
           "to_cloudevent"]

SPECVERSION = "1.0"
"""The CloudEvents version published and accepted (MS-CE-006)."""
TYPE_PREFIX = "dev.meterspec."
"""The reverse-DNS prefix of every CloudEvents type (MS-CE-003)."""
CONTENT_TYPE = "application/json"
"""The `datacontenttype` of every published event."""
SCHEMA_BASE = "https://meterspec.dev/schemas/v1/"
"""The `dataschema` prefix, followed by the type's schema file name (MS-CE-002)."""
REQUIRED = ("specversion", "id", "source", "type")
"""The context attributes a received CloudEvent must have (MS-CE-006)."""
# CloudEvents attribute names: lower-case ASCII letters and digits.
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")
# RFC 3986 URI-reference characters: unreserved, reserved, and %HH escapes.
_URI_REFERENCE = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
# A JSON media type: subtype `json` or ending `+json`, parameters allowed (JSON format 3.1).
_JSON_MEDIA_TYPE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+/"
                              r"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+\+)?json[ \t]*(?:;.*)?",
                              re.IGNORECASE | re.DOTALL)


class CloudEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A CloudEvent in JSON structured mode as meterspec publishes it (MS-CE-002), attributes
    in this order; `subject` and `time` are left out when None. (No field has a default value
    but those two: msgspec would leave out a value equal to its default.)"""

    specversion: str
    """Always `"1.0"`."""
    id: str
    """The domain event's id, so (source, id) is unique per fact and equal on retries
    (MS-CE-004)."""
    source: str
    """A URI-reference naming the publishing deployment, stable across retries and restarts
    (MS-CE-004)."""
    type: str
    """`dev.meterspec.` + the domain type name + `.v` + its version (MS-CE-003)."""
    subject: str | None = None
    """The domain event's subject; None (left out) when it is not a CloudEvents String."""
    time: str | None = None
    """The type's business time (e.g. `recordedAt`); None (left out) for types without one
    (MS-CE-002)."""
    datacontenttype: str
    """Always `"application/json"`."""
    dataschema: str
    """`https://meterspec.dev/schemas/v1/` + the type's schema file name."""
    data: Any
    """The domain event itself, as a JSON object."""


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """The context attributes a CloudEvent arrived with: transport metadata (MS-CE-009)."""

    id: str
    """The CloudEvent's `id` as received; never the event's identity (MS-CE-009)."""
    source: str
    """The CloudEvent's `source` as received."""
    type: str
    """The CloudEvent's `type` as received."""
    subject: str | None = None
    """The CloudEvent's `subject`, None when absent."""
    time: str | None = None
    """The CloudEvent's `time` as received, None when absent; never the event's time."""


class ReceivedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """MS-CE-009: the EventPayload a CloudEvent carried, exactly as in its data, beside the
    envelope it came in (for logs and tracing; never for identity or time)."""

    event: EventPayload
    """The EventPayload of the data, exactly as sent: its id and time win (MS-CE-009)."""
    envelope: Envelope
    """The context attributes it came with, for logs and tracing."""


# ------------------------------------------------------------------ publishing


def cloudevent_type(found: EventType) -> str:
    """MS-CE-003: `dev.meterspec.` + the type name without its version suffix + `.v<N>`."""
    suffix = f".v{found.version}"
    base = found.name.removesuffix(suffix) if found.version > 1 else found.name
    return f"{TYPE_PREFIX}{base}{suffix}"


def _domain_type_of(ce_type: str) -> str | None:
    """The domain event type name a CloudEvents type names (MS-CE-003), or None."""
    if not ce_type.startswith(TYPE_PREFIX):
        return None
    base, dot_v, version = ce_type[len(TYPE_PREFIX):].rpartition(".v")
    if not dot_v or not base or not re.fullmatch(r"[1-9][0-9]*", version):
        return None
    return base if version == "1" else f"{base}.v{version}"


def _string_problem(value: str) -> str | None:
    """Why `value` is not a CloudEvents String (control characters, noncharacters, unpaired
    surrogates), or None."""
    for char in value:
        code = ord(char)
        if code <= 0x1F or 0x7F <= code <= 0x9F:
            return f"control character U+{code:04X}"
        if 0xD800 <= code <= 0xDFFF:
            return f"unpaired surrogate U+{code:04X}"
        if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
            return f"noncharacter U+{code:04X}"
    return None


def _source_problems(source: object, path: str = "/source") -> list[Problem]:
    """MS-CE-004, MS-CE-006: a non-empty URI-reference (RFC 3986 characters)."""
    if not isinstance(source, str):
        return [Problem("wrong-type", path, "source is a JSON string", "MS-CE-006")]
    if not source:
        return [Problem("empty-string", path, "source must not be empty", "MS-CE-006")]
    if not _URI_REFERENCE.fullmatch(source):
        return [Problem("invalid-value", path, f"{source[:64]!r} is not a URI-reference (RFC "
                        "3986: no spaces or other characters outside the URI syntax, % only "
                        "before two hexadecimal digits)", "MS-CE-006")]
    return []


def to_cloudevent(event: DomainEvent, source: str) -> CloudEvent:
    """MS-CE-002: the CloudEvent that publishes a domain event. A pure function of the event and
    `source`, so every retry publishes the same bytes under the same (source, id)."""
    problems = _source_problems(source)
    if problems:
        raise MeterspecError(problems)
    found = event_type(event.type)
    subject = event.subject if _string_problem(event.subject) is None else None
    return CloudEvent(specversion=SPECVERSION, id=event.id, source=source,
                      type=cloudevent_type(found), subject=subject,
                      time=found.business_time(event), datacontenttype=CONTENT_TYPE,
                      dataschema=SCHEMA_BASE + found.schema, data=event)


# ------------------------------------------------------------------ ingesting


def _envelope(document: dict[str, Any], problems: list[Problem]) -> Envelope | None:
    """MS-CE-006, MS-CE-007: the context attributes, every problem reported."""
    values: dict[str, str | None] = {}
    for name in REQUIRED:
        value = document.get(name)
        path = pointer(name)
        if value is None:  # JSON null is an unset attribute (JSON format 2.2)
            problems.append(Problem("missing-field", path, f"the CloudEvents attribute {name!r} "
                                    "is required", "MS-CE-006"))
        elif not isinstance(value, str):
            problems.append(Problem("wrong-type", path, f"{name} is a JSON string",
                                    "MS-CE-006"))
        elif name == "specversion" and value != SPECVERSION:
            problems.append(Problem("unsupported-specversion", path, f"{value[:16]!r}: this "
                                    "binding reads CloudEvents 1.0 only", "MS-CE-006"))
        elif name == "source":
            problems += _source_problems(value)
        elif not value:
            problems.append(Problem("empty-string", path, f"{name} must not be empty",
                                    "MS-CE-006"))
        values[name] = value if isinstance(value, str) else None
    for name in ("subject", "dataschema", "datacontenttype", "time"):
        value = document.get(name)
        path = pointer(name)
        if value is None:
            values[name] = None
            continue
        values[name] = value if isinstance(value, str) else None
        if not isinstance(value, str):
            problems.append(Problem("wrong-type", path, f"{name} is a JSON string",
                                    "MS-CE-007"))
        elif not value and name != "datacontenttype":
            problems.append(Problem("empty-string", path, f"{name}, when present, must not be "
                                    "empty", "MS-CE-007"))
        elif name == "time":
            try:
                parse_timestamp(value, path)
            except MeterspecError as error:
                problems += [msgspec.structs.replace(p, requirement="MS-CE-007")
                             for p in error.problems]
        elif name == "datacontenttype" and not _JSON_MEDIA_TYPE.fullmatch(value):
            problems.append(Problem("unsupported-content-type", path, f"{value[:64]!r} does "
                                    "not declare JSON data; an EventPayload is a JSON object",
                                    "MS-CE-008"))
    for name, value in document.items():
        if name in ("data", "data_base64"):
            continue
        if not _ATTRIBUTE_NAME.fullmatch(name):
            problems.append(Problem("unknown-field", pointer(name), f"{name[:32]!r} is not a "
                                    "CloudEvents attribute name (lower-case ASCII letters and "
                                    "digits)", "MS-CE-007"))
        elif isinstance(value, str) and (why := _string_problem(value)) is not None:
            problems.append(Problem("invalid-value", pointer(name), f"not a CloudEvents "
                                    f"String: {why}", "MS-CE-007"))
    if any(values.get(name) is None for name in ("id", "source", "type")):
        return None
    return Envelope(id=values["id"] or "", source=values["source"] or "",
                    type=values["type"] or "", subject=values["subject"],
                    time=values["time"])


def _data(document: dict[str, Any], problems: list[Problem]) -> dict[str, Any] | None:
    """MS-CE-008: the data member, which must be a JSON object (never a string holding JSON)."""
    if "data_base64" in document:
        problems.append(Problem("unsupported-content-type", "/data_base64", "binary data "
                                "(data_base64) carries no EventPayload: send it as a JSON "
                                "object in data", "MS-CE-008"))
        if "data" not in document:
            return None
    if "data" not in document:
        problems.append(Problem("missing-field", "/data", "the CloudEvent has no data: it "
                                "must carry the event as a JSON object", "MS-CE-008"))
        return None
    data = document["data"]
    if not isinstance(data, dict):
        what = "a string (never parsed as JSON)" if isinstance(data, str) else "not an object"
        problems.append(Problem("wrong-type", "/data", f"data must be a JSON object; it is "
                                f"{what}", "MS-CE-008"))
        return None
    return data


def _parsed(data: object) -> object:
    """JSON bytes or text parsed (`invalid-json` otherwise); a decoded value as it is."""
    if not isinstance(data, bytes | str):
        return data
    return json_text.load(data)  # MS-ERR-007 to MS-ERR-011


def _document(data: object) -> dict[str, Any]:
    """A CloudEvent as a JSON object: JSON bytes or text are parsed, a decoded value is taken
    as it is (MS-CE-006)."""
    document = _parsed(data)
    if not isinstance(document, dict):
        raise MeterspecError.single("wrong-type", "", "a CloudEvent in JSON structured mode "
                                    "is a JSON object", "MS-CE-006")
    return document


def _under_data(error: MeterspecError) -> list[Problem]:
    return [msgspec.structs.replace(p, path="/data" + p.path, event_id=None)
            for p in error.problems]


def _with_event_id(problems: list[Problem], data: dict[str, Any] | None) -> list[Problem]:
    """Problems about an event name it when its data has a usable id (MS-ERR-001)."""
    event_id = data.get("id") if data is not None else None
    if isinstance(event_id, str) and event_id:
        return [msgspec.structs.replace(p, event_id=event_id) for p in problems]
    return problems


def _opened(document: dict[str, Any], problems: list[Problem],
            decode_data: Callable[[bytes], D]) -> tuple[Envelope | None, Any, D | None]:
    """The envelope, the raw data and the data decoded, each None when unusable; every
    problem found is added to `problems`, data problems under /data (MS-CE-006..008)."""
    envelope = _envelope(document, problems)
    payload = _data(document, problems)
    event = None
    if payload is not None:
        try:
            event = decode_data(msgspec.json.encode(payload))
        except MeterspecError as error:
            problems += _under_data(error)
    return envelope, payload, event


def event_from_cloudevent(data: object) -> ReceivedEvent:
    """MS-CE-006..009: the EventPayload a CloudEvent (JSON bytes, or an already decoded JSON
    object) carries in its data, exactly as written there: its id, time and every other field
    are the payload's, whatever the envelope says. Raises MeterspecError listing every problem
    of the envelope and of the payload, paths into the CloudEvent (/data/time)."""
    document = _document(data)
    problems: list[Problem] = []
    envelope, payload, event = _opened(
        document, problems,
        lambda raw: decode("event", raw, EventPayload, fast=False))
    if problems or envelope is None or event is None:
        raise MeterspecError(_with_event_id(problems, payload))
    return ReceivedEvent(event=event, envelope=envelope)


def domain_event_from_cloudevent(data: object) -> DomainEvent:
    """MS-CE-010: the domain event a CloudEvent published by MS-CE-002 carries. The data is
    self-describing: its `type` chooses the schema; a CloudEvents type in the dev.meterspec.
    namespace that names another type is `invalid-value` at /type."""
    document = _document(data)
    problems: list[Problem] = []
    envelope, _, event = _opened(document, problems, decode_domain_event)
    # The type is compared whenever both are readable, even beside envelope problems
    # elsewhere (a missing id): MS-ERR-002.
    ce_type = document.get("type")
    if (isinstance(ce_type, str) and event is not None and ce_type.startswith(TYPE_PREFIX)
            and _domain_type_of(ce_type) != event.type):
        problems.append(Problem("invalid-value", "/type", f"{ce_type[:64]!r} does not name "
                                f"the data's type {event.type!r} (expected "
                                f"{cloudevent_type(event_type(event.type))!r})", "MS-CE-010"))
    if problems or envelope is None or event is None:
        raise MeterspecError(problems)
    return event


def events_from_batch(data: object) -> tuple[list[ReceivedEvent], list[Problem]]:
    """MS-CE-001: a JSON batch (an array of CloudEvents, as bytes, text or a decoded list).
    Each CloudEvent is converted on its own (MS-ERR-005): the events of the good ones in batch
    order, and every problem of the bad ones with its path under the CloudEvent's index
    (`/2/data/time`). Raises MeterspecError only when the batch itself is not a JSON array."""
    batch = _parsed(data)
    if not isinstance(batch, list):
        raise MeterspecError.single("wrong-type", "", "a CloudEvents JSON batch is a JSON "
                                    "array", "MS-CE-001")
    received: list[ReceivedEvent] = []
    problems: list[Problem] = []
    for index, item in enumerate(batch):
        try:
            received.append(event_from_cloudevent(item))
        except MeterspecError as error:
            problems += [msgspec.structs.replace(p, path=f"/{index}{p.path}")
                         for p in error.problems]
    return received, problems
