"""Benchmark: `meterspec run` beside DuckDB on the same seeded synthetic events.

Generates N EventPayload lines, times `meterspec run` (a real subprocess: interpreter start,
config/request load, metering, aggregation, writing readings to a file) for `sum` and for
`time-weighted-avg`, times DuckDB computing the same per-day sums with DECIMAL(38,6), checks that
the two sums agree to the last digit, and prints events/second. No timing is asserted.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/run.py

`--job invoice` instead generates seeded MeterRecords and an InvoiceRequest, times
`meterspec invoice`, and times DuckDB computing the same invoices (billing periods computed
here, DECIMAL sums and seat integrals in SQL, tiers and half-even rounding in exact Python);
every line's quantity and amounts must agree to the last digit.

This script deliberately imports nothing from meterspec: it treats the CLI as a black box and
computes its expectations independently (DuckDB, plus a string canonicalisation of its own).
"""

from __future__ import annotations

import argparse
import calendar
import functools
import itertools
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import (
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    localcontext,
)
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
    seconds, cpu, peak = _timed_child(command, workdir / output)
    aggregation = json.loads((workdir / request).read_text(encoding="utf-8"))["aggregation"]
    return Timing("meterspec", f"run {aggregation}", events, seconds, cpu, peak)


def _timed_child(command: list[str], output: Path) -> tuple[float, float | None, float | None]:
    """Run `command` with stdout to `output` (stderr beside it); wall seconds, the child's own
    CPU seconds and peak RSS in MB (None where os.wait4 is missing). Fails unless it exits 0."""
    stderr = output.with_name(output.name + ".stderr")
    cpu = peak = None
    with open(output, "wb") as out, open(stderr, "wb") as err:
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
    return seconds, cpu, peak


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


# ----------------------------------------------------------------------------- invoice job
#
# `--job invoice`: seeded MeterRecords billed by `meterspec invoice`, and the same invoices from
# DuckDB sums: billing periods computed here from MS-BIL-002/003 with zoneinfo, DECIMAL sums
# and the time-weighted integral in SQL, tiers and half-even rounding in exact Python.

INVOICE_WORKSPACE, INVOICE_UNIVERSE = "acme-prod", "production"
INVOICE_AT = "2024-03-20T00:00:00Z"
RECORDS_FROM = datetime(2023, 10, 1, tzinfo=UTC)
RECORDS_TO = datetime(2024, 5, 1, tzinfo=UTC)
SUM_UNIT, TWA_UNIT, IGNORED_UNIT = "api_call", "seats", "storage_gb"
TWA_SCALE = 6  # MS-AGG-002 default
# Havana skips midnight on 2024-03-10 and shows it twice on 2023-11-05; Sydney and Chatham
# (+12:45/+13:45) change in the southern autumn; New York and London in between.
ZONES = ("UTC", "America/New_York", "Europe/London", "America/Havana", "Asia/Kolkata",
         "Australia/Sydney", "Pacific/Chatham")
MINOR_UNITS = {"USD": 2}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

PLANS: list[dict[str, Any]] = [
    {"id": "team", "version": 1, "currency": "USD", "effectiveFrom": "2022-01-01T00:00:00Z",
     "charges": [
         {"id": "platform", "model": "flat", "amount": "49"},
         {"id": "seats", "model": "per-unit", "unit": TWA_UNIT, "unitPrice": "10",
          "includedQuantity": "1"},
         {"id": "api", "model": "graduated", "unit": SUM_UNIT, "includedQuantity": "1000.5",
          "minimumAmount": "1.005",
          "tiers": [{"upTo": "10000", "unitPrice": "0.0025"},
                    {"upTo": "250000", "unitPrice": "0.0012", "flatFee": "7.5"},
                    {"upTo": None, "unitPrice": "0.00085", "flatFee": "2.25"}]}]},
    # A new version from mid-January: periods starting before it keep version 1 (MS-PRC-003).
    {"id": "team", "version": 2, "currency": "USD", "effectiveFrom": "2024-01-15T00:00:00Z",
     "charges": [
         {"id": "platform", "model": "flat", "amount": "59"},
         {"id": "seats", "model": "per-unit", "unit": TWA_UNIT, "unitPrice": "9.5"},
         {"id": "api", "model": "graduated", "unit": SUM_UNIT, "includedQuantity": "2500",
          "tiers": [{"upTo": "20000", "unitPrice": "0.002", "flatFee": "0.125"},
                    {"upTo": None, "unitPrice": "0.0009", "flatFee": "3.125"}]}]},
    {"id": "scale", "version": 1, "currency": "USD", "effectiveFrom": "2022-01-01T00:00:00Z",
     "charges": [
         {"id": "platform", "model": "flat", "amount": "199.99"},
         {"id": "seats", "model": "per-unit", "unit": TWA_UNIT, "unitPrice": "8.75"},
         {"id": "api-volume", "model": "volume", "unit": SUM_UNIT, "maximumAmount": "2000.125",
          "tiers": [{"upTo": "50000", "unitPrice": "0.0021"},
                    {"upTo": "500000.5", "unitPrice": "0.0018", "flatFee": "20"},
                    {"upTo": None, "unitPrice": "0.0011", "flatFee": "-15"}]},
         {"id": "api-packages", "model": "package", "unit": SUM_UNIT, "packageSize": "2500.5",
          "packagePrice": "1.125", "includedQuantity": "10000"}]},
]


def _canonical_time(moment: datetime) -> str:
    """MS-TIME-004: fraction only when non-zero, trailing zeros stripped."""
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return f"{moment:%Y-%m-%dT%H:%M:%S}" + (f".{fraction}" if fraction else "") + "Z"


def _seats(rng: random.Random) -> str:
    """A seat count: mostly whole, sometimes fractional or 0."""
    roll = rng.random()
    if roll < 0.05:
        return "0"
    if roll < 0.15:
        return f"{rng.randrange(1, 40)}.{rng.choice(('5', '25', '75', '10'))}"
    return str(rng.randrange(1, 60))


def _record_lines(records: int, subjects: int, seed: int) -> Iterator[str]:
    """MeterRecords over 2023-10-01..2024-05-01: 85% api calls (fractional, ~1% credits; one
    subject in 50 mostly credits, one in 50 nearly dormant), 5% seat levels (1 in 10 at the
    same instant as the subject's previous one), 10% an unpriced unit; 10% of all records in
    another universe or workspace. Only the priced units of the request's tenant are billed."""
    rng = random.Random(seed)
    span = (RECORDS_TO - RECORDS_FROM) // timedelta(microseconds=1)
    last_seat: dict[int, datetime] = {}
    for index in range(records):
        number = rng.randrange(subjects)
        if number % 50 == 49 and rng.random() < 0.95:  # dormant: periods without usage
            number = rng.randrange(subjects)
        roll = rng.random()
        workspace, universe = ((INVOICE_WORKSPACE, INVOICE_UNIVERSE) if roll < 0.9 else
                               (INVOICE_WORKSPACE, "staging") if roll < 0.95 else
                               ("globex", INVOICE_UNIVERSE))
        moment = RECORDS_FROM + timedelta(microseconds=rng.randrange(span))
        kind = rng.random()
        if kind < 0.05:
            unit = TWA_UNIT
            if number in last_seat and rng.random() < 0.1:
                moment = last_seat[number]  # MS-AGG-014: same instant, greatest level wins
            last_seat[number] = moment
            quantity = _seats(rng)
        else:
            unit = IGNORED_UNIT if kind < 0.15 else SUM_UNIT
            quantity = _quantity(rng)
            if number % 50 == 48 and not quantity.startswith("-") and rng.random() < 0.6:
                quantity = "-" + quantity  # a subject whose credits exceed its usage
        yield (
            f'{{"id":"rec_{index:012d}","workspaceID":"{workspace}","universeID":"{universe}",'
            f'"subject":"customer:{number:06d}","recordedAt":"{_canonical_time(moment)}",'
            f'"measurement":{{"quantity":"{quantity}","unit":"{unit}"}},'
            f'"dimensions":{{"region":"{rng.choice(REGIONS)}"}},'
            f'"sourceEventID":"evt_{index:012d}"}}\n'
        )


def _subscription(number: int) -> dict[str, Any] | None:
    """Subject `number`'s subscription, None for the 1 in 20 that is not subscribed. Every
    anchor day 1..31 meets every zone; one subject in 16 is billed quarterly."""
    if number % 20 == 19:
        return None
    day = 1 + number % 31
    month = 1 + number * 7 % 12
    if day > calendar.monthrange(2023, month)[1]:
        month = 12
    cycle: dict[str, Any] = {"anchorDate": f"2023-{month:02d}-{day:02d}",
                             "timeZone": ZONES[number // 31 % len(ZONES)]}
    if number % 16 == 5:
        cycle["intervalMonths"] = 3
    return {"subject": f"customer:{number:06d}", "planID": "scale" if number % 4 == 3
            else "team", "cycle": cycle}


def generate_invoice_job(workdir: Path, records: int, subjects: int, periods: int,
                         seed: int) -> dict[str, Any]:
    """Write records.ndjson and invoice-request.json; return the request."""
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "records.ndjson", "w", encoding="ascii", newline="\n") as out:
        batch: list[str] = []
        for line in _record_lines(records, subjects, seed):
            batch.append(line)
            if len(batch) == 10_000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))
    subscriptions = [s for s in map(_subscription, range(subjects)) if s is not None]
    request: dict[str, Any] = {
        "workspaceID": INVOICE_WORKSPACE, "universeID": INVOICE_UNIVERSE, "at": INVOICE_AT,
        "periods": periods, "plans": PLANS,
        "usage": {SUM_UNIT: {"aggregation": "sum"}, TWA_UNIT: {"aggregation": "time-weighted-avg"}},
        "subscriptions": subscriptions}
    (workdir / "invoice-request.json").write_text(json.dumps(request, indent=1) + "\n",
                                                  encoding="utf-8")
    return request


# Billing periods, from the words of MS-BIL-002/003 (not from meterspec's code).


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def _from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


@functools.cache
def _local_midnight(zone_name: str, day: date) -> int:
    """MS-BIL-003: the first instant the zone's clock shows 00:00 on `day`; where the clock
    skips that midnight, the instant it jumps (found by bisection between the two offsets)."""
    zone = ZoneInfo(zone_name)
    wall = datetime(day.year, day.month, day.day)
    shown = [moment for moment in (wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
                                   for fold in (0, 1))
             if moment.astimezone(zone).replace(tzinfo=None) == wall]
    if shown:
        return _micros(min(shown))  # a repeated midnight: its first occurrence
    early = _micros(wall.replace(tzinfo=zone, fold=1).astimezone(UTC))  # offset after the jump
    late = _micros(wall.replace(tzinfo=zone, fold=0).astimezone(UTC))   # offset before it
    after = _from_micros(late).astimezone(zone).utcoffset()
    while late - early > 1:  # invariant: the offset at `late` is the new one
        middle = (early + late) // 2
        if _from_micros(middle).astimezone(zone).utcoffset() == after:
            late = middle
        else:
            early = middle
    return late


def _period_start(cycle: dict[str, Any], n: int) -> int:
    """MS-BIL-002: period n starts intervalMonths x n months after the anchor's month, on the
    anchor's day or the month's last day, whichever is earlier."""
    first = date.fromisoformat(cycle["anchorDate"])
    year, month = divmod(first.year * 12 + first.month - 1 + n * cycle.get("intervalMonths", 1),
                         12)
    day = min(first.day, calendar.monthrange(year, month + 1)[1])
    return _local_midnight(cycle.get("timeZone", "UTC"), date(year, month + 1, day))


def billed_periods(cycle: dict[str, Any], at: int, count: int) -> list[tuple[int, int]]:
    """MS-BIL-004: the `count` periods ending with the one holding `at`, oldest first."""
    first = date.fromisoformat(cycle["anchorDate"])
    moment = _from_micros(at)
    n = (moment.year * 12 + moment.month - first.year * 12 - first.month) // cycle.get(
        "intervalMonths", 1)
    while _period_start(cycle, n) > at:
        n -= 1
    while _period_start(cycle, n + 1) <= at:
        n += 1
    return [(_period_start(cycle, k), _period_start(cycle, k + 1))
            for k in range(n - count + 1, n + 1)]


def _plan_for(plans: list[dict[str, Any]], plan_id: str, start: int) -> dict[str, Any]:
    """MS-PRC-003: the version effective at the period start; latest effectiveFrom, then the
    highest version."""
    def instant(text: str) -> int:
        return _micros(datetime.fromisoformat(text.replace("Z", "+00:00")))
    effective = [p for p in plans if p["id"] == plan_id and instant(p["effectiveFrom"]) <= start
                 and ("effectiveTo" not in p or start < instant(p["effectiveTo"]))]
    if not effective:
        raise SystemExit(f"benchmark bug: no version of {plan_id} at {start}")
    return max(effective, key=lambda p: (instant(p["effectiveFrom"]), p["version"]))


# Rating, from the words of MS-PRC and MS-MNY, in exact decimal arithmetic.

EXACT = Context(prec=400, traps=[Inexact, Rounded, InvalidOperation, DivisionByZero, Overflow])


def _text(value: Decimal) -> str:
    """MS-QTY-004 / MS-MNY-006 canonical form."""
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("0", "-0") else text


def _half_even(numerator: int, denominator: int, digits: int) -> Decimal:
    """numerator / denominator (> 0) rounded to `digits` fraction digits, ties to the even
    neighbour (MS-MNY-005, MS-AGG-015), in integers."""
    whole, rest = divmod(numerator * 10**digits, denominator)
    if 2 * rest > denominator or (2 * rest == denominator and whole % 2 == 1):
        whole += 1
    with localcontext(EXACT):
        return Decimal(whole).scaleb(-digits)


@dataclass(frozen=True)
class ExpectedLine:
    charge: str
    quantity: str | None  # None for a flat charge
    included: str | None
    billable: str | None
    packages: str | None  # MS-PRC-012: a canonical integer string
    subtotal: str
    precise: str
    rounded: str
    record_count: int | None


def _rate(charge: dict[str, Any], quantity: Decimal, currency: str,
          record_count: int | None) -> ExpectedLine:
    with localcontext(EXACT):
        if charge["model"] == "flat":  # MS-PRC-013
            amount = Decimal(charge["amount"])
            return ExpectedLine(charge["id"], None, None, None, None, _text(amount),
                                _text(amount), _text(_half_even(*amount.as_integer_ratio(),
                                                                MINOR_UNITS[currency])), None)
        allowance = Decimal(charge.get("includedQuantity", "0"))
        included = min(max(quantity, Decimal(0)), allowance)  # MS-PRC-005
        billable = quantity - included
        packages = None
        if charge["model"] == "package":  # MS-PRC-012
            size = Decimal(charge["packageSize"])
            packages = 0
            if billable > 0:
                whole = billable // size
                packages = int(whole) + (1 if billable - whole * size else 0)
            subtotal = packages * Decimal(charge["packagePrice"])
        else:
            tiers = charge.get("tiers") or [{"upTo": None, "unitPrice": charge["unitPrice"]}]
            prices = [Decimal(t["unitPrice"]) for t in tiers]
            fees = [Decimal(t.get("flatFee", "0")) for t in tiers]
            bounds = [None if t["upTo"] is None else Decimal(t["upTo"]) for t in tiers]
            subtotal = Decimal(0)
            if billable < 0:  # MS-PRC-011: the first tier's price, no fee
                subtotal = billable * prices[0]
            elif billable > 0 and charge["model"] == "volume":  # MS-PRC-010
                index = next(i for i, b in enumerate(bounds) if b is None or billable <= b)
                subtotal = billable * prices[index] + fees[index]
            elif billable > 0:  # MS-PRC-008/009: graduated, per-unit
                lower = Decimal(0)
                for bound, price, fee in zip(bounds, prices, fees, strict=True):
                    top = billable if bound is None else min(billable, bound)
                    units = max(top - lower, Decimal(0))
                    if units > 0:
                        subtotal += units * price + fee
                    if bound is None or billable <= bound:
                        break
                    lower = bound
        amount = subtotal  # MS-PRC-014
        if "minimumAmount" in charge:
            amount = max(amount, Decimal(charge["minimumAmount"]))
        if "maximumAmount" in charge:
            amount = min(amount, Decimal(charge["maximumAmount"]))
        rounded = _half_even(*amount.as_integer_ratio(), MINOR_UNITS[currency])
        return ExpectedLine(charge["id"], _text(quantity), _text(included), _text(billable),
                            None if packages is None else str(packages), _text(subtotal),
                            _text(amount), _text(rounded), record_count)


@dataclass(frozen=True)
class ExpectedInvoice:
    subject: str
    start: str
    end: str
    plan: tuple[str, int]
    currency: str
    lines: tuple[ExpectedLine, ...]
    precise: str
    rounded: str


# (subject, period index) -> api-call sum (DECIMAL text, None if no record), api-call count,
# seat count, seat integral over the period (DECIMAL level x microseconds, None if 0)
Usage = tuple[str | None, int, int, str | None]

DUCKDB_INVOICE_RECORDS = f"""
CREATE TABLE records AS
SELECT subject, measurement.unit AS unit,
       epoch_us(CAST(recordedAt AS TIMESTAMPTZ)) AS t,
       CAST(measurement.quantity AS {DUCKDB_TYPE}) AS q
FROM read_json(?, format = 'newline_delimited', columns = {{
    id: 'VARCHAR', workspaceID: 'VARCHAR', universeID: 'VARCHAR', subject: 'VARCHAR',
    recordedAt: 'VARCHAR', measurement: 'STRUCT(quantity VARCHAR, unit VARCHAR)'}})
WHERE workspaceID = ? AND universeID = ? AND measurement.unit IN ('{SUM_UNIT}', '{TWA_UNIT}')
"""
DUCKDB_INVOICE_PERIODS = """
CREATE TABLE periods AS SELECT * FROM read_csv(?, header = true, columns = {
    'subject': 'VARCHAR', 'idx': 'INTEGER', 'start_us': 'BIGINT', 'end_us': 'BIGINT'})
"""
# Per subscription and period: the api-call sum and count, and the seat count (MS-INV-002).
DUCKDB_INVOICE_SUMS = f"""
SELECT p.subject, p.idx,
       CAST(sum(r.q) FILTER (WHERE r.unit = '{SUM_UNIT}') AS VARCHAR),
       count(r.q) FILTER (WHERE r.unit = '{SUM_UNIT}'),
       count(r.q) FILTER (WHERE r.unit = '{TWA_UNIT}')
FROM periods p LEFT JOIN records r
  ON r.subject = p.subject AND r.t >= p.start_us AND r.t < p.end_us
GROUP BY ALL
"""
# The integral of the seat level over each period (MS-AGG-011..014): records at one instant
# collapse to the greatest; each level holds until the next instant, the last to the period
# end; the level at the start is carried in from the latest earlier record, else 0.
DUCKDB_INVOICE_TWA = f"""
WITH levels AS (
    SELECT subject, t, max(q) AS q FROM records WHERE unit = '{TWA_UNIT}' GROUP BY ALL),
steps AS (
    SELECT subject, t, q, lead(t) OVER (PARTITION BY subject ORDER BY t) AS next_t
    FROM levels)
SELECT p.subject, p.idx,
       CAST(sum(s.q * (least(coalesce(s.next_t, p.end_us), p.end_us)
                       - greatest(s.t, p.start_us))) AS VARCHAR)
FROM periods p JOIN steps s
  ON s.subject = p.subject AND s.t < p.end_us AND coalesce(s.next_t, p.end_us) > p.start_us
GROUP BY ALL
"""


def time_duckdb_invoice(workdir: Path, request: dict[str, Any], records: int,
                        threads: int | None) -> tuple[Timing, list[ExpectedInvoice], str]:
    """All timed: billing periods in Python, the sums and the seat integrals in DuckDB (one
    fresh connection reading the NDJSON), rating in exact Python, the invoices written to
    duckdb-invoices.ndjson. Returns the timing, the invoices and a breakdown line."""
    _local_midnight.cache_clear()  # each run computes its periods from scratch
    cpu_began = _cpu_seconds()
    began = time.perf_counter()
    at = _micros(datetime.fromisoformat(request["at"].replace("Z", "+00:00")))
    spans = {s["subject"]: billed_periods(s["cycle"], at, request["periods"])
             for s in request["subscriptions"]}
    with open(workdir / "periods.csv", "w", encoding="ascii", newline="\n") as out:
        out.write("subject,idx,start_us,end_us\n")
        out.writelines(f"{subject},{index},{start},{end}\n"
                       for subject, periods in spans.items()
                       for index, (start, end) in enumerate(periods))
    periods_done = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    con.execute(DUCKDB_INVOICE_RECORDS, [str(workdir / "records.ndjson"), request["workspaceID"],
                                         request["universeID"]])
    con.execute(DUCKDB_INVOICE_PERIODS, [str(workdir / "periods.csv")])
    usage: dict[tuple[str, int], Usage] = {
        (subject, index): (total, calls, seats, None)
        for subject, index, total, calls, seats in con.execute(DUCKDB_INVOICE_SUMS).fetchall()}
    for subject, index, integral in con.execute(DUCKDB_INVOICE_TWA).fetchall():
        total, calls, seats, _ = usage[subject, index]
        usage[subject, index] = (total, calls, seats, integral)
    used: int = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    con.close()
    sql_done = time.perf_counter()
    invoices = _rate_invoices(request, spans, usage)
    with open(workdir / "duckdb-invoices.ndjson", "w", encoding="utf-8") as out:
        out.writelines(json.dumps({**vars(invoice), "lines": [vars(x) for x in invoice.lines]})
                       + "\n" for invoice in invoices)
    seconds = time.perf_counter() - began
    cpu = _cpu_seconds() - cpu_began
    job = f"invoice {DUCKDB_TYPE}, {used} thread{'' if used == 1 else 's'}"
    breakdown = (f"duckdb {job}: periods (Python) {periods_done - began:.2f} s, SQL "
                 f"{sql_done - periods_done:.2f} s, rating and writing (Python) "
                 f"{seconds - (sql_done - began):.2f} s")
    return Timing("duckdb", job, records, seconds, cpu), invoices, breakdown


def _rate_invoices(request: dict[str, Any], spans: dict[str, list[tuple[int, int]]],
                   usage: dict[tuple[str, int], Usage]) -> list[ExpectedInvoice]:
    """Subscriptions in request order, periods oldest first (MS-INV-004)."""
    invoices = []
    versions: dict[tuple[str, int], dict[str, Any]] = {}
    for subscription in request["subscriptions"]:
        subject = subscription["subject"]
        for index, (start, end) in enumerate(spans[subject]):
            key = (subscription["planID"], start)
            if key not in versions:
                versions[key] = _plan_for(request["plans"], *key)
            plan = versions[key]
            total, calls, seats, integral = usage[subject, index]
            numerator, denominator = Decimal(integral or "0").as_integer_ratio()
            average = _half_even(numerator, denominator * (end - start), TWA_SCALE)
            quantities: dict[str, tuple[Decimal, int | None]] = {
                SUM_UNIT: (Decimal(total or "0"), calls), TWA_UNIT: (average, seats)}
            rated = []
            for charge in plan["charges"]:
                quantity, count = quantities.get(charge.get("unit", ""), (Decimal(0), None))
                rated.append(_rate(charge, quantity, plan["currency"], count))
            lines = tuple(rated)
            with localcontext(EXACT):  # MS-MNY-007: the lines' exact sums, never rounded again
                precise = sum((Decimal(line.precise) for line in lines), Decimal(0))
                rounded = sum((Decimal(line.rounded) for line in lines), Decimal(0))
            invoices.append(ExpectedInvoice(
                subject, _canonical_time(_from_micros(start)),
                _canonical_time(_from_micros(end)), (plan["id"], plan["version"]),
                plan["currency"], lines, _text(precise), _text(rounded)))
    return invoices


def time_meterspec_invoice(workdir: Path, records: int) -> Timing:
    command = [*_meterspec_command(), "invoice", "--request",
               str(workdir / "invoice-request.json"), "--errors",
               str(workdir / "invoice-errors.ndjson"), str(workdir / "records.ndjson")]
    seconds, cpu, peak = _timed_child(command, workdir / "meterspec-invoices.ndjson")
    return Timing("meterspec", "invoice (sum + time-weighted-avg)", records, seconds, cpu, peak)


def _actual_line(line: dict[str, Any]) -> ExpectedLine:
    rated, usage = line["rated"], line.get("usage")
    return ExpectedLine(rated["chargeID"], rated.get("quantity"), rated.get("includedQuantity"),
                        rated.get("billableQuantity"), rated.get("packages"), rated["subtotal"],
                        rated["amount"]["precise"], rated["amount"]["rounded"],
                        None if usage is None else usage["recordCount"])


def check_invoices(path: Path, expected: list[ExpectedInvoice],
                   request: dict[str, Any]) -> list[str]:
    """Every invoice, in order: subject, period, plan version, currency, and per line the
    quantity, included and billable quantity, packages, subtotal, precise and rounded amount
    and recordCount; the invoice's subtotal and total."""
    problems: list[str] = []
    units = {c["id"]: c.get("unit") for p in request["plans"] for c in p["charges"]}
    counted = {SUM_UNIT: 0, TWA_UNIT: 0, None: 0}
    ties = negative = zero = 0
    count = 0
    for count, (line_text, want) in enumerate(
            itertools.zip_longest(_readings(path), expected), start=1):
        if line_text is None or want is None:
            problems.append(f"invoice {count}: meterspec has {'no' if line_text is None else 'an'}"
                            f" invoice, the benchmark {'no' if want is None else 'one'}")
            continue
        invoice: dict[str, Any] = dict(line_text)
        where = f"{want.subject} {want.start}..{want.end}"
        got_head = (invoice["subject"], invoice["period"]["start"], invoice["period"]["end"],
                    (invoice["plan"]["id"], invoice["plan"]["version"]), invoice["currency"])
        want_head = (want.subject, want.start, want.end, want.plan, want.currency)
        if got_head != want_head:
            problems.append(f"invoice {count}: meterspec {got_head}, expected {want_head}")
            continue
        got_lines = tuple(_actual_line(line) for line in invoice["lines"])
        if len(got_lines) != len(want.lines):
            problems.append(f"{where}: {len(got_lines)} lines, expected {len(want.lines)}")
        for got, line in zip(got_lines, want.lines, strict=False):
            counted[units[line.charge]] += 1
            precise = Fraction(Decimal(line.precise)) * 10 ** MINOR_UNITS[want.currency]
            ties += precise.denominator == 2
            if units[line.charge] == SUM_UNIT and line.quantity is not None:
                negative += line.quantity.startswith("-")
                zero += line.quantity == "0"
            if got != line:
                problems.append(f"{where} line {line.charge}: meterspec {got}, expected {line}")
        for name in ("subtotal", "total"):
            got_total = (invoice[name]["precise"], invoice[name]["rounded"])
            if got_total != (want.precise, want.rounded):
                problems.append(f"{where} {name}: meterspec {got_total}, "
                                f"expected {(want.precise, want.rounded)}")
    if not problems:
        print(f"check: {count:,} invoices identical to the DuckDB-based ones (periods, plan "
              f"versions, totals); lines compared to the last digit: {counted[SUM_UNIT]:,} "
              f"sum-based ({SUM_UNIT}), {counted[TWA_UNIT]:,} time-weighted ({TWA_UNIT}), "
              f"{counted[None]:,} flat; {ties:,} of them rounded a tie (half-even); "
              f"{negative:,} sum-based lines had a negative quantity, {zero:,} none")
    return problems


def invoice_job(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir
    began = time.perf_counter()
    request = generate_invoice_job(workdir, args.events, args.subjects, args.periods, args.seed)
    size = (workdir / "records.ndjson").stat().st_size
    print(f"generated {args.events:,} records ({size / 1e6:,.1f} MB) and "
          f"{len(request['subscriptions']):,} subscriptions x {args.periods} periods in "
          f"{time.perf_counter() - began:.1f} s: {workdir / 'records.ndjson'}", flush=True)
    timings = [time_meterspec_invoice(workdir, args.events)]
    print(f"timed meterspec invoice: {timings[-1].seconds:.2f} s", flush=True)
    expected: list[ExpectedInvoice] = []
    problems: list[str] = []
    breakdowns = []
    for threads in (1, None):
        duck, invoices, breakdown = time_duckdb_invoice(workdir, request, args.events, threads)
        timings.append(duck)
        breakdowns.append(breakdown)
        print(f"timed duckdb {duck.job}: {duck.seconds:.2f} s", flush=True)
        if expected and invoices != expected:
            problems.append("DuckDB with 1 thread and with the default disagree")
        expected = invoices
    problems += check_invoices(workdir / "meterspec-invoices.ndjson", expected, request)
    return _report(timings, problems, breakdowns)


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
    parser.add_argument("--job", choices=("run", "invoice"), default="run",
                        help="run: `meterspec run` on events (default); invoice: `meterspec "
                        "invoice` on --events MeterRecords")
    parser.add_argument("--periods", type=int, default=5,
                        help="invoice job: billing periods per subscription, ending with the "
                        f"one holding {INVOICE_AT}")
    args = parser.parse_args(argv)
    if args.events < 1 or args.subjects < 1 or args.days < 1:
        parser.error("--events, --subjects and --days must be positive")
    if not 1 <= args.periods <= 120:
        parser.error("--periods must be 1..120")
    if args.job == "invoice":
        return invoice_job(args)
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
    return _report(timings, problems)


def _report(timings: list[Timing], problems: list[str], notes: Iterable[str] = ()) -> int:
    """The table, CPU and memory lines, any notes; the differences (exit 1) if any."""
    print()
    print(_table(timings))
    print()
    for t in timings:
        if t.cpu_seconds is not None:
            peak = f", peak RSS {t.peak_mb:,.0f} MB" if t.peak_mb is not None else ""
            print(f"{t.tool} {t.job}: CPU (user+sys) {t.cpu_seconds:.2f} s{peak}")
    for note in notes:
        print(note)
    if problems:
        print(f"\nFAIL: {len(problems):,} differences between meterspec and DuckDB "
              f"(first {min(len(problems), MAX_SHOWN)}):", file=sys.stderr)
        for problem in problems[:MAX_SHOWN]:
            print("  " + problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
