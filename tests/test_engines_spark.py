"""The Spark engine (meterspec.engines.spark, issue 13) held to the reference, on local[2].

One SparkSession serves the module (Spark's start-up is most of its cost), and the cases run
as batches: many jobs in one Spark job (SparkEngine.batch), each job's readings and error
report compared with what `meterspec run|aggregate` (the reference) writes for the same
files. Two command lines go through `--engine spark` itself (output, report, summary, exit
status). The conformance suite's metering and aggregation areas run through the adapter at
100%. Without Java the module fails in one line (it never hangs); without pyspark it skips.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyspark", reason="the engine needs pyspark: pip install -e '.[spark]'")

from test_engines_duckdb import (
    AGGREGATIONS,
    BIG,
    CONFIG,
    HOSTILE,
    TINY,
    call,
    day_events,
    event,
    lines,
    record,
    tumbling,
    write,
)

from meterspec.cli import Report
from meterspec.codec import decode_config, decode_request
from meterspec.conformance.cases import load_cases, select
from meterspec.conformance.protocol import InProcessAdapter
from meterspec.conformance.runner import Runner
from meterspec.engines.result import Result
from meterspec.engines.sources import NdjsonFile, ParquetFiles, Table
from meterspec.engines.spark import conformance
from meterspec.engines.spark.engine import SparkEngine
from meterspec.engines.spark.session import JavaMissingError, jvm_error
from meterspec.engines.spark.tasks import Job

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkEngine]:
    """One local[2] session for the module (and any later module: Spark reuses it)."""
    try:
        spark = SparkEngine(threads=2, partitions=2,
                            workdir=str(tmp_path_factory.mktemp("spark")))
    except JavaMissingError as error:
        pytest.fail(str(error), pytrace=False)
    yield spark


Job_ = tuple[str, list[Path], dict[str, Any] | None, dict[str, Any]]
"""(command, input files, config, request) of one job."""


def assert_batch(engine: SparkEngine, tmp_path: Path, jobs: Sequence[Job_]) -> list[Result]:
    """Run the jobs as one Spark job; each one's readings, report and duplicates equal the
    reference's for the same command line."""
    work = []
    for command, files, config, request in jobs:
        job = Job("run" if command == "run" else "aggregate",
                  decode_config(json.dumps(config)) if config else None,
                  decode_request(json.dumps(request)))
        work.append((job, [NdjsonFile(str(f)) for f in files]))
    results = engine.batch(work)
    for index, ((command, files, config, request), result) in enumerate(
            zip(jobs, results, strict=True)):
        options: list[str | Path] = ["--request", write(tmp_path / f"r{index}.json", request)]
        if config is not None:
            options += ["--config", write(tmp_path / f"c{index}.json", config)]
        joined = files[0]
        if len(files) > 1:  # the reference reads one input: the files concatenated
            joined = tmp_path / f"joined{index}.ndjson"
            joined.write_bytes(b"".join(f.read_bytes() for f in files))
        status, out, err = call([command, *options, joined])
        assert status != 2, err
        report = io.BytesIO()
        for number, problem in result.problems:
            Report(report).reject(problem, number)
        lines_of = err.decode().splitlines(keepends=True)
        reported = [line for line in lines_of if line[:1] == "{"]  # the report's JSON lines
        summary = next(line for line in lines_of if line.startswith(f"meterspec {command}:"))
        assert b"".join(result.lines()).decode() == out.decode(), (index, request)
        assert report.getvalue().decode() == "".join(reported), (index, request)
        assert (f"{result.duplicates} duplicate" in summary) == bool(result.duplicates)
        assert result.count == out.count(b"\n")
    return results


# ------------------------------------------------------------------ batches of jobs


def test_every_aggregation_and_grouping_with_hostile_lines(engine: SparkEngine,
                                                          tmp_path: Path) -> None:
    """Every aggregation under four groupings over New York's DST change, the file full of
    lines only the reference can read or describe, and repeated identities: 28 jobs."""
    rows: list[Any] = [*day_events(), *HOSTILE, day_events()[2],
                       event("e1", "2024-03-10T09:00:00Z", q="1")]
    events = lines(tmp_path / "e.ndjson", rows)
    jobs: list[Job_] = []
    for aggregation in AGGREGATIONS:
        for grouping in (None, ["region"], ["region", "tier"], []):
            request = tumbling(aggregation, "day", "America/New_York", "2024-03-08T05:00:00Z",
                               "2024-03-14T04:00:00Z")
            if grouping is not None:
                request["groupBy"] = grouping
            if aggregation == "unique-count":
                request["dimension"] = "tier"
            jobs.append(("run", [events], CONFIG, request))
    results = assert_batch(engine, tmp_path, jobs)
    assert all(r.duplicates == 1 and len(r.problems) > 30 for r in results)


def test_bounds_years_and_levels_past_128_bits(engine: SparkEngine, tmp_path: Path) -> None:
    """30 integer and 20 fraction digits, sums past 38 digits, years 0001 and 9999 one
    nanosecond apart, time-weighted levels of 10**30 held for a century: exact throughout,
    overlapping windows and gaps; two inputs numbered as one file."""
    meter = {"measurements": [{"unit": "u", "sourceProperty": "q"}]}
    quantities = [BIG, BIG, BIG, "-" + BIG, TINY, "-" + TINY, "1" + "0" * 29,
                  "123456789012345678901234567890.12345678901234567890", "-0.5", "0"]
    bounded = lines(tmp_path / "b.ndjson", [
        event(f"e{i}", f"2024-01-01T00:00:{i:02d}.{i:09d}Z", subject=f"s{i % 3}", q=q)
        for i, q in enumerate(quantities * 4)])
    times = ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000001Z",
             "0001-01-01T00:30:00+00:30", "1969-12-31T23:59:59.999999999Z",
             "9999-12-31T23:59:59.999999998Z", "9999-12-31T22:59:59.999999999-01:00"]
    ages = lines(tmp_path / "a.ndjson", [event(f"t{i}", t, q=str(10 ** (i % 4)) + ".5")
                                        for i, t in enumerate(times)])
    levels = lines(tmp_path / "l.ndjson", [
        event("a1", "2000-01-01T00:00:00Z", subject="big", q=BIG),
        event("a2", "2100-06-15T12:34:56.789Z", subject="big", q="-" + BIG),
        event("b1", "1990-01-01T00:00:00Z", subject="small", q="3")])
    jobs: list[Job_] = []
    for aggregation in ("sum", "min", "max", "latest", "time-weighted-avg"):
        for scale in ([0, 6, 20] if aggregation == "time-weighted-avg" else [None]):
            request = tumbling(aggregation, "hour", "UTC", "2024-01-01T00:00:00Z",
                               "2024-01-01T03:00:00Z")
            spans: dict[str, Any] = {"aggregation": aggregation, "windows": [
                {"start": "0001-01-01T00:00:00Z", "end": "9999-12-31T23:59:59.999999999Z"},
                {"start": "0001-01-01T00:00:00.000000001Z", "end": "1970-01-01T00:00:00Z"},
                {"start": "1960-01-01T00:00:00Z", "end": "1970-01-01T00:00:00Z"}]}
            if scale is not None:
                request["scale"] = spans["scale"] = scale
            jobs += [("run", [bounded], meter, request), ("run", [ages, bounded], meter, spans)]
    jobs.append(("run", [levels], meter, tumbling(
        "time-weighted-avg", "month", "UTC", "2000-01-01T00:00:00Z", "2200-01-01T00:00:00Z",
        scale=20)))
    assert_batch(engine, tmp_path, jobs)


def test_records_repeats_conflicts_and_crlf(engine: SparkEngine, tmp_path: Path) -> None:
    """aggregate: MS-ING-020 duplicates (by value, meteredAt aside) and conflicts, bad records,
    a file with a byte-order mark and CRLF line ends."""
    rows: list[Any] = [
        record("r1", "2024-03-10T08:00:00Z", "1.50", dimensions={"a": "1", "b": "2"}),
        record("r1", "2024-03-10T09:00:00+01:00", "1.5", meteredAt="2024-03-11T00:00:00Z",
               dimensions={"b": "2", "a": "1"}),
        record("r1", "2024-03-10T08:00:00Z", "1.6", dimensions={"a": "1", "b": "2"}),
        record("r2", "2024-03-10T08:00:00Z", "2"),
        record("r2", "2024-03-10T08:00:00Z", "2", workspaceID="w2"),
        record("r3", "2024-03-10T08:00:00Z", "x"),
        record("r3", "2024-03-10T08:00:00Z", "3"),
        record("r4", "2024-03-10T08:00:00Z", "4", meteredAt="2024-02-30T00:00:00Z"),
        b"not json", b"", b"\xff"]
    records = lines(tmp_path / "r.ndjson", rows)
    crlf = tmp_path / "crlf.ndjson"
    crlf.write_bytes(b"\xef\xbb\xbf" + records.read_bytes().replace(b"\n", b"\r\n"))
    jobs: list[Job_] = []
    for aggregation in ("sum", "count", "latest", "unique-count"):
        request = tumbling(aggregation, "hour", "UTC", "2024-03-10T07:00:00Z",
                           "2024-03-10T10:00:00Z", groupBy=["a"])
        if aggregation == "unique-count":
            request["dimension"] = "b"
        jobs += [("aggregate", [records], None, request), ("aggregate", [crlf], None, request)]
    results = assert_batch(engine, tmp_path, jobs)
    assert all(r.duplicates == 1 for r in results)


# ------------------------------------------------------------------ the compiled plan (Spark SQL)


def test_the_compiled_plan_is_opt_in(tmp_path: Path) -> None:
    """Without sql_from_bytes no job runs in Spark SQL (the Python workers are the proven and
    cheaper path); with it, a job with enough input does, a smaller one and a time-weighted
    average do not."""
    from meterspec.engines.spark.engine import in_jvm
    from meterspec.engines.spark.tasks import Job

    config = decode_config(json.dumps(CONFIG).encode())
    span = ("sum", "day", "UTC", "2024-03-10T00:00:00Z", "2024-03-11T00:00:00Z")
    sums = Job("run", config, decode_request(json.dumps(tumbling(*span)).encode()))
    twa = Job("run", config, decode_request(json.dumps(
        tumbling("time-weighted-avg", *span[1:])).encode()))
    source = [NdjsonFile(str(lines(tmp_path / "e.ndjson", day_events())))]
    size = os.path.getsize(source[0].path)
    assert not in_jvm(sums, source)
    assert in_jvm(sums, source, size) and not in_jvm(sums, source, size + 1)
    assert not in_jvm(twa, source, 0)


@pytest.fixture(scope="module")
def compiled(engine: SparkEngine) -> SparkEngine:
    """The same session with every job the rule allows run as Spark SQL, whatever its size."""
    return SparkEngine(session=engine.session, workdir=engine.workdir, partitions=2,
                       sql_from_bytes=0)


def test_the_compiled_plan_equals_the_reference(compiled: SparkEngine, tmp_path: Path) -> None:
    """Spark SQL's screen, metering, identities, exact numbers (Units and limbs, sums past 38
    digits, years 0001 and 9999), overlapping windows over a DST change and reading lines,
    for events and records in one batch: the reference's bytes and report."""
    rows: list[Any] = [*day_events(), *HOSTILE, day_events()[2],
                       event("e1", "2024-03-10T09:00:00Z", q="1")]
    events = lines(tmp_path / "e.ndjson", rows)
    quantities = [BIG, BIG, "-" + BIG, TINY, "-0.5", "0"]
    bounded = lines(tmp_path / "b.ndjson", [
        event(f"b{i}", t, subject=f"s{i % 2}", q=q) for i, (q, t) in enumerate(zip(
            quantities * 2, ["0001-01-01T00:00:00Z", "2024-01-01T00:00:00.5+01:00",
                             "9999-12-31T23:59:59.999999999Z"] * 4, strict=True))])
    records = lines(tmp_path / "r.ndjson", [
        record("r1", "2024-03-10T08:00:00Z", "1.50", dimensions={"a": "1", "b": "2"}),
        record("r1", "2024-03-10T09:00:00+01:00", "1.5", dimensions={"b": "2", "a": "1"}),
        record("r1", "2024-03-10T08:00:00Z", "1.6", dimensions={"a": "1", "b": "2"}),
        record("r2", "2024-03-10T08:30:00Z", "2", dimensions={"a": "x\u00e9"}),
        record("r3", "2024-03-10T08:00:00Z", "x"), b"not json", b""])
    spans = {"windows": [
        {"start": "0001-01-01T00:00:00Z", "end": "9999-12-31T23:59:59.999999999Z"},
        {"start": "1960-01-01T00:00:00Z", "end": "2024-06-01T00:00:00Z"}]}
    dst = tumbling("sum", "day", "America/New_York", "2024-03-08T05:00:00Z",
                   "2024-03-14T04:00:00Z", groupBy=["region", "tier"])
    meter = {"measurements": [{"unit": "u", "sourceProperty": "q"}]}
    hours = tumbling("sum", "hour", "UTC", "2024-03-10T07:00:00Z", "2024-03-10T10:00:00Z",
                     groupBy=["a"])
    jobs: list[Job_] = [
        ("run", [events], CONFIG, dst),
        ("run", [events], CONFIG, {**dst, "aggregation": "unique-count", "dimension": "tier"}),
        ("run", [events], CONFIG, {**dst, "aggregation": "latest", "groupBy": []}),
        ("run", [bounded], meter, {**spans, "aggregation": "sum"}),
        ("run", [bounded], meter, {**spans, "aggregation": "min"}),
        ("aggregate", [records], None, {**hours, "aggregation": "count"}),
        ("aggregate", [records], None, {**hours, "aggregation": "max"}),
    ]
    results = assert_batch(compiled, tmp_path, jobs)
    assert results[0].duplicates == 1 and len(results[0].problems) > 30


# ------------------------------------------------------------------ the command line


def test_run_and_aggregate_with_engine_spark(engine: SparkEngine, tmp_path: Path) -> None:
    """`--engine spark` writes the reference's bytes, report, summary and exit status."""
    events = lines(tmp_path / "e.ndjson", [*HOSTILE[:30], HOSTILE[0]])
    config = write(tmp_path / "c.json", CONFIG)
    request = write(tmp_path / "r.json", tumbling("sum", "day", "UTC", "2024-03-10T00:00:00Z",
                                                  "2024-03-11T00:00:00Z", groupBy=["region"]))
    reference = call(["run", "--config", config, "--request", request, events])
    spark = call(["run", "--engine", "spark", "--threads", "2", "--config", config,
                  "--request", request, events])
    assert spark == reference and reference[0] == 1 and reference[1]
    records = lines(tmp_path / "recs.ndjson", [record("r1", "2024-03-10T08:00:00Z", "2"),
                                               record("r1", "2024-03-10T08:00:00Z", "2")])
    reference = call(["aggregate", "--request", request, records])
    assert call(["aggregate", "--engine", "spark", "--request", request, records]) == reference
    status, out, err = call(["run", "--engine", "spark", "--parquet", tmp_path / "o.parquet",
                             "--config", config, "--request", request, events])
    assert status == 2 and not out and b"--parquet is DuckDB's" in err



def test_parquet_and_a_session_table(engine: SparkEngine, tmp_path: Path) -> None:
    """Typed inputs (docs/engines.md's layout): a directory of Parquet files (numbered by
    path, then row) and a DataFrame as a temporary view give the readings and report of the
    same documents as NDJSON; `--engine spark` refuses another layout in one line."""
    import duckdb

    good = [json.loads(row) for row in HOSTILE[:1] + HOSTILE[-1:]]
    good += [{**good[0], "id": None, "properties": None}, {**good[0], "id": "p2"}]
    good[-1]["properties"] = {"q": None}
    con = duckdb.connect()
    con.execute("CREATE TABLE ev (id VARCHAR, workspaceID VARCHAR, universeID VARCHAR, "
                "type VARCHAR, subject VARCHAR, time VARCHAR, "
                "properties MAP(VARCHAR, VARCHAR))")
    for row in good:
        con.execute("INSERT INTO ev VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [row["id"], row["workspaceID"], row["universeID"], row["type"],
                     row["subject"], row["time"], row["properties"]])
    directory = tmp_path / "parquet"
    (directory / "b").mkdir(parents=True)
    con.execute(f"COPY (SELECT * FROM ev LIMIT 2) TO '{directory / 'a.parquet'}' "
                "(FORMAT parquet)")
    con.execute(f"COPY (SELECT * FROM ev OFFSET 2) TO '{directory / 'b' / 'c.parquet'}' "
                "(FORMAT parquet)")
    as_ndjson = lines(tmp_path / "good.ndjson", [
        {k: v for k, v in row.items() if v is not None} for row in good])
    config = write(tmp_path / "c.json", CONFIG)
    request = write(tmp_path / "r.json", tumbling("sum", "day", "UTC", "2024-03-10T00:00:00Z",
                                                  "2024-03-11T00:00:00Z", groupBy=["region"]))
    reference = call(["run", "--config", config, "--request", request, as_ndjson])
    assert reference[0] == 1 and b"missing-field" in reference[2]
    parsed = decode_config(config.read_bytes()), decode_request(request.read_bytes())
    result = engine.run(*parsed, [ParquetFiles(str(directory))])
    report = io.BytesIO()
    for number, problem in result.problems:
        Report(report).reject(problem, number)
    assert b"".join(result.lines()) == reference[1]
    assert report.getvalue() == b"".join(
        line for line in reference[2].splitlines(keepends=True) if line[:1] == b"{")
    engine.session.read.parquet(str(directory / "a.parquet")).createOrReplaceTempView("ev")
    result = engine.run(*parsed, [Table("ev")])
    first_two = call(["run", "--config", config, "--request", request,
                      lines(tmp_path / "two.ndjson", [good[0], good[1]])])
    assert b"".join(result.lines()) == first_two[1] and not result.problems
    con.execute(f"COPY (SELECT id, time FROM ev) TO '{tmp_path / 'bad.parquet'}' "
                "(FORMAT parquet)")
    status, out, err = call(["run", "--engine", "spark", "--config", config, "--request",
                             request, tmp_path / "bad.parquet"])
    assert status == 2 and not out and err.count(b"\n") == 1
    assert b"not in the event layout" in err and b"missing workspaceid" in err.lower()


def test_without_java_one_line_and_exit_2(tmp_path: Path) -> None:
    """No java on PATH and no JAVA_HOME: one line naming what is missing, at once."""
    config = write(tmp_path / "c.json", CONFIG)
    request = write(tmp_path / "r.json", tumbling("sum", "day", "UTC", "2024-03-10T00:00:00Z",
                                                  "2024-03-11T00:00:00Z"))
    events = lines(tmp_path / "e.ndjson", [HOSTILE[0]])
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)
    result = subprocess.run(
        [sys.executable, "-m", "meterspec", "run", "--engine", "spark", "--config", str(config),
         "--request", str(request), str(events)], capture_output=True, env=env, timeout=60,
        check=False)
    assert result.returncode == 2 and not result.stdout
    assert result.stderr.decode().count("\n") == 1 and b"needs java 17" in result.stderr.lower()



def test_a_jvm_that_refuses_its_settings_is_one_line(tmp_path: Path) -> None:
    """Spark's JVM refusing to start (here: less heap than Spark's minimum, set the way a
    user sets it) is one line quoting the JVM's own exception, exit 2, its temporary
    directory removed; no traceback."""
    config = write(tmp_path / "c.json", CONFIG)
    request = write(tmp_path / "r.json", tumbling("sum", "day", "UTC", "2024-03-10T00:00:00Z",
                                                  "2024-03-11T00:00:00Z"))
    events = lines(tmp_path / "e.ndjson", [HOSTILE[0]])
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp),
               PYSPARK_SUBMIT_ARGS="--driver-memory 400m pyspark-shell")
    result = subprocess.run(
        [sys.executable, "-m", "meterspec", "run", "--engine", "spark", "--config", str(config),
         "--request", str(request), str(events)], capture_output=True, env=env, timeout=120,
        check=False)
    assert result.returncode == 2 and not result.stdout
    assert result.stderr.count(b"\n") == 1, result.stderr
    assert b"did not start" in result.stderr and b"INVALID_DRIVER_MEMORY" in result.stderr
    assert not list(temp.iterdir())


def test_a_dead_jvm_is_named_by_its_log(tmp_path: Path) -> None:
    """Once the JVM has died, its error is read from its log (spark.log), the first line
    naming a Java exception; without one, the Python error's first line."""
    (tmp_path / "spark.log").write_text(
        'Setting default log level to "WARN".\n'
        "spark: ERROR Executor: Exception in task 0.0 in stage 10.0 (TID 491)\n"
        "java.lang.OutOfMemoryError: Java heap space\n"
        "\tat java.base/java.nio.HeapByteBuffer.<init>(HeapByteBuffer.java:64)\n"
        "org.apache.spark.SparkException: Job aborted due to stage failure\n")
    refused = ConnectionRefusedError(111, "Connection refused")
    assert jvm_error(refused, str(tmp_path)) == "java.lang.OutOfMemoryError: Java heap space"
    assert jvm_error(RuntimeError("\n first\nsecond"), str(tmp_path / "none")) == "first"


# ------------------------------------------------------------------ the conformance suite


def test_the_metering_and_aggregation_areas_pass(engine: SparkEngine) -> None:
    """`--impl python:meterspec.engines.spark`'s answers, computed as one Spark job, judged
    by the conformance runner: every case of both areas passes."""
    cases = select(load_cases(ROOT / "conformance"), areas=["metering", "aggregation"])
    answers = conformance.answers([case.request() for case in cases], engine)
    by_id = {case.id: answer for case, answer in zip(cases, answers, strict=True)}

    class Answered:
        @staticmethod
        def implementation() -> dict[str, Any]:
            return conformance.implementation()

        @staticmethod
        def handle(case: dict[str, Any]) -> dict[str, Any]:
            return by_id[case["id"]]

    run = Runner(InProcessAdapter(Answered)).run(cases)
    failed = [(o.case.id, o.reason) for o in run.outcomes if o.result != "passed"]
    assert not failed and len(run.outcomes) == len(cases) > 200


def test_the_command_alone_writes_only_the_references_bytes(tmp_path: Path) -> None:
    """`meterspec run --engine spark` as its own process (it starts and reaps its own JVM):
    nothing of Spark's reaches standard output or error, which are the reference's."""
    events = lines(tmp_path / "e.ndjson", [HOSTILE[0], b"not json", HOSTILE[0]])
    options = ["--config", str(write(tmp_path / "c.json", CONFIG)), "--request",
               str(write(tmp_path / "r.json", tumbling("sum", "day", "UTC",
                                                       "2024-03-10T00:00:00Z",
                                                       "2024-03-11T00:00:00Z")))]
    command = [sys.executable, "-m", "meterspec", "run"]
    reference = subprocess.run([*command, *options, str(events)], capture_output=True,
                               timeout=120, check=False)
    spark = subprocess.run([*command, "--engine", "spark", "--threads", "1", *options,
                            str(events)], capture_output=True, timeout=300, check=False)
    assert (spark.returncode, spark.stdout, spark.stderr) == (
        reference.returncode, reference.stdout, reference.stderr) and reference.returncode == 1
