"""Driving one implementation through the selected cases (INTERPRETING.md 3, 5)."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from meterspec.conformance.cases import Case
from meterspec.conformance.compare import judge
from meterspec.conformance.data import HarnessError
from meterspec.conformance.protocol import (
    DEFAULT_MAX_RESPONSE,
    DEFAULT_STDERR_SHOWN,
    Adapter,
    DeadlineError,
    InProcessAdapter,
    ProtocolError,
    SubprocessAdapter,
    result_problem,
    schema_violation,
    started_problem,
)

IN_PROCESS: dict[str, Callable[[], Adapter]] = {
    "python:meterspec": InProcessAdapter,
    # The DuckDB engine (meterspec.engines, issue 13), imported only when asked for.
    "python:meterspec.engines.duckdb": lambda: InProcessAdapter(
        import_module("meterspec.engines.duckdb")),
    "python:meterspec.engines.spark": lambda: InProcessAdapter(
        import_module("meterspec.engines.spark")),
}
DEFAULT_TIMEOUT = 30.0
REASON_LIMIT = 2000
"""Longest reason kept (characters): an adapter's `errored` or `skipped` text, or a message
quoting what it sent, is clipped so one answer cannot flood the terminal or the report."""
NOT_RUN = "not run: the run's deadline ({:g} s) passed"


def clip(text: str, limit: int = REASON_LIMIT) -> str:
    """text, or its first `limit` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


@dataclass(frozen=True)
class Outcome:
    """What became of one case. `stderr`: what the adapter wrote to stderr while the case ran,
    kept when the adapter broke the protocol (its last 64 KiB). `claimed`: False for a case
    skipped without being sent because the implementation's `start` did not list its operation
    or one of its features (INTERPRETING.md 5)."""

    case: Case
    result: str  # passed | failed | skipped | errored
    # The answer without seq, when there was one; not for a skipped or errored answer, whose
    # text (up to --max-response) the clipped reason carries instead.
    actual: dict[str, Any] | None = None
    reason: str | None = None
    stderr: str | None = None
    claimed: bool = True

    def __post_init__(self) -> None:
        if self.reason is not None and len(self.reason) > REASON_LIMIT:
            object.__setattr__(self, "reason", clip(self.reason))


@dataclass(frozen=True)
class Run:
    """The outcome of every selected case; `interrupted` says why some were not run. `suite`:
    which suite it was (cases.Suite.identity), for the reports. `allow_skips`: whether cases
    the implementation did not claim may be skipped without failing the run (--allow-skips)."""

    implementation: dict[str, Any]
    outcomes: list[Outcome]
    interrupted: str | None = None
    not_run: int = 0
    suite: dict[str, Any] | None = None
    allow_skips: bool = False

    @property
    def passed(self) -> bool:
        """Every case passed."""
        return all(o.result == "passed" for o in self.outcomes)

    @property
    def not_claimed(self) -> int:
        """Cases skipped because the implementation does not claim them."""
        return sum(1 for o in self.outcomes if not o.claimed)

    @property
    def ok(self) -> bool:
        """The verdict (exit status 0): every case passed, or, with allow_skips, every case
        passed or was not claimed. A claimed case skipped, failed or errored fails the run."""
        return all(o.result == "passed" or (self.allow_skips and not o.claimed)
                   for o in self.outcomes)


def make_adapter(impl: str, timeout: float, *, max_response: int = DEFAULT_MAX_RESPONSE,
                 stderr_shown: int = DEFAULT_STDERR_SHOWN) -> Adapter:
    """`python:meterspec` (in-process) or a command line, split as a POSIX shell would but
    run without one (on a POSIX system: the harness's bounds need non-blocking pipes)."""
    if impl.startswith("python:"):
        if impl not in IN_PROCESS:
            raise HarnessError(f"unknown in-process implementation {impl!r}; "
                               f"known: {', '.join(sorted(IN_PROCESS))}")
        return IN_PROCESS[impl]()
    try:
        argv = shlex.split(impl)
    except ValueError as error:
        raise HarnessError(f"cannot parse --impl {impl!r}: {error}") from None
    if not argv:
        raise HarnessError("--impl is empty")
    if timeout <= 0:
        raise HarnessError("--timeout must be positive")
    if max_response < 1:
        raise HarnessError("--max-response must be positive")
    if os.name != "posix":
        raise HarnessError("an adapter command needs a POSIX system (Linux, macOS, WSL); "
                           "only python:meterspec runs elsewhere")
    return SubprocessAdapter(argv, timeout, max_response=max_response,
                             stderr_shown=stderr_shown)


class Runner:
    """Runs cases one at a time; restarts the adapter after it breaks the protocol. With a
    `deadline` (seconds), the run stops when it passes: the adapter is killed and the cases
    not yet run are skipped as not run."""

    def __init__(self, adapter: Adapter, *, validate: bool = False,
                 progress: Callable[[Outcome], None] | None = None,
                 deadline: float | None = None) -> None:
        self.adapter = adapter
        self.validate = validate
        self.progress = progress
        self.deadline = deadline
        self.implementation: dict[str, Any] = {}
        self._seq = 0
        self._broken: str | None = None  # set when the adapter cannot be (re)started
        self._until: float | None = None  # the deadline, on time.monotonic()'s clock
        # The implementation's operations and features, as sets: the adapter's lists may be long.
        self._claimed: tuple[frozenset[str], frozenset[str] | None] = (frozenset(), None)

    def _start(self) -> str | None:
        """Start the adapter; None, or why its start response is not acceptable. A response
        that is usable but violates the schema (--validate-protocol) still names the
        implementation, so the report can say whose run it was."""
        try:
            message = self.adapter.start(self._until)
        except ProtocolError as error:
            self.adapter.discard()
            return f"start: {error}"
        problem = started_problem(message)
        if problem is None and not self.implementation:
            self.implementation = message["implementation"]
            features = self.implementation.get("features")
            self._claimed = (frozenset(self.implementation["operations"]),
                             None if features is None else frozenset(features))
        if problem is None and self.validate:
            problem = schema_violation(message, "started")
        if problem is not None:
            self.adapter.discard()
            return f"start: {problem}"
        return None

    def run(self, cases: Sequence[Case]) -> Run:
        if self.deadline is not None:
            self._until = time.monotonic() + self.deadline
        try:
            problem = self._start()
        except DeadlineError:
            raise HarnessError("the adapter did not start properly: start: no response to "
                               f"start before the run's deadline ({self.deadline:g} s)"
                               ) from None
        if problem is not None and not self.implementation:
            raise HarnessError(f"the adapter did not start properly: {problem}")
        if problem is not None:  # usable, but not what the schema says: every case errored
            self._broken = f"protocol: {problem}"
        outcomes: list[Outcome] = []
        try:
            for case in cases:
                if self._until is not None and time.monotonic() >= self._until:
                    break
                try:
                    outcome = self._one(case)
                except DeadlineError:
                    break
                self._record(outcome, outcomes)
        finally:
            self.adapter.stop()
        if len(outcomes) == len(cases):
            return Run(self.implementation, outcomes)
        not_run = NOT_RUN.format(self.deadline)
        for case in cases[len(outcomes):]:
            reason = self._skip_reason(case)
            self._record(Outcome(case, "skipped", reason=reason or not_run,
                                 claimed=reason is None), outcomes)
        count = sum(1 for o in outcomes if o.reason == not_run)
        return Run(self.implementation, outcomes, f"the run's deadline ({self.deadline:g} s) "
                   "passed", count)

    def _record(self, outcome: Outcome, outcomes: list[Outcome]) -> None:
        outcomes.append(outcome)
        if self.progress is not None:
            self.progress(outcome)

    def _skip_reason(self, case: Case) -> str | None:
        operations, features = self._claimed
        if case.operation not in operations:
            return f"operation {case.operation!r} not supported by the implementation"
        if features is not None:
            missing = [f for f in case.features if f not in features]
            if missing:
                return f"needs feature(s) not supported: {', '.join(missing)}"
        return None

    def _one(self, case: Case) -> Outcome:
        reason = self._skip_reason(case)
        if reason is not None:
            return Outcome(case, "skipped", reason=reason, claimed=False)
        if self._broken is not None:
            return Outcome(case, "errored", reason=self._broken)
        if self.adapter.restart_needed():
            problem = self._start()
            if problem is not None:
                self._broken = f"adapter could not be restarted: {problem}"
                return Outcome(case, "errored", reason=self._broken)
        self._seq += 1
        request = {"cmd": "run", "seq": self._seq, "case": case.request()}
        if self.validate:
            violation = schema_violation(request, "run")
            if violation is not None:  # the runner's own bug; say so rather than send it
                return Outcome(case, "errored", reason=f"protocol (runner): {violation}")
        try:
            response = self.adapter.exchange(request, self._until)
        except ProtocolError as error:
            return Outcome(case, "errored", reason=f"protocol: {error}",
                           stderr=error.stderr or None)
        problem = result_problem(response, self._seq)
        if problem is None and self.validate:
            problem = schema_violation(response, "result")
        if problem is not None:
            self.adapter.discard()
            return Outcome(case, "errored", reason=f"protocol: {problem}")
        actual = {k: v for k, v in response.items() if k != "seq"}
        result, why = judge(case.expected, actual)
        return Outcome(case, result, actual=actual if result in ("passed", "failed") else None,
                       reason=why)
