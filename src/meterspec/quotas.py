"""Quota decisions (specs/quotas.md, MS-QTA): usage so far, a requested quantity and a policy in;
allow / allow-with-warning / deny, the remaining quantity, the reset time and the domain events
to emit out. Pure: `now` and the usage's age are inputs; exact decimals throughout."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

from meterspec.contracts import Window, WindowSize
from meterspec.errors import MeterspecError, Problem
from meterspec.ids import digest_id
from meterspec.quantity import EXACT, ZERO, format_quantity, parse_quantity
from meterspec.timestamps import NANOS_PER_SECOND, Instant, format_timestamp, parse_timestamp
from meterspec.windows import period_boundaries, time_zone

Mode = Literal["HARD", "SOFT", "DISABLED"]
"""How a policy enforces its limit (MS-QTA-001)."""
Verdict = Literal["allow", "allow-with-warning", "deny"]
"""A decision's answer (MS-QTA-012)."""
Reason = Literal["within-limit", "warning-threshold", "limit-reached", "limit-exceeded",
                 "grace-expired", "stale-usage", "disabled"]
"""Why a decision answered as it did, checked in MS-QTA-012's order."""
QuotaEventType = Literal["quota.warning", "quota.exceeded"]
"""The quota event types (MS-QTA-010)."""
HUNDRED = Decimal(100)
"""100, for percentages."""
MAX_STALENESS_SECONDS = 31_622_400
"""The largest `maxStalenessSeconds` (366 days)."""
MAX_GRACE_PERIOD_HOURS = 8_784
"""The largest `gracePeriodHours` (366 days)."""
NANOS_PER_HOUR = 3_600 * NANOS_PER_SECOND
"""Nanoseconds in an hour of elapsed time."""


class QuotaPeriod(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The calendar period usage is counted in and resets with (MS-QTA-003). timeZone is
    always written, like Tumbling's."""

    size: WindowSize
    """The calendar period the quota resets on: `minute`, `hour`, `day` or `month` (MS-QTA-003)."""
    time_zone: str = msgspec.field(default="UTC", name="timeZone")
    """Wire `timeZone`: the IANA zone whose wall clock bounds the periods; default `UTC`."""


class QuotaPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True,
                  omit_defaults=True):
    """schemas/quota-policy.schema.json (MS-QTA-001)."""

    limit: str
    """The limit L, a quantity of at least 0; usage may reach it exactly (MS-QTA-004)."""
    mode: Mode
    """`HARD` denies what would go over, `SOFT` only warns, `DISABLED` is not enforced."""
    period: QuotaPeriod
    """The period the usage is counted in and resets with (MS-QTA-003)."""
    warning_threshold_percent: str | None = msgspec.field(
        default=None, name="warningThresholdPercent")
    """Wire `warningThresholdPercent`: the warning level W as a percent of the limit, above 0 and at
    most 100."""
    grace_percent: str | None = msgspec.field(default=None, name="gracePercent")
    """Wire `gracePercent`: how far a HARD quota may be overrun, in percent of the limit; exclusive
    with `graceQuantity`."""
    grace_quantity: str | None = msgspec.field(default=None, name="graceQuantity")
    """Wire `graceQuantity`: how far a HARD quota may be overrun, as a quantity; exclusive with
    `gracePercent`."""
    grace_period_hours: int | None = msgspec.field(default=None, name="gracePeriodHours")
    """Wire `gracePeriodHours`: elapsed hours (1 to 8 784) a HARD quota may stay overrun after its
    limit is reached (MS-QTA-013)."""
    max_staleness_seconds: int | None = msgspec.field(default=None, name="maxStalenessSeconds")
    """Wire `maxStalenessSeconds`: how old the check's usage may be before it counts as stale
    (MS-QTA-009)."""
    stale_headroom: str | None = msgspec.field(default=None, name="staleHeadroom")
    """Wire `staleHeadroom`: the most usage that can arrive unseen while usage is stale; without it
    a stale HARD quota denies everything."""


class QuotaCheck(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One question to the quota function (schemas/quota-check.schema.json, MS-QTA-002)."""

    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the tenant's workspace."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the tenant's universe."""
    subject: str
    """The subject whose usage is limited."""
    unit: str
    """The metric the quota limits."""
    usage: str
    """U, the usage already admitted in the current period; may be negative after credits
    (MS-QTA-002)."""
    requested: str
    """R, the quantity asked for now, at least 0 (0 asks without consuming)."""
    now: str
    """The current instant as a timestamp, supplied by the caller (the core reads no clock)."""
    policy: QuotaPolicy
    """The policy to decide by."""
    usage_as_of: str | None = msgspec.field(default=None, name="usageAsOf")
    """Wire `usageAsOf`: the instant up to which `usage` is known, for the staleness rule
    (MS-QTA-009)."""
    limit_reached_at: str | None = msgspec.field(default=None, name="limitReachedAt")
    """Wire `limitReachedAt`: when this period's usage first reached the limit, as a previous
    decision reported (MS-QTA-014)."""


class QuotaEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A domain event to emit; its id and content depend only on the period, the tenant, the
    metric and the level crossed, so every retry emits it byte for byte (MS-QTA-011)."""

    id: str
    """`qev_` + digest of the event's content, so a retried crossing yields the same id
    (MS-QTA-011)."""
    type: QuotaEventType
    """`quota.warning` for crossing the warning level, `quota.exceeded` for reaching the limit
    (MS-QTA-010)."""
    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the tenant's workspace."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the tenant's universe."""
    subject: str
    """The subject whose usage crossed the level."""
    unit: str
    """The metric the quota limits."""
    period: Window
    """The quota period the level was crossed in, canonical bounds."""
    limit: str
    """The policy's limit, canonical."""
    threshold: str
    """The level crossed (W or L), canonical."""


class QuotaDecision(msgspec.Struct, frozen=True, forbid_unknown_fields=True,
                    omit_defaults=True):
    """schemas/quota-decision.schema.json (MS-QTA-012); limitReachedAt and graceEndsAt only
    under a time grace (MS-QTA-015)."""

    decision: Verdict
    """`allow`, `allow-with-warning` or `deny` (MS-QTA-012)."""
    reason: Reason
    """Why: the first of the reasons that applies, in the order MS-QTA-012 gives."""
    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the tenant's workspace, as checked."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the tenant's universe, as checked."""
    subject: str
    """The subject, as checked."""
    unit: str
    """The metric, as checked."""
    requested: str
    """The quantity requested, canonical."""
    usage: str
    """The usage after the decision: U + R when admitted, U when denied (MS-QTA-008)."""
    limit: str
    """The policy's limit, canonical."""
    remaining: str
    """The limit minus the usage after the decision, or 0: never negative (MS-QTA-008)."""
    period: Window
    """The current quota period, repeated so the caller can confirm its usage is for it."""
    reset_at: str = msgspec.field(name="resetAt")
    """Wire `resetAt`: the end of the current period, a canonical timestamp (MS-QTA-003)."""
    stale: bool
    """Whether the usage was stale (MS-QTA-009), whatever the mode."""
    events: list[QuotaEvent]
    """The quota events of the levels this request crossed, warning first; often empty."""
    limit_reached_at: str | None = msgspec.field(default=None, name="limitReachedAt")
    """Wire `limitReachedAt`: when the limit was first reached, under a time grace only
    (MS-QTA-015)."""
    grace_ends_at: str | None = msgspec.field(default=None, name="graceEndsAt")
    """Wire `graceEndsAt`: `limitReachedAt` plus the grace hours, under a time grace only
    (MS-QTA-015)."""


class Levels(msgspec.Struct, frozen=True):
    """The exact levels of MS-QTA-004 for one policy."""

    limit: Decimal
    """The limit L."""
    warning: Decimal | None
    """The warning level W = L * threshold / 100, or None without a threshold."""
    ceiling: Decimal
    """The ceiling C = L + grace, above which a HARD quota denies."""
    headroom: Decimal | None
    """The policy's `staleHeadroom`, or None when unseen usage is unbounded."""
    max_staleness: Instant | None
    """The staleness bound in nanoseconds, or None when usage never counts as stale."""
    grace_period: Instant | None = None
    """The time grace in nanoseconds (hours * 3600 * 10**9), or None without one (MS-QTA-013)."""


# ------------------------------------------------------------------ checks

def policy_levels(policy: QuotaPolicy, path: str = "") -> Levels:
    """Check a policy (MS-QTA-001) and compute its levels (MS-QTA-004); raise MeterspecError
    with every problem, paths relative to `path`."""
    problems: list[Problem] = []
    limit = _quantity(policy.limit, f"{path}/limit", problems, minimum=ZERO)
    percent = None
    if policy.warning_threshold_percent is not None:
        percent = _quantity(policy.warning_threshold_percent,
                            f"{path}/warningThresholdPercent", problems, minimum=ZERO,
                            maximum=HUNDRED, exclusive_minimum=True)
    grace = ZERO
    if policy.grace_percent is not None and policy.grace_quantity is not None:
        problems.append(Problem("invalid-policy", path, "a policy has at most one of "
                                "gracePercent and graceQuantity", "MS-QTA-001"))
    elif policy.grace_percent is not None:
        grace_percent = _quantity(policy.grace_percent, f"{path}/gracePercent", problems,
                                  minimum=ZERO)
        if grace_percent is not None and limit is not None:
            grace = _percent_of(limit, grace_percent)
    elif policy.grace_quantity is not None:
        grace = _quantity(policy.grace_quantity, f"{path}/graceQuantity", problems,
                          minimum=ZERO) or ZERO
    headroom = None
    if policy.stale_headroom is not None:
        headroom = _quantity(policy.stale_headroom, f"{path}/staleHeadroom", problems,
                             minimum=ZERO)
    staleness = policy.max_staleness_seconds
    if staleness is not None and not 0 <= staleness <= MAX_STALENESS_SECONDS:
        problems.append(Problem("out-of-range", f"{path}/maxStalenessSeconds",
                                f"0 to {MAX_STALENESS_SECONDS} seconds", "MS-QTA-009"))
    hours = policy.grace_period_hours
    if hours is not None and not 1 <= hours <= MAX_GRACE_PERIOD_HOURS:
        problems.append(Problem("out-of-range", f"{path}/gracePeriodHours",
                                f"1 to {MAX_GRACE_PERIOD_HOURS} hours", "MS-QTA-013"))
    try:
        time_zone(policy.period.time_zone)
    except MeterspecError:
        problems.append(Problem("invalid-time-zone", f"{path}/period/timeZone",
                                f"{policy.period.time_zone[:64]!r} is not an IANA time zone "
                                "name", "MS-QTA-003"))
    if problems or limit is None:
        raise MeterspecError(problems)
    warning = None if percent is None else _percent_of(limit, percent)
    return Levels(limit, warning, EXACT.add(limit, grace), headroom,
                  None if staleness is None else staleness * NANOS_PER_SECOND,
                  None if hours is None else hours * NANOS_PER_HOUR)


def _quantity(text: str, path: str, problems: list[Problem], *, minimum: Decimal,
              maximum: Decimal | None = None, exclusive_minimum: bool = False,
              requirement: str = "MS-QTA-001") -> Decimal | None:
    try:
        value = parse_quantity(text, path)
    except MeterspecError as error:
        problems.extend(error.problems)
        return None
    low = value <= minimum if exclusive_minimum else value < minimum
    if low or (maximum is not None and value > maximum):
        bounds = (f"{'above' if exclusive_minimum else 'at least'} {minimum}"
                  + (f" and at most {maximum}" if maximum is not None else ""))
        problems.append(Problem("out-of-range", path, f"must be {bounds}", requirement))
        return None
    return value


def _percent_of(value: Decimal, percent: Decimal) -> Decimal:
    return EXACT.divide(EXACT.multiply(value, percent), HUNDRED)


def period_at(policy: QuotaPolicy, now: Instant, path: str = "/now") -> tuple[Instant, Instant]:
    """MS-QTA-003: the [start, end) of the policy's calendar period that contains `now`."""
    zone = time_zone(policy.period.time_zone)
    bounds = period_boundaries(zone, policy.period.size, now, now + 1)
    if len(bounds) < 2 or not bounds[0] <= now < bounds[1]:
        raise MeterspecError.single("timestamp-out-of-range", path, "the period containing "
                                    "this instant ends after year 9999", "MS-QTA-003")
    return bounds[0], bounds[1]


def check_problems(check: QuotaCheck) -> list[Problem]:
    """Every problem of a decoded QuotaCheck beyond its schema (for the codec)."""
    try:
        _inputs(check)
    except MeterspecError as error:
        return list(error.problems)
    return []


def check_value_problems(document: object, reported: set[str]) -> list[Problem]:
    """Quantity and timestamp problems of a raw quota-check document (MS-ERR-002)."""
    fields = {"/usage": "q", "/requested": "q", "/now": "t", "/usageAsOf": "t",
              "/limitReachedAt": "t"}
    fields |= {f"/policy{k}": v for k, v in _POLICY_VALUES.items()}
    return _raw_value_problems(document, fields, reported)


def policy_value_problems(document: object, reported: set[str]) -> list[Problem]:
    """Quantity problems of a raw quota-policy document (MS-ERR-002)."""
    return _raw_value_problems(document, _POLICY_VALUES, reported)


def decision_value_problems(document: object, reported: set[str]) -> list[Problem]:
    """The problems of a QuotaDecision document's quantities and instants that its schema cannot
    see, beyond those already reported."""
    fields = {"/requested": "q", "/usage": "q", "/limit": "q", "/remaining": "q",
              "/resetAt": "t", "/period/start": "t", "/period/end": "t",
              "/limitReachedAt": "t", "/graceEndsAt": "t"}
    if isinstance(document, dict) and isinstance(document.get("events"), list):
        for i in range(len(document["events"])):
            fields |= {f"/events/{i}/limit": "q", f"/events/{i}/threshold": "q",
                       f"/events/{i}/period/start": "t", f"/events/{i}/period/end": "t"}
    return _raw_value_problems(document, fields, reported)


def policy_semantic_problems(policy: QuotaPolicy) -> list[Problem]:
    """The problems of a quota policy's levels (order, thresholds) that its schema cannot see."""
    try:
        policy_levels(policy)
    except MeterspecError as error:
        return list(error.problems)
    return []


_POLICY_VALUES = {"/limit": "q", "/warningThresholdPercent": "q", "/gracePercent": "q",
                  "/graceQuantity": "q", "/staleHeadroom": "q"}


def _raw_value_problems(document: object, fields: dict[str, str],
                        reported: set[str]) -> list[Problem]:
    problems: list[Problem] = []
    for path, kind in fields.items():
        value: object = document
        for token in path.split("/")[1:]:
            value = value.get(token) if isinstance(value, dict) else None
        if not isinstance(value, str) or path in reported:
            continue
        try:
            (parse_quantity if kind == "q" else parse_timestamp)(value, path)
        except MeterspecError as error:
            problems.extend(error.problems)
    return problems


class _Inputs(msgspec.Struct, frozen=True):
    levels: Levels
    usage: Decimal
    requested: Decimal
    now: Instant
    usage_as_of: Instant | None
    limit_reached_at: Instant | None


def _inputs(check: QuotaCheck) -> _Inputs:
    problems: list[Problem] = []
    for wire, value in (("workspaceID", check.workspace_id), ("universeID", check.universe_id),
                        ("subject", check.subject), ("unit", check.unit)):
        if not value:
            problems.append(Problem("empty-string", f"/{wire}", f"{wire} must not be empty",
                                    "MS-QTA-002"))
    levels = None
    try:
        levels = policy_levels(check.policy, "/policy")
    except MeterspecError as error:
        problems.extend(error.problems)
    usage = None
    try:
        usage = parse_quantity(check.usage, "/usage")
    except MeterspecError as error:
        problems.extend(error.problems)
    requested = _quantity(check.requested, "/requested", problems, minimum=ZERO,
                          requirement="MS-QTA-002")
    now = as_of = None
    try:
        now = parse_timestamp(check.now, "/now")
    except MeterspecError as error:
        problems.extend(error.problems)
    if check.usage_as_of is not None:
        try:
            as_of = parse_timestamp(check.usage_as_of, "/usageAsOf")
        except MeterspecError as error:
            problems.extend(error.problems)
    if now is not None and as_of is not None and as_of > now:
        problems.append(Problem("invalid-value", "/usageAsOf", "usage cannot be known as of "
                                "an instant after now", "MS-QTA-009"))
    reached = None
    if check.limit_reached_at is not None:
        try:
            reached = parse_timestamp(check.limit_reached_at, "/limitReachedAt")
        except MeterspecError as error:
            problems.extend(error.problems)
    if problems or levels is None or usage is None or requested is None or now is None:
        raise MeterspecError(problems)
    if reached is not None:  # MS-QTA-014: within the current period, not after now
        start, _ = period_at(check.policy, now)
        if not start <= reached <= now:
            raise MeterspecError.single(
                "invalid-value", "/limitReachedAt", "the limit was reached in the current "
                "period, not before it and not after now", "MS-QTA-014")
    return _Inputs(levels, usage, requested, now, as_of, reached)


# ------------------------------------------------------------------ the decision

def quota_event_id(kind: QuotaEventType, check: QuotaCheck, period: Window, limit: str,
                   threshold: str) -> str:
    """MS-QTA-011: `qev_` + MS-ID-001 over the event's whole content."""
    return digest_id("qev_", ("meterspec/quota-event/v1", kind, check.workspace_id,
                              check.universe_id, check.subject, check.unit, period.start,
                              period.end, limit, threshold))


def decide(check: QuotaCheck) -> QuotaDecision:
    """MS-QTA-005..012: the decision for one request. Raises MeterspecError listing every
    problem of the check."""
    inputs = _inputs(check)
    levels = inputs.levels
    start, end = period_at(check.policy, inputs.now)
    period = Window(format_timestamp(start), format_timestamp(end))
    usage, requested = inputs.usage, inputs.requested
    after = EXACT.add(usage, requested)
    stale = (inputs.usage_as_of is not None and levels.max_staleness is not None
             and inputs.now - inputs.usage_as_of > levels.max_staleness)
    mode = check.policy.mode
    # MS-QTA-013/014: a time grace opens when usage first reaches the limit (this request's
    # `now` if it is the one that reaches it) and lasts gracePeriodHours; within it the ceiling
    # is the grace ceiling (unbounded without a quantity grace), after it the limit itself.
    timed = levels.grace_period is not None and mode == "HARD"
    reached = inputs.limit_reached_at
    if timed and reached is None and usage < levels.limit <= after:
        reached = inputs.now
    in_grace = timed and reached is not None and inputs.now < reached + (levels.grace_period or 0)
    verdict: Verdict
    reason: Reason
    if mode == "DISABLED":
        verdict, reason = "allow", "disabled"
    elif mode == "HARD" and stale and (
            levels.headroom is None
            or EXACT.add(after, levels.headroom) > levels.limit):
        verdict, reason = "deny", "stale-usage"
    elif mode == "HARD" and timed and not in_grace and after > levels.limit:
        verdict, reason = "deny", "grace-expired"
    elif mode == "HARD" and after > levels.ceiling and (
            not timed or check.policy.grace_percent is not None
            or check.policy.grace_quantity is not None):
        verdict, reason = "deny", "limit-exceeded"
    elif mode == "SOFT" and stale:
        verdict, reason = "allow-with-warning", "stale-usage"
    elif after >= levels.limit:
        verdict, reason = "allow-with-warning", "limit-reached"
    elif levels.warning is not None and after >= levels.warning:
        verdict, reason = "allow-with-warning", "warning-threshold"
    else:
        verdict, reason = "allow", "within-limit"
    admitted = verdict != "deny"
    events: list[QuotaEvent] = []
    if admitted and mode != "DISABLED":
        limit_text = format_quantity(levels.limit)
        crossings: list[tuple[QuotaEventType, Decimal | None]] = [
            ("quota.warning", levels.warning), ("quota.exceeded", levels.limit)]
        for kind, level in crossings:
            if level is not None and usage < level <= after:
                threshold = format_quantity(level)
                events.append(QuotaEvent(
                    quota_event_id(kind, check, period, limit_text, threshold), kind,
                    check.workspace_id, check.universe_id, check.subject, check.unit, period,
                    limit_text, threshold))
    final = after if admitted else usage
    remaining = max(EXACT.subtract(levels.limit, final), ZERO)
    # MS-QTA-015: the instant the limit was reached, once known: given, or this admitted
    # request's (a denial reaches nothing). It is kept while usage falls back below the limit
    # (a credit), so the grace clock of a period never restarts.
    if not timed or (inputs.limit_reached_at is None and not admitted):
        reached = None
    return QuotaDecision(
        decision=verdict, reason=reason, workspace_id=check.workspace_id,
        universe_id=check.universe_id, subject=check.subject, unit=check.unit,
        requested=format_quantity(requested), usage=format_quantity(final),
        limit=format_quantity(levels.limit), remaining=format_quantity(remaining),
        period=period, reset_at=period.end, stale=stale, events=events,
        limit_reached_at=None if reached is None else format_timestamp(reached),
        grace_ends_at=None if reached is None
        else format_timestamp(reached + (levels.grace_period or 0)))
