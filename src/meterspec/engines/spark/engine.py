"""The Spark backend: jobs (events or records in, readings or records out) run over a
SparkSession, on local[N] or a cluster, by one of two paths chosen per job by one rule
(in_jvm):

- the compiled plan in Spark SQL (meterspec.engines.spark.pipeline, screen, records,
  readings): the Plan the DuckDB backend renders, rendered as Spark SQL expressions, so the
  per-row and per-group work (screening, metering, identities, exact sums, min, max,
  latest, counts, SHA-256 ids, the line text) runs in the JVM, no Python on the hot path;
  rows Spark flags are described by the reference on the driver;
- the reference's own Python on Spark's workers (meterspec.engines.spark.tasks): for
  time-weighted averages, for meter jobs whose meteredAt the reference rejects, and for
  every job unless `sql_from_bytes` asks for the compiled plan (SparkEngine): today the
  compiled plan costs more than these workers (1M events: 236 s of CPU and 283 s wall
  against 133 s and 75 s, benchmarks/README.md), so it is opt-in until it is faster.

Several jobs run together (batch()): the compiled ones as one set of Spark actions, the
others as one Spark job. The driver keeps what must be exact and in order: the windows and
documents (checked by the reference, meterspec.engines.compiler), lines the engine must not
split itself (meterspec.engines.ndjson), and the error report in row order.
"""

from __future__ import annotations

import contextlib
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
from meterspec.engines.sources import Documents, NdjsonFile, ParquetFiles, Source, Table
from meterspec.engines.spark import pipeline, tasks
from meterspec.engines.spark.pipeline import Compiled, layout
from meterspec.engines.spark.pipeline import SourceError as SourceError
from meterspec.engines.spark.session import JavaMissingError, SparkStartError, jvm_error, start
from meterspec.engines.spark.tasks import Job
from meterspec.engines.streams import event_conflict, record_conflict
from meterspec.errors import MeterspecError
from meterspec.metering import Meter
from meterspec.timestamps import format_timestamp, parse_timestamp

if TYPE_CHECKING:
    from pyspark import RDD
    from pyspark.sql import SparkSession


SQL_FROM_BYTES: int | None = None
"""The default of SparkEngine's `sql_from_bytes`: None, the compiled plan only when asked for
(see the module). A size in bytes runs the jobs with at least that much input in Spark SQL;
below one Spark split (4 MiB) planning a compiled job costs more than the reference's work."""


class SparkEngine:
    """Runs jobs on a SparkSession: the one given, or one started for `master` (default
    local[threads]; meterspec.engines.spark.session). Temporary files go to `workdir` (a new
    temporary directory unless given; on a cluster it must be a path every node sees),
    which close() removes if it made it; close() leaves the session running, shutdown() stops
    it if this engine started it. `sql_from_bytes` is in_jvm's input size (None: no job runs
    in Spark SQL; 0: every job it allows does)."""

    def __init__(self, master: str | None = None, threads: int | None = None,
                 session: SparkSession | None = None, workdir: str | None = None,
                 partitions: int | None = None,
                 sql_from_bytes: int | None = SQL_FROM_BYTES) -> None:
        from pyspark import SparkContext

        self.sql_from_bytes = sql_from_bytes
        self._own_session = session is None and SparkContext._active_spark_context is None
        self._own_dir = workdir is None
        self.workdir = workdir if workdir is not None else tempfile.mkdtemp(prefix="meterspec-")
        try:
            self.session = session if session is not None else start(
                master, threads, self.workdir, partitions)
        except JavaMissingError:
            self.close()
            raise
        except Exception as error:  # the JVM refused its settings: its own line
            message = jvm_error(error, self.workdir)
            self.close()
            raise SparkStartError(f"Spark did not start: {message}") from None
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
        from py4j.protocol import Py4JError

        gateway = SparkContext._gateway
        with contextlib.suppress(Py4JError, OSError):  # a JVM that died has nothing to stop
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
        are checked first (MeterspecError for the first unusable one). Jobs the JVM runs
        (in_jvm) go through Spark SQL together; the others through the reference's Python
        on Spark's workers, together."""
        compiled = [_compiled(job, sources, self.sql_from_bytes) for job, sources in work]
        results: list[Result | None] = [None] * len(work)
        in_sql = [i for i, c in enumerate(compiled) if c is not None]
        if in_sql:
            done = pipeline.run(self.session, self.workdir,
                                [c for c in compiled if c is not None])
            for index, result in zip(in_sql, done, strict=True):
                results[index] = result
        rest = [i for i, c in enumerate(compiled) if c is None]
        if rest:
            done = self._python_batch([work[i] for i in rest])
            for index, result in zip(rest, done, strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def _python_batch(self, work: Sequence[tuple[Job, Sequence[Source]]]) -> list[Result]:
        """Jobs run by the reference's own Python on Spark's workers (meterspec.engines.spark.
        tasks): time-weighted averages, and meter jobs whose meteredAt the reference
        rejects."""
        from pyspark import StorageLevel

        jobs = [job for job, _ in work]
        flagged: list[tasks.Row] = []
        rows = self._rows(work, flagged)
        if flagged:
            rows = rows.union(self.context.parallelize(flagged, self.partitions))
        shared = self.context.broadcast(jobs)
        # Read by three actions (problems, repeats, lines): kept, on disk where the heap
        # is short, never recomputed (MEMORY_ONLY would parse every line again).
        described = rows.mapPartitions(
            lambda part: tasks.describe(shared.value, part)).persist(StorageLevel.MEMORY_AND_DISK)
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
            path = os.path.join(self.workdir, f"python-output-{index}.ndjson")
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

    def _width(self, rdd: RDD[Any]) -> int:
        """Partitions for a stage keyed by identity or group: the input's (one per split, so
        growing with it), at least the engine's."""
        return max(rdd.getNumPartitions(), self.partitions)

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
                 .reduceByKey(lambda a, b: a + b, self._width(described), tasks.group_partition)
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
        """Each job's output lines, job by job, in the reference's order. Groups and sorted
        lines are spread over as many partitions as the input has (_width), so what one task
        holds, and hands the driver, stays bounded as the input grows."""
        from pyspark import StorageLevel

        width = self._width(described)
        gone = self.context.broadcast(dropped)
        kept = described.filter(lambda t: (t[1], t[2]) not in gone.value)
        records = kept.filter(lambda t: t[0] == tasks.LINE).map(
            lambda t: ((t[1], t[2]), t[3]))  # meter: by row (its records in rule order)
        groups = (kept.filter(lambda t: t[0] == tasks.RECORD)
                  .map(lambda t: tasks.group_rows(shared.value, t))
                  .partitionBy(width, tasks.group_partition)
                  .mapPartitions(lambda part: tasks.readings(shared.value, part)))
        # sortByKey reads its input three times (count, sample, sort): aggregated once, kept.
        lines = records.union(groups).persist(StorageLevel.MEMORY_AND_DISK)
        ordered: RDD[tuple[tuple[int, Any], bytes]] = lines.sortByKey(True, width)
        try:
            for (job_index, _), text in ordered.toLocalIterator():
                yield job_index, text
        finally:
            lines.unpersist()
            gone.unpersist()



def in_jvm(job: Job, sources: Sequence[Source],
           from_bytes: int | None = SQL_FROM_BYTES) -> bool:
    """The one rule of what Spark SQL computes: every job with at least `from_bytes` of
    input (a Parquet input or a table counts as large) except a time-weighted average (its
    steps, carry-in and exact integral stay the reference's, on Python workers) and a meter
    job whose meteredAt the reference rejects (every row's problem is the reference's).
    None: no job."""
    if from_bytes is None:
        return False
    if job.request is not None and job.request.aggregation == "time-weighted-avg":
        return False
    if job.kind == "meter" and job.metered_at is not None and _stamp(job.metered_at) is None:
        return False
    return _size(sources) >= from_bytes


def _size(sources: Sequence[Source]) -> float:
    total: float = 0
    for source in sources:
        if isinstance(source, Documents):
            total += sum(len(text) for text in source.texts)
        elif isinstance(source, NdjsonFile):
            total += os.path.getsize(source.path)
        else:
            total = float("inf")
    return total


def _stamp(metered_at: str | None) -> str | None:
    """A meter job's meteredAt, canonical, or None (absent or rejected)."""
    if metered_at is None:
        return None
    try:
        return format_timestamp(parse_timestamp(metered_at, "/meteredAt"))
    except MeterspecError:
        return None


def _compiled(job: Job, sources: Sequence[Source], from_bytes: int | None) -> Compiled | None:
    """A job's plan for Spark SQL, or None when the Python workers run it (in_jvm). Raises
    MeterspecError for an unusable config or request."""
    plan = compile_plan("records" if job.kind == "aggregate" else "events", job.config,
                        job.request if job.kind != "meter" else None)
    if not in_jvm(job, sources, from_bytes):
        return None
    meter = Meter(job.config) if job.config is not None else None
    return Compiled(plan, meter, sources, job.dedupe, _stamp(job.metered_at),
                    job.kind == "meter")
