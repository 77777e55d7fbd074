"""The wire contracts as msgspec Structs; schemas/ is the source of truth they must agree with.

Fields hold wire values (strings for quantities and timestamps) so a Struct round-trips to the
same JSON. The pipeline parses them with meterspec.quantity and meterspec.timestamps.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Aggregation = Literal[
    "sum", "count", "min", "max", "latest", "time-weighted-avg", "unique-count"]
WindowSize = Literal["minute", "hour", "day", "month"]


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True,
            gc=False):
    """gc=False: contracts never form reference cycles, so the collector need not track the
    millions of them a stream creates (it cost about 15% of a time-weighted run)."""


class EventPayload(_Wire, frozen=True):
    """One raw usage event (MS-EVT-001; schemas/event-payload.schema.json)."""
    id: str
    workspace_id: str = msgspec.field(name="workspaceID")
    universe_id: str = msgspec.field(name="universeID")
    type: str
    subject: str
    time: str
    properties: dict[str, str] = msgspec.field(default_factory=dict)


class Filter(_Wire, frozen=True):
    """Exactly one condition: property with equals / in / notIn / exists, or allOf / anyOf."""

    property: str | None = None
    equals: str | None = None
    in_: list[str] | None = msgspec.field(default=None, name="in")
    not_in: list[str] | None = msgspec.field(default=None, name="notIn")
    exists: bool | None = None
    all_of: list[Filter] | None = msgspec.field(default=None, name="allOf")
    any_of: list[Filter] | None = msgspec.field(default=None, name="anyOf")


class MeasurementSpec(_Wire, frozen=True):
    """How one unit is measured from events: a source property or a constant quantity, for some
    event types and a filter (MS-MET)."""
    unit: str
    source_property: str | None = msgspec.field(default=None, name="sourceProperty")
    quantity: str | None = None
    event_types: list[str] | None = msgspec.field(default=None, name="eventTypes")
    filter: Filter | None = None


class MeteringConfig(_Wire, frozen=True):
    """The measurements a meter takes from each event and the dimensions it keeps
    (schemas/metering-config.schema.json)."""
    measurements: list[MeasurementSpec]
    dimensions: list[str] | None = None


class Measurement(_Wire, frozen=True):
    """A quantity and its unit, as a record carries them."""
    quantity: str
    unit: str


class MeterRecord(_Wire, frozen=True):
    """One measurement of one event: what aggregation reads (schemas/meter-record.schema.json)."""
    id: str
    workspace_id: str = msgspec.field(name="workspaceID")
    universe_id: str = msgspec.field(name="universeID")
    subject: str
    recorded_at: str = msgspec.field(name="recordedAt")
    measurement: Measurement
    dimensions: dict[str, str]
    source_event_id: str = msgspec.field(name="sourceEventID")
    metered_at: str | msgspec.UnsetType = msgspec.field(default=msgspec.UNSET, name="meteredAt")


class Window(_Wire, frozen=True):
    """A half-open window [start, end) of RFC 3339 instants (MS-WIN-001)."""
    start: str
    end: str


class Tumbling(_Wire, frozen=True, omit_defaults=False):
    """timeZone is always written: msgspec omits a default only when it is the very same
    object, so equal values could otherwise encode differently."""

    size: WindowSize
    start: str
    end: str
    time_zone: str = msgspec.field(default="UTC", name="timeZone")


class AggregationRequest(_Wire, frozen=True):
    """What to aggregate and over which windows: explicit windows or tumbling ones
    (schemas/aggregation-request.schema.json)."""
    aggregation: Aggregation
    dimension: str | None = None
    scale: int | None = None
    windows: list[Window] | None = None
    tumbling: Tumbling | None = None
    group_by: list[str] | None = msgspec.field(default=None, name="groupBy")


class ReadingMeasurement(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A reading's value and unit; the value is null for an aggregation that has none over an empty
    window."""
    quantity: str | None
    unit: str


class MeterReading(_Wire, frozen=True):
    """The aggregate of one group's records in one window (schemas/meter-reading.schema.json)."""
    id: str
    workspace_id: str = msgspec.field(name="workspaceID")
    universe_id: str = msgspec.field(name="universeID")
    subject: str
    measurement: ReadingMeasurement
    aggregation: Aggregation
    window: Window
    record_count: int = msgspec.field(name="recordCount")
    group: dict[str, str | None] | None = None
