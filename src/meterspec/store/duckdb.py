"""The embedded store: one DuckDB file (`duckdb:PATH`; `duckdb::memory:` for a store that
lives as long as the process). DuckDB lets one process write a file at a time, so claims are
an anti-join against the seen index inside the batch's transaction; the seen index's primary
key still makes the database refuse a second entry for one identity.

A batch reaches DuckDB as one Arrow table (its columns, built by meterspec.store.batch), so
the only per-event work in Python is checking and digesting the line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import suppress
from typing import Any

from meterspec.errors import first_line
from meterspec.store.base import CHUNK_ROWS, Store, StoreError
from meterspec.store.batch import Batch
from meterspec.store.schema import Dialect

MEMORY = ":memory:"


def _modules() -> tuple[Any, Any]:
    try:
        import duckdb
        import pyarrow
    except ImportError as error:
        raise StoreError(f"a DuckDB store needs {error.name}: pip install "
                         "'meterspec[duckdb]'") from None
    return duckdb, pyarrow


class DuckDBStore(Store):
    """A store in one DuckDB file."""

    dialect: Dialect = "duckdb"

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        duckdb, self._arrow = _modules()
        self.url = f"duckdb:{path}"
        self.path = path
        self._error = duckdb.Error
        if path != MEMORY and read_only and not os.path.exists(path):
            raise StoreError(f"{self.url}: no such file")
        try:
            self._con = duckdb.connect(path, read_only=read_only,
                                       config={"preserve_insertion_order": True})
        except duckdb.Error as error:
            text = first_line(error)
            if "lock" in text.lower():
                raise StoreError(f"cannot open {self.url}: another process has it open "
                                 f"(DuckDB lets one process write a file at a time): {text}"
                                 ) from None
            raise StoreError(f"cannot open {self.url}: {text}") from None
        except OSError as error:
            raise StoreError(f"cannot open {self.url}: {error.strerror or error}") from None

    def close(self) -> None:
        try:
            self._con.close()
        except self._error as error:
            raise StoreError(f"cannot close {self.url}: {first_line(error)}") from None

    def _run(self, sql: str, *args: Any) -> Any:
        try:
            return self._con.execute(sql, *args)
        except self._error as error:
            raise _store_error(self.url, error) from None

    def _execute(self, sql: str) -> None:
        self._run(sql)

    def _query(self, sql: str) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = self._run(sql).fetchall()
        return rows

    def _stream(self, sql: str) -> Iterator[list[tuple[object, ...]]]:
        cursor = self._con.cursor()  # its own cursor: the caller may query while reading
        try:
            try:
                cursor.execute(sql)
                while rows := cursor.fetchmany(CHUNK_ROWS):
                    yield rows
            except self._error as error:
                raise _store_error(self.url, error) from None
        finally:
            cursor.close()

    def _log_order(self) -> str:
        return ""  # one writer appending batches in seq order: insertion order is log order

    def _begin(self) -> None:
        self._run("BEGIN TRANSACTION")

    def _commit(self) -> None:
        self._run("COMMIT")

    def _rollback(self) -> None:
        with suppress(self._error):  # none left to roll back: DuckDB ends one that failed
            self._con.execute("ROLLBACK")

    def _now(self) -> str:
        return str(self._query("SELECT strftime(now() AT TIME ZONE 'UTC', "
                               "'%Y-%m-%dT%H:%M:%S.%fZ')")[0][0])

    def _tables(self) -> set[str]:
        return {str(row[0]) for row in self._query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_catalog = current_database()")}

    def _lock_schema(self) -> None:
        pass  # one writer per file

    def _lock_for_ingest(self) -> None:
        pass

    def _lock_for_expire(self) -> None:
        pass

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[object]]) -> None:
        if not rows:
            return
        marks = ", ".join("?" for _ in columns)
        try:
            self._con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                                  [list(row) for row in rows])
        except self._error as error:
            raise _store_error(self.url, error) from None

    def _next_batch(self) -> int:
        return int(str(self._query("SELECT coalesce(max(batch), 0) + 1 FROM batches")[0][0]))

    def _stage(self, batch: Batch) -> None:
        pa = self._arrow
        incoming = pa.table({
            "pos": pa.array(batch.positions, pa.int64()),
            "workspace_id": pa.array(batch.workspace_ids, pa.string()),
            "universe_id": pa.array(batch.universe_ids, pa.string()),
            "id": pa.array(batch.ids, pa.string()),
            "type": pa.array(batch.types, pa.string()),
            "subject": pa.array(batch.subjects, pa.string()),
            "seconds": pa.array(batch.seconds, pa.int64()),
            "nanos": pa.array(batch.nanos, pa.int64()),
            "digest": pa.array(batch.digests, pa.binary()),
            # checked as UTF-8 by the decoder already; Arrow checks again, in C
            "payload": pa.array(batch.payloads, pa.binary()).cast(pa.string()),
        })
        corrections = pa.table({
            "pos": pa.array(batch.correction_positions, pa.int64()),
            "kind": pa.array(batch.correction_kinds, pa.string()),
            "target_id": pa.array(batch.correction_targets, pa.string()),
            "shape_ok": pa.array(batch.correction_shapes, pa.bool_()),
            "properties": pa.array(batch.correction_properties, pa.string()),
        })
        self._con.register("incoming_arrow", incoming)
        self._con.register("incoming_corrections_arrow", corrections)
        try:
            self._execute(
                "CREATE TEMPORARY TABLE incoming AS SELECT pos, workspace_id, universe_id, id, "
                "type, subject, CAST(seconds AS DECIMAL(38,0)) * 1000000000 + nanos AS time_ns, "
                "digest, payload FROM incoming_arrow")
            self._execute("CREATE TEMPORARY TABLE incoming_corrections AS SELECT * FROM "
                          "incoming_corrections_arrow")
        finally:
            self._con.unregister("incoming_arrow")
            self._con.unregister("incoming_corrections_arrow")

    def _claim(self, candidates: str) -> None:
        self._execute(
            f"CREATE TEMPORARY TABLE claimed AS SELECT i.pos FROM ({candidates}) c "
            "JOIN incoming i ON i.pos = c.pos WHERE NOT EXISTS (SELECT 1 FROM seen s WHERE "
            "s.workspace_id = i.workspace_id AND s.universe_id = i.universe_id AND "
            "s.id = i.id)")
        self._execute("INSERT INTO seen (workspace_id, universe_id, id, digest, time_ns) "
                      "SELECT i.workspace_id, i.universe_id, i.id, i.digest, i.time_ns "
                      "FROM incoming i JOIN claimed c ON c.pos = i.pos")

    def _drop_temporary(self) -> None:
        for table in ("incoming", "incoming_corrections", "claimed", "outcomes"):
            with suppress(self._error):  # a failed connection: nothing to drop
                self._con.execute(f"DROP TABLE IF EXISTS temp.{table}")

    # ---------------------------------------------------------------- the engine's seam

    @property
    def connection(self) -> Any:
        """The store's DuckDB connection: the tables and views of meterspec.store.schema
        (`effective_events` above all) are there to be computed on in place."""
        return self._con

    def effective_table(self, name: str) -> int:
        """Materialise the effective events (MS-ING-013) as a temporary table `name` in the
        typed event layout of meterspec.engines.sources (one VARCHAR per member, `time` as
        written, `properties` a MAP, NULL for none), rows in log order: what an engine reads
        as a Table, in place, instead of the reference's stream (effective_chunks). The
        number of rows; refuses a log holding one identity twice (MS-ING-019)."""
        from meterspec.errors import MeterspecError

        conflicts = self.log_conflicts()
        if conflicts:
            raise MeterspecError(conflicts)
        members = ", ".join(f"json_extract_string(payload, '$.{member}') AS \"{member}\""
                            for member in ("id", "workspaceID", "universeID", "type",
                                           "subject", "time"))
        self._execute(
            f"CREATE OR REPLACE TEMPORARY TABLE {name} AS SELECT {members}, json_transform("
            "coalesce(amended_properties, json_extract(payload, '$.properties')), "
            "'\"MAP(VARCHAR, VARCHAR)\"') AS properties FROM effective_events ORDER BY seq")
        return int(str(self._query(f"SELECT count(*) FROM {name}")[0][0]))

    def export_parquet(self, path: str, effective: bool = False) -> int:
        """The log (or the effective events) as a Parquet file, in log order."""
        source = ("SELECT seq, workspace_id, universe_id, id, type, subject, time_ns, "
                  "amended_properties, payload FROM effective_events ORDER BY seq"
                  if effective else
                  "SELECT seq, batch, workspace_id, universe_id, id, type, subject, time_ns, "
                  "hex(digest) AS digest, payload FROM events")
        quoted = path.replace("'", "''")
        self._execute(f"COPY ({source}) TO '{quoted}' (FORMAT parquet)")
        return int(str(self._query(f"SELECT count(*) FROM read_parquet('{quoted}')")[0][0]))



def _store_error(url: str, error: BaseException) -> StoreError:
    text = first_line(error)
    lowered = text.lower()
    if "file too large" in lowered or "no space" in lowered or "disk" in lowered:
        return StoreError(f"cannot write {url}: the disk is full or the file size limit is "
                          f"reached ({text}); the batch was not stored")
    if "read-only" in lowered or "read only" in lowered or "permission" in lowered:
        return StoreError(f"cannot write {url}: it is read-only ({text})")
    return StoreError(f"{url}: {text}")
