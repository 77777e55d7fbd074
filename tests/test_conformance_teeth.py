"""The conformance suite has teeth: it fails implementations that are wrong in ways real
metering systems are wrong, passes the reference, and scores a second implementation.

The reference and the Node.js adapter (examples/node-adapter) go through the command line an
implementer would use, `meterspec conformance run --impl COMMAND --report FILE.jsonl`, against
the real suite in conformance/cases/v1. The wrong implementations are
tests/conformance_fixtures/broken_adapter.py, the reference adapter with one injected fault
each, run as subprocesses through the runner's Python API (the same Runner the command uses,
without paying its start-up once per fault). All runs start together (module fixture) so the
file stays fast, and a fault whose mistake is local runs only the cases that should catch it."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from meterspec.conformance import report
from meterspec.conformance.cases import Case, load_cases, select
from meterspec.conformance.runner import Runner, make_adapter

ROOT = Path(__file__).resolve().parents[1]
BROKEN = ROOT / "tests" / "conformance_fixtures" / "broken_adapter.py"
NODE_ADAPTER = ROOT / "examples" / "node-adapter" / "adapter.js"
NODE = shutil.which("node")
RUN = "import sys; from meterspec.cli import main; sys.exit(main(sys.argv[1:]))"
TIMEOUT = 300

# Cases the reference fails because the reference is wrong: the suite keeps each case as the
# spec says, and the reason names the bug in src/meterspec (not fixed here: another owner's
# code). tests/test_conformance_harness.py holds each one as a strict xfail, so a fix shows.
REFERENCE_BUGS: dict[str, str] = {}

# What the Node adapter passes today. Raise it when the adapter learns more; a drop is a
# regression (in the adapter, or a suite change that the adapter's README must explain).
NODE_MIN_PASSED = 365


@dataclass(frozen=True)
class Fault:
    """Where the suite should catch a fault: the cases to run (the areas of the rules it
    breaks, or features; the run stays fast), the cases known to catch it (at least one of them
    must fail), and, if the suite has no case for it yet, what case would catch it."""

    areas: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    catchers: tuple[str, ...] = ()
    gap: str | None = None


FAULTS: dict[str, Fault] = {
    # aggregation
    "twa-half-up": Fault(("aggregation",), catchers=("twa-012", "twa-014", "twa-016")),
    "twa-no-carry-in": Fault(("aggregation",), catchers=("agg-group-014", "twa-002", "twa-005")),
    "twa-tie-last-seen": Fault(("aggregation",), catchers=("twa-009", "twa-051")),
    "twa-covered-span": Fault(("aggregation",), catchers=("agg-group-014", "twa-003", "twa-010")),
    "twa-scale-ignored": Fault(("aggregation",), catchers=("twa-017", "twa-018", "twa-019")),
    "twa-float": Fault(("aggregation",), catchers=("twa-019", "twa-034", "twa-035")),
    "twa-rounded-per-segment": Fault(
        ("aggregation", "billing"), catchers=("twa-045", "twa-046", "inv-032")),
    "latest-last-seen": Fault(
        ("aggregation",), catchers=("agg-latest-003", "agg-latest-004", "agg-latest-005")),
    "min-max-lexicographic": Fault(
        ("aggregation",), catchers=("agg-minmax-002", "agg-minmax-004", "agg-minmax-010")),
    "float-sum": Fault(("aggregation", "quantity"), catchers=("qty-050", "qty-051", "qty-052")),
    "empty-sum-null": Fault(
        ("aggregation",), catchers=("agg-group-007", "agg-sum-001", "agg-sum-006")),
    "unique-count-counts-missing": Fault(
        ("aggregation",), catchers=("agg-unique-002", "agg-unique-007", "agg-unique-011")),
    "tenants-merged-workspace": Fault(
        ("aggregation",), catchers=("agg-sum-003", "agg-sum-006", "agg-sum-007")),
    "tenants-merged-universe": Fault(
        ("aggregation",), catchers=("agg-sum-004", "agg-sum-006", "agg-sum-007")),
    "group-missing-as-empty": Fault(
        ("aggregation",), catchers=("agg-group-001", "agg-group-002", "agg-group-004")),
    "readings-in-input-order": Fault(
        ("aggregation",), catchers=("agg-group-001", "agg-group-002", "agg-group-005")),
    "reading-id-no-group": Fault(
        ("aggregation", "ids"), catchers=("agg-group-001", "agg-group-002", "agg-group-004")),
    "empty-window-omitted": Fault(
        ("aggregation", "windows"), catchers=("agg-count-001", "agg-group-007", "agg-group-008")),
    # windows
    "window-end-inclusive": Fault(("windows",), catchers=("win-001", "win-004", "win-008")),
    "overlap-first-window-only": Fault(("windows",), catchers=("win-002", "win-006", "win-007")),
    "fixed-length-days": Fault(
        features=("time-zones",), catchers=("twa-026", "twa-027", "win-012")),
    "fixed-length-months": Fault(("windows",), catchers=("win-011", "win-016", "win-017")),
    "zero-length-window-accepted": Fault(("windows",), catchers=("win-044", "win-061")),
    "duplicate-window-accepted": Fault(("windows",), catchers=("win-045", "win-062")),
    # quantities and timestamps
    "exponent-output": Fault(("quantity",), catchers=("qty-001", "qty-005", "qty-009")),
    "trailing-zeros-kept": Fault(("quantity",), catchers=("qty-002", "qty-006", "qty-007")),
    "accept-nan": Fault(("quantity",), catchers=("qty-034", "qty-035")),
    "lenient-quantity": Fault(("quantity",), catchers=("qty-027", "qty-028", "qty-029")),
    "quantity-bounds-ignored": Fault(("quantity",), catchers=("qty-020", "qty-021", "qty-022")),
    "negative-rejected": Fault(("quantity",), catchers=("qty-007", "qty-010", "qty-053")),
    "millisecond-precision": Fault(("time",), catchers=("time-004", "time-005", "time-006")),
    "microsecond-truncation": Fault(("time", "aggregation", "quotas"),
                                    catchers=("time-004", "agg-latest-005", "rl-026")),
    "tenth-digit-rejected": Fault(("time",), catchers=("time-040", "time-066", "time-079")),
    "tenth-digit-truncated": Fault(("time",), catchers=("time-067", "time-068", "time-071")),
    "year-zero-invalid": Fault(("time",), catchers=("time-074", "time-075", "time-077")),
    "division-toward-zero": Fault(("time", "windows"),
                                  catchers=("time-073", "win-058", "win-059")),
    "exponent-digits-unbounded": Fault(
        ("quantity", "pricing"), catchers=("qty-067", "qty-070", "qty-072", "prc-err-033")),
    "offset-ignored": Fault(("time",), catchers=("time-001", "time-006", "time-012")),
    "calendar-rollover": Fault(("time",), catchers=("time-030", "time-031", "time-032")),
    # metering, events and ids
    "record-id-no-tenant": Fault(("ids",), catchers=("id-001", "id-002", "id-003")),
    "record-id-constant-raw": Fault(("ids", "metering"), catchers=("id-006", "met-006", "met-054")),
    "id-length-in-characters": Fault(("ids",), catchers=("id-007",)),
    "notin-missing-no-match": Fault(("metering",), catchers=("met-031", "met-042")),
    "dimensions-include-source": Fault(("metering",), catchers=("met-001", "met-002", "met-003")),
    "event-types-ignored": Fault(("metering",), catchers=("met-008", "met-009", "met-011")),
    "partial-event-billed": Fault(("metering",), catchers=("met-015",)),
    "metered-at-verbatim": Fault(("metering", "time"), catchers=("time-021",)),
    "unknown-field-ignored": Fault(("events",), catchers=("evt-003", "evt-004", "evt-017")),
    "unicode-normalized": Fault(("events",), catchers=("evt-031", "evt-032")),
    # errors
    "first-problem-only": Fault(("errors",), catchers=("err-004", "err-017", "err-027")),
    "measurement-beside-schema-problems": Fault(
        ("errors",), catchers=("err-039", "err-040", "err-041", "err-042")),
    # pricing (rate, rate-plan)
    "tier-upto-exclusive": Fault(("pricing",), catchers=("prc-001", "prc-003", "prc-007")),
    "money-half-up": Fault(("pricing",), catchers=("mny-001", "mny-003", "mny-006")),
    "round-each-tier": Fault(("pricing",), catchers=("prc-017", "prc-033", "prc-043")),
    "first-tier-fee-at-zero": Fault(("pricing",), catchers=("prc-005", "prc-011")),
    "package-ignores-included": Fault(
        ("pricing",), catchers=("prc-019", "prc-020", "prc-021")),
    "package-floor": Fault(("pricing",), catchers=("prc-019", "prc-023", "prc-024")),
    "minimum-only-with-usage": Fault(("pricing",), catchers=("prc-026", "prc-028", "plan-014")),
    "negative-usage-zero": Fault(("pricing",), catchers=("prc-012", "prc-013", "prc-014")),
    "total-rounded-again": Fault(("pricing",), catchers=("plan-016", "plan-018")),
    "version-highest-number": Fault(("pricing",), catchers=("plan-010", "plan-032")),
    "version-tie-first-listed": Fault(
        ("pricing", "billing"), catchers=("plan-028", "plan-029", "inv-031")),
    "effective-to-inclusive": Fault(("pricing",), catchers=("plan-006", "plan-033")),
    # ingestion (ingest, apply-corrections)
    "dedup-ignores-workspace": Fault(("ingestion",), catchers=("ing-005", "ing-006")),
    "conflict-overwrites": Fault(("ingestion",), catchers=("ing-003", "ing-004", "ing-011")),
    "digest-raw-time": Fault(("ingestion",), catchers=("ing-007", "ing-010")),
    "horizon-checked-first": Fault(("ingestion",), catchers=("ing-015", "ing-032")),
    "expire-lowers-horizon": Fault(("ingestion",), catchers=("ing-016", "ing-033")),
    "amendments-merge": Fault(("ingestion",), catchers=("cor-002", "cor-023")),
    "amendment-last-in-log": Fault(("ingestion",), catchers=("cor-003", "cor-024")),
    "state-utf16-order": Fault(("ingestion",), catchers=("ing-024", "ing-034")),
    # quotas and rate limits (quota, rate-limit)
    "quota-limit-exclusive": Fault(("quotas",), catchers=("qta-002", "qta-008", "qta-027")),
    "quota-period-utc": Fault(("quotas",), catchers=("qta-030", "qta-031", "qta-032")),
    "stale-usage-ignored": Fault(("quotas",), catchers=("qta-015", "qta-017", "qta-019")),
    "staleness-bound-inclusive": Fault(("quotas",), catchers=("qta-016", "qta-042")),
    "grace-ignored": Fault(("quotas",), catchers=("qta-009", "qta-011")),
    "warning-every-time": Fault(("quotas",), catchers=("qta-006", "qta-007")),
    "retry-after-off-by-one": Fault(("quotas",), catchers=("rl-003", "rl-005", "rl-017")),
    "too-costly-retry": Fault(("quotas",), catchers=("rl-006", "rl-023")),
    "window-start-inclusive": Fault(("quotas",), catchers=("rl-004", "rl-018", "rl-022")),
    "log-ahead-ignored": Fault(("quotas",), catchers=("rl-011", "rl-012")),
    "prune-relative-to-now": Fault(("quotas",), catchers=("rl-024", "rl-027")),
    # billing (billing-periods, invoice, reconcile, apply-adjustment, project)
    "anchor-day-spills": Fault(("billing",), catchers=("bil-002", "bil-003", "bil-004")),
    "anchor-day-drifts": Fault(("billing",), catchers=("bil-004", "bil-012", "bil-019")),
    "billing-midnight-utc": Fault(("billing",), catchers=("bil-006", "bil-016", "inv-009")),
    "midnight-later-offset": Fault(("billing",), catchers=("bil-008", "bil-017", "inv-027")),
    "invoice-total-from-precise": Fault(("billing",), catchers=("inv-025", "inv-033")),
    "carried-in-omitted": Fault(("billing",), catchers=("inv-005", "inv-007", "rec-007")),
    "records-before-period-dropped": Fault(("billing",),
                                           catchers=("inv-005", "prj-004", "rec-007")),
    "invoice-tenants-merged": Fault(("billing",), catchers=("inv-002", "prj-013")),
    "revision-amounts-only": Fault(("billing",), catchers=("inv-001", "rec-006", "adj-001")),
    "adjustment-rounds-precise-delta": Fault(("billing",), catchers=("rec-005", "rec-021")),
    "projection-half-up": Fault(("billing",), catchers=("prj-002", "prj-012")),
    "projection-counts-later-records": Fault(("billing",), catchers=("prj-003", "prj-012")),
    # domain events and CloudEvents
    "envelope-id-wins": Fault(("events",), catchers=("ce-020", "ce-021")),
    "envelope-time-wins": Fault(("events",), catchers=("ce-020", "ce-021")),
    "data-string-parsed": Fault(("events",), catchers=("ce-029", "ce-046")),
    "cloudevent-type-unversioned": Fault(("events",), catchers=("ce-001", "ce-002", "ce-004")),
    "cloudevent-subject-unchecked": Fault(("events",), catchers=("ce-006", "ce-044")),
    "source-unchecked": Fault(("events",), catchers=("ce-007", "ce-008", "ce-009")),
    "cloudevent-noncharacters-accepted": Fault(
        ("events",), catchers=("ce-042", "ce-043", "ce-044", "ce-045")),
    "event-id-dimensions-as-given": Fault(("events",), catchers=("dev-002", "dev-005")),
    "event-time-as-written": Fault(("events",), catchers=("dev-002", "ce-011")),
    # JSON text (decode-text: MS-ERR-007 to MS-ERR-012)
    "duplicate-names-last-wins": Fault(
        features=("json-text",), catchers=("text-060", "text-063", "text-064")),
    "depth-unbounded": Fault(
        features=("json-text",), catchers=("text-041", "text-049", "text-054")),
    "bom-rejected": Fault(features=("json-text",), catchers=("text-001", "text-002", "text-007")),
    "large-numbers-invalid-json": Fault(
        features=("json-text",), catchers=("text-090", "text-092", "text-104")),
    "lines-unbounded": Fault(
        features=("json-text",), catchers=("text-121", "text-123", "text-129")),
    "line-limit-in-characters": Fault(
        features=("json-text",), catchers=("text-125", "text-137")),
    "lone-surrogates-replaced": Fault(
        features=("json-text",), catchers=("text-020", "text-021", "text-027")),
    "invalid-utf8-replaced": Fault(
        features=("json-text",), catchers=("text-010", "text-011", "text-017")),
    "json-nan-accepted": Fault(
        features=("json-text",), catchers=("text-030", "text-031", "text-032")),
}


@dataclass
class Result:
    """One `meterspec conformance run`: its exit status, the report's case lines and summary."""

    status: int
    cases: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    output: str = ""

    def ids(self, *results: str) -> list[str]:
        return [line["id"] for line in self.cases if line["result"] in results]

    def explain(self) -> str:
        return f"exit {self.status}, summary {self.summary}\n{self.output[-3000:]}"


def conformance_run(impl: str, report: Path, *options: str) -> Result:
    process = subprocess.run(
        [sys.executable, "-c", RUN, "conformance", "run", "--impl", impl,
         "--report", str(report), *options],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    lines = ([json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
             if report.is_file() else [])
    summary = lines.pop()["summary"] if lines and "summary" in lines[-1] else {}
    return Result(process.returncode, lines, summary, process.stdout + process.stderr)


def api_run(impl: str, cases: list[Case]) -> Result:
    """What `meterspec conformance run` does, through the runner's Python API: the status is
    the command's (0 only if every selected case passed)."""
    run = Runner(make_adapter(impl, 60.0)).run(cases)
    lines = report.jsonl_lines(run)
    summary = lines.pop()["summary"]
    failing = [f"{line['id']}: {line.get('reason')}" for line in lines
               if line["result"] != "passed"]
    return Result(0 if run.passed else 1, lines, summary, "\n".join(failing))


def fault_cases(cases: list[Case], fault: Fault) -> list[Case]:
    """The cases a fault runs: its areas or features, without the MS-WIN-004 cases (100 000
    windows cost the reference seconds each, and no fault here is about that bound)."""
    chosen = select(cases, areas=fault.areas, features=fault.features)
    return [case for case in chosen if "MS-WIN-004" not in case.requirements]


def broken(fault: str) -> str:
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(BROKEN))} --fault {fault}"


REFERENCE_SUBPROCESS = f"{shlex.quote(sys.executable)} -m meterspec.conformance.adapter"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Result]]:
    """Every run this file needs, started together: the suite's cost is the reference's own
    work on a few large cases, so running them side by side is what keeps this file fast."""
    folder = tmp_path_factory.mktemp("teeth")
    commands: dict[str, tuple[str, tuple[str, ...]]] = {
        "reference": ("python:meterspec", ()),
        "reference-subprocess": (REFERENCE_SUBPROCESS, ("--validate-protocol",)),
    }
    if NODE is not None:
        commands["node"] = (f"{shlex.quote(NODE)} {shlex.quote(str(NODE_ADAPTER))}",
                            ("--validate-protocol",))
    cases = load_cases(ROOT / "conformance")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {key: pool.submit(conformance_run, impl, folder / f"{key}.jsonl", *options)
                   for key, (impl, options) in commands.items()}
        futures.update({f"fault:{name}": pool.submit(api_run, broken(name),
                                                     fault_cases(cases, fault))
                        for name, fault in FAULTS.items()})
        yield {key: future.result() for key, future in futures.items()}


def test_every_fault_of_the_broken_adapter_is_tested() -> None:
    listing = subprocess.run([sys.executable, str(BROKEN), "--list"], capture_output=True,
                             text=True, check=True, timeout=60).stdout
    assert sorted(line.split("\t")[0] for line in listing.splitlines()) == sorted(FAULTS)


@pytest.mark.parametrize("impl", ["reference", "reference-subprocess"])
def test_the_reference_passes_every_case(runs: dict[str, Result], impl: str) -> None:
    """Every case but the known reference bugs, which it fails (and only fails)."""
    result = runs[impl]
    assert result.status == (1 if REFERENCE_BUGS else 0), result.explain()
    assert result.summary["total"] > 0
    assert result.ids("errored", "skipped") == [], result.explain()
    assert sorted(result.ids("failed")) == sorted(REFERENCE_BUGS), result.explain()


def _fault_params() -> Iterator[Any]:
    for name, fault in FAULTS.items():
        gap = pytest.mark.xfail(strict=True, reason=f"suite gap: {fault.gap}")
        yield pytest.param(name, marks=[gap] if fault.gap else [], id=name)


@pytest.mark.parametrize("fault", list(_fault_params()))
def test_the_suite_catches_the_fault(runs: dict[str, Result], fault: str) -> None:
    result = runs[f"fault:{fault}"]
    assert result.summary, f"no report for {fault}: {result.explain()}"
    # Only cases the reference passes count: a case that is itself wrong catches nothing.
    unreliable = set(runs["reference"].ids("failed", "errored"))
    caught = [case for case in result.ids("failed") if case not in unreliable]
    assert result.status != 0, f"{fault}: exit 0, the suite passed a broken implementation"
    assert caught, f"{fault} is caught by no case (suite gap): {result.explain()}"
    catchers = FAULTS[fault].catchers
    assert not catchers or set(catchers) & set(caught), (
        f"{fault} is no longer caught by any of {catchers}; now caught by {caught}")


@pytest.mark.skipif(NODE is None, reason="node is not on PATH")
def test_the_node_adapter_fails_nothing_and_keeps_its_score(runs: dict[str, Result]) -> None:
    result = runs["node"]
    assert result.summary, result.explain()
    assert result.ids("failed") == [], result.explain()
    assert result.ids("errored") == [], result.explain()
    assert result.summary["passed"] >= NODE_MIN_PASSED, result.explain()
