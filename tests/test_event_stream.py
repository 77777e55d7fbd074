"""MS-ING-021: an event stream read from files counts each (workspaceID, universeID, id) once.
An identical repeat (same MS-ING-002 digest) is a duplicate; another digest is an
event-conflict and the first event is the one that counts. The deduplicator keeps two integers
per identity, never the events, and agrees with meterspec.ingestion.ingest."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import pytest
from conftest import timestamps
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from meterspec.contracts import EventPayload
from meterspec.errors import MeterspecError
from meterspec.event_stream import EventDeduplicator, identity_key, payload_hash
from meterspec.ingestion import event_digest
from meterspec.timestamps import parse_timestamp


def _event(**changes: object) -> EventPayload:
    base = EventPayload(id="evt_1", workspace_id="acme", universe_id="prod", type="api_call",
                        subject="customer:42", time="2024-01-15T10:30:00+01:00",
                        properties={"region": "eu", "endpoint": "/v1/x"})
    return replace(base, **changes)


def add(dedup: EventDeduplicator, event: EventPayload) -> str:
    """What `run` does per valid event: parse its time, then ask."""
    return dedup.add(event, parse_timestamp(event.time))


names = st.text(min_size=1, max_size=8)
texts = st.one_of(st.text(max_size=8), st.sampled_from(["1", "1.0", "é", "😀", "a:b", "0"]))


@given(names, names, names, names, names, timestamps(), timestamps(),
       st.dictionaries(st.text(max_size=6), texts, max_size=4),
       st.dictionaries(st.text(max_size=6), texts, max_size=4))
def test_payloads_are_equal_exactly_when_their_digests_are(
        ident: str, workspace: str, universe: str, kind: str, subject: str, time: str,
        other_time: str, properties: dict[str, str], other: dict[str, str]) -> None:
    """MS-ING-002 by value: the hash compared is equal exactly when the digest is (for the
    pairs drawn here, where a 64-bit collision is out of reach)."""
    first = EventPayload(ident, workspace, universe, kind, subject, time, properties)
    for second in (replace(first, time=other_time), replace(first, properties=other),
                   replace(first, subject=subject + "x"), replace(first, type=kind + "x"),
                   replace(first, properties=dict(reversed(properties.items())))):
        same_digest = event_digest(first) == event_digest(second)
        same_hash = payload_hash(first, parse_timestamp(first.time)) == payload_hash(
            second, parse_timestamp(second.time))
        assert same_digest == same_hash


def test_an_identical_repeat_is_a_duplicate_however_it_is_spelt() -> None:
    """MS-ING-021 with MS-ING-002: the offset and the key order do not make another event."""
    dedup = EventDeduplicator()
    assert add(dedup, _event()) == "new"
    assert add(dedup, _event(time="2024-01-15T09:30:00.000Z")) == "duplicate"
    assert add(dedup, _event(properties={"endpoint": "/v1/x", "region": "eu"})) == "duplicate"
    assert (dedup.duplicates, dedup.conflicts, len(dedup)) == (2, 0, 1)


@pytest.mark.parametrize("changes", [
    {"type": "other"}, {"subject": "customer:43"}, {"time": "2024-01-15T10:30:00.000000001Z"},
    {"properties": {"region": "eu"}}, {"properties": {"region": "eu", "endpoint": "/v1/y"}},
    {"properties": {"region": "eu", "endpoint": "/v1/x", "more": ""}}, {"properties": {}},
])
def test_another_digest_is_a_conflict_and_the_first_counts(changes: dict[str, object]) -> None:
    """MS-ING-021: event-conflict at path '' with the event's id; the first payload stays."""
    dedup = EventDeduplicator()
    assert add(dedup, _event()) == "new"
    with pytest.raises(MeterspecError) as caught:
        add(dedup, _event(**changes))
    [problem] = caught.value.problems
    assert (problem.code, problem.path, problem.requirement, problem.event_id) == (
        "event-conflict", "", "MS-ING-021", "evt_1")
    assert event_digest(_event(**changes)) in problem.message
    assert add(dedup, _event()) == "duplicate"  # the first one is still the one known
    with pytest.raises(MeterspecError):
        add(dedup, _event(**changes))
    assert (dedup.duplicates, dedup.conflicts, len(dedup)) == (1, 2, 1)


@pytest.mark.parametrize("changes", [
    {"id": "evt_2"}, {"workspace_id": "acme2"}, {"universe_id": "prod2"},
])
def test_identity_is_workspace_universe_and_id(changes: dict[str, object]) -> None:
    """MS-ING-001: the whole triple; another tenant's event with the same id is its own."""
    dedup = EventDeduplicator()
    assert add(dedup, _event()) == "new"
    assert add(dedup, _event(**changes, subject="someone else")) == "new"


def test_identity_fields_cannot_run_into_each_other() -> None:
    dedup = EventDeduplicator()
    assert add(dedup, _event(workspace_id="ab", universe_id="c")) == "new"
    assert add(dedup, _event(workspace_id="a", universe_id="bc")) == "new"
    assert add(dedup, _event(universe_id="x", id="y:z")) == "new"
    assert add(dedup, _event(universe_id="x:y", id="z")) == "new"


@given(st.text(), st.text(), st.text())
def test_identity_key_is_the_keyed_hash_of_the_triple(workspace: str, universe: str,
                                                       ident: str) -> None:
    """A tuple, so fields cannot run into each other; Python's keyed hash, so the key of a
    forked reader equals the parent's (meterspec.parallel)."""
    assert identity_key(_event(workspace_id=workspace, universe_id=universe, id=ident)) == (
        hash((workspace, universe, ident)))


def test_a_key_collision_is_a_reported_conflict_not_a_silent_drop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two identities forced onto one key: the second is an event-conflict (visible)."""
    from meterspec import event_stream

    monkeypatch.setattr(event_stream, "identity_key", lambda event: 7)
    dedup = EventDeduplicator()
    assert add(dedup, _event()) == "new"
    with pytest.raises(MeterspecError) as caught:
        add(dedup, _event(id="evt_other"))
    assert caught.value.problems[0].code == "event-conflict"


@given(st.lists(st.integers(0, 5), max_size=30))
def test_outcomes_are_those_of_ingesting_the_stream(picks: list[int]) -> None:
    """The deduplicator agrees with meterspec.ingestion.ingest on any sequence of events
    drawn from a few identities and payloads: new = accepted, duplicate, conflict."""
    from meterspec.ingestion import ingest

    pool = [_event(), _event(time="2024-01-15T09:30:00Z"), _event(id="evt_2"),
            _event(id="evt_2", properties={}), _event(workspace_id="other"), _event(type="x")]
    events = [pool[i] for i in picks]
    dedup = EventDeduplicator()
    outcomes = []
    for event in events:
        try:
            outcomes.append({"new": "accepted", "duplicate": "duplicate"}[add(dedup, event)])
        except MeterspecError:
            outcomes.append("conflict")
    assert tuple(outcomes) == ingest(events).outcomes
    assert dedup.duplicates == outcomes.count("duplicate")
    assert dedup.conflicts == outcomes.count("conflict")


def test_events_are_not_kept() -> None:
    """Millions of events must fit: memory per identity is two integers in a dict, far below
    an event's own size, which the deduplicator must not keep alive."""
    count = 20_000

    def stream() -> Iterator[EventPayload]:
        for index in range(count):
            yield _event(id=f"evt_{index:08d}", subject=f"customer:{index}" + "x" * 200)

    dedup = EventDeduplicator()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for item in stream():
            add(dedup, item)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(dedup) == count
    assert (after - before) / count < 200
