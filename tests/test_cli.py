"""The `meterspec` command (MS-ERR-004, MS-ERR-005): outputs on examples/api-calls computed by
hand, `run` == `meter | aggregate`, stdin, batches with bad lines, exit statuses, --errors,
--metered-at. Most runs are in-process through meterspec.cli.main; a few go through the
installed console script to see real exit codes and stderr (no traceback)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing

from meterspec import cli

ROOT = Path(__file__).resolve().parents[1]
API_CALLS = ROOT / "examples" / "api-calls"
CONFIG = API_CALLS / "config.json"
REQUEST = API_CALLS / "request.json"
EVENTS = API_CALLS / "events.ndjson"
SCHEMA_EXAMPLES = ROOT / "schemas" / "examples"
SCRIPT = Path(sys.executable).with_name("meterspec")


@dataclass
class Result:
    status: int
    out: bytes
    err: bytes

    def err_lines(self) -> list[bytes]:
        return self.err.splitlines()


class Cli:
    """Call `meterspec ARGS...` in-process; `stdin` bytes feed '-'. After a call, `unread` is
    how many stdin bytes the command left unread."""

    def __init__(self, capture: pytest.CaptureFixture[bytes],
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.capture, self.monkeypatch, self.unread = capture, monkeypatch, 0

    def __call__(self, *args: str | Path, stdin: bytes = b"") -> Result:
        self.capture.readouterr()
        source = io.BytesIO(stdin)
        self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(source))
        status = cli.main([str(a) for a in args])
        captured = self.capture.readouterr()
        self.unread = len(stdin) - source.tell()
        return Result(status, captured.out, captured.err)


@pytest.fixture
def meterspec(capsysbinary: pytest.CaptureFixture[bytes],
              monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsysbinary, monkeypatch)


def _script(*args: str | Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    assert SCRIPT.exists(), f"console script missing: {SCRIPT}"
    return subprocess.run([str(SCRIPT), *map(str, args)], input=stdin, capture_output=True,
                          check=False, timeout=60)


@cache
def _problem_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / "schemas" / "problem.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema, registry=referencing.Registry())


def _problems(report: bytes) -> list[dict[str, Any]]:
    """Parse an error report: one JSON problem per line, each valid per problem.schema.json."""
    problems = [json.loads(line) for line in report.splitlines()]
    for problem in problems:
        assert _problem_validator().is_valid(problem), problem
    return problems


def _ndjson(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def _ms_id(prefix: str, fields: list[str]) -> str:
    """MS-ID-001 written here independently: '<utf-8 length>:<bytes>' per field, SHA-256."""
    data = b"".join(str(len(f.encode())).encode() + b":" + f.encode() for f in fields)
    return prefix + hashlib.sha256(data).hexdigest()[:32]


# ------------------------------------------------------------------ api-calls, by hand

def _expected_records(metered_at: str | None = None) -> list[dict[str, Any]]:
    """examples/api-calls/events.ndjson under config.json: one constant `1` api_calls per
    api.request event (evt_005 is a page.view: no record), dimensions endpoint and region,
    recordedAt in canonical UTC (evt_004's +09:00 becomes midnight UTC)."""
    rows = [
        ("evt_001", "production", "customer:cust_123", "2024-01-15T10:30:00Z",
         "/api/users", "us-east"),
        ("evt_002", "production", "customer:cust_123", "2024-01-15T23:59:59.999999Z",
         "/api/orders", "us-east"),
        ("evt_003", "production", "customer:cust_123", "2024-01-16T00:00:00Z",
         "/api/users", "eu-west"),
        ("evt_004", "production", "customer:cust_456", "2024-01-16T00:00:00Z",
         "/api/users", "ap-south"),
        ("evt_006", "staging", "customer:cust_123", "2024-01-15T11:00:00Z",
         "/api/users", "us-east"),
    ]
    out = []
    for event_id, universe, subject, recorded_at, endpoint, region in rows:
        record: dict[str, Any] = {
            "id": _ms_id("rec_", ["meterspec/record/v1", "acme-prod", universe, event_id,
                                  "api_calls", "constant:1"]),
            "workspaceID": "acme-prod", "universeID": universe, "subject": subject,
            "recordedAt": recorded_at, "measurement": {"quantity": "1", "unit": "api_calls"},
            "dimensions": {"endpoint": endpoint, "region": region}, "sourceEventID": event_id,
        }
        if metered_at is not None:
            record["meteredAt"] = metered_at
        out.append(record)
    return out


DAY_15 = ("2024-01-15T00:00:00Z", "2024-01-16T00:00:00Z")
DAY_16 = ("2024-01-16T00:00:00Z", "2024-01-17T00:00:00Z")


def _expected_readings() -> list[dict[str, Any]]:
    """Sum per (workspace, universe, subject, unit) and UTC day; every active group gets both
    days, an empty one as "0" with recordCount 0 (MS-AGG-006, MS-AGG-010, MS-AGG-017)."""
    rows = [
        ("production", "customer:cust_123", DAY_15, "2", 2),  # evt_001 + evt_002
        ("production", "customer:cust_123", DAY_16, "1", 1),  # evt_003 (start is inside)
        ("production", "customer:cust_456", DAY_15, "0", 0),
        ("production", "customer:cust_456", DAY_16, "1", 1),  # evt_004
        ("staging", "customer:cust_123", DAY_15, "1", 1),     # evt_006: universes never mix
        ("staging", "customer:cust_123", DAY_16, "0", 0),
    ]
    return [{
        "id": _ms_id("rdg_", ["meterspec/reading/v1", "acme-prod", universe, subject,
                              "api_calls", "sum", "", start, end, "0"]),
        "workspaceID": "acme-prod", "universeID": universe, "subject": subject,
        "measurement": {"quantity": quantity, "unit": "api_calls"}, "aggregation": "sum",
        "window": {"start": start, "end": end}, "recordCount": count,
    } for universe, subject, (start, end), quantity, count in rows]


def test_meter_api_calls(meterspec: Cli) -> None:
    result = meterspec("meter", "--config", CONFIG, EVENTS)
    assert result.status == 0
    assert _ndjson(result.out) == _expected_records()
    assert result.err == b"meterspec meter: 5 records, 0 rejected\n"


def test_aggregate_api_calls(meterspec: Cli, tmp_path: Path) -> None:
    records = tmp_path / "records.ndjson"
    records.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in _expected_records()))
    result = meterspec("aggregate", "--request", REQUEST, records)
    assert result.status == 0
    assert _ndjson(result.out) == _expected_readings()
    assert result.err == b"meterspec aggregate: 6 readings, 0 rejected\n"


def test_run_api_calls(meterspec: Cli) -> None:
    result = meterspec("run", "--config", CONFIG, "--request", REQUEST, EVENTS)
    assert result.status == 0
    assert _ndjson(result.out) == _expected_readings()
    assert result.err == b"meterspec run: 6 readings, 0 rejected\n"


@pytest.mark.parametrize(("args", "summary"), [
    (("validate", "config", CONFIG), b"1 valid documents"),
    (("validate", "request", REQUEST), b"1 valid documents"),
    (("validate", "event", EVENTS), b"6 valid documents"),  # .ndjson: one event per line
])
def test_validate_api_calls(meterspec: Cli, args: tuple[str | Path, ...],
                            summary: bytes) -> None:
    result = meterspec(*args)
    assert result.status == 0
    assert result.out == b""
    assert result.err == b"meterspec validate: " + summary + b", 0 rejected\n"


def test_output_is_deterministic_and_in_canonical_compact_form(meterspec: Cli) -> None:
    """MS-ID-004: two runs give the same bytes; each line is one compact JSON object."""
    first = meterspec("run", "--config", CONFIG, "--request", REQUEST, EVENTS).out
    second = meterspec("run", "--config", CONFIG, "--request", REQUEST, EVENTS).out
    assert first == second
    for line in first.splitlines():
        assert line == json.dumps(json.loads(line), separators=(",", ":")).encode()


# ------------------------------------------------------------------ run == meter | aggregate

REQUESTS: dict[str, dict[str, Any]] = {
    "example": json.loads(REQUEST.read_text()),
    "count-overlapping-group-by-region": {
        "aggregation": "count", "groupBy": ["region", "missing"], "windows": [
            {"start": "2024-01-15T00:00:00Z", "end": "2024-01-17T00:00:00Z"},
            {"start": "2024-01-15T11:00:00Z", "end": "2024-01-16T00:00:00.000001Z"}]},
    "latest-hour-new-york": {"aggregation": "latest", "tumbling": {
        "size": "hour", "timeZone": "America/New_York", "start": "2024-01-15T10:00:00-05:00",
        "end": "2024-01-15T20:00:00-05:00"}},
    "max": {"aggregation": "max", "tumbling": {"size": "month", "start": "2024-01-01T00:00:00Z",
                                               "end": "2024-03-01T00:00:00Z"}},
    "min": {"aggregation": "min", "windows": [
        {"start": "2024-01-15T10:30:00Z", "end": "2024-01-16T00:00:00Z"}]},
    "time-weighted-avg": {"aggregation": "time-weighted-avg", "scale": 3, "windows": [
        {"start": "2024-01-15T12:00:00Z", "end": "2024-01-16T12:00:00Z"}]},
    "unique-count": {"aggregation": "unique-count", "dimension": "endpoint",
                     "groupBy": ["region"], "tumbling": {
                         "size": "day", "start": "2024-01-15T00:00:00Z",
                         "end": "2024-01-17T00:00:00Z"}},
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_run_equals_meter_piped_into_aggregate(meterspec: Cli, tmp_path: Path,
                                               name: str) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps(REQUESTS[name]))
    metered = meterspec("meter", "--config", CONFIG, EVENTS)
    aggregated = meterspec("aggregate", "--request", request, "-", stdin=metered.out)
    run = meterspec("run", "--config", CONFIG, "--request", request, EVENTS)
    assert (metered.status, aggregated.status, run.status) == (0, 0, 0)
    assert run.out, "no readings at all: the comparison would be empty"
    assert run.out == aggregated.out


def test_run_equals_meter_piped_into_aggregate_through_the_console_script() -> None:
    metered = _script("meter", "--config", CONFIG, EVENTS)
    aggregated = _script("aggregate", "--request", REQUEST, "-", stdin=metered.stdout)
    run = _script("run", "--config", CONFIG, "--request", REQUEST, EVENTS)
    assert (metered.returncode, aggregated.returncode, run.returncode) == (0, 0, 0)
    assert run.stdout == aggregated.stdout
    assert _ndjson(run.stdout) == _expected_readings()


@pytest.mark.parametrize("command", ["meter", "run"])
def test_stdin_gives_the_same_output_as_the_file(meterspec: Cli, command: str) -> None:
    args = ["--config", str(CONFIG)] + (["--request", str(REQUEST)] if command == "run" else [])
    from_file = meterspec(command, *args, EVENTS)
    from_stdin = meterspec(command, *args, "-", stdin=EVENTS.read_bytes())
    assert from_file.status == from_stdin.status == 0
    assert from_file.out == from_stdin.out
    assert from_file.err == from_stdin.err


def test_validate_reads_one_document_from_stdin(meterspec: Cli) -> None:
    assert meterspec("validate", "config", "-", stdin=CONFIG.read_bytes()).status == 0
    bad = meterspec("validate", "config", "-", stdin=b'{"measurements": []}')
    assert bad.status == 1
    [problem] = _problems(bad.err_lines()[0])
    assert (problem["code"], problem["path"]) == ("empty-list", "/measurements")


# ------------------------------------------------------------------ batches with bad lines

BATCH_CONFIG = {"measurements": [
    {"unit": "tokens", "sourceProperty": "tokens", "eventTypes": ["llm.completion"]},
    {"unit": "calls", "quantity": "1"},
]}


def _event(event_id: str, **changes: Any) -> bytes:
    event: dict[str, Any] = {
        "id": event_id, "workspaceID": "ws", "universeID": "prod", "type": "llm.completion",
        "subject": "cust", "time": "2024-01-15T10:00:00Z", "properties": {"tokens": "10"}}
    event.update(changes)
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


GOOD_A = _event("evt_a")
GOOD_B = _event("evt_b", time="2024-01-15T11:00:00+01:00", properties={"tokens": "2.50"})
GOOD_C = _event("evt_c", type="page.view", properties={})  # no tokens: only `calls` matches
BATCH_LINES = [
    GOOD_A,                                                   # 1
    b"{not json",                                             # 2 invalid-json
    b"",                                                      # 3 blank: skipped
    _event("evt_qty", properties={"tokens": "1,000"}),        # 4 invalid-quantity
    _event("evt_nosubject", subject=None),                    # 5 missing-field
    _event("evt_feb30", time="2024-02-30T10:00:00Z"),         # 6 invalid-timestamp
    GOOD_B + b"\r",                                           # 7 CRLF line ending
    b"  \t ",                                                 # 8 blank: skipped
    _event("evt_nosource", properties={"other": "1"}),        # 9 missing-source-property
    b"\xff\xfe{}",                                            # 10 not UTF-8: invalid-json
    GOOD_C,                                                   # 11, no final newline
]
BATCH = b"\n".join(BATCH_LINES)
# (line, eventID or None, code, path), in input order.
BATCH_PROBLEMS = [
    (2, None, "invalid-json", ""),
    (4, "evt_qty", "invalid-quantity", "/properties/tokens"),
    (5, "evt_nosubject", "missing-field", "/subject"),
    (6, "evt_feb30", "invalid-timestamp", "/time"),
    (9, "evt_nosource", "missing-source-property", "/properties/tokens"),
    (10, None, "invalid-json", ""),
]


def _report_rows(report: bytes) -> list[tuple[int, str | None, str, str]]:
    return [(p["line"], p.get("eventID"), p["code"], p["path"]) for p in _problems(report)]


@pytest.fixture
def batch(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(BATCH_CONFIG))
    events = tmp_path / "events.ndjson"
    events.write_bytes(BATCH)
    return config, events


def test_meter_batch_reports_every_bad_line_and_keeps_every_good_one(
        meterspec: Cli, batch: tuple[Path, Path]) -> None:
    """MS-ERR-004, MS-ERR-005: each bad line is reported with its line number, eventID and
    code; a line that is not JSON (or not UTF-8) is invalid-json at '' (MS-ERR-003); good lines
    still give their records, with canonical quantities ("2.50" -> "2.5", MS-QTY-004) and
    times."""
    config, events = batch
    result = meterspec("meter", "--config", config, events)
    assert result.status == 1
    *report, summary = result.err_lines()
    assert summary == b"meterspec meter: 5 records, 6 rejected"
    assert _report_rows(b"\n".join(report)) == BATCH_PROBLEMS
    records = _ndjson(result.out)
    assert [(r["sourceEventID"], r["measurement"]) for r in records] == [
        ("evt_a", {"quantity": "10", "unit": "tokens"}),
        ("evt_a", {"quantity": "1", "unit": "calls"}),
        ("evt_b", {"quantity": "2.5", "unit": "tokens"}),
        ("evt_b", {"quantity": "1", "unit": "calls"}),
        ("evt_c", {"quantity": "1", "unit": "calls"}),
    ]
    assert records[2]["recordedAt"] == "2024-01-15T10:00:00Z"


def test_errors_file_takes_the_report_and_stderr_keeps_only_the_summary(
        meterspec: Cli, batch: tuple[Path, Path], tmp_path: Path) -> None:
    config, events = batch
    errors = tmp_path / "errors.ndjson"
    with_file = meterspec("meter", "--config", config, "--errors", errors, events)
    assert with_file.status == 1
    assert with_file.err == b"meterspec meter: 5 records, 6 rejected\n"
    assert _report_rows(errors.read_bytes()) == BATCH_PROBLEMS
    on_stderr = meterspec("meter", "--config", config, events)
    assert with_file.out == on_stderr.out
    # The report is itself a stream of valid problem documents.
    assert meterspec("validate", "problem", "--lines", errors).status == 0


def test_run_batch_loses_no_good_event(meterspec: Cli, batch: tuple[Path, Path],
                                       tmp_path: Path) -> None:
    """MS-ERR-005: readings are exactly those of the good lines alone."""
    config, events = batch
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"aggregation": "sum", "tumbling": {
        "size": "day", "start": "2024-01-15T00:00:00Z", "end": "2024-01-16T00:00:00Z"}}))
    good = tmp_path / "good.ndjson"
    good.write_bytes(b"\n".join([GOOD_A, GOOD_B, GOOD_C]) + b"\n")
    result = meterspec("run", "--config", config, "--request", request, events)
    clean = meterspec("run", "--config", config, "--request", request, good)
    assert (result.status, clean.status) == (1, 0)
    assert result.out == clean.out
    assert [(r["measurement"]["unit"], r["measurement"]["quantity"], r["recordCount"])
            for r in _ndjson(result.out)] == [("calls", "3", 3), ("tokens", "12.5", 2)]
    assert _report_rows(b"\n".join(result.err_lines()[:-1])) == BATCH_PROBLEMS


def test_validate_event_lines_reports_shape_problems_with_line_numbers(
        meterspec: Cli, batch: tuple[Path, Path]) -> None:
    """Without a config, "1,000" and a missing source property are not event problems."""
    _, events = batch
    result = meterspec("validate", "event", "--lines", events)
    assert result.status == 1
    *report, summary = result.err_lines()
    assert summary == b"meterspec validate: 5 valid documents, 4 rejected"
    assert _report_rows(b"\n".join(report)) == [
        row for row in BATCH_PROBLEMS if row[0] in (2, 5, 6, 10)]


def test_aggregate_batch_with_bad_records(meterspec: Cli, tmp_path: Path) -> None:
    good = json.dumps(_expected_records()[0]).encode()
    bad_quantity = json.dumps({**_expected_records()[1], "measurement": {
        "quantity": "NaN", "unit": "api_calls"}}).encode()
    records = tmp_path / "records.ndjson"
    # A good record of the same group and day, not `good` again: a repeated record counts
    # once (MS-ING-020).
    other = json.dumps(_expected_records()[1]).encode()
    records.write_bytes(b"\n\n".join([good, b"[]", bad_quantity, other]) + b"\n\n")
    result = meterspec("aggregate", "--request", REQUEST, records)
    assert result.status == 1
    *report, summary = result.err_lines()
    assert summary == b"meterspec aggregate: 2 readings, 2 rejected"
    assert _report_rows(b"\n".join(report)) == [
        (3, None, "wrong-type", ""), (5, None, "invalid-quantity", "/measurement/quantity")]
    assert [(r["measurement"]["quantity"], r["recordCount"]) for r in _ndjson(result.out)] == [
        ("2", 2), ("0", 0)]


def test_blank_only_input_is_not_an_error(meterspec: Cli) -> None:
    result = meterspec("meter", "--config", CONFIG, "-", stdin=b"\n\n  \n")
    assert (result.status, result.out) == (0, b"")
    assert result.err == b"meterspec meter: 0 records, 0 rejected\n"


# ------------------------------------------------------------------ the CLI agrees with validate

def _one_line(path: Path) -> bytes:
    return json.dumps(json.loads(path.read_bytes()), ensure_ascii=False).encode()


def _expected_pairs(key: str) -> set[tuple[str, str]]:
    expected = json.loads((SCHEMA_EXAMPLES / "expected-errors.json").read_text())
    return {(e["code"], e["path"]) for e in expected[key]}


def _cases(kind: str, bugs: dict[str, str]) -> list[Any]:
    keys = sorted(str(p.relative_to(SCHEMA_EXAMPLES))
                  for p in (SCHEMA_EXAMPLES / kind / "invalid").glob("*.json"))
    return [pytest.param(k, id=k, marks=[pytest.mark.xfail(strict=True, reason=bugs[k])]
                         if k in bugs else []) for k in keys]


EVENT_BUGS: dict[str, str] = {}
RECORD_BUGS: dict[str, str] = {}


@pytest.mark.parametrize("key", _cases("event", EVENT_BUGS))
def test_meter_rejects_each_invalid_event_example_between_good_lines(
        meterspec: Cli, tmp_path: Path, key: str) -> None:
    """Every invalid event example, as line 2 of 3, is reported by `meter` with its line, its
    eventID and exactly the problems `validate` gives; lines 1 and 3 still yield records."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"measurements": [{"unit": "calls", "quantity": "1"}]}))
    events = tmp_path / "events.ndjson"
    events.write_bytes(b"\n".join([GOOD_A, _one_line(SCHEMA_EXAMPLES / key), GOOD_B]) + b"\n")
    result = meterspec("meter", "--config", config, events)
    assert result.status == 1
    assert [r["sourceEventID"] for r in _ndjson(result.out)] == ["evt_a", "evt_b"]
    *report, summary = result.err_lines()
    assert summary == b"meterspec meter: 2 records, 1 rejected"
    problems = _problems(b"\n".join(report))
    assert {p["line"] for p in problems} == {2}
    assert {(p["code"], p["path"]) for p in problems} == _expected_pairs(key)
    document = json.loads((SCHEMA_EXAMPLES / key).read_bytes())
    event_id = document.get("id") if isinstance(document, dict) else None
    usable = isinstance(event_id, str) and event_id != ""
    assert {p.get("eventID") for p in problems} == {event_id if usable else None}


@pytest.mark.parametrize("key", _cases("record", RECORD_BUGS))
def test_aggregate_rejects_each_invalid_record_example(meterspec: Cli, tmp_path: Path,
                                                       key: str) -> None:
    """`aggregate` rejects what `validate record` rejects, with the same problems."""
    good = json.dumps(_expected_records()[0]).encode()
    records = tmp_path / "records.ndjson"
    records.write_bytes(b"\n".join([good, _one_line(SCHEMA_EXAMPLES / key)]) + b"\n")
    result = meterspec("aggregate", "--request", REQUEST, records)
    assert result.status == 1
    *report, summary = result.err_lines()
    assert summary == b"meterspec aggregate: 2 readings, 1 rejected"
    problems = _problems(b"\n".join(report))
    assert {p["line"] for p in problems} == {2}
    assert {(p["code"], p["path"]) for p in problems} == _expected_pairs(key)


# ------------------------------------------------------------------ unusable inputs: exit 2

def _assert_clean_exit_2(result: Result) -> None:
    assert result.status == 2
    assert result.out == b""
    assert b"Traceback" not in result.err


@pytest.mark.parametrize(("document", "problem"), [
    (b'{"measurements": []}', ("empty-list", "/measurements")),
    (b"{not json", ("invalid-json", "")),
    (b'{"measurements": [{"unit": "a", "quantity": "1"}, {"unit": "a", "quantity": "1.0"}]}',
     ("duplicate-measurement", "/measurements/1")),
])
def test_bad_config_exits_2_before_reading_events(meterspec: Cli, tmp_path: Path,
                                                  document: bytes,
                                                  problem: tuple[str, str]) -> None:
    config = tmp_path / "config.json"
    config.write_bytes(document)
    for args in (("meter", "--config", config), ("run", "--config", config, "--request",
                                                 REQUEST)):
        result = meterspec(*args, "-", stdin=EVENTS.read_bytes())
        _assert_clean_exit_2(result)
        assert meterspec.unread == len(EVENTS.read_bytes()), "events were read"
        first, *report = result.err_lines()
        assert str(config).encode() in first
        assert [(p["code"], p["path"]) for p in _problems(b"\n".join(report))] == [problem]


@pytest.mark.parametrize(("document", "problems"), [
    (b'{"aggregation": "sum"}', [("invalid-request", "")]),
    (b'{"aggregation": "sum", "tumbling": {"size": "day", "start": "2024-01-15T00:00:00Z", '
     b'"end": "2024-01-17T00:00:00Z", "timeZone": "Mars/Olympus"}}',
     [("invalid-time-zone", "/tumbling/timeZone")]),
    (b'{"aggregation": "avg", "windows": []}',
     [("empty-list", "/windows"), ("unknown-aggregation", "/aggregation")]),
])
def test_bad_request_exits_2(meterspec: Cli, tmp_path: Path, document: bytes,
                             problems: list[tuple[str, str]]) -> None:
    request = tmp_path / "request.json"
    request.write_bytes(document)
    for args in (("aggregate", "--request", request),
                 ("run", "--config", CONFIG, "--request", request)):
        result = meterspec(*args, EVENTS)
        _assert_clean_exit_2(result)
        first, *report = result.err_lines()
        assert str(request).encode() in first
        assert sorted((p["code"], p["path"]) for p in _problems(b"\n".join(report))) == problems


@pytest.mark.parametrize("missing", ["events", "config", "request", "errors-dir"])
def test_unreadable_file_exits_2_with_a_message(meterspec: Cli, tmp_path: Path,
                                                missing: str) -> None:
    nowhere = tmp_path / "no-such-dir" / "file.json"
    args: dict[str, list[str | Path]] = {
        "events": ["meter", "--config", CONFIG, nowhere],
        "config": ["meter", "--config", nowhere, EVENTS],
        "request": ["run", "--config", CONFIG, "--request", nowhere, EVENTS],
        "errors-dir": ["meter", "--config", CONFIG, "--errors", nowhere, EVENTS],
    }
    result = meterspec(*args[missing])
    _assert_clean_exit_2(result)
    assert result.err.startswith(b"meterspec: ")
    assert str(nowhere).encode() in result.err


def test_a_directory_as_events_file_exits_2(meterspec: Cli, tmp_path: Path) -> None:
    _assert_clean_exit_2(meterspec("meter", "--config", CONFIG, tmp_path))


@pytest.mark.parametrize("args", [
    ["meter", "--config", str(CONFIG), "/no/such/events.ndjson"],
    ["run", "--config", str(CONFIG), "--request", str(CONFIG), str(EVENTS)],
    ["meter", "--metered-at", "2024-02-30T00:00:00Z", "--config", str(CONFIG), str(EVENTS)],
    ["meter", str(EVENTS)],  # missing --config: a usage error
    ["frobnicate"],
])
def test_console_script_exits_2_without_a_traceback(args: list[str]) -> None:
    result = _script(*args)
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr
    assert b"Traceback" not in result.stderr


def test_console_script_exits_1_for_a_bad_line_and_0_for_a_clean_file(tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    events.write_bytes(EVENTS.read_bytes() + b"{not json\n")
    bad = _script("meter", "--config", CONFIG, events)
    assert bad.returncode == 1
    assert b"Traceback" not in bad.stderr
    assert _ndjson(bad.stdout) == _expected_records()
    assert _script("meter", "--config", CONFIG, EVENTS).returncode == 0


# ------------------------------------------------------------------ --metered-at

def test_metered_at_stamps_every_record_in_canonical_form(meterspec: Cli) -> None:
    """MS-MET-007: meteredAt only when given, normalised to UTC with its nanoseconds kept
    (MS-TIME-002, MS-TIME-003), written canonically (MS-TIME-004); record ids do not depend on
    it (MS-ID-002)."""
    stamped = meterspec("meter", "--metered-at", "2024-02-01T00:00:00.1234569+01:00",
                        "--config", CONFIG, EVENTS)
    assert stamped.status == 0
    assert _ndjson(stamped.out) == _expected_records("2024-01-31T23:00:00.1234569Z")
    plain = _ndjson(meterspec("meter", "--config", CONFIG, EVENTS).out)
    assert all("meteredAt" not in record for record in plain)


@pytest.mark.parametrize("value", ["2024-02-30T00:00:00Z", "2024-02-01T00:00:00", "now", ""])
def test_invalid_metered_at_exits_2(meterspec: Cli, value: str) -> None:
    result = meterspec("meter", "--metered-at", value, "--config", CONFIG, EVENTS)
    _assert_clean_exit_2(result)
    assert b"--metered-at" in result.err


def test_the_cli_knows_the_documented_maximum_of_periods() -> None:
    """cli.MAX_PERIODS stands in for meterspec.invoices' so `run` need not import billing."""
    from meterspec.invoices import MAX_PERIODS

    assert cli.MAX_PERIODS == MAX_PERIODS == 120


def test_run_starts_without_the_billing_and_conformance_modules() -> None:
    """Start-up cost (issue 12): `meterspec run` imports only what it uses."""
    code = ("import sys\nfrom meterspec import cli\n"
            "cli.main(['run', '--config', sys.argv[1], '--request', sys.argv[2], sys.argv[3]])\n"
            "heavy = sorted(m for m in sys.modules if m.startswith(('meterspec.invoices', "
            "'meterspec.conformance', 'meterspec.domain_events', "
            "'jsonschema', 'meterspec.pricing')))\nprint(heavy, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, str(CONFIG), str(REQUEST), str(EVENTS)],
                          capture_output=True, check=True)
    assert done.stderr.splitlines()[-1] == b"[]"
