"""The reference's answers to the operations of pricing, ingestion and quotas
(INTERPRETING.md 3.3 to 3.8): `rate`, `rate-plan`, `ingest`, `apply-corrections`, `quota` and
`rate-limit`.

Each handler takes a case's `input` and returns the answer body: `{"output": [...]}`, or raises
MeterspecError with every problem of the input, paths being JSON Pointers into the input object
(`/charge/tiers/1/upTo`, `/log/2/time`). The results that have no wire form in schemas/ (a
rated plan, an ingest result, a corrections result, a rate-limit decision) are written here, in
the shapes INTERPRETING.md defines."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import msgspec

from meterspec import ingestion, money, plans, pricing, quotas, ratelimit
from meterspec.codec import decode
from meterspec.contracts import EventPayload
from meterspec.errors import MeterspecError, Problem, pointer
from meterspec.metering import check_event
from meterspec.quantity import parse_quantity
from meterspec.timestamps import Micros, parse_timestamp

T = TypeVar("T")
Answer = dict[str, Any]
MAX_COST = ratelimit.MAX_COUNT


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def rooted(problems: Iterable[Problem], prefix: str, strip: str = "") -> list[Problem]:
    """Problems of a document moved under `prefix` in the input (after removing `strip`, the
    document's own place in a wrapper it was checked in)."""
    moved = []
    for problem in problems:
        path = problem.path
        if strip and (path == strip or path.startswith(strip + "/")):
            path = path[len(strip):]
        moved.append(msgspec.structs.replace(problem, path=prefix + path))
    return moved


def _collect(check: Callable[[], T], problems: list[Problem], prefix: str = "") -> T | None:
    """check()'s value, or None with its problems (moved under prefix) added to problems."""
    try:
        return check()
    except MeterspecError as error:
        problems.extend(rooted(error.problems, prefix))
        return None


MISSING: Any = object()
"""What _member answers for an absent member, already reported: no further check of it."""


def _member(case_input: dict[str, Any], name: str, problems: list[Problem]) -> Any:
    """A required member of the input; `missing-field` (and MISSING) when it is absent."""
    if name not in case_input:
        problems.append(Problem("missing-field", pointer(name), f"the input needs {name!r}",
                                "MS-ERR-001"))
        return MISSING
    return case_input[name]


def _value(value: object, check: Callable[[object, str], T], path: str,
           problems: list[Problem]) -> T | None:
    """A bare value checked by its own rule (a quantity, a timestamp, a currency)."""
    if value is MISSING:
        return None
    return _collect(lambda: check(value, path), problems)


def _list(value: object, path: str, problems: list[Problem]) -> list[Any]:
    if isinstance(value, list):
        return value
    if value is not MISSING:
        problems.append(Problem("wrong-type", path, "must be a JSON array", "MS-ERR-001"))
    return []


def _document(kind: str, value: object, struct: type[T], path: str,
              problems: list[Problem]) -> T | None:
    """One contract document of the input, checked in full (schema, values, rules)."""
    if value is MISSING:
        return None
    return _collect(lambda: decode(kind, _json(value), struct, fast=False), problems, path)


def _fail(problems: list[Problem]) -> None:
    if problems:
        raise MeterspecError(problems)


# ------------------------------------------------------------------ pricing (MS-MNY, MS-PRC)

# A lone charge is checked as the only charge of a plan that is otherwise valid.
_CHARGE_HOLDER = {"id": "charge", "version": 1, "currency": "USD",
                  "effectiveFrom": "0001-01-01T00:00:00Z"}


def _charge(value: object, problems: list[Problem]) -> plans.Charge | None:
    if value is MISSING:
        return None
    holder = {**_CHARGE_HOLDER, "charges": [value]}
    try:
        plan = decode("plan", _json(holder), plans.Plan, fast=False)
    except MeterspecError as error:
        problems.extend(rooted(error.problems, "/charge", "/charges/0"))
        return None
    return plan.charges[0]


def rate(case_input: dict[str, Any]) -> Answer:
    """`rate`: {charge, quantity, currency} -> [RatedCharge] (MS-PRC-016)."""
    problems: list[Problem] = []
    charge = _charge(_member(case_input, "charge", problems), problems)
    quantity = _member(case_input, "quantity", problems)
    _value(quantity, parse_quantity, "/quantity", problems)
    found = _value(_member(case_input, "currency", problems), money.currency, "/currency",
                   problems)
    _fail(problems)
    assert charge is not None and found is not None
    return {"output": [msgspec.to_builtins(pricing.rate(charge, quantity, found))]}


def rate_plan(case_input: dict[str, Any]) -> Answer:
    """`rate-plan`: {plans, planID, periodStart, quantities} -> [] when no version of the plan
    is effective at periodStart, else [RatedPlan] (MS-PRC-003, MS-PRC-018, MS-MNY-007)."""
    problems: list[Problem] = []
    versions: list[tuple[int, plans.Plan]] = []
    for index, item in enumerate(_list(_member(case_input, "plans", problems), "/plans",
                                       problems)):
        plan = _document("plan", item, plans.Plan, f"/plans/{index}", problems)
        if plan is not None:
            versions.append((index, plan))
    plan_id = _member(case_input, "planID", problems)
    if plan_id is not MISSING and not isinstance(plan_id, str):
        problems.append(Problem("wrong-type", "/planID", "a plan id is a string", "MS-PRC-001"))
    start = _member(case_input, "periodStart", problems)
    _value(start, parse_timestamp, "/periodStart", problems)
    quantities = _member(case_input, "quantities", problems)
    if isinstance(quantities, dict):
        for unit, value in quantities.items():
            try:
                parse_quantity(value, pointer("quantities", unit))
            except MeterspecError as error:
                problems.extend(error.problems)
    elif quantities is not MISSING:
        problems.append(Problem("wrong-type", "/quantities", "quantities by unit are a JSON "
                                "object", "MS-PRC-018"))
    # MS-PRC-003: two different documents for one plan id and version.
    first: dict[tuple[str, int], plans.Plan] = {}
    for index, plan in versions:
        if first.setdefault((plan.id, plan.version), plan) != plan:
            problems.append(Problem("duplicate-item", f"/plans/{index}/version",
                                    f"plan {plan.id!r} has two different versions numbered "
                                    f"{plan.version}", "MS-PRC-003"))
    _fail(problems)
    chosen = plans.select_plan([plan for _, plan in versions], plan_id, start)
    if chosen is None:
        return {"output": []}
    charges = pricing.rate_plan(chosen, quantities)
    total = money.total(charge.amount for charge in charges)
    return {"output": [{"planID": chosen.id, "version": chosen.version,
                        "currency": chosen.currency,
                        "charges": msgspec.to_builtins(charges),
                        "total": msgspec.to_builtins(total)}]}


# ------------------------------------------------------------------ ingestion (MS-ING)

def _problem_list(problems: Iterable[Problem]) -> list[dict[str, str]]:
    """Problems inside an output: {code, path}, sorted by path then code, each once."""
    pairs = sorted({(p.path, p.code) for p in problems})
    return [{"code": code, "path": path} for path, code in pairs]


def _identity(key: ingestion.Identity) -> dict[str, str]:
    return {"workspaceID": key[0], "universeID": key[1], "id": key[2]}


def ingest(case_input: dict[str, Any]) -> Answer:
    """`ingest`: {state, events, expireBefore?} -> [IngestResult] (MS-ING-003..010)."""
    problems: list[Problem] = []
    wire = _document("ingestion-state", _member(case_input, "state", problems),
                     ingestion.IngestionState, "/state", problems)
    before: Micros | None = None
    if "expireBefore" in case_input:
        before = _collect(lambda: parse_timestamp(case_input["expireBefore"], "/expireBefore"),
                          problems)
    items = _list(_member(case_input, "events", problems), "/events", problems)
    _fail(problems)
    assert wire is not None
    state = ingestion.SeenState.from_wire(wire)
    if before is not None:
        state = ingestion.expire(state, before)
    # An item that is not an EventPayload (MS-EVT-001) is rejected like any bad event; the
    # others are ingested as one batch (rejected events change nothing, MS-ING-003).
    rejected: dict[int, list[Problem]] = {}
    batch: list[tuple[int, EventPayload]] = []
    for index, item in enumerate(items):
        try:
            batch.append((index, decode("event", _json(item), EventPayload)))
        except MeterspecError as error:
            rejected[index] = list(error.problems)
    result = ingestion.ingest((event for _, event in batch), state)
    position = [index for index, _ in batch]
    outcomes: list[str] = ["rejected"] * len(items)
    for batch_index, outcome in enumerate(result.outcomes):
        outcomes[position[batch_index]] = outcome
    for entry in result.rejected:
        rejected[position[entry.position]] = list(entry.problems)
    return {"output": [{
        "outcomes": outcomes,
        "duplicates": [{"index": position[d.position], **_identity(d.identity),
                        "digest": d.digest} for d in result.duplicates],
        "conflicts": [{"index": position[c.position], **_identity(c.identity),
                       "acceptedDigest": c.accepted_digest,
                       "conflictingDigest": c.conflicting_digest} for c in result.conflicts],
        "late": [{"index": position[late.position], **_identity(late.identity),
                  "time": late.time, "horizon": late.horizon} for late in result.late],
        "rejected": [{"index": index, "problems": _problem_list(rejected[index])}
                     for index in sorted(rejected)],
        "state": msgspec.to_builtins(result.state.to_wire()),
    }]}


def _event(event: EventPayload) -> dict[str, Any]:
    """An event as the corrections result writes it: every member, properties included."""
    return {"id": event.id, "workspaceID": event.workspace_id, "universeID": event.universe_id,
            "type": event.type, "subject": event.subject, "time": event.time,
            "properties": dict(event.properties)}


def apply_corrections(case_input: dict[str, Any]) -> Answer:
    """`apply-corrections`: {log} -> [CorrectionsResult] (MS-ING-011..019)."""
    problems: list[Problem] = []
    log: list[EventPayload] = []
    for index, item in enumerate(_list(_member(case_input, "log", problems), "/log",
                                       problems)):
        try:
            event = decode("event", _json(item), EventPayload)
        except MeterspecError as error:
            problems += rooted(error.problems, f"/log/{index}")
            continue
        problems += rooted(check_event(event)[1], f"/log/{index}")
        log.append(event)
    _fail(problems)
    # MS-ING-019: two payloads for one identity reject the log, once per identity, at the
    # first occurrence that differs from the identity's first one.
    first: dict[ingestion.Identity, str] = {}
    reported: set[ingestion.Identity] = set()
    for index, event in enumerate(log):
        key, digest = ingestion.identity(event), ingestion.event_digest(event)
        if first.setdefault(key, digest) != digest and key not in reported:
            reported.add(key)
            problems.append(Problem("event-conflict", f"/log/{index}", f"event {key[2]!r} "
                                    "has two different payloads in the log", "MS-ING-019"))
    _fail(problems)
    corrected = ingestion.apply_corrections(log)
    return {"output": [{
        "effective": [_event(event) for event in corrected.effective],
        "retracted": [{**_identity(key), "by": by} for key, by in corrected.retracted],
        "amended": [{**_identity(key), "by": by} for key, by in corrected.amended],
        "ineffective": [{**_identity(issue.correction), "code": issue.problem.code,
                         "path": issue.problem.path} for issue in corrected.issues],
    }]}


# ------------------------------------------------------------------ quotas (MS-QTA, MS-RATE)

def quota(case_input: dict[str, Any]) -> Answer:
    """`quota`: {check} -> [QuotaDecision] (MS-QTA-002..012)."""
    problems: list[Problem] = []
    check = _document("quota-check", _member(case_input, "check", problems),
                      quotas.QuotaCheck, "/check", problems)
    _fail(problems)
    assert check is not None
    decision = _collect(lambda: quotas.decide(check), problems, "/check")
    _fail(problems)
    return {"output": [msgspec.to_builtins(decision)]}


def _cost(case_input: dict[str, Any], problems: list[Problem]) -> int:
    """The request's cost: an integer from 0 to 2^53 - 1, default 1 (MS-RATE-002). A JSON
    number with no fraction (2.0) is an integer, as in JSON Schema."""
    value = case_input.get("cost", 1)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(Problem("wrong-type", "/cost", "a cost is an integer", "MS-RATE-002"))
        return 0
    if not 0 <= value <= MAX_COST:
        problems.append(Problem("out-of-range", "/cost", f"a cost is an integer from 0 to "
                                f"{MAX_COST}", "MS-RATE-002"))
    return value


def rate_limit(case_input: dict[str, Any]) -> Answer:
    """`rate-limit`: {policy, state, now, cost?} -> [RateLimitDecision] (MS-RATE-002..008)."""
    problems: list[Problem] = []
    policy = _document("rate-limit-policy", _member(case_input, "policy", problems),
                       ratelimit.RateLimitPolicy, "/policy", problems)
    wire = _document("rate-limit-state", _member(case_input, "state", problems),
                     ratelimit.RateLimitState, "/state", problems)
    now = _value(_member(case_input, "now", problems), parse_timestamp, "/now", problems)
    cost = _cost(case_input, problems)
    _fail(problems)
    assert policy is not None and wire is not None and now is not None
    decision = ratelimit.decide(policy, ratelimit.RateState.from_wire(wire), now, cost)
    return {"output": [{"decision": decision.decision, "retryAfter": decision.retry_after,
                        "remaining": list(decision.remaining),
                        "state": msgspec.to_builtins(decision.state.to_wire())}]}


HANDLERS: dict[str, Callable[[dict[str, Any]], Answer]] = {
    "rate": rate,
    "rate-plan": rate_plan,
    "ingest": ingest,
    "apply-corrections": apply_corrections,
    "quota": quota,
    "rate-limit": rate_limit,
}
