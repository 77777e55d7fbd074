"""Durable ingestion (issue 14): an event log and its seen index in a database, so that no
duplicate is ever billed twice, with the readings computed from what the store holds.

    store = open_store("duckdb:events.duckdb")          # the embedded default
    store = open_store("postgresql://host/db?schema=x")  # a server, concurrent writers

Backends: meterspec.store.duckdb (one file, one writer at a time) and
meterspec.store.postgres (psycopg 3; uniqueness enforced by the database). The semantics are
specs/ingestion.md's, unchanged; meterspec.store.base holds what both share.
"""

from __future__ import annotations

from meterspec.store.base import BatchResult, Store, StoreError
from meterspec.store.batch import Batch
from meterspec.store.schema import LATEST

__all__ = ["LATEST", "Batch", "BatchResult", "Store", "StoreError", "open_store"]

SCHEMES = ("duckdb:", "postgresql://", "postgres://")


def open_store(url: str, *, read_only: bool = False) -> Store:
    """The store a URL names: `duckdb:PATH`, `duckdb::memory:`, `postgresql://...` (an
    optional `schema=NAME` query parameter names the PostgreSQL schema, default meterspec).
    StoreError if it cannot be opened."""
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
