"""The store's commands (issue 14): `meterspec ingest` (per-batch acknowledgements, bad lines
reported exactly as `meterspec meter` reports them, exit statuses), the readers with --store
(output byte for byte the command's output on a file of the store's effective events or of
their records), `meterspec store ...`, and the command lines that are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from store_helpers import BACKENDS, ROOT, line, store_url

from meterspec.lines import MAX_LINE_BYTES

INVOICE = ROOT / "examples" / "monthly-invoice"
CONFIG = INVOICE / "config.json"
REQUEST = INVOICE / "invoice-request.json"


def meterspec(*argv: object, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "meterspec", *map(str, argv)], input=stdin,
                          capture_output=True, check=False, timeout=300)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request.param, request, tmp_path)


def _acks(stdout: bytes) -> list[dict[str, object]]:
    return [json.loads(text) for text in stdout.splitlines()]


def _clean(done: subprocess.CompletedProcess[bytes]) -> None:
    assert b"Traceback" not in done.stderr, done.stderr.decode()


# ------------------------------------------------------------------ meterspec ingest

def test_ingest_acknowledges_each_batch_and_counts_every_outcome(url: str,
                                                                 tmp_path: Path) -> None:
    """One JSON line per committed batch; duplicates dropped and counted, the conflict
    reported (MS-ING-004), exit 1 for it; sending everything again accepts nothing."""
    events = [line(f"e{i}") for i in range(5)]
    first = tmp_path / "first.ndjson"
    first.write_bytes(b"\n".join(events) + b"\n")
    done = meterspec("ingest", "--store", url, "--batch-size", 2, first)
    _clean(done)
    assert done.returncode == 0
    assert [(a["firstLine"], a["lastLine"], a["accepted"]) for a in _acks(done.stdout)] == [
        (1, 2, 2), (3, 4, 2), (5, 5, 1)]
    assert done.stderr.decode().splitlines()[-1] == (
        "meterspec ingest: 5 events accepted, 0 rejected")

    again = tmp_path / "again.ndjson"
    again.write_bytes(b"\n".join([*events, line("e1", properties={"calls": "2"}), b"",
                                  line("e9")]) + b"\n")
    done = meterspec("ingest", "--store", url, again)
    _clean(done)
    assert done.returncode == 1
    [ack] = _acks(done.stdout)
    assert {k: ack[k] for k in ("events", "accepted", "duplicates", "conflicts", "late",
                                "rejected")} == {"events": 7, "accepted": 1, "duplicates": 5,
                                                 "conflicts": 1, "late": 0, "rejected": 0}
    problems = [json.loads(text) for text in done.stderr.splitlines()[:-1]]
    assert [(p["code"], p["line"], p["eventID"], p["requirement"]) for p in problems] == [
        ("event-conflict", 6, "e1", "MS-ING-004")]
    assert done.stderr.decode().splitlines()[-1] == (
        "meterspec ingest: 1 events accepted, 5 duplicates dropped, 1 rejected")
    exported = meterspec("store", "export", url)
    assert exported.stdout == b"".join(text + b"\n" for text in [*events, line("e9")])


def test_ingest_reports_bad_lines_exactly_as_meter_does(url: str, tmp_path: Path) -> None:
    """MS-ERR-004/005/012: the same report lines (line numbers, codes, paths, event ids) for
    every line that is not a valid event, the good lines still ingested, exit status 1."""
    lines = [line("good1"), b"{", line("x", id=""), line("y", time="2024-02-30T00:00:00Z"),
             b"x" * (MAX_LINE_BYTES + 10), b"   ", line("z", extra="1"), b"[]",
             line("good2"), b'\xef\xbb\xbfnot at the start']
    source = tmp_path / "events.ndjson"
    source.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines))
    config = tmp_path / "config.json"
    config.write_text('{"measurements": [{"unit": "events", "quantity": "1"}]}')
    metered = meterspec("meter", "--config", config, source)
    ingested = meterspec("ingest", "--store", url, "--errors", tmp_path / "report.ndjson",
                         source)
    _clean(ingested)
    assert (metered.returncode, ingested.returncode) == (1, 1)
    assert (tmp_path / "report.ndjson").read_bytes() == metered.stderr.rsplit(b"\n", 2)[0] + (
        b"\n")
    [ack] = _acks(ingested.stdout)
    assert (ack["accepted"], ack["rejected"], ack["events"]) == (2, 7, 9)
    assert ack["codes"] == {"empty-string": 1, "invalid-json": 2, "invalid-timestamp": 1,
                            "line-too-long": 1, "unknown-field": 1, "wrong-type": 1}
    assert meterspec("store", "export", url).stdout == line("good1") + b"\n" + line(
        "good2") + b"\n"


def test_ingest_of_standard_input_and_an_unusable_store(tmp_path: Path) -> None:
    url = f"duckdb:{tmp_path / 'store.duckdb'}"
    done = meterspec("ingest", "--store", url, "-", stdin=line("a") + b"\n")
    assert done.returncode == 0 and _acks(done.stdout)[0]["accepted"] == 1
    for bad in (f"duckdb:{tmp_path / 'missing' / 'dir' / 'store.duckdb'}", "mysql://x",
                "postgresql://nobody@127.0.0.1:1/none"):
        done = meterspec("ingest", "--store", bad, "-", stdin=line("a") + b"\n")
        assert done.returncode == 2
        [message] = done.stderr.decode().splitlines()
        assert message.startswith("meterspec: ") and done.stdout == b""


# ------------------------------------------------------------------ readers with --store

def _fill(url: str, tmp_path: Path) -> None:
    """examples/monthly-invoice's events, sent twice, its late event, a retraction of
    evt_102 and an amendment of evt_004 (corrections applied by the effective events)."""
    events = (INVOICE / "events.ndjson").read_bytes()
    corrections = [
        line("fix_1", workspaceID="acme-prod", universeID="production",
             type="meterspec.retract", subject="customer:globex", time="2024-03-01T00:00:00Z",
             properties={"meterspec.target": "evt_102"}),
        line("fix_2", workspaceID="acme-prod", universeID="production",
             type="meterspec.amend", subject="customer:acme", time="2024-03-01T00:00:00Z",
             properties={"meterspec.target": "evt_004", "calls": "5000"})]
    for number, data in enumerate([events, events + (INVOICE / "late-events.ndjson")
                                   .read_bytes(), b"\n".join(corrections) + b"\n"]):
        path = tmp_path / f"part{number}.ndjson"
        path.write_bytes(data)
        done = meterspec("ingest", "--store", url, path)
        assert done.returncode == 0, done.stderr


def test_readers_read_the_store_as_a_file_of_its_effective_events(url: str,
                                                                 tmp_path: Path) -> None:
    """run/aggregate/invoice/project/reconcile --store == the same command on
    `store export --effective` (run) or on `meter` of it (the others): byte for byte, the
    summary line too; corrections applied and every identity counted once."""
    _fill(url, tmp_path)
    effective = tmp_path / "effective.ndjson"
    done = meterspec("store", "export", url, "--effective", "--output", effective)
    assert done.returncode == 0, done.stderr
    ids = [json.loads(text)["id"] for text in effective.read_bytes().splitlines()]
    assert sorted(ids) == ["evt_001", "evt_002", "evt_003", "evt_004", "evt_005", "evt_006",
                           "evt_101"]  # evt_102 retracted, corrections not events
    assert b'"calls":"5000"' in effective.read_bytes()
    records = tmp_path / "records.ndjson"
    records.write_bytes(meterspec("meter", "--config", CONFIG, effective).stdout)
    first_records = tmp_path / "first-records.ndjson"  # before the late event and fixes
    first_records.write_bytes(meterspec("meter", "--config", CONFIG,
                                        INVOICE / "events.ndjson").stdout)
    closed = tmp_path / "closed.ndjson"
    closed.write_bytes(meterspec("invoice", "--request", REQUEST, first_records).stdout)
    assert meterspec("store", "close", url, closed).returncode == 0
    sums = tmp_path / "sums.json"
    sums.write_text(json.dumps({"aggregation": "sum", "tumbling": {
        "size": "day", "start": "2024-01-20T00:00:00Z", "end": "2024-03-01T00:00:00Z"}}))
    cases: list[tuple[list[object], list[object]]] = [
        (["run", "--config", CONFIG, "--request", sums], [effective]),
        (["aggregate", "--config", CONFIG, "--request", sums], [records]),
        (["invoice", "--config", CONFIG, "--request", REQUEST, "--periods", "2"], [records]),
        (["project", "--config", CONFIG, "--request", REQUEST, "--as-of",
          "2024-02-20T00:00:00Z"], [records]),
        (["reconcile", "--config", CONFIG, "--request", REQUEST], ["--closed", closed,
                                                                   records]),
    ]
    for argv, file_args in cases:
        from_store = meterspec(*argv, "--store", url)
        command = [a for a in argv if a not in ("--config", CONFIG)] if argv[0] != "run" \
            else argv
        from_file = meterspec(*command, *file_args)
        _clean(from_store)
        assert from_store.returncode == from_file.returncode == 0, from_store.stderr
        assert from_store.stdout == from_file.stdout and from_store.stdout, argv[0]
        assert from_store.stderr == from_file.stderr, argv[0]
    adjustments = meterspec("reconcile", "--config", CONFIG, "--request", REQUEST, "--store",
                            url).stdout
    assert b"inv_" in adjustments  # the late event and the corrections change acme's invoice


def test_an_event_that_cannot_be_metered_is_reported_with_its_effective_line(
        tmp_path: Path) -> None:
    url = f"duckdb:{tmp_path / 'store.duckdb'}"
    events = [line("a", type="api.batch", workspaceID="acme-prod", universeID="production",
                   properties={"calls": "7"}),
              line("b", type="api.batch", workspaceID="acme-prod", universeID="production",
                   properties={"calls": "seven"})]
    assert meterspec("ingest", "--store", url, "-", stdin=b"\n".join(events)).returncode == 0
    sums = tmp_path / "sums.json"
    sums.write_text(json.dumps({"aggregation": "sum", "tumbling": {
        "size": "day", "start": "2024-01-15T00:00:00Z", "end": "2024-01-16T00:00:00Z"}}))
    done = meterspec("aggregate", "--store", url, "--config", CONFIG, "--request", sums)
    assert done.returncode == 1
    problem = json.loads(done.stderr.splitlines()[0])
    assert (problem["line"], problem["eventID"]) == (2, "b")
    assert json.loads(done.stdout)["measurement"]["quantity"] == "7"


# ------------------------------------------------------------------ refusals and help

@pytest.mark.parametrize(("argv", "says"), [
    (["run", "--config", CONFIG, "--request", REQUEST], "or --store URL is required"),
    (["run", "--config", CONFIG, "--request", REQUEST, "--store", "duckdb:x", "f"],
     "cannot be read together"),
    (["run", "--config", CONFIG, "--request", REQUEST, "--store", "duckdb:x", "--jobs", "2"],
     "--jobs splits files"),
    (["aggregate", "--request", REQUEST, "--store", "duckdb:x"], "--config is required"),
    (["reconcile", "--request", REQUEST, "f"], "--closed is required"),
    (["run", "--config", CONFIG, "--request", REQUEST, "--store", "duckdb:missing.duckdb"],
     "no such file"),
])
def test_command_lines_that_cannot_work_are_refused_in_one_line(argv: list[object],
                                                                says: str) -> None:
    done = meterspec(*argv)
    assert done.returncode == 2
    [message] = done.stderr.decode().splitlines()
    assert says in message and done.stdout == b""


def test_help_lists_the_store_commands() -> None:
    top = meterspec("--help").stdout.decode()
    assert "ingest" in top and "store" in top
    assert "--store URL" in meterspec("run", "--help").stdout.decode()
    assert "printed once it is committed" in " ".join(meterspec("ingest", "--help")
                                                     .stdout.decode().split())
    for action in ("init", "migrate", "check", "export", "expire", "close"):
        assert action in meterspec("store", "--help").stdout.decode()


def test_run_on_files_loads_no_store_module() -> None:
    """Start-up cost (issue 12): the store registers its commands without importing itself,
    DuckDB or psycopg."""
    code = ("import sys\nfrom meterspec import cli\n"
            "cli.main(['run', '--config', sys.argv[1], '--request', sys.argv[2], sys.argv[3]])\n"
            "print(sorted(m for m in sys.modules if m.startswith(('meterspec.store.', "
            "'duckdb', 'psycopg', 'pyarrow'))), file=sys.stderr)\n")
    folder = ROOT / "examples" / "api-calls"
    done = subprocess.run([sys.executable, "-c", code, str(folder / "config.json"),
                           str(folder / "request.json"), str(folder / "events.ndjson")],
                          capture_output=True, check=True)
    assert done.stderr.splitlines()[-1] == b"['meterspec.store.cli']"


# ------------------------------------------------------------------ meterspec store ...

def test_store_init_check_expire_and_export_formats(url: str, tmp_path: Path) -> None:
    done = meterspec("store", "init", url)
    assert done.returncode == 0 and b"created at schema version 2" in done.stdout
    assert b"already a store" in meterspec("store", "init", url).stdout
    meterspec("ingest", "--store", url, "-", stdin=line("old", time="2024-01-01T00:00:00Z")
              + b"\n" + line("new", time="2024-02-01T00:00:00Z"))
    check = meterspec("store", "check", url)
    assert check.returncode == 0, check.stdout
    assert b"2 events, 2 seen" in check.stdout and b"ok: the seen index agrees" in check.stdout
    done = meterspec("store", "expire", url, "--before", "2024-01-15T00:00:00+00:00")
    assert done.returncode == 0 and b"1 seen entries forgotten; horizon 2024-01-15T00:00:00Z" \
        in done.stdout
    late = meterspec("ingest", "--store", url, "-", stdin=line("older",
                                                               time="2024-01-02T00:00:00Z"))
    assert late.returncode == 1
    assert json.loads(late.stderr.splitlines()[0])["code"] == "late-beyond-retention"
    assert meterspec("store", "check", url).returncode == 0
    parquet = meterspec("store", "export", url, "--format", "parquet")
    assert parquet.returncode == 2 and b"needs --output" in parquet.stderr
    pytest.importorskip("pyarrow")
    done = meterspec("store", "export", url, "--format", "parquet", "--output",
                     tmp_path / "log.parquet")
    assert done.returncode == 0 and (tmp_path / "log.parquet").stat().st_size > 0
