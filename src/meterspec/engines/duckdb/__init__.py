"""The DuckDB backend of meterspec.engines: `meterspec run --engine duckdb`, `meterspec
aggregate --engine duckdb`, and DuckDBEngine for library users (needs the `duckdb` extra:
`pip install 'meterspec[duckdb]'`).

`implementation()` and `handle()` make this module a conformance adapter in-process:
`meterspec conformance run --impl python:meterspec.engines.duckdb`.
"""

from __future__ import annotations

from typing import Any


def implementation() -> dict[str, Any]:
    """What the DuckDB engine says about itself in answer to `start`."""
    from meterspec.engines.duckdb.conformance import implementation as describe

    return describe()


def handle(case: dict[str, Any]) -> dict[str, Any]:
    """One conformance case answered through DuckDB (meter and aggregate)."""
    from meterspec.engines.duckdb.conformance import handle as answer

    return answer(case)
