"""MeteringConfig + AggregationRequest -> Plan (meterspec.engines.plan).

Both documents are checked by the reference first (meterspec.metering.Meter,
meterspec.readings.Aggregator), so an unusable one raises the reference's MeterspecError with
the reference's problems, and the windows are the reference's own (meterspec.windows: IANA
zones, daylight saving, alignment, the 100 000 bound). Everything after that is plain data.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left

import msgspec

from meterspec.contracts import AggregationRequest, Filter, MeteringConfig, Window
from meterspec.engines.plan import (
    Aggregation,
    Condition,
    Equals,
    Every,
    Exists,
    Input,
    Metering,
    OneOf,
    Plan,
    Rule,
    Some,
    WindowRow,
    Windows,
)
from meterspec.ids import encode_fields
from meterspec.metering import Meter
from meterspec.quantity import canonical
from meterspec.readings import Aggregator, reading_parameter
from meterspec.timestamps import format_timestamp
from meterspec.windows import Windows as ReferenceWindows

_ENCODER = msgspec.json.Encoder()


def compile_plan(input: Input, config: MeteringConfig | None,
                 request: AggregationRequest | None) -> Plan:
    """The plan for events (with a config) or records, aggregated under `request` (None:
    records are the output). Raises MeterspecError for an unusable config or request, the
    config's problems first (as INTERPRETING.md 3 orders them)."""
    if input == "events" and config is None:
        raise ValueError("events need a MeteringConfig")
    metering = compile_metering(config) if config is not None else None
    aggregation = compile_aggregation(request) if request is not None else None
    return Plan(input, metering if input == "events" else None, aggregation)


def compile_metering(config: MeteringConfig) -> Metering:
    """The rules of a config the reference accepts (MS-MET-001..007)."""
    Meter(config)  # raises the reference's problems for an unusable config
    rules = []
    for index, spec in enumerate(config.measurements):
        constant = canonical(spec.quantity) if spec.quantity is not None else None
        source = (f"constant:{constant}" if constant is not None
                  else f"property:{spec.source_property}")
        rules.append(Rule(
            index=index, unit=spec.unit, source=source, source_property=spec.source_property,
            constant=constant,
            event_types=tuple(spec.event_types) if spec.event_types is not None else None,
            condition=compile_condition(spec.filter) if spec.filter is not None else None))
    sources = frozenset(r.source_property for r in rules if r.source_property is not None)
    listed = tuple(config.dimensions) if config.dimensions is not None else None
    return Metering(tuple(rules), listed, sources)


def compile_condition(spec: Filter) -> Condition:
    """A filter the reference has accepted (exactly one condition) as a condition tree."""
    name = spec.property or ""
    if spec.equals is not None:
        return Equals(name, spec.equals)
    if spec.in_ is not None:
        return OneOf(name, tuple(spec.in_), negated=False)
    if spec.not_in is not None:
        return OneOf(name, tuple(spec.not_in), negated=True)
    if spec.exists is not None:
        return Exists(name, spec.exists)
    if spec.all_of is not None:
        return Every(tuple(compile_condition(part) for part in spec.all_of))
    return Some(tuple(compile_condition(part) for part in spec.any_of or ()))


def compile_aggregation(request: AggregationRequest) -> Aggregation:
    """The aggregation of a request the reference accepts (MS-AGG, MS-WIN)."""
    aggregator = Aggregator(request)  # raises the reference's problems
    parameter = reading_parameter(aggregator)
    return Aggregation(
        kind=request.aggregation,
        group_by=tuple(request.group_by or ()),
        grouped=request.group_by is not None,
        dimension=request.dimension,
        scale=aggregator.scale,
        parameter=parameter,
        windows=compile_windows(aggregator.windows),
        id_prefix=encode_fields(("meterspec/reading/v1",)).decode(),
        id_kind=encode_fields((request.aggregation, parameter)).decode(),
        line_kind=_ENCODER.encode(request.aggregation).decode())


def compile_windows(windows: ReferenceWindows) -> Windows:
    """The reference's resolved windows as rows, with their segments."""
    bounds = tuple(windows.bounds)
    depth = [0] * len(bounds)
    rows = []
    for index, (start, end) in enumerate(windows.spans):
        first, last = bisect_left(bounds, start), bisect_left(bounds, end)
        depth[first] += 1
        depth[last] -= 1
        texts = (format_timestamp(start), format_timestamp(end))
        rows.append(WindowRow(
            index=index, start=start, end=end, start_text=texts[0], end_text=texts[1],
            first=first, last=last, json=_ENCODER.encode(Window(*texts)).decode(),
            id_fields=encode_fields(texts).decode()))
    covered, running = [], 0
    for change in depth[:-1]:
        running += change
        covered.append(running > 0)
    lengths = {end - start for start, end in itertools.pairwise(bounds)}
    size = lengths.pop() if len(lengths) == 1 and all(covered) else None
    return Windows(tuple(rows), bounds, tuple(covered), windows.disjoint, size)
