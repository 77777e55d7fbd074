"""Faults (issue 14), each against real processes: an acknowledged event is never lost and
never doubled when the writer is killed (kill -9) at random points of a large ingest and the
whole input is sent again (MS-ING-005, MS-ING-008); eight writers at once on PostgreSQL end
with every event exactly once and every conflict reported once, without a deadlock reaching a
user; a full disk or a read-only or locked store is one line and a non-zero exit, never a
partial batch acknowledged. (An old schema version: tests/test_store.py.) Each test is bounded
well under a minute on two shared cores."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from store_helpers import line

from meterspec.store import open_store

pytest.importorskip("duckdb")


def _events(count: int, prefix: str = "evt") -> list[bytes]:
    rng = random.Random(count)
    return [line(f"{prefix}_{i:06d}", subject=f"customer:{rng.randrange(50)}",
                 time=f"2024-01-{1 + i % 28:02d}T{i % 24:02d}:00:00.{i % 997:03d}Z",
                 properties={"calls": str(rng.randrange(1, 1000))}) for i in range(count)]


def _ingest(url: str, path: Path, *extra: str,
            preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "meterspec", "ingest", "--store", url,
                             *extra, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=preexec_fn)


def _acked_ids(stdout: bytes, lines: list[bytes]) -> set[str]:
    """The ids of the lines of every batch the writer acknowledged (its summary printed)."""
    ids: set[str] = set()
    for text in stdout.splitlines():
        ack = json.loads(text)
        ids |= {json.loads(lines[n - 1])["id"] for n in range(ack["firstLine"],
                                                              ack["lastLine"] + 1)}
    return ids


def _stored_ids(url: str) -> list[str]:
    store = open_store(url, read_only=True)
    try:
        assert store.problems() == []
        return [json.loads(text)["id"] for chunk in store.log_chunks()
                for text in chunk.splitlines()]
    finally:
        store.close()


# ------------------------------------------------------------------ kill -9 the writer

def test_a_killed_writer_loses_no_acknowledged_event_and_doubles_none(tmp_path: Path) -> None:
    """Ten times: start `meterspec ingest` of the whole input (30 batches), kill -9 it after a
    random number of acknowledgements plus a random pause (mid-batch, mid-commit, or before
    anything), check every acknowledged event is in the store, each identity once; then let
    it finish, send everything again, and find each event exactly once, the repeats counted."""
    lines = _events(30_000)
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    url = f"duckdb:{tmp_path / 'store.duckdb'}"
    rng = random.Random(14)
    began = time.monotonic()
    kills = 0
    for _ in range(10):
        writer = _ingest(url, path, "--batch-size", "1000")
        assert writer.stdout is not None
        wanted = rng.randrange(0, 12)
        seen = b""
        for _ack in range(wanted):
            text = writer.stdout.readline()
            if not text:
                break
            seen += text
        time.sleep(rng.uniform(0.0, 0.25))
        writer.send_signal(signal.SIGKILL)
        rest, _ = writer.communicate()
        kills += writer.returncode == -signal.SIGKILL
        stored = _stored_ids(url)
        assert len(stored) == len(set(stored)), "an identity stored twice"
        assert _acked_ids(seen + rest, lines) <= set(stored), "an acknowledged event was lost"
    assert kills >= 8, "the writer should have been killed mid-ingest most of the time"
    finished = _ingest(url, path)
    out, err = finished.communicate()
    assert finished.returncode == 0, err
    assert sorted(_stored_ids(url)) == sorted(json.loads(text)["id"] for text in lines)
    again = _ingest(url, path)
    out, err = again.communicate()
    assert again.returncode == 0, err
    [ack] = [json.loads(text) for text in out.splitlines()]
    assert (ack["accepted"], ack["duplicates"]) == (0, len(lines))
    exported = subprocess.run([sys.executable, "-m", "meterspec", "store", "export", url],
                              capture_output=True, check=True).stdout
    assert sorted(exported.splitlines()) == sorted(lines)  # each once, byte for byte
    assert time.monotonic() - began < 120


# ------------------------------------------------------------------ eight writers at once

def test_eight_concurrent_writers_store_each_event_once(postgres_url: str,
                                                        tmp_path: Path) -> None:
    """Eight `meterspec ingest` processes on one PostgreSQL store, each sending a random 60%
    of 3,000 events in its own order (so most events are sent by several writers at once),
    and 60 identities also in a second payload sent by one writer: exactly one payload per
    identity stored; each writer's accepted + duplicates + conflicts is what it sent; the
    accepted add up to 3,000; every occurrence whose digest is not the stored one is reported
    as a conflict exactly once (and kept once in the conflicts table); no deadlock or
    serialization failure reaches a writer's output."""
    url = f"{postgres_url}?schema=concurrent"
    setup = open_store(url)
    setup.require_current(create=True)
    setup.close()
    events = _events(3_000, "shared")
    rng = random.Random(8)
    twins = {i: line(f"shared_{i:06d}", **_twin(events[i])) for i in rng.sample(range(3000), 60)}
    inputs: list[list[bytes]] = []
    for writer in range(8):
        mine = [events[i] for i in rng.sample(range(3000), 1800)]
        mine += [twin for i, twin in twins.items() if i % 8 == writer]
        rng.shuffle(mine)
        inputs.append(mine)
    paths = []
    for writer, mine in enumerate(inputs):
        paths.append(tmp_path / f"writer{writer}.ndjson")
        paths[-1].write_bytes(b"\n".join(mine) + b"\n")
    began = time.monotonic()
    writers = [_ingest(url, path, "--batch-size", "150") for path in paths]
    results = [writer.communicate(timeout=120) for writer in writers]
    assert time.monotonic() - began < 90
    store = open_store(url)
    stored = {key[2]: seen.digest for key, seen in store.seen_state().items()}
    conflicts_kept = store.counts()["conflicts"]
    assert store.problems() == []
    distinct = len({json.loads(text)["id"] for mine in inputs for text in mine})
    assert distinct > 2900  # a few of the 3,000 may be in no writer's sample
    assert store.counts()["events"] == distinct
    store.close()
    assert len(stored) == distinct
    from meterspec.codec import decode_event
    from meterspec.ingestion import event_digest

    totals = {"accepted": 0, "duplicates": 0, "conflicts": 0}
    expected_conflicts = 0
    for writer, (mine, (out, err)) in enumerate(zip(inputs, results, strict=True)):
        text = err.decode()
        assert "Traceback" not in text and "deadlock" not in text.lower(), text
        assert "serializ" not in text.lower(), text
        acks = [json.loads(row) for row in out.splitlines()]
        sent = {key: sum(a[key] for a in acks) for key in totals}
        assert sent["accepted"] + sent["duplicates"] + sent["conflicts"] == len(mine)
        assert sum(a["rejected"] + a["late"] for a in acks) == 0
        assert writers[writer].returncode == (1 if sent["conflicts"] else 0)
        for key in totals:
            totals[key] += sent[key]
        differing = sum(1 for text_line in mine if event_digest(decode_event(text_line))
                        != stored[json.loads(text_line)["id"]])
        assert sent["conflicts"] == differing, f"writer {writer}"
        expected_conflicts += differing
    assert totals["accepted"] == distinct
    assert totals["conflicts"] == expected_conflicts == conflicts_kept >= 60
    assert totals["duplicates"] == sum(map(len, inputs)) - distinct - expected_conflicts


def _twin(event: bytes) -> dict[str, object]:
    """The same identity with another payload (a conflict for whichever comes second)."""
    fields = json.loads(event)
    fields["properties"] = {"calls": "999999"}
    return {k: v for k, v in fields.items() if k != "id"}


# ------------------------------------------------------------------ full disk, read-only

def _limited(size: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails: EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_a_full_disk_stops_the_writer_cleanly_and_keeps_only_acknowledged_batches(
        tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE: the disk filling up) hit mid-ingest: one line saying
    so, exit 2, and the store holds exactly the acknowledged batches (the failed batch left
    nothing); with room again, the whole input goes in exactly once."""
    lines = _events(20_000)
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    url = f"duckdb:{tmp_path / 'store.duckdb'}"
    writer = _ingest(url, path, "--batch-size", "2500", preexec_fn=lambda: _limited(3_000_000))
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 2
    [message] = err.decode().splitlines()
    assert message.startswith("meterspec: cannot write") and "disk is full" in message
    assert 0 < len(out.splitlines()) < 8  # some batches went in, not all
    acked = _acked_ids(out, lines)
    assert set(_stored_ids(url)) == acked
    writer = _ingest(url, path)
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    [ack] = [json.loads(text) for text in out.splitlines()]
    assert (ack["accepted"], ack["duplicates"]) == (len(lines) - len(acked), len(acked))
    assert sorted(_stored_ids(url)) == sorted(json.loads(text)["id"] for text in lines)


def test_a_read_only_postgresql_store_is_one_line_and_exit_2(postgres_url: str,
                                                            tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS readonly")
        admin.execute("CREATE DATABASE readonly")
    url = postgres_url.rsplit("/", 1)[0] + "/readonly"
    made = open_store(url)
    made.require_current(create=True)
    made.close()
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("ALTER DATABASE readonly SET default_transaction_read_only = on")
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(_events(10)) + b"\n")
    writer = _ingest(url, path)
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 2 and out == b""
    [message] = err.decode().splitlines()
    assert "read-only" in message and message.startswith("meterspec: cannot write")


def test_a_store_another_process_writes_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import duckdb

    url = f"duckdb:{tmp_path / 'store.duckdb'}"
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(_events(10)) + b"\n")
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                               f"c = duckdb.connect({str(tmp_path / 'store.duckdb')!r})\n"
                               "print('open', flush=True)\ntime.sleep(60)\n"],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
        writer = _ingest(url, path)
        out, err = writer.communicate(timeout=60)
        assert writer.returncode == 2 and out == b""
        [message] = err.decode().splitlines()
        assert "another process has it open" in message
    finally:
        holder.kill()
        holder.wait()
    assert duckdb.__version__  # the store opens once the other process is gone:
    writer = _ingest(url, path)
    assert writer.wait(timeout=60) == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_a_read_only_store_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = f"duckdb:{tmp_path / 'store.duckdb'}"
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(_events(10)) + b"\n")
    assert _ingest(url, path).wait(timeout=60) == 0
    os.chmod(tmp_path / "store.duckdb", 0o444)
    os.chmod(tmp_path, 0o555)
    try:
        writer = _ingest(url, path)
        out, err = writer.communicate(timeout=60)
        assert writer.returncode == 2 and out == b""
        [message] = err.decode().splitlines()
        assert message.startswith("meterspec: cannot")
    finally:
        os.chmod(tmp_path, 0o755)
