"""meterspec.store.batch: the fast path that checks and digests a line gives exactly what the
careful path gives (the problems of a rejected line, the identity, instant and MS-ING-002
digest of an accepted one), and both agree with meterspec.ingestion.ingest's `rejected`."""

from __future__ import annotations

import json

import pytest
from conftest import timestamps
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.contracts import EventPayload
from meterspec.errors import MeterspecError
from meterspec.ids import encode_fields
from meterspec.ingestion import DIGEST_TAG, event_digest, ingest
from meterspec.store.batch import _TAG, Batch, digest
from meterspec.timestamps import parse_timestamp


def _line(**changes: object) -> bytes:
    event: dict[str, object] = {"id": "evt_1", "workspaceID": "acme", "universeID": "prod",
                                "type": "api_call", "subject": "customer:42",
                                "time": "2024-01-15T10:30:00+01:00",
                                "properties": {"region": "eu", "endpoint": "/v1/x"}}
    event.update(changes)
    return json.dumps({k: v for k, v in event.items() if v is not None},
                      ensure_ascii=False).encode()


def test_the_tag_is_the_encoded_digest_tag() -> None:
    assert _TAG.encode() == encode_fields((DIGEST_TAG,))


def test_the_worked_example_of_ms_ing_002() -> None:
    batch = Batch()
    batch.add(1, _line())
    assert batch.digests[0].hex() == (
        "567d77930f4a2aa5f28328a8992f23f391a13f13d2077e8302253d74ec76648c")


names = st.text(min_size=1, max_size=8)
texts = st.one_of(st.text(max_size=8), st.sampled_from(["1", "1.0", "é", "😀", "a:b", "0"]))


@given(names, names, names, names, names, timestamps(),
       st.dictionaries(st.text(max_size=6), texts, max_size=4))
def test_the_fast_digest_is_the_ms_ing_002_digest(
        ident: str, workspace: str, universe: str, kind: str, subject: str, time: str,
        properties: dict[str, str]) -> None:
    event = EventPayload(ident, workspace, universe, kind, subject, time, properties)
    assert digest(event, parse_timestamp(time)).hex() == event_digest(event)


@pytest.mark.parametrize("time", [
    "2024-01-15T09:30:00Z", "2024-01-15T09:30:00.5Z", "2024-01-15T09:30:00.500Z",
    "2024-01-15T09:30:00.000000000Z", "2024-01-15t09:30:00z", "2024-01-15T10:30:00+01:00",
    "2024-01-15T09:30:00.1234567890Z", "2024-01-15T09:30:00.123456789Z",
])
def test_every_spelling_of_a_time_digests_as_its_canonical_form(time: str) -> None:
    batch = Batch()
    batch.add(1, _line(time=time))
    assert batch.digests[0].hex() == event_digest(EventPayload(
        "evt_1", "acme", "prod", "api_call", "customer:42", time,
        {"region": "eu", "endpoint": "/v1/x"}))


HOSTILE = [
    b"", b"{", b"[]", b"null", b'"x"', b"{}",
    _line(id=""), _line(subject=""), _line(time="2024-02-30T00:00:00Z"),
    _line(time="2024-01-15T10:30:00.1234567891Z"), _line(time=5), _line(properties=None),
    _line(properties={"a": 1}), _line(extra="x"), _line(id="é\u0000"),
    _line().replace(b'"id":"evt_1"', b'"id":"evt_1","id":"evt_2"'),
    _line().replace(b'"evt_1"', b'"evt_\\u0031"'),
    _line(type="meterspec.retract"), _line(type="meterspec.retract",
                                           properties={"meterspec.target": "evt_0"}),
    _line(type="meterspec.amend", properties={"meterspec.target": ""}),
    _line(type="meterspec.amend", properties={"meterspec.target": "evt_1"}),
    _line(type="meterspec.undo", properties={"meterspec.target": "evt_0"}),
    _line(type="meterspec.amend", properties={"meterspec.target": "e", "meterspec.x": "1"}),
    _line(properties={"meterspec.target": "evt_0"}),
    b" " + _line() + b" ", _line().replace(b":", b" : "),
]


@settings(max_examples=150)
@given(st.lists(st.one_of(st.sampled_from(HOSTILE), st.builds(
    lambda i, t, p: _line(id=f"evt_{i}", time=t, properties=p),
    st.integers(0, 3), timestamps(), st.dictionaries(st.sampled_from(["a", "b", "é"]), texts,
                                                     max_size=2))), max_size=12))
def test_a_batch_rejects_and_digests_as_ingest_does(lines: list[bytes]) -> None:
    """Every line: rejected with the problems ingest() finds (a line that is no event at all
    with its decoding problems), or accepted with ingest's identity, instant and digest."""
    from meterspec.codec import decode_event

    batch = Batch()
    for number, line in enumerate(lines, 1):
        batch.add(number, line)
    assert batch.size == len(lines)
    rejected = dict(batch.rejected)
    columns = dict(zip(batch.positions, range(len(batch.positions)), strict=True))
    for position, line in enumerate(lines):
        try:
            event = decode_event(line)
        except MeterspecError as error:
            assert rejected[position].problems == error.problems
            continue
        result = ingest([event])
        if result.rejected:
            assert rejected[position].problems == result.rejected[0].problems
            continue
        assert position not in rejected
        column = columns[position]
        assert (batch.workspace_ids[column], batch.universe_ids[column],
                batch.ids[column]) == (event.workspace_id, event.universe_id, event.id)
        assert batch.seconds[column] * 10**9 + batch.nanos[column] == parse_timestamp(
            event.time)
        assert batch.digests[column].hex() == event_digest(event)
        assert batch.payloads[column] == line


def test_corrections_are_indexed_with_their_target_and_amended_properties() -> None:
    batch = Batch()
    batch.add(7, _line(id="a_1", type="meterspec.amend",
                       properties={"meterspec.target": "evt_1", "tokens": "9", "b": "é"}))
    batch.add(8, _line(id="r_1", type="meterspec.retract",
                       properties={"meterspec.target": "evt_2"}))
    assert batch.correction_positions == [0, 1]
    assert batch.correction_kinds == ["amend", "retract"]
    assert batch.correction_targets == ["evt_1", "evt_2"]
    assert batch.correction_properties == ['{"b":"é","tokens":"9"}', "{}"]
    assert batch.correction_shapes == [True, True]
    assert batch.numbers == [7, 8]


def test_a_log_keeps_a_malformed_correction_marked_as_such() -> None:
    """add_logged: a log read from elsewhere may hold one (MS-ING-013 lists it ineffective);
    ingesting rejects it (MS-ING-012)."""
    line = _line(type="meterspec.retract")
    logged, ingested = Batch(), Batch()
    logged.add_logged(1, line)
    ingested.add(1, line)
    assert logged.correction_shapes == [False] and logged.correction_targets == [None]
    assert [p.code for _, e in ingested.rejected for p in e.problems] == ["missing-field"]


def _columns(batch: Batch) -> tuple[object, ...]:
    return (batch.size, batch.numbers, batch.positions, batch.workspace_ids,
            batch.universe_ids, batch.ids, batch.types, batch.subjects, batch.seconds,
            batch.nanos, batch.digests, batch.payloads, batch.correction_positions,
            batch.correction_columns, batch.correction_kinds, batch.correction_targets,
            batch.correction_properties, batch.correction_shapes,
            [(p, e.problems) for p, e in batch.rejected])


@settings(max_examples=150)
@given(st.lists(st.one_of(st.sampled_from([*HOSTILE, b"", b"  \t", None]), st.builds(
    lambda i, t, p: _line(id=f"evt_{i}", time=t, properties=p),
    st.integers(0, 3), timestamps(), st.dictionaries(st.sampled_from(["a", "b", "é", "c:d"]),
                                                     texts, max_size=3))), max_size=12),
       st.integers(1, 5))
def test_the_hot_loop_fills_a_batch_exactly_as_add_does(lines: list[bytes | None],
                                                        limit: int) -> None:
    """Batch.fill (meterspec ingest's loop) == Batch.add line by line: blank lines skipped, a
    line too long (None) rejected as line-too-long, batches cut after `limit` events."""
    from meterspec.lines import is_blank, line_too_long

    numbered = list(enumerate(lines, 1))
    filled: list[Batch] = []
    source = iter(numbered)
    more = True
    while more:
        filled.append(Batch())
        more = filled[-1].fill(source, limit)
    added: list[Batch] = [Batch()]
    for number, text in numbered:
        if text is None:
            added[-1].reject(number, line_too_long())
        elif not is_blank(text):
            added[-1].add(number, text)
        else:
            continue
        if added[-1].size >= limit:
            added.append(Batch())
    assert [_columns(b) for b in filled if b.size] == [_columns(b) for b in added if b.size]
