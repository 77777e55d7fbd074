"""Benchmark (issue 12): meterspec beside DuckDB on the same seeded data, as ratios.

Every figure is a child process measured by the same wait4: `meterspec run` / `meterspec
invoice`, and DuckDB's query in a child of its own (benchmarks/duckdb_events.py, or this script
with --duckdb-invoice), so both sides include interpreter start-up. CPU time (user + sys of the
child and of the children it waited for) is the steady figure, peak memory (the largest single
process's max RSS) stands beside it; a Spark command's CPU also counts its Python workers,
which nothing waits for, read from /proc (cpu_of_tree). Results must be identical, and
`--jobs N` output byte for byte that of `--jobs 1`; that is the only thing that fails the
script. No timing is asserted.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/run.py --job all

Jobs: run (1M events, 10,000 subjects, 30 days; sum and time-weighted-avg), dense (10M events,
1,000 subjects, 30 days; sum), twa-scaling (time-weighted-avg at 1M and 4M events), invoice
(two sizes), all. See benchmarks/README.md.

This script deliberately imports nothing from meterspec: it treats the CLI as a black box and
computes its expectations independently (DuckDB, plus exact Python of its own).
"""

from __future__ import annotations

import argparse
import calendar
import csv
import functools
import hashlib
import itertools
import json
import os
import random
import re
import resource
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
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

HERE = Path(__file__).resolve().parent
START = datetime(2024, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
WORKSPACES = ("acme-prod", "globex", "initech")
REGIONS = ("us-east", "us-west", "eu-west", "ap-south")
MODELS = ("small", "medium", "large")
DUCKDB_TYPE = "DECIMAL(38,6)"
AGGREGATIONS = ("sum", "time-weighted-avg")
SHORT = {"sum": "sum", "time-weighted-avg": "twa"}
MAX_SHOWN = 10
# Issue 12's targets.
SPEEDUP_TARGET = 1.6  # wall-time speed-up of --jobs 2 over --jobs 1 on 2 cores, at least
DENSE_SUM_TARGET = 2.5  # dense sum: meterspec CPU / DuckDB 1-thread CPU, at most
RUN_SUM_TARGET = 3.0  # issue 12: run sum/day CPU at most 3.0x DuckDB's sums query, 1 thread
RUN_TWA_TARGET = 4.0  # and time-weighted-avg/day at most 4.0x the same query
TWA_PEAK_TARGET = 1.3  # time-weighted-avg peak memory, largest size / smallest, at most
DENSE_SHAPE_TARGET = 100  # the dense shape: events per reading, at least

Key = tuple[str, str, str, str]  # workspaceID, universeID, subject, window start


# --------------------------------------------------------------------------- measuring children


@dataclass
class Command:
    """A child to time: argv, where its stdout goes, what the table calls it."""

    tool: str
    job: str
    parallel: str  # "--jobs 2", "1 thread"
    count: int  # events or records read
    argv: list[str]
    stdout: Path
    aggregation: str = ""
    baseline: Command | None = None  # the DuckDB 1-thread command its CPU is divided by
    unreaped: bool = False  # descendants nobody waits for (Spark's Python workers): see cpu_of_tree


@dataclass
class Timing:
    """Medians over the repeats: wall, CPU (user + sys), peak RSS; DuckDB's own figures
    from inside its child (connect to written result) when it reported them."""

    command: Command
    wall: float
    cpu: float
    peak_mb: float
    inside: dict[str, Any] = field(default_factory=dict)
    baseline: Timing | None = None

    @property
    def ratio(self) -> float | None:
        return None if self.baseline is None else self.cpu / self.baseline.cpu


@dataclass
class Target:
    """One line of the summary: an issue-12 target (limit set) or a reported figure."""

    name: str
    value: float | None
    limit: float | None = None
    at_least: bool = False  # the value must be >= limit (else <=)
    note: str = ""
    unit: str = "x"

    def goal(self) -> str:
        if self.limit is None:
            return ""
        return f"{'>=' if self.at_least else '<='} {self.limit}{self.unit}"

    def measured(self) -> str:
        if self.value is None:
            return ""
        return f"{self.value:.2f}{self.unit}" if self.unit else f"{self.value:,.0f}"

    def status(self) -> str:
        if self.value is None:
            return "n/a"
        if self.limit is None:
            return "-"
        ok = self.value >= self.limit if self.at_least else self.value <= self.limit
        return "PASS" if ok else "MISS"


@dataclass
class Outcome:
    """What a job hands to the summary."""

    targets: list[Target] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)


def _megabytes(maxrss: int) -> float:
    return maxrss / 1e6 if sys.platform == "darwin" else maxrss / 1e3  # bytes vs kilobytes


def timed_child(argv: list[str], stdout: Path, unreaped: bool = False
                ) -> tuple[float, float, float]:
    """Run argv with stdout to a file (stderr beside it); wall seconds, the child's CPU seconds
    and peak RSS in MB from wait4 (which includes the children it waited for: --jobs workers).
    `unreaped`: the child's CPU is the larger of wait4's and cpu_of_tree's. Fails unless it
    exits 0."""
    stderr = stdout.with_name(stdout.name + ".stderr")
    tree: dict[int, float] = {}
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        began = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG if unreaped else 0)
            if pid:
                break
            cpu_of_tree(process.pid, tree)
            time.sleep(TREE_INTERVAL)
        wall = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(argv)} exited {process.returncode}:\n"
                         + stderr.read_text(errors="replace"))
    cpu = max(usage.ru_utime + usage.ru_stime, sum(tree.values()))
    return wall, cpu, _megabytes(usage.ru_maxrss)


TREE_INTERVAL = 0.2  # seconds between two readings of /proc (a process's last 0.2 s is lost)
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_of_tree(root: int, seen: dict[int, float]) -> None:
    """Read /proc for `root` and every process descending from it, keeping each one's own CPU
    seconds (user + sys) in `seen`. wait4 counts a descendant only when every process between
    it and the child waited for it; Spark's Python workers are children of pyspark's daemon,
    which ignores SIGCHLD, so their CPU (most of the engine's) never reaches wait4."""
    parents: dict[int, tuple[int, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            text = Path("/proc", name, "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = text[text.rindex(")") + 2:].split()  # after "(comm)": state, ppid, ...
        parents[int(name)] = int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, (parent, _) in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    for pid in tree & parents.keys():
        seen[pid] = max(seen.get(pid, 0.0), parents[pid][1])


def measure(commands: list[Command], repeat: int) -> list[Timing]:
    """Each command `repeat` times, in turn (A B C A B C: a drifting machine hits all alike);
    the median of each figure."""
    samples: list[list[tuple[float, float, float]]] = [[] for _ in commands]
    inside: list[list[dict[str, Any]]] = [[] for _ in commands]
    for _ in range(repeat):
        for command, got, reported in zip(commands, samples, inside, strict=True):
            wall, cpu, peak = timed_child(command.argv, command.stdout, command.unreaped)
            got.append((wall, cpu, peak))
            if command.tool == "duckdb":
                reported.append(json.loads(command.stdout.read_text(encoding="utf-8")))
            print(f"  timed {command.tool} {command.job} ({command.parallel}): wall {wall:.2f} s,"
                  f" CPU {cpu:.2f} s, peak {peak:,.0f} MB", flush=True)
    timings = []
    for command, got, reported in zip(commands, samples, inside, strict=True):
        walls, cpus, peaks = zip(*got, strict=True)
        merged = {key: statistics.median(r[key] for r in reported)
                  if isinstance(value, float) else value
                  for key, value in reported[-1].items()} if reported else {}
        timings.append(Timing(command, statistics.median(walls), statistics.median(cpus),
                              statistics.median(peaks), merged))
    by_command = {id(t.command): t for t in timings}
    for t in timings:
        if t.command.baseline is not None:
            t.baseline = by_command[id(t.command.baseline)]
    return timings


def _meterspec_command() -> list[str]:
    script = Path(sys.executable).with_name("meterspec")
    return [str(script)] if script.exists() else [sys.executable, "-m", "meterspec.cli"]


def _parallel(jobs: int) -> str:
    return f"--jobs {jobs}"


def _threads(threads: int) -> str:
    return f"{threads} thread{'' if threads == 1 else 's'}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cores() -> int:
    """Processors this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# ---------------------------------------------------------------------------------- event data


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
    """The `run` job's events, one random call per field (unchanged since the first figures)."""
    rng = random.Random(seed)
    span = days * DAY_US
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


CHUNK = 1 << 16


def _fast_event_chunks(events: int, subjects: int, days: int, seed: int,
                       staging: bool) -> Iterator[str]:
    """The same kind of events, about 4x faster: four 32-bit words of `Random(seed).randbytes`
    per event (read little-endian, so every machine writes the same file) pick the subject,
    the second, the microsecond, the universe (10% staging when `staging`) and one of 65,536
    property texts drawn once with `_quantity` and random dimensions; the rest is tables."""
    rng = random.Random(seed)
    tails = [f'"properties":{{"tokens":"{_quantity(rng)}","region":"{rng.choice(REGIONS)}",'
             f'"model":"{rng.choice(MODELS)}"}}}}\n' for _ in range(1 << 16)]
    heads = [f'"workspaceID":"{WORKSPACES[n % len(WORKSPACES)]}","universeID":"{u}",'
             f'"type":"llm.completion","subject":"customer:{n:06d}","time":"'
             for n in range(subjects) for u in ("production", "staging")]
    dates = [f"{START + timedelta(days=d):%Y-%m-%d}T" for d in range(days)]
    clock = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}." for s in range(86_400)]
    seconds = days * 86_400
    for first in range(0, events, CHUNK):
        words = struct.iter_unpack("<IIII", rng.randbytes(16 * min(CHUNK, events - first)))
        yield "".join([
            f'{{"id":"evt_{index:09d}",{heads[2 * (x % subjects) + (staging and w >> 16 < 6554)]}'
            f'{dates[y % seconds // 86_400]}{clock[y % 86_400]}{z % 1_000_000:06d}Z",'
            f'{tails[w & 0xFFFF]}' for index, (x, y, z, w) in enumerate(words, first)])


def generate_events(workdir: Path, shape: str, events: int, subjects: int, days: int,
                    seed: int) -> None:
    """events.ndjson (streamed to disk), config.json and one request per aggregation.
    shape: uniform (the run job's generator), uniform-fast (same mix, fast generator), dense
    (fast generator, one universe)."""
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with open(workdir / "events.ndjson", "w", encoding="ascii", newline="\n") as out:
        if shape == "uniform":
            batch: list[str] = []
            for line in _event_lines(events, subjects, days, seed):
                batch.append(line)
                if len(batch) == 10_000:
                    out.write("".join(batch))
                    batch.clear()
            out.write("".join(batch))
        else:
            for chunk in _fast_event_chunks(events, subjects, days, seed, shape != "dense"):
                out.write(chunk)
    config = {"measurements": [{"unit": "tokens", "sourceProperty": "tokens"}]}
    tumbling = {"size": "day", "timeZone": "UTC", "start": _day(0), "end": _day(days)}
    for aggregation in AGGREGATIONS:
        request = {"aggregation": aggregation, "tumbling": tumbling}
        (workdir / f"request-{SHORT[aggregation]}.json").write_text(
            json.dumps(request, indent=2) + "\n", encoding="utf-8")
    (workdir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    size = (workdir / "events.ndjson").stat().st_size
    print(f"generated {events:,} events ({size / 1e6:,.1f} MB, {subjects:,} subjects, {days} "
          f"days, {shape}) in {time.perf_counter() - began:.1f} s: {workdir / 'events.ndjson'}",
          flush=True)


def _day(offset: int) -> str:
    return f"{START + timedelta(days=offset):%Y-%m-%dT%H:%M:%SZ}"


def meterspec_run(workdir: Path, aggregation: str, jobs: int, count: int) -> Command:
    """`meterspec run`, readings to meterspec-<agg>[-jobsN].ndjson (no --jobs for 1)."""
    name = SHORT[aggregation] + ("" if jobs == 1 else f"-jobs{jobs}")
    argv = [*_meterspec_command(), "run", "--config", str(workdir / "config.json"),
            "--request", str(workdir / f"request-{SHORT[aggregation]}.json"),
            "--errors", str(workdir / f"errors-{name}.ndjson"),
            *(["--jobs", str(jobs)] if jobs != 1 else []), str(workdir / "events.ndjson")]
    return Command("meterspec", f"run {aggregation}", _parallel(jobs), count, argv,
                   workdir / f"meterspec-{name}.ndjson", aggregation)


def duckdb_run(workdir: Path, aggregation: str, threads: int, days: int, count: int) -> Command:
    """benchmarks/duckdb_events.py as a child; result in duckdb-<agg>-<threads>.csv."""
    name = f"{SHORT[aggregation]}-{threads}"
    start_us = (START - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    argv = [sys.executable, str(HERE / "duckdb_events.py"), aggregation,
            str(workdir / "events.ndjson"), str(workdir / f"duckdb-{name}.csv"), str(threads),
            str(start_us), str(days)]
    return Command("duckdb", f"{aggregation} {DUCKDB_TYPE}", _threads(threads), count, argv,
                   workdir / f"duckdb-{name}.json", aggregation)


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


def load_duckdb(path: Path) -> dict[Key, tuple[str, int]]:
    """A result CSV of duckdb_events.py: key -> (canonical quantity, record count)."""
    with open(path, encoding="utf-8", newline="") as rows:
        reader = csv.reader(rows)
        next(reader)
        return {(w, u, s, start): (canonical(quantity), int(count))
                for w, u, s, start, quantity, count in reader}


def _readings(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as lines:
        for line in lines:
            reading: dict[str, Any] = json.loads(line)
            yield reading


def check_readings(path: Path, expected: dict[Key, tuple[str, int]], aggregation: str,
                   days: int) -> tuple[list[str], str]:
    """meterspec's readings against DuckDB's, exactly (quantity and recordCount). For sum,
    DuckDB has the non-empty days only: every other reading must be an empty day of an active
    group, "0" with recordCount 0 (MS-AGG-017); for time-weighted-avg it has every reading.
    Every active group has one reading per day. Returns the problems and a summary line."""
    problems: list[str] = []
    seen: set[Key] = set()
    per_group: dict[tuple[str, str, str], int] = {}
    empty = records = 0
    for reading in _readings(path):
        window, measurement = reading["window"], reading["measurement"]
        key = (reading["workspaceID"], reading["universeID"], reading["subject"],
               window["start"])
        got = (measurement["quantity"], reading["recordCount"])
        records += got[1]
        per_group[key[:3]] = per_group.get(key[:3], 0) + 1
        if key in seen:
            problems.append(f"duplicate reading for {key}")
        seen.add(key)
        if reading["aggregation"] != aggregation or measurement["unit"] != "tokens":
            problems.append(f"unexpected aggregation/unit in reading for {key}: {reading}")
        if key in expected:
            want = expected[key]
        elif aggregation == "sum":
            empty += 1
            want = ("0", 0)
        else:
            problems.append(f"{key}: meterspec has a reading, DuckDB none")
            continue
        if got != want:
            problems.append(f"{aggregation} {key}: meterspec (quantity, recordCount) = {got}, "
                            f"DuckDB says {want}")
    problems += [f"{key}: DuckDB has {expected[key]}, meterspec has no reading"
                 for key in sorted(set(expected) - seen)]
    problems += [f"{group}: {count} readings, expected one per day ({days})"
                 for group, count in sorted(per_group.items()) if count != days]
    if aggregation == "sum":
        what = (f"{len(expected):,} non-empty (quantity and recordCount), {empty:,} empty days "
                f"of active groups \"0\" with recordCount 0")
    else:
        what = f"all {len(expected):,} (quantity rounded half-even to 6 digits, recordCount)"
    line = (f"{aggregation} readings identical to DuckDB: {what}, {len(per_group):,} groups x "
            f"{days} days, {records:,} records, {records / max(len(expected), 1):,.0f} per "
            f"{'non-empty ' if aggregation == 'sum' else ''}reading")
    return problems, line


def check_jobs(first: Command, other: Command) -> tuple[list[str], str]:
    """--jobs N wrote byte for byte what --jobs 1 wrote (readings and error report)."""
    problems = []
    for kind, one, many in (("readings", first.stdout, other.stdout),
                            ("error report", _errors(first), _errors(other))):
        if sha256(one) != sha256(many):
            problems.append(f"{other.job} {other.parallel}: {kind} {many.name} differ from "
                            f"{first.parallel}'s {one.name}")
    return problems, (f"meterspec {other.job} {other.parallel}: output identical to "
                      f"{first.parallel} (sha256 {sha256(first.stdout)[:16]}..., error reports "
                      "too)")


def _errors(command: Command) -> Path:
    return Path(command.argv[command.argv.index("--errors") + 1])


# --------------------------------------------------------------------- run, dense, twa-scaling


def events_job(args: argparse.Namespace, name: str) -> Outcome:
    """run / dense: each aggregation with --jobs 1 and N beside DuckDB with 1 and N threads."""
    dense = name == "dense"
    events = args.events or (10_000_000 if dense else 1_000_000)
    subjects = args.subjects or (1_000 if dense else 10_000)
    days = args.days or 30
    aggregations = args.aggregations or (("sum",) if dense else AGGREGATIONS)
    workdir: Path = args.workdir / name
    print(f"\n== {name}: {events:,} events, {subjects:,} subjects, {days} days", flush=True)
    generate_events(workdir, "dense" if dense else "uniform", events, subjects, days, args.seed)
    parallel = [1] + ([args.jobs] if args.jobs > 1 else [])
    commands: list[Command] = []
    for aggregation in aggregations:
        baseline = duckdb_run(workdir, aggregation, 1, days, events)
        for jobs in parallel:
            commands.append(meterspec_run(workdir, aggregation, jobs, events))
            commands[-1].baseline = baseline
            duck = baseline if jobs == 1 else duckdb_run(workdir, aggregation, jobs, days, events)
            duck.baseline = baseline
            commands.append(duck)
    timings = measure(commands, args.repeat)
    outcome = Outcome()
    notes = []
    for aggregation in aggregations:
        mine = [t for t in timings if t.command.aggregation == aggregation]
        ours = [t for t in mine if t.command.tool == "meterspec"]
        ducks = [t for t in mine if t.command.tool == "duckdb"]
        results = [load_duckdb(Path(t.command.argv[4])) for t in ducks]
        if any(result != results[0] for result in results[1:]):
            outcome.problems.append(f"{aggregation}: DuckDB with 1 thread and with "
                                    f"{args.jobs} disagree")
        problems, line = check_readings(ours[0].command.stdout, results[0], aggregation, days)
        outcome.problems += problems
        outcome.checks.append(f"{name}: {line}")
        label = f"{name} {aggregation}"
        outcome.targets.append(Target(
            f"{label}: meterspec CPU / DuckDB 1-thread CPU", ours[0].ratio,
            DENSE_SUM_TARGET if dense and aggregation == "sum" else None,
            note=_versus(ours[0])))
        duck_sums = [t for t in timings if t.command.tool == "duckdb"
                     and t.command.aggregation == "sum"]
        if not dense and duck_sums:  # issue 12 states both targets against the sums query
            limit = RUN_SUM_TARGET if aggregation == "sum" else RUN_TWA_TARGET
            outcome.targets.append(Target(
                f"{label}: meterspec CPU / DuckDB sums query 1-thread CPU",
                ours[0].cpu / duck_sums[0].cpu, limit,
                note=f"CPU {ours[0].cpu:.2f} s vs {duck_sums[0].cpu:.2f} s"))
        if dense and aggregation == "sum":
            outcome.targets.append(Target(
                f"{label}: events per non-empty reading (the shape)",
                events / max(len(results[0]), 1), DENSE_SHAPE_TARGET, at_least=True,
                note=f"{len(results[0]):,} non-empty readings", unit=""))
        if len(ours) > 1:
            problems, line = check_jobs(ours[0].command, ours[1].command)
            outcome.problems += problems
            outcome.checks.append(f"{name}: {line}")
            speedup = ours[0].wall / ours[1].wall
            notes.append(f"meterspec {label}: --jobs {args.jobs} wall speed-up {speedup:.2f}x "
                         f"({ours[0].wall:.2f} s -> {ours[1].wall:.2f} s), CPU "
                         f"{ours[0].cpu:.2f} s -> {ours[1].cpu:.2f} s, peak "
                         f"{ours[0].peak_mb:,.0f} MB -> {ours[1].peak_mb:,.0f} MB (largest "
                         "single process)")
            outcome.targets.append(Target(
                f"{label}: --jobs {args.jobs} wall speed-up over --jobs 1",
                speedup if cores() >= 2 else None, SPEEDUP_TARGET, at_least=True,
                note="" if cores() >= 2 else "1 core"))
        else:
            outcome.targets.append(Target(f"{label}: --jobs 2 wall speed-up over --jobs 1",
                                          None, SPEEDUP_TARGET, True, "--jobs 1 only"))
    _print_section(timings, notes + _inside_notes(timings), "events")
    return outcome


def twa_scaling_job(args: argparse.Namespace) -> Outcome:
    """time-weighted-avg with --jobs 1 at each size (same subjects and days), beside DuckDB
    with 1 thread; the peak memory of the largest size over the smallest's."""
    subjects, days = args.subjects or 10_000, args.days or 30
    outcome = Outcome()
    timings: list[Timing] = []
    print(f"\n== twa-scaling: {', '.join(f'{n:,}' for n in args.twa_sizes)} events, "
          f"{subjects:,} subjects, {days} days", flush=True)
    for events in args.twa_sizes:
        workdir: Path = args.workdir / f"twa-scaling-{events}"
        generate_events(workdir, "uniform-fast", events, subjects, days, args.seed)
        duck = duckdb_run(workdir, "time-weighted-avg", 1, days, events)
        duck.baseline = duck
        ours = meterspec_run(workdir, "time-weighted-avg", 1, events)
        ours.baseline = duck
        timings += measure([ours, duck], args.repeat)
        problems, line = check_readings(ours.stdout, load_duckdb(Path(duck.argv[4])),
                                        "time-weighted-avg", days)
        outcome.problems += problems
        outcome.checks.append(f"twa-scaling {events:,}: {line}")
    ours_timings = [t for t in timings if t.command.tool == "meterspec"]
    small, large = ours_timings[0], ours_timings[-1]
    growth = large.peak_mb / small.peak_mb
    notes = [f"meterspec run time-weighted-avg: peak memory {large.command.count:,} events / "
             f"{small.command.count:,} events = {large.peak_mb:,.0f} MB / "
             f"{small.peak_mb:,.0f} MB = {growth:.2f}x; CPU "
             f"{large.cpu / small.cpu:.2f}x for {large.command.count / small.command.count:.1f}x"
             " the events"]
    outcome.targets.append(Target(
        f"twa-scaling: peak memory {large.command.count:,} / {small.command.count:,} events",
        growth if large is not small else None, TWA_PEAK_TARGET))
    outcome.targets += [Target(f"twa-scaling {t.command.count:,}: meterspec CPU / DuckDB "
                               "1-thread CPU", t.ratio, note=_versus(t)) for t in ours_timings]
    _print_section(timings, notes + _inside_notes(timings), "events")
    return outcome


def _versus(timing: Timing) -> str:
    """CPU and peak memory beside DuckDB's (1 thread)."""
    duck = timing.baseline
    assert duck is not None
    return (f"CPU {timing.cpu:,.2f} s vs {duck.cpu:,.2f} s, peak {timing.peak_mb:,.0f} MB vs "
            f"{duck.peak_mb:,.0f} MB")


def _inside_notes(timings: list[Timing]) -> list[str]:
    return [f"duckdb {t.command.job} ({t.command.parallel}, {t.command.count:,}): inside the "
            f"child, connect to written result (no interpreter start-up, no import): wall "
            f"{t.inside['seconds']:.2f} s, CPU {t.inside['cpu']:.2f} s"
            + (f"; {t.inside['breakdown']}" if "breakdown" in t.inside else "")
            for t in timings if t.inside]


# ----------------------------------------------------------------------------- invoice job
#
# `--job invoice`: seeded MeterRecords billed by `meterspec invoice`, and the same invoices from
# DuckDB sums: billing periods computed here from MS-BIL-002/003 with zoneinfo, DECIMAL sums
# and the time-weighted integral in SQL, tiers and half-even rounding in exact Python.

INVOICE_WORKSPACE, INVOICE_UNIVERSE = "acme-prod", "production"
INVOICE_AT = "2024-03-20T00:00:00Z"
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
    {"id": "team", "version": 1, "currency": "USD", "effectiveFrom": "1990-01-01T00:00:00Z",
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
    {"id": "scale", "version": 1, "currency": "USD", "effectiveFrom": "1990-01-01T00:00:00Z",
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


def records_from(periods: int) -> datetime:
    """Records start on the 1st of the month `periods` months before `at`'s: 2023-10-01 for
    5 periods, 2014-03-01 for 120 (quarterly subscriptions reach further back: empty periods)."""
    months = 2024 * 12 + 3 - 1 - periods
    return datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC)


def _record_lines(records: int, subjects: int, periods: int, seed: int) -> Iterator[str]:
    """MeterRecords from records_from(periods) to 2024-05-01: 85% api calls (fractional, ~1%
    credits; one subject in 50 mostly credits, one in 50 nearly dormant), 5% seat levels (1 in
    10 at the same instant as the subject's previous one), 10% an unpriced unit; 10% in
    another universe or workspace. Only the priced units of the request's tenant are billed."""
    rng = random.Random(seed)
    begin = records_from(periods)
    span = (RECORDS_TO - begin) // timedelta(microseconds=1)
    last_seat: dict[int, datetime] = {}
    for index in range(records):
        number = rng.randrange(subjects)
        if number % 50 == 49 and rng.random() < 0.95:  # dormant: periods without usage
            number = rng.randrange(subjects)
        roll = rng.random()
        workspace, universe = ((INVOICE_WORKSPACE, INVOICE_UNIVERSE) if roll < 0.9 else
                               (INVOICE_WORKSPACE, "staging") if roll < 0.95 else
                               ("globex", INVOICE_UNIVERSE))
        moment = begin + timedelta(microseconds=rng.randrange(span))
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
        for line in _record_lines(records, subjects, periods, seed):
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



def duckdb_invoice_child(workdir: Path, threads: int) -> int:
    """The DuckDB side of the invoice job, run as a child (`--duckdb-invoice DIR THREADS`):
    billing periods in Python, the sums and seat integrals in DuckDB (one fresh connection
    reading the NDJSON), rating in exact Python, the invoices streamed to
    duckdb-invoices-<threads>.ndjson. Prints one JSON line: threads, seconds and CPU from the
    request's load to the written invoices, and the breakdown."""
    import duckdb

    cpu_began = _cpu_seconds()
    began = time.perf_counter()
    request = json.loads((workdir / "invoice-request.json").read_text(encoding="utf-8"))
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
    with open(workdir / f"duckdb-invoices-{threads}.ndjson", "w", encoding="utf-8") as out:
        out.writelines(json.dumps({**vars(invoice), "lines": [vars(x) for x in invoice.lines]})
                       + "\n" for invoice in _rate_invoices(request, spans, usage))
    seconds = time.perf_counter() - began
    breakdown = (f"periods (Python) {periods_done - began:.2f} s, SQL "
                 f"{sql_done - periods_done:.2f} s, rating and writing (Python) "
                 f"{seconds - (sql_done - began):.2f} s")
    print(json.dumps({"threads": used, "seconds": seconds, "cpu": _cpu_seconds() - cpu_began,
                      "breakdown": breakdown}))
    return 0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rate_invoices(request: dict[str, Any], spans: dict[str, list[tuple[int, int]]],
                   usage: dict[tuple[str, int], Usage]) -> Iterator[ExpectedInvoice]:
    """Subscriptions in request order, periods oldest first (MS-INV-004)."""
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
            yield ExpectedInvoice(
                subject, _canonical_time(_from_micros(start)),
                _canonical_time(_from_micros(end)), (plan["id"], plan["version"]),
                plan["currency"], lines, _text(precise), _text(rounded))


def load_invoices(path: Path) -> Iterator[ExpectedInvoice]:
    """duckdb-invoices-<threads>.ndjson back as ExpectedInvoices, one at a time."""
    for invoice in _readings(path):
        yield ExpectedInvoice(
            invoice["subject"], invoice["start"], invoice["end"], tuple(invoice["plan"]),
            invoice["currency"], tuple(ExpectedLine(**line) for line in invoice["lines"]),
            invoice["precise"], invoice["rounded"])


def _actual_line(line: dict[str, Any]) -> ExpectedLine:
    rated, usage = line["rated"], line.get("usage")
    return ExpectedLine(rated["chargeID"], rated.get("quantity"), rated.get("includedQuantity"),
                        rated.get("billableQuantity"), rated.get("packages"), rated["subtotal"],
                        rated["amount"]["precise"], rated["amount"]["rounded"],
                        None if usage is None else usage["recordCount"])


def check_invoices(path: Path, expected: Iterable[ExpectedInvoice],
                   request: dict[str, Any]) -> tuple[list[str], str]:
    """Every invoice, in order: subject, period, plan version, currency, and per line the
    quantity, included and billable quantity, packages, subtotal, precise and rounded amount
    and recordCount; the invoice's subtotal and total. Streams both files."""
    problems: list[str] = []
    units = {c["id"]: c.get("unit") for p in request["plans"] for c in p["charges"]}
    counted = {SUM_UNIT: 0, TWA_UNIT: 0, None: 0}
    ties = negative = zero = 0
    count = 0
    for count, (invoice, want) in enumerate(
            itertools.zip_longest(_readings(path), expected), start=1):
        if invoice is None or want is None:
            problems.append(f"invoice {count}: meterspec has {'no' if invoice is None else 'an'}"
                            f" invoice, the benchmark {'no' if want is None else 'one'}")
            continue
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
    return problems, (
        f"{count:,} invoices identical to the DuckDB-based ones (periods, plan versions, "
        f"totals); lines compared to the last digit: {counted[SUM_UNIT]:,} sum-based "
        f"({SUM_UNIT}), {counted[TWA_UNIT]:,} time-weighted ({TWA_UNIT}), {counted[None]:,} "
        f"flat; {ties:,} of them rounded a tie (half-even); {negative:,} sum-based lines had a "
        f"negative quantity, {zero:,} none")


def subjects_for(subscriptions: int) -> int:
    """The fewest subject numbers holding that many subscriptions (1 in 20 has none)."""
    subjects = subscriptions
    while subjects - subjects // 20 < subscriptions:
        subjects += 1
    return subjects


def invoice_job(args: argparse.Namespace) -> Outcome:
    """Each size: `meterspec invoice` beside the DuckDB-based invoices with 1 and N threads."""
    outcome = Outcome()
    timings: list[Timing] = []
    sizes = ", ".join(f"{r:,} records x {s:,} subscriptions x {p} periods"
                      for r, s, p in args.invoice_sizes)
    print(f"\n== invoice: {sizes}", flush=True)
    for records, subscriptions, periods in args.invoice_sizes:
        workdir: Path = args.workdir / f"invoice-{records}x{subscriptions}x{periods}"
        subjects = subjects_for(subscriptions)
        began = time.perf_counter()
        request = generate_invoice_job(workdir, records, subjects, periods, args.seed)
        size = (workdir / "records.ndjson").stat().st_size
        print(f"generated {records:,} records ({size / 1e6:,.1f} MB, {subjects:,} subjects) and "
              f"{len(request['subscriptions']):,} subscriptions x {periods} periods in "
              f"{time.perf_counter() - began:.1f} s: {workdir / 'records.ndjson'}", flush=True)
        ours = Command("meterspec", f"invoice {periods} periods", "--jobs 1", records,
                       [*_meterspec_command(), "invoice", "--request",
                        str(workdir / "invoice-request.json"), "--errors",
                        str(workdir / "invoice-errors.ndjson"), str(workdir / "records.ndjson")],
                       workdir / "meterspec-invoices.ndjson")
        commands = [ours]
        for threads in [1] + ([args.jobs] if args.jobs > 1 else []):
            commands.append(Command(
                "duckdb", f"invoice {periods} periods {DUCKDB_TYPE}", _threads(threads), records,
                [sys.executable, str(Path(__file__).resolve()), "--duckdb-invoice",
                 str(workdir), str(threads)], workdir / f"duckdb-invoices-{threads}.json"))
            commands[-1].baseline = commands[1]
        ours.baseline = commands[1]
        found = measure(commands, args.repeat)
        timings += found
        results = [workdir / f"duckdb-invoices-{c.argv[-1]}.ndjson" for c in commands[1:]]
        if len({sha256(path) for path in results}) != 1:
            outcome.problems.append(f"invoice {records:,}: DuckDB with 1 thread and with "
                                    f"{args.jobs} disagree")
        problems, line = check_invoices(ours.stdout, load_invoices(results[0]), request)
        outcome.problems += problems
        outcome.checks.append(f"invoice {records:,} x {periods}: {line}")
        outcome.targets.append(Target(
            f"invoice {records:,} records x {len(request['subscriptions']):,} x {periods}: "
            f"meterspec CPU / DuckDB 1-thread CPU", found[0].ratio,
            note=f"{records / found[0].cpu:,.0f} records/CPU-s; {_versus(found[0])}"))
    _print_section(timings, _inside_notes(timings), "records")
    return outcome


# ------------------------------------------------------------------------------------ printing


def _table(timings: list[Timing], unit: str) -> str:
    header = ("tool", "job", "parallel", unit, "wall s", "CPU s", "peak MB", f"{unit}/s",
              f"{unit}/CPU-s", "CPU / duckdb 1t")
    rows = [header] + [
        (t.command.tool, t.command.job, t.command.parallel, f"{t.command.count:,}",
         f"{t.wall:.2f}", f"{t.cpu:.2f}", f"{t.peak_mb:,.0f}", f"{t.command.count / t.wall:,.0f}",
         f"{t.command.count / t.cpu:,.0f}", "" if t.ratio is None else f"{t.ratio:.2f}x")
        for t in timings]
    return _columns(rows, "lllrrrrrrr")


def _columns(rows: Sequence[tuple[str, ...]], align: str) -> str:
    """Rows as aligned columns ('l' or 'r' per column), a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) if side == "l" else cell.rjust(w)
                 for cell, w, side in zip(row, widths, align, strict=True)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths).rstrip())
    return "\n".join(lines)


def _print_section(timings: list[Timing], notes: list[str], unit: str) -> None:
    print()
    print(_table(timings, unit))
    print()
    for note in notes:
        print(note)
    sys.stdout.flush()


def summary(outcomes: list[Outcome]) -> str:
    """Every issue-12 target measured, its value and PASS / MISS; figures reported beside."""
    rows = [("target / figure", "goal", "measured", "status", "note")]
    for outcome in outcomes:
        for target in outcome.targets:
            rows.append((target.name, target.goal(), target.measured(), target.status(),
                         target.note))
    checks = [check for outcome in outcomes for check in outcome.checks]
    problems = [problem for outcome in outcomes for problem in outcome.problems]
    rows.append(("results identical to DuckDB, --jobs N output to --jobs 1", "identical",
                 "yes" if not problems else f"{len(problems):,} differences",
                 "PASS" if not problems else "FAIL", ""))
    return "\n".join(["", "summary (issue 12): a MISS does not change the exit status, only "
                      "differing results do", "", _columns(rows, "lrrrl"), "",
                      *(f"check: {check}" for check in checks)])


# ---------------------------------------------------------------------------------- engines job
#
# `--job engines` (issue 13): `meterspec run --engine duckdb|spark` beside the reference and the
# hand-written DuckDB sums query, on the run job's data; the DuckDB engine from Parquet on the
# dense shape; Spark local[N] at each --spark-sizes size and its start-up alone. Every engine
# output must be byte for byte the reference's (readings and error report), or DuckDB's
# query's where the reference is not run (dense).

ENGINE_SPEEDUP_TARGET = 3.0  # DuckDB engine vs the reference, CPU at 1 thread, at least
ENGINE_QUERY_TARGET = 2.0  # DuckDB engine / the sums-only query, same threads, at most
DENSE_RATE_TARGETS = {"sum": 3_000_000, "time-weighted-avg": 1_000_000}  # events/s, 2 threads
SPARK_GROWTH_TARGET = 1.0  # Spark (wall - start-up) growth / size growth, at most


def engine_run(workdir: Path, engine: str, aggregation: str, threads: int, count: int,
               source: Path) -> Command:
    """`meterspec run --engine ENGINE --threads N`, readings to ENGINE-<agg>-<N>[-parquet]."""
    name = f"{SHORT[aggregation]}-{threads}" + ("-parquet" if source.suffix == ".parquet"
                                                else "")
    argv = [*_meterspec_command(), "run", "--engine", engine, "--threads", str(threads),
            "--config", str(workdir / "config.json"),
            "--request", str(workdir / f"request-{SHORT[aggregation]}.json"),
            "--errors", str(workdir / f"errors-{engine}-{name}.ndjson"), str(source)]
    return Command(f"{engine} engine", f"run {aggregation}", _threads(threads), count, argv,
                   workdir / f"{engine}-{name}.ndjson", aggregation,
                   unreaped=engine == "spark")


def check_same(reference: Command, other: Command) -> tuple[list[str], str]:
    """An engine wrote byte for byte what the reference wrote (readings and error report)."""
    problems = []
    for kind, one, two in (("readings", reference.stdout, other.stdout),
                           ("error report", _errors(reference), _errors(other))):
        if sha256(one) != sha256(two):
            problems.append(f"{other.tool} {other.job} {other.parallel}: {kind} {two.name} "
                            f"differ from the reference's {one.name}")
    return problems, (f"{other.tool} {other.job} ({other.parallel}, {other.count:,}): "
                      f"byte-identical to the reference (sha256 {sha256(other.stdout)[:16]}...)")


def to_parquet(workdir: Path) -> Path:
    """events.ndjson in the engines' typed event layout (meterspec.engines.sources), untimed."""
    import duckdb

    target = workdir / "events.parquet"
    if not target.exists():
        duckdb.connect().execute(
            "COPY (SELECT id, workspaceID, universeID, type, subject, time, "
            "MAP {'tokens': properties.tokens, 'region': properties.region, "
            "'model': properties.model} AS properties FROM read_json(?, format = "
            "'newline_delimited', columns = {id: 'VARCHAR', workspaceID: 'VARCHAR', "
            "universeID: 'VARCHAR', type: 'VARCHAR', subject: 'VARCHAR', time: 'VARCHAR', "
            "properties: 'STRUCT(tokens VARCHAR, region VARCHAR, model VARCHAR)'})) "
            f"TO '{target}' (FORMAT parquet)", [str(workdir / "events.ndjson")])
    return target


def _spark_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyspark") is not None


def engines_job(args: argparse.Namespace) -> Outcome:
    """The DuckDB and Spark engines beside the reference and DuckDB's sums query."""
    events, subjects, days = args.events or 1_000_000, args.subjects or 10_000, args.days or 30
    threads = max(args.jobs, 1)
    workdir: Path = args.workdir / "engines"
    print(f"\n== engines: {events:,} events, {subjects:,} subjects, {days} days", flush=True)
    generate_events(workdir, "uniform", events, subjects, days, args.seed)
    source = workdir / "events.ndjson"
    query = {n: duckdb_run(workdir, "sum", n, days, events) for n in sorted({1, threads})}
    commands: list[Command] = list(query.values())
    pairs: list[tuple[Command, Command]] = []
    for aggregation in AGGREGATIONS:
        reference = meterspec_run(workdir, aggregation, 1, events)
        reference.baseline = query[1]
        commands.append(reference)
        for n in sorted({1, threads}):
            engine = engine_run(workdir, "duckdb", aggregation, n, events, source)
            engine.baseline = query[1]
            commands.append(engine)
            pairs.append((reference, engine))
    spark: list[Command] = []
    if args.spark_sizes and _spark_available():
        empty = workdir / "empty.ndjson"
        empty.write_bytes(b"")
        startup = engine_run(workdir, "spark", "sum", threads, 0, empty)
        startup.job, startup.stdout = "start-up (empty input)", workdir / "spark-startup.ndjson"
        spark.append(startup)
        for size in args.spark_sizes:
            sized = workdir if size == events else args.workdir / f"engines-{size}"
            if size != events:
                generate_events(sized, "uniform-fast", size, subjects, days, args.seed)
            run = engine_run(sized, "spark", "sum", threads, size, sized / "events.ndjson")
            if size == events:
                pairs.append((commands[len(query)], run))  # the reference's sum
            spark.append(run)
    timings = measure(commands + spark, args.repeat)
    outcome = Outcome()
    for reference, engine in pairs:
        problems, line = check_same(reference, engine)
        outcome.problems += problems
        outcome.checks.append(f"engines: {line}")
    by_command = {id(t.command): t for t in timings}
    for aggregation in AGGREGATIONS:
        ours = [by_command[id(e)] for r, e in pairs
                if e.aggregation == aggregation and e.tool == "duckdb engine"]
        reference_t = by_command[id(next(r for r, _ in pairs if r.aggregation == aggregation))]
        label = f"engines {aggregation}"
        outcome.targets.append(Target(
            f"{label}: reference CPU / DuckDB engine CPU (1 thread)",
            reference_t.cpu / ours[0].cpu, ENGINE_SPEEDUP_TARGET, at_least=True,
            note=f"CPU {reference_t.cpu:.2f} s vs {ours[0].cpu:.2f} s; wall "
            f"{reference_t.wall:.2f} s vs {ours[-1].wall:.2f} s at {ours[-1].command.parallel}"))
        for engine_t in ours:
            n = 1 if engine_t.command.parallel == _threads(1) else threads
            duck = by_command[id(query[n])]
            figure = "CPU" if n == 1 else "wall"
            mine, theirs = (engine_t.cpu, duck.cpu) if n == 1 else (engine_t.wall, duck.wall)
            outcome.targets.append(Target(
                f"{label}: DuckDB engine {figure} / sums query {figure} ({_threads(n)})",
                mine / theirs, ENGINE_QUERY_TARGET if aggregation == "sum" else None,
                note=f"{mine:.2f} s vs {theirs:.2f} s, peak {engine_t.peak_mb:,.0f} MB vs "
                f"{duck.peak_mb:,.0f} MB"))
    if spark:
        startup_t, *runs = [by_command[id(c)] for c in spark]
        outcome.targets.append(Target(
            f"Spark local[{threads}] start-up alone (empty input), wall s", startup_t.wall,
            note=f"CPU {startup_t.cpu:.2f} s, peak {startup_t.peak_mb:,.0f} MB", unit=" s"))
        for run_t in runs:
            outcome.targets.append(Target(
                f"Spark local[{threads}] sum at {run_t.command.count:,} events, events/s",
                run_t.command.count / run_t.wall, unit="",
                note=f"wall {run_t.wall:.2f} s (start-up included), CPU {run_t.cpu:.2f} s, "
                f"peak {run_t.peak_mb:,.0f} MB"))
        if len(runs) > 1:
            first, last = runs[0], runs[-1]
            growth = (last.wall - startup_t.wall) / max(first.wall - startup_t.wall, 1e-9)
            sizes = last.command.count / first.command.count
            outcome.targets.append(Target(
                "Spark: (wall - start-up) growth / size growth", growth / sizes,
                SPARK_GROWTH_TARGET, note=f"{growth:.2f}x time for {sizes:.0f}x events; peak "
                f"{first.peak_mb:,.0f} -> {last.peak_mb:,.0f} MB"))
    if args.dense_events:
        outcome.targets += _dense_parquet(args, threads, outcome)
    _print_section(timings, [], "events")
    return outcome


def _dense_parquet(args: argparse.Namespace, threads: int, outcome: Outcome) -> list[Target]:
    """The DuckDB engine from Parquet on the dense shape, checked against DuckDB's query."""
    subjects, days = 1_000, args.days or 30
    workdir: Path = args.workdir / "engines-dense"
    print(f"\n== engines dense: {args.dense_events:,} events from Parquet", flush=True)
    generate_events(workdir, "dense", args.dense_events, subjects, days, args.seed)
    parquet = to_parquet(workdir)
    commands = []
    for aggregation in AGGREGATIONS:
        duck = duckdb_run(workdir, aggregation, 1, days, args.dense_events)
        engine = engine_run(workdir, "duckdb", aggregation, threads, args.dense_events, parquet)
        engine.baseline = duck
        commands += [duck, engine]
    timings = measure(commands, args.repeat)
    targets = []
    for duck_t, engine_t in zip(timings[::2], timings[1::2], strict=True):
        aggregation = engine_t.command.aggregation
        problems, line = check_readings(engine_t.command.stdout,
                                        load_duckdb(Path(duck_t.command.argv[4])), aggregation,
                                        days)
        outcome.problems += problems
        outcome.checks.append(f"engines dense (DuckDB engine from Parquet): {line}")
        targets.append(Target(
            f"engines dense {aggregation} from Parquet: DuckDB engine events/s "
            f"({_threads(threads)})", args.dense_events / engine_t.wall,
            DENSE_RATE_TARGETS[aggregation], at_least=True, unit="",
            note=f"wall {engine_t.wall:.2f} s, CPU {engine_t.cpu:.2f} s, peak "
            f"{engine_t.peak_mb:,.0f} MB"))
    _print_section(timings, [], "events")
    return targets


# ---------------------------------------------------------------------------------------- main


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def _sizes_or_none(text: str) -> list[int]:
    return [] if text == "0" else _sizes(text)


def _invoice_sizes(text: str) -> list[tuple[int, int, int]]:
    sizes = []
    for part in text.split(","):
        numbers = part.replace("_", "").split("x")
        if len(numbers) != 3 or not all(n.isdigit() for n in numbers):
            raise argparse.ArgumentTypeError(
                f"expected RECORDSxSUBSCRIPTIONSxPERIODS[,...], got {part!r}")
        records, subscriptions, periods = map(int, numbers)
        if records < 1 or subscriptions < 1 or not 1 <= periods <= 120:
            raise argparse.ArgumentTypeError(f"{part}: positive sizes, periods 1..120")
        sizes.append((records, subscriptions, periods))
    return sizes


def _aggregations(text: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    if not names or any(name not in AGGREGATIONS for name in names):
        raise argparse.ArgumentTypeError(f"choose from {', '.join(AGGREGATIONS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--job", choices=("run", "dense", "twa-scaling", "invoice", "engines",
                                          "all"),
                        default="run", help="which benchmark (default run; all: each in turn)")
    parser.add_argument("--events", type=int,
                        help="run / dense: events (default 1,000,000 / 10,000,000)")
    parser.add_argument("--subjects", type=int,
                        help="run, twa-scaling / dense: distinct subjects (default 10,000 / "
                        "1,000)")
    parser.add_argument("--days", type=int,
                        help="days from 2024-01-01 UTC, one tumbling window each (default 30)")
    parser.add_argument("--aggregations", type=_aggregations,
                        help="run / dense: comma-separated (default sum,time-weighted-avg / "
                        "sum)")
    parser.add_argument("--twa-sizes", type=_sizes, default=[1_000_000, 4_000_000],
                        help="twa-scaling: events per size (default 1000000,4000000)")
    parser.add_argument("--invoice-sizes", type=_invoice_sizes,
                        default=[(1_000_000, 9_500, 5), (2_000_000, 10_000, 120)],
                        help="invoice: RECORDSxSUBSCRIPTIONSxPERIODS,... (default "
                        "1000000x9500x5,2000000x10000x120)")
    default_jobs = 2 if cores() >= 2 else 1
    parser.add_argument("--jobs", type=int, default=default_jobs,
                        help="also time `meterspec run --jobs N` and DuckDB with N threads "
                        f"(default {default_jobs} here: 2 with 2 cores or more; 1: only "
                        "--jobs 1 and 1 thread)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each command, in turn; medians reported (default 1)")
    parser.add_argument("--seed", type=int, default=20240101, help="random.Random seed")
    parser.add_argument("--workdir", type=Path, default=HERE / "data",
                        help="where data and outputs go, a directory per job and size "
                        "(default benchmarks/data, gitignored)")
    parser.add_argument("--spark-sizes", type=_sizes_or_none, default=[1_000_000, 10_000_000],
                        help="engines: Spark runs at these sizes, each beside its start-up "
                        "(default 1000000,10000000; 0: no Spark)")
    parser.add_argument("--dense-events", type=int, default=10_000_000,
                        help="engines: the dense shape from Parquet (default 10,000,000; 0: "
                        "skip)")
    parser.add_argument("--duckdb-invoice", nargs=2, metavar=("DIR", "THREADS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.duckdb_invoice:
        return duckdb_invoice_child(Path(args.duckdb_invoice[0]), int(args.duckdb_invoice[1]))
    for name in ("events", "subjects", "days"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")
    if args.jobs < 1 or args.repeat < 1:
        parser.error("--jobs and --repeat must be positive")
    if not hasattr(os, "wait4"):
        parser.error("Unix only: the figures are the child's resource usage from wait4")
    try:
        import duckdb
    except ImportError:
        raise SystemExit("benchmarks need DuckDB: .venv/bin/pip install -e '.[bench]'") from None
    print(f"{cores()} cores, Python {sys.version.split()[0]}, DuckDB {duckdb.__version__}; "
          f"--jobs {args.jobs}, --repeat {args.repeat}", flush=True)
    jobs = ("run", "dense", "twa-scaling", "invoice") if args.job == "all" else (args.job,)
    outcomes = []
    for job in jobs:
        if job in ("run", "dense"):
            outcomes.append(events_job(args, job))
        elif job == "twa-scaling":
            outcomes.append(twa_scaling_job(args))
        elif job == "engines":
            outcomes.append(engines_job(args))
        else:
            outcomes.append(invoice_job(args))
    print(summary(outcomes))
    problems = [problem for outcome in outcomes for problem in outcome.problems]
    if problems:
        print(f"\nFAIL: {len(problems):,} differences (first {min(len(problems), MAX_SHOWN)}):",
              file=sys.stderr)
        for problem in problems[:MAX_SHOWN]:
            print("  " + problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
