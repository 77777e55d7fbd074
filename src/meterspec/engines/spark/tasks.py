"""What Spark's Python workers run for the jobs Spark SQL does not (meterspec.engines.spark.
engine.in_jvm: time-weighted averages, small inputs, a rejected meteredAt), stage by stage of
the plan (meterspec.engines.plan), for several jobs at once: every row, record and group
carries its job's index.

- screen and meter: each line goes through the reference's own steps
  (meterspec.engines.flagged), so a bad row gets the reference's problems and a good one its
  records; nothing is parsed twice or by other rules;
- repeats (MS-ING-020/021): the rows of each identity meet in one place; the first counts,
  a later one is a duplicate (the first's content) or a conflict;
- assign, aggregate and finish: the records of one group meet in one partition, where the
  reference's Aggregator (exact Decimal, every aggregation, carry-in, one half-even
  rounding, ids) writes the group's reading lines. Partials never leave Python's exact
  numbers, so no width limit applies (MS-QTY-003): there is nothing to refuse.

Nothing here imports pyspark: these are plain functions over iterables.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import msgspec

from meterspec.codec import decode_event, encode
from meterspec.contracts import AggregationRequest, MeteringConfig
from meterspec.engines.flagged import Measured, describe_event, describe_record
from meterspec.errors import MeterspecError, Problem
from meterspec.lines import is_blank, line_too_long
from meterspec.metering import Meter
from meterspec.readings import Aggregator, sort_key

PROBLEM, SEEN, RECORD, LINE = 0, 1, 2, 3
Row = tuple[int, int, bytes | None]
"""(job, line number, the line's bytes; None for a line over the limit)."""
Tagged = tuple[int, int, int, Any, Any]
"""(tag, job, line number, payload, more): PROBLEM problems; SEEN identity, content;
RECORD a Measured; LINE an output line."""
Identity = tuple[str, str, str]


@dataclass(frozen=True)
class Job:
    """One command's work: `run` (events -> readings), `aggregate` (records -> readings) or
    `meter` (events -> records, stamped `metered_at`); `dedupe` counts each identity once."""

    kind: Literal["run", "aggregate", "meter"]
    config: MeteringConfig | None
    request: AggregationRequest | None
    dedupe: bool = True
    metered_at: str | None = None


def describe(jobs: Sequence[Job], rows: Iterable[Row]) -> Iterator[Tagged]:
    """Screen and meter a partition's rows (blank lines are skipped, MS-ERR-012)."""
    meters: dict[int, Meter] = {}
    for job_index, number, data in rows:
        job = jobs[job_index]
        if data is not None and is_blank(data) and job.kind != "meter":
            continue  # a meter job's one document is never a line
        if job.kind == "aggregate":
            yield from _record_row(job, job_index, number, data)
            continue
        meter = meters.get(job_index)
        if meter is None:
            assert job.config is not None
            meter = meters[job_index] = Meter(job.config)
        if job.kind == "meter":
            yield from _meter_row(meter, job, job_index, number, data)
            continue
        described, seen = describe_event(meter, number, data)
        if job.dedupe and seen is not None:
            yield (SEEN, job_index, number, (seen.workspace, seen.universe, seen.id),
                   (seen.type, seen.subject, seen.instant, tuple(sorted(seen.properties.items()))))
        if isinstance(described, MeterspecError):
            yield PROBLEM, job_index, number, described.problems, None
            continue
        for measured in described:
            yield RECORD, job_index, number, measured, None


def _record_row(job: Job, job_index: int, number: int, data: bytes | None
                ) -> Iterator[Tagged]:
    described = describe_record(number, data)
    if isinstance(described, MeterspecError):
        yield PROBLEM, job_index, number, described.problems, None
        return
    for m in described:
        if job.dedupe:  # MS-ING-020: content by value, meteredAt aside
            yield (SEEN, job_index, number, (m.workspace, m.universe, m.record_id),
                   (m.subject, m.instant, m.quantity, m.unit, m.event_id,
                    tuple(sorted(m.dimensions.items()))))
        yield RECORD, job_index, number, m, None


def _meter_row(meter: Meter, job: Job, job_index: int, number: int, data: bytes | None
               ) -> Iterator[Tagged]:
    try:
        if data is None:
            raise line_too_long()
        records = meter.records(decode_event(data), job.metered_at)
    except MeterspecError as error:
        yield PROBLEM, job_index, number, error.problems, None
        return
    if records:  # one LINE per row: its records in rule order (MS-MET-007)
        yield LINE, job_index, number, b"".join(encode(r) + b"\n" for r in records), None


def typed_document(row: Any) -> bytes:
    """A typed row (a pyspark Row) as the EventPayload or MeterRecord document it stands for:
    a NULL member is absent, also inside `measurement`; a NULL map value stays null."""
    document = {k: v for k, v in row.asDict(recursive=True).items() if v is not None}
    if isinstance(document.get("measurement"), dict):
        document["measurement"] = {k: v for k, v in document["measurement"].items()
                                   if v is not None}
    return msgspec.json.encode(document)


def identity_rows(tagged: Tagged) -> tuple[tuple[int, Identity], list[tuple[int, Any]]]:
    """A SEEN row keyed by its job and identity, for repeats()."""
    _, job_index, number, identity, content = tagged
    return (job_index, identity), [(number, content)]


def repeats(item: tuple[tuple[int, Identity], list[tuple[int, Any]]]
            ) -> Iterator[tuple[int, int, bool, Identity, Any]]:
    """The later rows of one identity: (job, line, same content as the first, identity,
    content)."""
    (job_index, identity), rows = item
    if len(rows) < 2:
        return
    rows.sort(key=lambda row: row[0])
    first = rows[0][1]
    for number, content in rows[1:]:
        yield job_index, number, content == first, identity, content


def group_rows(jobs: Sequence[Job], tagged: Tagged
               ) -> tuple[tuple[int, tuple[Any, ...]], tuple[str, str, str, str, int, str,
                                                            dict[str, str]]]:
    """A RECORD keyed by its job and group (MS-AGG-003): all of a group meets in one place."""
    _, job_index, _, m, _ = tagged
    request = jobs[job_index].request
    assert request is not None
    values = tuple(m.dimensions.get(name) for name in request.group_by or ())
    key = (m.workspace, m.universe, m.subject, m.unit, values)
    return (job_index, key), (m.workspace, m.universe, m.subject, m.unit, m.instant,
                              m.quantity, m.dimensions)


def group_partition(key: tuple[int, tuple[Any, ...]]) -> int:
    """A stable hash of a group or identity key (the same in every worker and run, whatever
    PYTHONHASHSEED)."""
    return zlib.crc32(msgspec.json.encode(key))


def readings(jobs: Sequence[Job], items: Iterable[tuple[Any, tuple[Any, ...]]]
             ) -> Iterator[tuple[tuple[int, Any], bytes]]:
    """Aggregate a partition's records with one reference Aggregator per job; yield each
    active group's reading lines (its windows in order) keyed by (job, MS-AGG-017 place)."""
    aggregators: dict[int, Aggregator] = {}
    for (job_index, _), (workspace, universe, subject, unit, instant, quantity, dims) in items:
        aggregator = aggregators.get(job_index)
        if aggregator is None:
            request = jobs[job_index].request
            assert request is not None
            aggregator = aggregators[job_index] = Aggregator(request)
        aggregator.add(workspace, universe, subject, unit, dims, instant, Decimal(quantity))
    for job_index, aggregator in aggregators.items():
        for key in aggregator.ordered_keys():
            yield (job_index, sort_key(key)), b"".join(aggregator.iter_reading_lines([key]))


def problems_of(tagged: Tagged) -> tuple[int, int, tuple[Problem, ...]]:
    return tagged[1], tagged[2], tagged[3]


def measured_of(tagged: Tagged) -> Measured:
    measured: Measured = tagged[3]
    return measured
