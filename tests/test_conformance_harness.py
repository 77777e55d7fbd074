"""The conformance harness (conformance/INTERPRETING.md): loading, comparing, driving adapters
through the protocol, reports, `check` and `build`. Tiny hand-written suites in tmp_path; the
real suite only for the checks that it is sound, built and passed by the reference."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_conformance_teeth import REFERENCE_BUGS

from meterspec.cli import main
from meterspec.conformance.adapter import handle, implementation
from meterspec.conformance.compare import diff, json_equal, judge

ROOT = Path(__file__).resolve().parents[1]
REAL_CASES = ROOT / "conformance" / "cases" / "v1"
NODE = shutil.which("node")

CONFIG = {"measurements": [{"unit": "req", "quantity": "1"},
                           {"unit": "bytes", "sourceProperty": "size"}]}
EVENT = {"id": "e1", "workspaceID": "w", "universeID": "u", "type": "t", "subject": "s",
         "time": "2024-01-01T00:00:00Z", "properties": {"size": "1.50", "region": "eu"}}
REQUEST = {"aggregation": "sum",
           "windows": [{"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z"}]}

TEST_VERSION = "0.4.2"

SPECS = {
    "core.md": "# core\n\n"
               "**MS-TST-001 Metering.** An implementation MUST meter.\n\n"
               "**MS-TST-002 Aggregating.** An implementation aggregates.\n\n"
               "**MS-TST-003 Grammar.** Text\n\n```\ncode\n```\n\nand it MUST parse.\n\n"
               "## Other\n\nNot a requirement: MUST.\n",
    "later.md": "# a spec area with no operation yet\n\n"
                "**MS-LTR-001 Later.** An implementation MUST do this later.\n",
    "errors.md": "# errors\n\n| code | meaning |\n|---|---|\n| `invalid-json` | not JSON |\n"
                 "| `missing-field` | absent |\n| `invalid-timestamp` | bad time |\n",
}

# A fake adapter: the reference behind the protocol, misbehaving on the cases its argument
# names, and logging each start so tests can count restarts.
FAKE_ADAPTER = '''
import json, sys, time
from meterspec.conformance.adapter import handle, implementation
mode = json.loads(sys.argv[1])
def send(message):
    sys.stdout.write(json.dumps(message) + "\\n")
    sys.stdout.flush()
for line in sys.stdin:
    message = json.loads(line)
    if message["cmd"] == "stop":
        break
    if message["cmd"] == "start":
        with open(mode["log"], "a") as log:
            log.write("start\\n")
        send({"ready": True, "implementation": {**implementation(), **mode.get("info", {})}})
        continue
    seq, case = message["seq"], message["case"]
    behaviour = mode.get("cases", {}).get(case["id"])
    if behaviour == "bad-json":
        sys.stdout.write("{not json\\n")
        sys.stdout.flush()
    elif behaviour == "wrong-seq":
        send({"seq": seq + 100, **handle(case)})
    elif behaviour == "two-kinds":
        send({"seq": seq, "output": [], "skipped": "both"})
    elif behaviour == "sleep":
        time.sleep(60)
    elif behaviour == "exit":
        sys.exit(3)
    elif behaviour == "errored":
        send({"seq": seq, "errored": "boom"})
    elif behaviour == "skipped":
        send({"seq": seq, "skipped": "not today"})
    else:
        send({"seq": seq, **handle(case)})
'''


def case(case_id: str, operation: str = "meter", *, features: tuple[str, ...] = ("basic",),
         requirements: tuple[str, ...] = ("MS-TST-001",), **given: Any) -> dict[str, Any]:
    """A case whose expectation is what the reference answers, unless given."""
    inputs = {"meter": {"config": CONFIG, "event": EVENT},
              "aggregate": {"request": REQUEST, "records": []}}
    item: dict[str, Any] = {"id": case_id, "description": f"case {case_id}",
                            "operation": operation, "input": given.pop("input", None)
                            or inputs[operation], "features": list(features),
                            "requirements": list(requirements)}
    item.update(given or handle(item))
    return item


def write_suite(root: Path, files: dict[str, list[dict[str, Any]]]) -> Path:
    """root/cases/v1/<area>/<name>.json for each {"<area>/<name>.json": cases}, the suite's
    version (INTERPRETING.md, TEST_VERSION), and specs."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "INTERPRETING.md").write_text(f"# Rules\n\nDocument version **{TEST_VERSION}**.\n")
    for name, cases in files.items():
        path = root / "cases" / "v1" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {"area": name.split("/")[0], "description": "test", "cases": cases}
        path.write_text(json.dumps(document, indent=1))
    specs = root.parent / "specs"
    specs.mkdir(exist_ok=True)
    for name, text in SPECS.items():
        (specs / name).write_text(text)
    return root


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    record = handle(case("m-001"))["output"][0]
    return write_suite(tmp_path / "conformance", {
        "metering/basic.json": [
            case("m-001"),
            case("m-002", input={"config": CONFIG, "eventText": "{"}, features=("errors",),
                 requirements=("MS-TST-003",)),
        ],
        "aggregation/sum.json": [
            case("a-001", "aggregate", input={"request": REQUEST, "records": [record]},
                 requirements=("MS-TST-002",)),
        ],
    })


def conformance(*args: str | Path) -> int:
    return main(["conformance", *map(str, args)])


def fake(tmp_path: Path, **mode: Any) -> str:
    """The --impl command of the fake adapter; starts are logged to tmp_path/starts."""
    script = tmp_path / "fake_adapter.py"
    script.write_text(FAKE_ADAPTER)
    mode.setdefault("log", str(tmp_path / "starts"))
    return shlex.join([sys.executable, str(script), json.dumps(mode)])


def starts(tmp_path: Path) -> int:
    return len((tmp_path / "starts").read_text().splitlines())


def report(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {line["id"]: line for line in lines[:-1]}, lines[-1]


# --- comparison (INTERPRETING.md 4) ---------------------------------------------------------

def test_outputs_compare_as_json_values() -> None:
    assert json_equal({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1})  # member order: no
    assert not json_equal([1, 2], [2, 1])  # array order: yes
    assert not json_equal({"quantity": "1.50"}, {"quantity": "1.5"})  # strings exactly
    assert not json_equal("2024-01-01T00:00:00.000Z", "2024-01-01T00:00:00Z")
    assert not json_equal({"group": None}, {})  # absent is not null
    assert not json_equal({"recordCount": 1}, {"recordCount": True})
    assert not json_equal({"recordCount": 1}, {"recordCount": "1"})
    assert json_equal({"recordCount": 2}, {"recordCount": 2.0})  # numbers as integers


def test_errors_compare_as_sets_of_code_and_path() -> None:
    expected = {"error": [{"code": "a", "path": "/x"}, {"code": "b", "path": ""}]}
    actual = {"error": [{"code": "b", "path": "", "message": "m", "requirement": "MS-X-001"},
                        {"code": "a", "path": "/x"}, {"code": "a", "path": "/x"}]}
    assert judge(expected, actual) == ("passed", None)
    assert judge(expected, {"error": [{"code": "a", "path": "/x"}]})[0] == "failed"
    assert judge(expected, {"error": [{"code": "a", "path": "/y"}, {"code": "b", "path": ""}]}
                 )[0] == "failed"


def test_kinds_must_match_and_skips_and_errors_never_pass() -> None:
    assert judge({"output": []}, {"error": [{"code": "a", "path": ""}]}) == (
        "failed", "expected output, got error")
    assert judge({"output": []}, {"skipped": "no"}) == ("skipped", "no")
    assert judge({"error": [{"code": "a", "path": ""}]}, {"errored": "boom"}) == (
        "errored", "boom")


def test_diff_shows_only_differences_that_count() -> None:
    text = diff({"output": [{"a": "1.50", "b": 1}]}, {"output": [{"b": 1, "a": "1.5"}]})
    assert '-      "a": "1.50"' in text and '+      "a": "1.5"' in text
    assert '"b"' not in "".join(line for line in text.splitlines() if line[:1] in "+-"
                                and not line.startswith(("---", "+++")))


# --- the reference adapter ------------------------------------------------------------------

def test_reference_adapter_answers_each_kind() -> None:
    assert handle(case("x-001"))["output"][0]["measurement"] == {"quantity": "1", "unit": "req"}
    bad_config = {"config": {"measurements": []}, "event": EVENT}
    assert handle({"operation": "meter", "input": bad_config}) == {
        "error": [{"code": "empty-list", "path": "/measurements"}]}
    assert handle({"operation": "meter", "input": {"config": CONFIG, "eventText": "{"}}) == {
        "error": [{"code": "invalid-json", "path": ""}]}
    assert "skipped" in handle({"operation": "price", "input": {}})
    records = [{"id": "r"}, handle(case("x-002"))["output"][0]]
    records[1]["recordedAt"] = "2024-02-30T00:00:00Z"
    answer = handle({"operation": "aggregate", "input": {"request": REQUEST, "records": records}})
    assert {(p["code"], p["path"]) for p in answer["error"]} >= {
        ("missing-field", "/records/0/workspaceID"),
        ("invalid-timestamp", "/records/1/recordedAt")}


def _problems(answer: dict[str, Any]) -> set[tuple[str, str]]:
    assert "error" in answer, answer
    return {(p["code"], p["path"]) for p in answer["error"]}


def test_reference_adapter_lists_and_answers_every_operation() -> None:
    assert implementation()["operations"] == [
        "meter", "aggregate", "rate", "rate-plan", "ingest", "apply-corrections", "quota",
        "rate-limit", "billing-periods", "invoice", "reconcile", "apply-adjustment", "project",
        "allocate", "domain-event", "to-cloudevent", "from-cloudevent",
        "domain-event-from-cloudevent", "decode-text", "webhook-sign", "webhook-verify",
        "webhook-attempt", "quota-reserve", "convert-event", "export-stripe", "stripe-outcome",
        "export-ledger"]
    # INTERPRETING.md 3.2: a missing member is missing-field at its path in the input object;
    # the members are checked together.
    assert _problems(handle({"operation": "rate", "input": {"quantity": 1}})) == {
        ("missing-field", "/charge"), ("wrong-type", "/quantity"),
        ("missing-field", "/currency")}
    assert _problems(handle({"operation": "rate-plan", "input": {
        "plans": {}, "planID": 7, "periodStart": "2024-01-01T00:00:00Z",
        "quantities": ["1"]}})) == {("wrong-type", "/plans"), ("wrong-type", "/planID"),
                                    ("wrong-type", "/quantities")}
    assert _problems(handle({"operation": "ingest", "input": {"state": {"events": []},
                                                             "events": {}}})) == {
        ("wrong-type", "/events")}
    assert _problems(handle({"operation": "apply-corrections", "input": {}})) == {
        ("missing-field", "/log")}
    assert _problems(handle({"operation": "quota", "input": {"check": []}})) == {
        ("wrong-type", "/check")}


def test_billing_and_event_operations_check_their_members() -> None:
    """INTERPRETING.md 3.10 to 3.18: missing members, members of the wrong JSON type."""
    def problems(operation: str, case_input: dict[str, Any]) -> set[tuple[str, str]]:
        return _problems(handle({"operation": operation, "input": case_input}))

    assert problems("billing-periods", {"cycle": {"anchorDate": "2024-01-01"}, "at": 5,
                                        "periods": True}) == {
        ("wrong-type", "/at"), ("wrong-type", "/periods")}
    assert problems("billing-periods", {}) == {("missing-field", "/cycle"),
                                               ("missing-field", "/at")}
    assert problems("invoice", {"records": {}}) == {("missing-field", "/request"),
                                                    ("wrong-type", "/records")}
    assert problems("reconcile", {}) == {("missing-field", "/request"),
                                         ("missing-field", "/closed"),
                                         ("missing-field", "/records")}
    assert problems("apply-adjustment", {"invoice": 1}) == {("wrong-type", "/invoice"),
                                                            ("missing-field", "/adjustment")}
    assert problems("project", {"request": []}) == {("wrong-type", "/request"),
                                                    ("missing-field", "/records")}
    assert problems("domain-event", {}) == {("missing-field", "/type")}
    assert problems("domain-event", {"type": 3}) == {("wrong-type", "/type")}
    assert problems("domain-event", {"type": "invoice.generated"}) == {
        ("missing-field", "/invoice")}
    assert problems("to-cloudevent", {}) == {("missing-field", "/event"),
                                             ("missing-field", "/source")}
    assert problems("to-cloudevent", {"event": [], "source": "/s"}) == {("wrong-type", "/event")}
    for operation in ("from-cloudevent", "domain-event-from-cloudevent"):
        assert problems(operation, {}) == {("missing-field", "/cloudevent")}
        # A string is never parsed as a CloudEvent, even when it holds one (MS-CE-008 spirit).
        assert problems(operation, {"cloudevent": '{"specversion": "1.0"}'}) == {
            ("wrong-type", "/cloudevent")}


def test_billing_periods_counts_are_json_integers() -> None:
    answer = handle({"operation": "billing-periods", "input": {
        "cycle": {"anchorDate": "2024-01-31"}, "at": "2024-03-01T00:00:00Z", "periods": 2.0}})
    assert answer == {"output": [
        {"start": "2024-01-31T00:00:00Z", "end": "2024-02-29T00:00:00Z"},
        {"start": "2024-02-29T00:00:00Z", "end": "2024-03-31T00:00:00Z"}]}


def test_rate_limit_costs_are_json_integers() -> None:
    def answer(cost: object) -> dict[str, Any]:
        return handle({"operation": "rate-limit", "input": {
            "policy": {"limits": [{"window": "second", "limit": 3}]}, "state": {"log": []},
            "now": "2024-01-01T00:00:00Z", "cost": cost}})

    # 2.0 is the integer 2, as JSON Schema says; true is not a number.
    assert answer(2.0)["output"][0]["remaining"] == [1]
    assert answer(2)["output"][0]["state"] == {"log": [{"at": "2024-01-01T00:00:00Z",
                                                        "cost": 2}]}
    assert _problems(answer(True)) == {("wrong-type", "/cost")}
    assert _problems(answer(2**53)) == {("out-of-range", "/cost")}


def test_ingest_reports_a_batch_that_is_partly_not_events() -> None:
    event = {"id": "e", "workspaceID": "w", "universeID": "u", "type": "t", "subject": "s",
             "time": "2024-01-01T00:00:00Z"}
    result = handle({"operation": "ingest", "input": {
        "state": {"events": []}, "events": [7, event, {**event, "extra": 1}]}})["output"][0]
    assert result["outcomes"] == ["rejected", "accepted", "rejected"]
    assert result["rejected"] == [
        {"index": 0, "problems": [{"code": "wrong-type", "path": ""}]},
        {"index": 2, "problems": [{"code": "unknown-field", "path": "/extra"}]}]
    assert [e["id"] for e in result["state"]["events"]] == ["e"]


# --- run ------------------------------------------------------------------------------------

def test_reference_passes_in_process_and_through_the_protocol(
        suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert conformance("run", "--impl", "python:meterspec", "--suite", suite) == 0
    command = shlex.join([sys.executable, "-m", "meterspec.conformance.adapter"])
    jsonl, markdown = tmp_path / "r.jsonl", tmp_path / "r.md"
    assert conformance("run", "--impl", command, "--suite", suite, "--validate-protocol",
                       "--report", jsonl, "--markdown", markdown) == 0
    lines, summary = report(jsonl)
    assert lines["m-001"] == {"id": "m-001", "area": "metering", "features": ["basic"],
                              "result": "passed"}
    assert summary["summary"] == {"passed": 3, "failed": 0, "skipped": 0, "errored": 0,
                                  "total": 3}
    assert summary["implementation"]["name"] == "meterspec"
    text = markdown.read_text()
    assert "| `metering` | 2 | 0 | 0 | 0 | 100.0% |" in text
    assert "| `errors` | 1 | 0 | 0 | 0 | 100.0% |" in text
    assert "PASS: 3 of 3" in capsys.readouterr().out


def test_failures_show_id_input_and_diff_and_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = handle(case("m-001"))["output"]
    assert wrong[1]["measurement"]["quantity"] == "1.5"  # canonical (MS-QTY-004)
    wrong[1]["measurement"]["quantity"] = "1.50"
    root = write_suite(tmp_path / "c", {"metering/a.json": [
        case("m-001", output=wrong),
        case("m-002", error=[{"code": "invalid-json", "path": "/x"}],
             input={"config": CONFIG, "eventText": "{"}),
        case("m-003")]})
    jsonl = tmp_path / "r.jsonl"
    assert conformance("run", "--impl", "python:meterspec", "--suite", root,
                       "--report", jsonl) == 1
    out = capsys.readouterr().out
    assert "FAILED m-001" in out and '"eventText"' not in out.split("FAILED m-002")[0]
    assert '-        "quantity": "1.50",' in out and '+        "quantity": "1.5",' in out
    assert "FAILED m-002" in out and '+      "path": ""' in out
    assert "FAIL: 1 of 3 cases passed (33.3%)" in out
    lines, summary = report(jsonl)
    assert lines["m-001"]["result"] == "failed"
    assert lines["m-001"]["expected"] == {"output": wrong}
    assert lines["m-001"]["actual"]["output"][1]["measurement"]["quantity"] == "1.5"
    assert lines["m-003"]["result"] == "passed" and "expected" not in lines["m-003"]
    assert summary["summary"]["failed"] == 2


def test_filters_are_repeatable_and_combine(
        suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jsonl = tmp_path / "r.jsonl"

    def selected(*filters: str) -> set[str]:
        assert conformance("run", "--impl", "python:meterspec", "--suite", suite,
                           "--report", jsonl, *filters) == 0
        return set(report(jsonl)[0])

    assert selected("--area", "metering") == {"m-001", "m-002"}
    assert selected("--feature", "errors", "--feature", "basic") == {"m-001", "m-002", "a-001"}
    assert selected("--area", "metering", "--feature", "basic") == {"m-001"}
    assert selected("--case", "a-001", "--case", "m-002") == {"a-001", "m-002"}
    assert conformance("run", "--impl", "python:meterspec", "--suite", suite,
                       "--case", "nope-001") == 2
    assert "no case named nope-001" in capsys.readouterr().err


def test_unsupported_operations_and_features_are_skipped_and_not_passed(
        suite: Path, tmp_path: Path) -> None:
    jsonl = tmp_path / "r.jsonl"
    command = fake(tmp_path, info={"operations": ["meter"], "features": ["basic"]})
    assert conformance("run", "--impl", command, "--suite", suite, "--report", jsonl) == 1
    lines, summary = report(jsonl)
    assert lines["m-001"]["result"] == "passed"
    assert lines["m-002"]["result"] == "skipped" and "errors" in lines["m-002"]["reason"]
    assert lines["a-001"]["result"] == "skipped" and "aggregate" in lines["a-001"]["reason"]
    assert summary["summary"]["skipped"] == 2
    assert summary["implementation"]["features"] == ["basic"]


def test_protocol_violations_are_errored_and_the_adapter_restarted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    behaviours = ["bad-json", "wrong-seq", "two-kinds", "exit", "errored", "skipped", "sleep"]
    cases = [case(f"c-{i:03}") for i in range(2 * len(behaviours) + 1)]
    root = write_suite(tmp_path / "c", {"metering/a.json": cases})
    mode = {f"c-{2 * i + 1:03}": b for i, b in enumerate(behaviours)}  # odd ones misbehave
    jsonl = tmp_path / "r.jsonl"
    assert conformance("run", "--impl", fake(tmp_path, cases=mode), "--suite", root,
                       "--timeout", "0.5", "--report", jsonl) == 1
    lines, summary = report(jsonl)
    reasons = {mode[i]: lines[i].get("reason", "") for i in mode}
    assert {b: lines[i]["result"] for i, b in mode.items()} == {
        **dict.fromkeys(behaviours, "errored"), "skipped": "skipped"}
    assert "not valid JSON" in reasons["bad-json"]
    assert "carries seq 104, expected 4" in reasons["wrong-seq"]
    assert "exactly one of" in reasons["two-kinds"]
    assert "exited (status 3)" in reasons["exit"]
    assert reasons["errored"] == "boom"
    assert "within 0.5 s" in reasons["sleep"]
    assert all(lines[f"c-{i:03}"]["result"] == "passed" for i in range(0, len(cases), 2))
    assert summary["summary"] == {"passed": 8, "failed": 0, "skipped": 1, "errored": 6,
                                  "total": 15}
    # One start, and one more after each violation that left the adapter unusable.
    assert starts(tmp_path) == 1 + 5
    assert "ERRORED c-003" in capsys.readouterr().out


def test_validate_protocol_reports_schema_violations_as_errored(
        suite: Path, tmp_path: Path) -> None:
    command = fake(tmp_path, info={"vendor": "acme"})  # not in the started schema
    jsonl = tmp_path / "r.jsonl"
    assert conformance("run", "--impl", command, "--suite", suite) == 0
    assert conformance("run", "--impl", command, "--suite", suite, "--validate-protocol",
                       "--report", jsonl) == 1
    lines, summary = report(jsonl)
    assert {line["result"] for line in lines.values()} == {"errored"}
    assert "'vendor' was unexpected" in lines["m-001"]["reason"]
    assert summary["implementation"]["vendor"] == "acme"


def test_harness_errors_exit_2_without_traceback(
        suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def fails(*args: str | Path, says: str) -> None:
        assert conformance(*args) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err

    fails("run", "--impl", "python:meterspec", "--suite", tmp_path / "none", says="no suite")
    fails("run", "--impl", str(tmp_path / "no-such-adapter"), "--suite", suite,
          says="cannot start adapter")
    fails("run", "--impl", "python:other", "--suite", suite, says="unknown in-process")
    fails("run", "--impl", "'unbalanced", "--suite", suite, says="cannot parse --impl")
    fails("run", "--impl", shlex.join([sys.executable, "-c", "print('hello')"]),
          "--suite", suite, says="did not start properly")
    fails("run", "--impl", "python:meterspec", "--suite", suite, "--report",
          tmp_path / "no" / "r.jsonl", says="cannot write report")
    fails("check", "--suite", tmp_path / "none", says="no case files")
    (suite / "cases" / "v1" / "metering" / "basic.json").write_text("{")
    fails("run", "--impl", "python:meterspec", "--suite", suite, says="not valid JSON")
    fails("build", "--suite", suite, says="not valid JSON")


# --- check and build ------------------------------------------------------------------------

def test_check_accepts_a_sound_suite(suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pending = suite / "cases" / "v1" / "PENDING"
    # No case cites later.md: its MUST fails the check until PENDING says so on purpose.
    assert conformance("check", "--suite", suite) == 1
    assert "MS-LTR-001 says MUST but no case cites it" in capsys.readouterr().out
    pending.write_text("# not yet\nlater.md  no operation for it yet\n")
    assert conformance("check", "--suite", suite) == 0
    out = capsys.readouterr().out
    assert "3 cases, no problems" in out
    assert "not yet in the suite's scope (cases/v1/PENDING): later.md" in out
    pending.write_text("later.md\nnowhere.md\n")
    assert conformance("check", "--suite", suite) == 1
    assert "cases/v1/PENDING: nowhere.md is not a spec file" in capsys.readouterr().out


def test_check_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_record = handle(case("x-001"))["output"]
    bad_record[0]["recordedAt"] = "yesterday"
    root = write_suite(tmp_path / "c", {
        "metering/a.json": [
            case("m-001", requirements=("MS-TST-001", "MS-TST-009")),
            case("m-001"),
            case("m-002", error=[{"code": "no-such-code", "path": ""}]),
            case("m-003", output=bad_record),
            case("m-004", output=[], error=[{"code": "invalid-json", "path": ""}]),
            case("Bad id", requirements=("MS-TST-003",)),
            case("m-005"),
        ],
        "other/b.json": [case("o-001")],
    })
    moved = root / "cases" / "v1" / "other" / "b.json"
    moved.write_text(moved.read_text().replace('"area": "other"', '"area": "metering"'))
    (root / "cases" / "v1" / "RETIRED").write_text("# retired ids\nm-005 was wrong\n")
    assert conformance("check", "--suite", root) == 1
    out = capsys.readouterr().out
    for message in ["requirement MS-TST-009 is not defined",
                    "id m-001 repeats (first in metering/a.json)",
                    "error code 'no-such-code' is not in specs/errors.md",
                    "m-003: output/0/recordedAt: not a valid record",
                    "/cases/4: needs exactly one of output and error",
                    "/cases/5/id: 'Bad id' does not match",
                    "id m-005 is retired",
                    "other/b.json: area 'metering' but the file is not in metering/"]:
        assert message in out, message
    # An invalid case's citations do not count, so MS-TST-003 (MUST after a code block)
    # is reported; MS-TST-002 has no MUST and the MUST under "## Other" belongs to no id.
    assert "MS-TST-003 says MUST but no case cites it" in out
    assert "MS-TST-002" not in out.replace("MS-TST-009", "")


def test_check_validates_the_outputs_of_every_operation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    charge = {"id": "c", "model": "flat", "amount": "0.125"}
    rated = handle({"operation": "rate", "input": {"charge": charge, "quantity": "0",
                                                   "currency": "USD"}})["output"]
    assert rated[0]["amount"] == {"precise": "0.125", "rounded": "0.12"}
    wrong = [{**rated[0], "amount": {"precise": "0.125", "rounded": "0.13"}}]
    ingest_input = {"state": {"events": []}, "events": []}
    ingested = handle({"operation": "ingest", "input": ingest_input})["output"]
    limited_input = {"policy": {"limits": [{"window": "second", "limit": 1}]},
                     "state": {"log": []}, "now": "2024-01-01T00:00:00Z"}
    limited = handle({"operation": "rate-limit", "input": limited_input})["output"]
    root = write_suite(tmp_path / "c", {"pricing/a.json": [
        case("p-001", "rate", input={"charge": charge, "quantity": "0", "currency": "USD"},
             output=rated),
        case("p-002", "rate", input={"charge": charge, "quantity": "0", "currency": "USD"},
             output=wrong),
        case("p-003", "ingest", input=ingest_input, output=ingested),
        case("p-004", "ingest", input=ingest_input,
             output=[{k: v for k, v in ingested[0].items() if k != "late"}]),
        case("p-005", "ingest", input=ingest_input,
             output=[{**ingested[0], "state": {"events": [], "horizon": "soon"}}]),
        case("p-006", "rate-limit", input=limited_input, output=limited),
        case("p-007", "rate-limit", input=limited_input,
             output=[{**limited[0], "retryAfter": 5}]),
        case("p-008", "rate", input={"charge": charge, "quantity": "0"}, output=rated),
    ]})
    (root / "cases" / "v1" / "PENDING").write_text("later.md later\n")
    assert conformance("check", "--suite", root) == 1
    out = capsys.readouterr().out
    assert "p-001" not in out and "p-003" not in out and "p-006" not in out
    for message in ["p-002: output/0/amount/rounded: not a valid rated-charge: "
                    "inconsistent-amount",
                    "p-004: output/0: not a valid ingestResult: 'late' is a required property",
                    "p-005: output/0/state/horizon: not a valid ingestion-state",
                    "p-007: output/0/retryAfter: not a valid rateLimitDecision",
                    "/cases/7/input: 'currency' is a required property"]:
        assert message in out, message


def test_check_validates_billing_and_event_outputs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    periods_input = {"cycle": {"anchorDate": "2024-01-15"}, "at": "2024-02-01T00:00:00Z"}
    periods = handle({"operation": "billing-periods", "input": periods_input})["output"]
    request = {"workspaceID": "w", "universeID": "u", "at": "2024-02-01T00:00:00Z",
               "plans": [{"id": "p", "version": 1, "currency": "USD",
                          "effectiveFrom": "2024-01-01T00:00:00Z",
                          "charges": [{"id": "base", "model": "flat", "amount": "10"}]}],
               "usage": {}, "subscriptions": [{"subject": "s", "planID": "p",
                                               "cycle": {"anchorDate": "2024-01-01"}}]}
    invoice_input = {"request": request, "records": []}
    invoices = handle({"operation": "invoice", "input": invoice_input})["output"]
    event_input = {"type": "invoice.generated", "invoice": invoices[0]}
    event = handle({"operation": "domain-event", "input": event_input})["output"][0]
    ce_input = {"event": event, "source": "/meterspec"}
    published = handle({"operation": "to-cloudevent", "input": ce_input})["output"]
    root = write_suite(tmp_path / "c", {"billing/a.json": [
        case("b-001", "billing-periods", input=periods_input, output=periods),
        case("b-002", "billing-periods", input=periods_input,
             output=[{**periods[0], "end": "2024-03-15T00:00:00.000Z"}]),
        case("b-003", "invoice", input=invoice_input, output=invoices),
        case("b-004", "invoice", input=invoice_input,
             output=[{**invoices[0], "total": {"precise": "10", "rounded": "11"}}]),
        case("b-005", "domain-event", input=event_input, output=[{**event, "currency": "EUR"}]),
        case("b-006", "to-cloudevent", input=ce_input, output=published),
        case("b-007", "to-cloudevent", input=ce_input,
             output=[{**published[0], "data": {**event, "type": "invoice.generated.v2"}}]),
        case("b-008", "domain-event", input={"type": "usage.recorded"}, output=[]),
    ]})
    (root / "cases" / "v1" / "PENDING").write_text("later.md later\n")
    assert conformance("check", "--suite", root) == 1
    out = capsys.readouterr().out
    assert "b-001" not in out and "b-003" not in out and "b-006" not in out
    for message in ["b-002: output/0/end: not a valid billingPeriod",
                    "b-004: output/0/total: not a valid invoice: inconsistent-amount",
                    "b-005: output/0/id: not a valid domain-event: inconsistent-id",
                    "b-007: output/0/data/type: not a valid domain-event: unknown-event-type",
                    "/cases/7/input: needs exactly one of record and invoice"]:
        assert message in out, message


def test_build_is_deterministic_and_check_finds_drift(
        suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (suite / "cases" / "v1" / "aggregation" / "Z.json").write_text(
        (suite / "cases" / "v1" / "aggregation" / "sum.json").read_text()
        .replace('"a-001"', '"a-002"'))
    assert conformance("build", "--check", "--suite", suite) == 1
    assert conformance("build", "--suite", suite) == 0
    data = (suite / "suite-v1.json").read_bytes()
    assert conformance("build", "--suite", suite) == 0
    assert (suite / "suite-v1.json").read_bytes() == data
    assert conformance("build", "--check", "--suite", suite) == 0
    assert (suite / "suite-v1.json.sha256").read_text() == (
        f"{hashlib.sha256(data).hexdigest()}  suite-v1.json\n")
    built = json.loads(data)
    assert built["version"] == 1
    assert list(built["files"]) == ["aggregation/Z.json", "aggregation/sum.json",
                                    "metering/basic.json"]  # code-point order
    assert list(built["files"]["metering/basic.json"]["cases"][0])[:3] == [
        "id", "description", "operation"]  # members as written
    assert data.endswith(b"}\n") and b'\n "version": 1' in data
    # The built file runs like the case files it came from.
    assert conformance("run", "--impl", "python:meterspec",
                       "--suite", suite / "suite-v1.json") == 0
    (suite / "cases" / "v1" / "metering" / "basic.json").write_text(
        (suite / "cases" / "v1" / "metering" / "basic.json").read_text().replace("test", "T"))
    capsys.readouterr()
    assert conformance("build", "--check", "--suite", suite) == 1
    assert "out of date: suite-v1.json, suite-v1.json.sha256" in capsys.readouterr().out
    (suite / "suite-v1.json").write_bytes(data.replace(b"case m-001", b"case m-00l"))
    assert conformance("run", "--impl", "python:meterspec",
                       "--suite", suite / "suite-v1.json") == 2
    assert "does not match its checksum" in capsys.readouterr().err


# --- which suite, and declared skips (INTERPRETING.md 6) -----------------------------------

def test_reports_name_the_suite_by_version_and_checksum(
        suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jsonl, markdown = tmp_path / "r.jsonl", tmp_path / "r.md"

    def named(source: Path) -> dict[str, Any]:
        capsys.readouterr()
        assert conformance("run", "--impl", "python:meterspec", "--suite", source,
                           "--report", jsonl, "--markdown", markdown) == 0
        identity: dict[str, Any] = report(jsonl)[1]["suite"]
        shown = f"{identity['version'] or '(no version)'} ({identity['source']}"
        assert f"suite: {shown}" in capsys.readouterr().out
        assert f"Suite {shown}" in markdown.read_text()
        return identity

    assert conformance("build", "--suite", suite) == 0
    data = (suite / "suite-v1.json").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert json.loads(data)["suiteVersion"] == TEST_VERSION
    # Case folders: the version of their INTERPRETING.md, the digest of the bundle they build.
    assert named(suite) == {"version": TEST_VERSION, "sha256": digest, "source": "cases/v1"}
    # The bundle: its own version and the digest of the file as read.
    assert named(suite / "suite-v1.json") == {"version": TEST_VERSION, "sha256": digest,
                                              "source": "suite-v1.json"}
    assert digest in markdown.read_text()
    # A bundle built before bundles carried a version: no version, still its digest.
    old = tmp_path / "old" / "suite-v1.json"
    old.parent.mkdir()
    old.write_text(json.dumps({"version": 1, "files": json.loads(data)["files"]}))
    assert named(old) == {"version": None, "sha256": hashlib.sha256(old.read_bytes())
                          .hexdigest(), "source": "suite-v1.json"}
    old.write_text(json.dumps({"version": 1, "suiteVersion": 13, "files": {}}))
    assert conformance("run", "--impl", "python:meterspec", "--suite", old) == 2
    assert "suiteVersion is not a version" in capsys.readouterr().err
    # Case folders without a version: said so, and nothing to build.
    (suite / "INTERPRETING.md").write_text("# Rules\n\nDocument version 1.\n")
    assert named(suite) == {"version": None, "sha256": None, "source": "cases/v1"}
    assert conformance("build", "--suite", suite) == 2
    assert "no suite version" in capsys.readouterr().err


def test_allow_skips_forgives_only_cases_the_implementation_does_not_claim(
        suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jsonl, markdown = tmp_path / "r.jsonl", tmp_path / "r.md"
    claims = {"operations": ["meter"], "features": ["basic"]}  # m-001 only

    def status(*flags: str, **mode: Any) -> int:
        capsys.readouterr()
        return conformance("run", "--impl", fake(tmp_path, info=claims, **mode), "--suite",
                           suite, "--report", jsonl, "--markdown", markdown, *flags)

    assert status() == 1  # strict by default
    assert report(jsonl)[1]["allowSkips"] is False
    assert status("--allow-skips") == 0
    out = capsys.readouterr().out
    assert ("2 case(s) skipped, 2 not claimed by the implementation, allowed by "
            "--allow-skips;") in out
    assert re.search(r"^total +1 +0 +2 +0 +33.3%$", out, re.MULTILINE)  # skips still shown
    assert "PASS: 1 of 3 cases passed (33.3%); 2 not claimed" in out
    assert "Verdict: PASS." in markdown.read_text()
    lines, summary = report(jsonl)
    assert lines["m-002"]["result"] == lines["a-001"]["result"] == "skipped"
    assert lines["m-002"]["claimed"] is lines["a-001"]["claimed"] is False
    assert "claimed" not in lines["m-001"]
    assert summary["summary"]["skipped"] == summary["notClaimed"] == 2
    assert summary["allowSkips"] is True
    # A claimed case that is skipped, errored or failed still fails the run.
    for behaviour in ("skipped", "errored"):
        assert status("--allow-skips", cases={"m-001": behaviour}) == 1, behaviour
    lines, summary = report(jsonl)
    assert lines["m-001"]["result"] == "errored"
    claims.pop("features")  # every case of meter is claimed now: m-002 too
    assert status("--allow-skips", cases={"m-002": "skipped"}) == 1
    lines, summary = report(jsonl)
    assert lines["m-002"] == {"id": "m-002", "area": "metering", "features": ["errors"],
                              "result": "skipped", "reason": "not today", "claimed": True}
    assert summary["notClaimed"] == 1 and "FAIL: 1 of 3" in capsys.readouterr().out
    wrong = tmp_path / "wrong"
    write_suite(wrong, {"metering/a.json": [case("m-001", output=[])]})
    assert conformance("run", "--impl", "python:meterspec", "--suite", wrong,
                       "--allow-skips") == 1
    # Cases not run before the deadline are claimed: they fail the run.
    slow = write_suite(tmp_path / "slow", {"metering/a.json": [case("s-001"), case("s-002")]})
    assert conformance("run", "--impl", fake(tmp_path, cases={"s-001": "sleep"}), "--suite",
                       slow, "--deadline", "1", "--allow-skips", "--report", jsonl) == 1
    lines, _ = report(jsonl)
    assert lines["s-002"]["result"] == "skipped" and lines["s-002"]["claimed"] is True


@pytest.mark.skipif(NODE is None, reason="node is not on PATH")
def test_the_partial_node_adapter_is_green_on_what_it_claims(
        capsys: pytest.CaptureFixture[str]) -> None:
    """examples/node-adapter implements meter and aggregate (sum, UTC): with --allow-skips its
    run exits 0; strictly, the cases it does not claim fail it."""
    assert NODE is not None
    command = shlex.join([NODE, str(ROOT / "examples" / "node-adapter" / "adapter.js")])
    assert conformance("run", "--impl", command, "--allow-skips") == 0
    out = capsys.readouterr().out
    assert "PASS: " in out and " not claimed by the implementation, allowed" in out
    assert conformance("run", "--impl", command) == 1
    assert "FAIL: " in capsys.readouterr().out


# --- the real suite -------------------------------------------------------------------------

needs_real_suite = pytest.mark.skipif(not REAL_CASES.is_dir(),
                                      reason="conformance/cases/v1 not written yet")


@needs_real_suite
def test_real_suite_is_sound_and_built(capsys: pytest.CaptureFixture[str]) -> None:
    assert conformance("check") == 0, capsys.readouterr().out
    assert conformance("build", "--check") == 0, capsys.readouterr().out
    bundle = json.loads((ROOT / "conformance" / "suite-v1.json").read_bytes())
    rules = (ROOT / "conformance" / "INTERPRETING.md").read_text(encoding="utf-8")
    assert f"Document version **{bundle['suiteVersion']}**." in rules.splitlines()[2]


def _zones(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, member in value.items():
            if key == "timeZone" and isinstance(member, str):
                yield member
            yield from _zones(member)
    elif isinstance(value, list):
        for member in value:
            yield from _zones(member)


@needs_real_suite
def test_cases_that_need_the_time_zone_database_say_so() -> None:
    """A zone other than UTC (or a name that may or may not be one) needs the IANA database:
    such a case carries the feature time-zones, so an implementation without it can leave it
    unclaimed (--allow-skips) rather than be sent it. An empty name is a schema problem."""
    untagged = [item["id"] for path in sorted(REAL_CASES.rglob("*.json"))
                for item in json.loads(path.read_text(encoding="utf-8"))["cases"]
                if "time-zones" not in item["features"]
                and any(zone not in ("UTC", "") for zone in _zones(item["input"]))]
    assert untagged == []


@needs_real_suite
def test_reference_passes_the_whole_real_suite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every case except the known bugs of the reference (REFERENCE_BUGS), which it fails."""
    jsonl = tmp_path / "r.jsonl"
    code = conformance("run", "--impl", "python:meterspec", "--report", jsonl)
    lines, summary = report(jsonl)
    not_passed = {case_id for case_id, line in lines.items() if line["result"] != "passed"}
    assert not_passed == set(REFERENCE_BUGS), capsys.readouterr().out
    assert code == (1 if REFERENCE_BUGS else 0)
    totals = summary["summary"]
    assert totals["passed"] == totals["total"] - len(REFERENCE_BUGS) > 0
    shipped = (ROOT / "conformance" / "suite-v1.json.sha256").read_text().split()[0]
    version = json.loads((ROOT / "conformance" / "suite-v1.json").read_bytes())["suiteVersion"]
    assert summary["suite"] == {"version": version, "sha256": shipped, "source": "cases/v1"}
    assert totals["failed"] == len(REFERENCE_BUGS)


def _real_case(case_id: str) -> dict[str, Any]:
    for path in sorted(REAL_CASES.rglob("*.json")):
        for item in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            if item["id"] == case_id:
                return dict(item)
    raise LookupError(case_id)


@needs_real_suite
@pytest.mark.parametrize("case_id", [
    pytest.param(case_id, marks=pytest.mark.xfail(strict=True, reason=reason), id=case_id)
    for case_id, reason in REFERENCE_BUGS.items()])
def test_known_reference_bug(case_id: str) -> None:
    """A case the reference fails because src/meterspec is wrong: strict xfail, so the day
    the bug is fixed this passes, fails the run, and the entry leaves REFERENCE_BUGS."""
    item = _real_case(case_id)
    expected: dict[str, Any] = {k: item[k] for k in ("output", "error") if k in item}
    assert judge(expected, handle(item)) == ("passed", None)
