"""The conformance suite's `ingest` and `apply-corrections` cases (INTERPRETING.md 3.6, 3.7)
answered by a store instead of the pure functions: an adapter that speaks the harness protocol.

    meterspec conformance run --area ingestion --allow-skips \\
        --impl "python -m meterspec.store.adapter duckdb::memory:"
    meterspec conformance run --area ingestion --allow-skips \\
        --impl "python -m meterspec.store.adapter postgresql://localhost/db?schema=conf"

Each case starts from an empty store (the URL's; it is emptied first, so never name one that
holds data). `ingest` loads the case's state into the seen index, expires it, ingests the
events as one batch through the store's own path (the same as `meterspec ingest`) and reads the
new state back from the seen index. `apply-corrections` writes the log to the store and reads
the effective events and the corrections report from its views. Input problems (a bad state, a
log item that is no event) are found as the reference finds them, before the store is touched.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

import msgspec

from meterspec import __version__
from meterspec.codec import decode
from meterspec.conformance import operations as reference
from meterspec.contracts import EventPayload
from meterspec.errors import MeterspecError, Problem
from meterspec.ingestion import Identity, IngestionState, SeenState, event_digest, identity
from meterspec.metering import check_event
from meterspec.store import open_store
from meterspec.store.base import Store
from meterspec.store.batch import Batch
from meterspec.timestamps import Instant, format_timestamp, parse_timestamp

Answer = dict[str, Any]


class StoreAdapter:
    """Answers cases with one store, emptied before each case."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.store: Store = open_store(url)
        self.store.require_current(create=True)
        self.operations: dict[str, Callable[[dict[str, Any]], Answer]] = {
            "ingest": self.ingest, "apply-corrections": self.apply_corrections}

    def implementation(self) -> dict[str, Any]:
        return {"name": f"meterspec-store ({self.store.dialect})", "version": __version__,
                "language": "python", "operations": sorted(self.operations)}

    def handle(self, case: dict[str, Any]) -> dict[str, Any]:
        operation = case.get("operation")
        handler = self.operations.get(operation) if isinstance(operation, str) else None
        if handler is None:
            return {"skipped": f"operation {operation!r} is not supported"}
        case_input = case.get("input")
        if not isinstance(case_input, dict):
            return {"errored": "case input is not a JSON object"}
        try:
            self.store.clear()
            return handler(case_input)
        except MeterspecError as error:
            return {"error": [{"code": p.code, "path": p.path} for p in error.problems]}
        except Exception as error:  # counted against the score by the runner
            return {"errored": repr(error)}

    def ingest(self, case_input: dict[str, Any]) -> Answer:
        """3.6: the state and batch checked as the reference does, then the store ingests."""
        problems: list[Problem] = []
        wire = reference._document("ingestion-state",
                                   reference._member(case_input, "state", problems),
                                   IngestionState, "/state", problems)
        before: Instant | None = None
        if "expireBefore" in case_input:
            before = reference._collect(
                lambda: parse_timestamp(case_input["expireBefore"], "/expireBefore"), problems)
        items = reference._list(reference._member(case_input, "events", problems), "/events",
                                problems)
        reference._fail(problems)
        assert wire is not None
        self.store.load_state(SeenState.from_wire(wire))
        if before is not None:
            self.store.expire(before)
        batch = Batch()
        for index, item in enumerate(items):
            batch.add(index + 1, reference._json(item))
        result = self.store.ingest(batch, "conformance", detail=True)
        assert result.duplicate_list is not None

        def named(key: Identity) -> dict[str, str]:
            return {"workspaceID": key[0], "universeID": key[1], "id": key[2]}

        return {"output": [{
            "outcomes": result.outcomes(),
            "duplicates": [{"index": d.position, **named(d.identity), "digest": d.digest.hex()}
                           for d in result.duplicate_list],
            "conflicts": [{"index": c.position, **named(c.identity),
                           "acceptedDigest": c.accepted_digest.hex(),
                           "conflictingDigest": c.conflicting_digest.hex()}
                          for c in result.conflicts],
            "late": [{"index": late.position, **named(late.identity),
                      "time": format_timestamp(late.time),
                      "horizon": format_timestamp(late.horizon)} for late in result.late],
            "rejected": [{"index": position, "problems": reference._problem_list(
                error.problems)} for position, error in result.rejected],
            "state": msgspec.to_builtins(self.store.seen_state().to_wire()),
        }]}

    def apply_corrections(self, case_input: dict[str, Any]) -> Answer:
        """3.7: the log checked as the reference does (items, MS-ING-019 conflicts), written to
        the store, and the effective events and corrections read from its views."""
        problems: list[Problem] = []
        lines: list[bytes] = []
        log: list[EventPayload] = []
        for index, item in enumerate(reference._list(
                reference._member(case_input, "log", problems), "/log", problems)):
            line = reference._json(item)
            try:
                event = decode("event", line, EventPayload)
            except MeterspecError as error:
                problems += reference.rooted(error.problems, f"/log/{index}")
                continue
            problems += reference.rooted(check_event(event)[1], f"/log/{index}")
            log.append(event)
            lines.append(line)
        reference._fail(problems)
        first: dict[Identity, str] = {}
        reported: set[Identity] = set()
        for index, event in enumerate(log):
            key, digest = identity(event), event_digest(event)
            if first.setdefault(key, digest) != digest and key not in reported:
                reported.add(key)
                problems.append(Problem("event-conflict", f"/log/{index}", "two different "
                                        "payloads for one identity", "MS-ING-019"))
        reference._fail(problems)
        batch = Batch()
        for number, line in enumerate(lines, 1):
            batch.add_logged(number, line)
        if batch.positions:
            self.store.append_log(batch)
        effective = [reference._event(msgspec.json.decode(line, type=EventPayload))
                     for chunk in self.store.effective_chunks()
                     for line in chunk.splitlines()]
        report = self.store.corrections_report()

        def named(key: Identity) -> dict[str, str]:
            return {"workspaceID": key[0], "universeID": key[1], "id": key[2]}

        return {"output": [{
            "effective": effective,
            "retracted": [{**named(key), "by": by} for key, by in report.retracted],
            "amended": [{**named(key), "by": by} for key, by in report.amended],
            "ineffective": [{**named(key), "code": p.code, "path": p.path}
                            for key, p in report.ineffective],
        }]}


def serve(adapter: StoreAdapter, stdin: TextIO, stdout: TextIO) -> int:
    """Answer protocol requests, one JSON object per line, until `stop` or end of input."""
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):
            sys.stderr.write("meterspec store adapter: a request that is not JSON\n")
            continue
        if not isinstance(request, dict):
            continue
        command = request.get("cmd")
        if command == "stop":
            return 0
        if command == "start":
            response: dict[str, Any] = {"ready": True,
                                        "implementation": adapter.implementation()}
        elif command == "run":
            case = request.get("case")
            body = (adapter.handle(case) if isinstance(case, dict)
                    else {"errored": "run request without a case object"})
            response = {"seq": request.get("seq"), **body}
        else:
            continue
        stdout.write(json.dumps(response, ensure_ascii=False) + "\n")
        stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m meterspec.store.adapter STORE_URL\n")
        return 2
    sys.stdin.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    adapter = StoreAdapter(args[0])
    try:
        return serve(adapter, sys.stdin, sys.stdout)
    finally:
        adapter.store.close()


if __name__ == "__main__":
    sys.exit(main())
