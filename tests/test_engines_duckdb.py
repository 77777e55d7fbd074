"""The DuckDB engine (meterspec.engines.duckdb, issue 13) held to the reference: for the same
files, `meterspec run|aggregate --engine duckdb` writes the same bytes to standard output, the
same error report and summary to standard error and exits with the same status as the command
without --engine. The reference is the oracle (the engine's whole task is equality with it);
no expected output here is computed by the engine. The inputs reach every bound the
specification sets: 30 integer and 20 fraction digits, sums past 38 digits, time-weighted
integrals past 128 bits, nanoseconds, years 0001 and 9999, daylight saving, and every kind of
bad line."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

duckdb = pytest.importorskip("duckdb", reason="the engine needs DuckDB: pip install -e '.[duckdb]'")

from meterspec.cli import main  # noqa: E402
from meterspec.codec import decode_config, decode_request  # noqa: E402
from meterspec.engines.duckdb.engine import DuckDBEngine, LayoutError  # noqa: E402
from meterspec.engines.sources import Table  # noqa: E402

Outcome = tuple[int, bytes, bytes]
AGGREGATIONS = ("sum", "count", "min", "max", "latest", "time-weighted-avg", "unique-count")


def call(args: Sequence[str | Path]) -> Outcome:
    """`meterspec ARGS` in-process: (exit status, stdout bytes, stderr bytes)."""
    out, err = io.BytesIO(), io.BytesIO()
    text_out = io.TextIOWrapper(out, write_through=True)
    text_err = io.TextIOWrapper(err, write_through=True)
    with redirect_stdout(text_out), redirect_stderr(text_err):
        status = main([str(a) for a in args])
    return status, out.getvalue(), err.getvalue()


def both(command: str, files: Sequence[str | Path], *options: str | Path,
         threads: str = "1") -> tuple[Outcome, Outcome]:
    """The reference's outcome and the engine's for one command line."""
    reference = call([command, *options, *files])
    engine = call([command, "--engine", "duckdb", "--threads", threads, *options, *files])
    return reference, engine


def assert_same(command: str, files: Sequence[str | Path], *options: str | Path,
                threads: str = "1") -> Outcome:
    reference, engine = both(command, files, *options, threads=threads)
    assert engine[1].decode() == reference[1].decode()
    assert engine[2].decode() == reference[2].decode()
    assert engine[0] == reference[0]
    return reference


def write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def lines(path: Path, rows: Sequence[bytes | str | dict[str, Any]]) -> Path:
    with open(path, "wb") as out:
        for row in rows:
            if isinstance(row, dict):
                row = json.dumps(row, separators=(",", ":"))
            out.write((row.encode() if isinstance(row, str) else row) + b"\n")
    return path


def event(ident: str, time: str, subject: str = "s1", **properties: str) -> dict[str, Any]:
    return {"id": ident, "workspaceID": "w", "universeID": "u", "type": "t",
            "subject": subject, "time": time, "properties": properties}


CONFIG = {"measurements": [
    {"unit": "tokens", "sourceProperty": "q"},
    {"unit": "calls", "quantity": "1", "eventTypes": ["t"]},
    {"unit": "eu", "sourceProperty": "q", "filter": {"allOf": [
        {"property": "region", "in": ["eu", "uk"]},
        {"anyOf": [{"property": "tier", "notIn": ["free"]},
                   {"property": "vip", "exists": True}]}]}},
    {"unit": "gold", "quantity": "2.50", "filter": {"property": "tier", "equals": "gold"}},
]}


def tumbling(aggregation: str, size: str, zone: str, start: str, end: str,
             **more: Any) -> dict[str, Any]:
    return {"aggregation": aggregation,
            "tumbling": {"size": size, "timeZone": zone, "start": start, "end": end}, **more}


def day_events() -> list[dict[str, Any]]:
    """Events around New York's DST change, with ties, groups and missing dimensions."""
    rows = []
    for i, (time, q) in enumerate([
            ("2024-03-09T04:59:59.999999999Z", "5"), ("2024-03-09T05:00:00Z", "1.5"),
            ("2024-03-10T06:59:59Z", "-2.25"), ("2024-03-10T07:00:00Z", "3"),
            ("2024-03-10T07:00:00Z", "3.0"), ("2024-03-10T07:00:00Z", "7"),
            ("2024-03-11T03:59:59.000000001Z", "0.000001"), ("2024-03-11T04:00:00Z", "0"),
            ("2024-03-12T12:00:00Z", "-0"), ("2024-03-13T03:59:59Z", "12.5")]):
        props = {"q": q}
        if i % 3:
            props["region"] = ["eu", "uk", "us"][i % 3]
        if i % 4 == 1:
            props["tier"] = "gold"
        rows.append(event(f"e{i}", time, subject=f"s{i % 2}", **props))
    rows.append(event("other", "2024-03-10T08:00:00Z", subject="s9", q="4", region="eu"))
    rows[-1]["workspaceID"] = "w2"
    return rows


# ------------------------------------------------------------------ every aggregation


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("grouping", [None, ["region"], ["region", "tier"], []])
def test_every_aggregation_in_new_york_days(aggregation: str, grouping: list[str] | None,
                                            tmp_path: Path) -> None:
    more: dict[str, Any] = {}
    if grouping is not None:
        more["groupBy"] = grouping
    if aggregation == "unique-count":
        more["dimension"] = "region"
    if aggregation == "time-weighted-avg":
        more["scale"] = 9
    request = write(tmp_path / "r.json", tumbling(aggregation, "day", "America/New_York",
                                                  "2024-03-09T05:00:00Z",
                                                  "2024-03-13T04:00:00Z", **more))
    config = write(tmp_path / "c.json", CONFIG)
    events = lines(tmp_path / "e.ndjson", day_events())
    status, out, _ = assert_same("run", [events], "--config", config, "--request", request)
    assert status == 0 and out  # a real run: readings, nothing rejected


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_overlapping_windows_with_gaps(aggregation: str, tmp_path: Path) -> None:
    windows = [("2024-03-09T00:00:00Z", "2024-03-12T00:00:00Z"),
               ("2024-03-10T00:00:00Z", "2024-03-11T00:00:00Z"),
               ("2024-03-10T07:00:00Z", "2024-03-13T00:00:00Z"),
               ("2024-03-13T06:00:00Z", "2024-03-14T00:00:00.000000001Z"),
               ("2024-03-08T00:00:00Z", "2024-03-09T05:00:00Z")]
    request: dict[str, Any] = {"aggregation": aggregation, "groupBy": ["region"],
                               "windows": [{"start": a, "end": b} for a, b in windows]}
    if aggregation == "unique-count":
        request["dimension"] = "tier"
    assert_same("run", [lines(tmp_path / "e.ndjson", day_events())], "--config",
                write(tmp_path / "c.json", CONFIG), "--request",
                write(tmp_path / "r.json", request))


@pytest.mark.parametrize(("size", "zone", "start", "end"), [
    ("hour", "Europe/London", "2024-10-26T22:00:00Z", "2024-10-27T04:00:00Z"),  # fall back
    ("hour", "America/New_York", "2024-03-10T04:00:00Z", "2024-03-10T09:00:00Z"),
    ("minute", "Asia/Kolkata", "2024-03-10T06:58:30Z", "2024-03-10T07:01:30Z"),
    ("month", "Pacific/Chatham", "2024-01-31T11:15:00Z", "2024-04-30T11:15:00Z"),
    ("day", "America/Havana", "2024-03-09T05:00:00Z", "2024-03-12T04:00:00Z"),
])
@pytest.mark.parametrize("aggregation", ["sum", "time-weighted-avg", "latest"])
def test_windows_in_zones_across_daylight_saving(size: str, zone: str, start: str, end: str,
                                                aggregation: str, tmp_path: Path) -> None:
    events = [event(f"e{i}", f"2024-{m:02d}-{d:02d}T{h:02d}:{mi:02d}:00Z", q=str(i))
              for i, (m, d, h, mi) in enumerate([(1, 31, 12, 0), (3, 10, 6, 59), (3, 10, 7, 0),
                                                 (3, 10, 8, 30), (3, 11, 4, 0), (4, 2, 0, 0),
                                                 (10, 27, 0, 30), (10, 27, 1, 30),
                                                 (10, 27, 1, 0), (10, 26, 23, 0)])]
    assert_same("run", [lines(tmp_path / "e.ndjson", events)], "--config",
                write(tmp_path / "c.json", CONFIG), "--request",
                write(tmp_path / "r.json", tumbling(aggregation, size, zone, start, end)))


# ------------------------------------------------------------------ exactness at the bounds

BIG = "9" * 30 + "." + "9" * 20
TINY = "0." + "0" * 19 + "1"


@pytest.mark.parametrize("aggregation", ["sum", "min", "max", "latest", "time-weighted-avg"])
@pytest.mark.parametrize("scale", [0, 6, 20])
def test_quantities_at_the_bounds(aggregation: str, scale: int, tmp_path: Path) -> None:
    """30 integer and 20 fraction digits, sums far past 38 digits (and past zero), negative
    limbs, ties at one nanosecond; a time-weighted level of 10**30 over a day needs far more
    than 128 bits, so the engine's fallback must give the reference's digits."""
    quantities = [BIG, BIG, BIG, "-" + BIG, TINY, "-" + TINY, "1" + "0" * 29,
                  "123456789012345678901234567890.12345678901234567890", "-0.5", "0"]
    events = [event(f"e{i}", f"2024-01-01T00:00:{i:02d}.{i:09d}Z", subject=f"s{i % 3}", q=q)
              for i, q in enumerate(quantities * 4)]
    request: dict[str, Any] = tumbling(aggregation, "hour", "UTC", "2024-01-01T00:00:00Z",
                                       "2024-01-01T03:00:00Z")
    if aggregation == "time-weighted-avg":
        request["scale"] = scale
    elif scale:
        return
    assert_same("run", [lines(tmp_path / "e.ndjson", events)], "--config",
                write(tmp_path / "c.json", {"measurements": [{"unit": "u",
                                                              "sourceProperty": "q"}]}),
                "--request", write(tmp_path / "r.json", request))


@pytest.mark.parametrize("aggregation", ["sum", "latest", "time-weighted-avg", "count"])
def test_years_0001_and_9999_and_nanoseconds(aggregation: str, tmp_path: Path) -> None:
    """Instants outside 64-bit nanoseconds (1677-2262), one nanosecond apart, with offsets,
    across a window of 9,998 years (a TWA step length of ~3.2 * 10**20 ns)."""
    times = ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000001Z",
             "0001-01-01T00:30:00+00:30", "1677-09-21T00:12:43.145224191Z",
             "1969-12-31T23:59:59.999999999Z", "2262-04-11T23:47:16.854775808Z",
             "9999-12-31T23:59:59.999999998Z", "9999-12-31T23:59:59.999999999Z",
             "9999-12-31T22:59:59.999999999-01:00", "2024-02-29T12:00:00.1000000000000Z"]
    events = [event(f"e{i}", t, q=str(10 ** (i % 4)) + ".5") for i, t in enumerate(times)]
    windows = [{"start": "0001-01-01T00:00:00Z", "end": "9999-12-31T23:59:59.999999999Z"},
               {"start": "0001-01-01T00:00:00.000000001Z", "end": "1970-01-01T00:00:00Z"},
               {"start": "2262-04-11T23:47:16.854775807Z", "end": "9999-12-31T23:59:59Z"}]
    request: dict[str, Any] = {"aggregation": aggregation, "windows": windows}
    if aggregation == "time-weighted-avg":
        request["scale"] = 20
    status, out, _ = assert_same(
        "run", [lines(tmp_path / "e.ndjson", events)], "--config",
        write(tmp_path / "c.json", {"measurements": [{"unit": "u", "sourceProperty": "q"}]}),
        "--request", write(tmp_path / "r.json", request))
    assert status == 0 and out.count(b"\n") == 3


def test_time_weighted_levels_past_128_bits_over_long_windows(tmp_path: Path) -> None:
    """Levels of 30 digits held for years: every group goes to the exact fallback; a small
    group beside them stays in 128-bit SQL; both equal the reference."""
    events = [event("a1", "2000-01-01T00:00:00Z", subject="big", q=BIG),
              event("a2", "2100-06-15T12:34:56.789Z", subject="big", q="-" + BIG),
              event("b1", "1990-01-01T00:00:00Z", subject="small", q="3"),
              event("b2", "2050-01-01T00:00:00.000000001Z", subject="small", q="4.25")]
    request = tumbling("time-weighted-avg", "month", "UTC", "2000-01-01T00:00:00Z",
                       "2200-01-01T00:00:00Z", scale=20)
    assert_same("run", [lines(tmp_path / "e.ndjson", events)], "--config",
                write(tmp_path / "c.json", {"measurements": [{"unit": "u",
                                                              "sourceProperty": "q"}]}),
                "--request", write(tmp_path / "r.json", request))


# ------------------------------------------------------------------ bad input is the reference's

T = "2024-03-10T08:00:00Z"


def _e(ident: str, time: str = T, props: str | None = None, *, subject: str = "s",
       kind: str = "t", extra: str = "") -> bytes:
    """An event line in the compact schema order (bytes spliced in as given)."""
    text = (f'{{"id":"{ident}","workspaceID":"w","universeID":"u","type":"{kind}",'
            f'"subject":"{subject}","time":"{time}"{extra}')
    if props is not None:
        text += f',"properties":{props}'
    return text.encode("utf-8", "surrogateescape") + b"}"


HOSTILE: list[bytes] = [
    _e("ok1", props='{"q":"1","region":"eu"}'),
    b'{"id": "spaced", "workspaceID": "w", "universeID": "u", "type": "t", "subject": "s", '
    b'"time": "2024-03-10T08:00:00Z", "properties": {"q": "2"}}',
    b'{"time":"2024-03-10T08:00:00Z","id":"order","workspaceID":"w","universeID":"u",'
    b'"type":"t","subject":"s","properties":{"q":"3"}}',
    _e("esc", props='{"q":"4"}', subject='a\\"b\\u00e9\\/'),
    _e("off", "2024-03-10t09:00:00.500000000000+01:00", '{"q":"1e3"}'),
    _e("zeros", props='{"q":"0000000000000000000000000000000001.100000000000000000000000"}'),
    _e("comma", props='{"q":"1",}'),
    _e("nan", props='{"q":NaN}'),
    b'{"id":5,"workspaceID":"w","universeID":"u","type":"t","subject":"s",'
    b'"time":"2024-03-10T08:00:00Z"}',
    _e("arr", props='{"q":["1"]}'),
    _e("nest", props='{"q":{"a":"1"}}'),
    _e("nul", props="null"),
    b'{"id":"dup","id":"dup","workspaceID":"w","universeID":"u","type":"t","subject":"s",'
    b'"time":"2024-03-10T08:00:00Z"}',
    _e("dupp", props='{"q":"1","q":"2"}'),
    _e("unk", extra=',"extra":"x"'),
    b'{"id":"miss","workspaceID":"w","universeID":"u","type":"t","time":"2024-03-10T08:00:00Z"}',
    b'{"id":"","workspaceID":"w","universeID":"","type":"t","subject":"s",'
    b'"time":"2024-02-30T08:00:00Z"}',
    _e("y0", "0000-12-31T23:30:00-01:00"),
    _e("y1", "9999-12-31T23:30:00-01:00"),
    _e("leap", "2024-03-10T23:59:60Z"),
    _e("tenth", "2024-03-10T08:00:00.0000000001Z", '{"q":"1"}'),
    _e("h24", "2024-03-10T24:00:00Z", '{"q":"1"}'),
    _e("qbad", props='{"q":"1,000"}'),
    _e("qbig", props='{"q":"1' + "0" * 30 + '"}'),
    _e("qfrac", props='{"q":"0.' + "0" * 20 + '1"}'),
    _e("qnum", props='{"q":5}'),
    _e("noq", props='{"region":"eu"}'),
    _e("other-type", props='{"region":"eu"}', kind="x"),
    b"\xef\xbb\xbf" + _e("bom"),
    _e("bad-utf8", subject="s\udcff"),
    _e("enc-surrogate", subject="s\udced\udca0\udc80"),
    _e("lone", subject="\\ud800"),
    _e("nulbyte", subject="s\x00"),
    _e("ctrl", subject="s\tx"),
    _e("cr", props='{"q":"6"}') + b"\r",
    b"", b"   ", b" \t ", b"\x0b", b"{}", b"[]", b'"str"', b"not json", b"{" * 70 + b"}" * 70,
    _e("two") + b' {"id":"x"}',
    b"{" + b'"pad":"' + b"x" * 1_048_600 + b'"}',
    _e("ok2", "2024-03-10T08:00:00.000000001Z", '{"q":"-7.125","region":"eu","tier":"gold",'
       '"":"empty name","a.b":"dot","$x":"dollar"}', subject="s\u00e9\U0001f600"),
]


@pytest.mark.parametrize("threads", ["1", "2"])
def test_hostile_lines_get_the_references_report(threads: str, tmp_path: Path) -> None:
    """Every line the engine does not read on its fast path is described by the reference:
    the same problems (code, path, message, requirement, event id, line), the same readings
    from the good lines among them (some only the reference can read: escapes, offsets,
    other member orders, exponents), the same summary and exit status 1."""
    events = lines(tmp_path / "e.ndjson", HOSTILE)
    config = write(tmp_path / "c.json", CONFIG)
    for aggregation in ("sum", "count", "latest"):
        request = write(tmp_path / "r.json", tumbling(
            aggregation, "day", "UTC", "2024-03-10T00:00:00Z", "2024-03-11T00:00:00Z",
            groupBy=["region"]))
        status, out, err = assert_same("run", [events], "--config", config, "--request",
                                       request, threads=threads)
        assert status == 1 and out and b"line-too-long" in err and b"duplicate-name" in err


def test_a_byte_order_mark_and_crlf_file(tmp_path: Path) -> None:
    body = b"\r\n".join(HOSTILE[:6]) + b"\r\n"
    events = tmp_path / "e.ndjson"
    events.write_bytes(b"\xef\xbb\xbf" + body)
    config = write(tmp_path / "c.json", CONFIG)
    request = write(tmp_path / "r.json", tumbling("sum", "day", "UTC", "2024-03-10T00:00:00Z",
                                                  "2024-03-11T00:00:00Z"))
    status, out, _ = assert_same("run", [events], "--config", config, "--request", request)
    assert status == 0 and out


def test_unusable_documents_and_engine_errors(tmp_path: Path) -> None:
    events = lines(tmp_path / "e.ndjson", HOSTILE[:2])
    good_config = write(tmp_path / "c.json", CONFIG)
    bad_config = write(tmp_path / "bad.json", {"measurements": [{"unit": "u"}]})
    bad_request = write(tmp_path / "badr.json", {"aggregation": "sum", "scale": 3,
                                                 "windows": []})
    request = write(tmp_path / "r.json", tumbling("sum", "day", "UTC", "2024-03-10T00:00:00Z",
                                                  "2024-03-11T00:00:00Z"))
    for config, req in ((bad_config, request), (good_config, bad_request),
                        (bad_config, bad_request)):
        status, _, _ = assert_same("run", [events], "--config", config, "--request", req)
        assert status == 2
    status, out, err = call(["run", "--engine", "duckdb", "--master", "local[1]", "--config",
                             good_config, "--request", request, events])
    assert status == 2 and not out and b"--master is Spark's" in err
    status, _, err = call(["run", "--engine", "duckdb", "--jobs", "2", "--config",
                           good_config, "--request", request, events])
    assert status == 2 and b"--threads" in err


def test_an_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    events = lines(tmp_path / "e.ndjson", HOSTILE[:2])
    more = lines(tmp_path / "more.ndjson", HOSTILE[:2])
    config = write(tmp_path / "c.json", CONFIG)
    request = write(tmp_path / "r.json", tumbling("sum", "day", "UTC", "2024-03-10T00:00:00Z",
                                                  "2024-03-11T00:00:00Z"))
    before = more.read_bytes()
    choices: list[list[str | Path]] = [["--errors", more], ["--parquet", more],
                                       ["--parquet", config]]
    for options in choices:
        status, _, err = call(["run", "--engine", "duckdb", *options, "--config", config,
                               "--request", request, events, more])
        assert status == 2 and b"MS-ERR-013" in err
    assert more.read_bytes() == before


# ------------------------------------------------------------------ records (aggregate)


def record(ident: str, time: str, quantity: str, **more: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": ident, "workspaceID": "w", "universeID": "u", "subject": "s",
                           "recordedAt": time, "measurement": {"quantity": quantity,
                                                               "unit": "u"},
                           "dimensions": more.pop("dimensions", {}), "sourceEventID": "e"}
    row.update(more)
    return row


def test_aggregate_counts_each_record_identity_once(tmp_path: Path) -> None:
    """MS-ING-020: an identical repeat (meteredAt aside, the time and quantity by value, the
    dimensions in any order) is dropped and counted, one with other content is a
    record-conflict; the reference's summary names both."""
    rows: list[bytes | str | dict[str, Any]] = [
        record("r1", "2024-03-10T08:00:00Z", "1.50", dimensions={"a": "1", "b": "2"}),
        record("r1", "2024-03-10T09:00:00+01:00", "1.5", meteredAt="2024-03-11T00:00:00Z",
               dimensions={"b": "2", "a": "1"}),
        record("r1", "2024-03-10T08:00:00Z", "1.6", dimensions={"a": "1", "b": "2"}),
        record("r2", "2024-03-10T08:00:00Z", "2"),
        '{"id":"r2","workspaceID":"w","universeID":"u","subject":"s","recordedAt":"2024-03-10T08:00:00Z","measurement":{"quantity":"2e0","unit":"u"},"dimensions":{},"sourceEventID":"e"}',
        record("r2", "2024-03-10T08:00:00Z", "2", workspaceID="w2"),
        record("r3", "2024-03-10T08:00:00Z", "x"),
        record("r3", "2024-03-10T08:00:00Z", "3"),
        record("r3", "2024-03-10T08:00:00.000000001Z", "3"),
        record("r4", "2024-03-10T08:00:00Z", "4", meteredAt="2024-02-30T00:00:00Z"),
        '{"id":"r5","workspaceID":"w","universeID":"u","subject":"s","recordedAt":"2024-03-10T08:00:00Z","measurement":{"quantity":"5","unit":"u","extra":"x"},"dimensions":{},"sourceEventID":"e"}',
    ]
    records = lines(tmp_path / "r.ndjson", rows)
    for aggregation in ("sum", "count", "latest"):
        request = write(tmp_path / "q.json", tumbling(aggregation, "hour", "UTC",
                                                      "2024-03-10T07:00:00Z",
                                                      "2024-03-10T10:00:00Z"))
        status, _, err = assert_same("aggregate", [records], "--request", request)
        assert status == 1 and b"duplicates dropped" in err and b"record-conflict" in err


# ------------------------------------------------------------------ several inputs, Parquet


@pytest.mark.parametrize("odd", [
    _e("bad-utf8", subject="s\udcff"),  # DuckDB's reader refuses the file: read the slow way
    _e("enc-surrogate", subject="s\udced\udca0\udc80"),
    b"{" + b'"pad":"' + b"x" * 1_048_600 + b'"}',  # read, measured, too long: the slow way
    b"\xef\xbb",  # a file that starts like a byte-order mark
])
def test_a_file_with_one_odd_line_is_read_as_the_reference_reads_it(odd: bytes,
                                                                     tmp_path: Path) -> None:
    """Each way a file can fail the fast read alone, between good lines: the same readings,
    report and line numbers as the reference."""
    good = [_e(f"g{i}", props=f'{{"q":"{i}","region":"eu"}}') for i in range(4)]
    rows = [odd, *good] if odd.startswith(b"\xef") else [*good[:2], odd, *good[2:]]
    events = lines(tmp_path / "e.ndjson", rows)
    config = write(tmp_path / "c.json", CONFIG)
    request = write(tmp_path / "r.json", tumbling("sum", "day", "UTC", "2024-03-10T00:00:00Z",
                                                  "2024-03-11T00:00:00Z"))
    status, out, err = assert_same("run", [events], "--config", config, "--request", request)
    assert status == 1 and b'"quantity":"6"' in out and err.count(b'"line":') == 1


def test_a_directory_of_parquet_files_numbers_rows_in_file_name_order(tmp_path: Path) -> None:
    """Rows are numbered file by file in name order, then row order (each file's row count
    from its metadata): the bad rows' line numbers are those of the reference reading the
    files' rows concatenated in that order."""
    con = duckdb.connect()
    con.execute("CREATE TABLE ev (id VARCHAR, workspaceID VARCHAR, universeID VARCHAR, "
                "type VARCHAR, subject VARCHAR, time VARCHAR, "
                "properties MAP(VARCHAR, VARCHAR))")
    directory = tmp_path / "events"
    (directory / "nested").mkdir(parents=True)
    files = {"b.parquet": [("b1", T, "2"), ("b-bad", "2024-02-30T00:00:00Z", "1")],
             "a.parquet": [("a1", T, "1"), ("a-bad", T, "x"), ("a3", T, "3")],
             "nested/c.parquet": [("c1", T, "5")]}
    for name, rows in files.items():
        con.execute("DELETE FROM ev")
        for ident, time, quantity in rows:
            con.execute("INSERT INTO ev VALUES (?, 'w', 'u', 't', 's', ?, MAP {'q': ?})",
                        [ident, time, quantity])
        con.execute(f"COPY ev TO '{directory / name}' (FORMAT parquet)")
    in_order = [row for name in ("a.parquet", "b.parquet", "nested/c.parquet")
                for row in files[name]]
    as_ndjson = lines(tmp_path / "all.ndjson", [
        _e(ident, time, f'{{"q":"{quantity}"}}') for ident, time, quantity in in_order])
    config = write(tmp_path / "c.json", CONFIG)
    request = write(tmp_path / "r.json", tumbling("sum", "day", "UTC", "2024-03-10T00:00:00Z",
                                                  "2024-03-11T00:00:00Z"))
    reference = call(["run", "--config", config, "--request", request, as_ndjson])
    engine = call(["run", "--engine", "duckdb", "--config", config, "--request", request,
                   directory])
    assert engine == reference, engine[2].decode()
    assert b'"line":2}' in reference[2] and b'"line":5}' in reference[2]
    assert b'"quantity":"11"' in reference[1]


def test_several_inputs_number_on_and_parquet_round_trips(tmp_path: Path) -> None:
    """Two NDJSON inputs are numbered as one concatenated file (the reference reads the
    concatenation); the same events as Parquet (sources.py's layout) give the same readings;
    --parquet writes the readings field for field."""
    first, second = HOSTILE[:14], HOSTILE[14:30]
    a = lines(tmp_path / "a.ndjson", first)
    b = lines(tmp_path / "b.ndjson", second)
    both_files = lines(tmp_path / "ab.ndjson", first + second)
    config = write(tmp_path / "c.json", CONFIG)
    request = write(tmp_path / "r.json", tumbling("sum", "day", "UTC", "2024-03-10T00:00:00Z",
                                                  "2024-03-11T00:00:00Z", groupBy=["region"]))
    reference = call(["run", "--config", config, "--request", request, both_files])
    engine = call(["run", "--engine", "duckdb", "--config", config, "--request", request, a, b])
    assert engine == reference

    con = duckdb.connect()
    good = [json.loads(row) for row in HOSTILE[:1] + HOSTILE[-1:]]
    good.append({**good[0], "id": "null-id", "properties": None})
    good[-1]["id"] = None
    con.execute("CREATE TABLE ev (id VARCHAR, workspaceID VARCHAR, universeID VARCHAR, "
                "type VARCHAR, subject VARCHAR, time VARCHAR, "
                "properties MAP(VARCHAR, VARCHAR))")
    for row in good:
        props = row.get("properties")
        con.execute("INSERT INTO ev VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [row["id"], row["workspaceID"], row["universeID"], row["type"],
                     row["subject"], row["time"], props])
    parquet = tmp_path / "ev.parquet"
    con.execute(f"COPY ev TO '{parquet}' (FORMAT parquet)")
    as_ndjson = lines(tmp_path / "good.ndjson", [
        {k: v for k, v in row.items() if v is not None} for row in good])
    reference = call(["run", "--config", config, "--request", request, as_ndjson])
    engine = call(["run", "--engine", "duckdb", "--config", config, "--request", request,
                   parquet])
    assert engine == reference

    out = tmp_path / "readings.parquet"
    status, stdout, _ = call(["run", "--engine", "duckdb", "--parquet", out, "--config",
                              config, "--request", request, as_ndjson])
    assert status == reference[0] == 1 and not stdout
    columns = [d[0] for d in con.execute(f"SELECT * FROM '{out}'").description]
    read_back = [dict(zip(columns, row, strict=True))
                 for row in con.execute(f"SELECT * FROM '{out}'").fetchall()]
    expected = [json.loads(line) for line in reference[1].splitlines()]
    assert [{**r, "group": dict(r["group"])} for r in read_back] == expected


def test_a_table_of_records_and_a_wrong_layout(tmp_path: Path) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE recs (id VARCHAR, workspaceID VARCHAR, universeID VARCHAR, "
                "subject VARCHAR, recordedAt VARCHAR, measurement STRUCT(quantity VARCHAR, "
                "unit VARCHAR), dimensions MAP(VARCHAR, VARCHAR), sourceEventID VARCHAR)")
    rows = [record("r1", "2024-03-10T08:00:00Z", "1.5", dimensions={"region": "eu"}),
            record("r2", "2024-03-10T08:30:00+01:00", "2e1"),
            record("r3", "2024-03-10T09:00:00Z", "3", dimensions={"region": None}),
            record("r4", "2024-03-10T09:00:00Z", "4")]
    rows[3]["measurement"]["quantity"] = None
    for row in rows:
        con.execute("INSERT INTO recs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
            row["id"], row["workspaceID"], row["universeID"], row["subject"],
            row["recordedAt"], row["measurement"], row["dimensions"], row["sourceEventID"]])
    request = decode_request(json.dumps(tumbling(
        "sum", "hour", "UTC", "2024-03-10T07:00:00Z", "2024-03-10T10:00:00Z",
        groupBy=["region"])).encode())
    with DuckDBEngine(threads=1, connection=con) as engine:
        result = engine.aggregate(request, [Table("recs")])
        produced = b"".join(result.lines())
        problems = [(n, [(p.code, p.path) for p in e.problems]) for n, e in result.problems]
    as_ndjson = lines(tmp_path / "r.ndjson", [
        {**r, "measurement": {k: v for k, v in r["measurement"].items() if v is not None}}
        for r in rows])
    _, reference, err = call(["aggregate", "--request", write(tmp_path / "q.json", tumbling(
        "sum", "hour", "UTC", "2024-03-10T07:00:00Z", "2024-03-10T10:00:00Z",
        groupBy=["region"])), as_ndjson])
    assert produced == reference
    assert [(p["line"], p["code"], p["path"]) for p in map(json.loads, err.splitlines()[:-1])] \
        == [(n, code, path) for n, found in problems for code, path in found]
    assert problems == [(3, [("wrong-type", "/dimensions/region")]),
                        (4, [("missing-field", "/measurement/quantity")])]
    con.execute("CREATE TABLE odd (id VARCHAR, time TIMESTAMP)")
    with DuckDBEngine(connection=con) as engine, pytest.raises(LayoutError, match="time"):
        engine.run(decode_config(json.dumps(CONFIG).encode()), request, [Table("odd")])


def test_run_counts_each_event_identity_once(tmp_path: Path) -> None:
    """MS-ING-021 as `meterspec run` applies it: an identity is seen once its event decodes
    with a valid identity and time (whatever its measurements: a rejected measurement still
    makes later copies repeats), a copy spelt otherwise is a duplicate, a copy with other
    content an event-conflict (its own problems not reported), another workspace another
    identity; the engine finds repeats among its own rows and the reference's alike."""
    rows: list[bytes | str | dict[str, Any]] = [
        _e("a", props='{"q":"1"}'),
        _e("a", "2024-03-10T09:00:00+01:00", '{"q":"1.0"}'),  # by value: a duplicate
        b'{"properties":{"q":"1"},"time":"2024-03-10T08:00:00Z","id":"a","workspaceID":"w",'
        b'"universeID":"u","type":"t","subject":"s"}',
        _e("a", props='{"q":"2"}'),  # conflict
        _e("a", props='{"q":"x"}'),  # conflict, not invalid-quantity
        _e("b", props='{"q":"x"}'),  # rejected, but seen
        _e("b", props='{"q":"x"}'),  # a duplicate of a rejected event
        _e("b", props='{"q":"3"}'),  # a conflict
        _e("c", "2024-02-30T00:00:00Z", '{"q":"4"}'),  # not seen
        _e("c", props='{"q":"4"}'),
        _e("d", props='{"region":"eu"}', kind="x"),  # no measurement takes it: still seen
        _e("d", props='{"region":"us"}', kind="x"),
        _e("a", props='{"q":"2"}').replace(b'"w"', b'"w2"', 1),
    ]
    events = lines(tmp_path / "e.ndjson", rows)
    for aggregation in ("sum", "count"):
        request = write(tmp_path / "r.json", tumbling(aggregation, "day", "UTC",
                                                      "2024-03-10T00:00:00Z",
                                                      "2024-03-11T00:00:00Z"))
        status, _, err = assert_same("run", [events], "--config",
                                     write(tmp_path / "c.json", CONFIG), "--request", request)
        assert status == 1 and b"duplicates dropped" in err and b"event-conflict" in err


def test_repeated_identities_across_parquet_inputs(tmp_path: Path) -> None:
    """MS-ING-021 over typed rows: two inputs, each a directory of two files, repeating
    identities within a file, across files and across inputs; a copy with the same
    properties in another order is a duplicate, other properties a conflict. The report and
    readings are the reference's over the rows concatenated in reading order."""
    con = duckdb.connect()
    con.execute("CREATE TABLE ev (id VARCHAR, workspaceID VARCHAR, universeID VARCHAR, "
                "type VARCHAR, subject VARCHAR, time VARCHAR, "
                "properties MAP(VARCHAR, VARCHAR))")
    same = {"q": "1", "region": "eu"}
    inputs = {
        "one": {"a.parquet": [("a", same), ("b", {"q": "2"}), ("a", {"region": "eu", "q": "1"})],
                "b.parquet": [("c", {"q": "3"}), ("b", {"q": "9"})]},
        "two": {"a.parquet": [("a", {"q": "1"}), ("d", {"q": "4"})],
                "b.parquet": [("c", {"q": "3"}), ("e", {})]},
    }
    ordered = []
    for folder, files in inputs.items():
        (tmp_path / folder).mkdir()
        for name, rows in files.items():
            con.execute("DELETE FROM ev")
            for ident, props in rows:
                con.execute("INSERT INTO ev VALUES (?, 'w', 'u', 't', 's', ?, ?)",
                            [ident, T, props])
                ordered.append(_e(ident, props=json.dumps(props, separators=(",", ":"))))
            con.execute(f"COPY ev TO '{tmp_path / folder / name}' (FORMAT parquet)")
    as_ndjson = lines(tmp_path / "all.ndjson", ordered)
    config = write(tmp_path / "c.json", CONFIG)
    request = write(tmp_path / "r.json", tumbling("sum", "day", "UTC", "2024-03-10T00:00:00Z",
                                                  "2024-03-11T00:00:00Z"))
    reference = call(["run", "--config", config, "--request", request, as_ndjson])
    engine = call(["run", "--engine", "duckdb", "--config", config, "--request", request,
                   tmp_path / "one", tmp_path / "two"])
    assert engine == reference, engine[2].decode()
    assert reference[2].count(b"event-conflict") == 2  # b at row 5, a at row 6
    assert b"2 duplicates dropped" in reference[2]  # a at row 3, c at row 8


# ------------------------------------------------------------------ the conformance suite


def test_the_metering_and_aggregation_areas_pass() -> None:
    """`meterspec conformance run --impl python:meterspec.engines.duckdb`, as the runner
    judges it: every case of the metering and aggregation areas passes."""
    from meterspec.conformance.cases import load_cases, select
    from meterspec.conformance.runner import IN_PROCESS, Runner

    root = Path(__file__).resolve().parent.parent / "conformance"
    cases = select(load_cases(root), areas=["metering", "aggregation"])
    run = Runner(IN_PROCESS["python:meterspec.engines.duckdb"]()).run(cases)
    failed = [(o.case.id, o.reason) for o in run.outcomes if o.result != "passed"]
    assert not failed and len(run.outcomes) == len(cases) > 200
