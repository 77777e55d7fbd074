"""What a run prints and writes (INTERPRETING.md 6): failures with diffs, tables per area and
per feature, a JSON-lines report and a Markdown summary."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from meterspec.conformance.compare import diff
from meterspec.conformance.runner import Outcome, Run

RESULTS = ("passed", "failed", "skipped", "errored")
COLUMNS = (*RESULTS, "percent")
SHOWN_LINES = 400
"""Lines of a failed case's input, and of its diff, printed on the terminal: an adapter's
answer may be as long as --max-response allows; the JSON-lines report keeps all of it."""
DIFF_LIMIT = 1 << 20
"""Characters of an answer, as JSON, beyond which it is not diffed on the terminal: a diff of
a 16 MiB answer takes seconds and runs to a million lines."""
NAME_LIMIT = 100  # characters of the implementation's name, version and language shown


def counts(outcomes: Iterable[Outcome]) -> dict[str, int]:
    tally = dict.fromkeys(RESULTS, 0)
    for outcome in outcomes:
        tally[outcome.result] += 1
    tally["total"] = sum(tally[r] for r in RESULTS)
    return tally


def percent(tally: dict[str, int]) -> str:
    return f"{100 * tally['passed'] / tally['total']:.1f}%" if tally["total"] else "-"


def tables(run: Run) -> list[tuple[str, list[tuple[str, dict[str, int]]]]]:
    """(heading, rows) for the area table and the feature table; each ends with the total."""
    by_area: dict[str, list[Outcome]] = {}
    by_feature: dict[str, list[Outcome]] = {}
    for outcome in run.outcomes:
        by_area.setdefault(outcome.case.area, []).append(outcome)
        for feature in outcome.case.features:
            by_feature.setdefault(feature, []).append(outcome)
    total = ("total", counts(run.outcomes))
    return [
        ("area", [(name, counts(by_area[name])) for name in sorted(by_area)] + [total]),
        ("feature", [(name, counts(by_feature[name])) for name in sorted(by_feature)]
         + [total]),
    ]


def _cells(tally: dict[str, int]) -> list[str]:
    return [*(str(tally[r]) for r in RESULTS), percent(tally)]


def describe(implementation: dict[str, Any]) -> str:
    """name version (language), each clipped: the adapter chose them."""
    name, version, language = (str(implementation.get(k, "?"))[:NAME_LIMIT]
                                for k in ("name", "version", "language"))
    return f"{name} {version} ({language})"


def describe_suite(suite: dict[str, Any] | None, *, built: bool = True) -> str:
    """Which suite a run used: its version, where its cases came from and the SHA-256 of its
    suite-v1.json (for case folders, that of the file they build; not shown unless `built`:
    the terminal leaves it to the reports)."""
    if suite is None:
        return "unknown"
    version = suite.get("version") or "(no version)"
    sha256 = suite.get("sha256")
    if suite.get("source") == "suite-v1.json":
        return f"{version} (suite-v1.json, sha256 {sha256})"
    if not built:
        return f"{version} ({suite.get('source')}/)"
    if sha256 is None:
        return f"{version} ({suite.get('source')}/, without a version to build suite-v1.json)"
    return f"{version} ({suite.get('source')}/, building suite-v1.json with sha256 {sha256})"


def _skips(run: Run) -> str:
    """How many skipped cases were not claimed, and whether that is allowed."""
    allowed = ", allowed by --allow-skips" if run.allow_skips else ""
    return f"{run.not_claimed} not claimed by the implementation{allowed}"


class Progress:
    """`conformance run` on a terminal (issue 17): one line on stderr, rewritten as cases
    finish (cases done of all, passed, failed, errored, rate), cleared at the end. Only when
    the stream is a terminal: never in a pipe, a file or a CI log."""

    def __init__(self, total: int, out: TextIO, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.total, self.out, self.clock = total, out, clock
        self.started = clock()
        self.tally = {"passed": 0, "failed": 0, "errored": 0, "skipped": 0}
        self.shown_at = -1.0

    @staticmethod
    def wanted(out: TextIO) -> bool:
        try:
            return out.isatty()
        except (AttributeError, ValueError):
            return False

    def __call__(self, outcome: Outcome) -> None:
        self.tally[outcome.result] = self.tally.get(outcome.result, 0) + 1
        now = self.clock()
        done = sum(self.tally.values())
        if now - self.shown_at < 0.1 and done < self.total:
            return  # at most ten lines a second
        self.shown_at = now
        elapsed = now - self.started
        rate = f"{done / elapsed:,.0f}/s" if elapsed > 0 else "-"
        t = self.tally
        self._write(f"\r\033[K{done}/{self.total} cases, {t['passed']} passed, {t['failed']} "
                    f"failed, {t['errored']} errored, {t['skipped']} skipped, {rate}")

    def clear(self) -> None:
        self._write("\r\033[K")

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            pass


def print_terminal(run: Run, out: TextIO) -> None:
    """Failures (id, input, diff), errored cases (id, reason), then the tables."""
    for outcome in run.outcomes:
        case = outcome.case
        if outcome.result == "failed":
            assert outcome.actual is not None
            out.write(f"FAILED {case.id} ({case.file}): {case.description}\n")
            out.write("input:\n")
            out.write(_indent(_head(json.dumps(case.input, indent=2, ensure_ascii=False)))
                      + "\n")
            out.write(_indent(_difference(case.expected, outcome.actual)) + "\n\n")
        elif outcome.result == "errored":
            out.write(f"ERRORED {case.id} ({case.file}): {outcome.reason}\n\n")
    skipped = sum(1 for o in run.outcomes if o.result == "skipped")
    if skipped:
        out.write(f"{skipped} case(s) skipped, {_skips(run)}; the JSON-lines report "
                  "(--report) says why\n\n")
    if run.interrupted is not None:
        out.write(f"{run.not_run} case(s) not run: {run.interrupted}\n\n")
    out.write(f"implementation: {describe(run.implementation)}\n")
    if run.suite is not None:
        out.write(f"suite: {describe_suite(run.suite, built=False)}\n")
    for heading, rows in tables(run):
        header = [heading, *COLUMNS]
        body = [[name, *_cells(tally)] for name, tally in rows]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        out.write("\n")
        for row in [header, *body]:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in
                                                  zip(row[1:], widths[1:], strict=True)]
            out.write("  ".join(cells).rstrip() + "\n")
    total = counts(run.outcomes)
    verdict = "PASS" if run.ok else "FAIL"
    claims = f"; {_skips(run)}" if run.allow_skips else ""
    out.write(f"\n{verdict}: {total['passed']} of {total['total']} cases passed "
              f"({percent(total)}){claims}\n")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _difference(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    """The diff of a failed case, its first lines, or why there is none."""
    size = len(json.dumps(actual, ensure_ascii=False))
    if size > DIFF_LIMIT:
        return (f"(the actual answer is {size} characters of JSON, too long to diff here; the "
                "JSON-lines report (--report) has it)")
    return _head(diff(expected, actual))


def _head(text: str, limit: int = SHOWN_LINES) -> str:
    """The first `limit` lines of text, and how many more there were."""
    lines = text.splitlines()
    if len(lines) <= limit:
        return text
    return "\n".join([*lines[:limit], f"... ({len(lines) - limit} more lines; the "
                                       "JSON-lines report (--report) has the whole answer)"])


def jsonl_lines(run: Run) -> list[dict[str, Any]]:
    """One line per case, then the summary line."""
    lines: list[dict[str, Any]] = []
    for outcome in run.outcomes:
        case = outcome.case
        line: dict[str, Any] = {"id": case.id, "area": case.area,
                                "features": list(case.features), "result": outcome.result}
        if outcome.result == "failed":
            line["expected"] = case.expected
            line["actual"] = outcome.actual
        if outcome.reason is not None and outcome.result != "passed":
            line["reason"] = outcome.reason
        if outcome.result == "skipped":
            line["claimed"] = outcome.claimed
        if outcome.stderr:
            line["stderr"] = outcome.stderr
        lines.append(line)
    tally = counts(run.outcomes)
    summary: dict[str, Any] = {"summary": tally, "implementation": run.implementation}
    if run.suite is not None:
        summary["suite"] = run.suite
    summary["notClaimed"] = run.not_claimed
    summary["allowSkips"] = run.allow_skips
    if run.interrupted is not None:
        summary["interrupted"] = f"{run.interrupted}; {run.not_run} case(s) not run"
    lines.append(summary)
    return lines


def write_jsonl(run: Run, out: TextIO) -> None:
    for line in jsonl_lines(run):
        out.write(json.dumps(line, ensure_ascii=False) + "\n")


def write_markdown(run: Run, out: TextIO) -> None:
    total = counts(run.outcomes)
    out.write(f"# meterspec conformance: {describe(run.implementation)}\n\n")
    if run.suite is not None:
        out.write(f"Suite {describe_suite(run.suite)}.\n\n")
    skipped = f"; {_skips(run)}" if run.not_claimed or run.allow_skips else ""
    out.write(f"{total['passed']} of {total['total']} cases passed ({percent(total)}){skipped}. "
              f"Verdict: {'PASS' if run.ok else 'FAIL'}.\n")
    if run.interrupted is not None:
        out.write(f"\nThe run was stopped: {run.interrupted}; {run.not_run} case(s) not run.\n")
    for heading, rows in tables(run):
        out.write(f"\n## By {heading}\n\n")
        out.write(f"| {heading} | " + " | ".join(COLUMNS) + " |\n")
        out.write("|---|" + "---:|" * len(COLUMNS) + "\n")
        for name, tally in rows:
            label = f"**{name}**" if name == "total" else f"`{name}`"
            out.write(f"| {label} | " + " | ".join(_cells(tally)) + " |\n")
