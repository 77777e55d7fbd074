"""Stages 3 and 4 in DuckDB for time-weighted-avg (MS-AGG-011..015), exact in 128 bits.

Records before the end of the last window collapse per group and instant to the greatest
level (the MS-AGG-009 tie rule) and their count. Each level is a step from its instant to the
next one (the last to the end of the range, MS-AGG-014); the latest level before the range
carries in from its start (MS-AGG-012), and nothing carries in as 0 (MS-AGG-013). Steps are
cut at segment bounds; a group's integral per segment is summed into a running total, and a
window's integral is the difference of two running totals, so a window costs the same
however many windows overlap it. The quotient by the window's length is rounded once, half
to even, at the request's scale (MS-AGG-015), in integers.

Levels are integers in units of 10**-f (f: the most fraction digits among the levels). A
group whose largest level passes TwaBounds.level_limit (or does not fit 128 bits at all) is
not integrated here: it is listed in `big`, and meterspec.engines.fallback integrates it
exactly in Python. Fills `grp` and `res` as meterspec.engines.duckdb.aggregate does.
"""

from __future__ import annotations

from meterspec.engines.duckdb.aggregate import group_keys, order_by
from meterspec.engines.duckdb.sql import big, hugeint_units, layered
from meterspec.engines.numbers import TwaBounds
from meterspec.engines.plan import Aggregation


def statements(aggregation: Aggregation, bounds: TwaBounds) -> list[str]:
    """The SQL that fills `grp`, `big` (groups for the fallback) and `res`."""
    windows = aggregation.windows
    start, end = big(windows.start), big(windows.end)
    keys = group_keys(aggregation)
    key_list = ", ".join(keys)
    joined = " AND ".join(f"r.{k} IS NOT DISTINCT FROM g.{k}" for k in keys)
    level = hugeint_units("r.q", bounds.fraction)
    limit = "true" if bounds.level_limit is None else f"max(abs(x)) > {big(bounds.level_limit)}"
    out = [
        f"CREATE OR REPLACE TEMP TABLE grp AS SELECT {key_list}, row_number() OVER "
        f"(ORDER BY {order_by(aggregation)}) AS gi FROM (SELECT DISTINCT {key_list} "
        f"FROM recs WHERE t < {end})",
        "CREATE OR REPLACE TEMP TABLE pts AS SELECT gi, t, max(x) AS x, count(*) AS c, "
        f"bool_or(x IS NULL) AS wide FROM (SELECT g.gi, r.t, {level} AS x FROM recs r "
        f"JOIN grp g ON {joined} WHERE r.t < {end}) GROUP BY gi, t",
        "CREATE OR REPLACE TEMP TABLE big AS SELECT gi FROM pts GROUP BY gi "
        f"HAVING bool_or(wide) OR {limit}",
        "CREATE OR REPLACE TEMP TABLE small AS SELECT * FROM pts WHERE gi NOT IN "
        "(SELECT gi FROM big)",
        # Steps: each in-range level to the next instant (or the end); the carried-in level
        # from the start to the first in-range instant.
        "CREATE OR REPLACE TEMP TABLE steps AS "
        f"SELECT gi, t AS a, coalesce(lead(t) OVER (PARTITION BY gi ORDER BY t), {end}) AS b, "
        f"x FROM small WHERE t >= {start} "
        f"UNION ALL SELECT c.gi, {start}::HUGEINT AS a, coalesce(f.first, {end}) AS b, c.x "
        f"FROM (SELECT gi, arg_max(x, t) AS x FROM small WHERE t < {start} GROUP BY gi) c "
        f"LEFT JOIN (SELECT gi, min(t) AS first FROM small WHERE t >= {start} GROUP BY gi) f "
        "USING (gi)",
    ]
    if windows.size is not None:
        size = big(windows.size)
        segment = f"(({{x}} - {start}) // {size})::BIGINT"
        pieces = (
            f"SELECT gi, a, b, x, j, {start} + j * {size} AS lo, {start} + (j + 1) * {size} "
            f"AS hi FROM (SELECT *, unnest(range({segment.format(x='a')}, "
            f"{segment.format(x='b - 1')} + 1)) AS j FROM steps WHERE a < b)")
        counted = f"SELECT gi, {segment.format(x='t')} AS j, c FROM small WHERE t >= {start}"
    else:
        pieces = (
            "SELECT p.gi, p.a, p.b, p.x, p.j, g.lo, g.hi FROM (SELECT *, unnest(range(ja, "
            "jb + 1)) AS j FROM (SELECT s.*, ga.j AS ja, gb.j AS jb FROM steps s "
            "ASOF JOIN segs ga ON s.a >= ga.lo ASOF JOIN segs gb ON s.b - 1 >= gb.lo "
            "WHERE s.a < s.b)) p JOIN segs g ON g.j = p.j")
        counted = ("SELECT s.gi, g.j, s.c FROM small s ASOF JOIN segs g ON s.t >= g.lo "
                   f"WHERE s.t >= {start}")
    out.append(
        f"CREATE OR REPLACE TEMP TABLE area AS SELECT gi, j, "
        f"sum(x * (least(b, hi) - greatest(a, lo))) AS area FROM ({pieces}) GROUP BY gi, j")
    counts = f"SELECT gi, j, sum(c) AS c FROM ({counted}) GROUP BY gi, j"
    rounded = _rounded(aggregation.scale, bounds.fraction)
    if windows.disjoint:
        # Each window is one segment: its integral is that segment's. A window without
        # steps has none, and output.py writes MS-AGG-013's empty reading ("0", count 0).
        integrals = ("SELECT a.gi, win.wi, win.hi - win.lo AS len, a.area, "
                     "coalesce(n.c, 0)::BIGINT AS c FROM area a JOIN wins win ON "
                     f"win.first = a.j LEFT JOIN ({counts}) n ON n.gi = a.gi AND n.j = a.j")
        out.append("CREATE OR REPLACE TEMP TABLE res AS SELECT gi, wi, "
                   f"ms_units_text(v, {aggregation.scale}) AS qt, c FROM "
                   f"({layered(integrals, rounded)})")
        return out
    out += [
        # Running totals per group over its segments: the pieces cover every segment from
        # the group's first step to the end, so the totals are dense there.
        "CREATE OR REPLACE TEMP TABLE cum AS SELECT gi, j, "
        "sum(area) OVER (PARTITION BY gi ORDER BY j) AS area, "
        "sum(coalesce(c, 0)) OVER (PARTITION BY gi ORDER BY j) AS c "
        f"FROM area LEFT JOIN ({counts}) USING (gi, j)",
        "CREATE OR REPLACE TEMP TABLE wint AS SELECT g.gi, win.wi, win.hi - win.lo AS len, "
        "coalesce(e.area, 0) - coalesce(f.area, 0) AS area, "
        "(coalesce(e.c, 0) - coalesce(f.c, 0))::BIGINT AS c FROM grp g CROSS JOIN wins win "
        "LEFT JOIN cum e ON e.gi = g.gi AND e.j = win.last - 1 "
        "LEFT JOIN cum f ON f.gi = g.gi AND f.j = win.first - 1 "
        "WHERE g.gi NOT IN (SELECT gi FROM big)",
        "CREATE OR REPLACE TEMP TABLE res AS SELECT gi, wi, "
        f"ms_units_text(v, {aggregation.scale}) AS qt, c FROM "
        f"({layered('SELECT * FROM wint', rounded)})",
    ]
    return out


def _rounded(scale: int, fraction: int) -> list[list[str]]:
    """Layers computing v = round(area / len * 10**(scale - fraction)), half to even
    (MS-AGG-015), in integers whose bounds TwaBounds guarantees: a floor quotient q and its
    remainder 0 <= r < d, each 128-bit division done once (they are the costly part)."""
    if scale < fraction:
        return [[f"len * {big(10 ** (fraction - scale))} AS d"], *_floor("area", "d", ""),
                [_half_even()]]
    factor = 10 ** (scale - fraction)
    if factor == 1:
        return [["len AS d"], *_floor("area", "d", ""), [_half_even()]]
    return [*_floor("area", "len", "0"), [f"r0 * {big(factor)} AS rf"],
            [f"q0 * {big(factor)} + rf // len AS q", "rf % len AS r", "len AS d"],
            [_half_even()]]


def _floor(a: str, b: str, suffix: str) -> list[list[str]]:
    """Layers of q<suffix> = floor(a / b) and r<suffix> = a - q * b (b > 0): DuckDB's // and
    % truncate toward zero, so a negative remainder moves both one step."""
    q, r = f"q{suffix}", f"r{suffix}"
    return [[f"{a} // {b} AS tq{suffix}", f"{a} % {b} AS tr{suffix}"],
            [f"tq{suffix} - CASE WHEN tr{suffix} < 0 THEN 1 ELSE 0 END AS {q}",
             f"tr{suffix} + CASE WHEN tr{suffix} < 0 THEN {b} ELSE 0 END AS {r}"]]


def _half_even() -> str:
    """q rounded up when the remainder r of d is past half, or half and q odd."""
    return ("q + CASE WHEN 2 * r > d OR (2 * r = d AND q % 2 <> 0) THEN 1 ELSE 0 END AS v")
