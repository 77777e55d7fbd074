"""Durable ingestion (issue 14): an event log and its seen index in a database, so that no
duplicate is ever billed twice, with the readings computed from what the store holds.

    store = open_store("duckdb:events.duckdb")          # the embedded default
    store = open_store("postgresql://host/db?schema=x")  # a server, concurrent writers

Backends: meterspec.store.duckdb (one file, one writer at a time) and
meterspec.store.postgres (psycopg 3; uniqueness enforced by the database); what both share,
the Store interface and StoreError are in meterspec.store.base. The semantics are
specs/ingestion.md's, unchanged. This module imports nothing heavy: `meterspec` registers the
store's commands through it at every start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meterspec.store.base import Store

__all__ = ["SCHEMES", "open_store"]

SCHEMES = ("duckdb:", "postgresql://", "postgres://")


def open_store(url: str, *, read_only: bool = False) -> Store:
    """The store a URL names: `duckdb:PATH`, `duckdb::memory:`, `postgresql://...` (an
    optional `schema=NAME` query parameter names the PostgreSQL schema, default meterspec).
    `read_only` (DuckDB) opens the file for reading only, beside other readers.
    meterspec.store.base.StoreError if it cannot be opened."""
    from meterspec.store.base import StoreError

    if url.startswith("duckdb:"):
        from meterspec.store.duckdb import DuckDBStore

        path = url[len("duckdb:"):]
        if not path:
            raise StoreError("duckdb: needs a path (duckdb:events.duckdb, duckdb::memory:)")
        return DuckDBStore(path, read_only=read_only)
    if url.startswith(("postgresql://", "postgres://")):
        from meterspec.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(f"unknown store {url!r}: use duckdb:PATH or postgresql://...")
