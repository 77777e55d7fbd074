"""`--jobs N` (meterspec.parallel): the same bytes out, the same error report, the same exit
status as one process, whatever the input's bad lines, repeats and line ends (issue 12)."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterspec.parallel import split

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("meterspec")
CONFIG = ROOT / "examples" / "api-calls" / "config.json"
REQUEST = ROOT / "examples" / "api-calls" / "request.json"
EVENTS = ROOT / "examples" / "api-calls" / "events.ndjson"


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=30),
       st.booleans(), st.integers(1, 8))
def test_ranges_cover_the_file_and_start_lines(tmp_path: Path, lines: list[bytes],
                                               final_newline: bool, parts: int) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    path = tmp_path / "input"
    path.write_bytes(data)
    ranges = split(str(path), parts)
    assert len(ranges) <= parts
    assert ranges[0].start == 0 and ranges[-1].end == len(data)
    for left, right in pairwise(ranges):
        assert left.end == right.start and data[right.start - 1:right.start] == b"\n"
    for part in ranges:
        assert part.first_line == data[:part.start].count(b"\n") + 1


def _run(*args: str | Path, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    done = subprocess.run([str(SCRIPT), *map(str, args)], input=stdin, capture_output=True,
                          check=False, timeout=300)
    return done.returncode, done.stdout, done.stderr


def _events(count: int) -> list[dict[str, Any]]:
    base = json.loads(EVENTS.read_text().splitlines()[0])
    return [{**base, "id": f"evt_{i:05d}", "subject": f"customer:{i % 7}",
             "time": f"2024-01-15T{i % 24:02d}:{i % 60:02d}:00Z"} for i in range(count)]


BAD = [b"{not json", b'{"id":"x"}', b"\xef\xbb\xbf{}", b"   ", b"", b"[" * 100,
       b'{"id":"e","id":"f"}']


@pytest.mark.parametrize("jobs", [2, 3, 7])
def test_run_with_jobs_writes_what_one_process_writes(tmp_path: Path, jobs: int) -> None:
    lines = [json.dumps(e).encode() for e in _events(300)]
    for index, bad in enumerate(BAD):
        lines.insert(index * 40 + 3, bad)
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\n")
    one = _run("run", "--config", CONFIG, "--request", REQUEST, path)
    many = _run("run", "--jobs", str(jobs), "--config", CONFIG, "--request", REQUEST, path)
    assert one[0] == 1 and many == one
    assert one[1].count(b"\n") > 3


def _records(tmp_path: Path) -> list[bytes]:
    records = tmp_path / "records.ndjson"
    done = subprocess.run([str(SCRIPT), "meter", "--config", str(CONFIG), str(EVENTS)],
                          capture_output=True, check=True)
    records.write_bytes(done.stdout)
    return done.stdout.splitlines()


def test_aggregate_with_jobs_counts_repeats_in_one_range_once(tmp_path: Path) -> None:
    records = _records(tmp_path)
    lines = [records[0], records[0], *records[1:], b"{bad", records[-1]]
    path = tmp_path / "input.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    one = _run("aggregate", "--request", REQUEST, path)
    many = _run("aggregate", "--jobs", "2", "--request", REQUEST, path)
    assert many == one
    assert b"2 duplicates dropped, 1 rejected" in one[2]


def test_aggregate_with_jobs_and_a_file_fed_twice_is_exact(tmp_path: Path) -> None:
    """The second half repeats the first: every repeat is in another range, so the command
    reads on one process (only the order of the whole file says which copy counts)."""
    records = _records(tmp_path)
    conflicting = json.loads(records[0])
    conflicting["measurement"]["quantity"] = "7"
    lines = [*records, json.dumps(conflicting).encode(), *records]
    path = tmp_path / "twice.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    one = _run("aggregate", "--request", REQUEST, path)
    many = _run("aggregate", "--jobs", "2", "--request", REQUEST, path)
    assert many == one
    assert one[0] == 1 and b"record-conflict" in one[2]


def test_jobs_read_standard_input_too(tmp_path: Path) -> None:
    data = b"\n".join(json.dumps(e).encode() for e in _events(50)) + b"\n"
    one = _run("run", "--config", CONFIG, "--request", REQUEST, "-", stdin=data)
    many = _run("run", "--jobs", "2", "--config", CONFIG, "--request", REQUEST, "-", stdin=data)
    assert many == one and one[0] == 0


@pytest.mark.parametrize("value", ["0", "65", "two", "-1"])
def test_jobs_must_be_1_to_64(value: str) -> None:
    status, _, err = _run("run", "--jobs", value, "--config", CONFIG, "--request", REQUEST,
                          EVENTS)
    assert status == 2 and b"an integer from 1 to 64" in err


MONTHLY = ROOT / "examples" / "monthly-invoice"


def test_invoice_with_jobs_writes_what_one_process_writes(tmp_path: Path) -> None:
    """Many subscriptions (so every writer has a block) over a history of periods, with
    --events: invoices and their events are the bytes of one process."""
    request = json.loads((MONTHLY / "invoice-request.json").read_text())
    template = request["subscriptions"][0]
    request["subscriptions"] = [{**template, "subject": f"customer:{i}"} for i in range(12)]
    request_path = tmp_path / "request.json"
    request_path.write_text(json.dumps(request))
    records = subprocess.run(
        [str(SCRIPT), "meter", "--config", str(MONTHLY / "config.json"),
         str(MONTHLY / "events.ndjson")], capture_output=True, check=True).stdout.splitlines()
    lines = []
    for i in range(12):  # each customer its own copy of the example's usage
        for record in records:
            item = json.loads(record)
            item["subject"], item["id"] = f"customer:{i}", f"{item['id']}-{i}"
            lines.append(json.dumps(item).encode())
    lines.insert(5, b"{bad")
    path = tmp_path / "records.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    outputs = []
    for jobs in ("1", "3"):
        events = tmp_path / f"events-{jobs}.ndjson"
        status, out, err = _run("invoice", "--jobs", jobs, "--periods", "3", "--events",
                                events, "--request", request_path, path)
        outputs.append((status, out, err, events.read_bytes()))
    assert outputs[0] == outputs[1]
    assert outputs[0][0] == 1 and outputs[0][1].count(b"\n") == 36


def test_run_with_jobs_counts_each_event_once(tmp_path: Path) -> None:
    """MS-ING-021 under --jobs: repeats inside one range and across ranges (the file fed
    twice, plus a conflicting copy) give what one process gives."""
    lines = [json.dumps(e).encode() for e in _events(120)]
    conflicting = json.loads(lines[0])
    conflicting["properties"]["region"] = "eu-west"
    path = tmp_path / "twice.ndjson"
    path.write_bytes(b"\n".join([lines[0], *lines, json.dumps(conflicting).encode(), *lines])
                     + b"\n")
    one = _run("run", "--config", CONFIG, "--request", REQUEST, path)
    many = _run("run", "--jobs", "2", "--config", CONFIG, "--request", REQUEST, path)
    assert many == one
    assert one[0] == 1 and b"121 duplicates dropped, 1 rejected" in one[2]
