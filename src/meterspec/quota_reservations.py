"""Atomic check-and-reserve for quotas (specs/quotas.md, MS-QTA-016 to MS-QTA-021).

A quota decision alone (meterspec.quotas.decide) is check-then-act: two requests that read the
same usage can both be admitted and together go over a HARD limit. Here the check and the hold
are one pure step on a state document, so a store that applies each step in one transaction
(a row lock, a compare-and-set on the document) admits at most what the limit allows:

    reserve(policy, state, id, quantity, now) -> decision, state'   (held: usage + holds count)
    commit(policy, state, id, quantity, now)  -> usage and events, state' (the hold becomes usage)
    release(policy, state, id, now)           -> state'             (the hold is dropped)

Holds expire at `expiresAt` (at the latest when the period ends); the state rolls over to a
fresh period when `now` leaves its own. No clock is read: `now` is an input.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from meterspec.contracts import Window
from meterspec.errors import MeterspecError, Problem, order_problems
from meterspec.quantity import EXACT, ZERO, format_quantity, parse_quantity
from meterspec.quotas import (
    QuotaCheck,
    QuotaDecision,
    QuotaEvent,
    QuotaEventType,
    QuotaPolicy,
    decide,
    period_at,
    policy_levels,
    quota_event_id,
)
from meterspec.timestamps import NANOS_PER_SECOND, Instant, format_timestamp, parse_timestamp

__all__ = ["Commit", "QuotaState", "Reservation", "commit", "release", "reserve"]

DEFAULT_TTL_SECONDS = 300
"""How long a hold lives when the caller does not say (MS-QTA-017)."""
MAX_TTL_SECONDS = 86_400
"""The longest a hold may live (a day)."""


class Reservation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A hold on quota (MS-QTA-017): counted as usage until committed, released or expired."""

    id: str
    """The caller's id for the hold, unique among the live holds."""
    quantity: str
    """The quantity held, at least 0, canonical."""
    expires_at: str = msgspec.field(name="expiresAt")
    """Wire `expiresAt`: when the hold stops counting: now + ttl, at most the period's end
    (MS-QTA-017)."""


class QuotaState(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True,
                 kw_only=True):
    """schemas/quota-state.schema.json (MS-QTA-016): one tenant's usage of one metric in one
    period, its holds (sorted by id) and, under a time grace, when the limit was reached. A
    state without a period has counted nothing yet."""

    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the tenant's workspace."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the tenant's universe."""
    subject: str
    """The subject whose usage is limited."""
    unit: str
    """The metric counted."""
    period: Window | None = None
    """The quota period the usage counts in; absent before anything was counted."""
    usage: str
    """The committed usage of the period, canonical (holds not included)."""
    limit_reached_at: str | None = msgspec.field(default=None, name="limitReachedAt")
    """Wire `limitReachedAt`: when the period's usage first reached the limit, when known
    (MS-QTA-014)."""
    reservations: list[Reservation]
    """The live holds, in code-point order of their ids (MS-QTA-016)."""


class Commit(msgspec.Struct, frozen=True):
    """What a commit did (MS-QTA-019): the committed usage after it and the quota events of the
    levels it crossed (MS-QTA-010, MS-QTA-011)."""

    usage: str
    """The committed usage after the commit, canonical."""
    events: list[QuotaEvent]
    """The quota events of the levels the commit crossed, warning first."""


# ------------------------------------------------------------------ the state document

def state_problems(state: QuotaState) -> list[Problem]:
    """A state's rules beyond its schema (MS-QTA-016): identifiers non-empty, quantities and
    instants valid and canonical, a real period, holds of at least 0 in id order, once each."""
    problems: list[Problem] = []
    for wire, value in (("workspaceID", state.workspace_id), ("universeID", state.universe_id),
                        ("subject", state.subject), ("unit", state.unit)):
        if not value:
            problems.append(Problem("empty-string", f"/{wire}", f"{wire} must not be empty",
                                    "MS-QTA-016"))
    _canonical_quantity(state.usage, "/usage", problems)
    if state.period is not None:
        start = _canonical_instant(state.period.start, "/period/start", problems)
        end = _canonical_instant(state.period.end, "/period/end", problems)
        if start is not None and end is not None and start >= end:
            problems.append(Problem("invalid-window", "/period", "a period's start is before "
                                    "its end", "MS-QTA-016"))
    if state.limit_reached_at is not None:
        _canonical_instant(state.limit_reached_at, "/limitReachedAt", problems)
    for index, held in enumerate(state.reservations):
        path = f"/reservations/{index}"
        if not held.id:
            problems.append(Problem("empty-string", f"{path}/id", "a reservation id is not "
                                    "empty", "MS-QTA-016"))
        amount = _canonical_quantity(held.quantity, f"{path}/quantity", problems)
        if amount is not None and amount < ZERO:
            problems.append(Problem("out-of-range", f"{path}/quantity", "a hold is at least 0",
                                    "MS-QTA-016"))
        _canonical_instant(held.expires_at, f"{path}/expiresAt", problems)
    problems += order_problems(
        ((f"/reservations/{i}/id", held.id) for i, held in enumerate(state.reservations)),
        "a reservation id is held once", "reservations are in code-point order of their ids",
        "MS-QTA-016")
    return problems


def _canonical_quantity(text: str, path: str, problems: list[Problem]) -> Decimal | None:
    try:
        value = parse_quantity(text, path)
    except MeterspecError as error:
        problems.extend(error.problems)
        return None
    if format_quantity(value) != text:
        problems.append(Problem("not-canonical", path, f"{text!r} is not in canonical form",
                                "MS-QTA-016"))
    return value


def _canonical_instant(text: str, path: str, problems: list[Problem]) -> Instant | None:
    try:
        instant = parse_timestamp(text, path)
    except MeterspecError as error:
        problems.extend(error.problems)
        return None
    if format_timestamp(instant) != text:
        problems.append(Problem("not-canonical", path, f"{text!r} is not in canonical form",
                                "MS-QTA-016"))
    return instant


def state_value_problems(document: object, reported: set[str]) -> list[Problem]:
    """Quantity and timestamp problems of a raw state document (MS-ERR-002)."""
    from meterspec.quotas import _raw_value_problems

    fields = {"/usage": "q", "/period/start": "t", "/period/end": "t", "/limitReachedAt": "t"}
    if isinstance(document, dict) and isinstance(document.get("reservations"), list):
        for i in range(len(document["reservations"])):
            fields |= {f"/reservations/{i}/quantity": "q", f"/reservations/{i}/expiresAt": "t"}
    return _raw_value_problems(document, fields, reported)


# ------------------------------------------------------------------ the steps

def _current(policy: QuotaPolicy, state: QuotaState, now: Instant) -> QuotaState:
    """MS-QTA-020: the state in the period holding `now`, without the holds expired by `now`.
    A state of an earlier period rolls over (usage 0, no holds, no limitReachedAt)."""
    start, end = period_at(policy, now, "/now")
    period = Window(format_timestamp(start), format_timestamp(end))
    if state.period != period:
        if state.period is not None and now < parse_timestamp(state.period.end):
            raise MeterspecError.single(
                "invalid-value", "/now", "the state counts a period that holds this instant "
                "but is not the policy's period (a policy's period changed, or a clock went "
                "back)", "MS-QTA-020")
        return QuotaState(workspace_id=state.workspace_id, universe_id=state.universe_id,
                          subject=state.subject, unit=state.unit, period=period, usage="0",
                          reservations=[])
    kept = [held for held in state.reservations if parse_timestamp(held.expires_at) > now]
    return msgspec.structs.replace(state, reservations=kept)


def _held(state: QuotaState) -> Decimal:
    total = ZERO
    for held in state.reservations:
        total = EXACT.add(total, Decimal(held.quantity))
    return total


def _amount(quantity: str, path: str) -> Decimal:
    value = parse_quantity(quantity, path)
    if value < ZERO:
        raise MeterspecError.single("out-of-range", path, "at least 0", "MS-QTA-017")
    return value


def reserve(policy: QuotaPolicy, state: QuotaState, reservation_id: str, quantity: str,
            now: Instant, ttl_seconds: int = DEFAULT_TTL_SECONDS,
            ) -> tuple[QuotaDecision, QuotaState]:
    """MS-QTA-017: decide `quantity` against the committed usage plus every live hold, and, when
    admitted, hold it until min(now + ttl, the period's end). The decision is MS-QTA-005 to
    MS-QTA-015's with that usage; its `events` are empty (a hold is not usage yet: commit
    emits). A denial changes nothing. An id already held is `duplicate-item` at /id."""
    policy_levels(policy, "/policy")
    amount = _amount(quantity, "/quantity")
    if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise MeterspecError.single("out-of-range", "/ttlSeconds", f"1 to {MAX_TTL_SECONDS} "
                                    "seconds", "MS-QTA-017")
    current = _current(policy, state, now)
    if any(held.id == reservation_id for held in current.reservations):
        raise MeterspecError.single("duplicate-item", "/id", "this reservation is already "
                                    "held", "MS-QTA-017")
    assert current.period is not None
    effective = EXACT.add(Decimal(current.usage), _held(current))
    check = QuotaCheck(current.workspace_id, current.universe_id, current.subject,
                       current.unit, format_quantity(effective), format_quantity(amount),
                       format_timestamp(now), policy, limit_reached_at=current.limit_reached_at)
    decision = msgspec.structs.replace(decide(check), events=[])
    if decision.decision == "deny":
        return decision, current
    expires = min(now + ttl_seconds * NANOS_PER_SECOND, parse_timestamp(current.period.end))
    holds = sorted([*current.reservations, Reservation(
        reservation_id, format_quantity(amount), format_timestamp(expires))],
        key=lambda held: held.id)
    return decision, msgspec.structs.replace(
        current, reservations=holds,
        limit_reached_at=decision.limit_reached_at or current.limit_reached_at)


def commit(policy: QuotaPolicy, state: QuotaState, reservation_id: str, quantity: str,
           now: Instant) -> tuple[Commit, QuotaState]:
    """MS-QTA-018/019: turn a live hold into usage: the hold is dropped and `quantity` (the
    usage that happened, at least 0, more or less than held) is added. The levels the committed
    usage crosses emit their events (MS-QTA-010, MS-QTA-011). A hold that is not live (never
    made, committed, released or expired) is `unknown-reservation` at /id."""
    levels = policy_levels(policy, "/policy")
    amount = _amount(quantity, "/quantity")
    current = _current(policy, state, now)
    if not any(held.id == reservation_id for held in current.reservations):
        raise _unknown(reservation_id)
    assert current.period is not None
    before = Decimal(current.usage)
    after = EXACT.add(before, amount)
    events: list[QuotaEvent] = []
    if policy.mode != "DISABLED":
        limit = format_quantity(levels.limit)
        check = QuotaCheck(current.workspace_id, current.universe_id, current.subject,
                           current.unit, current.usage, quantity, format_timestamp(now),
                           policy)
        crossings: list[tuple[QuotaEventType, Decimal | None]] = [
            ("quota.warning", levels.warning), ("quota.exceeded", levels.limit)]
        for kind, level in crossings:
            if level is not None and before < level <= after:
                threshold = format_quantity(level)
                events.append(QuotaEvent(
                    quota_event_id(kind, check, current.period, limit, threshold), kind,
                    current.workspace_id, current.universe_id, current.subject, current.unit,
                    current.period, limit, threshold))
    holds = [held for held in current.reservations if held.id != reservation_id]
    reached = current.limit_reached_at
    if (reached is None and policy.mode == "HARD" and levels.grace_period is not None
            and EXACT.add(after, _held(msgspec.structs.replace(current, reservations=holds)))
            >= levels.limit):
        reached = format_timestamp(now)
    return Commit(format_quantity(after), events), msgspec.structs.replace(
        current, usage=format_quantity(after), reservations=holds, limit_reached_at=reached)


def release(policy: QuotaPolicy, state: QuotaState, reservation_id: str,
            now: Instant) -> QuotaState:
    """MS-QTA-018: drop a live hold without usage (the request failed or was abandoned); a hold
    that is not live is `unknown-reservation` at /id."""
    policy_levels(policy, "/policy")
    current = _current(policy, state, now)
    if not any(held.id == reservation_id for held in current.reservations):
        raise _unknown(reservation_id)
    return msgspec.structs.replace(
        current, reservations=[held for held in current.reservations
                               if held.id != reservation_id])


def _unknown(reservation_id: str) -> MeterspecError:
    return MeterspecError.single(
        "unknown-reservation", "/id", f"no live reservation {reservation_id[:64]!r}: never "
        "made, already committed or released, or expired", "MS-QTA-018")
