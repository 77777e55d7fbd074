"""Driving one implementation through the selected cases (INTERPRETING.md 3, 5)."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from meterspec.conformance.cases import Case
from meterspec.conformance.compare import judge
from meterspec.conformance.data import HarnessError
from meterspec.conformance.protocol import (
    Adapter,
    InProcessAdapter,
    ProtocolError,
    SubprocessAdapter,
    result_problem,
    schema_violation,
    started_problem,
)

IN_PROCESS = {"python:meterspec": InProcessAdapter}
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Outcome:
    """What became of one case."""

    case: Case
    result: str  # passed | failed | skipped | errored
    actual: dict[str, Any] | None = None  # the answer without seq, when there was one
    reason: str | None = None


@dataclass(frozen=True)
class Run:
    implementation: dict[str, Any]
    outcomes: list[Outcome]

    @property
    def passed(self) -> bool:
        return all(o.result == "passed" for o in self.outcomes)


def make_adapter(impl: str, timeout: float) -> Adapter:
    """`python:meterspec` (in-process) or a command line, split as a POSIX shell would but
    run without one."""
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
    return SubprocessAdapter(argv, timeout)


class Runner:
    """Runs cases one at a time; restarts the adapter after it breaks the protocol."""

    def __init__(self, adapter: Adapter, *, validate: bool = False,
                 progress: Callable[[Outcome], None] | None = None) -> None:
        self.adapter = adapter
        self.validate = validate
        self.progress = progress
        self.implementation: dict[str, Any] = {}
        self._seq = 0
        self._broken: str | None = None  # set when the adapter cannot be (re)started

    def _start(self) -> str | None:
        """Start the adapter; None, or why its start response is not acceptable. A response
        that is usable but violates the schema (--validate-protocol) still names the
        implementation, so the report can say whose run it was."""
        try:
            message = self.adapter.start()
        except ProtocolError as error:
            self.adapter.discard()
            return f"start: {error}"
        problem = started_problem(message)
        if problem is None and not self.implementation:
            self.implementation = message["implementation"]
        if problem is None and self.validate:
            problem = schema_violation(message, "started")
        if problem is not None:
            self.adapter.discard()
            return f"start: {problem}"
        return None

    def run(self, cases: Sequence[Case]) -> Run:
        problem = self._start()
        if problem is not None and not self.implementation:
            raise HarnessError(f"the adapter did not start properly: {problem}")
        if problem is not None:  # usable, but not what the schema says: every case errored
            self._broken = f"protocol: {problem}"
        outcomes = []
        try:
            for case in cases:
                outcome = self._one(case)
                outcomes.append(outcome)
                if self.progress is not None:
                    self.progress(outcome)
        finally:
            self.adapter.stop()
        return Run(self.implementation, outcomes)

    def _skip_reason(self, case: Case) -> str | None:
        if case.operation not in self.implementation["operations"]:
            return f"operation {case.operation!r} not supported by the implementation"
        features = self.implementation.get("features")
        if features is not None:
            missing = [f for f in case.features if f not in features]
            if missing:
                return f"needs feature(s) not supported: {', '.join(missing)}"
        return None

    def _one(self, case: Case) -> Outcome:
        reason = self._skip_reason(case)
        if reason is not None:
            return Outcome(case, "skipped", reason=reason)
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
            response = self.adapter.exchange(request)
        except ProtocolError as error:
            return Outcome(case, "errored", reason=f"protocol: {error}")
        problem = result_problem(response, self._seq)
        if problem is None and self.validate:
            problem = schema_violation(response, "result")
        if problem is not None:
            self.adapter.discard()
            return Outcome(case, "errored", reason=f"protocol: {problem}")
        actual = {k: v for k, v in response.items() if k != "seq"}
        result, why = judge(case.expected, actual)
        return Outcome(case, result, actual=actual, reason=why)
