"""The DuckDB engine behind the conformance protocol (conformance/INTERPRETING.md 3):
`meterspec conformance run --impl python:meterspec.engines.duckdb`.

It answers `meter` and `aggregate`, the two operations an engine runs, through DuckDB: the
case's event or records become the job's documents (one per line number), and the job's
records or readings are the answer. Rejected documents give the job's problems, with paths
under `/records/<index>` as section 3 asks. Every other operation is not claimed: `start`
lists only these two, so the runner skips the rest as not claimed (`--allow-skips`).
"""

from __future__ import annotations

import json
from typing import Any

from msgspec.structs import replace

from meterspec import __version__
from meterspec.codec import decode_config, decode_request
from meterspec.engines.duckdb.engine import DuckDBEngine
from meterspec.engines.sources import Documents
from meterspec.errors import MeterspecError, Problem
from meterspec.timestamps import format_timestamp, parse_timestamp

OPERATIONS = ("meter", "aggregate")
_ENGINE: list[DuckDBEngine] = []


def implementation() -> dict[str, Any]:
    """What the engine says about itself in answer to `start`."""
    return {"name": "meterspec-duckdb", "version": __version__, "language": "python+duckdb",
            "operations": list(OPERATIONS)}


def _engine() -> DuckDBEngine:
    """One engine (connection and directory) for every case of a run."""
    if not _ENGINE:
        _ENGINE.append(DuckDBEngine(threads=1))
    return _ENGINE[0]


def handle(case: dict[str, Any]) -> dict[str, Any]:
    """The response body (without seq) for one case."""
    operation = case.get("operation")
    if operation not in OPERATIONS:
        return {"skipped": f"operation {operation!r} is not run by the DuckDB engine"}
    case_input = case.get("input")
    if not isinstance(case_input, dict):
        return {"errored": "case input is not a JSON object"}
    try:
        return _meter(case_input) if operation == "meter" else _aggregate(case_input)
    except MeterspecError as error:
        return _error(error.problems)
    except Exception as error:  # counted against the score by the runner
        return {"errored": repr(error)}


def _error(problems: tuple[Problem, ...] | list[Problem]) -> dict[str, Any]:
    return {"error": [{"code": p.code, "path": p.path} for p in problems]}


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _meter(case_input: dict[str, Any]) -> dict[str, Any]:
    config = decode_config(_json(case_input.get("config")))  # the config's problems first
    if "eventText" in case_input:
        text = case_input["eventText"]
        if not isinstance(text, str):
            return {"errored": "eventText is not a string"}
        document = text.encode("utf-8", "surrogatepass")
    else:
        document = _json(case_input.get("event"))
    stamp, stamp_error = None, None
    if case_input.get("meteredAt") is not None:
        try:  # checked once the event is known good, as the reference does
            stamp = format_timestamp(parse_timestamp(case_input["meteredAt"], "/meteredAt"))
        except MeterspecError as error:
            stamp_error = error
    result = _engine().meter(config, [Documents((document,))], stamp)
    if result.problems:
        return _error(result.problems[0][1].problems)
    if stamp_error is not None:
        return _error(stamp_error.problems)
    return {"output": [json.loads(line) for line in result.lines()]}


def _aggregate(case_input: dict[str, Any]) -> dict[str, Any]:
    request = decode_request(_json(case_input.get("request")))  # the request's first
    items = case_input.get("records")
    if not isinstance(items, list):
        return {"errored": "records is not a JSON array"}
    documents = Documents(tuple(_json(item) for item in items))
    result = _engine().aggregate(request, [documents], dedupe=False)
    if result.problems:
        return _error([replace(problem, path=f"/records/{number - 1}{problem.path}")
                       for number, error in result.problems for problem in error.problems])
    return {"output": [json.loads(line) for line in result.lines()]}
