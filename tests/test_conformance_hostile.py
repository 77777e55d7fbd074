"""The conformance harness survives a hostile or broken adapter (INTERPRETING.md 5, 6).

Each test runs `meterspec conformance run` in a subprocess against
tests/conformance_fixtures/hostile_adapter.py, under a wall-clock guard: a harness that hangs
fails the test instead of hanging it, and anything the adapter left behind is killed. The
assertions are on what a user gets: the exit status, the per-case results and reasons in the
JSON-lines report, bounded output and memory, and no traceback."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_conformance_harness import case, write_suite

from meterspec.conformance.cases import Case
from meterspec.conformance.protocol import (
    RESPONSE_DEPTH,
    ProtocolError,
    StderrSink,
    parse_response,
)
from meterspec.conformance.report import print_terminal
from meterspec.conformance.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "conformance_fixtures" / "hostile_adapter.py"
# The command line, plus the harness's own peak memory (KiB) on stderr's last line: VmHWM of
# this process image (getrusage's ru_maxrss would start from the forking parent's peak, which
# under pytest-xdist is a worker that has run heavier tests).
RUN = ("import re, sys\nfrom meterspec.cli import main\ncode = main(sys.argv[1:])\n"
       "peak = re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1)\n"
       "sys.stderr.write(f'\\nmaxrss {peak}\\n')\n"
       "sys.exit(code)\n")
GUARD = 60.0  # seconds: a run that takes longer is a hang
MIB = 1 << 20

pytestmark = pytest.mark.skipif(os.name != "posix" or not Path("/proc/self/stat").exists(),
                                reason="hostile adapters fork, setsid and are tracked by /proc")


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str
    cases: dict[str, dict[str, Any]]
    summary: dict[str, Any]
    seconds: float
    maxrss_kib: int

    def reason(self, case_id: str) -> str:
        return str(self.cases[case_id].get("reason", ""))

    def result(self, case_id: str) -> str:
        return str(self.cases[case_id]["result"])


def alive(pid: int) -> bool:
    """Whether pid is a running process (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def pids(tmp_path: Path) -> Iterator[Path]:
    """The file hostile adapters list their leftover processes in. Whatever the harness did
    not kill is killed afterwards (any process whose command line names this file: the
    adapters of this test and their forks), so a failing test leaves nothing behind."""
    path = tmp_path / "pids"
    path.touch()
    yield path
    for pid in {*left_behind(path), *_naming(str(path))}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def left_behind(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split() if alive(int(p))]


def harness(tmp_path: Path, behaviours: list[str | None], *options: str,
            start: str | None = None, guard: float = GUARD) -> Result:
    """Run the hostile adapter through a suite with one case per behaviour (None: answers
    right), ids h-001, h-002, ...; every case expects the output []."""
    ids = [f"h-{i:03}" for i in range(1, len(behaviours) + 1)]
    suite = write_suite(tmp_path / "c", {"metering/a.json": [
        case(i, output=[], input={"config": {}, "event": {}}) for i in ids]})
    mode: dict[str, Any] = {"cases": {i: b for i, b in zip(ids, behaviours, strict=True) if b},
                            "pids": str(tmp_path / "pids"), "log": str(tmp_path / "starts")}
    if start is not None:
        mode["start"] = start
    impl = subprocess.list2cmdline([sys.executable, str(HOSTILE), json.dumps(mode)])
    report = tmp_path / "r.jsonl"
    report.unlink(missing_ok=True)
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    began = time.monotonic()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        # Files, not pipes: a process holding a pipe open could hang the guard itself.
        process = subprocess.Popen(
            [sys.executable, "-c", RUN, "conformance", "run", "--impl", impl, "--suite",
             str(suite), "--report", str(report), *options],
            stdout=stdout, stderr=stderr, cwd=ROOT, start_new_session=True)
        try:
            status = process.wait(timeout=guard)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"the harness hung (still running after {guard:g} s)")
    seconds = time.monotonic() - began
    lines = ([json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
             if report.is_file() else [])
    summary = lines.pop() if lines else {}
    error_text = err.read_text(encoding="utf-8", errors="replace")
    found = re.search(r"maxrss (\d+)\s*$", error_text)
    return Result(status, out.read_text(encoding="utf-8", errors="replace"), error_text,
                  {line["id"]: line for line in lines}, summary, seconds,
                  int(found.group(1)) if found else 0)


def starts(tmp_path: Path) -> int:
    return len((tmp_path / "starts").read_text().splitlines())


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.stdout + result.stderr.replace(
        "Traceback: something broke", ""), result.stderr[-3000:]


# --- responses nested too deep (MS-ERR-008's 64 for a document, 16 for the envelope) ---------

def test_deeply_nested_responses_are_errored_and_the_run_goes_on(
        tmp_path: Path, pids: Path) -> None:
    result = harness(tmp_path, ["deep-array", None, "deep-object", None, "deep-string",
                                "depth-80", "depth-81", None])
    no_traceback(result)
    assert result.status == 1
    for case_id in ("h-001", "h-003", "h-007"):
        assert result.result(case_id) == "errored"
        assert "nest deeper than 80" in result.reason(case_id), result.reason(case_id)
    assert [result.result(i) for i in ("h-002", "h-004", "h-008")] == ["passed"] * 3
    # Brackets inside a string are not nesting; an errored message is clipped in the report.
    assert result.result("h-005") == "errored"
    assert result.reason("h-005").startswith("[[[[") and len(result.reason("h-005")) < 2100
    assert "more characters" in result.reason("h-005")
    # 80 deep is a valid (wrong) answer.
    assert result.result("h-006") == "failed"
    # Restarted after each broken response, not after an errored answer.
    assert starts(tmp_path) == 1 + 3


def test_response_parsing_bounds_depth_without_recursion() -> None:
    def deep(levels: int) -> bytes:
        return b'{"seq": 1, "output": ' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"

    # A 64-deep document (MS-ERR-008) in decode-text's envelope is a valid answer.
    document = "[" * 63 + '{"a": 1}' + "]" * 63
    assert parse_response(f'{{"seq": 1, "output": [{{"document": {document}}}]}}'.encode())
    assert RESPONSE_DEPTH == 80
    assert parse_response(deep(80))["seq"] == 1
    with pytest.raises(ProtocolError, match="nest deeper than 80"):
        parse_response(deep(81))
    for text in (b"[" * 1_000_000, b'{"a":' * 500_000, b"[" * 100 + b"]" * 100):
        with pytest.raises(ProtocolError, match="nest deeper than 80"):
            parse_response(text)
    # Strings are skipped whole, escaped quotes included; an unterminated one is not JSON.
    assert parse_response(b'["\\"[[[[' + b"[" * 100 + b'", "]]]"]') == ['"[[[[' + "[" * 100,
                                                                       "]]]"]
    with pytest.raises(ProtocolError, match="not valid JSON"):
        parse_response(b'["' + b"[" * 100)
    # Linear time on what would make a backtracking string pattern quadratic.
    began = time.monotonic()
    for text in (b'"' + b'\\"' * 1_000_000, b'["' + b"\\" * 1_000_001, b"[]," * 1_000_000):
        with pytest.raises(ProtocolError):
            parse_response(text)
    assert time.monotonic() - began < 5


def test_response_parsing_rejects_what_would_break_the_report() -> None:
    for text, says in [(b'{"seq": 1, "errored": "\\ud800"}', "lone surrogate"),
                       (b'{"seq": 1, "errored": "\\udc00x"}', "lone surrogate"),
                       (b'{"seq": 1, "output": [1e999]}', "out of range"),
                       (b'{"seq": 1, "output": [-1e400]}', "out of range"),
                       (b'{"seq": 1, "output": [NaN]}', "NaN is not JSON"),
                       (b'{"seq": 1, "seq": 1}', "duplicate member"),
                       (b'{"seq": 1, "errored": "\xff"}', "not UTF-8")]:
        with pytest.raises(ProtocolError, match=says):
            parse_response(text)
    assert parse_response('{"seq": 1, "errored": "\\ud83d\\ude00 \u00e9"}'.encode()) == {
        "seq": 1, "errored": "\U0001f600 \u00e9"}


# --- responses too long -----------------------------------------------------------------------

def test_output_without_a_newline_is_cut_at_the_size_limit_in_bounded_memory(
        tmp_path: Path, pids: Path) -> None:
    result = harness(tmp_path, ["zero-flood", None, "long-line", None, "blank-flood", None],
                     "--timeout", "10")
    no_traceback(result)
    assert result.status == 1
    for case_id in ("h-001", "h-003", "h-005"):
        assert result.result(case_id) == "errored"
        assert "16 MiB" in result.reason(case_id), result.reason(case_id)
    assert [result.result(i) for i in ("h-002", "h-004", "h-006")] == ["passed"] * 3
    assert starts(tmp_path) == 1 + 3
    assert 0 < result.maxrss_kib < 300_000  # the harness never held much more than a line


def test_max_response_is_an_option(tmp_path: Path, pids: Path) -> None:
    result = harness(tmp_path, ["zero-flood", None], "--max-response", "64K")
    no_traceback(result)
    assert result.result("h-001") == "errored"
    assert "64 KiB" in result.reason("h-001"), result.reason("h-001")
    assert result.result("h-002") == "passed"


# --- process trees, stderr --------------------------------------------------------------------

def test_a_setsid_child_holding_stdout_open_hangs_nothing(tmp_path: Path, pids: Path) -> None:
    result = harness(tmp_path, ["setsid-hang", None, "setsid-exit", None], "--timeout", "1",
                     guard=30)
    no_traceback(result)
    assert result.result("h-001") == "errored"
    assert "no response within 1 s" in result.reason("h-001")
    assert result.result("h-003") == "errored"
    assert "exited (status 0) without responding" in result.reason("h-003")
    assert [result.result(i) for i in ("h-002", "h-004")] == ["passed"] * 2
    assert len(pids.read_text().split()) == 2
    assert left_behind(pids) == []  # the whole tree, sessions of their own included


def test_a_daemon_the_adapter_leaves_behind_is_killed(tmp_path: Path, pids: Path) -> None:
    result = harness(tmp_path, ["daemon", None])
    assert [result.result(i) for i in ("h-001", "h-002")] == ["passed"] * 2
    assert len(pids.read_text().split()) == 1
    assert left_behind(pids) == []


def test_stderr_is_drained_bounded_and_kept_for_errored_cases(
        tmp_path: Path, pids: Path) -> None:
    result = harness(tmp_path, ["stderr-flood", None, "stderr-crash", None])
    no_traceback(result)
    # 50 MiB written to stderr: the adapter never blocked on it, the terminal got 64 KiB.
    assert result.result("h-001") == "passed"
    assert len(result.stderr) < 80_000
    assert "adapter stderr: 64 KiB shown" in result.stderr
    assert result.result("h-003") == "errored"
    assert "exited (status 4) without responding" in result.reason("h-003")
    assert result.cases["h-003"]["stderr"] == "Traceback: something broke\n"
    assert "stderr" not in result.cases["h-001"]
    assert result.result("h-004") == "passed"
    assert result.maxrss_kib < 300_000


def test_stderr_sink_keeps_a_bounded_tail() -> None:
    shown: list[str] = []
    sink = StderrSink(10, shown.append)
    mark = sink.total
    sink.feed(b"0123456789abc")
    sink.feed("é".encode() * 50_000)
    assert "".join(shown).startswith("0123456789")
    assert "abc" not in "".join(shown)
    assert "".join(shown).count("shown") == 1
    hidden: list[str] = []
    quiet = StderrSink(0, hidden.append)  # --max-stderr 0: nothing, not even the notice
    quiet.feed(b"x" * 100)
    assert hidden == [] and quiet.since(0) == "x" * 100
    tail = sink.since(mark)
    assert len(tail.encode()) == 64 * 1024 and tail.endswith("é" * 10)
    assert sink.since(sink.total) == ""


# --- answers of the wrong kind ----------------------------------------------------------------

def test_invalid_answers_are_errored_with_a_clear_reason(tmp_path: Path, pids: Path) -> None:
    behaviours: list[str | None] = [
        "bad-utf8", "surrogate", "infinite-number", "huge-integer", "wrong-shape",
        "not-object", "huge-seq", "extra-lines", None, None, "close-stdout", None]
    result = harness(tmp_path, behaviours, "--timeout", "2")
    no_traceback(result)
    assert result.status == 1
    expected = {"h-001": "not UTF-8", "h-002": "lone surrogate", "h-003": "out of range",
                "h-004": "not valid JSON", "h-005": "error is not a non-empty array",
                "h-006": "response is not a JSON object", "h-007": "response carries seq",
                "h-009": "output nobody asked for", "h-011": "closed its stdout"}
    for case_id, says in expected.items():
        assert result.result(case_id) == "errored", case_id
        assert says in result.reason(case_id), (case_id, result.reason(case_id))
        assert len(result.reason(case_id)) < 2100
    assert [result.result(i) for i in ("h-008", "h-010", "h-012")] == ["passed"] * 3


def test_a_long_wrong_answer_does_not_flood_the_terminal(tmp_path: Path, pids: Path) -> None:
    result = harness(tmp_path, ["long-output", "huge-output"])
    no_traceback(result)
    assert [result.result(i) for i in ("h-001", "h-002")] == ["failed"] * 2
    assert len(result.cases["h-002"]["actual"]["output"]) == 300_000  # the report has it all
    assert "more lines; the JSON-lines report (--report) has the whole answer" in result.stdout
    assert "too long to diff here" in result.stdout
    assert len(result.stdout) < 40_000


def test_an_adapter_that_stops_reading_does_not_block_the_harness(
        tmp_path: Path, pids: Path) -> None:
    suite_case = case("h-001", output=[], input={"config": {}, "event": {"pad": "x" * MIB}})
    suite = write_suite(tmp_path / "c", {"metering/a.json": [suite_case]})
    mode = json.dumps({"start": "deaf", "pids": str(pids)})
    began = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-c", RUN, "conformance", "run", "--impl",
         subprocess.list2cmdline([sys.executable, str(HOSTILE), mode]), "--suite",
         str(suite), "--timeout", "1", "--report", str(tmp_path / "r.jsonl")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=GUARD,
        check=False)
    assert process.returncode == 1
    line = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])
    assert line["result"] == "errored" and "no response within 1 s" in line["reason"]
    assert time.monotonic() - began < 15


# --- start, and the run's deadline ------------------------------------------------------------

@pytest.mark.parametrize(("start", "says"), [
    ("never", "no response to start before the run's deadline (2 s)"),
    ("deep", "nest deeper than 80"),
    ("zero-flood", "longer than 16 MiB"),
    ("not-ready", 'not {"ready": true'),
])
def test_a_broken_start_is_a_harness_error_in_bounded_time(
        tmp_path: Path, pids: Path, start: str, says: str) -> None:
    result = harness(tmp_path, [None], "--deadline", "2", start=start)
    no_traceback(result)
    assert result.status == 2
    assert "did not start properly" in result.stderr and says in result.stderr, result.stderr


def test_the_deadline_stops_the_run_and_the_rest_is_not_run(
        tmp_path: Path, pids: Path) -> None:
    result = harness(tmp_path, [None, "setsid-hang", None, None], "--deadline", "3",
                     guard=30)
    no_traceback(result)
    assert result.status == 1
    assert result.result("h-001") == "passed"
    for case_id in ("h-002", "h-003", "h-004"):
        assert result.result(case_id) == "skipped"  # counted against, as skips are
        assert result.reason(case_id) == "not run: the run's deadline (3 s) passed"
    assert result.summary["summary"]["skipped"] == 3
    assert result.summary["interrupted"] == "the run's deadline (3 s) passed; 3 case(s) not run"
    assert "3 case(s) not run: the run's deadline (3 s) passed" in result.stdout
    assert left_behind(pids) == []


class ClaimsEverything:
    """An in-process adapter whose start response lists 200 000 operations and answers
    `errored` with 1 MiB of text."""

    def start(self, deadline: float | None = None) -> Any:
        operations = [f"op-{i}" for i in range(200_000)] + ["meter"]
        return {"ready": True, "implementation": {"name": "n" * MIB, "version": "1",
                                                  "language": "x", "operations": operations}}

    def exchange(self, message: dict[str, Any], deadline: float | None = None) -> Any:
        return {"seq": message["seq"], "errored": "e" * MIB}

    def restart_needed(self) -> bool:
        return False

    def discard(self) -> None:
        pass

    def stop(self) -> None:
        pass


def test_a_long_start_response_costs_no_time_per_case(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [Case(f"h-{i:04}", "metering", "metering/a.json", "d", "meter" if i < 10 else "rate",
                  {}, {"output": []}, ("basic",), ()) for i in range(3000)]
    began = time.monotonic()
    run = Runner(ClaimsEverything()).run(cases)
    assert time.monotonic() - began < 2
    assert [o.result for o in run.outcomes[:11]] == ["errored"] * 10 + ["skipped"]
    assert len(run.outcomes[0].reason or "") < 2100 and run.outcomes[0].actual is None
    print_terminal(run, sys.stdout)
    assert len(capsys.readouterr().out) < 40_000


def test_run_help_documents_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    from meterspec.cli import main

    with pytest.raises(SystemExit):
        main(["conformance", "run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--timeout SECONDS", "--deadline SECONDS", "--max-response BYTES",
                   "--max-stderr BYTES"):
        assert option in text, option
    for limit in ("16 MiB", "80 deep (64 for a document", "64 KiB"):
        assert limit in text, limit


def test_a_case_file_nested_too_deep_is_a_harness_error_not_a_crash(tmp_path: Path) -> None:
    """A suite file is input too: nesting beyond the parser's recursion is reported."""
    from meterspec.conformance.data import HarnessError, read_json

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(HarnessError, match="not valid JSON"):
        read_json(deep)
