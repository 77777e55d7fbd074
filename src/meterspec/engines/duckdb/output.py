"""Stage 5 in DuckDB: readings (or records) as NDJSON lines byte for byte the reference's
(msgspec's encoding of MeterReading and MeterRecord), or as Parquet in the same layout.

A reading's line is built from pieces: per group (encoded once) its JSON members and the
reading-id fields around the window's (MS-ID-003, SHA-256 in DuckDB), per window its JSON
and id fields (from the plan), per reading the id, the quantity and the count. Every active
group gets one line per window (MS-AGG-010/017): the windows where it has no record take the
empty result of MS-AGG-005's table. Lines are ordered by group number (`gi`, MS-AGG-017) and
window (`wi`, start then end).
"""

from __future__ import annotations

from meterspec.engines.duckdb.sql import json_literal, literal
from meterspec.engines.plan import Aggregation, Metering
from meterspec.ids import encode_fields

_EMPTY = {"min": "null", "max": "null", "latest": "null"}


def _group_pieces(aggregation: Aggregation) -> str:
    """SQL creating `gout`: each group's JSON pieces and id fields."""
    names = aggregation.group_by
    head = ("'\",\"workspaceID\":' || ms_js(w) || ',\"universeID\":' || ms_js(u) || "
            "',\"subject\":' || ms_js(s) || ',\"measurement\":{\"quantity\":'")
    kind = literal('},"aggregation":' + aggregation.line_kind + ',"window":')
    middle = f"',\"unit\":' || ms_js(unit) || {kind}"
    if aggregation.grouped:
        members = " || ',' || ".join(
            f"{json_literal(name)} || ':' || CASE WHEN d_{i} IS NULL THEN 'null' "
            f"ELSE ms_js(d_{i}) END" for i, name in enumerate(names))
        tail = "',\"group\":{' || " + (members + " || " if members else "") + "'}}'"
    else:
        tail = "'}'"
    id_head = (f"{literal(aggregation.id_prefix)} || ms_enc(w) || ms_enc(u) || ms_enc(s) || "
               f"ms_enc(unit) || {literal(aggregation.id_kind)}")
    id_tail = literal(encode_fields((str(len(names)),)).decode())
    for i, name in enumerate(names):
        id_tail += (f" || {literal(encode_fields((name,)).decode())} || "
                    f"ms_enc(CASE WHEN d_{i} IS NULL THEN '!' ELSE '=' || d_{i} END)")
    return (f"CREATE OR REPLACE TEMP TABLE gout AS SELECT gi, {head} AS head, {middle} AS "
            f"middle, {tail} AS tail, {id_head} AS idh, {id_tail} AS idt FROM grp")


def reading_lines(aggregation: Aggregation) -> list[str]:
    """The statements that create `gout` and then the query of the NDJSON lines."""
    empty = _EMPTY.get(aggregation.kind, "'\"0\"'")
    empty = "'null'" if empty == "null" else empty
    line = ("'{\"id\":\"rdg_' || left(sha256(g.idh || win.wenc || g.idt), 32) || g.head || "
            f"CASE WHEN r.qt IS NULL THEN {empty} ELSE '\"' || r.qt || '\"' END || g.middle "
            "|| win.wjson || ',\"recordCount\":' || coalesce(r.c, 0)::VARCHAR || g.tail")
    return [_group_pieces(aggregation),
            f"SELECT {line} AS line FROM gout g CROSS JOIN wins win LEFT JOIN res r "
            "ON r.gi = g.gi AND r.wi = win.wi ORDER BY g.gi, win.wi"]


def reading_rows(aggregation: Aggregation) -> list[str]:
    """The statements of the readings as Parquet rows (sources.py's rule: the JSON
    contract's members, `group` a MAP present only when the request has groupBy)."""
    statements = [_group_pieces(aggregation)]
    quantity = ("r.qt" if aggregation.kind in _EMPTY
                else "coalesce(r.qt, '0')")
    group = ""
    if aggregation.grouped:
        names = ", ".join(literal(n) for n in aggregation.group_by)
        values = ", ".join(f"k.d_{i}" for i in range(len(aggregation.group_by)))
        group = f", map([{names}]::VARCHAR[], [{values}]::VARCHAR[]) AS \"group\""
    statements.append(
        "SELECT 'rdg_' || left(sha256(g.idh || win.wenc || g.idt), 32) AS id, "
        "k.w AS workspaceID, k.u AS universeID, k.s AS subject, "
        f"struct_pack(quantity := {quantity}, unit := k.unit) AS measurement, "
        f"{literal(aggregation.kind)} AS aggregation, "
        "struct_pack(start := win.st, \"end\" := win.et) AS \"window\", "
        f"coalesce(r.c, 0)::BIGINT AS recordCount{group} "
        "FROM gout g JOIN grp k ON k.gi = g.gi CROSS JOIN wins win LEFT JOIN res r "
        "ON r.gi = g.gi AND r.wi = win.wi ORDER BY g.gi, win.wi")
    return statements


def record_lines(metering: Metering | None, metered_at: str | None) -> str:
    """The query of the records as NDJSON lines (MS-MET-007), in input order and, per
    event, rule order; dimensions per MS-MET-006 in code-point order."""
    if metering is None:
        keep = "true"
    elif metering.listed_dimensions is not None:
        listed = ", ".join(literal(n) for n in metering.listed_dimensions) or "NULL"
        keep = f"e.key IN ({listed})"
    else:
        sources = ", ".join(literal(n) for n in sorted(metering.source_properties))
        keep = f"e.key NOT IN ({sources})" if sources else "true"
    dims = ("'{' || array_to_string(list_transform(list_sort(list_filter(map_entries("
            "from_json(coalesce(p, '{}'), '\"MAP(VARCHAR, VARCHAR)\"')), lambda e: "
            f"{keep})), lambda e: ms_js(e.key) || ':' || ms_js(e.value)), ',') || '}}'")
    stamp = "" if metered_at is None else literal(f',"meteredAt":"{metered_at}"') + " || "
    quantity = "ms_canonical(q)"
    record_head = literal(encode_fields(("meterspec/record/v1",)).decode())
    return ("SELECT '{\"id\":\"rec_' || left(sha256(" + record_head + " || ms_enc(w) || "
            "ms_enc(u) || ms_enc(eid) || ms_enc(unit) || ms_enc(src)), 32) || "
            "'\",\"workspaceID\":' || ms_js(w) || ',\"universeID\":' || ms_js(u) || "
            "',\"subject\":' || ms_js(s) || ',\"recordedAt\":\"' || ms_timestamp_text(t) || "
            f"'\",\"measurement\":{{\"quantity\":\"' || {quantity} || '\",\"unit\":' || "
            f"ms_js(unit) || '}},\"dimensions\":' || {dims} || ',\"sourceEventID\":' || "
            f"ms_js(eid) || {stamp}'}}' AS line FROM recs ORDER BY n, rule")
