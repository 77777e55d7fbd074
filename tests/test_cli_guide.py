"""A CLI that guides (issue 17): '-' for standard input in every file argument, validate telling
NDJSON from one document, hints on a file of the wrong kind, did-you-mean for misspelt commands
and options, one-line messages for missing files, an example and the exit statuses in every
command's --help, shell completion for bash, zsh and fish, and the progress of `conformance
run` on a terminal. Messages are checked against texts written here by hand."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meterspec import cli
from meterspec.cli_guide import walk
from meterspec.conformance.report import Progress
from meterspec.conformance.runner import Outcome

ROOT = Path(__file__).resolve().parents[1]
API_CALLS = ROOT / "examples" / "api-calls"
CONFIG, REQUEST, EVENTS = (API_CALLS / n for n in ("config.json", "request.json",
                                                   "events.ndjson"))
INVOICE = ROOT / "examples" / "monthly-invoice"
SCRIPT = Path(sys.executable).with_name("meterspec")


class Ran:
    def __init__(self, status: int, out: bytes, err: bytes) -> None:
        self.status, self.out, self.err = status, out, err.decode()


@pytest.fixture
def meterspec(capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
              ) -> Any:
    def call(*args: str | Path, stdin: bytes = b"") -> Ran:
        capsysbinary.readouterr()
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            status = cli.main([str(a) for a in args])
        except SystemExit as stopped:  # argparse
            status = int(stopped.code or 0)
        captured = capsysbinary.readouterr()
        return Ran(status, captured.out, captured.err)
    return call


def _readings(out: bytes) -> list[dict[str, Any]]:
    """The readings without their ids, as examples/api-calls/expected-readings.json has them."""
    return [{k: v for k, v in json.loads(line).items() if k != "id"}
            for line in out.splitlines()]


EXPECTED = json.loads((API_CALLS / "expected-readings.json").read_text())


# ------------------------------------------------------------------ '-' in every file argument

def test_config_and_request_read_from_standard_input(meterspec: Any) -> None:
    ran = meterspec("run", "--config", "-", "--request", REQUEST, EVENTS,
                    stdin=CONFIG.read_bytes())
    assert ran.status == 0 and _readings(ran.out) == EXPECTED
    ran = meterspec("run", "--config", CONFIG, "--request", "-", EVENTS,
                    stdin=REQUEST.read_bytes())
    assert ran.status == 0 and _readings(ran.out) == EXPECTED


def test_closed_invoices_read_from_standard_input(meterspec: Any, tmp_path: Path) -> None:
    config, request = INVOICE / "config.json", INVOICE / "invoice-request.json"
    records = meterspec("meter", "--config", config, INVOICE / "events.ndjson").out
    late = meterspec("meter", "--config", config, INVOICE / "late-events.ndjson").out
    invoices = meterspec("invoice", "--request", request, "-", stdin=records).out
    (tmp_path / "all.ndjson").write_bytes(records + late)
    (tmp_path / "closed.ndjson").write_bytes(invoices)
    from_file = meterspec("reconcile", "--request", request, "--closed",
                          tmp_path / "closed.ndjson", tmp_path / "all.ndjson")
    from_stdin = meterspec("reconcile", "--request", request, "--closed", "-",
                           tmp_path / "all.ndjson", stdin=invoices)
    assert from_stdin.status == from_file.status == 0
    assert from_stdin.out == from_file.out
    assert [a["subject"] for a in map(json.loads, from_stdin.out.splitlines())] == [
        "customer:acme"]  # examples/monthly-invoice/expected-adjustments.json


def test_standard_input_is_read_once(meterspec: Any) -> None:
    ran = meterspec("run", "--config", "-", "--request", REQUEST, "-")
    assert ran.status == 2 and ran.out == b""
    assert ran.err == ("meterspec: standard input ('-') can be read only once, but '-' is "
                       "given 2 times\n")


# ------------------------------------------------------------------ validate: NDJSON or one

def test_validate_tells_ndjson_from_one_document(meterspec: Any) -> None:
    ran = meterspec("validate", "event", "-", stdin=EVENTS.read_bytes())
    assert (ran.status, ran.err) == (0, "meterspec validate: 6 valid documents, 0 rejected\n")
    ran = meterspec("validate", "config", "-", stdin=CONFIG.read_bytes())  # pretty-printed
    assert (ran.status, ran.err) == (0, "meterspec validate: 1 valid documents, 0 rejected\n")
    one_line = json.dumps(json.loads(CONFIG.read_bytes())).encode() + b"\n\n"
    ran = meterspec("validate", "config", "-", stdin=one_line)
    assert (ran.status, ran.err) == (0, "meterspec validate: 1 valid documents, 0 rejected\n")


def test_validate_says_to_pass_lines_when_the_first_line_is_broken(meterspec: Any) -> None:
    ran = meterspec("validate", "event", "-", stdin=b"{broken\n" + EVENTS.read_bytes())
    assert ran.status == 1
    assert ran.err.splitlines()[-1] == ("meterspec: hint: read as one JSON document; if it "
                                        "holds one document per line (NDJSON), pass --lines")
    ran = meterspec("validate", "event", "--lines", "-", stdin=b"{broken\n" + EVENTS.read_bytes())
    assert ran.status == 1 and "6 valid documents, 1 rejected" in ran.err


# ------------------------------------------------------------------ files of the wrong kind

def test_events_given_as_the_config(meterspec: Any) -> None:
    ran = meterspec("run", "--config", EVENTS, "--request", REQUEST, EVENTS)
    assert ran.status == 2
    assert ran.err.splitlines()[-1] == (
        f"meterspec: hint: {EVENTS} looks like NDJSON with one EventPayload per line; "
        "--config expects a MeteringConfig JSON file (pass it as the input file)")


def test_a_config_given_as_the_events(meterspec: Any) -> None:
    ran = meterspec("run", "--config", CONFIG, "--request", REQUEST, REQUEST)
    assert ran.status == 1
    assert ran.err.splitlines()[-1] == (
        f"meterspec: hint: {REQUEST} looks like one AggregationRequest document; run reads "
        "an events NDJSON file (pass it with --request)")


def test_events_given_to_aggregate(meterspec: Any) -> None:
    ran = meterspec("aggregate", "--request", REQUEST, EVENTS)
    assert ran.status == 1
    assert ran.err.splitlines()[-1] == (
        f"meterspec: hint: {EVENTS} looks like NDJSON with one EventPayload per line; "
        "aggregate reads a records NDJSON file")


def test_no_hint_when_the_files_are_right(meterspec: Any) -> None:
    ran = meterspec("run", "--config", CONFIG, "--request", REQUEST, "-",
                    stdin=b'{"id": 1}\n')
    assert ran.status == 1 and "hint" not in ran.err


def test_validate_hints_only_at_a_document_of_another_kind(meterspec: Any) -> None:
    ran = meterspec("validate", "config", str(REQUEST))
    assert ran.status == 1
    assert ran.err.splitlines()[-1] == (
        f"meterspec: hint: {REQUEST} looks like one AggregationRequest document; validate "
        "reads one JSON document, or NDJSON")
    # A reading missing its identity has the one member an AggregationRequest requires, but
    # more of a MeterReading's: a broken reading, no hint.
    broken = {"subject": "s", "aggregation": "sum", "recordCount": 1,
              "measurement": {"quantity": "1", "unit": "u"},
              "window": {"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z"}}
    ran = meterspec("validate", "reading", "-", stdin=json.dumps(broken).encode())
    assert ran.status == 1 and "hint" not in ran.err


# ------------------------------------------------------------------ did you mean

@pytest.mark.parametrize(("args", "suggestion"), [
    (["metr", "x"], "did you mean meter?"),
    (["agregate"], "did you mean aggregate?"),
    (["meter", "--confg", "c.json", "e.ndjson"], "did you mean --config (not --confg)?"),
    (["run", "--config", "c", "--requets", "r", "e"], "did you mean --request (not --requets)?"),
    (["validate", "evnt", "x"], "did you mean event?"),
    (["conformance", "rnu"], "did you mean run?"),
    (["conformance", "run", "--impl", "x", "--reprot", "r"],
     "did you mean --report (not --reprot)?"),
])
def test_misspellings_get_the_nearest_word(meterspec: Any, args: list[str],
                                           suggestion: str) -> None:
    ran = meterspec(*args)
    assert ran.status == 2
    assert ran.err.splitlines()[-1] == f"  {suggestion}"


def test_no_suggestion_for_a_word_like_none(meterspec: Any) -> None:
    ran = meterspec("zzzzzz")
    assert ran.status == 2 and "did you mean" not in ran.err


# ------------------------------------------------------------------ files that cannot be read

def test_a_missing_file_in_one_line(meterspec: Any) -> None:
    ran = meterspec("meter", "--config", API_CALLS / "confg.json", EVENTS)
    assert ran.status == 2
    assert ran.err == (f"meterspec: no such file: {API_CALLS / 'confg.json'} (did you mean "
                       f"{API_CALLS / 'config.json'}?)\n")
    ran = meterspec("meter", "--config", CONFIG, "/nonexistent/events.ndjson")
    assert ran.err == ("meterspec: no such directory: /nonexistent (for "
                       "/nonexistent/events.ndjson)\n")
    ran = meterspec("meter", "--config", API_CALLS, EVENTS)
    assert ran.err == f"meterspec: is a directory, not a file: {API_CALLS}\n"


def test_a_report_into_a_missing_folder_in_one_line(meterspec: Any) -> None:
    ran = meterspec("conformance", "run", "--impl", "python:meterspec", "--case",
                    "agg-count-001", "--report", "/nonexistent/r.jsonl")
    assert ran.status == 2
    assert ran.err == ("meterspec conformance: cannot write report: no such directory: "
                       "/nonexistent (for /nonexistent/r.jsonl)\n")


def test_the_console_script_says_it_without_a_traceback() -> None:
    done = subprocess.run([str(SCRIPT), "validate", "event", "nothing-here.ndjson"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 2
    assert done.stderr == "meterspec: no such file: nothing-here.ndjson\n"


# ------------------------------------------------------------------ --help

def _leaves() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    return [(path, parser) for path, parser in walk(cli._parser(conformance=True))
            if path and not any(isinstance(a, argparse._SubParsersAction)
                                for a in parser._actions)]


def test_every_command_shows_an_example_and_its_exit_statuses() -> None:
    leaves = _leaves()
    assert {("meter",), ("validate",), ("conformance", "run"), ("completion",)} <= {
        path for path, _ in leaves}
    for path, parser in leaves:
        text = parser.format_help()
        example = text.split("Example:\n\n", 1)[1].splitlines()[0]
        assert example.startswith("  meterspec " + " ".join(path)) or (
            "| meterspec " + " ".join(path)) in example, (path, example)
        statuses = text.split("Exit status:\n\n", 1)[1].splitlines()
        assert statuses[0].startswith("  0  "), (path, statuses)
        assert any(line.startswith("  2  ") for line in statuses), path


def test_meter_help_by_hand(meterspec: Any) -> None:
    ran = meterspec("meter", "--help")
    assert ran.status == 0
    assert ran.out.decode().endswith(
        "Example:\n\n  meterspec meter --config config.json events.ndjson > records.ndjson\n\n"
        "Exit status:\n\n  0  every input line was accepted\n  1  some were rejected, each on "
        "the error report with its line number\n  2  a usage error, an unusable document "
        "(--config, --request, ...) or an\n     output that could not be written\n")


# ------------------------------------------------------------------ shell completion

def _completion(shell: str) -> str:
    return subprocess.run([str(SCRIPT), "completion", shell], capture_output=True, text=True,
                          check=True, timeout=60).stdout


BASH_CASES = [
    ("meterspec me", ["meter"]),
    ("meterspec meter --con", ["--config"]),
    ("meterspec validate ev", ["event"]),
    ("meterspec conformance r", ["run"]),
    ("meterspec conformance run --rep", ["--report"]),
    ("meterspec completion z", ["zsh"]),
    ("meterspec run --j", ["--jobs"]),
]


def test_bash_completes_commands_options_and_choices(tmp_path: Path) -> None:
    script = tmp_path / "meterspec.bash"
    script.write_text(_completion("bash"))
    lines = [f"source {script}",
             't() { COMP_WORDS=($1); [[ "$1" == *" " ]] && COMP_WORDS+=(""); '
             'COMP_CWORD=$((${#COMP_WORDS[@]}-1)); COMPREPLY=(); _meterspec; '
             'echo "${COMPREPLY[*]}"; }']
    lines += [f"t '{line}'" for line, _ in BASH_CASES]
    done = subprocess.run(["bash", "-c", "\n".join(lines)], cwd=tmp_path, capture_output=True,
                          text=True, check=True, timeout=60)
    assert [line.split() for line in done.stdout.splitlines()] == [w for _, w in BASH_CASES]


def test_zsh_loads_the_script(tmp_path: Path) -> None:
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed here (apt-get install zsh)")
    script = tmp_path / "meterspec.zsh"
    script.write_text(_completion("zsh"))
    done = subprocess.run(["zsh", "-c", f"autoload -U compinit; compinit -u; source {script}; "
                           "print ${_comps[meterspec]}"], cwd=tmp_path, capture_output=True,
                          text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "-F _meterspec" in done.stdout


def test_fish_completes_commands_and_options(tmp_path: Path) -> None:
    text = _completion("fish")
    assert "complete -c meterspec -f -n 'not __fish_seen_subcommand_from " in text
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed here (apt-get install fish)")
    script = tmp_path / "meterspec.fish"
    script.write_text(text)
    asked = ["meterspec me", "meterspec run --con", "meterspec conformance run --rep"]
    command = "; ".join([f"source {script}", *(f"complete -C '{a}'" for a in asked)])
    done = subprocess.run(["fish", "-c", command], cwd=tmp_path, capture_output=True,
                          text=True, check=True, timeout=60)
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == [
        "meter", "--config", "--report"]  # run's --config; conformance run's is not asked


# ------------------------------------------------------------------ conformance run progress

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _outcome(result: str) -> Outcome:
    return Outcome(None, result)  # type: ignore[arg-type]  # the line reads only the result


def test_progress_line_by_hand() -> None:
    out = _Terminal()
    ticks = iter([0.0, 0.5, 0.55, 2.0])
    progress = Progress(3, out, clock=lambda: next(ticks))
    progress(_outcome("passed"))   # at 0.5 s: shown
    progress(_outcome("failed"))   # at 0.55 s: within a tenth of a second, not shown
    progress(_outcome("errored"))  # at 2.0 s: the last, shown
    progress.clear()
    assert out.getvalue() == (
        "\r\033[K1/3 cases, 1 passed, 0 failed, 0 errored, 0 skipped, 2/s"
        "\r\033[K3/3 cases, 1 passed, 1 failed, 1 errored, 0 skipped, 2/s"
        "\r\033[K")
    assert Progress.wanted(out) and not Progress.wanted(io.StringIO())


def test_conformance_run_shows_progress_only_on_a_terminal(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["conformance", "run", "--impl", "python:meterspec", "--case", "agg-count-001",
            "--case", "agg-count-002"]
    assert cli.main(args) == 0
    assert "cases," not in capsys.readouterr().err  # stderr is not a terminal here
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(args) == 0
    shown = terminal.getvalue()
    assert "\r\033[K2/2 cases, 2 passed, 0 failed, 0 errored, 0 skipped, " in shown
    assert shown.endswith("\r\033[K")


def test_os_error_text_keeps_the_case_of_a_message_of_ours() -> None:
    from meterspec.cli_guide import os_error_text

    assert os_error_text(OSError("Missing workspaceID column in x.parquet")) == (
        "missing workspaceID column in x.parquet")
    assert os_error_text(OSError(5, "Input/output error", "/tmp/x")) == (
        "input/output error: /tmp/x")
