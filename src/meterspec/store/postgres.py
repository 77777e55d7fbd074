"""The server store: PostgreSQL through psycopg 3 (`postgresql://...`, `?schema=NAME` for the
schema that holds the tables, default meterspec), for many writers at once.

The database decides every claim: a batch inserts its candidates into the seen index with
INSERT ... ON CONFLICT DO NOTHING RETURNING, in identity order (so two writers lock shared
identities in one order), and only the identities it returned are this batch's to accept. An
identity another writer holds, committed or not, makes the insert wait for that writer and then
skip it: never a read-then-write race. A deadlock or serialization failure rolls the batch back
and it is retried whole (nothing of it stays behind), a few times, inside: the user sees
outcomes, not retries. A batch arrives with COPY (binary). Expiry takes an exclusive advisory
lock that ingestion shares, so no batch straddles a change of horizon.

Identity-like columns are bytea (UTF-8): `text` cannot hold U+0000, and bytea orders by code
point whatever the database's collation (MS-ING-007, MS-ING-014).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from meterspec.errors import first_line
from meterspec.store.base import CHUNK_ROWS, Store, StoreError
from meterspec.store.batch import Batch
from meterspec.store.schema import Dialect
from meterspec.timestamps import Instant

DEFAULT_SCHEMA = "meterspec"
RETRIES = 8
LOCK_SPACE = 0x6D657465  # "mete": this module's advisory locks, keyed by schema
RETRYABLE = ("40001", "40P01")  # serialization_failure, deadlock_detected


class _RetryError(Exception):
    """A transaction the database rolled back to resolve contention: run it again."""


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError("a PostgreSQL store needs psycopg 3: pip install "
                         "'meterspec[postgres]'") from None
    return psycopg


def split_url(url: str) -> tuple[str, str]:
    """(the connection URL for libpq, the schema): `schema` is meterspec's own parameter."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), DEFAULT_SCHEMA)
    if not schema.replace("_", "").isalnum() or not schema.isascii() or schema[0].isdigit():
        raise StoreError(f"schema={schema!r}: letters, digits and '_' only")
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema.lower()


class PostgresStore(Store):
    """A store in one schema of a PostgreSQL database."""

    dialect: Dialect = "postgres"

    def __init__(self, url: str) -> None:
        self._pg = _psycopg()
        self.url = url
        conninfo, self.schema = split_url(url)
        try:
            self._con = self._pg.connect(conninfo, autocommit=True,
                                         application_name="meterspec")
        except self._pg.Error as error:
            raise StoreError(f"cannot connect to {_shown(url)}: {first_line(error)}") from None
        self._lock_key = hash_key(self.schema)
        self._run(f"SET search_path TO {self.schema}")

    def close(self) -> None:
        self._con.close()

    def _run(self, sql: str, params: Sequence[object] | None = None) -> Any:
        try:
            return self._con.execute(sql, params)
        except self._pg.Error as error:
            if getattr(error, "sqlstate", None) in RETRYABLE:
                raise _RetryError(str(error)) from None
            raise _store_error(self.url, error) from None

    def _execute(self, sql: str) -> None:
        self._run(sql)

    def _query(self, sql: str) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = self._run(sql).fetchall()
        return rows

    def _stream(self, sql: str) -> Iterator[list[tuple[object, ...]]]:
        inside = self._con.info.transaction_status != self._pg.pq.TransactionStatus.IDLE
        if not inside:
            self._run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            with self._con.cursor(name=f"meterspec_{random.getrandbits(48):x}") as cursor:
                cursor.execute(sql)
                while rows := cursor.fetchmany(CHUNK_ROWS):
                    yield rows
        except self._pg.Error as error:
            raise _store_error(self.url, error) from None
        finally:
            if not inside and not self._con.closed:
                self._con.execute("COMMIT")

    def _begin(self) -> None:
        self._run("BEGIN")

    def _commit(self) -> None:
        self._run("COMMIT")

    def _rollback(self) -> None:
        if not self._con.closed and not self._con.broken:
            with suppress(self._pg.Error):  # the error being handled is the one to report
                self._con.execute("ROLLBACK")

    def _now(self) -> str:
        return str(self._query("SELECT to_char(now() AT TIME ZONE 'UTC', "
                               "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")[0][0])

    def _tables(self) -> set[str]:
        rows = self._run("SELECT table_name FROM information_schema.tables WHERE "
                         "table_schema = %s", (self.schema,)).fetchall()
        return {str(row[0]) for row in rows}

    def _lock_schema(self) -> None:
        self._run("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, self._lock_key))
        self._run(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[object]]) -> None:
        if not rows:
            return
        marks = ", ".join("%s" for _ in columns)
        try:
            with self._con.cursor() as cursor:
                cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) "
                                   f"VALUES ({marks})", rows)
        except self._pg.Error as error:
            if getattr(error, "sqlstate", None) in RETRYABLE:
                raise _RetryError(str(error)) from None
            raise _store_error(self.url, error) from None

    def _ident(self, text: str) -> object:
        return text.encode()

    def _next_batch(self) -> int:
        return int(str(self._query("SELECT nextval('batch_numbers')")[0][0]))

    def _lock_for_ingest(self) -> None:
        self._run("SELECT pg_advisory_xact_lock_shared(%s, %s)",
                  (LOCK_SPACE, self._lock_key))

    def _lock_for_expire(self) -> None:
        self._run("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, self._lock_key))

    def expire(self, before: Instant) -> int:
        for attempt in range(RETRIES):
            try:
                return super().expire(before)
            except _RetryError:
                _pause(attempt)
        raise StoreError(f"{_shown(self.url)}: expiry kept conflicting; try again")

    def ingest(self, batch: Batch, source: str = "", *, detail: bool = False) -> Any:
        """One transaction per batch, retried whole after a deadlock or a serialization
        failure (the database rolled it back, so nothing of it stayed)."""
        for attempt in range(RETRIES):
            try:
                return super().ingest(batch, source, detail=detail)
            except _RetryError:
                _pause(attempt)
        raise StoreError(f"{_shown(self.url)}: the batch kept conflicting with other writers "
                         f"({RETRIES} tries); nothing of it was stored: send it again")

    def _stage(self, batch: Batch) -> None:
        self._execute("CREATE TEMPORARY TABLE incoming (pos bigint, workspace_id bytea, "
                      "universe_id bytea, id bytea, type bytea, subject bytea, "
                      "time_ns numeric(38,0), digest bytea, payload text)")
        self._execute("CREATE TEMPORARY TABLE incoming_corrections (pos bigint, kind text, "
                      "target_id bytea, shape_ok boolean, properties text)")
        payloads = batch.payloads
        try:
            with self._con.cursor() as cursor:
                with cursor.copy("COPY incoming FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["int8", "bytea", "bytea", "bytea", "bytea", "bytea",
                                    "numeric", "bytea", "text"])
                    write = copy.write_row
                    for column, (position, ws, uni, ident, kind, subject, seconds, nanos,
                                 digest) in enumerate(zip(
                            batch.positions, batch.workspace_ids, batch.universe_ids,
                            batch.ids, batch.types, batch.subjects, batch.seconds,
                            batch.nanos, batch.digests, strict=True)):
                        write((position, ws.encode(), uni.encode(), ident.encode(),
                               kind.encode(), subject.encode(), seconds * 1_000_000_000 + nanos,
                               digest, payloads[column].decode()))
                if batch.correction_positions:
                    with cursor.copy("COPY incoming_corrections FROM STDIN "
                                     "(FORMAT BINARY)") as copy:
                        copy.set_types(["int8", "text", "bytea", "bool", "text"])
                        for row in zip(batch.correction_positions, batch.correction_kinds,
                                       batch.correction_targets, batch.correction_shapes,
                                       batch.correction_properties, strict=True):
                            copy.write_row((row[0], row[1],
                                            None if row[2] is None else row[2].encode(),
                                            row[3], row[4]))
        except self._pg.Error as error:
            if getattr(error, "sqlstate", None) in RETRYABLE:
                raise _RetryError(str(error)) from None
            raise _store_error(self.url, error) from None
        self._execute("CREATE INDEX ON incoming (workspace_id, universe_id, id)")
        self._execute("ANALYZE incoming")

    def _claim(self, candidates: str) -> None:
        self._execute(f"CREATE TEMPORARY TABLE candidates AS {candidates}")
        self._execute("CREATE TEMPORARY TABLE claimed (pos bigint)")
        self._execute(
            "WITH inserted AS (INSERT INTO seen (workspace_id, universe_id, id, digest, "
            "time_ns) SELECT i.workspace_id, i.universe_id, i.id, i.digest, i.time_ns "
            "FROM candidates c JOIN incoming i ON i.pos = c.pos "
            "ORDER BY i.workspace_id, i.universe_id, i.id ON CONFLICT DO NOTHING "
            "RETURNING workspace_id, universe_id, id) "
            "INSERT INTO claimed SELECT i.pos FROM inserted s JOIN incoming i ON "
            "i.workspace_id = s.workspace_id AND i.universe_id = s.universe_id AND "
            "i.id = s.id JOIN candidates c ON c.pos = i.pos")

    def _drop_temporary(self) -> None:
        if self._con.closed or self._con.broken:
            return
        with suppress(self._pg.Error):  # after a failure: the failure is what to report
            self._con.execute("DROP TABLE IF EXISTS incoming, incoming_corrections, "
                              "candidates, claimed, outcomes")

    def export_parquet(self, path: str, effective: bool = False) -> int:
        """The log (or the effective events) as a Parquet file, in log order (pyarrow)."""
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise StoreError("Parquet export needs pyarrow: pip install "
                             "'meterspec[postgres]'") from None
        names = (["seq", "workspace_id", "universe_id", "id", "type", "subject", "time_ns",
                  "amended_properties", "payload"] if effective else
                 ["seq", "batch", "workspace_id", "universe_id", "id", "type", "subject",
                  "time_ns", "digest", "payload"])
        source = ("SELECT seq, workspace_id, universe_id, id, type, subject, time_ns, "
                  "amended_properties, payload FROM effective_events ORDER BY seq"
                  if effective else
                  "SELECT seq, batch, workspace_id, universe_id, id, type, subject, time_ns, "
                  "upper(encode(digest, 'hex')), payload FROM events ORDER BY seq")
        types = {"seq": pa.int64(), "batch": pa.int64(), "time_ns": pa.decimal128(38, 0)}
        schema = pa.schema([(name, types.get(name, pa.string())) for name in names])
        written = 0
        with pq.ParquetWriter(path, schema) as writer:
            for rows in self._stream(source):
                columns = list(zip(*rows, strict=True))
                arrays = [pa.array([self._text(v) if isinstance(v, bytes) else v
                                    for v in column], schema.field(i).type)
                          for i, column in enumerate(columns)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                written += len(rows)
        return written


def hash_key(text: str) -> int:
    """A stable 31-bit key for the advisory lock of one schema."""
    value = 0
    for byte in text.encode():
        value = (value * 131 + byte) % 2_147_483_647
    return value


def _pause(attempt: int) -> None:
    time.sleep(min(0.5, 0.01 * 2 ** attempt) * (0.5 + random.random()))


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))



def _store_error(url: str, error: BaseException) -> StoreError:
    state = getattr(error, "sqlstate", None) or ""
    text = first_line(error)
    if state == "25006":
        return StoreError(f"cannot write {_shown(url)}: the database is read-only ({text})")
    if state.startswith("53"):
        return StoreError(f"cannot write {_shown(url)}: the server is out of resources "
                          f"({text}); the batch was not stored")
    if state.startswith("08") or state == "57P01":
        return StoreError(f"lost the connection to {_shown(url)} ({text}); a batch not "
                          "acknowledged was not stored: send it again")
    if state == "42501":
        return StoreError(f"{_shown(url)}: permission denied ({text})")
    return StoreError(f"{_shown(url)}: {text}")
