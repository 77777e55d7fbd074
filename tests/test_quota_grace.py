"""Time-based grace for HARD quotas (specs/quotas.md, MS-QTA-013 to MS-QTA-015)."""

from __future__ import annotations

from typing import Any

import pytest

from meterspec.codec import STRUCTS, decode, encode
from meterspec.errors import MeterspecError
from meterspec.quotas import QuotaCheck, QuotaDecision, decide

POLICY: dict[str, Any] = {"limit": "100", "mode": "HARD", "period": {"size": "month"},
                          "gracePeriodHours": 24}


def _check(usage: str, requested: str, now: str, policy: dict[str, Any] | None = None,
           **extra: str) -> QuotaCheck:
    document = {"workspaceID": "w", "universeID": "u", "subject": "s", "unit": "calls",
                "usage": usage, "requested": requested, "now": now,
                "policy": policy or POLICY, **extra}
    check: QuotaCheck = decode("quota-check", encode(document), QuotaCheck, fast=False)
    return check


def _decide(*args: Any, **kwargs: Any) -> QuotaDecision:
    return decide(_check(*args, **kwargs))


def test_the_request_that_reaches_the_limit_opens_the_window() -> None:
    """MS-QTA-013/015: R = now of the request with U < L <= A; graceEndsAt = R + 24 h."""
    decision = _decide("90", "20", "2024-03-10T12:00:00Z")
    assert (decision.decision, decision.reason) == ("allow-with-warning", "limit-reached")
    assert decision.limit_reached_at == "2024-03-10T12:00:00Z"
    assert decision.grace_ends_at == "2024-03-11T12:00:00Z"
    assert [event.type for event in decision.events] == ["quota.exceeded"]
    # Below the limit nothing is reported; the fields exist only under a time grace.
    below = _decide("10", "5", "2024-03-10T12:00:00Z")
    assert below.limit_reached_at is None and b"limitReachedAt" not in encode(below)
    plain = _decide("90", "20", "2024-03-10T12:00:00Z",
                    {k: v for k, v in POLICY.items() if k != "gracePeriodHours"})
    assert plain.decision == "deny" and plain.limit_reached_at is None


def test_inside_the_window_the_overrun_is_unbounded_without_a_quantity_grace() -> None:
    decision = _decide("150", "1000", "2024-03-11T11:59:59.999999999Z",
                       limitReachedAt="2024-03-10T12:00:00Z")
    assert (decision.decision, decision.reason, decision.usage) == (
        "allow-with-warning", "limit-reached", "1150")
    assert decision.events == []  # exceeded was emitted when L was crossed


def test_the_window_is_half_open_then_grace_expired() -> None:
    """MS-QTA-013: at R + H exactly the window has closed."""
    decision = _decide("150", "1", "2024-03-11T12:00:00Z", limitReachedAt="2024-03-10T12:00:00Z")
    assert (decision.decision, decision.reason, decision.usage) == ("deny", "grace-expired",
                                                                   "150")
    assert decision.limit_reached_at == "2024-03-10T12:00:00Z"  # still reported
    # A request that stays within the limit (after a credit) is decided as usual.
    credit = _decide("-10", "50", "2024-03-20T00:00:00Z", limitReachedAt="2024-03-10T12:00:00Z")
    assert (credit.decision, credit.reason) == ("allow", "within-limit")
    assert credit.limit_reached_at == "2024-03-10T12:00:00Z"  # the window never reopens
    again = _decide("40", "70", "2024-03-20T00:00:00Z", limitReachedAt="2024-03-10T12:00:00Z")
    assert (again.decision, again.reason) == ("deny", "grace-expired")


def test_with_a_quantity_grace_the_window_bounds_it_in_time() -> None:
    policy = {**POLICY, "gracePercent": "10"}
    inside = _decide("100", "10", "2024-03-10T13:00:00Z", policy,
                     limitReachedAt="2024-03-10T12:00:00Z")
    assert (inside.decision, inside.usage) == ("allow-with-warning", "110")
    over = _decide("100", "10.5", "2024-03-10T13:00:00Z", policy,
                   limitReachedAt="2024-03-10T12:00:00Z")
    assert (over.decision, over.reason) == ("deny", "limit-exceeded")
    after = _decide("100", "1", "2024-03-11T12:00:00Z", policy,
                    limitReachedAt="2024-03-10T12:00:00Z")
    assert (after.decision, after.reason) == ("deny", "grace-expired")


def test_over_the_limit_without_limit_reached_at_fails_closed() -> None:
    """MS-QTA-014: the start of the window is unknown, so it is taken as closed."""
    decision = _decide("100", "1", "2024-03-10T12:00:00Z")
    assert (decision.decision, decision.reason) == ("deny", "grace-expired")
    assert decision.limit_reached_at is None
    assert _decide("100", "0", "2024-03-10T12:00:00Z").decision == "allow-with-warning"


def test_hours_are_elapsed_time_across_dst() -> None:
    """24 hours from 2024-03-09 12:00 New York (EST) ends at 13:00 EDT on the 10th."""
    policy = {**POLICY, "period": {"size": "month", "timeZone": "America/New_York"}}
    decision = _decide("90", "20", "2024-03-09T17:00:00Z", policy)
    assert decision.grace_ends_at == "2024-03-10T17:00:00Z"


def test_soft_and_disabled_quotas_ignore_the_time_grace() -> None:
    for mode in ("SOFT", "DISABLED"):
        decision = _decide("150", "1", "2024-03-20T00:00:00Z", {**POLICY, "mode": mode})
        assert decision.decision != "deny" and decision.limit_reached_at is None


def test_stale_usage_is_checked_first() -> None:
    policy = {**POLICY, "maxStalenessSeconds": 60}
    decision = _decide("90", "20", "2024-03-10T12:00:00Z", policy,
                       usageAsOf="2024-03-10T11:00:00Z")
    assert (decision.decision, decision.reason, decision.limit_reached_at) == (
        "deny", "stale-usage", None)


@pytest.mark.parametrize(("reached", "now"), [
    ("2024-02-29T23:59:59Z", "2024-03-10T12:00:00Z"),  # before the period
    ("2024-03-10T12:00:01Z", "2024-03-10T12:00:00Z"),  # after now
])
def test_limit_reached_at_lies_in_the_period_and_not_after_now(reached: str, now: str) -> None:
    with pytest.raises(MeterspecError) as raised:
        _decide("100", "1", now, limitReachedAt=reached)
    assert [(p.code, p.path) for p in raised.value.problems] == [
        ("invalid-value", "/limitReachedAt")]


@pytest.mark.parametrize("hours", [0, 8785, 1.5])
def test_grace_period_hours_bounds(hours: object) -> None:
    with pytest.raises(MeterspecError) as raised:
        _check("1", "1", "2024-03-10T12:00:00Z", {**POLICY, "gracePeriodHours": hours})
    codes = {p.code for p in raised.value.problems}
    assert codes <= {"out-of-range", "wrong-type"} and codes


def test_decisions_with_a_window_are_valid_documents() -> None:
    decision = _decide("90", "20", "2024-03-10T12:00:00Z")
    assert decode("quota-decision", encode(decision), STRUCTS["quota-decision"],
                  fast=False) == decision
