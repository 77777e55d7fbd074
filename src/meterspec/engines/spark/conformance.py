"""The Spark engine behind the conformance protocol (conformance/INTERPRETING.md 3):
`meterspec conformance run --impl python:meterspec.engines.spark`.

It answers `meter` and `aggregate` (meterspec.engines.cases) through Spark. `answers()` runs
many cases as one Spark job (the engine's batch()), which is how the tests run a whole area
in seconds; `handle()` is one case.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meterspec.engines.cases import Body, CaseJob, answer, case_job, error
from meterspec.engines.cases import implementation as describe
from meterspec.engines.sources import Documents
from meterspec.engines.spark.engine import SparkEngine
from meterspec.engines.spark.tasks import Job
from meterspec.errors import MeterspecError

_ENGINE: list[SparkEngine] = []


def implementation() -> Body:
    """What the engine says about itself in answer to `start`."""
    return describe("meterspec-spark", "python+spark")


def _engine() -> SparkEngine:
    """One engine (session and directory) for every case of a run."""
    if not _ENGINE:
        _ENGINE.append(SparkEngine(threads=2, partitions=2))
    return _ENGINE[0]


def handle(case: dict[str, Any]) -> Body:
    """The response body (without seq) for one case."""
    return answers([case])[0]


def answers(cases: Sequence[dict[str, Any]], engine: SparkEngine | None = None
            ) -> list[Body]:
    """The response bodies of many cases, the runnable ones in one Spark job."""
    bodies: list[Body | None] = []
    jobs: list[CaseJob] = []
    placed: list[int] = []
    for index, case in enumerate(cases):
        try:
            job = case_job(case, "Spark")
        except MeterspecError as found:
            bodies.append(error(found.problems))
            continue
        if isinstance(job, dict):
            bodies.append(job)
            continue
        bodies.append(None)
        jobs.append(job)
        placed.append(index)
    if jobs:
        work: list[tuple[Job, list[Documents]]] = [
            (Job(job.operation, job.config, job.request, False, job.metered_at),
             [job.documents]) for job in jobs]
        try:
            results = (engine or _engine()).batch(work)
        except Exception as failure:  # counted against the score by the runner
            return [body or {"errored": repr(failure)} for body in bodies]
        for index, job, result in zip(placed, jobs, results, strict=True):
            bodies[index] = answer(job, result)
    return [body for body in bodies if body is not None]
