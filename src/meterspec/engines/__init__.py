"""Engines: the same metering and aggregation, run by a relational engine instead of the
reference's Python loop (issue 13).

`meterspec.engines.compiler` turns a MeteringConfig and an AggregationRequest into a
`meterspec.engines.plan.Plan`: plain data (rules, filter trees, the windows as rows, the
reading-id pieces, the number formats) that any backend renders into its own SQL or
DataFrame calls. `meterspec.engines.duckdb` and `meterspec.engines.spark` are the backends;
the pieces a backend needs besides its SQL (reading inputs line for line, describing rejected
rows with the reference, exact fallbacks, the numeric bounds) live here, beside the plan, so
both reuse them.

The rule every backend keeps: its output is byte for byte the reference's, or it stops with a
clear error. It never rounds, saturates or uses floating point (MS-QTY-003). Nothing here
imports a backend: the pure core stays importable without one.
"""

from __future__ import annotations

ENGINES = ("duckdb", "spark")
"""The engine names `--engine` knows (meterspec.engines.duckdb, meterspec.engines.spark)."""
