"""Shared by the store's tests: a fresh store of each backend, event lines, and the reference
answers (meterspec.ingestion) to compare a store with."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterspec.codec import decode_event
from meterspec.contracts import EventPayload
from meterspec.errors import MeterspecError
from meterspec.ingestion import IngestResult, SeenState, ingest

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["duckdb", "postgres"]


def store_url(backend: str, request: pytest.FixtureRequest, folder: Path) -> str:
    """A URL naming an empty store of the backend: a new DuckDB file, or a new schema in
    the session's PostgreSQL cluster."""
    pytest.importorskip("duckdb" if backend == "duckdb" else "psycopg")
    if backend == "duckdb":
        return f"duckdb:{folder / f'store-{uuid.uuid4().hex[:8]}.duckdb'}"
    base = request.getfixturevalue("postgres_url")
    return f"{base}?schema=t_{uuid.uuid4().hex[:12]}"


def line(ident: str = "evt_1", **changes: object) -> bytes:
    """An event line (json.dumps spelling); None drops a member."""
    event: dict[str, object] = {"id": ident, "workspaceID": "acme", "universeID": "prod",
                                "type": "api_call", "subject": "customer:42",
                                "time": "2024-01-15T10:30:00Z",
                                "properties": {"calls": "1"}}
    event.update(changes)
    return json.dumps({k: v for k, v in event.items() if v is not None},
                      ensure_ascii=False).encode()


def reference(lines: list[bytes], state: SeenState) -> tuple[IngestResult, list[int]]:
    """ingest() on the lines that decode; the position of each of its events in `lines`."""
    events: list[EventPayload] = []
    positions: list[int] = []
    for position, text in enumerate(lines):
        try:
            events.append(decode_event(text))
        except MeterspecError:
            continue
        positions.append(position)
    return ingest(events, state), positions


def chunks_lines(chunks: Iterator[bytes]) -> list[bytes]:
    return [text for chunk in chunks for text in chunk.splitlines()]
