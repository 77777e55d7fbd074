"""The reference's answers to the operations beyond the core (INTERPRETING.md 3.4 to 3.18):
`rate`, `rate-plan` (pricing), `ingest`, `apply-corrections` (ingestion), `quota`, `rate-limit`
(quotas), `billing-periods`, `invoice`, `reconcile`, `apply-adjustment`, `project` (billing),
`domain-event`, `to-cloudevent`, `from-cloudevent` and `domain-event-from-cloudevent` (events),
and `decode-text` (3.19: JSON text and NDJSON lines as bytes, MS-ERR-007 to MS-ERR-012).

Each handler takes a case's `input` and returns the answer body: `{"output": [...]}`, or raises
MeterspecError with every problem of the input, paths being JSON Pointers into the input object
(`/charge/tiers/1/upTo`, `/log/2/time`). The results that have no wire form in schemas/ (a
rated plan, an ingest result, a corrections result, a rate-limit decision) are written here, in
the shapes INTERPRETING.md defines."""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import Any, TypeVar

import msgspec

from meterspec import (
    allocation,
    billing_periods,
    cloudevents,
    domain_events,
    ingestion,
    invoices,
    json_text,
    money,
    plans,
    pricing,
    projection,
    quotas,
    ratelimit,
    reconcile,
)
from meterspec.codec import STRUCTS, decode
from meterspec.contracts import EventPayload, MeterRecord
from meterspec.errors import MeterspecError, Problem, pointer
from meterspec.lines import is_blank, read_document, read_lines
from meterspec.metering import check_event
from meterspec.quantity import parse_quantity
from meterspec.readings import parse_record
from meterspec.schema import schema_problems
from meterspec.timestamps import Instant, format_timestamp, parse_timestamp
from meterspec.windows import time_zone

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
    before: Instant | None = None
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


# ------------------------------------------------------------------ billing (MS-BIL .. MS-PRJ)

# A lone billing cycle is checked as the cycle of an otherwise valid request's subscription.
_CYCLE_AT = "/subscriptions/0/cycle"
_CYCLE_HOLDER = {"workspaceID": "w", "universeID": "u", "at": "2000-01-01T00:00:00Z",
                 "plans": [], "usage": {}}


def _cycle(value: object, problems: list[Problem]) -> billing_periods.BillingCycle | None:
    """`cycle` (MS-BIL-001): its schema, and the anchor's calendar date and the time zone,
    all together (INTERPRETING.md 3.1)."""
    if value is MISSING:
        return None
    holder = {**_CYCLE_HOLDER, "subscriptions": [{"subject": "s", "planID": "p",
                                                  "cycle": value}]}
    found = rooted([p for p in schema_problems("invoice-request", holder)
                    if p.path == _CYCLE_AT or p.path.startswith(_CYCLE_AT + "/")],
                   "/cycle", _CYCLE_AT)
    if not found:
        cycle = msgspec.convert(value, billing_periods.BillingCycle, strict=False)
        found = billing_periods.cycle_problems(cycle, "/cycle")
        problems.extend(found)
        return None if found else cycle
    reported = {p.path for p in found}
    if isinstance(value, dict):
        anchor, zone = value.get("anchorDate"), value.get("timeZone")
        if isinstance(anchor, str) and "/cycle/anchorDate" not in reported:
            _collect(lambda: billing_periods.anchor(
                billing_periods.BillingCycle(anchor_date=anchor), "/cycle"), found)
        if isinstance(zone, str) and "/cycle/timeZone" not in reported:
            _collect(lambda: time_zone(zone, "/cycle/timeZone"), found)
    problems.extend(found)
    return None


def _count(case_input: dict[str, Any], name: str, default: int, low: int, high: int,
           requirement: str, problems: list[Problem]) -> int:
    """An optional integer member from low to high (a JSON number with no fraction is an
    integer, as in JSON Schema)."""
    value = case_input.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(Problem("wrong-type", pointer(name), f"{name} is an integer",
                                requirement))
        return default
    if not low <= value <= high:
        problems.append(Problem("out-of-range", pointer(name), f"{name} is an integer from "
                                f"{low} to {high}", requirement))
    return value


def billing_periods_(case_input: dict[str, Any]) -> Answer:
    """`billing-periods`: {cycle, at, periods?} -> the periods, oldest first (MS-BIL-001..004)."""
    problems: list[Problem] = []
    cycle = _cycle(_member(case_input, "cycle", problems), problems)
    at = _value(_member(case_input, "at", problems), parse_timestamp, "/at", problems)
    count = _count(case_input, "periods", 1, 1, invoices.MAX_PERIODS, "MS-BIL-004", problems)
    _fail(problems)
    assert cycle is not None and at is not None
    spans = billing_periods.periods(cycle, at, count, "/at")
    return {"output": [{"start": format_timestamp(start), "end": format_timestamp(end)}
                       for start, end in spans]}


def _request(case_input: dict[str, Any], problems: list[Problem]) -> invoices.InvoiceRequest | None:
    return _document("invoice-request", _member(case_input, "request", problems),
                     invoices.InvoiceRequest, "/request", problems)


def _records(items: list[Any], problems: list[Problem]) -> list[tuple[str, MeterRecord]]:
    """Every item of `records` as a MeterRecord with its path; every problem of every bad one
    (MS-AGG record checks, MS-INV-008) at /records/<index>/..."""
    records = []
    for index, item in enumerate(items):
        path = f"/records/{index}"
        try:
            record = decode("record", _json(item), MeterRecord)
        except MeterspecError as error:
            problems.extend(rooted(error.problems, path))
            continue
        try:
            parse_record(record, path)
        except MeterspecError as error:
            problems.extend(error.problems)
            continue
        records.append((path, record))
    return records


def _bill(builder: invoices.InvoiceBuilder, records: list[tuple[str, MeterRecord]]) -> None:
    for path, record in records:
        builder.add(record, path)


def invoice(case_input: dict[str, Any]) -> Answer:
    """`invoice`: {request, records} -> the request's invoices (MS-INV-001..008): the request
    first, then every bad record."""
    problems: list[Problem] = []
    request = _request(case_input, problems)
    items = _list(_member(case_input, "records", problems), "/records", problems)
    _fail(problems)
    assert request is not None
    records = _records(items, problems)
    _fail(problems)
    builder = invoices.InvoiceBuilder(request)
    _bill(builder, records)
    return {"output": msgspec.to_builtins(builder.invoices())}


def _moved(error: MeterspecError, moves: dict[str, str]) -> list[Problem]:
    """The problems of a reference call with their paths moved into the input: each path
    that starts with a key of `moves` (a whole token) gets that key replaced by its value."""
    moved = []
    for problem in error.problems:
        path = problem.path
        for old, new in moves.items():
            if path == old or path.startswith(old + "/"):
                path = new + path[len(old):]
                break
        moved.append(msgspec.structs.replace(problem, path=path))
    return moved


def reconcile_(case_input: dict[str, Any]) -> Answer:
    """`reconcile`: {request, closed, records} -> [] or [Adjustment] (MS-REC-001..004)."""
    problems: list[Problem] = []
    request = _request(case_input, problems)
    closed = _document("invoice", _member(case_input, "closed", problems), invoices.Invoice,
                       "/closed", problems)
    items = _list(_member(case_input, "records", problems), "/records", problems)
    _fail(problems)
    assert request is not None and closed is not None
    # MS-REC-001: the closed invoice is a bill of one of the request's subscriptions.
    index = next((i for i, s in enumerate(request.subscriptions)
                  if s.subject == closed.subject), None)
    if index is None or (request.workspace_id, request.universe_id) != (
            closed.workspace_id, closed.universe_id):
        raise MeterspecError.single("invoice-mismatch", "/closed", "the request has no "
                                    "subscription for this invoice's tenant and subject",
                                    "MS-REC-001")
    try:
        builder = invoices.InvoiceBuilder(reconcile.rebuild_request(request, closed))
    except MeterspecError as error:  # the rebuilt period's plan, or its bounds
        raise MeterspecError(_moved(error, {"/subscriptions/0": f"/request/subscriptions/{index}",
                                            "/at": "/closed/period/start",
                                            "/closed/0": "/closed"})) from None
    records = _records(items, problems)
    _fail(problems)
    _bill(builder, records)
    try:
        adjustment = reconcile.reconcile(closed, builder.invoices()[0])
    except MeterspecError as error:
        raise MeterspecError(_moved(error, {"/rebuilt": "/closed"})) from None
    return {"output": [] if adjustment is None else [msgspec.to_builtins(adjustment)]}


def apply_adjustment(case_input: dict[str, Any]) -> Answer:
    """`apply-adjustment`: {invoice, adjustment} -> [Invoice] (MS-REC-005)."""
    problems: list[Problem] = []
    bill = _document("invoice", _member(case_input, "invoice", problems), invoices.Invoice,
                     "/invoice", problems)
    change = _document("adjustment", _member(case_input, "adjustment", problems),
                       reconcile.Adjustment, "/adjustment", problems)
    _fail(problems)
    assert bill is not None and change is not None

    def mismatch(path: str, message: str) -> Problem:
        return Problem("invoice-mismatch", path, message, "MS-REC-005")

    if change.invoice_id != bill.id:
        problems.append(mismatch("/adjustment/invoiceID", "the adjustment is another "
                                 "invoice's"))
    elif change.from_revision != bill.revision:
        problems.append(mismatch("/adjustment/fromRevision", "the adjustment was made from "
                                 "another revision of this invoice"))
    else:
        lines = {reconcile.line_key(line): line for line in bill.lines}
        for index, line in enumerate(change.lines):
            key = (line.charge_id, *reconcile.line_key(line.before)[1:])
            if key not in lines:
                problems.append(mismatch(f"/adjustment/lines/{index}/chargeID", "the invoice "
                                         "has no line of this charge"))
            elif line.before != lines[key]:
                problems.append(mismatch(f"/adjustment/lines/{index}/before", "`before` is "
                                         "not the invoice's line of this charge"))
    _fail(problems)
    try:
        applied = reconcile.apply_adjustment(bill, change)
    except MeterspecError as error:
        raise MeterspecError(_moved(error, {"": "/adjustment"})) from None
    return {"output": [msgspec.to_builtins(applied)]}


def project(case_input: dict[str, Any]) -> Answer:
    """`project`: {request, records} -> the projections of the periods holding the request's
    `at` (MS-PRJ-001..003): the request first (and then its `periods`), then every bad record,
    including those at or after `at`."""
    problems: list[Problem] = []
    request = _request(case_input, problems)
    items = _list(_member(case_input, "records", problems), "/records", problems)
    _fail(problems)
    assert request is not None
    if request.periods != 1:
        raise MeterspecError.single("invalid-request", "/request/periods", "a projection is "
                                    "of the one period in progress", "MS-PRJ-001")
    records = _records(items, problems)
    _fail(problems)
    found = projection.project(request, (record for _, record in records))
    return {"output": msgspec.to_builtins(found)}


def allocate(case_input: dict[str, Any]) -> Answer:
    """`allocate`: {amount, currency, weights} -> [{"parts": [...]}] (MS-MNY-009)."""
    problems: list[Problem] = []
    amount = _member(case_input, "amount", problems)
    code = _member(case_input, "currency", problems)
    weights = _member(case_input, "weights", problems)
    found, checked = allocation.allocation_problems(
        None if amount is MISSING else amount, None if code is MISSING else code,
        [] if weights is MISSING else weights)
    missing = {p.path for p in problems}
    problems += [p for p in found if p.path not in missing]
    _fail(problems)
    assert checked is not None
    return {"output": [{"parts": allocation.allocate(amount, code, weights)}]}


# ------------------------------------------------------------------ events (MS-DEV, MS-CE)

BUILT = ("usage.recorded", "invoice.generated", "billing.period.closed")


def _domain_event(value: object, path: str,
                  problems: list[Problem]) -> domain_events.DomainEvent | None:
    """A domain event of any known type, dispatched on its `type` (MS-DEV-005, MS-DEV-011)."""
    if value is MISSING:
        return None
    return _collect(lambda: domain_events.decode_domain_event(_json(value)), problems, path)


def domain_event(case_input: dict[str, Any]) -> Answer:
    """`domain-event`: {type, record | invoice} -> [the domain event] (MS-DEV-002, 003, 007,
    009, 010): usage.recorded of a record, invoice.generated or billing.period.closed of an
    invoice."""
    problems: list[Problem] = []
    kind = _member(case_input, "type", problems)
    record = (_document("record", case_input["record"], MeterRecord, "/record", problems)
              if "record" in case_input else None)
    bill = (_document("invoice", case_input["invoice"], invoices.Invoice, "/invoice",
                      problems) if "invoice" in case_input else None)
    if kind is not MISSING and not isinstance(kind, str):
        problems.append(Problem("wrong-type", "/type", "a domain event type is a string",
                                "MS-DEV-001"))
    elif isinstance(kind, str) and kind not in BUILT:
        problems.append(Problem("invalid-value", "/type", f"this operation builds "
                                f"{', '.join(BUILT)}", "MS-DEV-001"))
    elif isinstance(kind, str):
        needed = "record" if kind == "usage.recorded" else "invoice"
        _member(case_input, needed, problems)
    _fail(problems)
    event: domain_events.DomainEvent | None
    if kind == "usage.recorded":
        assert record is not None
        event = _collect(lambda: domain_events.usage_recorded(record), problems, "/record")
        _fail(problems)
    else:
        assert bill is not None
        event = (domain_events.invoice_generated_for(bill) if kind == "invoice.generated"
                 else domain_events.billing_period_closed_for(bill))
    return {"output": [msgspec.to_builtins(event)]}


def to_cloudevent(case_input: dict[str, Any]) -> Answer:
    """`to-cloudevent`: {event, source} -> [CloudEvent] (MS-CE-002..005)."""
    problems: list[Problem] = []
    event = _domain_event(_member(case_input, "event", problems), "/event", problems)
    source = _member(case_input, "source", problems)
    if source is not MISSING:
        problems.extend(cloudevents._source_problems(source))
    _fail(problems)
    assert event is not None
    return {"output": [msgspec.to_builtins(cloudevents.to_cloudevent(event, source))]}


def _cloudevent(case_input: dict[str, Any], problems: list[Problem]) -> dict[str, Any] | None:
    document = _member(case_input, "cloudevent", problems)
    if document is MISSING:
        return None
    if not isinstance(document, dict):
        problems.append(Problem("wrong-type", "/cloudevent", "a CloudEvent in JSON structured "
                                "mode is a JSON object", "MS-CE-006"))
        return None
    return document


def _envelope(envelope: cloudevents.Envelope) -> dict[str, str]:
    """The envelope's attributes as the CloudEvent has them (subject and time when set)."""
    found = {"id": envelope.id, "source": envelope.source, "type": envelope.type}
    if envelope.subject is not None:
        found["subject"] = envelope.subject
    if envelope.time is not None:
        found["time"] = envelope.time
    return found


def from_cloudevent(case_input: dict[str, Any]) -> Answer:
    """`from-cloudevent`: {cloudevent} -> [{event, envelope}]: the EventPayload in the data,
    as written there, and the envelope beside it (MS-CE-006..009)."""
    problems: list[Problem] = []
    document = _cloudevent(case_input, problems)
    _fail(problems)
    received = _collect(lambda: cloudevents.event_from_cloudevent(document), problems,
                        "/cloudevent")
    _fail(problems)
    assert received is not None
    return {"output": [{"event": _event(received.event),
                        "envelope": _envelope(received.envelope)}]}


def domain_event_from_cloudevent(case_input: dict[str, Any]) -> Answer:
    """`domain-event-from-cloudevent`: {cloudevent} -> [{event, envelope}]: the domain event in
    the data and the envelope beside it (MS-CE-010)."""
    problems: list[Problem] = []
    document = _cloudevent(case_input, problems)
    _fail(problems)
    assert document is not None
    event = _collect(lambda: cloudevents.domain_event_from_cloudevent(document), problems,
                     "/cloudevent")
    _fail(problems)
    envelope = cloudevents.Envelope(
        id=document["id"], source=document["source"], type=document["type"],
        subject=document.get("subject"), time=document.get("time"))
    return {"output": [{"event": msgspec.to_builtins(event), "envelope": _envelope(envelope)}]}


# ------------------------------------------------------------------ JSON text (MS-ERR-007..012)


def _text_part(part: object) -> tuple[bytes, int]:
    """One item of `parts`: its bytes and how many times they repeat."""
    if isinstance(part, str):
        return part.encode("utf-8"), 1
    if isinstance(part, dict) and part.keys() == {"repeat", "count"}:
        piece, count = part["repeat"], part["count"]
        if isinstance(piece, str) and isinstance(count, int) and not isinstance(count, bool) \
                and count >= 0:
            return piece.encode("utf-8"), count
    raise ValueError(f"not a part of a text: {part!r:.80}")


def _text_pieces(text: object) -> list[tuple[bytes, int]]:
    """The bytes a case's `text` stands for (3.19), as (piece, repeat count) pairs: a string is
    its UTF-8 encoding, {"base64"} the decoded bytes, {"parts"} the parts in order. A text
    that is none of these (or a string holding a lone surrogate) is a malformed case: the
    ValueError makes the answer `errored`."""
    if isinstance(text, str):
        return [(text.encode("utf-8"), 1)]
    if isinstance(text, dict) and text.keys() == {"base64"} and isinstance(text["base64"], str):
        try:
            return [(base64.b64decode(text["base64"], validate=True), 1)]
        except binascii.Error as error:
            raise ValueError(f"text.base64 is not base64: {error}") from None
    if isinstance(text, dict) and text.keys() == {"parts"} and isinstance(text["parts"], list):
        return [_text_part(part) for part in text["parts"]]
    raise ValueError("text is a string, {\"base64\": ...} or {\"parts\": [...]}")


def _plain(value: object) -> object:
    """A document from json_text.load as plain JSON values. Every number an accepted document
    holds is an integer (MS-ERR-011: every integer field is bounded by 2^53 - 1, and no
    contract has a number of another kind), so a non-integer here is a bug, not an answer."""
    if isinstance(value, Fraction):
        raise TypeError("an accepted document holds a number that is not an integer")
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _decoded(kind: str, data: bytes, *, fast: bool) -> object:
    """The document `data` holds, checked in full as a `kind` (3.1), as plain JSON values; or
    MeterspecError with its problems, paths into the document."""
    decode(kind, data, STRUCTS[kind], fast=fast)
    return _plain(json_text.load(data))


def decode_text(case_input: dict[str, Any]) -> Answer:
    """`decode-text`: {kind, text, stream?} -> [{"document"}] or [{"lines"}] (MS-ERR-007 to
    MS-ERR-012): the text as bytes, decoded and checked as a document of `kind`.

    The output is the JSON value the text decoded to, not the Struct re-encoded: the value is
    what RFC 8259 and MS-ERR-007..011 alone determine, while a re-encoding adds what an
    implementation's own types do (defaults filled in, members dropped or reordered)."""
    kind = case_input.get("kind")
    if not isinstance(kind, str) or kind not in STRUCTS:
        raise ValueError(f"kind {kind!r} is not a contract kind")
    pieces = _text_pieces(case_input.get("text"))
    stream = case_input.get("stream", False)
    if not isinstance(stream, bool):
        raise ValueError("stream is true or false")
    # The command line's own readers (meterspec.lines), over the bytes in memory: a BOM at
    # the very start dropped (MS-ERR-007), lines and documents bounded (MS-ERR-012).
    data = io.BytesIO(b"".join(piece * count for piece, count in pieces))
    if not stream:
        document = read_document(data)
        return {"output": [{"document": _decoded(kind, document, fast=False)}]}
    # NDJSON, as the commands read it: each line on its own, through the same decoder (the
    # fast path first for events and records), so a bad line takes no other line with it.
    entries: list[dict[str, Any]] = []
    for number, line in read_lines(data):
        if line is None:
            entries.append({"line": number, "problems": [{"code": "line-too-long",
                                                          "path": ""}]})
            continue
        if is_blank(line):
            continue
        try:
            entries.append({"line": number, "document": _decoded(kind, line, fast=True)})
        except MeterspecError as error:
            entries.append({"line": number, "problems": _problem_list(error.problems)})
    return {"output": [{"lines": entries}]}


HANDLERS: dict[str, Callable[[dict[str, Any]], Answer]] = {
    "rate": rate,
    "rate-plan": rate_plan,
    "ingest": ingest,
    "apply-corrections": apply_corrections,
    "quota": quota,
    "rate-limit": rate_limit,
    "billing-periods": billing_periods_,
    "invoice": invoice,
    "reconcile": reconcile_,
    "apply-adjustment": apply_adjustment,
    "project": project,
    "allocate": allocate,
    "domain-event": domain_event,
    "to-cloudevent": to_cloudevent,
    "from-cloudevent": from_cloudevent,
    "domain-event-from-cloudevent": domain_event_from_cloudevent,
    "decode-text": decode_text,
}
