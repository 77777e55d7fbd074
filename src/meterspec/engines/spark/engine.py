"""The Spark backend: jobs (events or records in, readings or records out) run as one Spark
job over a SparkSession, on local[N] or a cluster.

The plan's stages map onto Spark's distributed steps (meterspec.engines.spark.tasks does the
per-row and per-group work in Python workers): the inputs are read by Spark in splits, each
line screened and metered where it lies; the identities of each job meet by key (one
shuffle), the records of each group meet by key (another), and each group's readings come
back sorted by key (MS-AGG-017) to the driver, which writes them in order. Several jobs run in
one Spark job (batch()), so many small ones pay Spark's fixed costs once.

The driver keeps what must be exact and in order: the windows and documents (checked by
the reference, meterspec.engines.compiler), lines the engine must not split itself
(meterspec.engines.ndjson: byte-order marks, CR, NUL, invalid UTF-8, over-long lines, which
it describes with the reference), and the error report in row order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from meterspec.contracts import AggregationRequest, MeteringConfig
from meterspec.engines.compiler import compile_plan
from meterspec.engines.ndjson import prepare
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
from meterspec.engines.spark import tasks
from meterspec.engines.spark.session import start
from meterspec.engines.spark.tasks import Job
from meterspec.engines.streams import event_conflict, record_conflict
from meterspec.errors import MeterspecError

if TYPE_CHECKING:
    from pyspark import RDD
    from pyspark.sql import SparkSession


class SourceError(ValueError):
    """An input the Spark engine cannot read: a typed input of another layout."""


SPARK_TYPES = {"VARCHAR": "string", "MAP(VARCHAR, VARCHAR)": "map<string,string>",
               "STRUCT(quantity VARCHAR, unit VARCHAR)": "struct<quantity:string,unit:string>"}


def layout(found: dict[str, str], records: bool, name: str) -> list[str]:
    """The columns of a typed input (Spark's type names), or SourceError naming what
    differs from the layout of meterspec.engines.sources."""
    expected = {column: SPARK_TYPES[kind] for column, kind in
                (RECORD_COLUMNS if records else EVENT_COLUMNS).items()}
    wrong = [f"{column} is {found[column]}, not {kind}" for column, kind in expected.items()
             if column in found and found[column] != kind]
    missing = [c for c in expected if c not in found and c not in OPTIONAL_COLUMNS]
    extra = [c for c in found if c not in expected]
    if wrong or missing or extra:
        parts = wrong + [f"missing {', '.join(missing)}"] * bool(missing) \
            + [f"unknown {', '.join(extra)}"] * bool(extra)
        raise SourceError(f"{name} is not in the {'record' if records else 'event'} layout "
                          f"(docs/engines.md): {'; '.join(parts)}")
    return [c for c in expected if c in found]


class SparkEngine:
    """Runs jobs on a SparkSession: the one given, or one started for `master` (default
    local[threads]; meterspec.engines.spark.session). Temporary files go to `workdir` (a new
    temporary directory unless given; on a cluster it must be a path every node sees),
    which close() removes if it made it; close() leaves the session running, shutdown() stops
    it if this engine started it."""

    def __init__(self, master: str | None = None, threads: int | None = None,
                 session: SparkSession | None = None, workdir: str | None = None,
                 partitions: int | None = None) -> None:
        from pyspark import SparkContext

        self._own_session = session is None and SparkContext._active_spark_context is None
        self._own_dir = workdir is None
        self.workdir = workdir if workdir is not None else tempfile.mkdtemp(prefix="meterspec-")
        self.session = session if session is not None else start(
            master, threads, self.workdir, partitions)
        self.context = self.session.sparkContext
        self.partitions = partitions or self.context.defaultParallelism

    def close(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def shutdown(self, timeout: float = 60) -> None:
        """Stop the session if this engine started it and, when this process started Spark's
        JVM, let the JVM exit and reap it: no JVM outlives a command, and its CPU counts as
        this process's children's (the benchmarks measure a command with wait4)."""
        from pyspark import SparkContext

        if not self._own_session:
            return
        gateway = SparkContext._gateway
        self.session.stop()
        proc = getattr(gateway, "proc", None)
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the JVM exits on its standard input's end
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        SparkContext._gateway = None
        SparkContext._jvm = None

    def __enter__(self) -> SparkEngine:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------ jobs

    def run(self, config: MeteringConfig, request: AggregationRequest,
            sources: Sequence[Source], *, dedupe: bool = True) -> Result:
        """Events -> readings (`meterspec run`); with `dedupe`, each event identity counts
        once (MS-ING-021). Raises MeterspecError for an unusable config or request."""
        return self.batch([(Job("run", config, request, dedupe), sources)])[0]

    def aggregate(self, request: AggregationRequest, sources: Sequence[Source], *,
                  dedupe: bool = True) -> Result:
        """Records -> readings (`meterspec aggregate`); with `dedupe`, each record identity
        counts once (MS-ING-020)."""
        return self.batch([(Job("aggregate", None, request, dedupe), sources)])[0]

    def meter(self, config: MeteringConfig, sources: Sequence[Source],
              metered_at: str | None = None) -> Result:
        """Events -> records (the `meter` operation), stamped `metered_at` (checked as the
        reference checks it, after the event)."""
        return self.batch([(Job("meter", config, None, False, metered_at), sources)])[0]

    def batch(self, work: Sequence[tuple[Job, Sequence[Source]]]) -> list[Result]:
        """Several jobs in one Spark job; one Result each, in order. Every job's documents
        are checked first (MeterspecError for the first unusable one)."""
        jobs = [job for job, _ in work]
        for job in jobs:
            compile_plan("records" if job.kind == "aggregate" else "events", job.config,
                         job.request)
        flagged: list[tasks.Row] = []
        rows = self._rows(work, flagged)
        if flagged:
            rows = rows.union(self.context.parallelize(flagged, self.partitions))
        shared = self.context.broadcast(jobs)
        described = rows.mapPartitions(
            lambda part: tasks.describe(shared.value, part)).persist()
        try:
            return self._finish(jobs, shared, described)
        finally:
            described.unpersist()
            shared.unpersist()

    def _finish(self, jobs: list[Job], shared: Any, described: RDD[Any]) -> list[Result]:
        problems: list[dict[int, MeterspecError]] = [{} for _ in jobs]
        for job_index, number, found in described.filter(
                lambda t: t[0] == tasks.PROBLEM).map(tasks.problems_of).collect():
            problems[job_index][number] = MeterspecError(found)
        dropped, duplicates = self._repeats(jobs, described, problems)
        results = []
        outputs = []
        for index in range(len(jobs)):
            path = os.path.join(self.workdir, f"output-{index}.ndjson")
            outputs.append(open(path, "wb"))  # noqa: SIM115 (closed below)
            results.append(Result(path, 0, sorted(problems[index].items()), duplicates[index]))
        try:
            for job_index, line in self._lines(jobs, shared, described, dropped):
                outputs[job_index].write(line)
                results[job_index].count += line.count(b"\n")
        finally:
            for out in outputs:
                out.close()
        return results

    # ------------------------------------------------------------------ stages

    def _rows(self, work: Sequence[tuple[Job, Sequence[Source]]], flagged: list[tasks.Row]
              ) -> RDD[tasks.Row]:
        """Every input line as (job, number, bytes), numbered as the reference numbers them
        (meterspec.engines.sources). Lines Spark must not split, and documents held in
        memory, go to `flagged`, read from the driver's list."""
        parts: list[RDD[tasks.Row]] = [self.context.emptyRDD()]
        for job_index, (_, sources) in enumerate(work):
            first = 1
            for source in sources:
                if isinstance(source, Documents):  # with the flagged lines, in one RDD
                    flagged.extend((job_index, first + i, text)
                                   for i, text in enumerate(source.texts))
                    first += len(source.texts)
                    continue
                if not isinstance(source, NdjsonFile):
                    typed, count = self._typed(source, work[job_index][0].kind, job_index,
                                               first)
                    parts.append(typed)
                    first += count
                    continue

                def flag(number: int, line: bytes | None, job: int = job_index) -> None:
                    flagged.append((job, number, line))

                prepared = prepare(source.path, self.workdir, flag, first)
                parts.append(self._lines_of(prepared.path, job_index, first))
                first += prepared.lines
        return self.context.union(parts)

    def _typed(self, source: Source, kind: str, job_index: int, first: int
               ) -> tuple[RDD[tasks.Row], int]:
        """A Parquet input or a table of the session (a DataFrame as a temporary view) in the
        typed layout (meterspec.engines.sources): each row as the document it stands for,
        numbered by file path then row (Parquet) or in the table's order; and the row count."""
        from pyspark.sql import functions

        if isinstance(source, ParquetFiles):
            frame = (self.session.read.option("recursiveFileLookup", "true")
                     .option("pathGlobFilter", "*.parquet").parquet(source.path))
            name = source.path
            order = [functions.col("_metadata.file_path"), functions.col("_metadata.row_index")]
        elif isinstance(source, Table):
            frame, name, order = self.session.table(source.name), source.name, []
        else:
            raise SourceError(f"the Spark engine does not read {source}")
        columns = layout({f.name: f.dataType.simpleString() for f in frame.schema.fields},
                         kind == "aggregate", name)
        if order:
            frame = frame.select(*columns, *order).orderBy(*order).select(*columns)
        count = frame.count()
        rows = frame.rdd.map(tasks.typed_document).zipWithIndex().map(
            lambda pair: (job_index, first + pair[1], pair[0]))
        return rows, count

    def _lines_of(self, path: str, job_index: int, first: int) -> RDD[tasks.Row]:
        lines: RDD[Any] = self.context.textFile(path, self.partitions, use_unicode=False)
        return lines.zipWithIndex().map(
            lambda pair: (job_index, first + pair[1], pair[0]))

    def _repeats(self, jobs: list[Job], described: RDD[Any],
                 problems: list[dict[int, MeterspecError]]
                 ) -> tuple[set[tuple[int, int]], list[int]]:
        """The later rows of repeated identities: dropped (returned), each a duplicate
        (counted) or a conflict (its problem replaces any other, as the reference checks
        identity first)."""
        dropped: set[tuple[int, int]] = set()
        duplicates = [0] * len(jobs)
        if not any(job.dedupe for job in jobs):
            return dropped, duplicates
        later = (described.filter(lambda t: t[0] == tasks.SEEN).map(tasks.identity_rows)
                 .reduceByKey(lambda a, b: a + b, self.partitions, tasks.group_partition)
                 .flatMap(tasks.repeats)
                 .collect())
        for job_index, number, same, identity, content in later:
            dropped.add((job_index, number))
            problems[job_index].pop(number, None)
            if same:
                duplicates[job_index] += 1
                continue
            workspace, universe, ident = identity
            if jobs[job_index].kind == "run":
                kind, subject, instant, properties = content
                problems[job_index][number] = event_conflict(
                    workspace, universe, ident, kind, subject, instant, dict(properties))
            else:
                problems[job_index][number] = record_conflict(workspace, universe, ident)
        return dropped, duplicates

    def _lines(self, jobs: list[Job], shared: Any, described: RDD[Any],
               dropped: set[tuple[int, int]]) -> Iterator[tuple[int, bytes]]:
        """Each job's output lines, job by job, in the reference's order."""
        gone = self.context.broadcast(dropped)
        kept = described.filter(lambda t: (t[1], t[2]) not in gone.value)
        records = kept.filter(lambda t: t[0] == tasks.LINE).map(
            lambda t: ((t[1], t[2]), t[3]))  # meter: by row (its records in rule order)
        groups = (kept.filter(lambda t: t[0] == tasks.RECORD)
                  .map(lambda t: tasks.group_rows(shared.value, t))
                  .partitionBy(self.partitions, tasks.group_partition)
                  .mapPartitions(lambda part: tasks.readings(shared.value, part)))
        ordered: RDD[tuple[tuple[int, Any], bytes]] = records.union(groups).sortByKey(
            True, self.partitions)
        try:
            for (job_index, _), text in ordered.toLocalIterator():
                yield job_index, text
        finally:
            gone.unpersist()

