"""The reference adapter: meterspec itself behind the harness protocol (INTERPRETING.md 2, 3, 5).

`handle` answers one case in-process; `main` speaks the line protocol on stdin/stdout, so
`python -m meterspec.conformance.adapter` is an adapter like any other implementation's."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

import msgspec

from meterspec import __version__
from meterspec.codec import decode, decode_config, decode_event, decode_request
from meterspec.conformance.edge_operations import EDGE_HANDLERS
from meterspec.conformance.operations import HANDLERS
from meterspec.contracts import MeterRecord
from meterspec.errors import MeterspecError, Problem
from meterspec.metering import Meter
from meterspec.readings import Aggregator

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def implementation() -> dict[str, Any]:
    """What the reference says about itself in answer to `start`."""
    return {"name": "meterspec", "version": __version__, "language": "python",
            "operations": list(OPERATIONS)}


def handle(case: dict[str, Any]) -> dict[str, Any]:
    """The response body (without seq) for one case: output, error, skipped or errored."""
    operation = case.get("operation")
    handler = OPERATIONS.get(operation) if isinstance(operation, str) else None
    if handler is None:
        return {"skipped": f"operation {operation!r} is not supported"}
    case_input = case.get("input")
    if not isinstance(case_input, dict):
        return {"errored": "case input is not a JSON object"}
    try:
        return handler(case_input)
    except MeterspecError as error:
        return _error(error.problems)
    except Exception as error:  # reported to the runner, which counts it against the score
        return {"errored": repr(error)}


def _error(problems: tuple[Problem, ...] | list[Problem]) -> dict[str, Any]:
    return {"error": [{"code": p.code, "path": p.path} for p in problems]}


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _meter(case_input: dict[str, Any]) -> dict[str, Any]:
    # The config first: if it is unusable only its problems count (INTERPRETING.md 3).
    meter = Meter(decode_config(_json(case_input.get("config"))))
    if "eventText" in case_input:
        text = case_input["eventText"]
        if not isinstance(text, str):
            return {"errored": "eventText is not a string"}
        event = decode_event(text.encode())
    else:
        event = decode_event(_json(case_input.get("event")))
    metered_at = case_input.get("meteredAt")
    records = meter.records(event, metered_at)
    return {"output": msgspec.to_builtins(records)}


def _aggregate(case_input: dict[str, Any]) -> dict[str, Any]:
    # The request first, as a meter case's config: unusable means only its problems count.
    aggregator = Aggregator(decode_request(_json(case_input.get("request"))))
    records = case_input.get("records")
    if not isinstance(records, list):
        return {"errored": "records is not a JSON array"}
    problems: list[Problem] = []
    for index, item in enumerate(records):
        prefix = f"/records/{index}"
        try:
            record = decode("record", _json(item), MeterRecord)
        except MeterspecError as error:
            problems.extend(msgspec.structs.replace(p, path=prefix + p.path)
                            for p in error.problems)
            continue
        try:
            aggregator.add_record(record, prefix)
        except MeterspecError as error:
            problems.extend(error.problems)
    if problems:
        return _error(problems)
    return {"output": msgspec.to_builtins(aggregator.readings())}


OPERATIONS: dict[str, Handler] = {"meter": _meter, "aggregate": _aggregate, **HANDLERS,
                                  **EDGE_HANDLERS}
"""Every operation of the protocol, by name (INTERPRETING.md 3): what `start` lists."""


def serve(stdin: TextIO, stdout: TextIO) -> int:
    """Answer protocol requests, one JSON object per line, until `stop` or end of input."""
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as error:
            sys.stderr.write(f"meterspec adapter: not JSON: {str(error)[:200]}\n")
            continue
        if not isinstance(request, dict):
            sys.stderr.write("meterspec adapter: request is not a JSON object\n")
            continue
        command = request.get("cmd")
        if command == "stop":
            return 0
        if command == "start":
            response: dict[str, Any] = {"ready": True, "implementation": implementation()}
        elif command == "run":
            case = request.get("case")
            body = (handle(case) if isinstance(case, dict)
                    else {"errored": "run request without a case object"})
            response = {"seq": request.get("seq"), **body}
        else:
            sys.stderr.write(f"meterspec adapter: unknown cmd {command!r}\n")
            continue
        stdout.write(json.dumps(response, ensure_ascii=False) + "\n")
        stdout.flush()
    return 0


def main() -> int:
    sys.stdin.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    return serve(sys.stdin, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
