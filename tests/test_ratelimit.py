"""MS-RATE-001..008: the sliding-log rate limiter. The guarantee is checked by brute force over
every window, decisions against a naive model that keeps the whole history, and retry_after by
asking again one nanosecond before and at the instant it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ingestion import check_invalid_example, check_valid_example, example_cases

from meterspec.codec import decode, encode
from meterspec.errors import MeterspecError
from meterspec.ratelimit import (
    EMPTY,
    MAX_COUNT,
    WINDOW_NANOS,
    RateLimit,
    RateLimitPolicy,
    RateLimitState,
    RateLogEntry,
    RateState,
    decide,
)
from meterspec.timestamps import parse_timestamp

PROPERTIES = settings(max_examples=300, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
T0 = parse_timestamp("2024-01-15T10:30:00Z")
S, M, H = 1_000_000_000, 60_000_000_000, 3_600_000_000_000  # nanoseconds


def limits(**windows: int) -> RateLimitPolicy:
    return RateLimitPolicy([RateLimit(w, n) for w, n in windows.items()])  # type: ignore[arg-type]


def run(policy: RateLimitPolicy, requests: list[tuple[int, int]]
        ) -> list[tuple[str, int | None, tuple[int, ...]]]:
    state = EMPTY
    out: list[tuple[str, int | None, tuple[int, ...]]] = []
    for offset, cost in requests:
        d = decide(policy, state, T0 + offset, cost)
        state = d.state
        out.append((d.decision, d.retry_after, d.remaining))
    return out


# --- policy (MS-RATE-001) ---------------------------------------------------------------------

def test_policy_problems_are_all_reported() -> None:
    bad = RateLimitPolicy([RateLimit("second", 0), RateLimit("second", 5),
                           RateLimit("minute", MAX_COUNT + 1)])
    with pytest.raises(MeterspecError) as caught:
        decide(bad, EMPTY, T0)
    assert sorted((p.code, p.path, p.requirement) for p in caught.value.problems) == [
        ("duplicate-item", "/limits/1/window", "MS-RATE-001"),
        ("out-of-range", "/limits/0/limit", "MS-RATE-001"),
        ("out-of-range", "/limits/2/limit", "MS-RATE-001")]
    with pytest.raises(MeterspecError) as caught:
        decide(RateLimitPolicy([]), EMPTY, T0, cost=-1)
    assert sorted((p.code, p.path) for p in caught.value.problems) == [
        ("empty-list", "/limits"), ("out-of-range", "/cost")]


# --- the algorithm, worked by hand (MS-RATE-002, MS-RATE-005, MS-RATE-008) --------------------

def test_worked_example_two_per_second_three_per_minute() -> None:
    policy = limits(second=2, minute=3)
    assert run(policy, [
        (0, 1),            # [0]            allow; second 1/2, minute 1/3
        (1, 1),            # [0, 1]         allow; second full
        (2, 1),            # second full: the entry at 0 leaves (t - 1 s, t] at 1 s
        (S - 1, 1),        # still: 0 is inside (S-1-S, S-1]
        (S, 1),            # 0 left; second {1} + 1 = 2; minute 3
        (S + 1, 1),        # second {S}: fits... minute full: leaves when 0 leaves, at 60 s
        (M, 1),            # minute (0, M]: {1, S}: 2 + 1 = 3
    ]) == [
        ("allow", None, (1, 2)),
        ("allow", None, (0, 1)),
        ("deny", S - 2, (0, 1)),
        ("deny", 1, (0, 1)),
        ("allow", None, (0, 0)),
        ("deny", M - S - 1, (1, 0)),
        ("allow", None, (1, 0)),
    ]


def test_half_open_window_edges() -> None:
    """MS-RATE-002: an entry at s counts for t in [s, s + w); at s + w it has left."""
    policy = limits(second=1)
    assert [d for d, _, _ in run(policy, [(0, 1), (S - 1, 1), (S, 1)])] == [
        "allow", "deny", "allow"]


def test_costs_and_remaining() -> None:
    policy = limits(second=10, hour=12)
    assert run(policy, [(0, 7), (1, 4), (2, 3), (3, 0), (S, 4), (S + 1, 2)]) == [
        ("allow", None, (3, 5)),
        ("deny", S - 1, (3, 5)),        # 7 + 4 > 10 until the 7 leaves
        ("allow", None, (0, 2)),
        ("allow", None, (0, 2)),        # cost 0 fits a full window and logs nothing
        ("deny", H - S, (7, 2)),        # hour: 10 + 4 > 12; dropping 7 is enough, at 0 + 1 h
        ("allow", None, (5, 0)),
    ]


def test_too_costly_never_fits() -> None:
    """MS-RATE-007: no retry_after when the cost exceeds a limit."""
    assert run(limits(second=5, minute=100), [(0, 6)]) == [("deny", None, (5, 100))]
    assert run(limits(second=5), [(0, 5)]) == [("allow", None, (0,))]


# --- time (MS-RATE-003) -----------------------------------------------------------------------

def test_a_request_that_admits_nothing_does_not_move_the_pruning_horizon() -> None:
    """MS-RATE-004 (found by hypothesis): a cost-0 request at a later clock must not prune an
    entry that a host whose clock is behind it, but not behind the log, still needs."""
    policy = limits(second=1)
    state = decide(policy, EMPTY, T0, 1).state
    state = decide(policy, state, T0 + S, 0).state
    assert state.entries == ((T0, 1),)
    assert decide(policy, state, T0 + S - 1, 1).decision == "deny"


def test_an_earlier_clock_cannot_reopen_a_window() -> None:
    """MS-RATE-003: the decision instant is max(now, latest logged instant)."""
    policy = limits(second=1)
    first = decide(policy, EMPTY, T0 + S, 1)
    behind = decide(policy, first.state, T0, 1)            # host one second behind
    assert behind.decision == "deny"
    assert behind.retry_after == 2 * S                      # from its own now
    assert decide(policy, first.state, T0 + 2 * S, 1).decision == "allow"
    skewed = decide(limits(second=2), first.state, T0, 1)
    assert skewed.decision == "allow"
    assert skewed.state.entries == ((T0 + S, 2),)           # logged at the clamped instant


def test_now_outside_years_1_to_9999() -> None:
    with pytest.raises(MeterspecError) as caught:
        decide(limits(second=1), EMPTY, -(10**20))
    assert [(p.code, p.path) for p in caught.value.problems] == [
        ("timestamp-out-of-range", "/now")]


# --- state (MS-RATE-004) ----------------------------------------------------------------------

def test_state_prunes_to_the_longest_window_and_round_trips() -> None:
    policy = limits(second=100, minute=100)
    state = EMPTY
    for offset in (0, S // 2, 30 * S, M, M + 1):
        state = decide(policy, state, T0 + offset).state
    # At M + 1 the minute is (1, M + 1]: 0 has left, 0.5 s has not.
    assert [at - T0 for at, _ in state.entries] == [S // 2, 30 * S, M, M + 1]
    data = encode(state.to_wire())
    assert json.loads(data) == {"log": [
        {"at": "2024-01-15T10:30:00.5Z", "cost": 1},
        {"at": "2024-01-15T10:30:30Z", "cost": 1}, {"at": "2024-01-15T10:31:00Z", "cost": 1},
        {"at": "2024-01-15T10:31:00.000000001Z", "cost": 1}]}
    assert RateState.from_wire(decode("rate-limit-state", data, RateLimitState, fast=False)
                               ) == state
    denied = decide(policy, state, T0 + M + 1, 200)
    assert denied.decision == "deny" and denied.state == state
    # Another policy prunes to its own longest window, from the latest logged instant.
    other = decide(limits(second=1), state, T0 + 2 * M)
    assert other.decision == "allow"
    assert other.state.entries == ((T0 + 2 * M, 1),)
    assert decide(limits(second=1), state, T0 + M + 1).state.entries == (
        (T0 + M, 1), (T0 + M + 1, 1))


def test_costs_at_one_instant_merge_into_one_entry() -> None:
    state = EMPTY
    for cost in (1, 2, 3):
        state = decide(limits(second=10), state, T0, cost).state
    assert state.entries == ((T0, 6),)


def test_from_wire_reports_every_problem() -> None:
    document = RateLimitState([RateLogEntry("2024-01-15T10:30:01Z", 0),
                               RateLogEntry("2024-01-15T11:30:00+01:00", 1),
                               RateLogEntry("2024-01-15T10:30:00Z", 1)])
    with pytest.raises(MeterspecError) as caught:
        RateState.from_wire(document)
    assert sorted((p.code, p.path) for p in caught.value.problems) == [
        ("duplicate-item", "/log/2"), ("not-canonical", "/log/1"),
        ("not-canonical", "/log/1/at"), ("out-of-range", "/log/0/cost")]


# --- hypothesis (MS-RATE-002, MS-RATE-003, MS-RATE-005, MS-RATE-006) -------------------------

policies = st.lists(st.tuples(st.sampled_from(["second", "minute", "hour"]),
                              st.integers(1, 6)), min_size=1, max_size=3,
                    unique_by=lambda lw: lw[0]).map(
    lambda ls: RateLimitPolicy([RateLimit(w, n) for w, n in ls]))  # type: ignore[arg-type]
# Steps forward in time that often land on and next to window edges; sometimes backwards.
steps = st.sampled_from([0, 0, 1, 999_999, S, S + 1, 7 * S, 59 * S, M, M - 1, 30 * M, H, -1,
                         -S])
traffic = st.lists(st.tuples(steps, st.integers(0, 4)), max_size=40)


def replay(policy: RateLimitPolicy, requests: list[tuple[int, int]], *, round_trip: bool = False
           ) -> tuple[list[tuple[int, int]], list[tuple[int, int, str, int | None]]]:
    """Run the limiter; return the admissions (instant, cost) in log time and each decision
    (now, cost, decision, retry_after)."""
    state, now = EMPTY, T0
    admitted: list[tuple[int, int]] = []
    decisions: list[tuple[int, int, str, int | None]] = []
    for step, cost in requests:
        now += step
        latest = state.entries[-1][0] if state.entries else now
        d = decide(policy, state, now, cost)
        if d.decision == "allow" and cost:
            admitted.append((max(now, latest), cost))
        decisions.append((now, cost, d.decision, d.retry_after))
        state = d.state
        if round_trip:
            data = encode(state.to_wire())
            state = RateState.from_wire(decode("rate-limit-state", data, RateLimitState,
                                               fast=False))
    return admitted, decisions


@PROPERTIES
@given(policies, traffic)
def test_never_more_than_the_limit_in_any_window(policy: RateLimitPolicy,
                                                 requests: list[tuple[int, int]]) -> None:
    """MS-RATE-006 by brute force: the sum over (x - w, x] only rises at admissions, so every
    window ending at an admission instant, and a few others, is checked."""
    admitted, _ = replay(policy, requests)
    ends = {at for at, _ in admitted} | {at + d for at, _ in admitted for d in (-1, 1, S, M)}
    for limit in policy.limits:
        w = WINDOW_NANOS[limit.window]
        for x in ends:
            assert sum(c for at, c in admitted if x - w < at <= x) <= limit.limit


@PROPERTIES
@given(policies, traffic)
def test_decisions_match_a_model_with_the_whole_history(policy: RateLimitPolicy,
                                                       requests: list[tuple[int, int]]) -> None:
    """MS-RATE-002/003: pruning loses nothing; admitted exactly when every window fits."""
    admitted: list[tuple[int, int]] = []
    clock = None
    _, decisions = replay(policy, requests)
    for now, cost, decision, _ in decisions:
        t = now if clock is None else max(now, clock)
        fits = all(sum(c for at, c in admitted if t - WINDOW_NANOS[lim.window] < at <= t)
                   + cost <= lim.limit for lim in policy.limits)
        assert decision == ("allow" if fits else "deny")
        if fits and cost:
            admitted.append((t, cost))
            clock = t


@PROPERTIES
@given(policies, traffic, st.integers(0, 7))
def test_retry_after_names_the_first_instant_that_fits(
        policy: RateLimitPolicy, requests: list[tuple[int, int]], cost: int) -> None:
    """MS-RATE-005: admitted at now + retry_after, denied one nanosecond earlier;
    MS-RATE-007: absent only when the cost exceeds a limit."""
    state, now = EMPTY, T0
    for step, c in requests:
        now += step
        state = decide(policy, state, now, c).state
    d = decide(policy, state, now, cost)
    if d.decision == "allow":
        assert d.retry_after is None
        return
    if any(cost > limit.limit for limit in policy.limits):
        assert d.retry_after is None
        return
    assert d.retry_after is not None and d.retry_after > 0
    assert decide(policy, state, now + d.retry_after, cost).decision == "allow"
    assert decide(policy, state, now + d.retry_after - 1, cost).decision == "deny"


@PROPERTIES
@given(policies, traffic)
def test_state_round_trips_through_json(policy: RateLimitPolicy,
                                        requests: list[tuple[int, int]]) -> None:
    """MS-RATE-004: a limiter that stores its state as JSON between requests decides the same."""
    assert replay(policy, requests) == replay(policy, requests, round_trip=True)


@PROPERTIES
@given(policies, traffic, st.integers(0, 4), steps)
def test_a_denial_leaves_the_state_unchanged(policy: RateLimitPolicy,
                                             requests: list[tuple[int, int]], cost: int,
                                             step: int) -> None:
    """MS-RATE-004/005: under one policy a denial adds and prunes nothing."""
    state = RateState(decide_all(policy, requests))
    now = T0 + sum(s for s, _ in requests) + step
    d = decide(policy, state, now, cost)
    if d.decision == "deny":
        assert d.state == state


@PROPERTIES
@given(policies, traffic)
def test_the_log_stays_small_and_ordered(policy: RateLimitPolicy,
                                         requests: list[tuple[int, int]]) -> None:
    """MS-RATE-004: strictly increasing instants within the longest window, costs at least 1."""
    state, now = EMPTY, T0
    longest = max(WINDOW_NANOS[limit.window] for limit in policy.limits)
    for step, cost in requests:
        now += step
        state = decide(policy, state, now, cost).state
        instants = [at for at, _ in state.entries]
        assert instants == sorted(set(instants))
        assert all(c >= 1 for _, c in state.entries)
        if instants:
            assert instants[-1] - instants[0] < longest
            assert sum(c for _, c in state.entries) <= sum(lim.limit for lim in policy.limits)


rate_policies = policies
rate_states = st.builds(lambda p, r: RateState(decide_all(p, r)).to_wire(), policies, traffic)


def decide_all(policy: RateLimitPolicy, requests: list[tuple[int, int]]
               ) -> tuple[tuple[int, int], ...]:
    state, now = EMPTY, T0
    for step, cost in requests:
        now += step
        state = decide(policy, state, now, cost).state
    return state.entries


# --- schema examples (MS-RATE-001, MS-RATE-004) -----------------------------------------------

KINDS = {"rate-limit-policy": "rate-limit-policy.schema.json",
         "rate-limit-state": "rate-limit-state.schema.json"}


@pytest.mark.parametrize("key", example_cases(KINDS, "valid"))
def test_valid_rate_limit_examples(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    check_valid_example(key, KINDS, capsys)


@pytest.mark.parametrize("key", example_cases(KINDS, "invalid"))
def test_invalid_rate_limit_examples(key: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    check_invalid_example(key, KINDS, tmp_path, capsys)
