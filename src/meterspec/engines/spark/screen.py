"""Stage 1 in Spark SQL: every input line accepted on its fast, valid shape
(meterspec.engines.shapes) or flagged, in the JVM.

A line is accepted only when it is compact JSON in its schema's member order with no escape
and no control character: one Java regex proves the whole line of that shape (so it is
valid JSON whose members are exactly those strings, MS-EVT-001, MS-ERR-009), and since no
string holds a quote, splitting the line at its quotes puts every value at a known place
(the n-th property's name and value at fixed steps). Timestamps are read field by field in
integers (no time-zone or calendar library), quantities checked against MS-QTY-002's
digits. Anything else (escapes, another member order, exponents, a repeated name) is
flagged, and the reference describes it (meterspec.engines.flagged), so a good row among
them is never lost.

Typed inputs (Parquet, a table) are written as JSON by Spark (to_json: absent members for
NULL columns, null for a NULL map value) and screened as text the same way.

The screened relation has one schema for every job (SCREENED), so the rows of many jobs
are one DataFrame: job, n, ok, flagged (the line, when not ok), id, w(orkspace),
u(niverse), type, s(ubject), the instant (sec, ns), q(uantity), unit, sev (sourceEventID),
v (the plan's needed properties or dimensions, NULL when absent) and pk/pv (all of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterspec.engines.plan import Plan
from meterspec.engines.spark.sql import (
    STRING,
    condition,
    literal,
    quantity_ok,
    timestamp_columns,
    whole,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_S = f'"{STRING}"'
_PAIRS = f"({_S}:{_S}(,{_S}:{_S})*+)?"
EVENT_LINE = whole(r'\{"id":' + _S + ',"workspaceID":' + _S + ',"universeID":' + _S
                   + ',"type":' + _S + ',"subject":' + _S + ',"time":' + _S
                   + r'(,"properties":\{' + _PAIRS + r'\})?\}')
RECORD_LINE = whole(r'\{"id":' + _S + ',"workspaceID":' + _S + ',"universeID":' + _S
                    + ',"subject":' + _S + ',"recordedAt":' + _S
                    + r',"measurement":\{"quantity":' + _S + ',"unit":' + _S
                    + r'\},"dimensions":\{' + _PAIRS + r'\},"sourceEventID":' + _S
                    + '(,"meteredAt":' + _S + r')?\}')
BLANK = whole("[ \t]*")

SCREENED = ("job INT, n BIGINT, ok BOOLEAN, flagged STRING, id STRING, w STRING, u STRING, "
            "type STRING, s STRING, sec BIGINT, ns INT, q STRING, unit STRING, sev STRING, "
            "v ARRAY<STRING>, pk ARRAY<STRING>, pv ARRAY<STRING>")


def layered(frame: DataFrame, layers: list[list[str]]) -> DataFrame:
    """`frame` with each layer's columns added in turn."""
    for layer in layers:
        if layer:
            frame = frame.selectExpr("*", *layer)
    return frame


def screen(plan: Plan, lines: DataFrame, meter: bool) -> DataFrame:
    """The SCREENED rows of one job's lines (columns job, n, line). Blank lines are skipped
    (MS-ERR-012), except in a meter job, whose one document is never a line."""
    if not meter:
        lines = lines.where(f"NOT (line rlike {BLANK})")
    needed = plan.needed()
    events = plan.input == "events"
    pattern = EVENT_LINE if events else RECORD_LINE
    parts = "CASE WHEN shaped THEN split(line, '\"') END AS arr"
    if events:
        fields = ["get(arr, 3) AS id", "get(arr, 7) AS w", "get(arr, 11) AS u",
                  "get(arr, 15) AS type", "get(arr, 19) AS s", "get(arr, 23) AS tt",
                  "CAST(NULL AS STRING) AS q", "CAST(NULL AS STRING) AS unit",
                  "CAST(NULL AS STRING) AS sev", "CAST(NULL AS STRING) AS ma",
                  "filter(arr, (x, i) -> i >= 27 AND i % 4 = 3) AS pk",
                  "filter(arr, (x, i) -> i >= 29 AND i % 4 = 1) AS pv"]
        extra: list[str] = []
    else:
        extra = ["CASE WHEN shaped THEN CASE WHEN get(arr, size(arr) - 4) = 'meteredAt' "
                 "THEN 4 ELSE 0 END END AS tail"]
        fields = ["get(arr, 3) AS id", "get(arr, 7) AS w", "get(arr, 11) AS u",
                  "CAST(NULL AS STRING) AS type", "get(arr, 15) AS s", "get(arr, 19) AS tt",
                  "get(arr, 25) AS q", "get(arr, 29) AS unit",
                  "get(arr, size(arr) - 2 - tail) AS sev",
                  "CASE WHEN tail = 4 THEN get(arr, size(arr) - 2) END AS ma",
                  "filter(arr, (x, i) -> i >= 33 AND i < size(arr) - 4 - tail AND i % 4 = 1) "
                  "AS pk",
                  "filter(arr, (x, i) -> i >= 35 AND i < size(arr) - 4 - tail AND i % 4 = 3) "
                  "AS pv"]
    values = [f"CASE WHEN array_contains(pk, {literal(name)}) THEN get(pv, "
              f"array_position(pk, {literal(name)}) - 1) END AS v_{i}"
              for i, name in enumerate(needed)]
    stamps = timestamp_columns("tt", "ts")
    checks = ["shaped", "ts_ok", "size(array_distinct(pk)) = size(pk)"]
    if events:
        checks += [f"{name} <> ''" for name in ("id", "w", "u", "type", "s")]
        checks += _metering_checks(plan)
    else:
        stamps = [a + b for a, b in zip(stamps, timestamp_columns("ma", "ma"), strict=True)]
        checks += [f"{name} <> ''" for name in ("id", "w", "u", "s", "sev", "unit")]
        checks += ["(ma IS NULL OR ma_ok)", quantity_ok("q")]
    frame = layered(lines.selectExpr("job", "n", "line", f"line rlike {pattern} AS shaped"),
                    [[parts], extra, fields, values + stamps[0], *stamps[1:],
                     [f"coalesce({' AND '.join(checks)}, false) AS ok"]])
    vector = "array(" + ", ".join(f"v_{i}" for i in range(len(needed))) + ")"
    return frame.selectExpr(
        "job", "n", "ok", "CASE WHEN NOT ok THEN line END AS flagged", "id", "w", "u", "type",
        "s", "ts_sec AS sec", "ts_ns AS ns", "q", "unit", "sev",
        f"CAST({vector} AS ARRAY<STRING>) AS v", "pk", "pv")


def _metering_checks(plan: Plan) -> list[str]:
    """An event whose matching measurement has no valid fast quantity is flagged
    (MS-MET-008: the reference then rejects it, or reads an exponent form)."""
    assert plan.metering is not None
    needed = plan.needed()
    checks = []
    for rule in plan.metering.rules:
        if rule.source_property is None:
            continue
        value = f"v_{needed.index(rule.source_property)}"
        checks.append(f"(NOT {matches(plan, rule.index, 'v_{}')} OR {quantity_ok(value)})")
    return checks


def matches(plan: Plan, index: int, value: str) -> str:
    """Whether an event row matches rule `index` (MS-MET-003/005); `value` is the SQL of
    the i-th needed value with `{}` for i."""
    assert plan.metering is not None
    rule = plan.metering.rules[index]
    parts = []
    if rule.event_types is not None:
        types = ", ".join(literal(t) for t in rule.event_types)
        parts.append(f"coalesce(type IN ({types}), false)" if types else "false")
    if rule.condition is not None:
        names = {name: value.format(i) for i, name in enumerate(plan.needed())}
        parts.append(condition(rule.condition, names))
    return "(" + " AND ".join(parts) + ")" if parts else "true"
