"""Stages 3 and 4 in DuckDB for every aggregation but time-weighted-avg: records into
segments, one partial state per group and segment (MS-AGG-005), combined per window.

The result is two tables: `grp` (the active groups, MS-AGG-017, numbered `gi` in reading
order) and `res` (gi, wi, qt: the canonical quantity text or NULL, c: recordCount) for the
windows where a group has records; meterspec.engines.duckdb.output fills in the empty ones.
Quantities are exact in the representation meterspec.engines.numbers chose from the data.
"""

from __future__ import annotations

from meterspec.engines.duckdb.sql import big, decimal, layered, limbs, quantity_parts
from meterspec.engines.numbers import Representation, Units
from meterspec.engines.plan import Aggregation

_INT64 = 2**63 - 1


def group_keys(aggregation: Aggregation) -> list[str]:
    """The columns of a group key (MS-AGG-004): tenant, subject, unit, groupBy values."""
    return ["w", "u", "s", "unit", *(f"d_{i}" for i in range(len(aggregation.group_by)))]


def segment_source(aggregation: Aggregation, table: str, where: str = "true") -> str:
    """`table`'s rows that lie in a covered segment, with that segment as `j`
    (MS-WIN-001: start <= t < end)."""
    windows = aggregation.windows
    if windows.size is not None:
        start = big(windows.start)
        fits = (windows.start >= -_INT64 and windows.end <= _INT64
                and windows.end - windows.start <= _INT64)
        if fits:  # every kept t, and t - start, fit a BIGINT (rows are filtered before the cast)
            segment = f"(t::BIGINT - {windows.start}) // {windows.size}"
        else:
            segment = f"((t - {start}) // {big(windows.size)})::BIGINT"
        return (f"SELECT *, {segment} AS j FROM {table} WHERE t >= {start} AND "
                f"t < {big(windows.end)} AND {where}")
    return (f"SELECT r.*, g.j FROM (SELECT * FROM {table} WHERE {where}) r ASOF JOIN segs g "
            f"ON r.t >= g.lo WHERE r.t < {big(windows.end)} AND g.covered")


def order_by(aggregation: Aggregation, prefix: str = "") -> str:
    """MS-AGG-017's group order: null group values first, strings by code point (DuckDB
    compares VARCHARs byte for byte, and UTF-8 bytes order like code points)."""
    return ", ".join(f"{prefix}{key}" + (" NULLS FIRST" if key.startswith("d_") else "")
                     for key in group_keys(aggregation))


def _states(aggregation: Aggregation, number: Representation) -> tuple[str, str]:
    """(the value column a record adds, the partial-state aggregates per segment)."""
    kind = aggregation.kind
    if kind == "count":
        return "NULL", ""
    if kind == "unique-count":
        column = f"d_{aggregation.dimensions.index(aggregation.dimension or '')}"
        return f"{column} AS x", ", count(DISTINCT x) AS a"
    if isinstance(number, Units):
        value = decimal("q", number.scale)
        state = {"sum": "sum(x)", "min": "min(x)", "max": "max(x)",
                 "latest": "max(struct_pack(t := t, x := x))"}[kind]
        return f"{value} AS x", f", {state} AS a"
    high, middle, low = limbs("q")
    if kind == "sum":
        return (f"{high} AS xh, {middle} AS xm, {low} AS xl",
                ", sum(xh) AS ah, sum(xm) AS am, sum(xl) AS al")
    packed = "struct_pack(h := xh, m := xm, l := xl)"
    state = {"min": f"min({packed})", "max": f"max({packed})",
             "latest": "max(struct_pack(t := t, h := xh, m := xm, l := xl))"}[kind]
    return f"{high} AS xh, {middle} AS xm, {low} AS xl", f", {state} AS a"


def _combined(aggregation: Aggregation, number: Representation) -> str:
    """The aggregates that merge segment states into a window state (MS-AGG-005)."""
    kind = aggregation.kind
    if kind == "count":
        return ""
    if kind == "sum" and not isinstance(number, Units):
        return ", sum(ah) AS ah, sum(am) AS am, sum(al) AS al"
    return ", " + {"sum": "sum(a)", "min": "min(a)", "max": "max(a)", "latest": "max(a)",
                   "unique-count": "NULL"}[kind] + " AS a"


def _text(aggregation: Aggregation, number: Representation) -> str:
    """The canonical quantity text of a window state (MS-QTY-004)."""
    kind = aggregation.kind
    if kind == "count":
        return "c::VARCHAR"
    if kind == "unique-count":
        return "a::VARCHAR"
    if isinstance(number, Units):
        return "ms_decimal_text(a.x)" if kind == "latest" else "ms_decimal_text(a)"
    if kind == "sum":
        return "ms_limbs_text(ms_carry(ah, am, al))"
    return "ms_limbs_text(ms_carry(a.h::HUGEINT, a.m::HUGEINT, a.l::HUGEINT))"


def statements(aggregation: Aggregation, number: Representation) -> list[str]:
    """The SQL that fills `grp` and `res` from `recs` (and `segs`, `wins`)."""
    keys = group_keys(aggregation)
    key_list = ", ".join(keys)
    value, state = _states(aggregation, number)
    source = segment_source(aggregation, "recs")
    if not isinstance(number, Units) and aggregation.kind in ("sum", "min", "max", "latest"):
        source = layered(source, quantity_parts("q", "q"))
    out = [
        f"CREATE OR REPLACE TEMP TABLE part AS SELECT {key_list}, j, count(*) AS c{state} "
        f"FROM (SELECT {key_list}, j, t, {value} FROM ({source})) GROUP BY ALL",
        f"CREATE OR REPLACE TEMP TABLE grp AS SELECT {key_list}, row_number() OVER "
        f"(ORDER BY {order_by(aggregation)}) AS gi FROM (SELECT DISTINCT {key_list} "
        "FROM part)",
    ]
    joined = " AND ".join(f"p.{k} IS NOT DISTINCT FROM g.{k}" for k in keys)
    text = _text(aggregation, number)
    if aggregation.windows.disjoint:
        out.append(
            f"CREATE OR REPLACE TEMP TABLE res AS SELECT gi, wi, {text} AS qt, c FROM "
            f"(SELECT g.gi, win.wi, p.* FROM part p JOIN grp g ON {joined} JOIN wins win "
            "ON win.first = p.j)")
        return out
    # Overlapping windows: a window merges the states of the segments it spans.
    spans = "JOIN wins win ON p.j >= win.first AND p.j < win.last"
    if aggregation.kind == "unique-count":
        column = f"d_{aggregation.dimensions.index(aggregation.dimension or '')}"
        out += [
            f"CREATE OR REPLACE TEMP TABLE vals AS SELECT DISTINCT {key_list}, j, {column} AS x "
            f"FROM ({source}) WHERE {column} IS NOT NULL",
            f"CREATE OR REPLACE TEMP TABLE res AS SELECT gi, wi, coalesce(a, 0)::VARCHAR AS qt, "
            f"c FROM (SELECT g.gi, win.wi, sum(p.c) AS c FROM part p JOIN grp g ON {joined} "
            f"{spans} GROUP BY ALL) n LEFT JOIN (SELECT g.gi, win.wi, count(DISTINCT p.x) AS a "
            f"FROM vals p JOIN grp g ON {joined} {spans} GROUP BY ALL) m USING (gi, wi)",
        ]
        return out
    merged = _combined(aggregation, number)
    out.append(
        f"CREATE OR REPLACE TEMP TABLE res AS SELECT gi, wi, {text} AS qt, c FROM ("
        f"SELECT g.gi, win.wi, sum(p.c) AS c{merged} FROM part p JOIN grp g ON {joined} "
        f"{spans} GROUP BY ALL)")
    return out
