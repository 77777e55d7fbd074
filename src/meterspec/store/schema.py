"""The store's tables, versioned: each schema version and the migration that reaches it.

A store records every migration applied in `schema_version`. A store is read only at the
version this package writes (LATEST): an older one is refused with the command that migrates
it, a newer one with the advice to upgrade meterspec, and a database that holds tables but no
`schema_version` is not taken for a store at all. Nothing is ever read through a layout it was
not written in.

Version 1 was the first layout: the event log, the seen index, conflicts, batches. Version 2
adds the corrections index (the `meterspec.retract` / `meterspec.amend` events of the log with
their targets, backfilled from the log by the migration), the `repeated` mark of an identity
accepted again after its seen entry expired (MS-ING-009), closed invoices, and the views that
say which corrections apply and which events are effective (MS-ING-013).

The DDL is written once with three placeholders per dialect: {ID} for identity-like text (in
PostgreSQL `bytea`, UTF-8 bytes, since `text` cannot hold U+0000 and `bytea` orders by code
point without a collation), {BLOB} for digests, {INSTANT} for nanoseconds since the epoch
(years 0001..9999 need more than 64 bits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from meterspec.store.batch import Batch

Dialect = Literal["duckdb", "postgres"]
LATEST = 2
TYPES: dict[Dialect, dict[str, str]] = {
    "duckdb": {"ID": "VARCHAR", "BLOB": "BLOB", "INSTANT": "DECIMAL(38,0)", "TEXT": "VARCHAR"},
    "postgres": {"ID": "bytea", "BLOB": "bytea", "INSTANT": "numeric(38,0)", "TEXT": "text"},
}


class Executor(Protocol):
    """What a migration needs of a connection inside its transaction."""

    dialect: Dialect

    def execute(self, sql: str) -> None: ...

    def query(self, sql: str) -> list[tuple[object, ...]]: ...

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[object]]) -> None: ...


def ddl(dialect: Dialect, text: str) -> list[str]:
    """The statements of `text` (separated by ';'), placeholders filled in for `dialect`."""
    filled = text.format(**TYPES[dialect])
    return [statement.strip() for statement in filled.split(";") if statement.strip()]


VERSION_1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at {TEXT} NOT NULL,
    meterspec {TEXT} NOT NULL);
CREATE TABLE meta (key {TEXT} PRIMARY KEY, value {TEXT} NOT NULL);
CREATE TABLE batches (batch BIGINT PRIMARY KEY, received_at {TEXT} NOT NULL,
    source {TEXT} NOT NULL, size BIGINT NOT NULL, accepted BIGINT NOT NULL,
    duplicates BIGINT NOT NULL, conflicts BIGINT NOT NULL, late BIGINT NOT NULL,
    rejected BIGINT NOT NULL);
CREATE TABLE events (seq BIGINT NOT NULL, batch BIGINT NOT NULL,
    workspace_id {ID} NOT NULL, universe_id {ID} NOT NULL, id {ID} NOT NULL,
    type {ID} NOT NULL, subject {ID} NOT NULL, time_ns {INSTANT} NOT NULL,
    digest {BLOB} NOT NULL, payload {TEXT} NOT NULL);
CREATE TABLE seen (workspace_id {ID} NOT NULL, universe_id {ID} NOT NULL, id {ID} NOT NULL,
    digest {BLOB} NOT NULL, time_ns {INSTANT} NOT NULL,
    PRIMARY KEY (workspace_id, universe_id, id));
CREATE TABLE conflicts (batch BIGINT NOT NULL, position BIGINT NOT NULL,
    workspace_id {ID} NOT NULL, universe_id {ID} NOT NULL, id {ID} NOT NULL,
    accepted_digest {BLOB} NOT NULL, conflicting_digest {BLOB} NOT NULL,
    payload {TEXT} NOT NULL)
"""

VERSION_1_POSTGRES = """
CREATE UNIQUE INDEX events_seq ON events (seq);
CREATE SEQUENCE batch_numbers
"""

VERSION_2 = """
ALTER TABLE events ADD COLUMN repeated BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE corrections (seq BIGINT PRIMARY KEY, workspace_id {ID} NOT NULL,
    universe_id {ID} NOT NULL, id {ID} NOT NULL, subject {ID} NOT NULL,
    time_ns {INSTANT} NOT NULL, kind {TEXT} NOT NULL, target_id {ID},
    shape_ok BOOLEAN NOT NULL, properties {TEXT} NOT NULL);
CREATE TABLE closed_invoices (id {TEXT} PRIMARY KEY, seq BIGINT NOT NULL,
    digest {BLOB} NOT NULL, payload {TEXT} NOT NULL);
CREATE VIEW correction_status AS
SELECT c.seq, c.workspace_id, c.universe_id, c.id, c.kind, c.time_ns, c.properties,
       t.seq AS target_seq,
       CASE WHEN NOT c.shape_ok THEN 'malformed'
            WHEN t.seq IS NULL THEN 'unknown-target'
            WHEN EXISTS (SELECT 1 FROM corrections x WHERE x.seq = t.seq)
                THEN 'target-is-correction'
            WHEN t.subject <> c.subject THEN 'other-subject'
            ELSE 'applies' END AS status
FROM corrections c
JOIN events own ON own.seq = c.seq AND NOT own.repeated
LEFT JOIN events t ON c.shape_ok AND t.workspace_id = c.workspace_id
    AND t.universe_id = c.universe_id AND t.id = c.target_id AND NOT t.repeated;
CREATE VIEW retractions AS
SELECT target_seq, seq, id FROM (
    SELECT target_seq, seq, id, row_number() OVER (
        PARTITION BY target_seq ORDER BY time_ns, id) AS rank
    FROM correction_status WHERE status = 'applies' AND kind = 'retract') ranked
WHERE rank = 1;
CREATE VIEW amendments AS
SELECT target_seq, seq, id, properties FROM (
    SELECT target_seq, seq, id, properties, row_number() OVER (
        PARTITION BY target_seq ORDER BY time_ns DESC, id DESC) AS rank
    FROM correction_status s WHERE status = 'applies' AND kind = 'amend'
      AND NOT EXISTS (SELECT 1 FROM retractions r WHERE r.target_seq = s.target_seq)) ranked
WHERE rank = 1;
CREATE VIEW effective_events AS
SELECT e.seq, e.workspace_id, e.universe_id, e.id, e.type, e.subject, e.time_ns, e.payload,
       a.properties AS amended_properties
FROM events e
LEFT JOIN amendments a ON a.target_seq = e.seq
WHERE NOT e.repeated
  AND NOT EXISTS (SELECT 1 FROM corrections c WHERE c.seq = e.seq)
  AND NOT EXISTS (SELECT 1 FROM retractions r WHERE r.target_seq = e.seq)
"""


@dataclass(frozen=True)
class Migration:
    """The step from version - 1 to `version`: DDL, then an optional backfill in Python."""

    version: int
    summary: str
    statements: Callable[[Dialect], list[str]]
    backfill: Callable[[Executor], None] | None = None


def _version_1(dialect: Dialect) -> list[str]:
    extra = ddl(dialect, VERSION_1_POSTGRES) if dialect == "postgres" else []
    return ddl(dialect, VERSION_1) + extra


def _version_2(dialect: Dialect) -> list[str]:
    return ddl(dialect, VERSION_2)


def _backfill_2(executor: Executor) -> None:
    """Index the corrections already in the log, and mark identities the log repeats (an
    expired identity accepted again: the first occurrence is the one a log counts)."""
    rows = executor.query("SELECT seq, payload FROM events WHERE payload LIKE "
                          "'%meterspec.%' ORDER BY seq")
    batch = Batch()
    seqs: list[int] = []
    for seq, payload in rows:
        assert isinstance(seq, int) and isinstance(payload, str)
        batch.add_logged(1, payload.encode())
        if batch.correction_positions and batch.correction_positions[-1] == batch.size - 1:
            seqs.append(seq)
    if seqs:
        executor.insert_rows("corrections", CORRECTION_COLUMNS,
                             correction_rows(batch, seqs, executor.dialect))
    executor.execute("UPDATE events SET repeated = TRUE WHERE seq IN (SELECT seq FROM ("
                     "SELECT seq, row_number() OVER (PARTITION BY workspace_id, universe_id, "
                     "id ORDER BY seq) AS n FROM events) numbered WHERE n > 1)")


CORRECTION_COLUMNS = ("seq", "workspace_id", "universe_id", "id", "subject", "time_ns", "kind",
                      "target_id", "shape_ok", "properties")


def correction_rows(batch: Batch, seqs: Sequence[int],
                    dialect: Dialect) -> list[tuple[object, ...]]:
    """Rows of the corrections table for the corrections of a Batch, `seqs[i]` the log
    position of its i-th correction."""
    ident: Callable[[str], object] = (
        (lambda text: text.encode()) if dialect == "postgres" else (lambda text: text))
    rows: list[tuple[object, ...]] = []
    for index, column in enumerate(batch.correction_columns):
        target = batch.correction_targets[index]
        rows.append((
            seqs[index], ident(batch.workspace_ids[column]), ident(batch.universe_ids[column]),
            ident(batch.ids[column]), ident(batch.subjects[column]),
            batch.seconds[column] * 1_000_000_000 + batch.nanos[column],
            batch.correction_kinds[index], None if target is None else ident(target),
            batch.correction_shapes[index], batch.correction_properties[index]))
    return rows


MIGRATIONS = (
    Migration(1, "event log, seen index, conflicts, batches", _version_1),
    Migration(2, "corrections index, repeated identities, closed invoices, effective-event "
              "views", _version_2, _backfill_2),
)
assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
