"""JSON and NDJSON edges: bytes in, typed Structs out, every problem reported (MS-ERR)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import msgspec
from msgspec.structs import replace

from meterspec.contracts import (
    AggregationRequest,
    EventPayload,
    MeteringConfig,
    MeterReading,
    MeterRecord,
)
from meterspec.errors import MeterspecError, Problem
from meterspec.quantity import parse_quantity
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
}
_encoder = msgspec.json.Encoder()


def decode(kind: str, data: bytes | str, struct: type[T], *, fast: bool = True) -> T:
    """Decode one document of `kind`; on any error, raise MeterspecError with every schema
    problem in it. With `fast`, the typed decoder runs first and the schema only explains its
    failures (for high-volume events and records); without, the schema always runs."""
    if fast:
        try:
            return msgspec.json.decode(data, type=struct)
        except msgspec.DecodeError:
            pass
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError as error:
        raise MeterspecError.single("invalid-json", "", str(error), "MS-ERR-003") from None
    problems = schema_problems(kind, document)
    problems += _value_problems(kind, document, {p.path for p in problems})
    if not problems:
        try:
            return msgspec.convert(document, type=struct)
        except msgspec.ValidationError as error:  # schema and Struct disagree: a bug, say so
            problems = [Problem("invalid-value", "", str(error), "MS-ERR-001")]
    event_id = document.get("id") if kind == "event" and isinstance(document, dict) else None
    if isinstance(event_id, str) and event_id:
        problems = [replace(p, event_id=event_id) for p in problems]
    raise MeterspecError(problems)


_VALUES: dict[str, tuple[tuple[str, ...], ...]] = {
    "event": (("time",),),
    "record": (("recordedAt",), ("meteredAt",), ("measurement", "quantity")),
}


def _value_problems(kind: str, document: object, reported: set[str]) -> list[Problem]:
    """Timestamp and quantity problems a schema pattern cannot see (Feb 30, digit bounds),
    for fields the schema did not already report."""
    problems: list[Problem] = []
    for fields in _VALUES.get(kind, ()):
        value = document
        for name in fields:
            value = value.get(name) if isinstance(value, dict) else None
        path = "/" + "/".join(fields)
        if not isinstance(value, str) or path in reported:
            continue
        try:
            (parse_quantity if fields[-1] == "quantity" else parse_timestamp)(value, path)
        except MeterspecError as error:
            problems.extend(error.problems)
    return problems


def decode_event(data: bytes | str) -> EventPayload:
    return decode("event", data, EventPayload)


def decode_record(data: bytes | str) -> MeterRecord:
    return decode("record", data, MeterRecord)


def decode_config(data: bytes | str) -> MeteringConfig:
    return decode("config", data, MeteringConfig, fast=False)


def decode_request(data: bytes | str) -> AggregationRequest:
    return decode("request", data, AggregationRequest, fast=False)


def encode(value: object) -> bytes:
    """Compact JSON with fields in contract order; byte-identical for equal values."""
    return _encoder.encode(value)


def encode_lines(values: Iterable[object]) -> Iterator[bytes]:
    for value in values:
        yield _encoder.encode(value) + b"\n"
