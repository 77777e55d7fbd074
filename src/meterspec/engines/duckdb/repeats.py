"""Repeated identities in DuckDB: each event (MS-ING-021) or record (MS-ING-020) identity
counts once, the first row of it in row order.

`seen` are the rows that are identities seen: for events, every accepted event row and every
flagged one the reference decoded with a valid identity and time (table `fseen`), whatever
their measurements; for records, every accepted record. `firsts` holds each repeated identity's
first row; it is found among the rows whose 64-bit hash of the identity repeats (grouping
fixed-width hashes costs less than grouping the strings; the strings then decide, so a
collision costs time, never a wrong answer). Table `later` holds each later row of
a repeated identity with `same`: true for a duplicate (the first's content: by value, so any
spelling of one time, quantity or member order is one content), false for a conflict.
"""

from __future__ import annotations

from meterspec.engines.plan import Plan

SEEN_STAGED = ("read_json(?, format = 'newline_delimited', columns = {n: 'BIGINT', "
               "w: 'VARCHAR', u: 'VARCHAR', id: 'VARCHAR', type: 'VARCHAR', s: 'VARCHAR', "
               "t: 'VARCHAR', p: 'VARCHAR'})")
_OBJECT = ("list_sort(map_entries(CAST(coalesce({0}.p, '{{}}')::JSON AS "
           "MAP(VARCHAR, VARCHAR))))")


def create_staged() -> str:
    return ("CREATE OR REPLACE TEMP TABLE fseen (n BIGINT, w VARCHAR, u VARCHAR, id VARCHAR, "
            "type VARCHAR, s VARCHAR, t HUGEINT, p VARCHAR)")


def load_staged() -> str:
    """INSERT the flagged identities (parameter: the staging file)."""
    return f"INSERT INTO fseen SELECT n, w, u, id, type, s, t::HUGEINT, p FROM {SEEN_STAGED}"


REPEATED_ROWS = ("SELECT e.n FROM ev e JOIN firsts f ON e.w = f.w AND e.u = f.u AND "
                 "e.id = f.id")
"""The numbers of the screened rows of repeated identities (after the `firsts` step)."""


def statements(plan: Plan) -> list[str]:
    """The SQL that creates `firsts` (the first three statements) and `later`."""
    if plan.input == "events":
        seen = ("SELECT n, w, u, id, type, s, t, p FROM ev WHERE ok UNION ALL "
                "SELECT n, w, u, id, type, s, t, p FROM fseen")
        content = ("struct_pack(k := {0}.type, s := {0}.s, t := {0}.t, d := "
                   + _OBJECT + ")")
        shown = "r.type, r.s, r.t, r.p"
    else:
        seen = "SELECT n, w, u, rid AS id, s, t, q, unit, eid, p FROM recs_all"
        content = ("struct_pack(s := {0}.s, t := {0}.t, q := ms_canonical({0}.q), "
                   "unit := {0}.unit, e := {0}.eid, d := " + _OBJECT + ")")
        shown = "NULL AS type, NULL AS s, NULL AS t, NULL AS p"
    return [
        f"CREATE OR REPLACE TEMP VIEW seen AS {seen}",
        "CREATE OR REPLACE TEMP TABLE hashes AS SELECT hash(w, u, id) AS h FROM seen "
        "GROUP BY h HAVING count(*) > 1",
        "CREATE OR REPLACE TEMP TABLE firsts AS SELECT w, u, id, min(n) AS first FROM seen "
        "WHERE hash(w, u, id) IN (SELECT h FROM hashes) GROUP BY w, u, id HAVING count(*) > 1",
        f"CREATE OR REPLACE TEMP TABLE later AS SELECT r.n, {content.format('r')} = "
        f"{content.format('f')} AS same, r.w, r.u, r.id, {shown} FROM seen r JOIN firsts i "
        "ON r.w = i.w AND r.u = i.u AND r.id = i.id AND r.n > i.first JOIN seen f "
        "ON f.n = i.first",
    ]
