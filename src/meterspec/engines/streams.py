"""Streams count each identity once (MS-ING-020 for records, MS-ING-021 for events), as
the reference's commands do: what an engine needs from the reference to do the same.

A backend finds the repeats itself (the first row of each identity counts; a later row with
the first's content is a duplicate, dropped and counted; with other content it is rejected).
Here are the rules it must match exactly: which event is an identity seen at all, and the
reference's own problems for a conflicting repeat (built by the reference's deduplicators,
so their messages are the reference's, digest included).
"""

from __future__ import annotations

from decimal import Decimal

from meterspec.contracts import EventPayload, Measurement, MeterRecord
from meterspec.errors import MeterspecError
from meterspec.event_stream import EventDeduplicator
from meterspec.record_stream import RecordDeduplicator
from meterspec.timestamps import Instant, format_timestamp, parse_timestamp


def seen_instant(event: EventPayload) -> Instant | None:
    """The instant of an event that is an identity seen (MS-ING-021: decoded, non-empty
    identity fields and a real time, whatever its measurements), else None; as
    meterspec.pipeline decides it, before metering."""
    if not (event.id and event.workspace_id and event.universe_id and event.type
            and event.subject):
        return None
    try:
        return parse_timestamp(event.time)
    except MeterspecError:
        return None


def event_conflict(workspace: str, universe: str, ident: str, kind: str, subject: str,
                   instant: Instant, properties: dict[str, str]) -> MeterspecError:
    """The reference's `event-conflict` for a repeat with this content."""
    repeat = EventPayload(id=ident, workspace_id=workspace, universe_id=universe, type=kind,
                          subject=subject, time=format_timestamp(instant),
                          properties=properties)
    first = EventPayload(id=ident, workspace_id=workspace, universe_id=universe,
                         type=kind + "-", subject=subject, time=repeat.time)
    seen = EventDeduplicator()
    seen.add(first, instant)
    try:
        seen.add(repeat, instant)
    except MeterspecError as error:
        return error
    raise AssertionError("events of two types must conflict")


def record_conflict(workspace: str, universe: str, ident: str) -> MeterspecError:
    """The reference's `record-conflict` for an identity (its message names only that)."""
    seen = RecordDeduplicator()
    for quantity in ("0", "1"):
        record = MeterRecord(id=ident, workspace_id=workspace, universe_id=universe,
                             subject="-", recorded_at="1970-01-01T00:00:00Z",
                             measurement=Measurement(quantity, "-"), dimensions={},
                             source_event_id="-")
        try:
            seen.add(record, 0, Decimal(quantity))
        except MeterspecError as error:
            return error
    raise AssertionError("records of two quantities must conflict")
