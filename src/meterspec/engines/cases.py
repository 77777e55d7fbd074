"""A conformance case as an engine job, and an engine's result as the case's answer
(conformance/INTERPRETING.md 3): what every engine adapter shares
(meterspec.engines.duckdb.conformance, meterspec.engines.spark.conformance).

An engine answers `meter` and `aggregate`: the case's event or records become the job's
documents (one per line number), and the job's records or readings are the answer. Rejected
documents give the job's problems, with paths under `/records/<index>` for an aggregate case.
Every other operation is not claimed (`skipped`), so the runner counts it only with
`--allow-skips`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from msgspec.structs import replace

from meterspec import __version__
from meterspec.codec import decode_config, decode_request
from meterspec.contracts import AggregationRequest, MeteringConfig
from meterspec.engines.result import Result
from meterspec.engines.sources import Documents
from meterspec.errors import Problem

OPERATIONS = ("meter", "aggregate")
Body = dict[str, Any]


@dataclass(frozen=True)
class CaseJob:
    """One runnable case: a meter case has its config and the case's meteredAt as given
    (checked by the engine once the event is known good, as the reference does), an
    aggregate case its request."""

    operation: Literal["meter", "aggregate"]
    config: MeteringConfig | None
    request: AggregationRequest | None
    metered_at: Any
    documents: Documents


def implementation(name: str, language: str) -> Body:
    """What an engine says about itself in answer to `start`."""
    return {"name": name, "version": __version__, "language": language,
            "operations": list(OPERATIONS)}


def case_job(case: dict[str, Any], engine: str) -> CaseJob | Body:
    """The case as a job, or its answer when it needs none. Raises MeterspecError when the
    config or request is unusable: then only its problems count (INTERPRETING.md 3)."""
    operation = case.get("operation")
    if operation not in OPERATIONS:
        return {"skipped": f"operation {operation!r} is not run by the {engine} engine"}
    case_input = case.get("input")
    if not isinstance(case_input, dict):
        return {"errored": "case input is not a JSON object"}
    if operation == "meter":
        config = decode_config(_json(case_input.get("config")))
        if "eventText" in case_input:
            text = case_input["eventText"]
            if not isinstance(text, str):
                return {"errored": "eventText is not a string"}
            document = text.encode("utf-8", "surrogatepass")
        else:
            document = _json(case_input.get("event"))
        return CaseJob("meter", config, None, case_input.get("meteredAt"),
                       Documents((document,)))
    request = decode_request(_json(case_input.get("request")))
    items = case_input.get("records")
    if not isinstance(items, list):
        return {"errored": "records is not a JSON array"}
    return CaseJob("aggregate", None, request, None,
                   Documents(tuple(_json(item) for item in items)))


def answer(job: CaseJob, result: Result) -> Body:
    """The case's answer from its job's result: the first problem set of a meter case's one
    event, or every rejected record's problems under /records/<index>, else the output."""
    if job.operation == "meter" and result.problems:
        return error(result.problems[0][1].problems)
    if result.problems:
        return error([replace(problem, path=f"/records/{number - 1}{problem.path}")
                      for number, found in result.problems for problem in found.problems])
    return {"output": [json.loads(line) for line in result.lines()]}


def error(problems: tuple[Problem, ...] | list[Problem]) -> Body:
    """The answer of a case whose input is rejected."""
    return {"error": [{"code": p.code, "path": p.path} for p in problems]}


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()
