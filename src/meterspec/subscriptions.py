"""Subscriptions (MS-SUB): a subject on a plan over time, and the parts of its billing periods
that are billed, cut at its plan changes.

    {start?, end?, cancellation?, trialEnd?} --> billed span (MS-SUB-002..005)
    requested periods  ∩ billed span --cut at planChanges--> segments (MS-SUB-006/007)

A subscription without these members is billed every requested period, whole, on `planID`:
its segments are its periods. Pure: no clock, only the instants the subscription states.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import pairwise
from typing import Literal, NamedTuple

import msgspec

from meterspec.accounts import Source
from meterspec.billing_periods import BillingCycle, Period, period_containing
from meterspec.errors import MeterspecError, Problem
from meterspec.timestamps import Instant, parse_timestamp

__all__ = ["Cancellation", "PlanChange", "Segment", "Subscription", "billed_span",
           "has_lifecycle", "lifecycle_problems", "segments", "terms"]


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Cancellation(_Wire, frozen=True, kw_only=True):
    """MS-SUB-003: when the customer asked to stop, and whether it ends the subscription then
    or at the end of the billing period holding that instant."""

    requested_at: str = msgspec.field(name="requestedAt")
    """Wire `requestedAt`: the timestamp the cancellation was asked for (MS-SUB-003)."""
    effective: Literal["period-end", "immediately"]
    """`immediately` ends at `requestedAt`; `period-end` at the end of the billing period holding
    it."""


class PlanChange(_Wire, frozen=True, kw_only=True):
    """MS-SUB-006: from `at` on, the subscription is on `planID`."""

    at: str
    """The timestamp from which the plan applies, mid-period too (MS-SUB-006)."""
    plan_id: str = msgspec.field(name="planID")
    """Wire `planID`: the plan in force from `at`; another than the one before it."""


class Subscription(_Wire, frozen=True):
    """A subject billed on a plan, on its own cycle and time zone (MS-INV-001), with its
    optional life (MS-SUB-001) and the groups its account bills (MS-ACC-001)."""

    subject: str
    """The subject billed; subscribed at most once per request (MS-INV-001)."""
    plan_id: str = msgspec.field(name="planID")
    """Wire `planID`: the plan in force before the first plan change."""
    cycle: BillingCycle
    """The billing cycle that cuts time into periods (MS-BIL-001)."""
    start: str | None = None
    """A timestamp: the subscription exists from this instant; absent means no start
    (MS-SUB-002)."""
    end: str | None = None
    """A timestamp: it exists until this instant, excluded; absent means no end."""
    trial_end: str | None = msgspec.field(default=None, name="trialEnd")
    """Wire `trialEnd`: the time before it is a trial, of which nothing is billed (MS-SUB-004)."""
    cancellation: Cancellation | None = None
    """When and how the subscription was cancelled (MS-SUB-003)."""
    plan_changes: list[PlanChange] | None = msgspec.field(default=None, name="planChanges")
    """Wire `planChanges`: plan assignments over time, strictly increasing in `at` (MS-SUB-006)."""
    sources: list[Source] | None = None
    """The groups a billing account bills; absent means the request's tenant and this subject
    (MS-ACC-001)."""


class Segment(NamedTuple):
    """A billed part of a requested period on one plan (MS-SUB-007): the period's index, the
    segment's bounds, the plan id in force and the member that named it (for problems)."""

    period: int
    """The index of the requested period the segment belongs to."""
    start: Instant
    """The segment's first instant, ns since the epoch."""
    end: Instant
    """The segment's end (exclusive), ns since the epoch."""
    plan_id: str
    """The plan in force during the segment (MS-SUB-006)."""
    named_by: str
    """The JSON Pointer of the member that named the plan, where its problems are reported."""


Terms = tuple[object, ...]
"""What a subscription's segments depend on, hashable (see terms())."""


def has_lifecycle(subscription: Subscription) -> bool:
    """True when anything but the cycle and planID decides what is billed (MS-SUB-001)."""
    return (subscription.start, subscription.end, subscription.trial_end,
            subscription.cancellation, subscription.plan_changes) != (None,) * 5


def terms(subscription: Subscription) -> Terms:
    """What a subscription's segments depend on, hashable: subscriptions with equal terms share
    their schedule (the request's periods and plans being the same)."""
    changes = tuple((c.at, c.plan_id) for c in subscription.plan_changes or ())
    cancel = subscription.cancellation
    return (subscription.cycle, subscription.plan_id, subscription.start, subscription.end,
            subscription.trial_end,
            None if cancel is None else (cancel.requested_at, cancel.effective), changes)


def _instant(text: str | None) -> Instant | None:
    return None if text is None else parse_timestamp(text)


def lifecycle_problems(subscription: Subscription, path: str) -> list[Problem]:
    """The rules of a well-formed subscription's life whose timestamps parse (MS-SUB-001,
    MS-SUB-006); a timestamp that does not parse is the value checks' to report."""
    problems: list[Problem] = []
    try:
        start = _instant(subscription.start)
        end = _instant(subscription.end)
        trial = _instant(subscription.trial_end)
        changes = [parse_timestamp(c.at) for c in subscription.plan_changes or ()]
    except MeterspecError:
        return problems
    if start is not None and end is not None and end <= start:
        problems.append(Problem("invalid-window", f"{path}/end", "a subscription ends after it "
                                "starts", "MS-SUB-001"))
    if start is not None and trial is not None and trial <= start:
        problems.append(Problem("invalid-window", f"{path}/trialEnd", "a trial ends after the "
                                "subscription starts", "MS-SUB-001"))
    before = subscription.plan_id
    for index, (at, change) in enumerate(zip(changes, subscription.plan_changes or (),
                                             strict=True)):
        where = f"{path}/planChanges/{index}"
        if index and at <= changes[index - 1]:
            problems.append(Problem("invalid-value", f"{where}/at", "plan changes are listed in "
                                    "strictly increasing order of `at`", "MS-SUB-006"))
        if change.plan_id == before:
            problems.append(Problem("invalid-value", f"{where}/planID", f"the subscription is "
                                    f"on {before!r} already: a change names another plan",
                                    "MS-SUB-006"))
        before = change.plan_id
    return problems


def billed_span(subscription: Subscription) -> tuple[Instant | None, Instant | None]:
    """MS-SUB-002..005: [from, until) of the billed time, None for no bound: from the start or
    the trial's end, until the end or the cancellation's end, whichever is earlier.
    MeterspecError `timestamp-out-of-range` at /cancellation/requestedAt when a period-end
    cancellation's period ends after year 9999."""
    start = _instant(subscription.start)
    trial = _instant(subscription.trial_end)
    if trial is not None:
        start = trial if start is None else max(start, trial)
    end = _instant(subscription.end)
    cancel = subscription.cancellation
    if cancel is not None:
        requested = parse_timestamp(cancel.requested_at)
        stop = requested if cancel.effective == "immediately" else period_containing(
            subscription.cycle, requested, "/cancellation/requestedAt")[1]
        end = stop if end is None else min(end, stop)
    return start, end


def segments(subscription: Subscription, spans: list[Period]) -> list[Segment]:
    """The billed segments of the requested periods `spans`, oldest first (MS-SUB-005 to
    MS-SUB-007): each period's billed part, cut at the plan changes strictly inside it."""
    low, high = billed_span(subscription)
    changes = subscription.plan_changes or []
    instants = [parse_timestamp(c.at) for c in changes]

    def in_force(at: Instant) -> tuple[str, str]:
        index = bisect_right(instants, at) - 1
        if index < 0:
            return subscription.plan_id, "/planID"
        return changes[index].plan_id, f"/planChanges/{index}/planID"

    found: list[Segment] = []
    for number, (period_start, period_end) in enumerate(spans):
        start = period_start if low is None else max(period_start, low)
        end = period_end if high is None else min(period_end, high)
        if start >= end:
            continue  # MS-SUB-005: no part of this period is billed, so no invoice
        cuts = [at for at in instants if start < at < end]
        for first, last in pairwise([start, *cuts, end]):
            plan_id, named_by = in_force(first)
            found.append(Segment(number, first, last, plan_id, named_by))
    return found
