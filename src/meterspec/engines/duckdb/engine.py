"""The DuckDB backend: one job (events or records in, readings or records out) run through
the plan's stages in an in-process DuckDB connection.

DuckDB does the heavy work, in parallel where it can: reading the lines and the JSON,
screening rows by SQL predicates, metering, grouping, exact sums and integrals, ids (SHA-256)
and the output text, written by COPY. Python does the rest: the windows (the reference's),
the rows DuckDB flagged (described by the reference: meterspec.engines.flagged), the record-
stream identity check's messages, and the groups past 128 bits (meterspec.engines.fallback).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb
import msgspec

from meterspec.contracts import AggregationRequest, MeteringConfig
from meterspec.engines import fallback, ndjson
from meterspec.engines.compiler import compile_plan
from meterspec.engines.duckdb import aggregate, output, records, repeats, twa
from meterspec.engines.duckdb.screen import LINE_READER, Screen
from meterspec.engines.duckdb.sql import MACROS
from meterspec.engines.flagged import Measured, describe_event, describe_record
from meterspec.engines.ndjson import Flag
from meterspec.engines.numbers import Digits, representation, twa_bounds
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
)
from meterspec.engines.streams import event_conflict, record_conflict
from meterspec.errors import MeterspecError
from meterspec.metering import Meter
from meterspec.timestamps import format_timestamp, parse_timestamp

_ENCODER = msgspec.json.Encoder()
COPY_OPTIONS = "(FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER chr(1))"


class LayoutError(ValueError):
    """A typed input whose columns are not the layout of meterspec.engines.sources."""


class DuckDBEngine:
    """Runs jobs in one DuckDB connection (a fresh in-memory one unless given) with
    `threads` threads (DuckDB's default: one per core). Temporary files go to `workdir`
    (a new temporary directory unless given), which close() removes if it made it."""

    def __init__(self, threads: int | None = None,
                 connection: duckdb.DuckDBPyConnection | None = None,
                 workdir: str | None = None) -> None:
        self.con = connection if connection is not None else duckdb.connect()
        if threads is not None:
            self.con.execute(f"SET threads = {int(threads)}")
        self.con.execute("SET preserve_insertion_order = true")
        self.con.execute(MACROS)
        self._deferred: list[str] = []  # per job: the typed inputs' `p`, filled when needed
        self._own_dir = workdir is None
        self.workdir = workdir if workdir is not None else tempfile.mkdtemp(prefix="meterspec-")

    def close(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> DuckDBEngine:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------ jobs

    def run(self, config: MeteringConfig, request: AggregationRequest,
            sources: Sequence[Source], *, dedupe: bool = True,
            parquet: str | None = None) -> Result:
        """Events -> readings (`meterspec run`); with `dedupe`, each event identity counts
        once (MS-ING-021), as the command does. Raises MeterspecError for an unusable config
        or request, LayoutError for a typed input of another layout."""
        return self._job(compile_plan("events", config, request), Meter(config), sources,
                         dedupe=dedupe, parquet=parquet)

    def aggregate(self, request: AggregationRequest, sources: Sequence[Source], *,
                  dedupe: bool = True, parquet: str | None = None) -> Result:
        """Records -> readings (`meterspec aggregate`); with `dedupe`, each record identity
        counts once (MS-ING-020), as the command does."""
        return self._job(compile_plan("records", None, request), None, sources,
                         dedupe=dedupe, parquet=parquet)

    def meter(self, config: MeteringConfig, sources: Sequence[Source],
              metered_at: str | None = None) -> Result:
        """Events -> records (the `meter` operation: every event metered, none dropped);
        `metered_at` stamps meteredAt."""
        stamp = None if metered_at is None else format_timestamp(
            parse_timestamp(metered_at, "/meteredAt"))
        return self._job(compile_plan("events", config, None), Meter(config), sources,
                         dedupe=False, metered_at=stamp)

    def _job(self, plan: Plan, meter: Meter | None, sources: Sequence[Source], *,
             dedupe: bool, parquet: str | None = None,
             metered_at: str | None = None) -> Result:
        con = self.con
        if plan.aggregation is not None:
            self._windows(plan)
        screen = Screen(plan, keep_object=plan.aggregation is None or dedupe)
        self._deferred = []
        con.execute(screen.create())
        pending: list[tuple[int, bytes | str | None]] = []
        first = 1
        for source in sources:
            first = self._screen(screen, source, first, pending)
        pending += con.execute("SELECT n, flagged FROM ev WHERE NOT ok").fetchall()
        problems, staged, seen = self._describe(plan, meter, pending)
        con.execute(records.create_staged(plan))
        self._load(records.load_staged(plan), staged, "staged")
        con.execute(repeats.create_staged())
        self._load(repeats.load_staged(), seen, "seen")
        con.execute(records.create_all(plan, screen))
        duplicates = self._repeats(plan, problems) if dedupe else 0
        con.execute(records.create_kept(dedupe and _scalar(con, "SELECT count(*) FROM later")
                                        > 0))
        found = sorted(problems.items())
        target = os.path.join(self.workdir, "output.ndjson")
        if plan.aggregation is None:
            query = output.record_lines(plan.metering, metered_at)
            count = self._copy(query, target)
            return Result(target, count, found, duplicates)
        self._aggregate(plan)
        if parquet is not None:
            *prepare_steps, query = output.reading_rows(plan.aggregation)
            for statement in prepare_steps:
                con.execute(statement)
            con.execute(f"COPY ({query}) TO '{_path(parquet)}' (FORMAT parquet)")
            count = _scalar(con, "SELECT count(*) FROM gout CROSS JOIN wins")
            return Result(parquet, count, found, duplicates)
        *prepare_steps, query = output.reading_lines(plan.aggregation)
        for statement in prepare_steps:
            con.execute(statement)
        count = self._copy(query, target)
        return Result(target, count, found, duplicates)

    def _load(self, statement: str, rows: list[dict[str, Any]], name: str) -> None:
        """Stage rows the reference described, through a file DuckDB reads."""
        if not rows:
            return
        path = os.path.join(self.workdir, f"{name}.ndjson")
        with open(path, "wb") as out:
            for row in rows:
                out.write(_ENCODER.encode(row) + b"\n")
        self.con.execute(statement, [path])

    # ------------------------------------------------------------------ stages

    def _windows(self, plan: Plan) -> None:
        """Tables `wins` (wi, first, last, lo, hi, st, et, wjson, wenc) and `segs` (j, lo,
        hi, covered), loaded from the plan's rows."""
        assert plan.aggregation is not None
        windows = plan.aggregation.windows
        path = os.path.join(self.workdir, "windows.ndjson")
        with open(path, "wb") as out:
            for row in windows.rows:
                out.write(_ENCODER.encode({
                    "wi": row.index, "first": row.first, "last": row.last,
                    "lo": str(row.start), "hi": str(row.end), "st": row.start_text,
                    "et": row.end_text, "wjson": row.json, "wenc": row.id_fields}) + b"\n")
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE wins AS SELECT wi, first, last, lo::HUGEINT AS lo, "
            "hi::HUGEINT AS hi, st, et, wjson, wenc FROM read_json(?, format = "
            "'newline_delimited', columns = {wi: 'BIGINT', first: 'BIGINT', last: 'BIGINT', "
            "lo: 'VARCHAR', hi: 'VARCHAR', st: 'VARCHAR', et: 'VARCHAR', wjson: 'VARCHAR', "
            "wenc: 'VARCHAR'})", [path])
        segments = os.path.join(self.workdir, "segments.ndjson")
        with open(segments, "wb") as out:
            for j, covered in enumerate(windows.covered):
                out.write(_ENCODER.encode({"j": j, "lo": str(windows.bounds[j]),
                                           "hi": str(windows.bounds[j + 1]),
                                           "covered": covered}) + b"\n")
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE segs AS SELECT j, lo::HUGEINT AS lo, hi::HUGEINT AS "
            "hi, covered FROM read_json(?, format = 'newline_delimited', columns = {j: "
            "'BIGINT', lo: 'VARCHAR', hi: 'VARCHAR', covered: 'BOOLEAN'}) ORDER BY j",
            [segments])

    def _screen(self, screen: Screen, source: Source, first: int,
                pending: list[tuple[int, bytes | str | None]]) -> int:
        """Screen one input into `ev`; rows Python must describe without DuckDB go to
        `pending`. Returns the number of the next input's first row."""
        con = self.con

        def flag(number: int, line: bytes | None) -> None:
            pending.append((number, line))

        if isinstance(source, Documents):
            path = os.path.join(self.workdir, f"documents-{first}.ndjson")
            with open(path, "wb") as out:
                for index, text in enumerate(source.texts):
                    if b"\n" in text or b"\r" in text:
                        flag(first + index, text)
                        out.write(b"\n")
                    else:
                        out.write(text + b"\n")
            source = NdjsonFile(path)
        if isinstance(source, NdjsonFile):
            lines = self._lines(source.path, first, flag)
            con.execute(screen.ndjson(first))
            con.execute("DROP TABLE raw")
            return first + lines
        if isinstance(source, ParquetFiles):
            path = source.path
            if os.path.isdir(path):
                path = os.path.join(path, "**", "*.parquet")
            relation = f"read_parquet('{_path(path)}', filename = true, file_row_number = true)"
            columns = self._layout(f"SELECT * EXCLUDE (filename, file_row_number) FROM "
                                   f"{relation}", screen.events, source.path)
            relation, number, rows = self._numbered(path, relation, first)
        else:
            relation = _identifier(source.name)
            columns = self._layout(f"SELECT * FROM {relation}", screen.events, source.name)
            number = f"rowid + {first}"
            rows = None
        if screen.defer_object:
            self._deferred.append(screen.objects(relation, number, columns,
                                                 repeats.REPEATED_ROWS))
        before = _scalar(con, "SELECT count(*) FROM ev")
        con.execute(screen.typed(relation, number, columns))
        read = _scalar(con, "SELECT count(*) FROM ev") - before
        if rows is not None and read != rows:  # never a row lost or doubled silently
            raise RuntimeError(f"{path}: read {read} rows, its metadata says {rows}")
        return first + read

    def _lines(self, path: str, first: int, flag: Flag) -> int:
        """Table `raw`: the file's lines, read by DuckDB as they are when the file is plain
        (meterspec.engines.ndjson: DuckDB's reader refuses invalid UTF-8 itself, and the
        longest line is measured), else from a plain copy (ndjson.prepare). Returns the
        number of lines."""
        create = f"CREATE OR REPLACE TEMP TABLE raw AS SELECT line FROM {LINE_READER}"
        if ndjson.looks_plain(path):
            try:
                self.con.execute(create, [path])
            except duckdb.InvalidInputException:
                pass
            else:
                if _scalar(self.con, "SELECT max(strlen(line)) FROM raw") <= \
                        ndjson.MAX_LINE_BYTES:
                    return _scalar(self.con, "SELECT count(*) FROM raw")
        prepared = ndjson.prepare(path, self.workdir, flag, first)
        self.con.execute(create, [prepared.path])
        return prepared.lines

    def _numbered(self, path: str, relation: str, first: int) -> tuple[str, str, int]:
        """Parquet rows numbered from `first` in file-name order, then row order in a file
        (no sort: each file's first number comes from its metadata's row count). Returns
        the relation, the SQL of a row's number and the number of rows."""
        files = self.con.execute("SELECT file_name, num_rows FROM parquet_file_metadata(?) "
                                 "ORDER BY file_name", [path]).fetchall()
        rows = sum(int(count) for _, count in files)
        if len(files) <= 1:
            return relation, f"{first} + file_row_number", rows
        table = f"pfiles_{first}"  # one per input: a deferred query may read it later
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {table} (filename VARCHAR, "
                         "base BIGINT)")
        base = first
        for name, count in files:
            self.con.execute(f"INSERT INTO {table} VALUES (?, ?)", [name, base])
            base += int(count)
        return (f"(SELECT r.*, f.base FROM {relation} r JOIN {table} f ON f.filename = "
                "r.filename)", "base + file_row_number", rows)

    def _layout(self, query: str, events: bool, name: str) -> set[str]:
        """The columns of a typed input, or LayoutError naming what differs."""
        expected = EVENT_COLUMNS if events else RECORD_COLUMNS
        found = {row[0]: row[1] for row in self.con.execute(f"DESCRIBE {query}").fetchall()}
        wrong = [f"{column} is {found[column]}, not {kind}" for column, kind in
                 expected.items() if column in found and _type(found[column]) != _type(kind)]
        missing = [c for c in expected if c not in found and c not in OPTIONAL_COLUMNS]
        extra = [c for c in found if c not in expected]
        if wrong or missing or extra:
            parts = wrong + [f"missing {', '.join(missing)}"] * bool(missing) \
                + [f"unknown {', '.join(extra)}"] * bool(extra)
            raise LayoutError(f"{name} is not in the {'event' if events else 'record'} "
                              f"layout (docs/engines.md): {'; '.join(parts)}")
        return set(found)

    def _describe(self, plan: Plan, meter: Meter | None,
                  pending: list[tuple[int, bytes | str | None]]
                  ) -> tuple[dict[int, MeterspecError], list[dict[str, Any]],
                             list[dict[str, Any]]]:
        """The reference's word on every flagged row: problems, or records to stage; and
        the flagged events that are identities seen (MS-ING-021)."""
        problems: dict[int, MeterspecError] = {}
        staged: list[dict[str, Any]] = []
        seen: list[dict[str, Any]] = []
        needed = records.dimensions(plan)
        for number, text in pending:
            data = _bytes(text)
            if meter is not None:
                described, event = describe_event(meter, number, data)
                if event is not None:
                    seen.append({"n": number, "w": event.workspace, "u": event.universe,
                                 "id": event.id, "type": event.type, "s": event.subject,
                                 "t": str(event.instant),
                                 "p": _ENCODER.encode(event.properties).decode()})
            else:
                described = describe_record(number, data)
            if isinstance(described, MeterspecError):
                problems[number] = described
                continue
            for rule, measured in zip(_rules(plan, meter, described), described, strict=True):
                staged.append(_staged(plan, measured, rule, needed))
        return problems, staged, seen

    def _repeats(self, plan: Plan, problems: dict[int, MeterspecError]) -> int:
        """Each identity once (MS-ING-020/021): the later rows of a repeated identity are
        dropped, counted when they repeat the first's content, rejected when they do not
        (their own problems, if any, are not reported: the reference checks identity first).
        Returns the duplicates."""
        statements = repeats.statements(plan)
        for statement in statements[:3]:
            self.con.execute(statement)
        if self._deferred and _scalar(self.con, "SELECT count(*) FROM firsts"):
            for query in self._deferred:
                self.con.execute(query)
        for statement in statements[3:]:
            self.con.execute(statement)
        shown = "type, s, t, p" if plan.input == "events" else "NULL, NULL, NULL, NULL"
        rows = self.con.execute(f"SELECT n, same, w, u, id, {shown} FROM later").fetchall()
        duplicates = 0
        for number, same, workspace, universe, ident, kind, subject, instant, props in rows:
            problems.pop(number, None)
            if same:
                duplicates += 1
            elif plan.input == "events":
                problems[number] = event_conflict(workspace, universe, ident, kind, subject,
                                                  int(instant), json.loads(props or "{}"))
            else:
                problems[number] = record_conflict(workspace, universe, ident)
        return duplicates

    def _aggregate(self, plan: Plan) -> None:
        """Fill `grp` and `res` (the exact representation chosen from the data)."""
        aggregation = plan.aggregation
        assert aggregation is not None
        con = self.con
        windows = aggregation.windows
        relevant = (f"t < '{windows.end}'::HUGEINT" if aggregation.weighted else
                    f"t >= '{windows.start}'::HUGEINT AND t < '{windows.end}'::HUGEINT")
        integer, fraction = con.execute(
            "SELECT coalesce(max(ms_il(q)), 0), coalesce(max(ms_fl(q)), 0) "
            f"FROM recs WHERE {relevant}").fetchall()[0]
        if not aggregation.weighted:
            number = representation(Digits(integer, fraction))
            for statement in aggregate.statements(aggregation, number):
                con.execute(statement)
            return
        bounds = twa_bounds(fraction, aggregation.scale, windows.end - windows.start,
                            windows.longest)
        for statement in twa.statements(aggregation, bounds):
            con.execute(statement)
        self._fallback(plan)

    def _fallback(self, plan: Plan) -> None:
        """The time-weighted groups past 128 bits, exact in Python, into `res`."""
        aggregation = plan.aggregation
        assert aggregation is not None
        con = self.con
        if not _scalar(con, "SELECT count(*) FROM big"):
            return
        keys = aggregate.group_keys(aggregation)
        joined = " AND ".join(f"r.{k} IS NOT DISTINCT FROM g.{k}" for k in keys)
        end = aggregation.windows.end
        rows = con.execute(
            f"SELECT g.gi, r.t, r.q FROM recs r JOIN grp g ON {joined} "
            f"WHERE g.gi IN (SELECT gi FROM big) AND r.t < '{end}'::HUGEINT "
            "ORDER BY g.gi").fetchall()
        spans = [(row.start, row.end) for row in aggregation.windows.rows]
        path = os.path.join(self.workdir, "fallback.ndjson")
        with open(path, "wb") as out:
            for group, points in _by_group(rows):
                results = fallback.time_weighted(points, aggregation.windows.start, spans,
                                                 aggregation.scale)
                for index, (text, count) in enumerate(results):
                    out.write(_ENCODER.encode({"gi": group, "wi": index, "qt": text,
                                               "c": count}) + b"\n")
        con.execute("INSERT INTO res SELECT gi, wi, qt, c FROM read_json(?, format = "
                    "'newline_delimited', columns = {gi: 'BIGINT', wi: 'BIGINT', "
                    "qt: 'VARCHAR', c: 'BIGINT'})", [path])

    def _copy(self, query: str, target: str) -> int:
        """Write a query's one VARCHAR column as lines (DuckDB's writer, in parallel, order
        kept); the number of lines."""
        self.con.execute(f"COPY ({query}) TO '{_path(target)}' {COPY_OPTIONS}")
        with open(target, "rb") as written:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: written.read(1 << 20), b""))


# ---------------------------------------------------------------------- helpers

def _scalar(con: duckdb.DuckDBPyConnection, query: str) -> int:
    row = con.execute(query).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def _path(path: str) -> str:
    return path.replace("'", "''")


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _type(name: str) -> str:
    return name.replace(" ", "").upper()


def _bytes(text: bytes | str | None) -> bytes | None:
    """A flagged row's text as the bytes the reference reads: an NDJSON line as it was, a
    typed row (marked by a leading NUL, which no screened line holds) as its document."""
    if text is None or isinstance(text, bytes):
        return text
    if text.startswith("\x00"):
        return _typed_document(text[1:])
    return text.encode()


def _typed_document(text: str) -> bytes:
    """A typed row (DuckDB's to_json of it) as the EventPayload or MeterRecord it stands
    for: a NULL member is absent, also inside `measurement`; a NULL map value stays null."""
    document = {k: v for k, v in json.loads(text).items() if v is not None}
    if isinstance(document.get("measurement"), dict):
        document["measurement"] = {k: v for k, v in document["measurement"].items()
                                   if v is not None}
    return _ENCODER.encode(document)


def _rules(plan: Plan, meter: Meter | None, described: list[Measured]) -> list[int]:
    """The rule index of each of an event's measurements (config order, MS-MET-007)."""
    if meter is None or plan.metering is None:
        return [0] * len(described)
    by_source = {(rule.unit, rule.source): rule.index for rule in plan.metering.rules}
    return [by_source[(m.unit, m.source)] for m in described]


def _staged(plan: Plan, measured: Measured, rule: int, needed: tuple[str, ...]
            ) -> dict[str, Any]:
    """One described record as a staging row (records.STAGED's columns)."""
    dims = measured.dimensions
    return {"n": measured.line, "rule": rule, "w": measured.workspace, "u": measured.universe,
            "s": measured.subject, "unit": measured.unit, "t": str(measured.instant),
            "q": measured.quantity, "d": [dims.get(name) for name in needed],
            "eid": measured.event_id, "src": measured.source or None,
            "rid": measured.record_id or None, "p": _ENCODER.encode(dims).decode()}


def _by_group(rows: list[tuple[int, int, str]]) -> Iterator[tuple[int, list[tuple[int, str]]]]:
    group: int | None = None
    points: list[tuple[int, str]] = []
    for gi, instant, text in rows:
        if gi != group and group is not None:
            yield group, points
            points = []
        group = gi
        points.append((int(instant), text))
    if group is not None:
        yield group, points
