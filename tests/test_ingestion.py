"""MS-ING-001..019: idempotent ingestion (identity, digest, outcomes, the seen state, retention)
and corrections (retract, amend) as events. Digests are recomputed here independently of
meterspec.ingestion; every expected outcome was worked out by hand."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
import referencing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterspec import cli
from meterspec.codec import STRUCTS, decode, encode
from meterspec.contracts import EventPayload, MeasurementSpec, MeteringConfig
from meterspec.errors import MeterspecError
from meterspec.ingestion import (
    AMEND,
    EMPTY,
    RECOMMENDED_RETENTION,
    RETRACT,
    TARGET,
    IngestionState,
    Seen,
    SeenEvent,
    SeenState,
    apply_corrections,
    event_digest,
    expire,
    ingest,
)
from meterspec.metering import meter
from meterspec.timestamps import parse_timestamp

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
PROPERTIES = settings(max_examples=200, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


def digest(fields: list[str]) -> str:
    """MS-ING-002 written independently: per field its UTF-8 length, ':', its bytes; SHA-256."""
    data = b"".join(str(len(f.encode())).encode() + b":" + f.encode() for f in fields)
    return hashlib.sha256(data).hexdigest()


def event(ident: str = "e1", *, ws: str = "acme", uni: str = "prod", type_: str = "api_call",
          subject: str = "customer:42", time: str = "2024-01-15T09:30:00Z",
          props: dict[str, str] | None = None) -> EventPayload:
    return EventPayload(ident, ws, uni, type_, subject, time, props or {})


def retract(ident: str, target: str, time: str = "2024-01-16T00:00:00Z",
            **kwargs: Any) -> EventPayload:
    return event(ident, type_=RETRACT, time=time, props={TARGET: target, **kwargs})


def amend(ident: str, target: str, props: dict[str, str],
          time: str = "2024-01-16T00:00:00Z", **kwargs: Any) -> EventPayload:
    return event(ident, type_=AMEND, time=time, props={TARGET: target, **props}, **kwargs)


def micros(text: str) -> int:
    return parse_timestamp(text)


# --- identity and digest (MS-ING-001, MS-ING-002) ------------------------------------------

SEED = EventPayload("evt_1", "acme", "prod", "api_call", "customer:42",
                    "2024-01-15T10:30:00+01:00", {"region": "eu", "endpoint": "/v1/x"})


def test_worked_example_digest_of_ms_ing_002() -> None:
    fields = ["meterspec/event/v1", "acme", "prod", "evt_1", "api_call", "customer:42",
              "2024-01-15T09:30:00Z", "2", "endpoint", "/v1/x", "region", "eu"]
    assert digest(fields) == ("567d77930f4a2aa5f28328a8992f23f391a13f13d2077e8302253d74ec766"
                              "48c")
    assert event_digest(SEED) == digest(fields)
    spec = (ROOT / "specs" / "ingestion.md").read_text()
    assert event_digest(SEED) in spec
    assert ("18:meterspec/event/v14:acme4:prod5:evt_18:api_call11:customer:4220:"
            "2024-01-15T09:30:00Z1:28:endpoint5:/v1/x6:region2:eu") in spec


@pytest.mark.parametrize("other", [
    msgspec.structs.replace(SEED, time="2024-01-15T09:30:00Z"),
    msgspec.structs.replace(SEED, time="2024-01-15t04:30:00-05:00"),
    msgspec.structs.replace(SEED, time="2024-01-15T09:30:00.000000000000Z"),  # zeros only
    msgspec.structs.replace(SEED, time="2024-01-15T09:30:00.000000000z"),
    msgspec.structs.replace(SEED, properties={"endpoint": "/v1/x", "region": "eu"}),
], ids=["utc", "new-york-offset", "nanoseconds", "zero-fraction", "key-order"])
def test_identical_spellings_have_one_digest(other: EventPayload) -> None:
    """MS-ING-002: the instant, not its spelling, and the property map, not its key order."""
    assert event_digest(other) == event_digest(SEED)
    result = ingest([SEED, other])
    assert result.outcomes == ("accepted", "duplicate")


@pytest.mark.parametrize("other", [
    msgspec.structs.replace(SEED, type="api_call_v2"),
    msgspec.structs.replace(SEED, subject="customer:43"),
    msgspec.structs.replace(SEED, time="2024-01-15T09:30:00.000001Z"),
    msgspec.structs.replace(SEED, time="2024-01-15T09:30:00.000000001Z"),
    msgspec.structs.replace(SEED, properties={"region": "eu", "endpoint": "/v1/X"}),
    msgspec.structs.replace(SEED, properties={"region": "eu"}),
    msgspec.structs.replace(SEED, properties={"region": "eu", "endpoint": "/v1/x", "x": ""}),
], ids=["type", "subject", "one-microsecond", "one-nanosecond", "value-case",
        "fewer-properties", "empty-value"])
def test_any_other_difference_is_a_conflict(other: EventPayload) -> None:
    assert event_digest(other) != event_digest(SEED)
    assert ingest([SEED, other]).outcomes == ("accepted", "conflict")


def test_absent_properties_equal_empty_properties() -> None:
    """MS-EVT-001 via MS-ING-002: the count field is 0 either way."""
    bare = decode("event", b'{"id":"e","workspaceID":"w","universeID":"u","type":"t",'
                  b'"subject":"s","time":"2024-01-01T00:00:00Z"}', EventPayload)
    explicit = msgspec.structs.replace(bare, properties={})
    assert event_digest(bare) == event_digest(explicit) == digest(
        ["meterspec/event/v1", "w", "u", "e", "t", "s", "2024-01-01T00:00:00Z", "0"])


def test_length_prefix_keeps_boundaries_apart() -> None:
    """Moving a character between key and value, or between two properties, changes the
    digest (MS-ID-001's encoding is injective)."""
    a = event(props={"ab": "c"})
    b = event(props={"a": "bc"})
    c = event(props={"a": "b", "c": ""})
    assert len({event_digest(a), event_digest(b), event_digest(c)}) == 3


def test_identity_includes_the_tenant() -> None:
    """MS-ING-001: the same id in another workspace or universe is another event, never a
    duplicate of this one."""
    batch = [event("e1"), event("e1", ws="globex"), event("e1", uni="staging"),
             event("e1", ws="prod", uni="acme")]
    result = ingest(batch)
    assert result.outcomes == ("accepted",) * 4
    assert list(result.state) == [("acme", "prod", "e1"), ("acme", "staging", "e1"),
                                  ("globex", "prod", "e1"), ("prod", "acme", "e1")]


# --- outcomes (MS-ING-003, MS-ING-004) ----------------------------------------------------------

def test_outcomes_of_a_mixed_batch() -> None:
    horizon = micros("2024-01-10T00:00:00Z")
    state = expire(ingest([event("known")]).state, horizon)
    batch = [
        event("new"),                                           # 0 accepted
        event("known"),                                         # 1 duplicate (state)
        event("known", props={"n": "2"}),                       # 2 conflict (state)
        event("new"),                                           # 3 duplicate (batch)
        event("new", subject="other"),                          # 4 conflict (batch)
        event("old", time="2024-01-09T23:59:59.999999Z"),       # 5 late
        event("edge", time="2024-01-10T00:00:00Z"),             # 6 accepted: at the horizon
        event("", time="2024-02-30T00:00:00Z"),                 # 7 rejected, two problems
        event("bad-correction", type_=RETRACT),                 # 8 rejected: no target
        event("new", subject="other"),                          # 9 conflict again
    ]
    result = ingest(batch, state)
    assert result.outcomes == ("accepted", "duplicate", "conflict", "duplicate", "conflict",
                               "late-beyond-retention", "accepted", "rejected", "rejected",
                               "conflict")
    assert [e.id for e in result.accepted] == ["new", "edge"]
    assert [d.position for d in result.duplicates] == [1, 3]
    assert [(c.position, c.identity[2]) for c in result.conflicts] == [
        (2, "known"), (4, "new"), (9, "new")]
    assert [(late.position, late.time, late.horizon) for late in result.late] == [
        (5, "2024-01-09T23:59:59.999999Z", "2024-01-10T00:00:00Z")]
    assert [(r.position, sorted((p.code, p.path) for p in r.problems))
            for r in result.rejected] == [
        (7, [("empty-string", "/id"), ("invalid-timestamp", "/time")]),
        (8, [("missing-field", "/properties/meterspec.target")])]
    assert {p.event_id for r in result.rejected for p in r.problems} == {None, "bad-correction"}
    assert set(result.state) == {("acme", "prod", "known"), ("acme", "prod", "new"),
                                 ("acme", "prod", "edge")}
    codes = [(i, p.code, p.requirement) for i, p in result.problems()]
    assert codes == [(2, "event-conflict", "MS-ING-004"), (4, "event-conflict", "MS-ING-004"),
                     (5, "late-beyond-retention", "MS-ING-010"),
                     (7, "empty-string", "MS-EVT-002"), (7, "invalid-timestamp", "MS-TIME-001"),
                     (8, "missing-field", "MS-ING-012"), (9, "event-conflict", "MS-ING-004")]


def test_a_conflict_keeps_the_first_payload_and_names_both_digests() -> None:
    """MS-ING-004: the original stays; the report names the identity and both digests."""
    first = event("e1", props={"tokens": "100"})
    second = event("e1", props={"tokens": "999"})
    state = ingest([first]).state
    result = ingest([second, second], state)
    assert result.accepted == ()
    assert result.state == state
    assert result.state.get(("acme", "prod", "e1")) == Seen(event_digest(first),
                                                            micros(first.time))
    conflict = result.conflicts[0]
    assert (conflict.accepted_digest, conflict.conflicting_digest) == (
        event_digest(first), event_digest(second))
    problem = conflict.problem()
    assert (problem.code, problem.event_id, problem.requirement) == (
        "event-conflict", "e1", "MS-ING-004")
    assert event_digest(first) in problem.message and event_digest(second) in problem.message
    assert len(result.conflicts) == 2


def test_known_identity_before_the_horizon_is_a_duplicate_or_conflict_not_late() -> None:
    """MS-ING-003 order of checks: identity first, then the horizon."""
    state = ingest([event("e1", time="2024-01-20T00:00:00Z")]).state
    state = expire(state, micros("2024-01-15T00:00:00Z"))
    moved = event("e1", time="2024-01-01T00:00:00Z")
    assert ingest([moved], state).outcomes == ("conflict",)


def test_the_input_state_is_not_modified() -> None:
    state = ingest([event("a")]).state
    before = encode(state.to_wire())
    ingest([event("b"), event("a", props={"x": "1"})], state)
    expire(state, micros("2030-01-01T00:00:00Z"))
    assert encode(state.to_wire()) == before
    assert len(EMPTY) == 0


def test_bad_events_do_not_stop_the_batch() -> None:
    """MS-ERR-005 in ingestion: good events are processed as if the bad ones were absent."""
    good = [event("a"), event("b")]
    bad = [event("c", time="yesterday"), event("d", subject="")]
    mixed = [bad[0], good[0], bad[1], good[1]]
    assert ingest(mixed).accepted == ingest(good).accepted
    assert ingest(mixed).state == ingest(good).state


# --- state document (MS-ING-007, MS-ING-008) --------------------------------------------------

def test_state_document_is_deterministic_and_round_trips() -> None:
    batch = [event("b", ws="w2"), event("a", ws="w2", time="2024-01-15T10:30:00.5+01:00"),
             event("z", ws="w1"), event("é"), event("e")]
    forward = ingest(batch).state
    backward = ingest(list(reversed(batch))).state
    data = encode(forward.to_wire())
    assert data == encode(backward.to_wire())
    document = json.loads(data)
    keys = [(e["workspaceID"], e["universeID"], e["id"]) for e in document["events"]]
    assert keys == sorted(keys)
    assert document["events"][-2]["time"] == "2024-01-15T09:30:00.5Z"
    assert list(document) == ["events"]                       # no horizon before expiry
    decoded = decode("ingestion-state", data, IngestionState, fast=False)
    assert SeenState.from_wire(decoded) == forward
    expired = expire(forward, micros("2024-01-01T00:00:00Z"))
    again = decode("ingestion-state", encode(expired.to_wire()), IngestionState, fast=False)
    assert SeenState.from_wire(again) == expired
    assert json.loads(encode(expired.to_wire()))["horizon"] == "2024-01-01T00:00:00Z"


def test_from_wire_reports_every_problem() -> None:
    document = IngestionState(
        events=[SeenEvent("w", "u", "e", "2024-01-15T10:30:00+01:00", "0" * 64),
                SeenEvent("w", "u", "", "2024-01-15T09:30:00Z", "x")],
        horizon="2024-01-16T00:00:00Z")
    with pytest.raises(MeterspecError) as caught:
        SeenState.from_wire(document)
    assert sorted((p.code, p.path) for p in caught.value.problems) == [
        ("empty-string", "/events/1/id"), ("invalid-value", "/events/0/time"),
        ("invalid-value", "/events/1/digest"), ("invalid-value", "/events/1/time"),
        ("not-canonical", "/events/0/time"), ("not-canonical", "/events/1")]


def test_state_rebuilt_from_the_log_equals_the_incremental_state() -> None:
    """MS-ING-008: the log is the source of truth; re-ingesting it from empty gives the state,
    and a log holding a repeat (events written, state write lost, retry) gives it too."""
    batches = [[event("a"), event("b")], [event("b"), event("c"), event("a", props={"x": "1"})],
               [event("d")]]
    state = EMPTY
    log: list[EventPayload] = []
    for batch in batches:
        result = ingest(batch, state)
        log += result.accepted
        state = result.state
    assert ingest(log).state == state
    assert ingest([*log, log[0]]).state == state


# --- retention (MS-ING-009, MS-ING-010) -------------------------------------------------------

def test_expire_is_keyed_by_event_time_and_never_lowers_the_horizon() -> None:
    state = ingest([event("old", time="2024-01-01T00:00:00Z"),
                    event("edge", time="2024-01-10T00:00:00Z"),
                    event("new", time="2024-02-01T00:00:00Z")]).state
    ten = micros("2024-01-10T00:00:00Z")
    expired = expire(state, ten)
    assert [k[2] for k in expired] == ["edge", "new"]
    assert expired.horizon == ten
    assert expire(expired, ten) == expired                                # idempotent
    assert expire(expired, micros("2023-01-01T00:00:00Z")) == expired     # never lowers
    later = micros("2024-01-20T00:00:00Z")
    assert expire(expire(state, later), ten) == expire(state, later) == expire(
        expire(state, ten), later)


def test_late_beyond_retention_is_reported_not_accepted() -> None:
    """MS-ING-010: the state cannot tell a retry of a forgotten event from a new one."""
    original = event("e1", time="2024-01-01T00:00:00Z")
    state = expire(ingest([original]).state, micros("2024-01-01T00:00:00.000001Z"))
    assert ("acme", "prod", "e1") not in state
    result = ingest([original, event("e2", time="2023-12-31T23:59:59Z")], state)
    assert result.outcomes == ("late-beyond-retention", "late-beyond-retention")
    assert result.state == state
    problem = result.late[0].problem()
    assert (problem.code, problem.path, problem.requirement, problem.event_id) == (
        "late-beyond-retention", "/time", "MS-ING-010", "e1")


def test_recommended_retention_is_35_days() -> None:
    assert micros("2024-02-05T00:00:00Z") - micros("2024-01-01T00:00:00Z") == RECOMMENDED_RETENTION


def test_a_state_never_holds_entries_before_its_horizon() -> None:
    with pytest.raises(ValueError, match="MS-ING-009"):
        SeenState({("w", "u", "e"): Seen("0" * 64, 0)}, horizon=1)


# --- hypothesis: idempotence, order, never lose, never overwrite (MS-ING-005, MS-ING-006) -----

TIMES = ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00", "2024-01-01T00:00:00.5Z",
         "2024-01-02T00:00:00Z", "2023-12-31T00:00:00Z", "not a time"]
events_strategy = st.builds(
    lambda ident, ws, uni, subject, time, props: EventPayload(
        ident, ws, uni, "t", subject, time, props),
    st.sampled_from(["e1", "e2", "e3", "e4", ""]), st.sampled_from(["w1", "w2"]),
    st.sampled_from(["u1", "u2"]), st.sampled_from(["s", "s", "s2"]), st.sampled_from(TIMES),
    st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["1", "2"]), max_size=2))
batches = st.lists(events_strategy, max_size=14)
horizons = st.sampled_from([None, "2024-01-01T00:00:00Z", "2024-01-01T12:00:00Z"])


ingestion_states = st.builds(lambda batch, horizon: _state(batch, horizon).to_wire(),
                             batches, horizons)
"""Wire documents of reachable states (for tests/test_schemas.py)."""


def _state(prefix: list[EventPayload], horizon: str | None) -> SeenState:
    state = ingest(prefix).state
    return state if horizon is None else expire(state, micros(horizon))


def _valid_time(e: EventPayload) -> int | None:
    try:
        return micros(e.time)
    except MeterspecError:
        return None


@PROPERTIES
@given(batches, batches, horizons)
def test_ingest_is_idempotent(prefix: list[EventPayload], batch: list[EventPayload],
                              horizon: str | None) -> None:
    """MS-ING-006: the second run of a batch accepts nothing and changes nothing."""
    first = ingest(batch, _state(prefix, horizon))
    second = ingest(batch, first.state)
    assert second.accepted == ()
    assert second.state == first.state
    assert "accepted" not in second.outcomes


@PROPERTIES
@given(batches, batches, batches)
def test_split_batches_equal_one_batch(prefix: list[EventPayload], b1: list[EventPayload],
                                       b2: list[EventPayload]) -> None:
    """MS-ING-006: B1 then B2 is B1 + B2, accepted events and final state alike."""
    state = ingest(prefix).state
    one = ingest(b1, state)
    two = ingest(b2, one.state)
    both = ingest(b1 + b2, state)
    assert one.accepted + two.accepted == both.accepted
    assert two.state == both.state
    assert one.outcomes + two.outcomes == both.outcomes


@PROPERTIES
@given(batches, batches, horizons, st.randoms(use_true_random=False))
def test_order_of_a_batch(prefix: list[EventPayload], batch: list[EventPayload],
                          horizon: str | None, rng: random.Random) -> None:
    """MS-ING-006: a permutation accepts the same identities; without conflicting payloads in
    the batch it accepts the same events and ends in the same state."""
    state = _state(prefix, horizon)
    shuffled = batch[:]
    rng.shuffle(shuffled)
    a, b = ingest(batch, state), ingest(shuffled, state)
    assert {(e.workspace_id, e.universe_id, e.id) for e in a.accepted} == {
        (e.workspace_id, e.universe_id, e.id) for e in b.accepted}
    assert set(a.state) == set(b.state)
    assert Counter(a.outcomes)["rejected"] == Counter(b.outcomes)["rejected"]
    digests: dict[tuple[str, str, str], set[str]] = {}
    for e in batch:
        if _valid_time(e) is not None and e.id:
            digests.setdefault((e.workspace_id, e.universe_id, e.id), set()).add(event_digest(e))
    if all(len(d) == 1 for d in digests.values()):
        # Identical means equal digests (MS-ING-002): the first spelling of an instant wins, so
        # a permutation may accept "+01:00" where the original accepted "Z" for the same event.
        assert Counter(map(event_digest, a.accepted)) == Counter(map(event_digest, b.accepted))
        assert a.state == b.state
        assert Counter(a.outcomes) == Counter(b.outcomes)


@PROPERTIES
@given(batches, batches, horizons)
def test_never_loses_a_distinct_event_and_never_overwrites(
        prefix: list[EventPayload], batch: list[EventPayload], horizon: str | None) -> None:
    """MS-ING-005 and MS-ING-004: every valid identity not before the horizon ends up in the
    state; old entries keep their digest; a new entry holds the first payload of the batch."""
    state = _state(prefix, horizon)
    result = ingest(batch, state)
    assert len(result.outcomes) == len(batch)
    for key in state:
        assert result.state.get(key) == state.get(key)
    first: dict[tuple[str, str, str], EventPayload] = {}
    for e in batch:
        instant = _valid_time(e)
        if instant is None or not e.id:
            continue
        key = (e.workspace_id, e.universe_id, e.id)
        fresh = state.horizon is None or instant >= state.horizon
        if fresh or key in state:
            assert key in result.state
        if fresh and key not in state:
            first.setdefault(key, e)             # the first event the batch can accept
    for key, e in first.items():
        assert result.state.get(key) == Seen(event_digest(e), micros(e.time))
    assert len(result.state) == len(state) + len(result.accepted)


# --- corrections (MS-ING-011..019) -----------------------------------------------------------

def effective_ids(log: list[EventPayload]) -> list[str]:
    return [e.id for e in apply_corrections(log).effective]


def test_correction_shape_is_checked_at_ingestion() -> None:
    """MS-ING-011, MS-ING-012, MS-ING-017 (self-target)."""
    cases = [
        (event("c1", type_=RETRACT), [("missing-field", "/properties/meterspec.target")]),
        (retract("c2", ""), [("empty-string", "/properties/meterspec.target")]),
        (retract("c3", "c3"), [("invalid-correction", "/properties/meterspec.target")]),
        (retract("c4", "e1", **{"meterspec.reason": "x"}),
         [("unknown-field", "/properties/meterspec.reason")]),
        (event("c5", type_="meterspec.delete", props={TARGET: "e1"}),
         [("invalid-correction", "/type")]),
        (retract("c6", "unknown-yet"), []),               # existence is not checked here
        (retract("c7", "e1", reason="duplicate upload"), []),
    ]
    result = ingest([c for c, _ in cases])
    assert [e.id for e in result.accepted] == ["c6", "c7"]
    got = {r.position: sorted((p.code, p.path) for p in r.problems) for r in result.rejected}
    assert got == {i: sorted(want) for i, (_, want) in enumerate(cases) if want}
    requirements = {p.requirement for r in result.rejected for p in r.problems}
    assert requirements == {"MS-ING-011", "MS-ING-012", "MS-ING-017"}


def test_retraction_removes_the_target_and_keeps_the_trail() -> None:
    """MS-ING-013, MS-ING-014: corrections never reach metering; the original stays in the log."""
    log = [event("e1"), event("e2"), retract("r1", "e1")]
    corrected = apply_corrections(log)
    assert [e.id for e in corrected.effective] == ["e2"]
    assert corrected.retracted == ((("acme", "prod", "e1"), "r1"),)
    assert corrected.issues == ()
    assert log[0] == event("e1")


def test_retraction_wins_over_amendments_whatever_the_order() -> None:
    """MS-ING-014: final; the applying retraction is the earliest (time, id)."""
    log = [event("e1"), amend("a1", "e1", {"n": "2"}, time="2024-02-01T00:00:00Z"),
           retract("r2", "e1", time="2024-01-20T00:00:00Z"),
           retract("r1", "e1", time="2024-01-20T00:00:00Z")]
    for order in (log, log[::-1], [log[2], log[0], log[3], log[1]]):
        corrected = apply_corrections(order)
        assert corrected.effective == ()
        assert corrected.retracted == ((("acme", "prod", "e1"), "r1"),)
        assert corrected.amended == ()


def test_amendment_replaces_properties_and_keeps_record_ids() -> None:
    """MS-ING-015 and MS-ING-013: complete replacement (so a property can be removed); the
    amended event keeps identity, type, subject and time, so its records keep their ids."""
    original = event("e1", props={"tokens": "100", "model": "small", "debug": "1"})
    fix = amend("a1", "e1", {"tokens": "120", "model": "small"})
    corrected = apply_corrections([original, fix])
    [amended] = corrected.effective
    assert amended.properties == {"tokens": "120", "model": "small"}
    assert (amended.id, amended.type, amended.subject, amended.time) == (
        original.id, original.type, original.subject, original.time)
    assert corrected.amended == ((("acme", "prod", "e1"), "a1"),)
    config = MeteringConfig([MeasurementSpec("tokens", source_property="tokens")])
    [before] = meter(original, config)
    [after] = meter(amended, config)
    assert before.id == after.id
    assert (before.measurement.quantity, after.measurement.quantity) == ("100", "120")
    assert "debug" in before.dimensions and "debug" not in after.dimensions


def test_latest_amendment_wins_ties_by_greater_id() -> None:
    """MS-ING-015: by the amendment's time, then id; arrival order never matters."""
    e1 = event("e1", props={"n": "0"})
    a = amend("a", "e1", {"n": "1"}, time="2024-01-17T00:00:00Z")
    b = amend("b", "e1", {"n": "2"}, time="2024-01-16T00:00:00Z")
    c = amend("c", "e1", {"n": "3"}, time="2024-01-17T01:00:00+01:00")   # = a's instant
    for log in ([e1, a, b, c], [c, b, a, e1], [b, e1, c, a]):
        corrected = apply_corrections(log)
        assert corrected.effective[0].properties == {"n": "3"}
        assert corrected.amended == ((("acme", "prod", "e1"), "c"),)


def test_unknown_target_is_reported_until_the_target_arrives() -> None:
    """MS-ING-016: corrections may come first; applying to the longer log applies them."""
    fix = retract("r1", "e1")
    early = apply_corrections([fix, event("e2")])
    assert [(i.correction, i.problem.code, i.problem.path, i.problem.requirement)
            for i in early.issues] == [
        (("acme", "prod", "r1"), "unknown-target", "/properties/meterspec.target", "MS-ING-016")]
    assert effective_ids([fix, event("e2"), event("e1")]) == ["e2"]


def test_a_correction_never_reaches_another_tenant() -> None:
    """MS-ING-011: the target is looked up in the correction's own workspace and universe."""
    theirs = event("e1", ws="globex")
    fix = retract("r1", "e1")                      # workspace acme
    corrected = apply_corrections([theirs, fix])
    assert corrected.effective == (theirs,)
    assert corrected.issues[0].problem.code == "unknown-target"


def test_a_correction_has_its_targets_subject() -> None:
    wrong = event("r1", type_=RETRACT, subject="customer:43", props={TARGET: "e1"})
    corrected = apply_corrections([event("e1"), wrong])
    assert [e.id for e in corrected.effective] == ["e1"]
    [issue] = corrected.issues
    assert (issue.problem.code, issue.problem.path, issue.problem.requirement) == (
        "invalid-correction", "/subject", "MS-ING-011")


def test_correcting_a_correction_has_no_effect() -> None:
    """MS-ING-017: one level deep; no chains to follow, no cycles to break."""
    log = [event("e1"), retract("r1", "e1"), retract("r2", "r1"),
           amend("a1", "r1", {"x": "1"}), retract("x1", "y1"), retract("y1", "x1")]
    corrected = apply_corrections(log)
    assert corrected.effective == ()
    assert corrected.retracted == ((("acme", "prod", "e1"), "r1"),)
    assert sorted((i.correction[2], i.problem.code) for i in corrected.issues) == [
        ("a1", "invalid-correction"), ("r2", "invalid-correction"),
        ("x1", "invalid-correction"), ("y1", "invalid-correction")]
    assert {i.problem.requirement for i in corrected.issues} == {"MS-ING-017"}


def test_reserved_types_are_never_effective_events() -> None:
    log = [event("e1"), event("m1", type_="meterspec.delete", props={TARGET: "e1"})]
    corrected = apply_corrections(log)
    assert [e.id for e in corrected.effective] == ["e1"]
    assert [(i.problem.code, i.problem.path) for i in corrected.issues] == [
        ("invalid-correction", "/type")]


def test_repeats_in_the_log() -> None:
    """MS-ING-019: identical repeats count once; different payloads reject the log."""
    log = [event("e1"), event("e2"), event("e1", time="2024-01-15T10:30:00+01:00")]
    assert effective_ids(log) == ["e1", "e2"]
    with pytest.raises(MeterspecError) as caught:
        apply_corrections([event("e1"), event("e1", props={"n": "1"}), event("e2"),
                           event("e2", subject="x")])
    assert [(p.code, p.event_id, p.requirement) for p in caught.value.problems] == [
        ("event-conflict", "e1", "MS-ING-019"), ("event-conflict", "e2", "MS-ING-019")]


IDS = ["e1", "e2", "e3", "r1", "r2", "a1", "a2", "zz"]


@st.composite
def logs(draw: st.DrawFn) -> list[EventPayload]:
    """Event logs with distinct identities: ordinary events and corrections aimed at ordinary
    events, corrections and unknown ids, at times that often tie."""
    out: list[EventPayload] = []
    for ident in draw(st.lists(st.sampled_from(IDS), unique=True, max_size=len(IDS))):
        ws = draw(st.sampled_from(["w1", "w1", "w2"]))
        time = draw(st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z",
                                     "2024-01-02T01:00:00+01:00"]))
        kind = draw(st.sampled_from(["ordinary", RETRACT, AMEND]))
        if kind == "ordinary":
            props = draw(st.dictionaries(st.sampled_from(["n", "m"]), st.sampled_from(["1", "2"]),
                                         max_size=2))
            out.append(EventPayload(ident, ws, "u", "t", "s", time, props))
        else:
            props = {TARGET: draw(st.sampled_from(IDS))}
            if kind == AMEND:
                props["n"] = draw(st.sampled_from(["3", "4"]))
            out.append(EventPayload(ident, ws, "u", kind, "s", time, props))
    return out


@PROPERTIES
@given(logs(), st.randoms(use_true_random=False))
def test_corrections_are_order_independent(log: list[EventPayload], rng: random.Random) -> None:
    """MS-ING-018: a pure function of the set of events; only the effective order follows the
    log. Also: identical repeats change nothing (MS-ING-019)."""
    shuffled = log[:]
    rng.shuffle(shuffled)
    a, b = apply_corrections(log), apply_corrections(shuffled)
    assert sorted(encode(e) for e in a.effective) == sorted(encode(e) for e in b.effective)
    assert (a.retracted, a.amended, a.issues) == (b.retracted, b.amended, b.issues)
    assert apply_corrections(log + log[:3]) == a
    ordinary = {(e.workspace_id, e.id) for e in log if not e.type.startswith("meterspec.")}
    effective = {(e.workspace_id, e.id) for e in a.effective}
    retracted = {(k[0], k[2]) for k, _ in a.retracted}
    assert effective | retracted == ordinary and not effective & retracted
    assert len(a.effective) == len(effective)


# --- schema examples for ingestion-state (MS-ING-007) ---------------------------------------

KINDS = {"ingestion-state": "ingestion-state.schema.json"}


def _validator(name: str) -> jsonschema.Draft202012Validator:
    documents = [json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")]
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (d["$id"], referencing.Resource.from_contents(d)) for d in documents)
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / name).read_text()),
                                           registry=registry)


def example_cases(kinds: dict[str, str], verdict: str) -> list[str]:
    return sorted(str(p.relative_to(EXAMPLES)) for kind in kinds
                  for p in (EXAMPLES / kind / verdict).glob("*.json"))


def check_valid_example(key: str, kinds: dict[str, str], capsys: Any) -> None:
    kind = key.split("/")[0]
    data = (EXAMPLES / key).read_bytes()
    assert list(_validator(kinds[kind]).iter_errors(json.loads(data))) == []
    value = decode(kind, data, STRUCTS[kind], fast=False)
    assert json.loads(encode(value)) == json.loads(data)
    assert cli.main(["validate", kind, str(EXAMPLES / key)]) == 0
    assert capsys.readouterr().err == "meterspec validate: 1 valid documents, 0 rejected\n"


def check_invalid_example(key: str, kinds: dict[str, str], tmp_path: Path, capsys: Any) -> None:
    """The hand-written (code, path) pairs of expected-errors.json, every one (MS-ERR-002), by
    the library and the CLI; a plain JSON Schema validator rejects it unless beyond-schema.json
    says a schema cannot state the problem."""
    kind = key.split("/")[0]
    data = (EXAMPLES / key).read_bytes()
    expected = {(e["code"], e["path"]) for e in
                json.loads((EXAMPLES / "expected-errors.json").read_text())[key]}
    beyond = json.loads((EXAMPLES / "beyond-schema.json").read_text())
    schema_errors = list(_validator(kinds[kind]).iter_errors(json.loads(data)))
    assert (schema_errors == []) == (key in beyond)
    with pytest.raises(MeterspecError) as caught:
        decode(kind, data, STRUCTS[kind], fast=False)
    got = [(p.code, p.path) for p in caught.value.problems]
    assert len(got) == len(set(got)) and set(got) == expected
    report = tmp_path / "errors.ndjson"
    assert cli.main(["validate", kind, str(EXAMPLES / key), "--errors", str(report)]) == 1
    capsys.readouterr()
    assert {(p["code"], p["path"]) for p in map(json.loads, report.read_text().splitlines())
            } == expected


@pytest.mark.parametrize("key", example_cases(KINDS, "valid"))
def test_valid_state_examples(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    check_valid_example(key, KINDS, capsys)


@pytest.mark.parametrize("key", example_cases(KINDS, "invalid"))
def test_invalid_state_examples(key: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    check_invalid_example(key, KINDS, tmp_path, capsys)


def test_worked_example_state_document() -> None:
    document = json.loads((EXAMPLES / "ingestion-state/valid/worked-example.json").read_text())
    assert document == {"events": [{"workspaceID": "acme", "universeID": "prod", "id": "evt_1",
                                    "time": "2024-01-15T09:30:00Z",
                                    "digest": event_digest(SEED)}]}
