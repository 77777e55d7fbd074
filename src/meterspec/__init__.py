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

__version__ = "0.1.0"
"""The package's version: pyproject.toml reads it from here ([tool.setuptools.dynamic])."""
SPEC_VERSION = "1.1"
"""The version of the specification implemented: the title of specs/core.md ("version 1.1");
the other spec files carry the version they last changed in (tests/test_versions.py)."""

__all__ = [
    "SPEC_VERSION",
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
    "__version__",
    "aggregate",
    "meter",
]
