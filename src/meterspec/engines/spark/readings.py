"""Stages 3 to 5 in Spark SQL: records into segments and windows, one state per group and
window (MS-AGG-005), exact, and the reading lines byte for byte the reference's.

- assign (per job): a record's instant, relative to the first window's start (BIGINT, or
  DECIMAL(38, 0) for ranges past 292 years), finds its segment by a division (segments of
  one length) or a binary search over the bounds (one higher-order `aggregate` call);
  segments meet their windows by a broadcast join with the plan's (job, segment, window)
  triples, so overlapping windows each get the record;
- aggregate (all jobs at once, keyed by job): quantities in the representation
  meterspec.engines.numbers chose from each job's data: Units as the value times 10**scale
  in a DECIMAL(38, 0) (18 digits, so sums are exact below 10**20 records), Limbs as three
  17-digit limbs (summed as DECIMAL(38, 0) each and carried together at the end; compared
  as a struct for min, max and latest). Never a float; a sum past DECIMAL(38) raises (ANSI)
  rather than round;
- finish: per active group one array of lines, one per window (MS-AGG-010), the empty ones
  with MS-AGG-005's empty result; the id is SHA-256 (sha2) of MS-ID-003's fields, the text
  built by concatenation from each job's constants (JOBS). The driver sorts the groups
  (MS-AGG-017: tenant, subject, unit, then groupBy values, NULL first, strings by code point)
  and writes their lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from meterspec.engines.numbers import LIMB, LIMB_DIGITS, UNIT_DIGITS, Representation, Units
from meterspec.engines.plan import Aggregation, Metering, Windows
from meterspec.engines.spark.screen import layered
from meterspec.engines.spark.sql import (
    NANOS,
    at_or_after,
    before,
    canonical,
    digits_text,
    enc,
    fraction_digits,
    js,
    limbs,
    literal,
    sha_id,
    timestamp_text,
)
from meterspec.ids import encode_fields

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

LONG = 2**63 - 1
_ENCODER = msgspec.json.Encoder()
GROUPS = "job INT, gkey ARRAY<STRUCT<p: BOOLEAN, x: STRING>>, lines ARRAY<STRING>"


def _number(value: int) -> str:
    """An integer literal: BIGINT when it fits, else DECIMAL(38, 0)."""
    return f"{value}L" if abs(value) <= LONG else f"CAST('{value}' AS DECIMAL(38, 0))"


def in_range(windows: Windows) -> str:
    """start <= t < end (MS-WIN-001) on (sec, ns)."""
    return f"{at_or_after('sec', 'ns', windows.start)} AND {before('sec', 'ns', windows.end)}"


def _segment(windows: Windows) -> list[list[str]]:
    """Layers computing `rel` (nanoseconds since the start) and `j` (the segment)."""
    start_sec, start_ns = divmod(windows.start, NANOS)
    if windows.end - windows.start <= LONG:
        rel = f"(sec - {start_sec}) * {NANOS} + (ns - {start_ns})"
    else:
        rel = f"CAST(sec - {start_sec} AS DECIMAL(38, 0)) * {NANOS} + (ns - {start_ns})"
    if windows.size is not None:
        return [[f"{rel} AS rel"], [f"CAST(rel div {_number(windows.size)} AS INT) AS j"]]
    starts = [bound - windows.start for bound in windows.bounds[:-1]]
    array = "array(" + ", ".join(_number(b) for b in starts) + ")"
    if any(abs(b) > LONG for b in starts):
        array = f"CAST({array} AS ARRAY<DECIMAL(38, 0)>)"
    step, steps = 1, []
    while step < len(starts):
        steps.append(step)
        step *= 2
    search = (f"aggregate(array({', '.join(str(s) for s in reversed(steps)) or '0'}), 0, "
              f"(lo, st) -> IF(lo + st < {len(starts)} AND get({array}, lo + st) <= rel, "
              "lo + st, lo))")
    return [[f"{rel} AS rel"], [f"{search} AS j"]]


def _gkey(aggregation: Aggregation) -> str:
    """A group's key (MS-AGG-004) as a sortable array: NULL values first (p false)."""
    items = [f"named_struct('p', true, 'x', {c})" for c in ("w", "u", "s", "unit")]
    items += [f"named_struct('p', get(d, {i}) IS NOT NULL, 'x', coalesce(get(d, {i}), ''))"
              for i in range(len(aggregation.group_by))]
    return f"array({', '.join(items)})"


def placed(job: int, aggregation: Aggregation, recs: DataFrame, number: Representation
           ) -> DataFrame:
    """One job's records in range with their segment `j`, key and values (PLACED): x the
    value times 10**scale (Units), xh/xm/xl its limbs (Limbs), ux unique-count's value."""
    kind = aggregation.kind
    xh = xm = xl = "CAST(NULL AS BIGINT)"
    x = "CAST(NULL AS DECIMAL(38, 0))"
    ux = "CAST(NULL AS STRING)"
    if kind == "unique-count":
        ux = f"get(d, {aggregation.dimensions.index(aggregation.dimension or '')})"
    elif kind != "count" and isinstance(number, Units):
        x = (f"CAST(replace(q, '.', '') || repeat('0', {number.scale} - "
             f"{fraction_digits('q')}) AS DECIMAL(38, 0))")
    elif kind != "count":
        xh, xm, xl = limbs("q")
    rows = layered(recs.where(in_range(aggregation.windows)), _segment(aggregation.windows))
    return rows.selectExpr(f"{job} AS job", "j", f"{_gkey(aggregation)} AS gkey", "sec", "ns",
                           f"{x} AS x", f"{xh} AS xh", f"{xm} AS xm", f"{xl} AS xl",
                           f"{ux} AS ux")


def job_row(job: int, aggregation: Aggregation, number: Representation) -> tuple[Any, ...]:
    """One aggregating job's constants (JOBS): what its texts and lines need."""
    names = aggregation.group_by
    return (job, aggregation.kind, not isinstance(number, Units),
            number.scale if isinstance(number, Units) else UNIT_DIGITS,
            aggregation.grouped, [_ENCODER.encode(n).decode() for n in names],
            [encode_fields((n,)).decode() for n in names],
            encode_fields((str(len(names)),)).decode(), aggregation.id_prefix,
            aggregation.id_kind, aggregation.line_kind,
            [(row.index, row.json, row.id_fields) for row in aggregation.windows.rows])


JOBS = ("job INT, kind STRING, limbs BOOLEAN, scale INT, grouped BOOLEAN, "
        "names ARRAY<STRING>, names_enc ARRAY<STRING>, count_enc STRING, id_prefix STRING, "
        "id_kind STRING, kind_json STRING, "
        "wins ARRAY<STRUCT<wi: INT, wjson: STRING, wenc: STRING>>")


PAIRS = "job INT, j INT, wi INT"


def segment_pairs(job: int, windows: Windows) -> list[tuple[int, int, int]]:
    """(job, j, wi): each covered segment with every window that spans it."""
    return [(job, j, row.index) for row in windows.rows for j in range(row.first, row.last)]


def _states(kinds: set[str]) -> list[str]:
    """The aggregates per group and window the batch's kinds need."""
    out = ["count(*) AS c"]
    if "sum" in kinds:
        out += ["sum(x) AS sum_x"]
        out += [f"sum(CAST(x{p} AS DECIMAL(38, 0))) AS sum_{p}" for p in "hml"]
    packed = "named_struct('h', xh, 'm', xm, 'l', xl)"
    if "min" in kinds:
        out += ["min(x) AS min_x", f"min({packed}) AS min_l"]
    if "max" in kinds:
        out += ["max(x) AS max_x", f"max({packed}) AS max_l"]
    if "latest" in kinds:
        out += ["max(named_struct('sec', sec, 'ns', ns, 'x', x)).x AS last_x",
                "max(named_struct('sec', sec, 'ns', ns, 'h', xh, 'm', xm, 'l', xl)) AS last_l"]
    if "unique-count" in kinds:
        out += ["count(DISTINCT ux) AS uc"]
    return out


def _carry(prefix: str, high: str, middle: str, low: str) -> list[list[str]]:
    """Layers carrying limb sums into limbs of [0, 10**17) below a signed high limb."""
    p, base = prefix, f"CAST({LIMB} AS DECIMAL(38, 0))"
    return [
        [f"pmod(CAST({low} AS DECIMAL(38, 0)), {base}) AS {p}l",
         f"CAST({middle} AS DECIMAL(38, 0)) + (CAST({low} AS DECIMAL(38, 0)) - "
         f"pmod(CAST({low} AS DECIMAL(38, 0)), {base})) div {base} AS {p}m2"],
        [f"pmod({p}m2, {base}) AS {p}m",
         f"CAST({high} AS DECIMAL(38, 0)) + ({p}m2 - pmod({p}m2, {base})) div {base} AS {p}h"],
    ]


def _limbs_text(high: str, middle: str, low: str) -> str:
    digits = (f"ltrim('0', CAST({high} AS STRING) || lpad(CAST({middle} AS STRING), "
              f"{LIMB_DIGITS}, '0') || lpad(CAST({low} AS STRING), {LIMB_DIGITS}, '0'))")
    return digits_text(f"CASE WHEN {digits} = '' THEN '0' ELSE {digits} END", str(UNIT_DIGITS))


def _pick(kinds: set[str], choices: dict[str, str], otherwise: str) -> str:
    """A CASE on the job's kind over the kinds present."""
    cases = " ".join(f"WHEN kind = '{k}' THEN {v}" for k, v in choices.items() if k in kinds)
    return f"CASE {cases} ELSE {otherwise} END" if cases else otherwise


def _texts(kinds: set[str]) -> list[list[str]]:
    """Layers ending in `qt`, the canonical text of a window's state (MS-QTY-004)."""
    null = "CAST(NULL AS DECIMAL(38, 0))"
    units_value = _pick(kinds, {"sum": "sum_x", "min": "min_x", "max": "max_x",
                                "latest": "last_x"}, null)
    limb = {part: _pick(kinds, {"sum": f"sum_{part}", "min": f"min_l.{part}",
                                "max": f"max_l.{part}", "latest": f"last_l.{part}"}, null)
            for part in "hml"}
    layers = [[f"{units_value} AS uv", *(f"CAST({v} AS DECIMAL(38, 0)) AS a{p}"
                                         for p, v in limb.items())]]
    layers += _carry("cy_", "coalesce(ah, 0)", "coalesce(am, 0)", "coalesce(al, 0)")
    layers += _carry("ng_", "-cy_h", "-cy_m", "-cy_l")
    limbs_text = (f"CASE WHEN cy_h >= 0 THEN {_limbs_text('cy_h', 'cy_m', 'cy_l')} ELSE '-' || "
                  f"{_limbs_text('ng_h', 'ng_m', 'ng_l')} END")
    units_text = (f"CASE WHEN uv < 0 THEN '-' ELSE '' END || "
                  f"{digits_text('CAST(abs(uv) AS STRING)', 'scale')}")
    layers.append([f"CASE WHEN kind = 'count' THEN CAST(c AS STRING) "
                   f"WHEN kind = 'unique-count' THEN CAST({'uc' if 'unique-count' in kinds else 0}"
                   f" AS STRING) WHEN limbs THEN {limbs_text} ELSE {units_text} END AS qt"])
    return layers


def readings(rows: DataFrame, pairs: DataFrame, jobs: DataFrame, kinds: set[str]
             ) -> DataFrame:
    """The GROUPS (job, gkey, lines: the group's reading lines in window order) of every
    aggregating job, from the PLACED rows of all of them, the (job, j, wi) pairs and the
    JOBS constants: one aggregation for all jobs, whatever each one's kind."""
    from pyspark.sql import functions

    windowed = rows.join(pairs.hint("broadcast"), ["job", "j"])
    grouped = windowed.groupBy("job", "gkey", "wi").agg(
        *[functions.expr(a) for a in _states(kinds)])
    texts = layered(grouped.join(jobs.select("job", "kind", "limbs", "scale")
                                 .hint("broadcast"), "job"), _texts(kinds))
    results = texts.groupBy("job", "gkey").agg(functions.expr(
        "map_from_entries(collect_list(named_struct('k', wi, 'v', named_struct('qt', qt, "
        "'c', c)))) AS res"))
    return layered(results.join(jobs.hint("broadcast"), "job"), [_pieces()]).selectExpr(
        "job", "gkey", f"transform(wins, win -> {_line()}) AS lines")


def _line() -> str:
    """A reading's line in a window `win`, from the group's pieces and results `res`."""
    empty = "CASE WHEN kind IN ('min', 'max', 'latest') THEN 'null' ELSE '\"0\"' END"
    found = "try_element_at(res, win.wi)"
    return (f"'{{\"id\":\"' || {sha_id('rdg_', 'idh || win.wenc || idt')} || head || "
            f"CASE WHEN {found}.qt IS NULL THEN {empty} ELSE '\"' || {found}.qt || '\"' END "
            "|| middle || win.wjson || ',\"recordCount\":' || "
            f"CAST(coalesce({found}.c, 0) AS STRING) || tail")


def _pieces() -> list[str]:
    """A group's JSON pieces and reading-id fields (MS-ID-003) from its key and job."""
    w, u, s, unit = (f"gkey[{i}].x" for i in range(4))
    dims = "filter(gkey, (e, i) -> i >= 4)"
    head = (f"'\",\"workspaceID\":' || {js(w)} || ',\"universeID\":' || {js(u)} || "
            f"',\"subject\":' || {js(s)} || ',\"measurement\":{{\"quantity\":'")
    middle = (f"',\"unit\":' || {js(unit)} || '}},\"aggregation\":' || kind_json || "
              "',\"window\":'")
    members = (f"array_join(zip_with(names, {dims}, (n, e) -> n || ':' || CASE WHEN e.p "
               f"THEN {js('e.x')} ELSE 'null' END), ',')")
    tail = f"CASE WHEN grouped THEN ',\"group\":{{' || {members} || '}}}}' ELSE '}}' END"
    id_head = f"id_prefix || {enc(w)} || {enc(u)} || {enc(s)} || {enc(unit)} || id_kind"
    value = "CASE WHEN e.p THEN '=' || e.x ELSE '!' END"
    id_tail = (f"count_enc || array_join(zip_with(names_enc, {dims}, (n, e) -> n || "
               f"{enc(value)}), '')")
    return [f"{head} AS head", f"{middle} AS middle", f"{tail} AS tail", f"{id_head} AS idh",
            f"{id_tail} AS idt"]


def record_lines(job: int, metering: Metering | None, recs: DataFrame,
                 metered_at: str | None) -> DataFrame:
    """The GROUPS of a meter job, one per record (MS-MET-007), keyed by row and rule;
    dimensions per MS-MET-006 in code-point order."""
    if metering is None:
        keep = "true"
    elif metering.listed_dimensions is not None:
        listed = ", ".join(literal(n) for n in metering.listed_dimensions)
        keep = f"e.k IN ({listed})" if listed else "false"
    else:
        sources = ", ".join(literal(n) for n in sorted(metering.source_properties))
        keep = f"NOT (e.k IN ({sources}))" if sources else "true"
    pairs = "zip_with(pk, pv, (k, x) -> named_struct('k', k, 'x', x))"
    dims = (f"'{{' || array_join(transform(array_sort(filter({pairs}, e -> {keep})), "
            f"e -> {js('e.k')} || ':' || {js('e.x')}), ',') || '}}'")
    stamp = "" if metered_at is None else literal(f',"meteredAt":"{metered_at}"') + " || "
    head = literal(encode_fields(("meterspec/record/v1",)).decode())
    ident = sha_id("rec_", f"{head} || {enc('w')} || {enc('u')} || {enc('eid')} || "
                           f"{enc('unit')} || {enc('src')}")
    line = (f"'{{\"id\":\"' || {ident} || '\",\"workspaceID\":' || {js('w')} || "
            f"',\"universeID\":' || {js('u')} || ',\"subject\":' || {js('s')} || "
            f"',\"recordedAt\":\"' || {timestamp_text('sec', 'ns')} || "
            f"'\",\"measurement\":{{\"quantity\":\"' || {canonical('q')} || '\",\"unit\":' || "
            f"{js('unit')} || '}},\"dimensions\":' || {dims} || ',\"sourceEventID\":' || "
            f"{js('eid')} || {stamp}'}}'")
    return recs.selectExpr(
        f"{job} AS job",
        "array(named_struct('p', true, 'x', lpad(CAST(n AS STRING), 20, '0')), "
        "named_struct('p', true, 'x', lpad(CAST(rule AS STRING), 10, '0'))) AS gkey",
        f"array({line}) AS lines")
