"""The store interface, and everything its two backends share: ingestion of a batch in one
transaction (MS-ING-003..008), expiry (MS-ING-009), the seen state (MS-ING-007), the log and
its effective events (MS-ING-013..019), closed invoices, schema versions.

A batch is decided in SQL over the columns of a Batch (meterspec.store.batch), in the order
MS-ING-003 gives: per identity, the first occurrence not before the horizon is the candidate;
a candidate whose identity the seen index does not hold is *claimed* (the backend's one step
that differs: an anti-join in DuckDB, which has a single writer; INSERT ... ON CONFLICT DO
NOTHING in PostgreSQL, where the unique index decides between concurrent writers); a claimed
occurrence is accepted, an occurrence before it is late, any other occurrence of an identity the
seen index holds is a duplicate or a conflict by digest, and the rest is late. The accepted
events, their seen entries, corrections index, conflicts and the batch's row are written in the
same transaction, so an event is durable exactly when its identity is claimed (MS-ING-008) and
a batch that fails leaves nothing behind: a retry finds nothing of it, never half of it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Literal

import msgspec

from meterspec import __version__
from meterspec.contracts import EventPayload
from meterspec.errors import MeterspecError, Problem
from meterspec.ingestion import Identity, Seen, SeenState, correction_problems
from meterspec.store.batch import Batch
from meterspec.store.schema import (
    CORRECTION_COLUMNS,
    LATEST,
    MIGRATIONS,
    Dialect,
)
from meterspec.timestamps import NANOS_PER_SECOND, Instant, format_timestamp

SEQ_BLOCK = 1 << 32
"""An accepted event's log position is batch * SEQ_BLOCK + its position in the batch."""
CHUNK_ROWS = 10_000
_event_decoder = msgspec.json.Decoder(EventPayload)
_event_encoder = msgspec.json.Encoder()
TABLES = ("schema_version", "meta", "batches", "events", "seen", "conflicts", "corrections",
          "closed_invoices")


class StoreError(OSError):
    """The store cannot be used or written (missing, locked, full, read-only, an unknown
    schema version, a failed connection): one line that says what and what to do. An OSError,
    so the CLI reports it like any other failed input: one line, exit status 2."""


@dataclass(frozen=True)
class Duplicate:
    position: int
    identity: Identity
    digest: bytes


@dataclass(frozen=True)
class Conflict:
    """Same identity, another digest: the accepted payload stays (MS-ING-004)."""

    position: int
    identity: Identity
    accepted_digest: bytes
    conflicting_digest: bytes

    def problem(self) -> Problem:
        return Problem("event-conflict", "", f"event {self.identity[2]!r} in workspace "
                       f"{self.identity[0]!r}, universe {self.identity[1]!r} was accepted with "
                       f"digest {self.accepted_digest.hex()}; this payload has digest "
                       f"{self.conflicting_digest.hex()}", "MS-ING-004",
                       event_id=self.identity[2])


@dataclass(frozen=True)
class Late:
    """An unknown identity older than the retention horizon (MS-ING-010)."""

    position: int
    identity: Identity
    time: Instant
    horizon: Instant

    def problem(self) -> Problem:
        return Problem("late-beyond-retention", "/time", f"event time "
                       f"{format_timestamp(self.time)} is before the retention horizon "
                       f"{format_timestamp(self.horizon)}: a repeat can no longer be told from "
                       "a new event", "MS-ING-010", event_id=self.identity[2])


Outcome = Literal["accepted", "duplicate", "conflict", "late-beyond-retention", "rejected"]


@dataclass
class BatchResult:
    """What became of one batch. Duplicates are counted; they are listed one by one only when
    asked for (`detail`), since a batch sent again is all duplicates."""

    batch: int
    size: int
    accepted: int = 0
    duplicates: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    late: list[Late] = field(default_factory=list)
    rejected: list[tuple[int, MeterspecError]] = field(default_factory=list)
    duplicate_list: list[Duplicate] | None = None

    def outcomes(self) -> list[Outcome]:
        """One outcome per event of the batch, in order (needs `detail`)."""
        assert self.duplicate_list is not None, "ingest(..., detail=True) lists duplicates"
        found: list[Outcome] = ["accepted"] * self.size
        for duplicate in self.duplicate_list:
            found[duplicate.position] = "duplicate"
        for conflict in self.conflicts:
            found[conflict.position] = "conflict"
        for late in self.late:
            found[late.position] = "late-beyond-retention"
        for position, _ in self.rejected:
            found[position] = "rejected"
        return found

    def codes(self) -> dict[str, int]:
        """How many rejected events had each problem code (each event once per code)."""
        counts: dict[str, int] = {}
        for _, error in self.rejected:
            for code in sorted({p.code for p in error.problems}):
                counts[code] = counts.get(code, 0) + 1
        return counts


@dataclass(frozen=True)
class CorrectionsReport:
    """Which corrections of the log apply (MS-ING-014, MS-ING-015) and which cannot, and why
    (MS-ING-016, MS-ING-017), as apply_corrections lists them."""

    retracted: list[tuple[Identity, str]]
    amended: list[tuple[Identity, str]]
    ineffective: list[tuple[Identity, Problem]]


class Store(ABC):
    """A durable event log with its seen index (specs/ingestion.md). Open one with
    meterspec.store.open_store(url); close it when done."""

    dialect: Dialect
    url: str

    # ---------------------------------------------------------------- backend primitives

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _execute(self, sql: str) -> None: ...

    @abstractmethod
    def _query(self, sql: str) -> list[tuple[object, ...]]: ...

    @abstractmethod
    def _stream(self, sql: str) -> Iterator[list[tuple[object, ...]]]:
        """The rows of a query in chunks, without holding them all."""

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[object]]) -> None: ...

    @abstractmethod
    def _stage(self, batch: Batch) -> None:
        """Temporary tables `incoming` (one row per valid event) and `incoming_corrections`."""

    @abstractmethod
    def _claim(self, candidates: str) -> None:
        """Temporary table `claimed(pos)`: the candidates whose identities this batch adds to
        the seen index, which it does."""

    @abstractmethod
    def _next_batch(self) -> int: ...

    @abstractmethod
    def _lock_for_ingest(self) -> None:
        """Hold off a concurrent expiry until this batch's transaction ends (the horizon a
        batch reads stays the horizon until it commits)."""

    @abstractmethod
    def _lock_for_expire(self) -> None:
        """Wait for the batches in progress, and hold new ones off, until expiry commits."""

    @abstractmethod
    def _drop_temporary(self) -> None: ...

    @abstractmethod
    def _tables(self) -> set[str]: ...

    @abstractmethod
    def _lock_schema(self) -> None:
        """Serialise schema changes (two `store init` at once)."""

    def _ident(self, text: str) -> object:
        """An identity-like value as the database holds it (PostgreSQL: UTF-8 bytes)."""
        return text

    def _text(self, value: object) -> str:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).decode()
        return str(value)

    def _log_order(self) -> str:
        """ORDER BY for the log: seq (DuckDB keeps insertion order, which is seq order)."""
        return " ORDER BY seq"

    # ---------------------------------------------------------------- schema versions

    def version(self) -> int | None:
        """The store's schema version; None for an empty database; StoreError for a
        database that holds tables but is no meterspec store."""
        tables = self._tables()
        if "schema_version" not in tables:
            if tables & set(TABLES):
                raise StoreError(f"{self.url} holds tables ({', '.join(sorted(tables))}) but "
                                 "no schema_version: not a meterspec store, or one damaged; "
                                 "refusing to read or write it")
            return None
        rows = self._query("SELECT max(version) FROM schema_version")
        found = rows[0][0] if rows else None
        if not isinstance(found, int):
            raise StoreError(f"{self.url}: schema_version is empty: damaged store")
        return found

    def require_current(self, *, create: bool = False) -> None:
        """Refuse a store written by another schema version (never misread it); with `create`,
        set up an empty one."""
        found = self.version()
        if found is None:
            if create:
                self.migrate()
                return
            raise StoreError(f"{self.url} is not a meterspec store yet: run "
                             f"`meterspec store init {self.url}`")
        if found < LATEST:
            raise StoreError(f"{self.url} was written by schema version {found}; this "
                             f"meterspec reads version {LATEST}: run `meterspec store migrate "
                             f"{self.url}` (back it up first)")
        if found > LATEST:
            raise StoreError(f"{self.url} has schema version {found}, newer than this "
                             f"meterspec {__version__} knows ({LATEST}): upgrade meterspec")

    def migrate(self) -> list[int]:
        """Bring the store to LATEST, one migration per transaction; the versions applied."""
        applied: list[int] = []
        while True:
            self._begin()
            try:
                self._lock_schema()
                current = self.version() or 0
                if current > LATEST:
                    raise StoreError(f"{self.url} has schema version {current}, newer than "
                                     f"this meterspec knows ({LATEST}): upgrade meterspec")
                if current == LATEST:
                    self._commit()
                    return applied
                step = MIGRATIONS[current]
                for statement in step.statements(self.dialect):
                    self._execute(statement)
                if step.backfill is not None:
                    step.backfill(self)
                self.insert_rows("schema_version", ("version", "applied_at", "meterspec"),
                                 [(step.version, self._now(), __version__)])
                self._commit()
            except BaseException:
                self._rollback()
                raise
            applied.append(step.version)

    @abstractmethod
    def _now(self) -> str:
        """The database's clock, for the audit columns only (never for a decision)."""

    # executor protocol for migrations (meterspec.store.schema.Executor)

    def execute(self, sql: str) -> None:
        self._execute(sql)

    def query(self, sql: str) -> list[tuple[object, ...]]:
        return self._query(sql)

    # ---------------------------------------------------------------- ingestion

    def horizon(self) -> Instant | None:
        rows = self._query("SELECT value FROM meta WHERE key = 'horizon'")
        return int(str(rows[0][0])) if rows else None

    def ingest(self, batch: Batch, source: str = "", *, detail: bool = False) -> BatchResult:
        """Ingest one batch in one transaction (MS-ING-003, MS-ING-008)."""
        self._begin()
        try:
            result = self._ingest(batch, source, detail)
            self._commit()
        except BaseException:
            self._rollback()
            raise
        finally:
            self._drop_temporary()
        return result

    def _ingest(self, batch: Batch, source: str, detail: bool) -> BatchResult:
        self._lock_for_ingest()
        horizon = self.horizon()
        number = self._next_batch()
        result = BatchResult(number, batch.size, rejected=list(batch.rejected),
                             duplicate_list=[] if detail else None)
        if batch.positions:
            self._stage(batch)
            late_filter = "" if horizon is None else f" WHERE time_ns >= {horizon}"
            self._claim(f"SELECT min(pos) AS pos FROM incoming{late_filter} "
                        "GROUP BY workspace_id, universe_id, id")
            self._write_accepted(number, horizon is not None)
            self._classify(result, number, horizon, detail)
        self.insert_rows("batches", ("batch", "received_at", "source", "size", "accepted",
                                     "duplicates", "conflicts", "late", "rejected"),
                         [(number, self._now(), source, batch.size, result.accepted,
                           result.duplicates, len(result.conflicts), len(result.late),
                           len(result.rejected))])
        return result

    def _write_accepted(self, number: int, expired: bool) -> None:
        base = number * SEQ_BLOCK
        # An identity accepted again after its entry expired (MS-ING-009) is marked: the
        # log counts its first occurrence (MS-ING-019). Only a store that expired can have one.
        repeated = ("EXISTS (SELECT 1 FROM events x WHERE x.workspace_id = i.workspace_id AND "
                    "x.universe_id = i.universe_id AND x.id = i.id)" if expired else "FALSE")
        self._execute(
            "INSERT INTO events (seq, batch, workspace_id, universe_id, id, type, subject, "
            f"time_ns, digest, repeated, payload) SELECT {base} + i.pos, {number}, "
            "i.workspace_id, i.universe_id, i.id, i.type, i.subject, i.time_ns, i.digest, "
            f"{repeated}, i.payload FROM incoming i JOIN claimed c ON c.pos = i.pos "
            "ORDER BY i.pos")
        self._execute(
            f"INSERT INTO corrections ({', '.join(CORRECTION_COLUMNS)}) SELECT {base} + i.pos, "
            "i.workspace_id, i.universe_id, i.id, i.subject, i.time_ns, k.kind, k.target_id, "
            "k.shape_ok, k.properties FROM incoming_corrections k "
            "JOIN incoming i ON i.pos = k.pos JOIN claimed c ON c.pos = k.pos")

    def _classify(self, result: BatchResult, number: int, horizon: Instant | None,
                  detail: bool) -> None:
        # Only the occurrences not claimed need the seen index: a batch of new events
        # (the common case) joins nothing.
        self._execute(
            "CREATE TEMPORARY TABLE outcomes AS SELECT i.pos, i.workspace_id, i.universe_id, "
            "i.id, i.digest, i.time_ns, s.digest AS known, CASE "
            "WHEN w.pos IS NOT NULL AND i.pos < w.pos THEN 'l' "
            "WHEN s.digest IS NULL THEN 'l' WHEN s.digest = i.digest THEN 'd' ELSE 'c' END "
            "AS outcome FROM (SELECT * FROM incoming n WHERE NOT EXISTS (SELECT 1 FROM "
            "claimed c WHERE c.pos = n.pos)) i "
            "LEFT JOIN (SELECT n.workspace_id, n.universe_id, n.id, n.pos FROM incoming n "
            "JOIN claimed c ON c.pos = n.pos) w ON w.workspace_id = i.workspace_id AND "
            "w.universe_id = i.universe_id AND w.id = i.id "
            "LEFT JOIN seen s ON s.workspace_id = i.workspace_id AND "
            "s.universe_id = i.universe_id AND s.id = i.id")
        counts = {str(outcome): count for outcome, count in self._query(
            "SELECT outcome, count(*) FROM outcomes GROUP BY outcome")}
        result.accepted = int(str(self._query("SELECT count(*) FROM claimed")[0][0]))
        result.duplicates = int(str(counts.get("d", 0)))
        wanted = "('c', 'l', 'd')" if detail else "('c', 'l')"
        rows = self._query("SELECT pos, outcome, workspace_id, universe_id, id, digest, known, "
                           f"time_ns FROM outcomes WHERE outcome IN {wanted} ORDER BY pos")
        duplicates: list[Duplicate] = []
        for pos, outcome, ws, uni, ident, digest, known, time_ns in rows:
            key = (self._text(ws), self._text(uni), self._text(ident))
            position = int(str(pos))
            if outcome == "c":
                result.conflicts.append(Conflict(position, key, _bytes(known), _bytes(digest)))
            elif outcome == "d":
                duplicates.append(Duplicate(position, key, _bytes(digest)))
            else:
                assert horizon is not None, "late only where there is a horizon"
                result.late.append(Late(position, key, int(str(time_ns)), horizon))
        if detail:
            result.duplicate_list = duplicates
        if result.conflicts:
            self._execute(
                "INSERT INTO conflicts (batch, position, workspace_id, universe_id, id, "
                f"accepted_digest, conflicting_digest, payload) SELECT {number}, o.pos, "
                "o.workspace_id, o.universe_id, o.id, o.known, o.digest, i.payload "
                "FROM outcomes o JOIN incoming i ON i.pos = o.pos WHERE o.outcome = 'c'")

    def expire(self, before: Instant) -> int:
        """MS-ING-009: forget seen entries older than `before` and raise the horizon to it
        (never lower it); the number of entries forgotten. The log keeps every event."""
        self._begin()
        try:
            self._lock_for_expire()
            current = self.horizon()
            horizon = before if current is None else max(current, before)
            forgotten = self._query(f"SELECT count(*) FROM seen WHERE time_ns < {horizon}")
            self._execute(f"DELETE FROM seen WHERE time_ns < {horizon}")
            self._execute("DELETE FROM meta WHERE key = 'horizon'")
            self.insert_rows("meta", ("key", "value"), [("horizon", str(horizon))])
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return int(str(forgotten[0][0]))

    def seen_state(self) -> SeenState:
        """The seen index as a SeenState (MS-ING-007): for inspection and for the conformance
        cases; it holds every identity in memory."""
        rows = self._query("SELECT workspace_id, universe_id, id, digest, time_ns FROM seen")
        return SeenState({(self._text(ws), self._text(uni), self._text(ident)):
                          Seen(_bytes(digest).hex(), int(str(time_ns)))
                          for ws, uni, ident, digest, time_ns in rows}, self.horizon())

    def load_state(self, state: SeenState) -> None:
        """Take over a seen state (an IngestionState document from elsewhere) into an empty
        store: its identities are known, although their events are not in this log."""
        self._begin()
        try:
            self.insert_rows("seen", ("workspace_id", "universe_id", "id", "digest",
                                      "time_ns"),
                             [(self._ident(ws), self._ident(uni), self._ident(ident),
                               bytes.fromhex(seen.digest), seen.time)
                              for (ws, uni, ident), seen in state.items()])
            if state.horizon is not None:
                self.insert_rows("meta", ("key", "value"), [("horizon", str(state.horizon))])
            self._commit()
        except BaseException:
            self._rollback()
            raise

    def append_log(self, batch: Batch) -> None:
        """Write the events of a batch to the log as they are, without ingesting them (no
        seen index, no checks beyond the Batch's): to read a log someone else kept, as the
        conformance cases of apply-corrections give one. Identical repeats are kept once."""
        self._begin()
        try:
            number = self._next_batch()
            self._stage(batch)
            self._execute("CREATE TEMPORARY TABLE claimed AS SELECT min(pos) AS pos "
                          "FROM incoming GROUP BY workspace_id, universe_id, id")
            self._write_accepted(number, False)
            self.insert_rows("batches", ("batch", "received_at", "source", "size", "accepted",
                                         "duplicates", "conflicts", "late", "rejected"),
                             [(number, self._now(), "log", batch.size, 0, 0, 0, 0, 0)])
            self._commit()
        except BaseException:
            self._rollback()
            raise
        finally:
            self._drop_temporary()

    # ---------------------------------------------------------------- reading the log

    def log_chunks(self) -> Iterator[bytes]:
        """Every accepted event as it was sent, one line each ("\\n" after each), in log
        order: `meterspec store export` (byte for byte what was ingested)."""
        for rows in self._stream(f"SELECT payload FROM events{self._log_order()}"):
            yield "".join([f"{row[0]}\n" for row in rows]).encode()

    def log_conflicts(self) -> list[Problem]:
        """MS-ING-019: identities the log holds with two digests (only possible when an
        expired identity was accepted again), one event-conflict each."""
        if self.horizon() is None:
            return []
        rows = self._query(
            "SELECT r.workspace_id, r.universe_id, r.id FROM events r JOIN events f ON "
            "f.workspace_id = r.workspace_id AND f.universe_id = r.universe_id AND "
            "f.id = r.id AND NOT f.repeated WHERE r.repeated AND r.digest <> f.digest "
            "GROUP BY r.workspace_id, r.universe_id, r.id")
        return [Problem("event-conflict", "", f"event {self._text(ident)!r} in workspace "
                        f"{self._text(ws)!r}, universe {self._text(uni)!r} is in the log with "
                        "two different payloads (accepted again after its seen entry "
                        "expired): its effective events are not defined", "MS-ING-019",
                        event_id=self._text(ident)) for ws, uni, ident in rows]

    def effective_chunks(self) -> Iterator[bytes]:
        """The effective events (MS-ING-013), one NDJSON line each, in log order: each as it
        was sent, an amended one re-encoded with the properties of its amendment in force.
        MeterspecError (event-conflict, MS-ING-019) before the first chunk if the log holds
        one identity with two payloads."""
        conflicts = self.log_conflicts()
        if conflicts:
            raise MeterspecError(conflicts)
        skip = {int(str(row[0])) for row in self._query(
            "SELECT seq FROM corrections UNION ALL SELECT target_seq FROM retractions")}
        amended = {int(str(seq)): str(properties) for seq, properties in self._query(
            "SELECT target_seq, properties FROM amendments")}
        if not skip and not amended:
            for rows in self._stream(
                    f"SELECT payload FROM events WHERE NOT repeated{self._log_order()}"):
                yield "".join([f"{row[0]}\n" for row in rows]).encode()
            return
        for rows in self._stream(
                f"SELECT seq, payload FROM events WHERE NOT repeated{self._log_order()}"):
            lines: list[str] = []
            for seq, payload in rows:
                number = int(str(seq))
                if number in skip:
                    continue
                properties = amended.get(number)
                lines.append(f"{payload}\n" if properties is None
                             else _amended_line(str(payload), properties))
            yield "".join(lines).encode()

    def corrections_report(self) -> CorrectionsReport:
        """The retracted and amended targets and the ineffective corrections, each sorted as
        apply_corrections sorts them (MS-ING-013)."""
        def key(ws: object, uni: object, ident: object) -> Identity:
            return (self._text(ws), self._text(uni), self._text(ident))

        retracted = sorted((key(t[0], t[1], t[2]), self._text(t[3])) for t in self._query(
            "SELECT e.workspace_id, e.universe_id, e.id, r.id FROM retractions r "
            "JOIN events e ON e.seq = r.target_seq"))
        amended = sorted((key(t[0], t[1], t[2]), self._text(t[3])) for t in self._query(
            "SELECT e.workspace_id, e.universe_id, e.id, a.id FROM amendments a "
            "JOIN events e ON e.seq = a.target_seq"))
        ineffective: list[tuple[Identity, Problem]] = []
        rows = self._query("SELECT s.workspace_id, s.universe_id, s.id, s.status, e.payload "
                           "FROM correction_status s JOIN events e ON e.seq = s.seq "
                           "WHERE s.status <> 'applies'")
        for ws, uni, ident, status, payload in rows:
            ineffective += [(key(ws, uni, ident), p) for p in _ineffective(str(status),
                                                                           str(payload))]
        ineffective.sort(key=lambda item: (item[0], item[1].path, item[1].code))
        return CorrectionsReport(retracted, amended, ineffective)

    @abstractmethod
    def export_parquet(self, path: str, effective: bool = False) -> int:
        """The log (or the effective events) as a Parquet file, in log order; the number of
        events written."""

    # ---------------------------------------------------------------- closed invoices

    def close_invoices(self, lines: Sequence[bytes]) -> tuple[int, int]:
        """Record invoices as closed (their ids unique); (recorded, already there). A
        different invoice under an id already closed is a StoreError, nothing recorded."""
        from meterspec.codec import decode
        from meterspec.invoices import Invoice

        rows = []
        for line in lines:
            invoice = decode("invoice", line, Invoice, fast=False)
            rows.append((invoice.id, sha256(_event_encoder.encode(invoice)).digest(),
                         line.decode()))
        self._begin()
        try:
            known = {str(i): _bytes(d) for i, d in self._query(
                "SELECT id, digest FROM closed_invoices")}
            fresh: dict[str, tuple[str, bytes, str]] = {}
            for ident, digest, payload in rows:
                prior = known.get(ident) or (fresh[ident][1] if ident in fresh else None)
                if prior is not None and prior != digest:
                    raise StoreError(f"invoice {ident!r} is already closed with other "
                                     "content; nothing recorded")
                if prior is None:
                    fresh[ident] = (ident, digest, payload)
            start = int(str(self._query("SELECT coalesce(max(seq), 0) FROM closed_invoices")[
                0][0]))
            self.insert_rows("closed_invoices", ("id", "seq", "digest", "payload"),
                             [(i, start + n + 1, d, p)
                              for n, (i, d, p) in enumerate(fresh.values())])
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return len(fresh), len(rows) - len(fresh)

    def closed_invoice_chunks(self) -> Iterator[bytes]:
        for rows in self._stream("SELECT payload FROM closed_invoices ORDER BY seq"):
            yield "".join([f"{row[0]}\n" for row in rows]).encode()

    def clear(self) -> None:
        """Empty every table but schema_version: for the conformance adapter and tests, which
        start each case from an empty store. Never called by the commands."""
        self._begin()
        try:
            for table in TABLES[1:]:
                self._execute(f"DELETE FROM {table}")
            self._commit()
        except BaseException:
            self._rollback()
            raise

    # ---------------------------------------------------------------- inspection

    def counts(self) -> dict[str, int]:
        """Rows per table, for `meterspec store check`."""
        return {table: int(str(self._query(f"SELECT count(*) FROM {table}")[0][0]))
                for table in ("events", "seen", "conflicts", "corrections", "batches",
                              "closed_invoices")}

    def problems(self) -> list[str]:
        """What `meterspec store check` verifies beyond the version: the seen index equals
        what ingesting the log would give (MS-ING-008), no seen entry before the horizon."""
        found: list[str] = []
        missing = self._query(
            "SELECT count(*) FROM events e WHERE NOT e.repeated AND NOT EXISTS (SELECT 1 FROM "
            "seen s WHERE s.workspace_id = e.workspace_id AND s.universe_id = e.universe_id "
            "AND s.id = e.id)")
        if int(str(missing[0][0])):
            horizon = self.horizon()
            expired = 0 if horizon is None else int(str(self._query(
                f"SELECT count(*) FROM events WHERE time_ns < {horizon}")[0][0]))
            if int(str(missing[0][0])) > expired:
                found.append(f"{missing[0][0]} logged events have no seen entry and are not "
                             "expired")
        differ = self._query(
            "SELECT count(*) FROM events e JOIN seen s ON s.workspace_id = e.workspace_id AND "
            "s.universe_id = e.universe_id AND s.id = e.id WHERE NOT e.repeated AND "
            "s.digest <> e.digest")
        if int(str(differ[0][0])):
            found.append(f"{differ[0][0]} seen entries hold another digest than the log")
        horizon = self.horizon()
        if horizon is not None:
            old = self._query(f"SELECT count(*) FROM seen WHERE time_ns < {horizon}")
            if int(str(old[0][0])):
                found.append(f"{old[0][0]} seen entries are older than the horizon")
        return found


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"expected bytes, got {type(value).__name__}")


def _amended_line(payload: str, properties: str) -> str:
    event = _event_decoder.decode(payload)
    replaced = msgspec.structs.replace(event, properties=json.loads(properties))
    return _event_encoder.encode(replaced).decode() + "\n"


def _ineffective(status: str, payload: str) -> list[Problem]:
    """The problems apply_corrections lists for a correction of this status (MS-ING-016,
    MS-ING-017, MS-ING-011; the shape's own problems for a malformed one, MS-ING-012)."""
    event = _event_decoder.decode(payload)
    where = "/properties/meterspec.target"
    if status == "malformed":
        problems = correction_problems(event)
    elif status == "unknown-target":
        problems = [Problem("unknown-target", where, "no such event in this workspace and "
                            "universe", "MS-ING-016")]
    elif status == "target-is-correction":
        problems = [Problem("invalid-correction", where, "a correction cannot correct a "
                            "correction", "MS-ING-017")]
    else:
        problems = [Problem("invalid-correction", "/subject", "a correction has its target's "
                            "subject", "MS-ING-011")]
    return [msgspec.structs.replace(p, event_id=event.id) for p in problems]


def instant_of(seconds: int, nanos: int) -> Instant:
    return seconds * NANOS_PER_SECOND + nanos
