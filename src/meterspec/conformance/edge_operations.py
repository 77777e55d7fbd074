"""The reference's answers to the operations of the edges (INTERPRETING.md 3.20 to 3.28):
webhooks (`webhook-sign`, `webhook-verify`, `webhook-attempt`, specs/events.md MS-WH),
check-and-reserve (`quota-reserve`, specs/quotas.md MS-QTA-016 to MS-QTA-021), numbers at the
edge (`convert-event`, specs/payloads.md MS-CNV) and the hand-off to payment providers and
ledgers (`export-stripe`, `stripe-outcome`, `export-ledger`, specs/exports.md MS-EXP).

Each handler takes a case's `input` and returns `{"output": [...]}` or raises MeterspecError
with every problem, paths JSON Pointers into the input object, as in operations.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from meterspec import convert, ledger_export, quota_reservations, quotas, stripe_export, webhooks
from meterspec.conformance.operations import (
    MISSING,
    Answer,
    _document,
    _event,
    _fail,
    _member,
    _problem_list,
    _text_pieces,
    _value,
)
from meterspec.errors import MeterspecError, Problem, pointer
from meterspec.invoices import Invoice
from meterspec.reconcile import Adjustment
from meterspec.timestamps import format_timestamp, parse_timestamp


def _text(value: object) -> bytes:
    """A case's text (3.19's forms: a string, {"base64"}, {"parts"}) as bytes; a malformed
    text is a malformed case (ValueError: `errored`)."""
    return b"".join(piece * count for piece, count in _text_pieces(value))


def _integer(case_input: dict[str, Any], name: str, low: int, high: int, requirement: str,
             problems: list[Problem], *, default: int | None = None,
             nullable: bool = False) -> int | None:
    """An integer member from low to high (absent: default; a missing required one is
    missing-field; 2.0 is the integer 2, as in JSON Schema)."""
    if name not in case_input:
        if default is None and not nullable:
            _member(case_input, name, problems)
        return default
    value = case_input[name]
    if value is None and nullable:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(Problem("wrong-type", pointer(name), f"{name} is an integer",
                                requirement))
        return None
    if not low <= value <= high:
        problems.append(Problem("out-of-range", pointer(name), f"{name} is an integer from "
                                f"{low} to {high}", requirement))
        return None
    return value


# ------------------------------------------------------------------ webhooks (MS-WH)

def _secrets(case_input: dict[str, Any], problems: list[Problem]) -> list[str]:
    value = _member(case_input, "secrets", problems)
    if value is MISSING:
        return []
    if not isinstance(value, list):
        problems.append(Problem("wrong-type", "/secrets", "secrets are a list", "MS-WH-002"))
        return []
    return value


def webhook_sign(case_input: dict[str, Any]) -> Answer:
    """`webhook-sign`: {id, timestamp, body, secrets} -> [the three headers] (MS-WH-001 to
    MS-WH-004)."""
    problems: list[Problem] = []
    msg_id = _member(case_input, "id", problems)
    stamp = _member(case_input, "timestamp", problems)
    secrets = _secrets(case_input, problems)
    body = _member(case_input, "body", problems)
    _fail(problems)
    if isinstance(stamp, float) and stamp.is_integer():
        stamp = int(stamp)
    headers = webhooks.sign(secrets, msg_id, stamp, _text(body))
    return {"output": [headers]}


def webhook_verify(case_input: dict[str, Any]) -> Answer:
    """`webhook-verify`: {headers, body, secrets, now, toleranceSeconds?} -> [{id, timestamp}]
    (MS-WH-005): every problem of the delivery together."""
    problems: list[Problem] = []
    headers = _member(case_input, "headers", problems)
    if headers is not MISSING and not isinstance(headers, dict):
        problems.append(Problem("wrong-type", "/headers", "headers are a JSON object",
                                "MS-WH-005"))
    secrets = _secrets(case_input, problems)
    now = _value(_member(case_input, "now", problems), parse_timestamp, "/now", problems)
    body = _member(case_input, "body", problems)
    tolerance = case_input.get("toleranceSeconds", webhooks.DEFAULT_TOLERANCE_SECONDS)
    if isinstance(tolerance, float) and tolerance.is_integer():
        tolerance = int(tolerance)
    _fail(problems)
    assert isinstance(headers, dict) and now is not None
    verified = webhooks.verify(headers, _text(body), secrets, now, tolerance)
    return {"output": [{"id": verified.id, "timestamp": verified.timestamp}]}


def webhook_attempt(case_input: dict[str, Any]) -> Answer:
    """`webhook-attempt`: {attempt, finishedAt, status, jitterPermille?, retryAfter?} -> [what
    follows the attempt] (MS-WH-007, MS-WH-008)."""
    problems: list[Problem] = []
    attempt = _integer(case_input, "attempt", 1, webhooks.MAX_ATTEMPTS, "MS-WH-007", problems)
    finished = _value(_member(case_input, "finishedAt", problems), parse_timestamp,
                      "/finishedAt", problems)
    if "status" not in case_input:
        _member(case_input, "status", problems)
    status = _integer(case_input, "status", 100, 599, "MS-WH-007", problems, nullable=True)
    jitter = _integer(case_input, "jitterPermille", -webhooks.MAX_JITTER_PERMILLE,
                      webhooks.MAX_JITTER_PERMILLE, "MS-WH-007", problems, default=0)
    retry_after = _integer(case_input, "retryAfter", 0, 2**53 - 1, "MS-WH-007", problems,
                           nullable=True)
    _fail(problems)
    assert attempt is not None and finished is not None and jitter is not None
    outcome = webhooks.after_attempt(attempt, finished, status, jitter_permille=jitter,
                                     retry_after=retry_after)
    found: dict[str, Any] = {"state": outcome.state}
    if outcome.next_attempt_at is not None:
        found["nextAttemptAt"] = format_timestamp(outcome.next_attempt_at)
    if outcome.state == "dead-letter":
        found["endpointDisabled"] = outcome.endpoint_disabled
    return {"output": [found]}


# ------------------------------------------------------------------ check-and-reserve (MS-QTA)

_STEP_FIELDS = {"reserve": ("op", "id", "quantity", "now", "ttlSeconds"),
                "commit": ("op", "id", "quantity", "now"), "release": ("op", "id", "now")}


def _step_problems(step: object, path: str) -> list[Problem]:
    """The shape of one step: {op, id, quantity?, now, ttlSeconds?}, members by op."""
    if not isinstance(step, dict):
        return [Problem("wrong-type", path, "a step is a JSON object", "MS-QTA-017")]
    op = step.get("op")
    if op not in _STEP_FIELDS:
        return [Problem("missing-field" if op is None else "invalid-value", f"{path}/op",
                        "op is reserve, commit or release", "MS-QTA-017")]
    problems = [Problem("unknown-field", path + pointer(name), "not a member of this step",
                        "MS-QTA-017") for name in step if name not in _STEP_FIELDS[op]]
    for name in _STEP_FIELDS[op]:
        value = step.get(name)
        if name == "ttlSeconds":
            if name in step and (isinstance(value, bool) or not isinstance(value, int)):
                problems.append(Problem("wrong-type", f"{path}/ttlSeconds", "an integer",
                                        "MS-QTA-017"))
        elif value is None:
            problems.append(Problem("missing-field", f"{path}/{name}", f"a step needs {name}",
                                    "MS-QTA-017"))
        elif not isinstance(value, str):
            problems.append(Problem("wrong-type", f"{path}/{name}", f"{name} is a string",
                                    "MS-QTA-017"))
    return problems


def _run_step(policy: quotas.QuotaPolicy, state: quota_reservations.QuotaState,
              step: dict[str, Any]) -> tuple[dict[str, Any], quota_reservations.QuotaState]:
    op, name = step["op"], step["id"]
    now = parse_timestamp(step["now"], "/now")
    if op == "reserve":
        decision, state = quota_reservations.reserve(
            policy, state, name, step["quantity"], now,
            step.get("ttlSeconds", quota_reservations.DEFAULT_TTL_SECONDS))
        return {"op": op, "decision": msgspec.to_builtins(decision)}, state
    if op == "commit":
        done, state = quota_reservations.commit(policy, state, name, step["quantity"], now)
        return {"op": op, "usage": done.usage, "events": msgspec.to_builtins(done.events)}, state
    return {"op": op}, quota_reservations.release(policy, state, name, now)


def quota_reserve(case_input: dict[str, Any]) -> Answer:
    """`quota-reserve`: {policy, state, steps} -> [{results, state}]: the steps applied one at a
    time to the state (MS-QTA-016 to MS-QTA-021). A step that fails has its problems as its
    result (paths into the step) and changes nothing; the steps after it still run."""
    problems: list[Problem] = []
    policy = _document("quota-policy", _member(case_input, "policy", problems),
                       quotas.QuotaPolicy, "/policy", problems)
    state = _document("quota-state", _member(case_input, "state", problems),
                      quota_reservations.QuotaState, "/state", problems)
    steps = _member(case_input, "steps", problems)
    if steps is not MISSING and not isinstance(steps, list):
        problems.append(Problem("wrong-type", "/steps", "steps are a JSON array", "MS-QTA-017"))
    elif isinstance(steps, list):
        for index, step in enumerate(steps):
            problems += _step_problems(step, f"/steps/{index}")
    _fail(problems)
    assert policy is not None and state is not None and isinstance(steps, list)
    results: list[dict[str, Any]] = []
    for step in steps:
        try:
            result, state = _run_step(policy, state, step)
        except MeterspecError as error:
            results.append({"op": step["op"], "problems": _problem_list(error.problems)})
            continue
        results.append(result)
    return {"output": [{"results": results, "state": msgspec.to_builtins(state)}]}


# ------------------------------------------------------------------ numbers at the edge (MS-CNV)

def convert_event(case_input: dict[str, Any]) -> Answer:
    """`convert-event`: {text} -> [{event}]: one payload whose property values may be JSON
    numbers, converted from their text (MS-CNV-002 to MS-CNV-004); its problems have paths
    into the document the text holds, as decode-text's (3.19)."""
    if "text" not in case_input:
        raise ValueError("the input needs a text")
    event = convert.convert_line(_text(case_input["text"]))
    return {"output": [{"event": _event(event)}]}


# ------------------------------------------------------------------ exports (MS-EXP)

def _billed_documents(case_input: dict[str, Any], problems: list[Problem]) -> list[Any]:
    """`documents`: Invoices and Adjustments (an object with `fromRevision` is an
    Adjustment), each checked in full, problems at /documents/<i>/..."""
    value = _member(case_input, "documents", problems)
    if value is MISSING:
        return []
    if not isinstance(value, list):
        problems.append(Problem("wrong-type", "/documents", "documents are a list",
                                "MS-EXP-001"))
        return []
    found: list[Any] = []
    for index, item in enumerate(value):
        adjustment = isinstance(item, dict) and "fromRevision" in item
        kind, struct = ("adjustment", Adjustment) if adjustment else ("invoice", Invoice)
        document = _document(kind, item, struct, f"/documents/{index}", problems)
        if document is not None:
            found.append(document)
    return found


def _prefixed(error: MeterspecError, path: str) -> list[Problem]:
    return [msgspec.structs.replace(p, path=path + p.path) for p in error.problems]


def export_stripe(case_input: dict[str, Any]) -> Answer:
    """`export-stripe`: {documents, customers, objects?} -> [{requests}] (MS-EXP-002 to
    MS-EXP-007): every document's requests in order, or every problem of every document."""
    problems: list[Problem] = []
    documents = _billed_documents(case_input, problems)
    customers = _member(case_input, "customers", problems)
    if customers is not MISSING:
        problems += [msgspec.structs.replace(p, path="/customers" + p.path)
                     for p in stripe_export.customer_problems(customers)]
    objects = case_input.get("objects", "invoice-items")
    if objects not in ("invoice-items", "meter-events"):
        problems.append(Problem("invalid-value", "/objects", "objects is invoice-items or "
                                "meter-events", "MS-EXP-002"))
    _fail(problems)
    requests: list[dict[str, Any]] = []
    for index, document in enumerate(documents):
        try:
            requests += [r.to_builtins() for r in
                         stripe_export.export_document(document, customers, objects)]
        except MeterspecError as error:
            problems += _prefixed(error, f"/documents/{index}")
    _fail(problems)
    return {"output": [{"requests": requests}]}


def stripe_outcome(case_input: dict[str, Any]) -> Answer:
    """`stripe-outcome`: {attempt, firstSentAt, finishedAt, status} -> [{state,
    nextAttemptAt?}] (MS-EXP-008, MS-EXP-009)."""
    problems: list[Problem] = []
    attempt = _integer(case_input, "attempt", 1, stripe_export.MAX_ATTEMPTS, "MS-EXP-008",
                       problems)
    first = _value(_member(case_input, "firstSentAt", problems), parse_timestamp,
                   "/firstSentAt", problems)
    finished = _value(_member(case_input, "finishedAt", problems), parse_timestamp,
                      "/finishedAt", problems)
    if "status" not in case_input:
        _member(case_input, "status", problems)
    status = _integer(case_input, "status", 100, 599, "MS-EXP-008", problems, nullable=True)
    if first is not None and finished is not None and finished < first:
        problems.append(Problem("invalid-value", "/finishedAt", "an attempt cannot end before "
                                "the first was sent", "MS-EXP-008"))
    _fail(problems)
    assert attempt is not None and first is not None and finished is not None
    outcome = stripe_export.after_attempt(attempt, first, finished, status)
    found: dict[str, Any] = {"state": outcome.state}
    if outcome.next_attempt_at is not None:
        found["nextAttemptAt"] = format_timestamp(outcome.next_attempt_at)
    return {"output": [found]}


def export_ledger(case_input: dict[str, Any]) -> Answer:
    """`export-ledger`: {documents} -> [{rows}] (MS-EXP-010, MS-EXP-011): the JSON rows."""
    problems: list[Problem] = []
    documents = _billed_documents(case_input, problems)
    _fail(problems)
    return {"output": [{"rows": list(ledger_export.rows(documents))}]}


EDGE_HANDLERS: dict[str, Callable[[dict[str, Any]], Answer]] = {
    "webhook-sign": webhook_sign,
    "webhook-verify": webhook_verify,
    "webhook-attempt": webhook_attempt,
    "quota-reserve": quota_reserve,
    "convert-event": convert_event,
    "export-stripe": export_stripe,
    "stripe-outcome": stripe_outcome,
    "export-ledger": export_ledger,
}
