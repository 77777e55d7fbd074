"""The DuckDB engine behind the conformance protocol (conformance/INTERPRETING.md 3):
`meterspec conformance run --impl python:meterspec.engines.duckdb`.

It answers `meter` and `aggregate` (meterspec.engines.cases), one case at a time, in one
DuckDB connection for the whole run. `start` lists only these two operations, so the runner
skips the rest as not claimed (`--allow-skips`).
"""

from __future__ import annotations

from typing import Any

from meterspec.engines.cases import Body, CaseJob, answer, case_job, error
from meterspec.engines.cases import implementation as describe
from meterspec.engines.duckdb.engine import DuckDBEngine
from meterspec.errors import MeterspecError
from meterspec.timestamps import format_timestamp, parse_timestamp

_ENGINE: list[DuckDBEngine] = []


def implementation() -> Body:
    """What the engine says about itself in answer to `start`."""
    return describe("meterspec-duckdb", "python+duckdb")


def _engine() -> DuckDBEngine:
    """One engine (connection and directory) for every case of a run."""
    if not _ENGINE:
        _ENGINE.append(DuckDBEngine(threads=1))
    return _ENGINE[0]


def handle(case: dict[str, Any]) -> Body:
    """The response body (without seq) for one case."""
    try:
        job = case_job(case, "DuckDB")
        return job if isinstance(job, dict) else _run(job)
    except MeterspecError as found:
        return error(found.problems)
    except Exception as failure:  # counted against the score by the runner
        return {"errored": repr(failure)}


def _run(job: CaseJob) -> Body:
    if job.operation == "aggregate":
        assert job.request is not None
        return answer(job, _engine().aggregate(job.request, [job.documents], dedupe=False))
    assert job.config is not None
    stamp, stamp_error = None, None
    if job.metered_at is not None:
        try:  # checked once the event is known good, as the reference does
            stamp = format_timestamp(parse_timestamp(job.metered_at, "/meteredAt"))
        except MeterspecError as found:
            stamp_error = found
    result = _engine().meter(job.config, [job.documents], stamp)
    if not result.problems and stamp_error is not None:
        return error(stamp_error.problems)
    return answer(job, result)
