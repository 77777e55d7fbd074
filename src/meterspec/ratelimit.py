"""Sliding-log rate limits (specs/quotas.md, MS-RATE) as a pure state machine.

`decide(policy, state, now, cost)` admits a request when, for every limit, the costs admitted in
the last window (now - w, now] plus this cost stay within the limit. The state is the log of
admitted costs inside the longest window: exact, integer-only, and small enough to keep in memory
or in one Redis key as a JSON document.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, NamedTuple

import msgspec

from meterspec.errors import MeterspecError, Problem, order_problems
from meterspec.timestamps import (
    MAX_INSTANT,
    NANOS_PER_SECOND,
    Instant,
    format_timestamp,
    parse_timestamp,
)

RateWindow = Literal["second", "minute", "hour"]
"""The sliding window lengths of a limit (MS-RATE-001)."""
WINDOW_NANOS: dict[str, int] = {"second": NANOS_PER_SECOND, "minute": 60 * NANOS_PER_SECOND,
                                "hour": 3600 * NANOS_PER_SECOND}
"""Each window length in ns."""
MAX_COUNT = 2**53 - 1
"""Limits and costs are integers up to 2^53 - 1, exact in every JSON implementation."""


class RateLimit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """At most `limit` cost units in any sliding window of this size (MS-RATE)."""
    window: RateWindow
    """The sliding window's length: `second`, `minute` or `hour`."""
    limit: int
    """The most cost units admitted in any such window, 1 to 2^53 - 1."""


class RateLimitPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """schemas/rate-limit-policy.schema.json (MS-RATE-001)."""

    limits: list[RateLimit]
    """The limits, each window at most once; a request must fit all of them (MS-RATE-001)."""


class RateLogEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One admitted request in the log: when, and its cost."""
    at: str
    """The canonical timestamp the cost was admitted at."""
    cost: int
    """The total cost admitted at that instant, at least 1."""


class RateLimitState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """schemas/rate-limit-state.schema.json (MS-RATE-004)."""

    log: list[RateLogEntry]
    """The admitted costs, instants strictly increasing, pruned to the longest window
    (MS-RATE-004)."""


class RateState(NamedTuple):
    """The in-memory state: (instant, total cost admitted at it), strictly increasing instants,
    every cost at least 1."""

    entries: tuple[tuple[Instant, int], ...] = ()
    """(instant in ns, total cost admitted at it), instants strictly increasing."""

    def to_wire(self) -> RateLimitState:
        """The state as a RateLimitState document."""
        return RateLimitState([RateLogEntry(format_timestamp(at), cost)
                               for at, cost in self.entries])

    @classmethod
    def from_wire(cls, document: RateLimitState) -> RateState:
        """The state of a RateLimitState document, checked (MeterspecError if it is not in
        order)."""
        problems = state_problems(document)
        if problems:
            raise MeterspecError(problems)
        return cls(tuple((parse_timestamp(e.at), e.cost) for e in document.log))


EMPTY = RateState()
"""The state before any request was admitted."""


class RateDecision(NamedTuple):
    """Whether a request is admitted, the state after it, and when to retry if not."""
    decision: Literal["allow", "deny"]
    """`allow` or `deny`."""
    state: RateState
    """The state after the decision; unchanged by a denial."""
    retry_after: int | None
    """Nanoseconds from `now` until the same request would be admitted if nothing else is;
    None when admitted, and when it never can be (cost above a limit)."""
    remaining: tuple[int, ...]
    """Per limit, in policy order: what the window still admits after this decision."""


# ------------------------------------------------------------------ checks

def policy_problems(policy: RateLimitPolicy) -> list[Problem]:
    """MS-RATE-001: at least one limit, windows distinct, limits 1..2^53-1."""
    problems: list[Problem] = []
    if not policy.limits:
        problems.append(Problem("empty-list", "/limits", "a policy needs at least one limit",
                                "MS-RATE-001"))
    seen: set[str] = set()
    for index, limit in enumerate(policy.limits):
        if limit.window not in WINDOW_NANOS:
            problems.append(Problem("invalid-value", f"/limits/{index}/window",
                                    "second, minute or hour", "MS-RATE-001"))
        elif limit.window in seen:
            problems.append(Problem("duplicate-item", f"/limits/{index}/window",
                                    "one limit per window", "MS-RATE-001"))
        seen.add(limit.window)
        if isinstance(limit.limit, bool) or not 1 <= limit.limit <= MAX_COUNT:
            problems.append(Problem("out-of-range", f"/limits/{index}/limit",
                                    f"a limit is an integer from 1 to {MAX_COUNT}",
                                    "MS-RATE-001"))
    return problems


def state_problems(document: RateLimitState) -> list[Problem]:
    """MS-RATE-004: canonical instants, strictly increasing, costs 1..2^53-1."""
    problems: list[Problem] = []
    instants: list[tuple[str, Instant]] = []
    for index, entry in enumerate(document.log):
        path = f"/log/{index}"
        if isinstance(entry.cost, bool) or not 1 <= entry.cost <= MAX_COUNT:
            problems.append(Problem("out-of-range", f"{path}/cost",
                                    f"a cost is an integer from 1 to {MAX_COUNT}",
                                    "MS-RATE-004"))
        try:
            at = parse_timestamp(entry.at, f"{path}/at")
        except MeterspecError as error:
            problems.extend(error.problems)
            continue
        if format_timestamp(at) != entry.at:
            problems.append(Problem("not-canonical", f"{path}/at", "log instants are in the "
                                    "canonical form of MS-TIME-004", "MS-RATE-004"))
        instants.append((path, at))
    return problems + order_problems(
        instants, "one entry per instant", "entries are in increasing order of instant",
        "MS-RATE-004")


def state_value_problems(document: object, reported: set[str]) -> list[Problem]:
    """Timestamp problems of a raw rate-limit-state document (MS-ERR-002)."""
    problems: list[Problem] = []
    log = document.get("log") if isinstance(document, dict) else None
    for index, entry in enumerate(log if isinstance(log, list) else []):
        path = f"/log/{index}/at"
        value = entry.get("at") if isinstance(entry, dict) else None
        if isinstance(value, str) and path not in reported:
            try:
                parse_timestamp(value, path)
            except MeterspecError as error:
                problems.extend(error.problems)
    return problems


# ------------------------------------------------------------------ the state machine

def decide(policy: RateLimitPolicy, state: RateState, now: Instant, cost: int = 1
           ) -> RateDecision:
    """MS-RATE-002..007: admit or deny one request of `cost` at `now`."""
    problems = policy_problems(policy)
    if isinstance(cost, bool) or not isinstance(cost, int) or not 0 <= cost <= MAX_COUNT:
        problems.append(Problem("out-of-range", "/cost", f"a cost is an integer from 0 to "
                                f"{MAX_COUNT}", "MS-RATE-002"))
    if not isinstance(now, int) or isinstance(now, bool) or not 0 <= now - _MIN <= _SPAN:
        problems.append(Problem("timestamp-out-of-range", "/now", "now is an instant in "
                                "years 0001..9999", "MS-RATE-003"))
    if problems:
        raise MeterspecError(problems)
    entries = state.entries
    # MS-RATE-003: the decision instant never goes back behind the log.
    instant = max(now, entries[-1][0]) if entries else now
    used = [_used(entries, instant, WINDOW_NANOS[limit.window]) for limit in policy.limits]
    fits = all(u + cost <= limit.limit for u, limit in zip(used, policy.limits, strict=True))
    if fits:
        if cost and entries and entries[-1][0] == instant:
            entries = (*entries[:-1], (instant, entries[-1][1] + cost))
        elif cost:
            entries = (*entries, (instant, cost))
        remaining = tuple(limit.limit - u - cost
                          for u, limit in zip(used, policy.limits, strict=True))
        return RateDecision("allow", _pruned(policy, entries), None, remaining)
    retry_at = _retry_at(policy, entries, instant, cost)
    remaining = tuple(max(limit.limit - u, 0)
                      for u, limit in zip(used, policy.limits, strict=True))
    return RateDecision("deny", _pruned(policy, entries),
                        None if retry_at is None else retry_at - now, remaining)


def _pruned(policy: RateLimitPolicy, entries: tuple[tuple[Instant, int], ...]) -> RateState:
    """MS-RATE-004: keep the entries within the longest window of the latest logged instant.
    Not of the decision instant: the clamp of MS-RATE-003 only remembers logged instants, so a
    later decision may come at any instant from the latest logged one on, and must still see
    every entry inside its windows."""
    if not entries:
        return EMPTY
    longest = max(WINDOW_NANOS[limit.window] for limit in policy.limits)
    horizon = entries[-1][0] - longest
    return RateState(tuple(entry for entry in entries if entry[0] > horizon))


_MIN = parse_timestamp("0001-01-01T00:00:00Z")
_SPAN = MAX_INSTANT - _MIN


def _used(entries: Iterable[tuple[Instant, int]], instant: Instant, window: int) -> int:
    """Costs admitted in (instant - window, instant]."""
    return sum(cost for at, cost in entries if at > instant - window)


def _retry_at(policy: RateLimitPolicy, entries: tuple[tuple[Instant, int], ...],
              instant: Instant, cost: int) -> Instant | None:
    """MS-RATE-005: the earliest instant at which the request fits every limit, assuming nothing
    else is admitted; None if it never fits (cost above a limit)."""
    earliest = instant
    for limit in policy.limits:
        if cost > limit.limit:
            return None
        window = WINDOW_NANOS[limit.window]
        inside = [(at, c) for at, c in entries if at > instant - window]
        excess = sum(c for _, c in inside) + cost - limit.limit
        for at, c in inside:  # oldest first: each leaves the window at at + window
            if excess <= 0:
                break
            excess -= c
            earliest = max(earliest, at + window)
    return earliest
