"""Benchmark (issue 15): the reference server under load on loopback.

Starts `meterspec serve` on a store, creates an ingest key, and runs CLIENTS asyncio clients
(httpx, one connection each) for a fixed duration. Each client sends batches of BATCH events,
one at a time: a share of every batch (--duplicates) repeats ids already sent, by this client
or another, possibly still in flight, with the same payload (so they are duplicates, never
conflicts). The figures: sustained events/s (every event sent and answered 200, duplicates
included, and the accepted ones alone), p50/p99 latency per batch. After the run the server is
stopped (SIGTERM) and the store is checked: it holds each distinct id sent exactly once, and
every id answered `accepted` once in all (none lost, none doubled). A failed check is the only
thing that makes the script fail; no timing is asserted.

    .venv/bin/python benchmarks/http_load.py --seconds 30 --clients 8
    .venv/bin/python benchmarks/http_load.py --store postgres --workers 2

`--store postgres` starts a throwaway durable PostgreSQL cluster (tests/pg_cluster.py, fsync
on); `--store postgresql://...` uses one. See benchmarks/README.md, "HTTP server".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
MS = [sys.executable, "-m", "meterspec"]
TEMPLATE = ('{{"id":"{id}","workspaceID":"bench","universeID":"prod","type":"api_call",'
            '"subject":"customer:{subject}","time":"2024-01-{day:02d}T{hour:02d}:{minute:02d}:'
            '00Z","properties":{{"endpoint":"/v1/items","tokens":"{tokens}"}}}}')


def payload(ident: int) -> str:
    """The one payload of id `ident` (so a repeat is a duplicate, never a conflict)."""
    return TEMPLATE.format(id=f"evt-{ident}", subject=ident % 1000, day=1 + ident % 28,
                           hour=ident % 24, minute=ident % 60, tokens=ident % 997)


@dataclass
class Totals:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    other: int = 0
    latencies: list[float] = field(default_factory=list)
    accepted_ids: list[int] = field(default_factory=list)
    sent_ids: set[int] = field(default_factory=set)
    unanswered: list[list[int]] = field(default_factory=list)  # in flight at a kill


async def client(url: str, key: str, number: int, batch: int, duplicates: float,
                 deadline: float, counter: list[int], totals: Totals) -> None:
    fresh = batch - int(batch * duplicates)
    rng = random.Random(number)
    async with httpx.AsyncClient(base_url=url, timeout=120, headers={
            "Authorization": f"Bearer {key}", "content-type": "application/json"}) as http:
        while time.monotonic() < deadline:
            start = counter[0]
            counter[0] += fresh  # ids are handed out before sending: others may repeat them
            ids = list(range(start, start + fresh))
            ids += [rng.randrange(max(counter[0], 1)) for _ in range(batch - fresh)]
            body = ("[" + ",".join(payload(i) for i in ids) + "]").encode()
            began = time.perf_counter()
            totals.sent_ids.update(ids)
            try:
                response = await http.post("/v1/events", content=body)
            except httpx.TransportError:  # the server was killed (--kill-after): re-send later
                totals.unanswered.append(ids)
                return
            totals.latencies.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise SystemExit(f"batch answered {response.status_code}: {response.text[:300]}")
            answer = response.json()
            totals.sent += len(ids)
            totals.accepted += answer["accepted"]
            totals.duplicates += answer["duplicates"]
            totals.other += answer["conflicts"] + answer["late"] + answer["rejected"]
            totals.accepted_ids += [ids[r["index"]] for r in answer["results"]
                                    if r["outcome"] == "accepted"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tree_cpu_seconds(root: int) -> float | None:
    """User + system CPU seconds of a live process and its descendants (Linux /proc; None
    elsewhere): the server's own cost, steadier than wall time on a shared machine."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parents: dict[int, int] = {}
    used: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.parent.name)
        parents[pid], used[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
    if root not in used:
        return None
    tree, frontier = {root}, [root]
    while frontier:
        found = [pid for pid, parent in parents.items() if parent in frontier
                 and pid not in tree]
        tree.update(found)
        frontier = found
    return sum(used[pid] for pid in tree) / ticks


@contextmanager
def server(store: str, workers: int, log: Path) -> Iterator[tuple[str, str, Any]]:
    key = subprocess.run([*MS, "keys", "create", "--store", store, "--workspace", "bench",
                          "--universe", "prod", "--scope", "ingest"], check=True,
                         capture_output=True, text=True).stdout.strip()
    port = _free_port()
    with log.open("wb") as out:
        process = subprocess.Popen([*MS, "serve", "--store", store, "--port", str(port),
                                    "--workers", str(workers), "--rate-limit",
                                    "1000000/second"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"the server did not start: {log.read_text()}")
        yield url, key, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)


def stored_ids(store: str) -> list[str]:
    out = subprocess.run([*MS, "store", "export", store], check=True, capture_output=True)
    return [json.loads(line)["id"] for line in out.stdout.splitlines()]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def load(url: str, key: str, args: argparse.Namespace,
               process: Any) -> tuple[Totals, float]:
    totals = Totals()
    counter = [0]
    began = time.monotonic()
    deadline = began + args.seconds

    async def kill() -> None:
        await asyncio.sleep(args.kill_after)
        process.send_signal(signal.SIGKILL)

    killer = [asyncio.create_task(kill())] if args.kill_after else []
    await asyncio.gather(*killer, *(client(url, key, n, args.batch, args.duplicates, deadline,
                                           counter, totals) for n in range(args.clients)))
    return totals, time.monotonic() - began


def resend(store: str, workers: int, log: Path, totals: Totals) -> dict[str, Any]:
    """After a kill -9: restart the server on the same store and re-send every batch that got
    no answer (MS-HTTP-004); how long the restart took and what the re-sending found."""
    began = time.monotonic()
    with server(store, workers, log) as (url, key, _):
        restart = time.monotonic() - began
        found = {"accepted": 0, "duplicates": 0}
        with httpx.Client(base_url=url, timeout=120, headers={
                "Authorization": f"Bearer {key}", "content-type": "application/json"}) as http:
            for ids in totals.unanswered:
                body = "[" + ",".join(payload(i) for i in ids) + "]"
                answer = http.post("/v1/events", content=body).raise_for_status().json()
                found["accepted"] += answer["accepted"]
                found["duplicates"] += answer["duplicates"]
                totals.accepted_ids += [ids[r["index"]] for r in answer["results"]
                                        if r["outcome"] == "accepted"]
    return {"restart_seconds": round(restart, 2), "unanswered_batches": len(totals.unanswered),
            "resent_events": sum(map(len, totals.unanswered)), **{
                f"resent_{name}": count for name, count in found.items()}}


@contextmanager
def postgres() -> Iterator[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_cluster import cluster

    with cluster(durable=True) as url:
        yield url


def run(args: argparse.Namespace) -> dict[str, Any]:
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="http-load-")))
        store = args.store
        if store == "duckdb":
            store = f"duckdb:{folder / 'load.duckdb'}"
        elif store == "postgres":
            store = stack.enter_context(postgres())
        with server(store, args.workers, folder / "serve.log") as (url, key, process):
            before = tree_cpu_seconds(process.pid)
            totals, seconds = asyncio.run(load(url, key, args, process))
            after = None if args.kill_after else tree_cpu_seconds(process.pid)
        crash = resend(store, args.workers, folder / "restart.log",
                       totals) if args.kill_after else {}
        stored = stored_ids(store)
    distinct = {f"evt-{i}" for i in totals.sent_ids}
    # A batch stored just before a kill -9 lost its answer: re-sent, its events are
    # duplicates, never seen accepted. Every other id is accepted exactly once.
    lost = {i for ids in totals.unanswered for i in ids}
    checks = {
        "store holds each distinct id once": len(stored) == len(set(stored)),
        "store holds exactly the ids sent": set(stored) == distinct,
        "each id accepted at most once": len(totals.accepted_ids) == len(
            set(totals.accepted_ids)),
        "each id accepted, unless its answer was lost in the crash":
            totals.sent_ids - set(totals.accepted_ids) <= lost,
        "nothing but accepted and duplicate": totals.other == 0,
    }
    return {"store": args.store, "workers": args.workers, "clients": args.clients,
            "batch": args.batch, "seconds": round(seconds, 2), "batches": len(totals.latencies),
            "events": totals.sent, "accepted": totals.accepted,
            "duplicates": totals.duplicates, "distinct_stored": len(stored),
            "events_per_second": round(totals.sent / seconds),
            "accepted_per_second": round(totals.accepted / seconds),
            "p50_ms": round(percentile(totals.latencies, 0.50) * 1000, 1),
            "p99_ms": round(percentile(totals.latencies, 0.99) * 1000, 1),
            "server_cpu_seconds": None if before is None or after is None
            else round(after - before, 2),
            "events_per_server_cpu_second": None if before is None or after is None
            or after == before else round(totals.sent / (after - before)),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            **crash, "checks": checks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="duckdb",
                        help="duckdb (a new file), postgres (a throwaway cluster) or a URL")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--duplicates", type=float, default=0.1,
                        help="share of each batch that repeats ids already sent")
    parser.add_argument("--kill-after", type=float, default=0.0, metavar="SECONDS",
                        help="kill -9 the server this long into the load, restart it and "
                             "re-send the unanswered batches; the checks then hold across it")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    result = run(args)
    print(json.dumps(result))
    print(f"\n{result['store']} ({result['workers']} worker(s)), {result['clients']} clients, "
          f"batches of {result['batch']}: {result['events_per_second']:,} events/s "
          f"({result['accepted_per_second']:,} accepted/s), p50 {result['p50_ms']} ms, "
          f"p99 {result['p99_ms']} ms per batch; {result['distinct_stored']:,} distinct "
          f"events stored; server CPU {result['server_cpu_seconds']} s "
          f"({result['events_per_server_cpu_second']} events per CPU-second); load average "
          f"{result['load_average']}", file=sys.stderr)
    if args.kill_after:
        print(f"kill -9 after {args.kill_after} s: restart in {result['restart_seconds']} s, "
              f"{result['unanswered_batches']} unanswered batches re-sent "
              f"({result['resent_events']:,} events: {result['resent_accepted']:,} accepted, "
              f"{result['resent_duplicates']:,} duplicates)", file=sys.stderr)
    failed = [name for name, ok in result["checks"].items() if not ok]
    for name in failed:
        print(f"CHECK FAILED: {name}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
