"""Benchmark (issue 14): `meterspec ingest` into a DuckDB and a PostgreSQL store, and readings
computed from the store beside `meterspec run` on the file.

Every figure is a child process measured by one wait4: wall time, CPU time (user + sys, the
steadier figure on a shared machine) and peak resident memory. The results are checked (that
is the only thing that fails the script; no timing is asserted): the store holds every event
exactly once, sending the file again accepts nothing and counts every line a duplicate, the
DuckDB export is byte for byte the input, and the readings from each store are byte for byte
those of `meterspec run` on the file.

    .venv/bin/pip install -e '.[dev]' && .venv/bin/python benchmarks/ingest.py --events 200000

PostgreSQL: --postgres URL, or by default a throwaway durable cluster (fsync on) started from
the machine's initdb and pg_ctl (tests/pg_cluster.py); --postgres none skips it.
See benchmarks/README.md, "Ingesting into a store".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
START = datetime(2024, 1, 1, tzinfo=UTC)
WORKSPACES = ("acme-prod", "globex", "initech")
REGIONS = ("us-east", "us-west", "eu-west", "ap-south")
MODELS = ("small", "medium", "large")
CHUNK = 1 << 16


def event_chunks(events: int, subjects: int, days: int, seed: int) -> Iterator[str]:
    """benchmarks/run.py's event shape (3 workspaces, 10% staging, microsecond times over the
    days, a `tokens` quantity and two dimensions), from four random words per event."""
    rng = random.Random(seed)
    tails = []
    for _ in range(1 << 16):
        whole, digits = rng.randrange(10 ** rng.randrange(1, 6)), rng.randrange(7)
        tokens = f"{whole}.{rng.randrange(10**digits):0{digits}d}" if digits else str(whole)
        tails.append(f'"properties":{{"tokens":"{tokens}","region":"{rng.choice(REGIONS)}",'
                     f'"model":"{rng.choice(MODELS)}"}}}}\n')
    heads = [f'"workspaceID":"{WORKSPACES[n % 3]}","universeID":"{u}",'
             f'"type":"llm.completion","subject":"customer:{n:06d}","time":"'
             for n in range(subjects) for u in ("production", "staging")]
    dates = [f"{START + timedelta(days=d):%Y-%m-%d}T" for d in range(days)]
    clock = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}." for s in range(86_400)]
    seconds = days * 86_400
    for first in range(0, events, CHUNK):
        words = struct.iter_unpack("<IIII", rng.randbytes(16 * min(CHUNK, events - first)))
        yield "".join([
            f'{{"id":"evt_{index:09d}",{heads[2 * (x % subjects) + (w >> 16 < 6554)]}'
            f'{dates[y % seconds // 86_400]}{clock[y % 86_400]}{z % 1_000_000:06d}Z",'
            f'{tails[w & 0xFFFF]}' for index, (x, y, z, w) in enumerate(words, first)])


def generate(workdir: Path, events: int, subjects: int, days: int, seed: int) -> Path:
    path = workdir / f"events-{events}-{seed}.ndjson"
    if not path.exists():
        with open(path.with_suffix(".tmp"), "w", encoding="ascii", newline="\n") as out:
            for chunk in event_chunks(events, subjects, days, seed):
                out.write(chunk)
        path.with_suffix(".tmp").rename(path)
    (workdir / "config.json").write_text(json.dumps(
        {"measurements": [{"unit": "tokens", "sourceProperty": "tokens"}]}))
    end = START + timedelta(days=days)
    (workdir / "request-sum.json").write_text(json.dumps(
        {"aggregation": "sum", "tumbling": {"size": "day", "timeZone": "UTC",
                                            "start": f"{START:%Y-%m-%dT%H:%M:%SZ}",
                                            "end": f"{end:%Y-%m-%dT%H:%M:%SZ}"}}))
    return path


@dataclass
class Measured:
    job: str
    events: int
    wall: float
    cpu: float
    peak_mb: float
    stdout: bytes
    stderr: bytes


def run_child(job: str, events: int, argv: list[str], stdout_path: Path | None = None
              ) -> Measured:
    """Run the command as a child and take its own resource usage from wait4; its stdout to
    `stdout_path` (kept), its stderr beside it."""
    with ExitStack() as stack:
        out = (stack.enter_context(open(stdout_path, "wb")) if stdout_path is not None
               else stack.enter_context(open(os.devnull, "wb")))
        err_path = Path(os.devnull) if stdout_path is None else stdout_path.with_suffix(".err")
        err = stack.enter_context(open(err_path, "wb"))
        began = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        detail = err_path.read_text()[-2000:] if stdout_path is not None else ""
        raise SystemExit(f"{job}: exit {child.returncode} {detail}")
    stdout = stdout_path.read_bytes() if stdout_path is not None else b""
    stderr = err_path.read_bytes() if stdout_path is not None else b""
    return Measured(job, events, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                    stdout, stderr)


def meterspec() -> list[str]:
    script = Path(sys.executable).with_name("meterspec")
    return [str(script)] if script.exists() else [sys.executable, "-m", "meterspec"]


def acks(result: Measured) -> dict[str, int]:
    totals = {"accepted": 0, "duplicates": 0, "conflicts": 0, "late": 0, "rejected": 0}
    for line in result.stdout.splitlines():
        ack = json.loads(line)
        for key in totals:
            totals[key] += ack[key]
    return totals


def store_jobs(name: str, url: str, source: Path, events: int, batch: int,
               workdir: Path, expected: bytes) -> list[Measured]:
    """Ingest, ingest again (all duplicates), readings from the store; checked."""
    cli = meterspec()
    results = []
    first = run_child(f"ingest into {name}", events,
                      [*cli, "ingest", "--store", url, "--batch-size", str(batch), str(source)],
                      workdir / f"{name}-ingest.out")
    if acks(first)["accepted"] != events:
        raise SystemExit(f"{name}: {acks(first)} accepted, expected {events}")
    results.append(first)
    again = run_child(f"ingest again into {name} (all duplicates)", events,
                      [*cli, "ingest", "--store", url, "--batch-size", str(batch), str(source)],
                      workdir / f"{name}-again.out")
    if acks(again)["duplicates"] != events or acks(again)["accepted"]:
        raise SystemExit(f"{name}: sending again gave {acks(again)}")
    results.append(again)
    readings = run_child(f"run --store {name} (sum/day)", events,
                         [*cli, "run", "--store", url, "--config", str(workdir / "config.json"),
                          "--request", str(workdir / "request-sum.json")],
                         workdir / f"{name}-readings.ndjson")
    if readings.stdout != expected:
        raise SystemExit(f"{name}: readings from the store differ from run on the file")
    results.append(readings)
    export = subprocess.run([*cli, "store", "export", url], capture_output=True, check=True)
    if sorted(export.stdout.splitlines()) != sorted(source.read_bytes().splitlines()):
        raise SystemExit(f"{name}: the export is not the input")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=HERE / "data" / "ingest")
    parser.add_argument("--postgres", default="auto",
                        help="a PostgreSQL URL, 'auto' (a throwaway durable cluster), 'none'")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    source = generate(args.workdir, args.events, args.subjects, args.days, args.seed)
    print(f"{args.events:,} events, {source.stat().st_size / 1e6:,.1f} MB: {source}")
    cli = meterspec()
    baseline = run_child("run on the file (sum/day)", args.events,
                         [*cli, "run", "--config", str(args.workdir / "config.json"),
                          "--request", str(args.workdir / "request-sum.json"), str(source)],
                         args.workdir / "file-readings.ndjson")
    results = [baseline]
    store_file = args.workdir / "store.duckdb"
    for leftover in (store_file, store_file.with_suffix(".duckdb.wal")):
        leftover.unlink(missing_ok=True)
    results += store_jobs("duckdb", f"duckdb:{store_file}", source, args.events,
                          args.batch_size, args.workdir, baseline.stdout)
    if args.postgres != "none":
        with ExitStack() as stack:
            url = args.postgres
            if url == "auto":
                sys.path.insert(0, str(ROOT / "tests"))
                import pg_cluster

                if pg_cluster.binaries() is None:
                    print("no PostgreSQL binaries: the PostgreSQL jobs are skipped")
                    url = ""
                else:
                    url = stack.enter_context(pg_cluster.cluster(durable=True))
            if url:
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                joiner = "&" if "?" in url else "?"
                results += store_jobs("postgresql", f"{url}{joiner}schema={schema}", source,
                                      args.events, args.batch_size, args.workdir,
                                      baseline.stdout)
    print("checks: every event stored once, a second sending all duplicates, the DuckDB "
          "export equal to the input, readings from each store equal to run on the file\n")
    header = (f"{'job':<44} {'events':>10} {'wall s':>8} {'CPU s':>7} {'events/s':>10} "
              f"{'events/CPU s':>12} {'peak MB':>8}")
    print(header)
    print("-" * len(header))
    for result in results:
        print(f"{result.job:<44} {result.events:>10,} {result.wall:>8.2f} {result.cpu:>7.2f} "
              f"{result.events / result.wall:>10,.0f} {result.events / result.cpu:>12,.0f} "
              f"{result.peak_mb:>8,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
