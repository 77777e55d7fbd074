"""Stages 2 and the identity check in Spark SQL: the accepted rows of the screened relation
as records (MS-MET-007), and the later rows of repeated identities (MS-ING-020/021).

An event row yields one record per rule it matches, in rule order (`rule`): the matching
rules' records are built as an array and exploded, so the row is read once. A record row is
its own record. Records of flagged rows the reference accepted come from the driver
(`staged`, the same RECS schema). Identities: every row that is an identity seen (accepted
events, flagged events the reference decoded, records) meets the other rows of its identity
by key; a later row is a duplicate when its content (by value: one instant, one canonical
quantity, members in any order) equals the first's, else a conflict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterspec.engines.plan import Plan
from meterspec.engines.spark.screen import matches
from meterspec.engines.spark.sql import canonical, literal

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

RECS = ("job INT, n BIGINT, rule INT, w STRING, u STRING, s STRING, unit STRING, sec BIGINT, "
        "ns INT, q STRING, d ARRAY<STRING>, eid STRING, src STRING, rid STRING, "
        "pk ARRAY<STRING>, pv ARRAY<STRING>")
SEEN = ("job INT, n BIGINT, w STRING, u STRING, id STRING, type STRING, s STRING, "
        "sec BIGINT, ns INT, q STRING, unit STRING, eid STRING, pk ARRAY<STRING>, "
        "pv ARRAY<STRING>")
LATER = "job INT, n BIGINT"


def dimensions(plan: Plan) -> tuple[str, ...]:
    """The dimensions a record keeps for aggregation (d)."""
    return plan.aggregation.dimensions if plan.aggregation is not None else ()


def records(plan: Plan, screened: DataFrame) -> DataFrame:
    """The RECS rows of one job's accepted screened rows."""
    needed = plan.needed()
    ok = screened.where("ok")
    if plan.input == "records":
        dims = ", ".join(f"get(v, {needed.index(name)})" for name in dimensions(plan))
        return ok.selectExpr(
            "job", "n", "0 AS rule", "w", "u", "s", "unit", "sec", "ns", "q",
            f"CAST(array({dims}) AS ARRAY<STRING>) AS d", "sev AS eid",
            "CAST(NULL AS STRING) AS src", "id AS rid", "pk", "pv")
    metering = plan.metering
    assert metering is not None
    dims = ", ".join(f"get(v, {needed.index(name)})" if metering.is_dimension(name)
                     else "CAST(NULL AS STRING)" for name in dimensions(plan))
    made = []
    for rule in metering.rules:
        quantity = (literal(rule.constant) if rule.constant is not None
                    else f"get(v, {needed.index(rule.source_property or '')})")
        made.append(f"CASE WHEN {matches(plan, rule.index, 'get(v, {})')} THEN named_struct("
                    f"'rule', {rule.index}, 'unit', {literal(rule.unit)}, 'q', {quantity}, "
                    f"'src', {literal(rule.source)}) END")
    return ok.selectExpr(
        "job", "n", "w", "u", "s", "sec", "ns", "id", "pk", "pv",
        f"CAST(array({dims}) AS ARRAY<STRING>) AS d",
        f"explode(filter(array({', '.join(made)}), x -> x IS NOT NULL)) AS r",
    ).selectExpr("job", "n", "r.rule AS rule", "w", "u", "s", "r.unit AS unit", "sec", "ns",
                 "r.q AS q", "d", "id AS eid", "r.src AS src", "CAST(NULL AS STRING) AS rid",
                 "pk", "pv")


def seen(plan: Plan, screened: DataFrame, recs: DataFrame) -> DataFrame:
    """The SEEN rows of one job (its staged identities are added by the caller)."""
    if plan.input == "events":
        return screened.where("ok").selectExpr(
            "job", "n", "w", "u", "id", "type", "s", "sec", "ns", "CAST(NULL AS STRING) AS q",
            "CAST(NULL AS STRING) AS unit", "CAST(NULL AS STRING) AS eid", "pk", "pv")
    return recs.selectExpr("job", "n", "w", "u", "rid AS id", "CAST(NULL AS STRING) AS type",
                           "s", "sec", "ns", "q", "unit", "eid", "pk", "pv")


def later(seen_rows: DataFrame) -> DataFrame:
    """The later rows of repeated identities: job, n, same (the first's content), and the
    row's own identity and content (for a conflict's message)."""
    content = ("named_struct('type', type, 's', s, 'sec', sec, 'ns', ns, 'q', "
               f"CASE WHEN q IS NULL THEN NULL ELSE {canonical('q')} END, 'unit', unit, "
               "'eid', eid, 'p', array_sort(zip_with(pk, pv, (k, x) -> "
               "named_struct('k', k, 'x', x))))")
    rows = seen_rows.selectExpr(
        "*", f"{content} AS content", "row_number() OVER (PARTITION BY job, w, u, id "
        "ORDER BY n) AS place", "first_value(content) OVER (PARTITION BY job, w, u, id "
        "ORDER BY n) AS original".replace("content)", f"{content})"))
    return rows.where("place > 1").selectExpr(
        "job", "n", "content <=> original AS same", "w", "u", "id", "type", "s", "sec", "ns",
        "pk", "pv")
