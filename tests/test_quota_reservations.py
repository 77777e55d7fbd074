"""Atomic check-and-reserve (specs/quotas.md, MS-QTA-016 to MS-QTA-021)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.codec import decode, encode
from meterspec.errors import MeterspecError
from meterspec.quota_reservations import QuotaState, commit, release, reserve
from meterspec.quotas import QuotaCheck, QuotaPeriod, QuotaPolicy, decide
from meterspec.timestamps import parse_timestamp

HARD = QuotaPolicy("10", "HARD", QuotaPeriod("month"), warning_threshold_percent="80")
EMPTY = QuotaState(workspace_id="w", universe_id="u", subject="s", unit="calls", usage="0",
                   reservations=[])
T0 = parse_timestamp("2024-03-05T10:00:00Z")
S = 10**9


def _codes(call: Any) -> list[tuple[str, str]]:
    with pytest.raises(MeterspecError) as raised:
        call()
    return [(p.code, p.path) for p in raised.value.problems]


def test_two_concurrent_requests_cannot_both_pass() -> None:
    """MS-QTA-017/021: the second request sees the first's hold. A check-then-act pair of
    decisions on the same usage admits both."""
    first, state = reserve(HARD, EMPTY, "a", "6", T0)
    second, after = reserve(HARD, state, "b", "6", T0 + 1)
    assert (first.decision, second.decision, second.reason) == ("allow", "deny",
                                                                "limit-exceeded")
    assert after == state  # a denial changes nothing
    # What a pair of plain decisions on the stored usage would do: both allowed.
    plain = decode("quota-check", encode({
        "workspaceID": "w", "universeID": "u", "subject": "s", "unit": "calls", "usage": "0",
        "requested": "6", "now": "2024-03-05T10:00:00Z", "policy": HARD}),
        QuotaCheck, fast=False)
    assert decide(plain).decision == "allow"


def test_a_reservation_is_decided_as_usage_plus_holds_and_emits_nothing() -> None:
    decision, state = reserve(HARD, EMPTY, "a", "9", T0)
    assert (decision.decision, decision.reason, decision.usage, decision.remaining) == (
        "allow-with-warning", "warning-threshold", "9", "1")
    assert decision.events == []
    assert json.loads(encode(state)) == {
        "workspaceID": "w", "universeID": "u", "subject": "s", "unit": "calls",
        "period": {"start": "2024-03-01T00:00:00Z", "end": "2024-04-01T00:00:00Z"},
        "usage": "0", "reservations": [{"id": "a", "quantity": "9",
                                        "expiresAt": "2024-03-05T10:05:00Z"}]}


def test_commit_turns_the_hold_into_usage_and_emits_the_crossings() -> None:
    """MS-QTA-019: warning at 8 and exceeded at 10 are crossed by committed usage, with the
    ids `quota` would give them."""
    _, state = reserve(HARD, EMPTY, "a", "10", T0)
    done, state = commit(HARD, state, "a", "10", T0 + 30 * S)
    assert done.usage == "10" and [e.type for e in done.events] == ["quota.warning",
                                                                   "quota.exceeded"]
    assert state.reservations == [] and state.usage == "10"
    check = decode("quota-check", encode({
        "workspaceID": "w", "universeID": "u", "subject": "s", "unit": "calls", "usage": "0",
        "requested": "10", "now": "2024-03-05T10:00:30Z", "policy": HARD}),
        QuotaCheck, fast=False)
    assert [e.id for e in decide(check).events] == [e.id for e in done.events]


def test_commit_may_differ_from_the_hold() -> None:
    _, state = reserve(HARD, EMPTY, "a", "5", T0)
    done, state = commit(HARD, state, "a", "2", T0 + S)
    assert done.usage == "2" and state.usage == "2"
    _, state = reserve(HARD, state, "b", "1", T0 + 2 * S)
    done, state = commit(HARD, state, "b", "9", T0 + 3 * S)  # the usage happened
    assert done.usage == "11"


def test_release_and_expiry_free_the_hold() -> None:
    """MS-QTA-018, MS-QTA-020: a released or expired hold is not live."""
    _, state = reserve(HARD, EMPTY, "a", "10", T0, ttl_seconds=60)
    assert reserve(HARD, state, "b", "1", T0 + S)[0].decision == "deny"
    assert reserve(HARD, state, "b", "1", T0 + 60 * S)[0].decision == "allow"  # expired
    released = release(HARD, state, "a", T0 + 2 * S)
    assert released.reservations == []
    for call in (lambda: release(HARD, released, "a", T0 + 3 * S),
                 lambda: commit(HARD, released, "a", "1", T0 + 3 * S),
                 lambda: commit(HARD, state, "a", "1", T0 + 60 * S)):  # expired hold
        assert _codes(call) == [("unknown-reservation", "/id")]


def test_holds_never_outlive_their_period_and_the_state_rolls_over() -> None:
    """MS-QTA-020: a hold expires with its period; the next period starts empty."""
    late = parse_timestamp("2024-03-31T23:58:00Z")
    _, state = reserve(HARD, EMPTY, "a", "3", late, ttl_seconds=3600)
    assert state.reservations[0].expires_at == "2024-04-01T00:00:00Z"
    _, state = commit(HARD, state, "a", "3", late + 60 * S)
    decision, april = reserve(HARD, state, "b", "10", parse_timestamp("2024-04-01T00:00:00Z"))
    assert decision.decision == "allow-with-warning" and april.usage == "0"
    assert april.period is not None and april.period.start == "2024-04-01T00:00:00Z"
    with pytest.raises(MeterspecError):  # back into March: not the state's period any more
        reserve(HARD, april, "c", "1", late)


def test_a_held_id_is_a_duplicate_and_changes_nothing() -> None:
    _, state = reserve(HARD, EMPTY, "a", "1", T0)
    assert _codes(lambda: reserve(HARD, state, "a", "1", T0 + S)) == [("duplicate-item", "/id")]
    assert _codes(lambda: reserve(HARD, state, "z", "-1", T0)) == [("out-of-range", "/quantity")]
    assert _codes(lambda: reserve(HARD, state, "z", "1", T0, ttl_seconds=0)) == [
        ("out-of-range", "/ttlSeconds")]


def test_time_grace_starts_at_the_hold_that_reaches_the_limit() -> None:
    """MS-QTA-013/017: the reserve that reaches the limit sets limitReachedAt in the state."""
    policy = QuotaPolicy("10", "HARD", QuotaPeriod("month"), grace_period_hours=1)
    decision, state = reserve(policy, EMPTY, "a", "10", T0)
    assert decision.limit_reached_at == "2024-03-05T10:00:00Z"
    assert state.limit_reached_at == "2024-03-05T10:00:00Z"
    within, state = reserve(policy, state, "b", "50", T0 + 59 * 60 * S)
    assert within.decision == "allow-with-warning"
    late, _ = reserve(policy, state, "c", "1", T0 + 3600 * S)
    assert (late.decision, late.reason) == ("deny", "grace-expired")


def test_the_state_document_is_checked() -> None:
    """MS-QTA-016: order, uniqueness and canonical values (once the schema holds: a negative
    hold is the schema's out-of-range alone, MS-ERR-002)."""
    holds = [{"id": "b", "quantity": "1", "expiresAt": "2024-03-05T10:00:00Z"},
             {"id": "a", "quantity": "1", "expiresAt": "2024-03-05T10:00:00.000Z"},
             {"id": "a", "quantity": "2", "expiresAt": "2024-03-05T10:00:00Z"}]
    bad = {"workspaceID": "w", "universeID": "u", "subject": "s", "unit": "calls",
           "usage": "1.0", "reservations": holds}
    assert sorted(_codes(lambda: decode("quota-state", json.dumps(bad), QuotaState,
                                        fast=False))) == sorted([
        ("not-canonical", "/usage"), ("not-canonical", "/reservations/1/id"),
        ("not-canonical", "/reservations/1/expiresAt"),
        ("duplicate-item", "/reservations/2/id")])
    negative = {**bad, "usage": "1", "reservations": [{**holds[0], "quantity": "-1"}]}
    assert _codes(lambda: decode("quota-state", json.dumps(negative), QuotaState,
                                 fast=False)) == [("out-of-range", "/reservations/0/quantity")]


STEP = st.one_of(
    st.tuples(st.just("reserve"), st.sampled_from("abcdef"), st.integers(0, 7)),
    st.tuples(st.just("commit"), st.sampled_from("abcdef"), st.integers(0, 7)),
    st.tuples(st.just("release"), st.sampled_from("abcdef"), st.just(0)))


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(STEP, st.integers(0, 400)), max_size=30))
def test_committed_usage_plus_holds_never_pass_a_hard_limit(
        steps: list[tuple[tuple[str, str, int], int]]) -> None:
    """Law (MS-QTA-017, MS-QTA-021): steps applied one at a time, commits no larger than their
    holds, keep committed usage plus live holds within the limit, at every step."""
    state, now = EMPTY, T0
    held: dict[str, int] = {}
    for (kind, name, amount), pause in steps:
        now += pause * S
        try:
            if kind == "reserve":
                _, state = reserve(HARD, state, name, str(amount), now, ttl_seconds=120)
            elif kind == "commit":
                _, state = commit(HARD, state, name, str(min(amount, held.get(name, 0))), now)
            else:
                state = release(HARD, state, name, now)
        except MeterspecError:
            continue
        held = {h.id: int(h.quantity) for h in state.reservations}
        live = sum(int(h.quantity) for h in state.reservations
                   if parse_timestamp(h.expires_at) > now)
        assert Decimal(state.usage) + live <= 10


def _run_steps(steps: list[tuple[tuple[str, str, int], int]]) -> QuotaState:
    state, now = EMPTY, T0
    for (kind, name, amount), pause in steps:
        now += pause * S
        try:
            if kind == "reserve":
                _, state = reserve(HARD, state, name, str(amount), now, ttl_seconds=120)
            elif kind == "commit":
                _, state = commit(HARD, state, name, str(amount), now)
            else:
                state = release(HARD, state, name, now)
        except MeterspecError:
            continue
    return state


quota_states = st.lists(st.tuples(STEP, st.integers(0, 400)), max_size=12).map(_run_steps)
"""States that the steps produce (for tests/test_schemas.py)."""
