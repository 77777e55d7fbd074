"""DuckDB's side of the run, dense and twa-scaling benchmark jobs, as a child process.

benchmarks/run.py starts it exactly as it starts `meterspec run` and measures both with the same
wait4: interpreter start-up and imports count on both sides. It writes one CSV row per reading
(workspaceID, universeID, subject, window_start, quantity, record_count) and prints one JSON
line: the threads DuckDB used and the wall and CPU seconds from connecting to the written
result (no interpreter start-up, no import: the "in the child" line of the report).

    python benchmarks/duckdb_events.py sum|time-weighted-avg EVENTS OUT.csv THREADS START_US DAYS

sum: the per-day sums of `properties.tokens` in DECIMAL(38,6) (exact: the data has at most 6
fraction digits) and counts, for the non-empty days only. time-weighted-avg (MS-AGG-011..015,
read from specs/core.md): every active group and day, the level's integral in DECIMAL (records
at one instant collapse to the greatest, each level holds until the next instant, the last to
the end of the last day, 0 before the first record), rounded half to even to 6 digits in
integers. Quantities are written in canonical form only for time-weighted-avg; run.py
canonicalises the sums itself.
"""

from __future__ import annotations

import csv
import json
import resource
import sys
import time

import duckdb

DAY_US = 86_400_000_000
COLUMNS = """columns = {
    id: 'VARCHAR', workspaceID: 'VARCHAR', universeID: 'VARCHAR', type: 'VARCHAR',
    subject: 'VARCHAR', time: 'VARCHAR',
    properties: 'STRUCT(tokens VARCHAR, region VARCHAR, model VARCHAR)'}"""
HEADER = ("workspaceID", "universeID", "subject", "window_start", "quantity", "record_count")

SUM = f"""
CREATE TABLE sums AS
SELECT workspaceID, universeID, subject,
       strftime(CAST(date_trunc('day', CAST(time AS TIMESTAMPTZ)) AS TIMESTAMP),
                '%Y-%m-%dT%H:%M:%SZ') AS window_start,
       CAST(sum(CAST(properties.tokens AS DECIMAL(38,6))) AS VARCHAR) AS quantity,
       count(*) AS record_count
FROM read_json(?, format = 'newline_delimited', {COLUMNS})
GROUP BY ALL
"""
RECORDS = f"""
CREATE TABLE recs AS
SELECT workspaceID AS w, universeID AS u, subject AS s,
       epoch_us(CAST(time AS TIMESTAMPTZ)) AS t,
       CAST(properties.tokens AS DECIMAL(38,6)) AS q
FROM read_json(?, format = 'newline_delimited', {COLUMNS})
"""
# $1 first window start (µs), $2 day length (µs), $3 days. Each step [t, nt) is spread over the
# days it overlaps; the last step of a group runs to the end of the last day (MS-AGG-014).
INTEGRALS = """
WITH steps AS (
    SELECT w, u, s, t, q,
           coalesce(lead(t) OVER (PARTITION BY w, u, s ORDER BY t), $1 + $3 * $2) AS nt
    FROM (SELECT w, u, s, t, max(q) AS q FROM recs GROUP BY ALL)),
pieces AS (
    SELECT w, u, s, t, q, nt, unnest(range((t - $1) // $2, (nt - 1 - $1) // $2 + 1)) AS i
    FROM steps),
integrals AS (
    SELECT w, u, s, i,
           sum(q * (least(nt, $1 + (i + 1) * $2) - greatest(t, $1 + i * $2))) AS integral
    FROM pieces GROUP BY ALL),
counts AS (SELECT w, u, s, (t - $1) // $2 AS i, count(*) AS n FROM recs GROUP BY ALL)
SELECT g.w, g.u, g.s, strftime(make_timestamp($1 + d.i * $2), '%Y-%m-%dT%H:%M:%SZ'),
       CAST(coalesce(a.integral, 0) AS VARCHAR), coalesce(c.n, 0)
FROM (SELECT DISTINCT w, u, s FROM recs) g
CROSS JOIN (SELECT range AS i FROM range($3)) d
LEFT JOIN integrals a ON a.w = g.w AND a.u = g.u AND a.s = g.s AND a.i = d.i
LEFT JOIN counts c ON c.w = g.w AND c.u = g.u AND c.s = g.s AND c.i = d.i
"""


def average(integral: str, length: int) -> str:
    """A DECIMAL(38,6) integral (level x µs) divided by `length` µs, rounded half to even to 6
    digits (MS-AGG-015), in canonical form (MS-QTY-004)."""
    whole, _, fraction = integral.partition(".")
    quotient, rest = divmod(int(whole + fraction.ljust(6, "0")), length)  # floor: rest >= 0
    if 2 * rest > length or (2 * rest == length and quotient % 2 == 1):
        quotient += 1
    digits = str(abs(quotient)).rjust(7, "0")
    text = (digits[:-6] + "." + digits[-6:]).rstrip("0").rstrip(".")
    return "0" if quotient == 0 else ("-" if quotient < 0 else "") + text


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    aggregation, events, output, threads, start, days = argv
    cpu_began, began = _cpu(), time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET threads = {int(threads)}")
    if aggregation == "sum":
        con.execute(SUM, [events])
        con.execute(f"COPY sums TO '{output.replace(chr(39), chr(39) * 2)}' (HEADER)")
    elif aggregation == "time-weighted-avg":
        con.execute(RECORDS, [events])
        rows = con.execute(INTEGRALS, [int(start), DAY_US, int(days)]).fetchall()
        with open(output, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(HEADER)
            writer.writerows((w, u, s, window, average(integral, DAY_US), count)
                             for w, u, s, window, integral, count in rows)
    else:
        raise SystemExit(f"unknown aggregation {aggregation!r}")
    used = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    con.close()
    print(json.dumps({"threads": used, "seconds": time.perf_counter() - began,
                      "cpu": _cpu() - cpu_began}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
