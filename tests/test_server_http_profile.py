"""`meterspec conformance run --http URL --api-key KEY` (the HTTP profile) against the reference
server: every case the profile covers passes; and a server that answers wrongly fails it (a
fake binding that calls every event accepted)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import MS, Server, create_key, start

from meterspec.conformance import http_profile
from meterspec.conformance.cases import load_cases, load_suite, select
from meterspec.conformance.data import default_root


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    folder = tmp_path_factory.mktemp("profile")
    store = f"duckdb:{folder / 'profile.duckdb'}"
    key = create_key(store, "conf", "prod", "admin")
    server = start(store, folder)
    yield server, key
    server.stop()


def test_the_reference_server_passes_every_case_the_profile_covers(
        served: tuple[Server, str], tmp_path: Path) -> None:
    server, key = served
    report = tmp_path / "report.jsonl"
    done = subprocess.run([*MS, "conformance", "run", "--http", server.url, "--api-key", key,
                           "--area", "ingestion", "--area", "metering", "--area",
                           "aggregation", "--report",
                           str(report)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    results = [line["result"] for line in lines if "result" in line]
    assert results.count("passed") >= 200 and "failed" not in results
    assert "errored" not in results


def test_an_unknown_key_stops_the_run(served: tuple[Server, str]) -> None:
    server, _ = served
    done = subprocess.run([*MS, "conformance", "run", "--http", server.url, "--api-key",
                           "msk_000000000000_nothing", "--case", "ing-001"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "401" in done.stderr


def test_a_server_that_answers_wrongly_fails_the_profile() -> None:
    """Every event 'accepted': the ingest cases with duplicates and conflicts fail."""
    def fake(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/key":
            return httpx.Response(200, json={"workspaceID": "w", "universeID": "u",
                                             "scope": "admin"})
        body = json.loads(request.content)
        events = body if isinstance(body, list) else [body]
        return httpx.Response(200, json={"results": [{"index": n, "outcome": "accepted"}
                                                     for n in range(len(events))]})

    cases = select(load_cases(load_suite(default_root())), ids=["ing-001", "ing-002",
                                                                  "ing-003"])
    profile = http_profile.Profile("http://fake", "k", 10,
                                   transport=httpx.MockTransport(fake))
    profile.discover_tenant()
    results = {o.case.id: o.result for o in map(profile.run_case, cases)}
    assert results == {"ing-001": "passed", "ing-002": "failed", "ing-003": "failed"}
