"""The `meterspec` command on hostile or careless input and outputs: line and document size
limits and the BOM (MS-ERR-007, MS-ERR-012), outputs that are inputs, failing outputs and a
reader that leaves early (MS-ERR-013), and record streams fed twice (MS-ING-020). Expected
values are written by hand or computed by the pure core on the distinct records, never by the
code under test."""

from __future__ import annotations

import errno
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import records_strategy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from meterspec import cli
from meterspec.contracts import AggregationRequest, MeterRecord, Tumbling
from meterspec.invoices import InvoiceRequest, build_invoices
from meterspec.readings import aggregate

ROOT = Path(__file__).resolve().parents[1]
API_CALLS = ROOT / "examples" / "api-calls"
CONFIG = API_CALLS / "config.json"
REQUEST = API_CALLS / "request.json"
EVENTS = API_CALLS / "events.ndjson"
MONTHLY = ROOT / "examples" / "monthly-invoice"
INVOICE_REQUEST = MONTHLY / "invoice-request.json"
SCRIPT = Path(sys.executable).with_name("meterspec")
QUOTA_CHECK = ROOT / "schemas" / "examples" / "quota-check" / "valid" / "crosses-warning.json"

LINE_LIMIT = 1_048_576
DOCUMENT_LIMIT = 67_108_864
BOM = b"\xef\xbb\xbf"
EVENT_LINES = EVENTS.read_bytes().splitlines()  # evt_001 .. evt_006; evt_005 gives no record


@dataclass
class Result:
    status: int
    out: bytes
    err: bytes

    def report(self) -> list[dict[str, Any]]:
        """The problems on stderr (every line but the summary)."""
        return [json.loads(line) for line in self.err.splitlines()[:-1]]

    def summary(self) -> bytes:
        return self.err.splitlines()[-1]


def _cli(*args: str | Path, stdin: bytes | io.BufferedIOBase = b"") -> Result:
    """`meterspec ARGS` in-process, with stdin, stdout and stderr in memory (no file
    descriptors), usable inside hypothesis tests."""
    source = io.BytesIO(stdin) if isinstance(stdin, bytes) else stdin
    out, err = io.BytesIO(), io.BytesIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.TextIOWrapper(source)
    sys.stdout = io.TextIOWrapper(out, write_through=True)
    sys.stderr = io.TextIOWrapper(err, write_through=True)
    try:
        status = cli.main([str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        return Result(status, out.getvalue(), err.getvalue())
    finally:
        for stream in (sys.stdin, sys.stdout, sys.stderr):
            stream.detach()
        sys.stdin, sys.stdout, sys.stderr = saved


def _limit_memory() -> None:
    """In a child: at most 2 GiB of address space, so a runaway read fails fast."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def _script(*args: str | Path, stdin: Any = subprocess.DEVNULL, stdout: Any = subprocess.PIPE,
            stderr: Any = subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:
    assert SCRIPT.exists(), f"console script missing: {SCRIPT}"
    return subprocess.run([str(SCRIPT), *map(str, args)], stdin=stdin, stdout=stdout,
                          stderr=stderr, check=False, timeout=120, preexec_fn=_limit_memory)


def _ids(out: bytes, key: str = "sourceEventID") -> list[str]:
    return [json.loads(line)[key] for line in out.splitlines()]


def _rows(result: Result) -> list[tuple[int, str, str, str]]:
    return [(p["line"], p["code"], p["path"], p["requirement"]) for p in result.report()]


def _pad(line: bytes, size: int) -> bytes:
    """A JSON line made exactly `size` bytes long with trailing spaces (still the same JSON)."""
    assert len(line) <= size
    return line + b" " * (size - len(line))


def _no_traceback(err: bytes) -> None:
    assert b"Traceback" not in err


# ------------------------------------------------------------------ MS-ERR-012 lines

def test_a_line_over_one_mib_is_rejected_and_reading_goes_on() -> None:
    """Exactly 1 MiB (with LF or CRLF) is a line; one byte more is line-too-long at '' with
    its line number, counted as rejected, and the next line is read as usual."""
    data = b"".join([
        EVENT_LINES[0], b"\n",
        b"x" * (LINE_LIMIT + 1), b"\n",
        _pad(EVENT_LINES[1], LINE_LIMIT), b"\r\n",
        b"\n",
        _pad(EVENT_LINES[2], LINE_LIMIT + 1), b"\n",
        EVENT_LINES[3],  # last line, no line feed
    ])
    result = _cli("meter", "--config", CONFIG, "-", stdin=data)
    assert result.status == 1
    assert _ids(result.out) == ["evt_001", "evt_002", "evt_004"]
    assert _rows(result) == [(2, "line-too-long", "", "MS-ERR-012"),
                             (5, "line-too-long", "", "MS-ERR-012")]
    assert result.summary() == b"meterspec meter: 3 records, 2 rejected"


class _Generated(io.RawIOBase):
    """`size` bytes of '0' with no line feed, then `tail`: produced as they are read."""

    def __init__(self, size: int, tail: bytes) -> None:
        self.size, self.tail, self.sent = size, tail, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.sent < self.size:
            count = min(len(buffer), self.size - self.sent)
            buffer[:count] = b"0" * count
        else:
            rest = self.tail[self.sent - self.size:]
            count = min(len(buffer), len(rest))
            buffer[:count] = rest[:count]
        self.sent += count
        return count


def test_a_50_mb_line_is_never_held_in_memory() -> None:
    tail = b"\n" + EVENT_LINES[0] + b"\n"
    source = io.BufferedReader(_Generated(50_000_000, tail))
    tracemalloc.start()
    try:
        result = _cli("meter", "--config", CONFIG, "-", stdin=source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status == 1
    assert _ids(result.out) == ["evt_001"]
    assert _rows(result) == [(1, "line-too-long", "", "MS-ERR-012")]
    assert peak < 8 * LINE_LIMIT, f"peak {peak:,} bytes"


# Runs the CLI, then writes its own peak memory (VmHWM, KiB) to the file named by argv[1].
# getrusage's ru_maxrss is not used: it starts from the forking parent's peak, so under
# pytest-xdist a heavy worker would hide the child's own.
_PEAK = ("import re, sys\nfrom meterspec.cli import main\npeak_file = sys.argv.pop(1)\n"
         "try:\n    code = main(sys.argv[1:])\nfinally:\n"
         "    status = open('/proc/self/status').read()\n"
         "    open(peak_file, 'w').write(re.search(r'VmHWM:\\s*(\\d+)', status).group(1))\n"
         "sys.exit(code)\n")


def _max_rss_kib(args: list[str], feed: Iterator[bytes], out: Path) -> tuple[int, int]:
    """Run the CLI with `feed` written to its stdin pipe; its exit status and peak resident
    memory (KiB) as the process itself saw it."""
    peak = out.with_suffix(".peak")
    with out.open("wb") as sink:
        child = subprocess.Popen([sys.executable, "-c", _PEAK, str(peak), *args],
                                 stdin=subprocess.PIPE, stdout=sink,
                                 stderr=subprocess.DEVNULL, preexec_fn=_limit_memory)
        assert child.stdin is not None
        for chunk in feed:
            child.stdin.write(chunk)
        child.stdin.close()
        child.wait(timeout=120)
    return child.returncode, int(peak.read_text())


def test_a_50_mb_line_through_a_pipe_keeps_memory_bounded(tmp_path: Path) -> None:
    args = ["meter", "--config", str(CONFIG), "-"]
    good = EVENT_LINES[0] + b"\n"
    status, baseline = _max_rss_kib(args, iter([good]), tmp_path / "small.ndjson")
    assert status == 0
    block = b"0" * (1 << 20)
    feed = iter([*([block] * 50), b"\n", good])
    status, big = _max_rss_kib(args, feed, tmp_path / "big.ndjson")
    assert status == 1
    assert _ids((tmp_path / "big.ndjson").read_bytes()) == ["evt_001"]
    assert big - baseline < 20 * 1024, f"{baseline} KiB -> {big} KiB"


# ------------------------------------------------------------------ MS-ERR-012 documents

@pytest.mark.parametrize("args", [
    ["meter", "--config", "/dev/zero", str(EVENTS)],
    ["aggregate", "--request", "/dev/zero", str(EVENTS)],
    ["run", "--config", str(CONFIG), "--request", "/dev/zero", str(EVENTS)],
    ["invoice", "--request", "/dev/zero", str(EVENTS)],
    ["reconcile", "--request", "/dev/zero", "--closed", str(EVENTS), str(EVENTS)],
    ["project", "--request", "/dev/zero", "--as-of", "2024-01-01T00:00:00Z", str(EVENTS)],
    ["validate", "config", "/dev/zero"],
])
def test_an_endless_document_is_document_too_large_and_exit_2(args: list[str]) -> None:
    result = _script(*args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stdout == b""
    _no_traceback(result.stderr)
    assert b"/dev/zero" in result.stderr.splitlines()[0]
    [problem] = [json.loads(line) for line in result.stderr.splitlines()[1:]]
    assert (problem["code"], problem["path"], problem["requirement"]) == (
        "document-too-large", "", "MS-ERR-012")


def test_a_document_of_exactly_64_mib_is_read_and_one_byte_more_is_not(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_bytes(_pad(CONFIG.read_bytes(), DOCUMENT_LIMIT))
    assert _cli("meter", "--config", config, EVENTS).status == 0
    config.write_bytes(_pad(CONFIG.read_bytes(), DOCUMENT_LIMIT + 1))
    result = _cli("meter", "--config", config, EVENTS)
    assert (result.status, result.out) == (2, b"")
    first, *problems = result.err.splitlines()
    assert str(config).encode() in first
    assert [json.loads(p)["code"] for p in problems] == ["document-too-large"]


# ------------------------------------------------------------------ MS-ERR-007 the BOM

def test_a_bom_at_the_start_of_events_is_ignored_and_elsewhere_is_invalid_json() -> None:
    data = BOM + EVENT_LINES[0] + b"\n" + BOM + EVENT_LINES[1] + b"\n" + EVENT_LINES[2] + b"\n"
    result = _cli("meter", "--config", CONFIG, "-", stdin=data)
    assert result.status == 1
    assert _ids(result.out) == ["evt_001", "evt_003"]
    assert [(p["line"], p["code"], p["path"]) for p in result.report()] == [
        (2, "invalid-json", "")]


def test_a_bom_at_the_start_of_documents_is_ignored(tmp_path: Path) -> None:
    config, request = tmp_path / "config.json", tmp_path / "request.json"
    config.write_bytes(BOM + CONFIG.read_bytes())
    request.write_bytes(BOM + REQUEST.read_bytes())
    plain = _cli("run", "--config", CONFIG, "--request", REQUEST, EVENTS)
    with_bom = _cli("run", "--config", config, "--request", request, EVENTS)
    assert (with_bom.status, with_bom.out) == (0, plain.out)
    assert _cli("validate", "config", "-", stdin=BOM + CONFIG.read_bytes()).status == 0
    doubled = _cli("validate", "config", "-", stdin=BOM + BOM + CONFIG.read_bytes())
    assert doubled.status == 1
    assert [p["code"] for p in doubled.report()] == ["invalid-json"]


# ------------------------------------------------------------------ MS-ERR-013 same file

@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.ndjson"
    path.write_bytes(EVENTS.read_bytes() + b"{not json\n")
    return path


def _refused(result: Result | subprocess.CompletedProcess[bytes], *untouched: Path,
             contents: dict[Path, bytes]) -> None:
    status = result.status if isinstance(result, Result) else result.returncode
    err = result.err if isinstance(result, Result) else result.stderr
    out = result.out if isinstance(result, Result) else result.stdout
    assert status == 2
    assert out in (b"", None)
    assert err.startswith(b"meterspec: ") and err.count(b"\n") == 1, err
    _no_traceback(err)
    for path in untouched:
        assert path.read_bytes() == contents[path], f"{path} was changed"


@pytest.mark.parametrize("spelling", ["same", "relative", "dotted", "hard-link", "symlink"])
def test_errors_naming_the_events_file_is_refused(events: Path, tmp_path: Path,
                                                  spelling: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    other = {
        "same": events,
        "relative": Path(events.name),
        "dotted": tmp_path / "." / ".." / tmp_path.name / events.name,
        "hard-link": tmp_path / "link.ndjson",
        "symlink": tmp_path / "symlink.ndjson",
    }[spelling]
    if spelling == "hard-link":
        os.link(events, other)
    if spelling == "symlink":
        other.symlink_to(events)
    before = {events: events.read_bytes()}
    result = _cli("meter", "--config", CONFIG, "--errors", other, events)
    _refused(result, events, contents=before)


def _records_file(tmp_path: Path, name: str = "records.ndjson") -> Path:
    """The monthly-invoice example metered: records computed by `meter`, checked in
    test_invoices against hand-written expectations."""
    result = _cli("meter", "--config", MONTHLY / "config.json", MONTHLY / "events.ndjson")
    assert result.status == 0
    path = tmp_path / name
    path.write_bytes(result.out)
    return path


@pytest.mark.parametrize("case", ["errors=config", "errors=request", "errors=closed",
                                  "events=records", "events=request", "errors=records"])
def test_any_output_naming_any_input_is_refused(tmp_path: Path, case: str) -> None:
    records = _records_file(tmp_path)
    closed = tmp_path / "closed.ndjson"
    closed.write_bytes(_cli("invoice", "--request", INVOICE_REQUEST, records).out)
    request = tmp_path / "request.json"
    request.write_bytes(INVOICE_REQUEST.read_bytes())
    config = tmp_path / "config.json"
    config.write_bytes(CONFIG.read_bytes())
    link = tmp_path / "link"
    target = {"config": config, "request": request, "closed": closed,
              "records": records}[case.split("=")[1]]
    os.link(target, link)
    contents = {p: p.read_bytes() for p in (records, closed, request, config)}
    option = "--" + case.split("=")[0]
    runs: dict[str, list[str | Path]] = {
        "config": ["meter", "--config", config, EVENTS],
        "request": ["invoice", "--request", request, records],
        "closed": ["reconcile", "--request", request, "--closed", closed, records],
        "records": ["invoice", "--request", request, records],
    }
    args = runs[case.split("=")[1]]
    if option == "--events" and args[0] != "invoice":
        args = runs["records"]
    result = _cli(*args[:-1], option, link, args[-1])
    _refused(result, records, closed, request, config, contents=contents)


def test_stdout_appending_to_the_input_is_refused(events: Path) -> None:
    before = {events: events.read_bytes()}
    with events.open("ab") as same:
        result = _script("meter", "--config", CONFIG, events, stdout=same)
    _refused(result, events, contents=before)


def test_stdin_read_from_the_errors_file_is_refused(events: Path) -> None:
    before = {events: events.read_bytes()}
    with events.open("rb") as same:
        result = _script("meter", "--config", CONFIG, "--errors", events, "-", stdin=same)
    _refused(result, events, contents=before)


def test_the_report_on_stderr_appending_to_the_input_is_refused(events: Path) -> None:
    before = events.read_bytes()
    with events.open("ab") as same:
        result = _script("meter", "--config", CONFIG, events, stderr=same)
    assert result.returncode == 2
    assert result.stdout == b""
    after = events.read_bytes()
    assert after.startswith(before)
    assert after[len(before):].count(b"\n") == 1  # the one refusal line, nothing else


def test_devices_and_pipes_are_not_refused() -> None:
    """/dev/null as input and stdout is not one file written over; neither are pipes."""
    with open(os.devnull, "wb") as null:
        result = _script("meter", "--config", CONFIG, os.devnull, stdout=null)
    assert result.returncode == 0, result.stderr
    piped = _script("meter", "--config", CONFIG, "-", stdin=subprocess.PIPE)
    assert piped.returncode == 0, piped.stderr


def test_an_errors_file_that_does_not_exist_yet_is_fine(events: Path, tmp_path: Path) -> None:
    errors = tmp_path / "new" / ".." / "errors.ndjson"
    (tmp_path / "new").mkdir()
    result = _cli("meter", "--config", CONFIG, "--errors", errors, events)
    assert result.status == 1
    assert [json.loads(line)["code"] for line in errors.read_bytes().splitlines()] == [
        "invalid-json"]


def test_two_outputs_naming_one_file_are_refused(tmp_path: Path) -> None:
    """--errors and --events (or one of them and stdout) would truncate each other."""
    records = _records_file(tmp_path)
    shared = tmp_path / "out.ndjson"
    result = _cli("invoice", "--request", INVOICE_REQUEST, "--errors", shared, "--events",
                  tmp_path / "." / "out.ndjson", records)
    assert result.status == 2 and b"same file" in result.err
    assert not shared.exists()
    shared.write_bytes(b"")
    with shared.open("ab") as same:
        piped = _script("invoice", "--request", INVOICE_REQUEST, "--events", shared, records,
                        stdout=same)
    assert piped.returncode == 2 and b"same file" in piped.stderr
    assert shared.read_bytes() == b""


def test_stdout_and_stderr_on_one_file_are_allowed(events: Path, tmp_path: Path) -> None:
    """`> log 2>&1` puts records and the report in one file on purpose."""
    log = tmp_path / "log"
    with log.open("wb") as both:
        result = _script("meter", "--config", CONFIG, events, stdout=both, stderr=both)
    assert result.returncode == 1
    assert b"invalid-json" in log.read_bytes() and b"rec_" in log.read_bytes()


# ------------------------------------------------------------------ MS-ERR-013 failing outputs

def _one_line(err: bytes, *words: bytes) -> None:
    _no_traceback(err)
    assert err.count(b"\n") == 1 and err.endswith(b"\n"), err
    for word in words:
        assert word in err, (word, err)


def test_an_error_report_that_cannot_be_written_exits_2(events: Path) -> None:
    result = _script("meter", "--config", CONFIG, "--errors", "/dev/full", events)
    assert result.returncode == 2
    assert result.stderr == (b"meterspec: cannot write the error report to /dev/full: "
                             b"No space left on device\n")


def test_events_that_cannot_be_written_exit_2(tmp_path: Path) -> None:
    records = _records_file(tmp_path)
    result = _script("invoice", "--request", INVOICE_REQUEST, "--events", "/dev/full", records)
    assert result.returncode == 2
    _one_line(result.stderr, b"/dev/full", b"No space left on device")


@pytest.mark.parametrize("copies", [1, 2000])  # a final flush, and a write in the middle
def test_stdout_that_cannot_be_written_exits_2(tmp_path: Path, copies: int) -> None:
    events = tmp_path / "events.ndjson"
    events.write_bytes(EVENTS.read_bytes() * copies)
    with open("/dev/full", "wb") as full:
        result = _script("meter", "--config", CONFIG, events, stdout=full)
    assert result.returncode == 2
    _one_line(result.stderr, b"standard output", b"No space left on device")


class _Full(io.RawIOBase):
    """A device that accepts nothing while `full`: every write fails with ENOSPC."""

    full = True

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return len(data)


def test_a_stdout_whose_flush_fails_at_the_end_exits_2() -> None:
    """The in-memory stdout buffers the little output, then fails when it is flushed."""
    device, err = _Full(), io.BytesIO()
    saved = sys.stdout, sys.stderr
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(device, 1 << 16))
    sys.stderr = io.TextIOWrapper(err, write_through=True)
    try:
        status = cli.main(["meter", "--config", str(CONFIG), str(EVENTS)])
        message = err.getvalue()
    finally:
        device.full = False  # let the abandoned buffer go quietly
        sys.stderr.detach()
        sys.stdout, sys.stderr = saved
    assert status == 2
    _one_line(message, b"standard output", b"No space left on device")


# ------------------------------------------------------------------ MS-ERR-013 `| head -c1`

@pytest.mark.parametrize(("bad", "status"), [(True, 1), (False, 0)])
def test_a_reader_that_leaves_early_stops_the_command(tmp_path: Path, bad: bool,
                                                      status: int) -> None:
    events = tmp_path / "events.ndjson"
    events.write_bytes((b"{not json\n" if bad else b"") + EVENTS.read_bytes() * 20_000)
    errors = tmp_path / "stderr"
    with events.open("rb") as source, errors.open("wb") as err:
        child = subprocess.Popen([str(SCRIPT), "meter", "--config", str(CONFIG), "-"],
                                 stdin=source, stdout=subprocess.PIPE, stderr=err)
        assert child.stdout is not None
        assert len(child.stdout.read(1)) == 1
        child.stdout.close()
        assert child.wait(timeout=120) == status
    summary = errors.read_bytes()
    _no_traceback(summary)
    last = summary.splitlines()[-1]
    assert b"closed by its reader" in last
    assert (b"1 rejected" if bad else b"0 rejected") in last


# ------------------------------------------------------------------ MS-ING-020 record streams

def test_a_records_file_fed_twice_is_counted_once(tmp_path: Path) -> None:
    records = _cli("meter", "--config", CONFIG, EVENTS).out
    once = _cli("aggregate", "--request", REQUEST, "-", stdin=records)
    restamped = b"".join(line[:-1] + b',"meteredAt":"2024-03-01T00:00:00Z"}\n'
                         for line in records.splitlines())
    twice = _cli("aggregate", "--request", REQUEST, "-", stdin=records + restamped)
    assert (twice.status, twice.out) == (0, once.out)
    assert twice.err == b"meterspec aggregate: 6 readings, 5 duplicates dropped, 0 rejected\n"


def test_a_conflicting_repeat_is_rejected_and_the_first_record_billed(tmp_path: Path) -> None:
    records = _records_file(tmp_path).read_bytes().splitlines()
    changed = json.loads(records[1])
    changed["measurement"]["quantity"] = str(int(changed["measurement"]["quantity"]) + 1000)
    stream = b"\n".join([*records, json.dumps(changed).encode(), records[0]]) + b"\n"
    result = _cli("invoice", "--request", INVOICE_REQUEST, "-", stdin=stream)
    alone = _cli("invoice", "--request", INVOICE_REQUEST, "-", stdin=b"\n".join(records))
    assert result.status == 1
    assert result.out == alone.out
    [problem] = result.report()
    assert problem["line"] == len(records) + 1
    assert (problem["code"], problem["path"], problem["requirement"]) == (
        "record-conflict", "", "MS-ING-020")
    assert "eventID" not in problem
    assert result.summary() == b"meterspec invoice: 2 invoices, 1 duplicate dropped, 1 rejected"


def test_reconcile_and_project_count_each_record_once(tmp_path: Path) -> None:
    records = _records_file(tmp_path)
    closed = tmp_path / "closed.ndjson"
    closed.write_bytes(_cli("invoice", "--request", INVOICE_REQUEST, records).out)
    late = _cli("meter", "--config", MONTHLY / "config.json",
                MONTHLY / "late-events.ndjson").out
    once = records.read_bytes() + late
    twice = records.read_bytes() + late + late + records.read_bytes()
    count = len(once.splitlines())
    runs: list[list[str | Path]] = [
        ["reconcile", "--request", INVOICE_REQUEST, "--closed", closed],
        ["project", "--request", INVOICE_REQUEST, "--as-of", "2024-02-20T00:00:00Z"]]
    for args in runs:
        single = _cli(*args, "-", stdin=once)
        double = _cli(*args, "-", stdin=twice)
        assert single.status == double.status == 0
        assert single.out and double.out == single.out
        assert b", %d duplicates dropped, 0 rejected" % count in double.summary()


@pytest.mark.parametrize("command", ["aggregate", "invoice", "reconcile", "project"])
def test_help_says_repeats_count_once(command: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "duplicates are dropped" in text and "record-conflict" in text


# Records of the invoice request below and of the aggregation request: the conftest axes
# (workspaces w1/w2, universes u1/u2, subjects s1/s2, calls/bytes, 2024-01-01 08:30-15:00).
BILL = {
    "workspaceID": "w1", "universeID": "u1", "at": "2024-01-02T00:00:00Z",
    "plans": [{"id": "p", "version": 1, "currency": "USD",
               "effectiveFrom": "2023-01-01T00:00:00Z",
               "charges": [{"id": "c", "model": "per-unit", "unit": "calls", "unitPrice": "0.5"},
                           {"id": "b", "model": "per-unit", "unit": "bytes", "unitPrice": "2"}]}],
    "usage": {"calls": {"aggregation": "sum"}, "bytes": {"aggregation": "latest"}},
    "subscriptions": [{"subject": s, "planID": "p", "cycle": {"anchorDate": "2024-01-01"}}
                      for s in ("s1", "s2")],
}
READINGS = AggregationRequest("latest", tumbling=Tumbling(
    "hour", "2024-01-01T09:00:00Z", "2024-01-01T14:00:00Z"), group_by=["region"])


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[MeterRecord], list[MeterRecord], int]:
    """Distinct records (unique ids), and a stream of them where each first occurrence comes
    in the distinct order and repeats (some metered later) are spread after their first."""
    pool = draw(st.lists(records_strategy, max_size=15))
    distinct = [replace(r, id=f"rec_{i}") for i, r in enumerate(pool)]
    repeats: list[list[MeterRecord]] = [[] for _ in distinct]
    count = 0
    for index, first in enumerate(distinct):
        for _ in range(draw(st.integers(0, 2))):
            where = draw(st.integers(index, len(distinct) - 1))
            stamp = draw(st.sampled_from([msgspec.UNSET, "2024-02-01T00:00:00Z"]))
            repeats[where].append(replace(first, metered_at=stamp))
            count += 1
    stream = [r for first, later in zip(distinct, repeats, strict=True) for r in (first, *later)]
    return distinct, stream, count


def _ndjson(values: list[Any]) -> bytes:
    return b"".join(msgspec.json.encode(v) + b"\n" for v in values)


def _summary_duplicates(result: Result) -> int:
    part = [p for p in result.summary().split(b", ") if b"duplicate" in p]
    return int(part[0].split()[0]) if part else 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_repeats_never_change_readings(case: tuple[list[MeterRecord], list[MeterRecord],
                                                   int]) -> None:
    distinct, stream, repeats = case
    request = msgspec.json.encode(READINGS)
    result = _cli_with_request("aggregate", request, _ndjson(stream))
    assert result.status == 0, result.err
    assert result.out == _ndjson(aggregate(distinct, READINGS))
    assert _summary_duplicates(result) == repeats


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_repeats_never_change_invoices(case: tuple[list[MeterRecord], list[MeterRecord],
                                                   int]) -> None:
    distinct, stream, repeats = case
    request = json.dumps(BILL).encode()
    result = _cli_with_request("invoice", request, _ndjson(stream))
    assert result.status == 0, result.err
    expected = build_invoices(msgspec.json.decode(request, type=InvoiceRequest), distinct)
    assert result.out == _ndjson(expected)
    assert _summary_duplicates(result) == repeats


def _cli_with_request(command: str, request: bytes, stdin: bytes) -> Result:
    with _temporary_file(request) as path:
        return _cli(command, "--request", path, "-", stdin=stdin)


@contextmanager
def _temporary_file(data: bytes) -> Iterator[Path]:
    """A request file for one hypothesis example (tmp_path is one per test, not example)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "request.json"
        path.write_bytes(data)
        yield path


# ------------------------------------------------------------------ the other inputs

def test_quota_reports_a_long_line_and_decides_the_next() -> None:
    check = json.dumps(json.loads(QUOTA_CHECK.read_bytes())).encode()
    result = _cli("quota", "-", stdin=b"[" * (LINE_LIMIT + 10) + b"\n" + check + b"\n")
    assert result.status == 1
    assert len(result.out.splitlines()) == 1
    assert _rows(result) == [(1, "line-too-long", "", "MS-ERR-012")]


def test_validate_lines_reports_a_long_line() -> None:
    line = json.dumps(json.loads(QUOTA_CHECK.read_bytes())).encode()
    data = BOM + line + b"\n" + _pad(line, LINE_LIMIT + 1) + b"\n" + line + b"\n"
    result = _cli("validate", "quota-check", "--lines", "-", stdin=data)
    assert result.status == 1
    assert _rows(result) == [(2, "line-too-long", "", "MS-ERR-012")]
    assert result.summary() == b"meterspec validate: 2 valid documents, 1 rejected"


def test_reconcile_closed_with_a_long_line_is_unusable(tmp_path: Path) -> None:
    records = _records_file(tmp_path)
    closed = tmp_path / "closed.ndjson"
    invoices = _cli("invoice", "--request", INVOICE_REQUEST, records).out
    closed.write_bytes(BOM + invoices)
    ok = _cli("reconcile", "--request", INVOICE_REQUEST, "--closed", closed, records)
    assert ok.status == 0, ok.err
    closed.write_bytes(invoices + b" " * (LINE_LIMIT + 1) + b"\n")
    result = _cli("reconcile", "--request", INVOICE_REQUEST, "--closed", closed, records)
    assert (result.status, result.out) == (2, b"")
    first, *rest = result.err.splitlines()
    assert str(closed).encode() in first
    assert [json.loads(line)["code"] for line in rest] == ["line-too-long"]


def test_reconcile_closed_endless_is_unusable() -> None:
    result = _script("reconcile", "--request", INVOICE_REQUEST, "--closed", "/dev/zero",
                     str(EVENTS))
    assert result.returncode == 2
    _no_traceback(result.stderr)
    assert b"line-too-long" in result.stderr
