"""meterspec.store on both backends (DuckDB file, PostgreSQL): ingestion gives exactly the
outcomes and seen state of meterspec.ingestion (MS-ING-003..010), the effective events are
apply_corrections' (MS-ING-013..019), the conformance suite's ingest and apply-corrections
cases pass through a store, an export gives back the ingested lines byte for byte, and a store
of another schema version is migrated or refused, never misread."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_helpers import BACKENDS, ROOT, chunks_lines, line, reference, store_url

from meterspec.codec import decode_event
from meterspec.errors import MeterspecError
from meterspec.ingestion import EMPTY, apply_corrections, expire
from meterspec.store import open_store
from meterspec.store.base import Store, StoreError
from meterspec.store.batch import Batch
from meterspec.store.schema import LATEST, MIGRATIONS
from meterspec.timestamps import parse_timestamp


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request.param, request, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    opened = open_store(url)
    opened.require_current(create=True)
    yield opened
    opened.close()


def _batch(lines: list[bytes]) -> Batch:
    batch = Batch()
    for number, text in enumerate(lines, 1):
        batch.add(number, text)
    return batch


# ------------------------------------------------------------------ ingest == the reference

TIMES = ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-02T01:00:00+01:00",
         "2024-01-03T00:00:00.5Z", "2024-01-04T00:00:00Z"]
HORIZONS = ["2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"]
lines_drawn = st.builds(
    lambda ident, ws, time, calls, kind: line(
        f"e{ident}", workspaceID=ws, time=time, properties={"calls": calls}, type=kind),
    st.integers(0, 3), st.sampled_from(["acme", "globex"]), st.sampled_from(TIMES),
    st.sampled_from(["1", "2"]), st.sampled_from(["api_call", "api_call", "other"]))
corrections_drawn = st.builds(
    lambda ident, kind, target, subject, time: line(
        f"c{ident}", type=kind, subject=subject, time=time,
        properties={"meterspec.target": target, **({"calls": "7"} if "amend" in kind else {})}),
    st.integers(0, 2), st.sampled_from(["meterspec.retract", "meterspec.amend"]),
    st.sampled_from(["e0", "e1", "e2", "c0", "c1", "nothing"]),
    st.sampled_from(["customer:42", "customer:42", "customer:7"]), st.sampled_from(TIMES))
bad_lines = st.sampled_from([b"{", line(id=""), line(time="2024-13-01T00:00:00Z"),
                             line(type="meterspec.retract")])
steps = st.lists(st.one_of(
    st.lists(st.one_of(lines_drawn, lines_drawn, corrections_drawn, bad_lines), max_size=8),
    st.sampled_from(HORIZONS)), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
def test_ingest_gives_the_outcomes_and_state_of_the_reference(
        store: Store, plan: list[list[bytes] | str]) -> None:
    """MS-ING-003..010 through the store, batch after batch, with expiries between: every
    outcome, duplicate, conflict (both digests), late event and rejection, and the seen state
    (MS-ING-007) equal ingest()'s and expire()'s; the log is what they accepted, in order."""
    store.clear()
    state = EMPTY
    accepted: list[bytes] = []
    for step in plan:
        if isinstance(step, str):
            store.expire(parse_timestamp(step))
            state = expire(state, parse_timestamp(step))
            continue
        result = store.ingest(_batch(step), detail=True)
        expected, positions = reference(step, state)
        state = expected.state
        outcomes = ["rejected"] * len(step)
        for index, outcome in enumerate(expected.outcomes):
            outcomes[positions[index]] = outcome
        assert result.outcomes() == outcomes
        assert result.accepted == len(expected.accepted)
        assert result.duplicates == len(expected.duplicates)
        assert [(d.position, d.identity, d.digest.hex()) for d in result.duplicate_list or []] \
            == [(positions[d.position], d.identity, d.digest) for d in expected.duplicates]
        assert [(c.position, c.identity, c.accepted_digest.hex(),
                 c.conflicting_digest.hex()) for c in result.conflicts] == [
            (positions[c.position], c.identity, c.accepted_digest, c.conflicting_digest)
            for c in expected.conflicts]
        assert [(late.position, late.identity) for late in result.late] == [
            (positions[late.position], late.identity) for late in expected.late]
        assert store.seen_state() == state
        accepted += [step[positions[i]] for i, outcome in enumerate(expected.outcomes)
                     if outcome == "accepted"]
    assert chunks_lines(store.log_chunks()) == accepted
    _effective_agree(store, accepted)


def _effective_agree(store: Store, log: list[bytes]) -> None:
    """MS-ING-013..019: the store's effective events and corrections report are
    apply_corrections' on the same log (or both refuse it: MS-ING-019)."""
    events = [decode_event(text) for text in log]
    try:
        expected = apply_corrections(events)
    except MeterspecError as refused:
        with pytest.raises(MeterspecError) as caught:
            list(store.effective_chunks())
        assert {p.code for p in caught.value.problems} == {p.code for p in refused.problems}
        return
    assert [decode_event(text) for text in chunks_lines(store.effective_chunks())] == list(
        expected.effective)
    report = store.corrections_report()
    assert report.retracted == list(expected.retracted)
    assert report.amended == list(expected.amended)
    assert [(key, p.code, p.path) for key, p in report.ineffective] == [
        (issue.correction, issue.problem.code, issue.problem.path) for issue in expected.issues]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(lines_drawn, corrections_drawn,
                          corrections_drawn.map(lambda text: text.replace(
                              b'"meterspec.target"', b'"meterspec.targets"'))), max_size=14))
def test_a_log_written_as_it_is_has_the_reference_effective_events(
        store: Store, log: list[bytes]) -> None:
    """append_log keeps a log as written, malformed corrections included (conformance 3.7):
    identical repeats count once, and the effective events are apply_corrections'."""
    store.clear()
    first: dict[tuple[str, str, str], bytes] = {}
    kept: list[bytes] = []
    for text in log:
        event = decode_event(text)
        key = (event.workspace_id, event.universe_id, event.id)
        if key not in first:
            first[key] = text
            kept.append(text)
        elif decode_event(first[key]) != event:
            return  # two payloads for one identity: refused before the store (MS-ING-019)
    batch = Batch()
    for number, text in enumerate(log, 1):
        batch.add_logged(number, text)
    if batch.positions:
        store.append_log(batch)
    _effective_agree(store, kept)


# ------------------------------------------------------------------ the conformance suite

def test_the_conformance_ingestion_cases_pass_through_the_store(url: str) -> None:
    """INTERPRETING.md 3.6 and 3.7 with the store doing the work (python -m
    meterspec.store.adapter URL): every ingest and apply-corrections case of the suite, 100%."""
    from meterspec.conformance.cases import load_cases, load_suite, select
    from meterspec.conformance.data import default_root
    from meterspec.conformance.protocol import SubprocessAdapter
    from meterspec.conformance.runner import Runner

    cases = [case for case in select(load_cases(load_suite(default_root())))
             if case.operation in ("ingest", "apply-corrections")]
    assert len(cases) >= 57
    adapter = SubprocessAdapter([sys.executable, "-m", "meterspec.store.adapter", url], 60.0)
    run = Runner(adapter).run(cases)
    assert run.implementation["operations"] == ["apply-corrections", "ingest"]
    failed = [(o.case.id, o.result, o.reason) for o in run.outcomes if o.result != "passed"]
    assert failed == []
    assert len(run.outcomes) == len(cases)


# ------------------------------------------------------------------ export

ODD_LINES = [
    line("a"), b'{ "properties" : {"b":"2","a":"1"}, "time":"2024-01-15T11:30:00+01:00", '
    b'"subject":"s", "type":"t", "universeID":"u", "workspaceID":"w", "id":"b" }',
    line("\u00e9\u00e8 \U0001F600"), line("c", properties={"q": "tab\there \"quoted\" \\"}),
    line("d", properties={}), line("e", properties=None), line("f", subject="\u0000nul"),
]


def test_an_export_gives_back_exactly_the_lines_ingested(store: Store) -> None:
    """Byte for byte, whatever the spacing, key order, escapes or characters; duplicates,
    conflicts and rejected lines are not in the log."""
    extra = [line("a"), line("a", properties={"calls": "2"}), b"{"]
    store.ingest(_batch(ODD_LINES + extra))
    store.ingest(_batch(ODD_LINES))
    assert b"".join(store.log_chunks()) == b"".join(text + b"\n" for text in ODD_LINES)
    assert b"".join(store.effective_chunks()) == b"".join(store.log_chunks())


def test_a_parquet_export_holds_the_log(store: Store, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    store.ingest(_batch(ODD_LINES))
    written = store.export_parquet(str(tmp_path / "log.parquet"))
    table = pq.read_table(tmp_path / "log.parquet")
    assert written == table.num_rows == len(ODD_LINES)
    assert [text.encode() for text in table.column("payload").to_pylist()] == ODD_LINES
    assert table.column("id").to_pylist()[2] == "\u00e9\u00e8 \U0001F600"


# ------------------------------------------------------------------ closed invoices

def invoice_lines(late: bool = False) -> list[bytes]:
    """The invoices of examples/monthly-invoice, as `meterspec invoice` writes them; with the
    late events, acme's has the same id and other numbers."""
    from meterspec.codec import decode, decode_config, encode
    from meterspec.invoices import InvoiceRequest, build_invoices
    from meterspec.metering import Meter

    folder = ROOT / "examples" / "monthly-invoice"
    meter = Meter(decode_config((folder / "config.json").read_bytes()))
    names = ["events.ndjson", "late-events.ndjson"] if late else ["events.ndjson"]
    records = [r for name in names for text in (folder / name).read_bytes().splitlines()
               for r in meter.records(decode_event(text))]
    request = decode("invoice-request", (folder / "invoice-request.json").read_bytes(),
                     InvoiceRequest)
    return [encode(invoice) for invoice in build_invoices(request, records)]


def test_closed_invoices_are_recorded_once(store: Store) -> None:
    lines = invoice_lines()
    assert len(lines) == 2
    assert store.close_invoices(lines) == (len(lines), 0)
    assert store.close_invoices(lines) == (0, len(lines))
    assert chunks_lines(store.closed_invoice_chunks()) == lines
    rebuilt = invoice_lines(late=True)
    assert rebuilt[0] != lines[0] and json.loads(rebuilt[0])["id"] == json.loads(lines[0])["id"]
    with pytest.raises(StoreError, match="already closed with other content"):
        store.close_invoices(rebuilt)
    assert chunks_lines(store.closed_invoice_chunks()) == lines


# ------------------------------------------------------------------ consistency check

def test_check_finds_a_seen_index_that_disagrees_with_the_log(store: Store) -> None:
    store.ingest(_batch([line("a"), line("b")]))
    assert store.problems() == []
    store._begin()
    store._execute("DELETE FROM seen WHERE digest IN (SELECT digest FROM events WHERE "
                   "payload LIKE '%\"b\"%')")
    store._commit()
    assert store.problems() == ["1 logged events have no seen entry and are not expired"]


# ------------------------------------------------------------------ schema versions

def _old_store(url: str) -> None:
    """A store exactly as version 1 wrote it, by hand: its tables, its version row, and a
    log with an event, its retraction and an amended event, without any corrections index."""
    store = open_store(url)
    store._begin()
    if store.dialect == "postgres":
        store._execute(f"CREATE SCHEMA {store.schema}")  # type: ignore[attr-defined]
    for statement in MIGRATIONS[0].statements(store.dialect):
        store._execute(statement)
    store.insert_rows("schema_version", ("version", "applied_at", "meterspec"),
                      [(1, "2024-01-01T00:00:00Z", "0.0.1")])
    log = [line("a"), line("r", type="meterspec.retract", properties={
        "meterspec.target": "a"}), line("b"), line("m", type="meterspec.amend", properties={
            "meterspec.target": "b", "calls": "5"})]
    rows = []
    for seq, text in enumerate(log):
        event = decode_event(text)
        batch = _batch([text])
        names = (event.workspace_id, event.universe_id, event.id, event.type, event.subject)
        rows.append((seq, 1, *(store._ident(v) for v in names), parse_timestamp(event.time),
                     batch.digests[0], text.decode()))
    store.insert_rows("events", ("seq", "batch", "workspace_id", "universe_id", "id", "type",
                                 "subject", "time_ns", "digest", "payload"), rows)
    store.insert_rows("seen", ("workspace_id", "universe_id", "id", "digest", "time_ns"),
                      [(*row[2:5], row[8], row[7]) for row in rows])
    store._commit()
    store.close()


def test_an_old_store_is_refused_until_migrated_then_read_right(url: str) -> None:
    _old_store(url)
    store = open_store(url)
    assert store.version() == 1 < LATEST
    with pytest.raises(StoreError, match=r"schema version 1; .* `meterspec store migrate"):
        store.require_current()
    with pytest.raises(StoreError, match="schema version 1"):
        store.require_current(create=True)  # never set up over an old store
    assert store.migrate() == [2]
    store.require_current()
    assert store.counts()["corrections"] == 2  # backfilled from the log
    effective = chunks_lines(store.effective_chunks())
    assert [json.loads(text)["id"] for text in effective] == ["b"]
    assert json.loads(effective[0])["properties"] == {"calls": "5"}
    assert store.problems() == []
    assert store.migrate() == []
    store.close()


def test_a_newer_store_is_refused(store: Store) -> None:
    store.insert_rows("schema_version", ("version", "applied_at", "meterspec"),
                      [(LATEST + 1, "2030-01-01T00:00:00Z", "9.0.0")])
    with pytest.raises(StoreError, match=f"schema version {LATEST + 1}, newer .* upgrade"):
        store.require_current()
    with pytest.raises(StoreError, match="newer"):
        store.migrate()


def test_a_database_with_tables_but_no_version_is_not_taken_for_a_store(url: str) -> None:
    store = open_store(url)
    store._begin()
    if store.dialect == "postgres":
        store._execute(f"CREATE SCHEMA {store.schema}")  # type: ignore[attr-defined]
    store._execute("CREATE TABLE events (x INTEGER)")
    store._commit()
    with pytest.raises(StoreError, match="no schema_version: not a meterspec store"):
        store.require_current(create=True)
    store.close()


def test_the_cli_refuses_an_old_store_with_one_line(url: str, tmp_path: Path) -> None:
    """Every command that reads or writes a store says what to do, exit status 2."""
    _old_store(url)
    config = ROOT / "examples" / "api-calls" / "config.json"
    request = ROOT / "examples" / "api-calls" / "request.json"
    events = ROOT / "examples" / "api-calls" / "events.ndjson"
    for argv in (["run", "--store", url, "--config", config, "--request", request],
                 ["ingest", "--store", url, events], ["store", "export", url]):
        done = subprocess.run([sys.executable, "-m", "meterspec", *map(str, argv)],
                              capture_output=True, check=False)
        assert done.returncode == 2, done.stderr
        [message] = done.stderr.decode().splitlines()
        assert "schema version 1" in message and "meterspec store migrate" in message
        assert done.stdout == b""
    done = subprocess.run([sys.executable, "-m", "meterspec", "store", "migrate", url],
                          capture_output=True, check=False)
    assert done.returncode == 0 and b"migrated to schema version 2" in done.stdout


def test_a_batch_the_database_rolls_back_is_retried_whole(request: pytest.FixtureRequest,
                                                          tmp_path: Path) -> None:
    """PostgreSQL: a deadlock or serialization failure (here forced on the first try, after
    the batch's claims were written) rolls everything back; the retry starts from nothing and
    the user sees one result, never the failure."""
    from meterspec.store import postgres

    url = store_url("postgres", request, tmp_path)
    store = open_store(url)
    store.require_current(create=True)
    assert isinstance(store, postgres.PostgresStore)
    claim, tries = store._claim, []

    def failing_once(candidates: str) -> None:
        claim(candidates)
        tries.append(1)
        if len(tries) == 1:
            raise postgres._RetryError("deadlock detected")

    store._claim = failing_once  # type: ignore[method-assign]
    result = store.ingest(_batch([line("a"), line("b"), line("a")]), detail=True)
    assert len(tries) == 2
    assert result.outcomes() == ["accepted", "accepted", "duplicate"]
    assert store.counts()["events"] == store.counts()["seen"] == 2
    assert store.counts()["batches"] == 1
    store.close()


def test_the_engine_seam_holds_the_effective_events_in_place(tmp_path: Path) -> None:
    """DuckDBStore.effective_table: the effective events as a table in the engines' typed
    event layout (meterspec.engines.sources), equal to the reference stream, in order."""
    from meterspec.store.duckdb import DuckDBStore

    store = open_store(f"duckdb:{tmp_path / 'store.duckdb'}")
    store.require_current(create=True)
    assert isinstance(store, DuckDBStore)
    store.ingest(_batch([*ODD_LINES, line("r", type="meterspec.retract", subject="s",
                                           workspaceID="w", universeID="u",
                                           properties={"meterspec.target": "b"}),
                         line("m", type="meterspec.amend", properties={
                             "meterspec.target": "a", "calls": "9"})]))
    assert store.effective_table("events_in_place") == len(ODD_LINES) - 1
    rows = store.connection.execute("SELECT * FROM events_in_place").fetchall()
    expected = [decode_event(text) for text in chunks_lines(store.effective_chunks())]
    assert [(r[0], r[1], r[2], r[3], r[4], r[5], r[6] or {}) for r in rows] == [
        (e.id, e.workspace_id, e.universe_id, e.type, e.subject, e.time, e.properties)
        for e in expected]
    assert rows[0][6] == {"calls": "9"}
    store.close()
