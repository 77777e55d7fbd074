"""Benchmark: `meterspec run` beside DuckDB on the same seeded synthetic events.

Generates N EventPayload lines, times `meterspec run` (a real subprocess: interpreter start,
config/request load, metering, aggregation, writing readings to a file) for `sum` and for
`time-weighted-avg`, times DuckDB computing the same per-day sums with DECIMAL(38,6), checks that
the two sums agree to the last digit, and prints events/second. No timing is asserted.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/run.py

This script deliberately imports nothing from meterspec: it treats the CLI as a black box and
computes its expectations independently (DuckDB, plus a string canonicalisation of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

try:
    import duckdb
except ImportError:
    raise SystemExit("benchmarks need DuckDB: .venv/bin/pip install -e '.[bench]'") from None

HERE = Path(__file__).resolve().parent
START = datetime(2024, 1, 1, tzinfo=UTC)
WORKSPACES = ("acme-prod", "globex", "initech")
REGIONS = ("us-east", "us-west", "eu-west", "ap-south")
MODELS = ("small", "medium", "large")
DUCKDB_TYPE = "DECIMAL(38,6)"
MAX_SHOWN = 10

Key = tuple[str, str, str, str]  # workspaceID, universeID, subject, window start


@dataclass
class Timing:
    tool: str
    job: str
    events: int
    seconds: float
    cpu_seconds: float | None = None  # user + system
    peak_mb: float | None = None  # peak resident set size of the meterspec process


# ---------------------------------------------------------------------------------------- data


def _timestamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}Z"


def _quantity(rng: random.Random) -> str:
    """A decimal string with 0..6 fraction digits (trailing zeros kept as written, so the
    canonical form has to strip them), magnitudes from units to tens of thousands, and about
    1% negative (credits). At most 6 fraction digits, so DECIMAL(38,6) holds it exactly."""
    whole = rng.randrange(10 ** rng.randrange(1, 6))
    digits = rng.randrange(7)
    text = f"{whole}.{rng.randrange(10**digits):0{digits}d}" if digits else str(whole)
    return "-" + text if rng.random() < 0.01 else text


def _event_lines(events: int, subjects: int, days: int, seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    span = days * 86_400 * 1_000_000
    for index in range(events):
        number = rng.randrange(subjects)
        workspace = WORKSPACES[number % len(WORKSPACES)]
        universe = "production" if rng.random() < 0.9 else "staging"
        moment = START + timedelta(microseconds=rng.randrange(span))
        yield (
            f'{{"id":"evt_{index:09d}","workspaceID":"{workspace}","universeID":"{universe}",'
            f'"type":"llm.completion","subject":"customer:{number:06d}",'
            f'"time":"{_timestamp(moment)}","properties":{{"tokens":"{_quantity(rng)}",'
            f'"region":"{rng.choice(REGIONS)}","model":"{rng.choice(MODELS)}"}}}}\n'
        )


def generate(workdir: Path, events: int, subjects: int, days: int, seed: int) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "events.ndjson", "w", encoding="ascii", newline="\n") as out:
        batch: list[str] = []
        for line in _event_lines(events, subjects, days, seed):
            batch.append(line)
            if len(batch) == 10_000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))
    config = {"measurements": [{"unit": "tokens", "sourceProperty": "tokens"}]}
    tumbling = {"size": "day", "timeZone": "UTC", "start": _day(0), "end": _day(days)}
    documents = {
        "config.json": config,
        "request-sum.json": {"aggregation": "sum", "tumbling": tumbling},
        "request-twa.json": {"aggregation": "time-weighted-avg", "tumbling": tumbling},
    }
    for name, document in documents.items():
        (workdir / name).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _day(offset: int) -> str:
    return f"{START + timedelta(days=offset):%Y-%m-%dT%H:%M:%SZ}"


# ------------------------------------------------------------------------------------- timings


def _meterspec_command() -> list[str]:
    script = Path(sys.executable).with_name("meterspec")
    return [str(script)] if script.exists() else [sys.executable, "-m", "meterspec.cli"]


def _megabytes(maxrss: int) -> float:
    return maxrss / 1e6 if sys.platform == "darwin" else maxrss / 1e3  # bytes vs kilobytes


def time_meterspec(workdir: Path, request: str, output: str, events: int) -> Timing:
    """One `meterspec run` process, readings written to a file; fails unless it exits 0."""
    command = [*_meterspec_command(), "run", "--config", str(workdir / "config.json"),
               "--request", str(workdir / request), "--errors", str(workdir / "errors.ndjson"),
               str(workdir / "events.ndjson")]
    stderr = workdir / (output + ".stderr")
    cpu = peak = None
    with open(workdir / output, "wb") as out, open(stderr, "wb") as err:
        began = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err)
        if hasattr(os, "wait4"):  # the child's own CPU time and peak memory
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            cpu, peak = usage.ru_utime + usage.ru_stime, _megabytes(usage.ru_maxrss)
        else:
            process.wait()
        seconds = time.perf_counter() - began
    if process.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(command)} exited {process.returncode}:\n"
                         + stderr.read_text(errors="replace"))
    aggregation = json.loads((workdir / request).read_text(encoding="utf-8"))["aggregation"]
    return Timing("meterspec", f"run {aggregation}", events, seconds, cpu, peak)


DUCKDB_SUM = f"""
CREATE TABLE sums AS
SELECT workspaceID, universeID, subject,
       strftime(CAST(date_trunc('day', CAST(time AS TIMESTAMPTZ)) AS TIMESTAMP),
                '%Y-%m-%dT%H:%M:%SZ') AS window_start,
       CAST(sum(CAST(properties.tokens AS {DUCKDB_TYPE})) AS VARCHAR) AS quantity,
       count(*) AS record_count
FROM read_json(?, format = 'newline_delimited', columns = {{
    id: 'VARCHAR', workspaceID: 'VARCHAR', universeID: 'VARCHAR', type: 'VARCHAR',
    subject: 'VARCHAR', time: 'VARCHAR',
    properties: 'STRUCT(tokens VARCHAR, region VARCHAR, model VARCHAR)'}})
GROUP BY ALL
"""


def time_duckdb(workdir: Path, events: int,
                threads: int | None) -> tuple[Timing, dict[Key, tuple[str, int]]]:
    """Read the NDJSON, sum per (workspace, universe, subject, UTC day) exactly and write the
    result to a CSV file, all timed (in-process: no interpreter start); then fetch the result
    (untimed) for the comparison. threads=None keeps DuckDB's default (one per core)."""
    cpu_began = _cpu_seconds()
    began = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    con.execute(DUCKDB_SUM, [str(workdir / "events.ndjson")])
    csv = str(workdir / "duckdb-sum.csv").replace("'", "''")
    con.execute(f"COPY sums TO '{csv}' (HEADER)")
    seconds = time.perf_counter() - began
    cpu = _cpu_seconds() - cpu_began
    used: int = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    rows: list[tuple[str, str, str, str, str, int]] = con.execute(
        "SELECT workspaceID, universeID, subject, window_start, quantity, record_count "
        "FROM sums").fetchall()
    con.close()
    sums = {(w, u, s, start): (quantity, count) for w, u, s, start, quantity, count in rows}
    job = f"sum {DUCKDB_TYPE}, {used} thread{'' if used == 1 else 's'}"
    return Timing("duckdb", job, events, seconds, cpu), sums


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -------------------------------------------------------------------------------------- checks

_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def canonical(text: str) -> str:
    """MS-QTY-004 from DuckDB's DECIMAL text: plain notation, no trailing fraction zeros, no
    trailing '.', zero is "0" (never "-0")."""
    if _DECIMAL.fullmatch(text) is None:
        raise ValueError(f"unexpected DuckDB decimal text {text!r}")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("0", "-0") else text


def _readings(path: Path) -> Iterator[dict[str, object]]:
    with open(path, "rb") as lines:
        for line in lines:
            reading: dict[str, object] = json.loads(line)
            yield reading


def check_sums(path: Path, expected: dict[Key, tuple[str, int]], days: int) -> list[str]:
    """Every non-empty DuckDB group equals meterspec's reading exactly (quantity, recordCount);
    every other meterspec reading is an empty day of an active group: "0" with recordCount 0
    (MS-AGG-017); every active group has one reading per day."""
    problems: list[str] = []
    seen: set[Key] = set()
    per_group: dict[tuple[str, str, str], int] = {}
    empty = 0
    for reading in _readings(path):
        window = reading["window"]
        measurement = reading["measurement"]
        assert isinstance(window, dict) and isinstance(measurement, dict)
        key = (str(reading["workspaceID"]), str(reading["universeID"]),
               str(reading["subject"]), str(window["start"]))
        got = (measurement["quantity"], reading["recordCount"])
        per_group[key[:3]] = per_group.get(key[:3], 0) + 1
        if key in seen:
            problems.append(f"duplicate reading for {key}")
        seen.add(key)
        if reading["aggregation"] != "sum" or measurement["unit"] != "tokens":
            problems.append(f"unexpected aggregation/unit in reading for {key}: {reading}")
        if key in expected:
            quantity, count = expected[key]
            want = (canonical(quantity), count)
        else:
            empty += 1
            want = ("0", 0)
        if got != want:
            problems.append(f"{key}: meterspec (quantity, recordCount) = {got}, "
                            f"DuckDB says {want}")
    problems += [f"{key}: DuckDB has {expected[key]}, meterspec has no reading"
                 for key in sorted(set(expected) - seen)]
    problems += [f"{group}: {count} readings, expected one per day ({days})"
                 for group, count in sorted(per_group.items()) if count != days]
    if not problems:
        print(f"check: sum readings identical to DuckDB: {len(expected):,} non-empty "
              f"(quantity and recordCount), {empty:,} empty days of active groups are \"0\" "
              f"with recordCount 0, {len(per_group):,} groups x {days} days")
    return problems


def check_twa(path: Path, events: int, groups: int, days: int) -> list[str]:
    """Not compared with DuckDB: only shape checks (one reading per active group and day,
    record counts adding up to the number of events)."""
    readings = list(_readings(path))
    problems: list[str] = []
    if len(readings) != groups * days:
        problems.append(f"time-weighted-avg: {len(readings):,} readings, "
                        f"expected {groups:,} groups x {days} days")
    total = sum(int(str(r["recordCount"])) for r in readings)
    if total != events:
        problems.append(f"time-weighted-avg: recordCounts add up to {total:,}, not {events:,}")
    return problems


# ---------------------------------------------------------------------------------------- main


def _table(timings: list[Timing]) -> str:
    header = ("tool", "job", "events", "seconds", "events/second")
    rows = [header] + [(t.tool, t.job, f"{t.events:,}", f"{t.seconds:.2f}",
                        f"{t.events / t.seconds:,.0f}") for t in timings]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate")
    parser.add_argument("--subjects", type=int, default=10_000, help="distinct subjects")
    parser.add_argument("--days", type=int, default=30,
                        help="days from 2024-01-01 UTC, one tumbling window each")
    parser.add_argument("--seed", type=int, default=20240101, help="random.Random seed")
    parser.add_argument("--workdir", type=Path, default=HERE / "data",
                        help="where data and outputs go (default benchmarks/data, gitignored)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.subjects < 1 or args.days < 1:
        parser.error("--events, --subjects and --days must be positive")
    workdir: Path = args.workdir

    began = time.perf_counter()
    generate(workdir, args.events, args.subjects, args.days, args.seed)
    size = (workdir / "events.ndjson").stat().st_size
    print(f"generated {args.events:,} events ({size / 1e6:,.1f} MB) in "
          f"{time.perf_counter() - began:.1f} s: {workdir / 'events.ndjson'}", flush=True)

    timings = [time_meterspec(workdir, "request-sum.json", "meterspec-sum.ndjson", args.events)]
    print(f"timed meterspec sum: {timings[-1].seconds:.2f} s", flush=True)
    timings.append(
        time_meterspec(workdir, "request-twa.json", "meterspec-twa.ndjson", args.events))
    print(f"timed meterspec time-weighted-avg: {timings[-1].seconds:.2f} s", flush=True)
    expected: dict[Key, tuple[str, int]] = {}
    problems: list[str] = []
    for threads in (1, None):
        duck, sums = time_duckdb(workdir, args.events, threads)
        timings.append(duck)
        print(f"timed duckdb {duck.job}: {duck.seconds:.2f} s", flush=True)
        if expected and sums != expected:
            problems.append("DuckDB with 1 thread and with the default disagree")
        expected = sums

    problems += check_sums(workdir / "meterspec-sum.ndjson", expected, args.days)
    groups = len({key[:3] for key in expected})
    problems += check_twa(workdir / "meterspec-twa.ndjson", args.events, groups, args.days)
    print()
    print(_table(timings))
    print()
    for t in timings:
        if t.cpu_seconds is not None:
            peak = f", peak RSS {t.peak_mb:,.0f} MB" if t.peak_mb is not None else ""
            print(f"{t.tool} {t.job}: CPU (user+sys) {t.cpu_seconds:.2f} s{peak}")
    if problems:
        print(f"\nFAIL: {len(problems):,} differences between meterspec and DuckDB "
              f"(first {min(len(problems), MAX_SHOWN)}):", file=sys.stderr)
        for problem in problems[:MAX_SHOWN]:
            print("  " + problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
