"""The Spark engine behind the conformance protocol (conformance/INTERPRETING.md 3):
`meterspec conformance run --impl python:meterspec.engines.spark`.

It answers `meter` and `aggregate` as the DuckDB adapter does (meterspec.engines.duckdb.
conformance), through Spark. `answers()` runs many cases as one Spark job (the engine's
batch()), which is how the tests run a whole area in seconds; `handle()` is one case.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from msgspec.structs import replace

from meterspec import __version__
from meterspec.codec import decode_config, decode_request
from meterspec.engines.result import Result
from meterspec.engines.sources import Documents
from meterspec.engines.spark.engine import SparkEngine
from meterspec.engines.spark.tasks import Job
from meterspec.errors import MeterspecError, Problem

OPERATIONS = ("meter", "aggregate")
_ENGINE: list[SparkEngine] = []


def implementation() -> dict[str, Any]:
    """What the engine says about itself in answer to `start`."""
    return {"name": "meterspec-spark", "version": __version__, "language": "python+spark",
            "operations": list(OPERATIONS)}


def _engine() -> SparkEngine:
    """One engine (session and directory) for every case of a run."""
    if not _ENGINE:
        _ENGINE.append(SparkEngine(threads=2, partitions=2))
    return _ENGINE[0]


def handle(case: dict[str, Any]) -> dict[str, Any]:
    """The response body (without seq) for one case."""
    return answers([case])[0]


def answers(cases: Sequence[dict[str, Any]], engine: SparkEngine | None = None
            ) -> list[dict[str, Any]]:
    """The response bodies of many cases, the runnable ones in one Spark job."""
    bodies: list[dict[str, Any] | None] = []
    work: list[tuple[Job, list[Documents]]] = []
    placed: list[int] = []
    for index, case in enumerate(cases):
        try:
            job = _job(case)
        except MeterspecError as error:
            bodies.append(_error(error.problems))
            continue
        if isinstance(job, dict):
            bodies.append(job)
            continue
        bodies.append(None)
        work.append(job)
        placed.append(index)
    if work:
        try:
            results = (engine or _engine()).batch(work)
        except Exception as error:  # counted against the score by the runner
            return [body or {"errored": repr(error)} for body in bodies]
        for index, (job_of, _), result in zip(placed, work, results, strict=True):
            bodies[index] = _answer(job_of, result)
    return [body for body in bodies if body is not None]


def _job(case: dict[str, Any]) -> tuple[Job, list[Documents]] | dict[str, Any]:
    """A case as a job and its documents, or its answer when it needs no job."""
    operation = case.get("operation")
    if operation not in OPERATIONS:
        return {"skipped": f"operation {operation!r} is not run by the Spark engine"}
    case_input = case.get("input")
    if not isinstance(case_input, dict):
        return {"errored": "case input is not a JSON object"}
    if operation == "meter":
        config = decode_config(_json(case_input.get("config")))  # the config's problems first
        if "eventText" in case_input:
            text = case_input["eventText"]
            if not isinstance(text, str):
                return {"errored": "eventText is not a string"}
            document = text.encode("utf-8", "surrogatepass")
        else:
            document = _json(case_input.get("event"))
        stamp = case_input.get("meteredAt")
        return Job("meter", config, None, False, stamp), [Documents((document,))]
    request = decode_request(_json(case_input.get("request")))  # the request's first
    items = case_input.get("records")
    if not isinstance(items, list):
        return {"errored": "records is not a JSON array"}
    documents = Documents(tuple(_json(item) for item in items))
    return Job("aggregate", None, request, False), [documents]


def _answer(job: Job, result: Result) -> dict[str, Any]:
    if job.kind == "meter" and result.problems:
        return _error(result.problems[0][1].problems)
    if result.problems:
        return _error([replace(problem, path=f"/records/{number - 1}{problem.path}")
                       for number, error in result.problems for problem in error.problems])
    return {"output": [json.loads(line) for line in result.lines()]}


def _error(problems: tuple[Problem, ...] | list[Problem]) -> dict[str, Any]:
    return {"error": [{"code": p.code, "path": p.path} for p in problems]}


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()
