"""The compiled plan run by Spark SQL: several jobs (each its own Plan) as one set of Spark
actions, the per-row and per-group work in the JVM.

The driver reads nothing but what it must: it numbers each NDJSON file's lines (one count
per file split when the file has several), describes the rows Spark flagged with the
reference (meterspec.engines.flagged), turns the later rows of repeated identities into
duplicates or conflicts (their messages are the reference's, meterspec.engines.streams),
chooses each job's exact number representation from the digits Spark found
(meterspec.engines.numbers), and writes the sorted lines Spark made. The actions are, for
all jobs at once: the flagged rows; the repeated identities; the digits; the lines.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meterspec.engines.flagged import Measured, describe_event, describe_record
from meterspec.engines.ndjson import prepare
from meterspec.engines.numbers import Digits, Representation, representation
from meterspec.engines.plan import Plan
from meterspec.engines.result import Result
from meterspec.engines.sources import (
    EVENT_COLUMNS,
    OPTIONAL_COLUMNS,
    RECORD_COLUMNS,
    Documents,
    NdjsonFile,
    ParquetFiles,
    Source,
    Table,
)
from meterspec.engines.spark import readings, records
from meterspec.engines.spark.screen import SCREENED, screen
from meterspec.engines.spark.sql import NANOS, fraction_digits, integer_digits
from meterspec.engines.streams import event_conflict, record_conflict
from meterspec.errors import MeterspecError
from meterspec.metering import Meter

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SINGLE_SPLIT_BYTES = 4 * 1024 * 1024
"""Spark reads a file up to spark.sql.files.openCostInBytes (4 MiB) as one split."""
SPARK_TYPES = {"VARCHAR": "string", "MAP(VARCHAR, VARCHAR)": "map<string,string>",
               "STRUCT(quantity VARCHAR, unit VARCHAR)": "struct<quantity:string,unit:string>"}


class SourceError(ValueError):
    """An input the Spark engine cannot read: a typed input of another layout."""


def layout(found: dict[str, str], records_: bool, name: str) -> list[str]:
    """The columns of a typed input (Spark's type names), or SourceError naming what
    differs from the layout of meterspec.engines.sources."""
    expected = {column: SPARK_TYPES[kind] for column, kind in
                (RECORD_COLUMNS if records_ else EVENT_COLUMNS).items()}
    wrong = [f"{column} is {found[column]}, not {kind}" for column, kind in expected.items()
             if column in found and found[column] != kind]
    missing = [c for c in expected if c not in found and c not in OPTIONAL_COLUMNS]
    extra = [c for c in found if c not in expected]
    if wrong or missing or extra:
        parts = wrong + [f"missing {', '.join(missing)}"] * bool(missing) \
            + [f"unknown {', '.join(extra)}"] * bool(extra)
        raise SourceError(f"{name} is not in the {'record' if records_ else 'event'} layout "
                          f"(docs/engines.md): {'; '.join(parts)}")
    return [c for c in expected if c in found]


@dataclass
class Compiled:
    """One job of the batch: its plan, what it outputs and the driver's findings."""

    plan: Plan
    meter: Meter | None
    sources: Sequence[Source]
    dedupe: bool
    metered_at: str | None  # canonical; meter jobs only
    records_out: bool
    problems: dict[int, MeterspecError] = field(default_factory=dict)
    duplicates: int = 0


def run(session: SparkSession, workdir: str, jobs: list[Compiled]) -> list[Result]:
    """Every job's Result (output lines in `workdir`)."""
    from pyspark import StorageLevel

    flagged: list[tuple[int, int, bytes | None]] = []
    documents: list[tuple[int, int, str]] = []
    frames = []
    for index, job in enumerate(jobs):
        lines = _lines(session, workdir, index, job, flagged, documents)
        frames.append((index, lines))
    shared = None
    if documents:
        shared = session.createDataFrame(documents, "job INT, n BIGINT, line STRING")
    screened_parts = []
    for index, lines in frames:
        parts = [*lines]
        if shared is not None:
            parts.append(shared.where(f"job = {index}"))
        if not parts:
            continue
        job = jobs[index]
        screened_parts.append(screen(job.plan, _union(parts), job.records_out
                                     and job.plan.input == "events"))
    if not screened_parts:
        screened_parts.append(session.createDataFrame([], SCREENED))
    screened = _union(screened_parts).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        flagged += [(r.job, r.n, r.flagged.encode("utf-8", "surrogatepass"))
                    for r in screened.where("NOT ok").select("job", "n", "flagged").collect()]
        staged, seen = _describe(jobs, flagged)
        recs = {}
        for index, job in enumerate(jobs):
            own = records.records(job.plan, screened.where(f"job = {index}"))
            extra = [row for row in staged if row[0] == index]
            if extra:
                own = own.unionByName(session.createDataFrame(extra, records.RECS))
            recs[index] = own
        recs = _repeats(session, jobs, screened, recs, seen)
        numbers = _representations(jobs, recs)
        outputs = [readings.record_lines(index, job.plan.metering, recs[index], job.metered_at)
                   for index, job in enumerate(jobs) if job.records_out]
        if numbers:
            outputs.append(_readings(session, jobs, recs, numbers))
        return _collect(workdir, jobs, _union(outputs) if outputs else None)
    finally:
        screened.unpersist()


# ---------------------------------------------------------------------- inputs


def _lines(session: SparkSession, workdir: str, index: int, job: Compiled,
           flagged: list[tuple[int, int, bytes | None]],
           documents: list[tuple[int, int, str]]) -> list[DataFrame]:
    """A job's inputs as (job, n, line) frames, numbered as the reference numbers lines
    (meterspec.engines.sources); lines Spark must not read go to `flagged`, documents in
    memory to `documents`."""
    frames = []
    first = 1
    for source in job.sources:
        if isinstance(source, Documents):
            for offset, text in enumerate(source.texts):
                try:
                    documents.append((index, first + offset, text.decode("utf-8")))
                except UnicodeDecodeError:
                    flagged.append((index, first + offset, text))
            first += len(source.texts)
        elif isinstance(source, NdjsonFile):
            def flag(number: int, line: bytes | None, job_index: int = index) -> None:
                flagged.append((job_index, number, line))

            prepared = prepare(source.path, workdir, flag, first)
            frames.append(_numbered(session, prepared.path, index, first))
            first += prepared.lines
        else:
            frame, count = _typed(session, source, job.plan.input == "records", index, first)
            frames.append(frame)
            first += count
    return frames


def _numbered(session: SparkSession, path: str, index: int, first: int) -> DataFrame:
    """A plain NDJSON file's lines, numbered from `first`: within one split a line's number
    follows its place; splits are counted once when the file has several."""
    text = session.read.option("lineSep", "\n").text(path)
    placed = text.selectExpr("spark_partition_id() AS pid", "input_file_block_start() AS blk",
                             "monotonically_increasing_id() AS mid", "value AS line")
    if os.path.getsize(path) <= SINGLE_SPLIT_BYTES:
        return placed.selectExpr(f"{index} AS job", f"{first} + mid AS n", "line")
    counts = sorted((r.blk, r.pid, r.low, r.rows) for r in placed.groupBy("pid", "blk").agg(
        _expr("min(mid) AS low"), _expr("count(*) AS rows")).collect())
    cases, number = [], first
    for blk, pid, low, rows in counts:
        cases.append(f"WHEN pid = {pid} AND blk = {blk} THEN {number - low}")
        number += rows
    return placed.selectExpr(f"{index} AS job", f"mid + CASE {' '.join(cases)} END AS n",
                             "line")


def _typed(session: SparkSession, source: Source, records_: bool, index: int, first: int
           ) -> tuple[DataFrame, int]:
    """A Parquet input or a table of the session in the typed layout, each row as the JSON
    document it stands for (Spark's to_json: a NULL column is an absent member), numbered
    by file path then row (Parquet) or in the table's order; and the row count."""
    if isinstance(source, ParquetFiles):
        frame = (session.read.option("recursiveFileLookup", "true")
                 .option("pathGlobFilter", "*.parquet").parquet(source.path))
        name = source.path
        order = "_metadata.file_path, _metadata.row_index"
    elif isinstance(source, Table):
        frame, name, order = session.table(source.name), source.name, "mid"
    else:
        raise SourceError(f"the Spark engine does not read {source}")
    columns = layout({f.name: f.dataType.simpleString() for f in frame.schema.fields},
                     records_, name)
    names = ", ".join(f"`{c}`" for c in columns)
    frame = frame.selectExpr("*", "monotonically_increasing_id() AS mid").selectExpr(
        f"{index} AS job", f"{first - 1} + row_number() OVER (ORDER BY {order}) AS n",
        f"to_json(struct({names})) AS line")
    return frame, frame.count()


# ---------------------------------------------------------------------- the driver's part


def _describe(jobs: list[Compiled], flagged: list[tuple[int, int, bytes | None]]
              ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The reference's word on every flagged row: problems (into the job), records to stage
    (RECS rows) and flagged events that are identities seen (SEEN rows)."""
    staged: list[tuple[Any, ...]] = []
    seen: list[tuple[Any, ...]] = []
    for index, number, data in flagged:
        job = jobs[index]
        if job.meter is not None:
            described, event = describe_event(job.meter, number, data)
            if event is not None:
                sec, ns = divmod(event.instant, NANOS)
                seen.append((index, number, event.workspace, event.universe, event.id,
                             event.type, event.subject, sec, ns, None, None, None,
                             list(event.properties), list(event.properties.values())))
        else:
            described = describe_record(number, data)
        if isinstance(described, MeterspecError):
            job.problems[number] = described
            continue
        staged += [_staged(index, job, m) for m in described]
    return staged, seen


def _staged(index: int, job: Compiled, m: Measured) -> tuple[Any, ...]:
    """A record the reference made of a flagged row, as a RECS row."""
    rule = 0
    if job.plan.metering is not None:
        rule = next(r.index for r in job.plan.metering.rules
                    if (r.unit, r.source) == (m.unit, m.source))
    sec, ns = divmod(m.instant, NANOS)
    dims = m.dimensions
    return (index, m.line, rule, m.workspace, m.universe, m.subject, m.unit, sec, ns,
            m.quantity, [dims.get(name) for name in records.dimensions(job.plan)],
            m.event_id, m.source or None, m.record_id or None, list(dims), list(dims.values()))


def _repeats(session: SparkSession, jobs: list[Compiled], screened: DataFrame,
             recs: dict[int, DataFrame], seen: list[tuple[Any, ...]]) -> dict[int, DataFrame]:
    """Each identity once (MS-ING-020/021): later rows dropped, each a duplicate (counted)
    or a conflict (its problem replaces any other: the reference checks identity first)."""
    parts = [records.seen(job.plan, screened.where(f"job = {index}"), recs[index])
             for index, job in enumerate(jobs) if job.dedupe]
    if not parts:
        return recs
    kept = [row for row in seen if jobs[row[0]].dedupe]
    if kept:
        parts.append(session.createDataFrame(kept, records.SEEN))
    later = records.later(_union(parts)).collect()
    if not later:
        return recs
    for row in later:
        job = jobs[row.job]
        job.problems.pop(row.n, None)
        if row.same:
            job.duplicates += 1
        elif job.plan.input == "events":
            job.problems[row.n] = event_conflict(
                row.w, row.u, row.id, row.type, row.s, row.sec * NANOS + row.ns,
                dict(zip(row.pk, row.pv, strict=True)))
        else:
            job.problems[row.n] = record_conflict(row.w, row.u, row.id)
    dropped = session.createDataFrame([(row.job, row.n) for row in later], records.LATER)
    return {index: frame.join(dropped.hint("broadcast"), ["job", "n"], "left_anti")
            for index, frame in recs.items()}


def _representations(jobs: list[Compiled], recs: dict[int, DataFrame]
                     ) -> dict[int, Representation]:
    """Each aggregating job's exact representation, from the digits of its records in
    range (meterspec.engines.numbers)."""
    parts = []
    for index, job in enumerate(jobs):
        if job.plan.aggregation is None or job.records_out:
            continue
        parts.append(recs[index].where(readings.in_range(job.plan.aggregation.windows))
                     .selectExpr(f"{index} AS job", f"{integer_digits('q')} AS il",
                                 f"{fraction_digits('q')} AS fl"))
    if not parts:
        return {}
    found = {r.job: (r.il, r.fl) for r in _union(parts).groupBy("job").agg(
        _expr("max(il) AS il"), _expr("max(fl) AS fl")).collect()}
    return {index: representation(Digits(*found.get(index, (0, 0))))
            for index, job in enumerate(jobs)
            if job.plan.aggregation is not None and not job.records_out}


def _readings(session: SparkSession, jobs: list[Compiled], recs: dict[int, DataFrame],
              numbers: dict[int, Representation]) -> DataFrame:
    """The GROUPS of every aggregating job, computed together."""
    rows, pairs, constants, kinds = [], [], [], set()
    for index, number in numbers.items():
        aggregation = jobs[index].plan.aggregation
        assert aggregation is not None
        rows.append(readings.placed(index, aggregation, recs[index], number))
        pairs += readings.segment_pairs(index, aggregation.windows)
        constants.append(readings.job_row(index, aggregation, number))
        kinds.add(aggregation.kind)
    return readings.readings(_union(rows), session.createDataFrame(pairs, readings.PAIRS),
                             session.createDataFrame(constants, readings.JOBS), kinds)


def _collect(workdir: str, jobs: list[Compiled], groups: DataFrame | None) -> list[Result]:
    """Each job's lines, its groups in order (MS-AGG-017; rows and rules for meter jobs),
    written to its output file."""
    paths = [os.path.join(workdir, f"sql-output-{index}.ndjson") for index in range(len(jobs))]
    found = [] if groups is None else groups.collect()
    found.sort(key=lambda row: (row.job, [tuple(part) for part in row.gkey]))
    counts = [0] * len(jobs)
    outputs = [open(path, "wb") for path in paths]  # noqa: SIM115 (closed below)
    try:
        for row in found:
            outputs[row.job].write(b"".join(line.encode("utf-8", "surrogatepass") + b"\n"
                                            for line in row.lines))
            counts[row.job] += len(row.lines)
    finally:
        for out in outputs:
            out.close()
    return [Result(path, count, sorted(job.problems.items()), job.duplicates)
            for path, count, job in zip(paths, counts, jobs, strict=True)]


def _union(frames: Sequence[DataFrame]) -> DataFrame:
    return functools.reduce(lambda a, b: a.unionByName(b), frames)


def _expr(text: str) -> Any:
    from pyspark.sql import functions

    return functions.expr(text)
