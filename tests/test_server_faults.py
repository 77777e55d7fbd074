"""The server under faults: kill -9 under load and SIGTERM under load (MS-HTTP-004,
MS-HTTP-013: a batch answered 200 is stored, a batch re-sent after no answer is stored once),
and per-key rate limits (MS-HTTP-012). Clients are threads with their own connections; the
store is read back with `meterspec store export` once the server is gone (the oracle is the set
of ids the clients sent, built here)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from server_helpers import MS, Server, bearer, create_key, event, problem_document, start

CLIENTS = 4
BATCH = 200


def _batches(client: int, count: int) -> list[list[dict[str, str]]]:
    """Overlapping batches: ids repeat inside and across clients (each id one payload)."""
    return [[event(f"id-{(client * 97 + batch * 131 + n) % 3000}") for n in range(BATCH)]
            for batch in range(count)]


def _send(server: Server, key: str, batches: list[list[dict[str, str]]],
          acked: list[int], stop: threading.Event) -> None:
    """Send each batch once, in order, noting the ones answered 200 (until `stop`)."""
    with httpx.Client(base_url=server.url, headers=bearer(key), timeout=30) as client:
        for index, batch in enumerate(batches):
            if stop.is_set():
                return
            try:
                response = client.post("/v1/events", json=batch)
            except httpx.TransportError:
                return
            if response.status_code == 200:
                acked.append(index)


def _stored_ids(store: str) -> list[str]:
    out = subprocess.run([*MS, "store", "export", store], capture_output=True, check=True)
    return [json.loads(line)["id"] for line in out.stdout.splitlines()]


def _load(server: Server, key: str, work: list[list[list[dict[str, str]]]],
          seconds: float, sig: int) -> list[list[int]]:
    acked: list[list[int]] = [[] for _ in work]
    stop = threading.Event()
    threads = [threading.Thread(target=_send, args=(server, key, batches, acked[n], stop))
               for n, batches in enumerate(work)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    server.process.send_signal(sig)
    server.process.wait(timeout=60)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    return acked


def test_kill_9_under_load_then_resend_stores_each_event_once(tmp_path: Path) -> None:
    store = f"duckdb:{tmp_path / 'crash.duckdb'}"
    key = create_key(store, "acme", "prod", "ingest")
    work = [_batches(client, 40) for client in range(CLIENTS)]
    sent = {e["id"] for batches in work for batch in batches for e in batch}
    server = start(store, tmp_path)
    acked = _load(server, key, work, 1.5, signal.SIGKILL)
    assert server.process.returncode == -signal.SIGKILL
    assert sum(map(len, acked)) < sum(map(len, work)), "the kill came after the last batch"
    # Whatever was acknowledged is there; nothing is there twice.
    stored = _stored_ids(store)
    assert len(stored) == len(set(stored))
    assert {e["id"] for batches, done in zip(work, acked, strict=True) for index in done
            for e in batches[index]} <= set(stored)
    # Restart; every client re-sends what it has no 200 for (MS-HTTP-004).
    server = start(store, tmp_path)
    with httpx.Client(base_url=server.url, headers=bearer(key), timeout=60) as client:
        for batches, done in zip(work, acked, strict=True):
            for index, batch in enumerate(batches):
                if index not in done:
                    assert client.post("/v1/events", json=batch).status_code == 200
    assert server.stop() in (0, -signal.SIGTERM)
    stored = _stored_ids(store)
    assert len(stored) == len(set(stored)) == len(sent)
    assert set(stored) == sent


def test_sigterm_lets_batches_in_progress_finish(tmp_path: Path) -> None:
    """MS-HTTP-013: every batch answered 200 before the server stopped is stored."""
    store = f"duckdb:{tmp_path / 'term.duckdb'}"
    key = create_key(store, "acme", "prod", "ingest")
    work = [_batches(client + 10, 40) for client in range(CLIENTS)]
    server = start(store, tmp_path)
    acked = _load(server, key, work, 1.0, signal.SIGTERM)
    assert server.process.returncode in (0, -signal.SIGTERM)
    stored = _stored_ids(store)
    assert len(stored) == len(set(stored))
    answered = {e["id"] for batches, done in zip(work, acked, strict=True) for index in done
                for e in batches[index]}
    assert answered and answered <= set(stored)


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    """MS-HTTP-012: 5 a second per key; the sixth is 429, has no effect, and another key is
    not charged for it."""
    store = f"duckdb:{tmp_path / 'rate.duckdb'}"
    first = create_key(store, "acme", "prod", "ingest")
    second = create_key(store, "acme", "prod", "ingest")
    server = start(store, tmp_path, "--rate-limit", "5/second,1000/hour")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answers = [client.post("/v1/events", json=[event(f"r{n}")], headers=bearer(first))
                       for n in range(8)]
            statuses = [a.status_code for a in answers]
            assert statuses.count(200) == 5 and statuses[-1] == 429, statuses
            refused = [a for a in answers if a.status_code == 429]
            for answer in refused:
                problem_document(answer, 429, "rate-limited")
                assert answer.headers["retry-after"] == "1"  # under a second, rounded up
            other = client.post("/v1/events", json=[event("r-other")], headers=bearer(second))
            assert other.status_code == 200
            time.sleep(1.1)
            # A 429'd batch stored nothing: sent again, its event is new.
            index = statuses.index(429)
            again = client.post("/v1/events", json=[event(f"r{index}")], headers=bearer(first))
            assert again.json()["results"][0]["outcome"] == "accepted"
    finally:
        server.stop()


def test_postgresql_with_two_workers_stores_each_event_once(postgres_url: str,
                                                            tmp_path: Path) -> None:
    """`--store postgresql://... --workers 2`: four clients send overlapping batches to two
    worker processes at once; the database decides each identity once (MS-HTTP-004)."""
    store = f"{postgres_url}?schema=http_{uuid.uuid4().hex[:8]}"
    key = create_key(store, "acme", "prod", "ingest")
    work = [_batches(client, 6) for client in range(CLIENTS)]
    sent = {e["id"] for batches in work for batch in batches for e in batch}
    server = start(store, tmp_path, "--workers", "2")
    accepted: list[str] = []
    try:
        def send(batches: list[list[dict[str, str]]]) -> None:
            with httpx.Client(base_url=server.url, headers=bearer(key), timeout=60) as client:
                for batch in batches:
                    response = client.post("/v1/events", json=batch)
                    assert response.status_code == 200
                    accepted.extend(batch[r["index"]]["id"] for r in response.json()["results"]
                                    if r["outcome"] == "accepted")
        threads = [threading.Thread(target=send, args=(batches,)) for batches in work]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        server.stop()
    assert sorted(accepted) == sorted(sent)  # each id accepted once, by one worker
    stored = _stored_ids(store)
    assert len(stored) == len(set(stored)) and set(stored) == sent


def test_a_store_that_fails_is_503_and_the_server_stays_up(tmp_path: Path) -> None:
    """MS-HTTP-009: the PostgreSQL cluster stops under a running server; the next batch is
    503 `unavailable` with Retry-After (not acknowledged, so not stored), health still 200."""
    import pg_cluster

    if pg_cluster.binaries() is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl)")
    with pg_cluster.cluster() as url:
        key = create_key(url, "acme", "prod", "ingest")
        server = start(url, tmp_path)
        answer = httpx.post(f"{server.url}/v1/events", json=[event("up")],
                            headers=bearer(key), timeout=60)
        assert answer.status_code == 200
    try:
        answer = httpx.post(f"{server.url}/v1/events", json=[event("down")],
                            headers=bearer(key), timeout=60)
        problem_document(answer, 503, "unavailable")
        assert answer.headers["retry-after"] == "1"
        assert httpx.get(f"{server.url}/v1/health", timeout=10).status_code == 200
    finally:
        server.stop()
