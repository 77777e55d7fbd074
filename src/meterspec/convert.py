"""Numbers at the edge (specs/payloads.md, MS-CNV): usage payloads whose property values are
JSON numbers, converted losslessly into EventPayloads, whose property values are strings.

    NDJSON line --load (numbers kept as their text)--> convert_event --> EventPayload

A number is never read through a float: `load` hands its text to `RawNumber`, and
`number_to_quantity` turns that text into the canonical quantity string (MS-QTY-004) or
reports it (`quantity-out-of-range`). What cannot be converted without a guess (an object, an
array, true, false, null as a property value) is reported, never dropped or stringified. A
number anywhere else is written back by `dump` as the text it was read from, so the event's
checks report it as the number the sender wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from meterspec import json_text
from meterspec.codec import decode
from meterspec.contracts import EventPayload
from meterspec.errors import MeterspecError, Problem, pointer
from meterspec.metering import check_event
from meterspec.quantity import format_quantity, parse_quantity

__all__ = ["RawNumber", "convert_event", "convert_line", "dump", "load", "number_to_quantity"]


@dataclass(frozen=True, slots=True)
class RawNumber:
    """A JSON number as the text that wrote it (`1e3`, `-0`, `1.0000000000000000000001`)."""

    text: str
    """The number exactly as written in the JSON text, never through float."""


def load(data: bytes | str) -> Any:
    """One JSON document with every number a RawNumber, after the text checks of MS-ERR-007 to
    MS-ERR-010 (UTF-8, depth, repeated names); MeterspecError with those problems otherwise."""
    return json_text.load(data, numbers=RawNumber)


def number_to_quantity(number: RawNumber, path: str = "") -> str:
    """MS-CNV-002: the canonical quantity a JSON number's text denotes. The JSON number grammar
    is within the quantity grammar (MS-QTY-001), so only the bounds of MS-QTY-002 can fail
    (`quantity-out-of-range`); nothing is rounded."""
    return format_quantity(parse_quantity(number.text, path))


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return "null" if value is None else "a boolean"


def _written_back(value: object) -> Any:
    """`value` with each RawNumber as the raw JSON of its text. Explicit, not an encoder hook:
    msgspec encodes a dataclass by itself (as `{"text": ...}`) and never calls a hook for it."""
    if isinstance(value, RawNumber):
        return msgspec.Raw(value.text.encode())
    if isinstance(value, dict):
        return {name: _written_back(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_written_back(item) for item in value]
    return value


def dump(document: Any) -> bytes:
    """The inverse of `load`: compact JSON text in which every number is the text it was read
    from, never a float's nor an object holding it."""
    return msgspec.json.encode(_written_back(document))


def convert_event(document: Any) -> EventPayload:
    """MS-CNV-002 to MS-CNV-004: the EventPayload of a loaded document whose property values may
    be numbers. Each number becomes its canonical quantity; strings are kept byte for byte;
    any other property value is `wrong-type` at /properties/<name>. The result is then checked
    as an event (MS-EVT-001, MS-EVT-002, MS-TIME-001), every problem reported together; a
    number outside `properties` is not converted, so it is the event's `wrong-type`."""
    problems: list[Problem] = []
    converted = document
    if isinstance(document, dict) and isinstance(document.get("properties"), dict):
        properties: dict[str, Any] = {}
        for name, value in document["properties"].items():
            path = pointer("properties", name)
            if isinstance(value, RawNumber):
                try:
                    properties[name] = number_to_quantity(value, path)
                except MeterspecError as error:
                    problems.extend(error.problems)
            elif isinstance(value, str):
                properties[name] = value
            else:
                problems.append(Problem(
                    "wrong-type", path, f"a property value is a string or a number, not "
                    f"{_kind(value)}: flatten or encode it before conversion", "MS-CNV-003"))
        converted = {**document, "properties": properties}
    event: EventPayload | None = None
    try:
        event = decode("event", dump(converted), EventPayload, fast=False)
    except MeterspecError as error:
        problems.extend(error.problems)
    if event is not None:
        problems.extend(check_event(event)[1])
    if problems:
        event_id = document.get("id") if isinstance(document, dict) else None
        if isinstance(event_id, str) and event_id:
            problems = [msgspec.structs.replace(p, event_id=event_id) for p in problems]
        raise MeterspecError(problems)
    assert event is not None
    return event


def convert_line(line: bytes) -> EventPayload:
    """One NDJSON line, loaded and converted (MS-CNV-001 to MS-CNV-004)."""
    return convert_event(load(line))
