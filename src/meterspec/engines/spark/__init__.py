"""The Spark backend of meterspec.engines: `meterspec run --engine spark`, `meterspec
aggregate --engine spark`, and SparkEngine for library users (needs the `spark` extra,
`pip install 'meterspec[spark]'`, and Java 17 or later).

`implementation()` and `handle()` make this module a conformance adapter in-process:
`meterspec conformance run --impl python:meterspec.engines.spark`.
"""

from __future__ import annotations

from typing import Any


def implementation() -> dict[str, Any]:
    """What the Spark engine says about itself in answer to `start`."""
    from meterspec.engines.spark.conformance import implementation as describe

    return describe()


def handle(case: dict[str, Any]) -> dict[str, Any]:
    """One conformance case answered through Spark (meter and aggregate)."""
    from meterspec.engines.spark.conformance import handle as answer

    return answer(case)
