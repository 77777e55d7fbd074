"""meterspec: usage events -> meter records -> meter readings, exactly and reproducibly."""

from meterspec.contracts import (
    AggregationRequest,
    EventPayload,
    Filter,
    Measurement,
    MeasurementSpec,
    MeteringConfig,
    MeterReading,
    MeterRecord,
    Tumbling,
    Window,
)
from meterspec.errors import MeterspecError, Problem
from meterspec.metering import Meter, meter
from meterspec.readings import Aggregator, aggregate

__all__ = [
    "AggregationRequest",
    "Aggregator",
    "EventPayload",
    "Filter",
    "Measurement",
    "MeasurementSpec",
    "Meter",
    "MeterReading",
    "MeterRecord",
    "MeteringConfig",
    "MeterspecError",
    "Problem",
    "Tumbling",
    "Window",
    "aggregate",
    "meter",
]
