"""Rows a backend did not accept on its fast path, described by the reference itself.

A backend accepts only rows of one fast, valid shape (meterspec.engines.shapes) and flags
every other row. Each flagged row goes through exactly the steps `meterspec run` or
`meterspec aggregate` apply to a line (meterspec.codec, meterspec.metering,
meterspec.readings), so a rejected row yields the reference's problems, and a row the
reference accepts after all (escapes, offsets, exponents, another member order) yields its
measurements, which the backend adds to its records: good rows are never lost.
"""

from __future__ import annotations

from typing import NamedTuple

from msgspec.structs import replace

from meterspec.codec import decode_event, decode_record
from meterspec.engines.streams import seen_instant
from meterspec.errors import MeterspecError
from meterspec.lines import line_too_long
from meterspec.metering import Meter
from meterspec.quantity import format_quantity
from meterspec.readings import parse_record


class Measured(NamedTuple):
    """One record of an event or record row the reference accepted: what a backend's
    records relation holds (the quantity canonical, MS-QTY-004)."""

    line: int
    workspace: str
    universe: str
    subject: str
    unit: str
    instant: int
    quantity: str
    dimensions: dict[str, str]
    event_id: str
    source: str
    record_id: str


class Seen(NamedTuple):
    """An event that is an identity seen (meterspec.engines.streams), with its content."""

    line: int
    workspace: str
    universe: str
    id: str
    type: str
    subject: str
    instant: int
    properties: dict[str, str]


def describe_event(meter: Meter, line: int, data: bytes | None
                   ) -> tuple[list[Measured] | MeterspecError, Seen | None]:
    """The records of one event line (possibly none) or the reference's problems with it,
    and the event if it is an identity seen (MS-ING-021, whatever its measurements). `data`
    None is a line over the limit (MS-ERR-012)."""
    if data is None:
        return line_too_long(), None
    try:
        event = decode_event(data)
    except MeterspecError as error:
        return error, None
    instant = seen_instant(event)
    seen = None if instant is None else Seen(
        line, event.workspace_id, event.universe_id, event.id, event.type, event.subject,
        instant, dict(event.properties))
    try:
        instant, measured, dimensions = meter.measure(event)
    except MeterspecError as error:
        return error, seen
    return [Measured(line, event.workspace_id, event.universe_id, event.subject, m.unit,
                     instant, format_quantity(m.quantity), dimensions, event.id, m.source, "")
            for m in measured], seen


def describe_record(line: int, data: bytes | None, path: str = ""
                    ) -> list[Measured] | MeterspecError:
    """One record line as the one record it is, or the reference's problems with it (paths
    under `path`, as the conformance adapter reports them)."""
    if data is None:
        return line_too_long()
    try:
        record = decode_record(data)
        instant, quantity = parse_record(record)
    except MeterspecError as error:
        if not path:
            return error
        return MeterspecError(replace(problem, path=path + problem.path)
                              for problem in error.problems)
    return [Measured(line, record.workspace_id, record.universe_id, record.subject,
                     record.measurement.unit, instant, format_quantity(quantity),
                     dict(record.dimensions), record.source_event_id, "", record.id)]
