"""Property: for random configs, requests and event files (hostile lines among them), and for
random record files, `--engine duckdb` gives byte for byte the reference's readings, error
report, summary and exit status; and (fewer examples, each a batch of jobs in one Spark job)
so does the Spark engine's batch. The reference is the oracle."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("duckdb", reason="the engine needs DuckDB: pip install -e '.[duckdb]'")

from test_engines_duckdb import HOSTILE, call

EXAMPLES = int(os.environ.get("ENGINE_EXAMPLES", "40"))
PROPERTIES = ["q", "n", "region", "tier", "a.b", ""]
VALUES = ["eu", "us", "gold", "free", "", "é", "x\"y", "1", "0.5"]
QUANTITIES = ["0", "-0", "1", "1.50", "-2.5", "3e1", "0.000001", "12.345", "1e-20",
              "9" * 30 + "." + "9" * 20, "-" + "9" * 30, "0." + "0" * 19 + "1", "x", "1,0",
              "00012.3400", "1E+3", "-0.0"]
TIMES = ["2024-03-10T06:59:59Z", "2024-03-10T07:00:00Z", "2024-03-10T07:00:00.000000001Z",
         "2024-03-10T08:30:00+01:00", "2024-03-11T03:59:59.999999999Z", "2024-03-09T05:00:00Z",
         "2024-03-11t04:00:00z", "2024-02-30T00:00:00Z", "0001-01-01T00:00:00Z",
         "9999-12-31T23:59:59.999999999Z", "2024-03-12T12:00:00.5000000000Z", "nope"]
ZONES = ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata"]

conditions: st.SearchStrategy[dict[str, Any]] = st.deferred(lambda: st.one_of(
    st.builds(lambda p, v: {"property": p, "equals": v}, st.sampled_from(PROPERTIES),
              st.sampled_from(VALUES)),
    st.builds(lambda p, v: {"property": p, "in": v}, st.sampled_from(PROPERTIES),
              st.lists(st.sampled_from(VALUES), min_size=1, max_size=3)),
    st.builds(lambda p, v: {"property": p, "notIn": v}, st.sampled_from(PROPERTIES),
              st.lists(st.sampled_from(VALUES), min_size=1, max_size=3)),
    st.builds(lambda p, v: {"property": p, "exists": v}, st.sampled_from(PROPERTIES),
              st.booleans()),
    st.builds(lambda c: {"allOf": c}, st.lists(conditions, min_size=1, max_size=2)),
    st.builds(lambda c: {"anyOf": c}, st.lists(conditions, min_size=1, max_size=2))))


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    measurements = []
    for unit in draw(st.lists(st.sampled_from(["u1", "u2", "u3"]), min_size=1, max_size=3,
                              unique=True)):
        spec: dict[str, Any] = {"unit": unit}
        if draw(st.booleans()):
            spec["sourceProperty"] = draw(st.sampled_from(["q", "n"]))
        else:
            spec["quantity"] = draw(st.sampled_from(["1", "2.50", "-0.125", "1e2"]))
        if draw(st.booleans()):
            spec["eventTypes"] = draw(st.lists(st.sampled_from(["t", "x"]), min_size=1,
                                               max_size=2, unique=True))
        if draw(st.booleans()):
            spec["filter"] = draw(conditions)
        measurements.append(spec)
    config: dict[str, Any] = {"measurements": measurements}
    if draw(st.booleans()):
        config["dimensions"] = draw(st.lists(st.sampled_from(PROPERTIES), max_size=3,
                                             unique=True))
    return config


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    aggregation = draw(st.sampled_from(["sum", "count", "min", "max", "latest",
                                        "time-weighted-avg", "unique-count"]))
    request: dict[str, Any] = {"aggregation": aggregation}
    if draw(st.booleans()):
        request["tumbling"] = {"size": draw(st.sampled_from(["hour", "day"])),
                               "timeZone": draw(st.sampled_from(ZONES)),
                               "start": "2024-03-09T00:00:00Z", "end": "2024-03-12T00:00:00Z"}
        if request["tumbling"]["timeZone"] != "UTC":
            request["tumbling"] = {**request["tumbling"], "timeZone": "UTC"} \
                if request["tumbling"]["size"] == "day" else request["tumbling"]
    else:
        bounds = sorted(draw(st.lists(st.sampled_from([
            *TIMES[:6], "2024-03-09T00:00:00Z", "2024-03-13T00:00:00Z",
            "2024-03-10T07:30:00Z"]), min_size=2, max_size=6, unique=True)))
        pairs = draw(st.lists(st.tuples(st.integers(0, len(bounds) - 2),
                                        st.integers(1, len(bounds) - 1)),
                              min_size=1, max_size=4))
        windows = sorted({(bounds[a], bounds[max(a + 1, b)]) for a, b in pairs})
        request["windows"] = [{"start": a, "end": b} for a, b in windows]
    if draw(st.booleans()):
        request["groupBy"] = draw(st.lists(st.sampled_from(PROPERTIES[1:]), max_size=2,
                                           unique=True))
    if aggregation == "unique-count":
        request["dimension"] = draw(st.sampled_from(PROPERTIES[1:]))
    if aggregation == "time-weighted-avg" and draw(st.booleans()):
        request["scale"] = draw(st.sampled_from([0, 3, 6, 20]))
    return request


def _line(draw: st.DrawFn, document: dict[str, Any]) -> bytes:
    """A document as a line: mostly the compact schema order (the engine's fast path), else
    spaced, reordered, escaped or broken (the reference's path)."""
    style = draw(st.sampled_from(["compact"] * 5 + ["spaced", "reordered", "ascii", "comma",
                                                    "hostile"]))
    if style == "spaced":
        return json.dumps(document, ensure_ascii=False).encode()
    if style == "reordered":
        return json.dumps(dict(reversed(list(document.items()))), ensure_ascii=False,
                          separators=(",", ":")).encode()
    if style == "ascii":
        return json.dumps(document, separators=(",", ":")).encode()
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    if style == "comma":
        return text[:-1] + b",}"
    if style == "hostile":
        return draw(st.sampled_from([*HOSTILE[:-3], text + b" x", text.replace(b'"', b"'", 2),
                                     text[:-1], b"\xef\xbb\xbf" + text]))
    return text


@st.composite
def event_files(draw: st.DrawFn) -> list[bytes]:
    rows = []
    for i in range(draw(st.integers(1, 14))):
        properties = {name: draw(st.sampled_from(VALUES)) for name in
                      draw(st.lists(st.sampled_from(PROPERTIES[2:]), max_size=3, unique=True))}
        for name in draw(st.lists(st.sampled_from(["q", "n"]), max_size=2, unique=True)):
            properties[name] = draw(st.sampled_from(QUANTITIES))
        document: dict[str, Any] = {
            "id": f"e{i % 5}", "workspaceID": draw(st.sampled_from(["w", "w", "v"])),
            "universeID": "u", "type": draw(st.sampled_from(["t", "t", "x"])),
            "subject": draw(st.sampled_from(["s1", "s2", "s\u00e9"])),
            "time": draw(st.sampled_from(TIMES))}
        empty = draw(st.booleans())
        if properties or empty:
            document["properties"] = properties
        rows.append(_line(draw, document))
    return rows


@st.composite
def record_files(draw: st.DrawFn) -> list[bytes]:
    rows = []
    for i in range(draw(st.integers(1, 12))):
        document: dict[str, Any] = {
            "id": f"r{draw(st.integers(0, 4))}", "workspaceID": "w", "universeID": "u",
            "subject": draw(st.sampled_from(["s1", "s2"])),
            "recordedAt": draw(st.sampled_from(TIMES)),
            "measurement": {"quantity": draw(st.sampled_from(QUANTITIES)), "unit": "u"},
            "dimensions": {name: draw(st.sampled_from(VALUES)) for name in draw(
                st.lists(st.sampled_from(PROPERTIES[2:]), max_size=2, unique=True))},
            "sourceEventID": f"e{i}"}
        if draw(st.booleans()):
            document["meteredAt"] = draw(st.sampled_from(TIMES))
        rows.append(_line(draw, document))
    return rows


def _same(command: list[str], files: list[Path]) -> None:
    reference = call([command[0], *command[1:], *files])
    engine = call([command[0], "--engine", "duckdb", *command[1:], *files])
    assert engine[1].decode() == reference[1].decode()
    assert engine[2].decode() == reference[2].decode()
    assert engine[0] == reference[0]


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(configs(), requests(), event_files())
def test_run_equals_the_reference(config: dict[str, Any], request: dict[str, Any],
                                  events: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "c.json").write_text(json.dumps(config))
        (root / "r.json").write_text(json.dumps(request))
        (root / "e.ndjson").write_bytes(b"\n".join(events) + b"\n")
        _same(["run", "--config", str(root / "c.json"), "--request", str(root / "r.json")],
              [root / "e.ndjson"])


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(requests(), record_files())
def test_aggregate_equals_the_reference(request: dict[str, Any], records: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "r.json").write_text(json.dumps(request))
        (root / "recs.ndjson").write_bytes(b"\n".join(records))
        _same(["aggregate", "--request", str(root / "r.json")], [root / "recs.ndjson"])


# ------------------------------------------------------------------ Spark (a smaller property)

SPARK_EXAMPLES = int(os.environ.get("SPARK_EXAMPLES", "4"))


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One local[2] session (Spark reuses one already running in this process)."""
    pytest.importorskip("pyspark", reason="the engine needs pyspark: pip install -e '.[spark]'")
    from meterspec.engines.spark.engine import SparkEngine
    from meterspec.engines.spark.session import JavaMissingError

    try:
        return SparkEngine(threads=2, partitions=2, workdir=str(tmp_path_factory.mktemp("s")))
    except JavaMissingError as error:
        pytest.fail(str(error), pytrace=False)


jobs = st.lists(st.one_of(st.tuples(st.just("run"), configs(), requests(), event_files()),
                          st.tuples(st.just("aggregate"), st.none(), requests(),
                                    record_files())), min_size=2, max_size=6)


@settings(max_examples=SPARK_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(jobs)
def test_spark_equals_the_reference(spark: Any, batch: list[tuple[Any, ...]]) -> None:
    """Random jobs, all in one Spark job: each one's readings and error report are the
    reference's, byte for byte."""
    from meterspec.cli import Report
    from meterspec.codec import decode_config, decode_request
    from meterspec.engines.compiler import compile_plan
    from meterspec.engines.sources import NdjsonFile
    from meterspec.engines.spark.tasks import Job
    from meterspec.errors import MeterspecError

    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        work, commands = [], []
        for index, (command, config, request, rows) in enumerate(batch):
            data = root / f"in{index}.ndjson"
            data.write_bytes(b"\n".join(rows) + b"\n")
            (root / f"r{index}.json").write_text(json.dumps(request))
            options = ["--request", str(root / f"r{index}.json")]
            if config is not None:
                (root / f"c{index}.json").write_text(json.dumps(config))
                options += ["--config", str(root / f"c{index}.json")]
            commands.append([command, *options, str(data)])
            try:
                job = Job(command, decode_config(json.dumps(config)) if config else None,
                          decode_request(json.dumps(request)))
                compile_plan("events" if config else "records", job.config, job.request)
            except MeterspecError:  # an unusable document: the reference exits 2, no job
                continue
            work.append((len(commands) - 1, job, [NdjsonFile(str(data))]))
        results = spark.batch([(job, sources) for _, job, sources in work])
        for (index, _, _), result in zip(work, results, strict=True):
            status, out, err = call(commands[index])
            assert status != 2, err
            report = io.BytesIO()
            for number, problem in result.problems:
                Report(report).reject(problem, number)
            assert b"".join(result.lines()).decode() == out.decode()
            assert report.getvalue().decode() == "".join(  # the report: its JSON lines
                line for line in err.decode().splitlines(keepends=True) if line[:1] == "{")
