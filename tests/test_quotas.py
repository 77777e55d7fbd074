"""MS-QTA-001..012: quota decisions. Levels are recomputed here with fractions.Fraction,
independently of the Decimal code; every expected decision was worked out by hand."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_ingestion import check_invalid_example, check_valid_example, example_cases

from meterspec.codec import decode, encode
from meterspec.contracts import EventPayload
from meterspec.errors import MeterspecError
from meterspec.ingestion import ingest
from meterspec.quantity import format_quantity
from meterspec.quotas import (
    QuotaCheck,
    QuotaDecision,
    QuotaPeriod,
    QuotaPolicy,
    decide,
    period_at,
    policy_levels,
)
from meterspec.timestamps import parse_timestamp

PROPERTIES = settings(max_examples=300, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
NOW = "2024-01-15T10:30:00Z"


def policy(limit: str = "100", mode: str = "HARD", **kwargs: Any) -> QuotaPolicy:
    period = kwargs.pop("period", QuotaPeriod("month"))
    return QuotaPolicy(limit, mode, period, **kwargs)  # type: ignore[arg-type]


def check(usage: str, requested: str, pol: QuotaPolicy | None = None, now: str = NOW,
          **kwargs: Any) -> QuotaCheck:
    return QuotaCheck("acme", "prod", "customer:42", "calls", usage, requested, now,
                      pol or policy(), **kwargs)


def verdict(usage: str, requested: str, pol: QuotaPolicy | None = None,
            **kwargs: Any) -> tuple[str, str, str, str, list[tuple[str, str]]]:
    d = decide(check(usage, requested, pol, **kwargs))
    return (d.decision, d.reason, d.usage, d.remaining,
            [(e.type, e.threshold) for e in d.events])


def problems(value: QuotaCheck) -> list[tuple[str, str]]:
    with pytest.raises(MeterspecError) as caught:
        decide(value)
    return sorted((p.code, p.path) for p in caught.value.problems)


# --- policy and check (MS-QTA-001, MS-QTA-002) -----------------------------------------------

def test_policy_problems_are_all_reported_with_paths_into_the_check() -> None:
    bad = policy("-1", warning_threshold_percent="0", grace_percent="-5",
                 max_staleness_seconds=-1, stale_headroom="x",
                 period=QuotaPeriod("month", "Mars/Olympus"))
    assert problems(check("0", "1", bad)) == [
        ("invalid-quantity", "/policy/staleHeadroom"),
        ("invalid-time-zone", "/policy/period/timeZone"),
        ("out-of-range", "/policy/gracePercent"), ("out-of-range", "/policy/limit"),
        ("out-of-range", "/policy/maxStalenessSeconds"),
        ("out-of-range", "/policy/warningThresholdPercent")]


@pytest.mark.parametrize(("percent", "ok"), [("0", False), ("0.0001", True), ("100", True),
                                             ("100.0", True), ("100.01", False), ("1e2", True)])
def test_warning_percent_is_above_0_and_at_most_100(percent: str, ok: bool) -> None:
    """MS-QTA-001."""
    pol = policy(warning_threshold_percent=percent)
    if ok:
        policy_levels(pol)
    else:
        with pytest.raises(MeterspecError) as caught:
            policy_levels(pol)
        assert [(p.code, p.path, p.requirement) for p in caught.value.problems] == [
            ("out-of-range", "/warningThresholdPercent", "MS-QTA-001")]


def test_both_graces_is_an_invalid_policy() -> None:
    with pytest.raises(MeterspecError) as caught:
        policy_levels(policy(grace_percent="1", grace_quantity="1"))
    assert [(p.code, p.path) for p in caught.value.problems] == [("invalid-policy", "")]


def test_check_problems_are_all_reported() -> None:
    """MS-QTA-002: identity non-empty, requested at least 0, timestamps real, every problem."""
    bad = QuotaCheck("", "prod", "", "calls", "1e99", "-0.5", "2024-02-30T00:00:00Z", policy(),
                     usage_as_of="soon")
    assert problems(bad) == [
        ("empty-string", "/subject"), ("empty-string", "/workspaceID"),
        ("invalid-timestamp", "/now"), ("invalid-timestamp", "/usageAsOf"),
        ("out-of-range", "/requested"), ("quantity-out-of-range", "/usage")]
    assert verdict("0", "-0", policy())[0] == "allow"      # -0 is zero, not negative


# --- period and reset (MS-QTA-003) -----------------------------------------------------------

@pytest.mark.parametrize(("size", "zone", "now", "start", "end"), [
    ("month", "UTC", "2024-01-15T10:30:00Z", "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"),
    ("month", "UTC", "2024-02-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"),
    ("month", "UTC", "2024-01-31T23:59:59.999999Z", "2024-01-01T00:00:00Z",
     "2024-02-01T00:00:00Z"),
    ("day", "America/New_York", "2024-03-10T12:00:00Z", "2024-03-10T05:00:00Z",
     "2024-03-11T04:00:00Z"),                                              # 23-hour day
    ("day", "America/New_York", "2024-11-03T12:00:00Z", "2024-11-03T04:00:00Z",
     "2024-11-04T05:00:00Z"),                                              # 25-hour day
    ("month", "Asia/Tokyo", "2024-01-31T15:00:00Z", "2024-01-31T15:00:00Z",
     "2024-02-29T15:00:00Z"),
    ("hour", "Asia/Kolkata", "2024-01-15T10:30:00Z", "2024-01-15T10:30:00Z",
     "2024-01-15T11:30:00Z"),                                              # +05:30
    ("minute", "UTC", "2024-01-15T10:30:59.5Z", "2024-01-15T10:30:00Z", "2024-01-15T10:31:00Z"),
])
def test_period_and_reset(size: str, zone: str, now: str, start: str, end: str) -> None:
    """MS-QTA-003: the zone's calendar period containing now; resetAt is its end."""
    pol = policy(period=QuotaPeriod(size, zone))  # type: ignore[arg-type]
    d = decide(check("0", "1", pol, now=now))
    assert (d.period.start, d.period.end, d.reset_at) == (start, end, end)


def test_period_ending_after_year_9999_is_reported() -> None:
    assert problems(check("0", "1", now="9999-12-31T23:59:59Z")) == [
        ("timestamp-out-of-range", "/now")]


# --- levels and decisions (MS-QTA-004..008) ---------------------------------------------------

def test_levels_are_exact() -> None:
    """MS-QTA-004: 87.5 % of 2.5 is 2.1875, 10 % grace of 0.3 is 0.03: nothing rounds."""
    levels = policy_levels(policy("2.5", warning_threshold_percent="87.5"))
    assert levels.warning == Decimal("2.1875")
    assert policy_levels(policy("0.3", grace_percent="10")).ceiling == Decimal("0.33")
    pol = policy("2.5", "SOFT", warning_threshold_percent="87.5")
    assert verdict("2", "0.1875", pol)[:2] == ("allow-with-warning", "warning-threshold")
    assert verdict("2", "0.1874999", pol)[:2] == ("allow", "within-limit")


HARD = policy("100", "HARD", warning_threshold_percent="80", grace_quantity="10")


@pytest.mark.parametrize(("usage", "requested", "expected"), [
    ("0", "1", ("allow", "within-limit", "1", "99", [])),
    ("70", "9.99", ("allow", "within-limit", "79.99", "20.01", [])),
    ("70", "10", ("allow-with-warning", "warning-threshold", "80", "20",
                  [("quota.warning", "80")])),
    ("80", "1", ("allow-with-warning", "warning-threshold", "81", "19", [])),
    ("99", "1", ("allow-with-warning", "limit-reached", "100", "0", [("quota.exceeded", "100")])),
    ("50", "55", ("allow-with-warning", "limit-reached", "105", "0",
                  [("quota.warning", "80"), ("quota.exceeded", "100")])),
    ("100", "10", ("allow-with-warning", "limit-reached", "110", "0", [])),    # = ceiling
    ("100", "10.000001", ("deny", "limit-exceeded", "100", "0", [])),
    ("79", "40", ("deny", "limit-exceeded", "79", "21", [])),                   # no events
    ("120", "0", ("deny", "limit-exceeded", "120", "0", [])),                   # a probe
    ("-5", "85", ("allow-with-warning", "warning-threshold", "80", "20",
                  [("quota.warning", "80")])),                                   # after credits
])
def test_hard(usage: str, requested: str, expected: tuple[Any, ...]) -> None:
    """MS-QTA-005, MS-QTA-008 (remaining never negative), MS-QTA-010 (crossings)."""
    assert verdict(usage, requested, HARD) == expected


def test_hard_without_grace_reaches_exactly_the_limit() -> None:
    """MS-QTA-004: the limit is inclusive."""
    pol = policy("100")
    assert verdict("99", "1", pol)[:2] == ("allow-with-warning", "limit-reached")
    assert verdict("100", "0.00000000000000000001", pol)[:2] == ("deny", "limit-exceeded")
    assert verdict("0", "0", policy("0"))[:2] == ("allow-with-warning", "limit-reached")


def test_grace_percent() -> None:
    pol = policy("1000", grace_percent="2.5")
    assert verdict("1000", "25", pol)[:2] == ("allow-with-warning", "limit-reached")
    assert verdict("1000", "25.1", pol)[:2] == ("deny", "limit-exceeded")


def test_soft_never_denies_and_grace_has_no_effect() -> None:
    """MS-QTA-006."""
    pol = policy("100", "SOFT", warning_threshold_percent="80", grace_quantity="10")
    assert verdict("79", "1000", pol) == (
        "allow-with-warning", "limit-reached", "1079", "0",
        [("quota.warning", "80"), ("quota.exceeded", "100")])
    assert verdict("0", "79", pol)[:2] == ("allow", "within-limit")


def test_disabled_allows_and_emits_nothing() -> None:
    """MS-QTA-007: remaining and reset still computed."""
    pol = policy("100", "DISABLED", warning_threshold_percent="50", max_staleness_seconds=0)
    d = decide(check("99", "500", pol, usage_as_of="2024-01-01T00:00:00Z"))
    assert (d.decision, d.reason, d.usage, d.remaining, d.events) == (
        "allow", "disabled", "599", "0", [])
    assert d.reset_at == "2024-02-01T00:00:00Z" and d.stale


# --- stale usage (MS-QTA-009) -----------------------------------------------------------------

STALE_HARD = policy("1000", max_staleness_seconds=60, grace_quantity="50")
STALE_SOFT = policy("1000", "SOFT", max_staleness_seconds=60)


@pytest.mark.parametrize(("as_of", "usage", "requested", "pol", "expected"), [
    ("2024-01-15T10:29:00Z", "900", "10", STALE_HARD, ("allow", "within-limit", False)),
    ("2024-01-15T10:28:59.999999Z", "0", "1", STALE_HARD, ("deny", "stale-usage", True)),
    ("2024-01-15T10:28:59.999999Z", "0", "0", STALE_HARD, ("deny", "stale-usage", True)),
    ("2024-01-15T10:00:00Z", "850", "50",
     msgspec.structs.replace(STALE_HARD, stale_headroom="100"), ("allow", "within-limit", True)),
    ("2024-01-15T10:00:00Z", "850", "50.5",
     msgspec.structs.replace(STALE_HARD, stale_headroom="100"), ("deny", "stale-usage", True)),
    ("2024-01-15T10:00:00Z", "1000", "0",
     msgspec.structs.replace(STALE_HARD, stale_headroom="0"),
     ("allow-with-warning", "limit-reached", True)),
    ("2024-01-15T10:00:00Z", "1000", "10", STALE_SOFT,
     ("allow-with-warning", "stale-usage", True)),
    ("2024-01-15T10:00:00Z", "0", "1", STALE_SOFT, ("allow-with-warning", "stale-usage", True)),
    ("2000-01-01T00:00:00Z", "0", "1", policy("1000"), ("allow", "within-limit", False)),
])
def test_stale_usage(as_of: str, usage: str, requested: str, pol: QuotaPolicy,
                     expected: tuple[str, str, bool]) -> None:
    """MS-QTA-009: exactly at the bound is fresh; HARD fails closed unless the request plus the
    headroom fits under the limit (never into grace); SOFT warns; no bound, never stale."""
    d = decide(check(usage, requested, pol, usage_as_of=as_of))
    assert (d.decision, d.reason, d.stale) == expected


def test_usage_known_after_now_is_invalid() -> None:
    assert problems(check("0", "1", usage_as_of="2024-01-15T10:30:00.000001Z")) == [
        ("invalid-value", "/usageAsOf")]


# --- events (MS-QTA-010, MS-QTA-011) ----------------------------------------------------------

def ms_id(prefix: str, fields: list[str]) -> str:
    data = b"".join(str(len(f.encode())).encode() + b":" + f.encode() for f in fields)
    return prefix + hashlib.sha256(data).hexdigest()[:32]


def test_event_id_and_content() -> None:
    """MS-QTA-011: the id is MS-ID-001 over the whole content; no time, no usage figure."""
    d = decide(check("79", "1", policy(warning_threshold_percent="80.0")))
    [warning] = d.events
    assert warning.id == ms_id("qev_", [
        "meterspec/quota-event/v1", "quota.warning", "acme", "prod", "customer:42", "calls",
        "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "100", "80"])
    assert list(json.loads(encode(warning))) == [
        "id", "type", "workspaceID", "universeID", "subject", "unit", "period", "limit",
        "threshold"]


def test_a_retry_emits_a_byte_identical_event_that_ingestion_drops() -> None:
    """MS-QTA-011: the retry before the usage was recorded recomputes the crossing at another
    instant and emits the same bytes; after the usage was recorded it emits nothing."""
    first = decide(check("79", "1", policy(warning_threshold_percent="80"), now=NOW))
    retry = decide(check("79", "1", policy(warning_threshold_percent="80"),
                         now="2024-01-20T00:00:00Z"))
    later = decide(check("80", "1", policy(warning_threshold_percent="80"),
                         now="2024-01-20T00:00:00Z"))
    assert encode(first.events) == encode(retry.events) and first.events
    assert later.events == []
    # As domain events through MS-ING: the second is a duplicate.
    payloads = [EventPayload(e.id, e.workspace_id, e.universe_id, e.type, e.subject,
                             e.period.start, {"threshold": e.threshold, "limit": e.limit})
                for e in first.events + retry.events]
    assert ingest(payloads).outcomes == ("accepted", "duplicate")


def test_next_period_and_a_new_limit_are_new_events() -> None:
    a = decide(check("79", "1", policy(warning_threshold_percent="80"))).events[0]
    b = decide(check("79", "1", policy(warning_threshold_percent="80"),
                     now="2024-02-15T00:00:00Z")).events[0]
    c = decide(check("159", "1", policy("200", warning_threshold_percent="80"))).events[0]
    assert len({a.id, b.id, c.id}) == 3


# --- decision document (MS-QTA-012) -----------------------------------------------------------

def test_decision_round_trips_through_its_schema() -> None:
    d = decide(check("70", "40", HARD))
    again = decode("quota-decision", encode(d), QuotaDecision, fast=False)
    assert again == d
    assert list(json.loads(encode(d))) == [
        "decision", "reason", "workspaceID", "universeID", "subject", "unit", "requested",
        "usage", "limit", "remaining", "period", "resetAt", "stale", "events"]


# --- hypothesis: an independent model in fractions --------------------------------------------

amounts = st.sampled_from(["0", "1", "2.5", "10", "79.5", "80", "99.999", "100", "100.5", "110",
                           "150", "-3", "1000"])
percents = st.sampled_from([None, "50", "80", "87.5", "100"])


@st.composite
def quota_policies(draw: st.DrawFn) -> QuotaPolicy:
    grace = draw(st.sampled_from(["none", "percent", "quantity"]))
    return QuotaPolicy(
        limit=draw(st.sampled_from(["0", "1", "80", "100", "2.5"])),
        mode=draw(st.sampled_from(["HARD", "SOFT", "DISABLED"])),
        period=QuotaPeriod(draw(st.sampled_from(["minute", "hour", "day", "month"])),
                           draw(st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"]))),
        warning_threshold_percent=draw(percents),
        grace_percent=draw(st.sampled_from(["0", "10", "12.5"])) if grace == "percent" else None,
        grace_quantity=draw(st.sampled_from(["0", "5", "0.5"])) if grace == "quantity" else None,
        max_staleness_seconds=draw(st.none() | st.sampled_from([0, 60])),
        stale_headroom=draw(st.none() | st.sampled_from(["0", "10"])),
        grace_period_hours=draw(st.none() | st.sampled_from([1, 24])))


@st.composite
def quota_checks(draw: st.DrawFn) -> QuotaCheck:
    now = draw(st.sampled_from(["2024-01-15T10:30:00Z", "2024-03-10T07:00:00Z",
                                "2024-12-31T23:59:59.999999Z"]))
    as_of = draw(st.sampled_from([None, now, "2024-01-15T10:29:00Z", "2024-01-01T00:00:00Z"]))
    assume(as_of is None or as_of <= now)
    policy = draw(quota_policies())
    # MS-QTA-014: an instant the limit was reached, in the period and not after now.
    reached = draw(st.sampled_from([None, now, "2024-01-15T09:30:00Z", "2024-01-14T10:00:00Z",
                                    "2024-03-10T06:30:00Z"]))
    assume(reached is None or period_at(policy, parse_timestamp(now))[0]
           <= parse_timestamp(reached) <= parse_timestamp(now))
    return QuotaCheck(
        "w", "u", draw(st.sampled_from(["s1", "s2"])), "calls", draw(amounts),
        draw(amounts.filter(lambda a: not a.startswith("-"))), now, policy,
        usage_as_of=as_of, limit_reached_at=reached)


quota_decisions = quota_checks().map(decide)


def model(c: QuotaCheck) -> tuple[str, str, list[str]]:
    """MS-QTA-004..010 transcribed with Fractions."""
    p = c.policy
    limit, usage, requested = Fraction(p.limit), Fraction(c.usage), Fraction(c.requested)
    after = usage + requested
    warning = None if p.warning_threshold_percent is None else (
        limit * Fraction(p.warning_threshold_percent) / 100)
    grace = (Fraction(p.grace_quantity) if p.grace_quantity is not None
             else limit * Fraction(p.grace_percent) / 100 if p.grace_percent is not None else 0)
    def t(x: str) -> datetime:
        return datetime.fromisoformat(x.replace("Z", "+00:00"))

    stale = False
    if c.usage_as_of is not None and p.max_staleness_seconds is not None:
        stale = (t(c.now) - t(c.usage_as_of)).total_seconds() > p.max_staleness_seconds
    if p.mode == "DISABLED":
        return "allow", "disabled", []
    if p.mode == "HARD" and stale and (
            p.stale_headroom is None or after + Fraction(p.stale_headroom) > limit):
        return "deny", "stale-usage", []
    timed = p.mode == "HARD" and p.grace_period_hours is not None
    if timed:  # MS-QTA-013/014: the window opens when usage first reaches the limit
        reached = c.limit_reached_at or (c.now if usage < limit <= after else None)
        open_ = reached is not None and t(c.now) < t(reached) + timedelta(
            hours=p.grace_period_hours or 0)
        if not open_ and after > limit:
            return "deny", "grace-expired", []
        if p.grace_percent is None and p.grace_quantity is None:
            grace = after  # unbounded while the window is open
    if p.mode == "HARD" and after > limit + grace:
        return "deny", "limit-exceeded", []
    events = [kind for kind, level in (("quota.warning", warning), ("quota.exceeded", limit))
              if level is not None and usage < level <= after]
    if p.mode == "SOFT" and stale:
        return "allow-with-warning", "stale-usage", events
    if after >= limit:
        return "allow-with-warning", "limit-reached", events
    if warning is not None and after >= warning:
        return "allow-with-warning", "warning-threshold", events
    return "allow", "within-limit", events


@PROPERTIES
@given(quota_checks())
def test_decisions_agree_with_the_fraction_model(c: QuotaCheck) -> None:
    """MS-QTA-004..010; and remaining is never negative (MS-QTA-008), a denial consumes and
    emits nothing, SOFT never denies (MS-QTA-006)."""
    d = decide(c)
    assert (d.decision, d.reason, [e.type for e in d.events]) == model(c)
    assert Fraction(d.remaining) >= 0
    assert Fraction(d.remaining) == max(Fraction(c.policy.limit) - Fraction(d.usage), 0)
    if d.decision == "deny":
        assert Fraction(d.usage) == Fraction(c.usage)
        assert d.events == []
    if c.policy.mode == "SOFT":
        assert d.decision != "deny"


@PROPERTIES
@given(quota_checks(), amounts.filter(lambda a: not a.startswith("-")))
def test_hard_denial_is_monotone_in_the_request(c: QuotaCheck, more: str) -> None:
    """MS-QTA-005: asking for more never turns a denial into an admission."""
    total = format_quantity(Decimal(c.requested) + Decimal(more))
    bigger = msgspec.structs.replace(c, requested=total)
    if decide(c).decision == "deny":
        assert decide(bigger).decision == "deny"


@PROPERTIES
@given(quota_policies(), st.lists(st.tuples(st.sampled_from(["0", "0.5", "1", "7", "30", "60"]),
                                            st.booleans(), st.booleans()), max_size=25))
def test_each_level_yields_one_distinct_event_per_period_under_retries(
        pol: QuotaPolicy, requests: list[tuple[str, bool, bool]]) -> None:
    """MS-QTA-010, MS-QTA-011: replay a period of requests where any request may be retried,
    before its usage was recorded (same usage) or after (usage already includes it). The
    distinct events emitted are exactly one per level that the admitted usage reached, never
    two for one level."""
    assume(pol.mode != "DISABLED" and pol.max_staleness_seconds is None)
    usage = Decimal(0)
    emitted: dict[str, set[bytes]] = {}
    for requested, retry_before, retry_after in requests:
        c = check(str(usage), requested, pol)
        d = decide(c)
        attempts = [d]
        if retry_before:
            # Later, but in the same period: minute and hour periods are short.
            attempts.append(decide(msgspec.structs.replace(c, now="2024-01-15T10:30:00.5Z")))
        if d.decision != "deny":
            usage += Decimal(requested)
            if retry_after:
                attempts.append(decide(check(str(usage), "0", pol)))
        for attempt in attempts:
            for e in attempt.events:
                emitted.setdefault(e.type, set()).add(encode(e))
    levels = policy_levels(pol)
    # Usage starts at 0, so a level at or below 0 is never crossed: it was reached already.
    reached = {"quota.exceeded"} if usage >= levels.limit > 0 else set()
    if levels.warning is not None and usage >= levels.warning > 0:
        reached.add("quota.warning")
    assert set(emitted) == reached
    assert all(len(v) == 1 for v in emitted.values())


# --- schema examples (MS-QTA-001, MS-QTA-002, MS-QTA-012) -------------------------------------

KINDS = {"quota-policy": "quota-policy.schema.json", "quota-check": "quota-check.schema.json",
         "quota-decision": "quota-decision.schema.json"}


@pytest.mark.parametrize("key", example_cases(KINDS, "valid"))
def test_valid_quota_examples(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    check_valid_example(key, KINDS, capsys)


@pytest.mark.parametrize("key", example_cases(KINDS, "invalid"))
def test_invalid_quota_examples(key: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    check_invalid_example(key, KINDS, tmp_path, capsys)


def test_decision_examples_are_what_the_reference_decides() -> None:
    """The valid decision documents are the decisions for checks written out in this test."""
    examples = Path(__file__).resolve().parents[1] / "schemas" / "examples"
    base = json.loads((examples / "quota-check/valid/crosses-warning.json").read_text())
    for name, usage, requested in (("warning-crossed", "7999", "1"),
                                   ("denied-beyond-grace", "10990", "11"),
                                   ("limit-reached-in-grace", "9999.5", "1000")):
        c = decode("quota-check", json.dumps({**base, "usage": usage, "requested": requested}),
                   QuotaCheck, fast=False)
        document = json.loads((examples / f"quota-decision/valid/{name}.json").read_text())
        assert json.loads(encode(decide(c))) == document
