"""The wire contracts as msgspec Structs; schemas/ is the source of truth they must agree with.

Fields hold wire values (strings for quantities and timestamps) so a Struct round-trips to the
same JSON. The pipeline parses them with meterspec.quantity and meterspec.timestamps.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Aggregation = Literal[
    "sum", "count", "min", "max", "latest", "time-weighted-avg", "unique-count"]
"""The aggregations a request may name (MS-AGG-002)."""
WindowSize = Literal["minute", "hour", "day", "month"]
"""The calendar periods of tumbling windows (MS-WIN-003)."""


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True,
            gc=False):
    """gc=False: contracts never form reference cycles, so the collector need not track the
    millions of them a stream creates (it cost about 15% of a time-weighted run)."""


class EventPayload(_Wire, frozen=True):
    """One raw usage event (MS-EVT-001; schemas/event-payload.schema.json)."""
    id: str
    """The event's id, unique within its workspace and universe; a retry repeats it (MS-EVT-002)."""
    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: one of two independent isolation axes; nothing computed for one
    (workspace, universe) pair is affected by another's events (MS-EVT-002)."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the other isolation axis, independent of the workspace (MS-EVT-002)."""
    type: str
    """The kind of usage; a measurement with `eventTypes` matches only the listed types
    (MS-MET-003)."""
    subject: str
    """Whom the usage belongs to (a customer or account key); readings are per subject."""
    time: str
    """When the usage happened: an RFC 3339 timestamp as sent (MS-TIME-001); records carry its
    canonical form."""
    properties: dict[str, str] = msgspec.field(default_factory=dict)
    """String-valued properties: measured quantities and dimensions; absent means empty
    (MS-EVT-001)."""


class Filter(_Wire, frozen=True):
    """Exactly one condition: property with equals / in / notIn / exists, or allOf / anyOf."""

    property: str | None = None
    """The event property the condition tests (with equals, in, notIn or exists)."""
    equals: str | None = None
    """Matches a present property with exactly this value, byte for byte (MS-MET-005)."""
    in_: list[str] | None = msgspec.field(default=None, name="in")
    """Wire `in`: matches a present property whose value is one of these (non-empty list)."""
    not_in: list[str] | None = msgspec.field(default=None, name="notIn")
    """Wire `notIn`: matches a missing property or one whose value is none of these (the negation of
    `in`)."""
    exists: bool | None = None
    """True matches a present property, false an absent one."""
    all_of: list[Filter] | None = msgspec.field(default=None, name="allOf")
    """Wire `allOf`: matches when every member filter matches (non-empty list)."""
    any_of: list[Filter] | None = msgspec.field(default=None, name="anyOf")
    """Wire `anyOf`: matches when at least one member filter matches (non-empty list)."""


class MeasurementSpec(_Wire, frozen=True):
    """How one unit is measured from events: a source property or a constant quantity, for some
    event types and a filter (MS-MET)."""
    unit: str
    """The unit the records of this measurement carry (e.g. `tokens`, `api_calls`)."""
    source_property: str | None = msgspec.field(default=None, name="sourceProperty")
    """Wire `sourceProperty`: the event property whose value is the quantity; exclusive with
    `quantity` (MS-MET-002)."""
    quantity: str | None = None
    """A constant quantity per matching event (e.g. `"1"` to count calls); exclusive with
    `sourceProperty`."""
    event_types: list[str] | None = msgspec.field(default=None, name="eventTypes")
    """Wire `eventTypes`: if present, only events whose type is listed match (MS-MET-003)."""
    filter: Filter | None = None
    """If present, only events the filter matches are measured (MS-MET-004, MS-MET-005)."""


class MeteringConfig(_Wire, frozen=True):
    """The measurements a meter takes from each event and the dimensions it keeps
    (schemas/metering-config.schema.json)."""
    measurements: list[MeasurementSpec]
    """The measurements to take, in the order records are emitted (MS-MET-007); at least one."""
    dimensions: list[str] | None = None
    """If present, only these properties become dimensions; otherwise every property that is no
    measurement's source (MS-MET-006)."""


class Measurement(_Wire, frozen=True):
    """A quantity and its unit, as a record carries them."""
    quantity: str
    """The quantity in canonical decimal form (MS-QTY-004)."""
    unit: str
    """The unit of the measurement that produced it."""


class MeterRecord(_Wire, frozen=True):
    """One measurement of one event: what aggregation reads (schemas/meter-record.schema.json)."""
    id: str
    """`rec_` + digest of the event's identity and the measurement (MS-ID-002): a retried event
    gives the same id."""
    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the workspace of the source event."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the universe of the source event."""
    subject: str
    """The subject of the source event."""
    recorded_at: str = msgspec.field(name="recordedAt")
    """Wire `recordedAt`: the event's time as a canonical UTC timestamp (MS-TIME-004)."""
    measurement: Measurement
    """The canonical quantity and unit measured."""
    dimensions: dict[str, str]
    """The dimension properties kept from the event, keys in code-point order (MS-MET-006)."""
    source_event_id: str = msgspec.field(name="sourceEventID")
    """Wire `sourceEventID`: the id of the event the record was measured from."""
    metered_at: str | msgspec.UnsetType = msgspec.field(default=msgspec.UNSET, name="meteredAt")
    """Wire `meteredAt`: when the caller metered the event; present only when supplied (the core
    reads no clock)."""


class Window(_Wire, frozen=True):
    """A half-open window [start, end) of RFC 3339 instants (MS-WIN-001)."""
    start: str
    """The first instant inside the window: an RFC 3339 timestamp, canonical in readings."""
    end: str
    """The first instant after the window (exclusive); later than `start`."""


class Tumbling(_Wire, frozen=True, omit_defaults=False):
    """timeZone is always written: msgspec omits a default only when it is the very same
    object, so equal values could otherwise encode differently."""

    size: WindowSize
    """The calendar period of each window: `minute`, `hour`, `day` or `month` (MS-WIN-003)."""
    start: str
    """Start of the first window; must be a period boundary in the time zone
    (`unaligned-window`)."""
    end: str
    """End of the last window (exclusive); must be a period boundary in the time zone."""
    time_zone: str = msgspec.field(default="UTC", name="timeZone")
    """Wire `timeZone`: the IANA zone whose wall clock the periods follow, so days track DST;
    default `UTC`."""


class AggregationRequest(_Wire, frozen=True):
    """What to aggregate and over which windows: explicit windows or tumbling ones
    (schemas/aggregation-request.schema.json)."""
    aggregation: Aggregation
    """The aggregation: sum, count, min, max, latest, time-weighted-avg or unique-count
    (MS-AGG-002)."""
    dimension: str | None = None
    """The dimension whose distinct values unique-count counts; for unique-count only
    (MS-AGG-016)."""
    scale: int | None = None
    """Fraction digits of a time-weighted-avg result, default 6; for time-weighted-avg only
    (MS-AGG-015)."""
    windows: list[Window] | None = None
    """Explicit windows; they may overlap or leave gaps; exclusive with `tumbling` (MS-WIN-002)."""
    tumbling: Tumbling | None = None
    """Consecutive calendar windows in a time zone; exclusive with `windows` (MS-WIN-003)."""
    group_by: list[str] | None = msgspec.field(default=None, name="groupBy")
    """Wire `groupBy`: dimensions whose value combinations each get a reading (MS-AGG-004)."""


class ReadingMeasurement(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A reading's value and unit; the value is null for an aggregation that has none over an empty
    window."""
    quantity: str | None
    """The aggregate in canonical form (MS-QTY-004), which may exceed the input bounds; null only
    for min, max and latest over an empty window (MS-AGG-010)."""
    unit: str
    """The unit of the records aggregated."""


class MeterReading(_Wire, frozen=True):
    """The aggregate of one group's records in one window (schemas/meter-reading.schema.json)."""
    id: str
    """`rdg_` + digest of subject, unit, aggregation, parameter, window and group (MS-ID-003)."""
    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the workspace of the records aggregated."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the universe of the records aggregated."""
    subject: str
    """The subject whose records were aggregated."""
    measurement: ReadingMeasurement
    """The aggregated value and its unit."""
    aggregation: Aggregation
    """The aggregation the request named."""
    window: Window
    """The window aggregated, bounds in canonical form."""
    record_count: int = msgspec.field(name="recordCount")
    """Wire `recordCount`: how many of the group's records lie inside the window."""
    group: dict[str, str | None] | None = None
    """The groupBy values, present exactly when the request has `groupBy`; null marks a record
    without that dimension (MS-AGG-004)."""
