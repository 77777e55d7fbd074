"""Group commit (meterspec.server.app.GroupCommit): batches merged into one transaction get,
event by event, the outcomes and problems they get when ingested one after the other
(MS-ING-006, MS-HTTP-003): a hypothesis property over batches with repeats, conflicts,
corrections and bad lines, on two DuckDB stores."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.server import events_body
from meterspec.store import open_store
from meterspec.store.batch import Batch

LINES = st.one_of(
    st.builds(lambda i, n: json.dumps({
        "id": f"e{i}", "workspaceID": "acme", "universeID": "prod", "type": "api",
        "subject": "c1", "time": "2024-01-01T00:00:00Z", "properties": {"n": str(n)}}),
        st.integers(0, 6), st.integers(0, 1)),
    st.builds(lambda i: json.dumps({
        "id": f"r{i}", "workspaceID": "acme", "universeID": "prod", "type": "meterspec.retract",
        "subject": "c1", "time": "2024-01-02T00:00:00Z",
        "properties": {"meterspec.target": f"e{i}"}}), st.integers(0, 6)),
    st.sampled_from(['{"id": ""}', "{not json", '{"id":"x","id":"y"}']))


def _batch(lines: list[str]) -> Batch:
    body = "\n".join(lines).encode()
    return events_body.batch_of("application/x-ndjson", body, "acme", "prod")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(LINES, min_size=1, max_size=6), min_size=1, max_size=4))
def test_merged_batches_decide_as_batches_in_turn(batches: list[list[str]]) -> None:
    alone, grouped = open_store("duckdb::memory:"), open_store("duckdb::memory:")
    try:
        for store in (alone, grouped):
            store.require_current(create=True)
        one_by_one = []
        for lines in batches:
            batch = _batch(lines)
            result = alone.ingest(batch, "http", detail=True)
            one_by_one.append(events_body.answer(batch, events_body.split([batch], result)[0]))
        parts = [_batch(lines) for lines in batches]
        merged = grouped.ingest(events_body.merge(parts), "http", detail=True)
        together = [events_body.answer(batch, decided) for batch, decided
                    in zip(parts, events_body.split(parts, merged), strict=True)]
        assert together == one_by_one
        assert list(grouped.log_chunks()) == list(alone.log_chunks())
    finally:
        alone.close()
        grouped.close()
