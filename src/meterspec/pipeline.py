"""One pass from event lines to readings: the hot loop of `meterspec run` (issue 12).

`event_feeder(meter, aggregator)` returns a function that takes one NDJSON line and adds its
measurements to the aggregator, or raises MeterspecError with every problem of the line. The
common case (a well-formed event whose time and quantities take the fast paths) is one
function with everything it needs bound to locals; any line that is not that case goes through
the same public steps as before (decode_event, Meter.measure, Aggregator.add), which find every
problem. tests/test_pipeline.py holds the two to the same results on generated and hostile
lines.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from meterspec.aggregations import TimeWeightedAverage
from meterspec.codec import decode_event
from meterspec.contracts import EventPayload
from meterspec.errors import MeterspecError
from meterspec.metering import Meter
from meterspec.quantity import EXACT, ZERO, parse_quantity
from meterspec.readings import Aggregator
from meterspec.timestamps import parse_timestamp

Feeder = Callable[[bytes], None]


def event_feeder(meter: Meter, aggregator: Aggregator) -> Feeder:
    """The function that feeds one event line to `aggregator` through `meter`."""
    measure, add = meter.measure, aggregator.add
    grouped = aggregator.needs_dimensions

    def general(line: bytes) -> None:
        event = decode_event(line)
        instant, measured, dimensions = measure(event, grouped)
        for unit, quantity, _ in measured:
            add(event.workspace_id, event.universe_id, event.subject, unit, dimensions,
                instant, quantity)

    cells = aggregator.cells_of_segments()
    weighted = aggregator.weighted_states()
    if cells is None and weighted is None:
        return general
    if cells is not None:
        group_cells, segments, segment_of, counting = cells
    if weighted is not None:
        states, range_start, range_end = weighted
        budget, added = aggregator.point_budget, 0
    decode = msgspec.json.Decoder(EventPayload).decode
    rules_of = meter.rules_of
    exact_add = EXACT.add

    def fast(line: bytes) -> None:
        nonlocal added
        try:
            event = decode(line)
        except (msgspec.DecodeError, RecursionError):
            return general(line)
        properties = event.properties
        strings = 12 + 2 * len(properties)
        if b"\\" in line or not (
                line.count(b'"') >> 1 == strings + 1
                or (not properties and line.count(b'"') >> 1 == strings)):
            return general(line)  # escapes, or a name may repeat: the careful path decides
        workspace, universe, subject = event.workspace_id, event.universe_id, event.subject
        if not (event.id and workspace and universe and event.type and subject):
            return general(line)
        try:
            instant = parse_timestamp(event.time)
            taken = []
            for rule in rules_of(event.type):
                if not rule.always and not rule.matches(properties):
                    continue
                quantity = rule.constant
                if quantity is None:
                    quantity = parse_quantity(properties[rule.source_property or ""])
                taken.append((rule.unit, quantity))
        except (MeterspecError, KeyError):
            return general(line)
        if weighted is not None:
            if instant < range_end:
                for unit, quantity in taken:
                    key = (workspace, universe, subject, unit, ())
                    state = states.get(key)
                    if state is None:
                        state = states[key] = TimeWeightedAverage(range_start)
                    state.add(instant, quantity)
                    added += 1
                if added >= budget:  # memory stays bounded (meterspec.spill)
                    aggregator.spill()
                    added = 0
            return None
        segment = segment_of(instant)
        if segment is None:
            return None
        for unit, quantity in taken:
            key = (workspace, universe, subject, unit, ())
            group = group_cells.get(key)
            if group is None:
                group = group_cells[key] = [[ZERO] * segments, [0] * segments]
            if not counting:
                totals = group[0]
                totals[segment] = exact_add(totals[segment], quantity)
            group[1][segment] += 1
        return None

    return fast
