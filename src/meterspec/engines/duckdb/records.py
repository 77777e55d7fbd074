"""Stage 2 in DuckDB: the accepted rows of `ev` as records, one relation `recs`
(MS-MET-007).

An event row yields one record per rule it matches, in rule order (`rule`); a record row is
its own record. A record has what aggregation and output read: its row number `n`, w, u, s,
unit, the instant t, the quantity text q (of the fast shape, so it is read exactly where it
is used: as a DECIMAL, a 128-bit integer or canonical parts), d_0.. (the aggregation's
dimensions, MS-MET-006 applied), and for record output or the record-stream check the event
or record id, the record source and the properties or dimensions as JSON. Records of flagged
rows the reference accepted come from table `staged`.

`recs` is a view (its rows are a projection of `ev`, cheaper to read twice than to copy).
"""

from __future__ import annotations

from meterspec.engines.duckdb.screen import Screen
from meterspec.engines.duckdb.sql import literal
from meterspec.engines.plan import Plan

STAGED = ("read_json(?, format = 'newline_delimited', columns = {n: 'BIGINT', "
          "rule: 'INTEGER', w: 'VARCHAR', u: 'VARCHAR', s: 'VARCHAR', unit: 'VARCHAR', "
          "t: 'VARCHAR', q: 'VARCHAR', d: 'VARCHAR[]', eid: 'VARCHAR', src: 'VARCHAR', "
          "rid: 'VARCHAR', p: 'VARCHAR'})")


def dimensions(plan: Plan) -> tuple[str, ...]:
    """The dimensions a record keeps for aggregation (d_0..)."""
    return plan.aggregation.dimensions if plan.aggregation is not None else ()


def _columns(plan: Plan) -> list[str]:
    return ["n", "rule", "w", "u", "s", "unit", "t", "q",
            *(f"d_{i}" for i in range(len(dimensions(plan)))), "eid", "src", "rid", "p"]


def create_staged(plan: Plan) -> str:
    kinds = ["BIGINT", "INTEGER", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "HUGEINT",
             "VARCHAR", *(["VARCHAR"] * len(dimensions(plan))), "VARCHAR", "VARCHAR",
             "VARCHAR", "VARCHAR"]
    return "CREATE OR REPLACE TEMP TABLE staged (" + ", ".join(
        f"{name} {kind}" for name, kind in zip(_columns(plan), kinds, strict=True)) + ")"


def load_staged(plan: Plan) -> str:
    """INSERT the staged records (parameter: the staging file's path)."""
    dims = [f"d[{i + 1}]" for i in range(len(dimensions(plan)))]
    select = ", ".join(["n", "rule", "w", "u", "s", "unit", "t::HUGEINT", "q", *dims, "eid",
                        "src", "rid", "p"])
    return f"INSERT INTO staged SELECT {select} FROM {STAGED}"


def create_all(plan: Plan, screen: Screen) -> str:
    """The view `recs_all`: the records of the accepted rows of `ev`, then the staged ones."""
    needed = screen.needed
    names = ", ".join(_columns(plan))
    parts = []
    if plan.input == "records":
        dims = [f"v_{needed.index(name)}" for name in dimensions(plan)]
        select = ", ".join(["n", "0", "w", "u", "s", "unit", "t", "q", *dims, "sev", "NULL",
                            "id", "p"])
        parts.append(f"SELECT {select} FROM ev WHERE ok")
    else:
        assert plan.metering is not None
        metering = plan.metering
        dims = [f"v_{needed.index(name)}" if metering.is_dimension(name) else "NULL"
                for name in dimensions(plan)]
        for rule in metering.rules:
            quantity = (literal(rule.constant) if rule.constant is not None
                        else f"v_{needed.index(rule.source_property or '')}")
            select = ", ".join(["n", str(rule.index), "w", "u", "s", literal(rule.unit), "t",
                                quantity, *dims, "id", literal(rule.source), "NULL", "p"])
            parts.append(f"SELECT {select} FROM ev WHERE ok AND {screen.matches(rule.index)}")
    parts.append(f"SELECT {names} FROM staged")
    body = " UNION ALL ".join(f"SELECT * FROM ({part})" for part in parts)
    return f"CREATE OR REPLACE TEMP VIEW recs_all ({names}) AS {body}"


def create_kept(repeats: bool) -> str:
    """The view `recs`: `recs_all` without the later rows of repeated identities (table
    `later`) when there are any."""
    kept = " WHERE n NOT IN (SELECT n FROM later)" if repeats else ""
    return f"CREATE OR REPLACE TEMP VIEW recs AS SELECT * FROM recs_all{kept}"
