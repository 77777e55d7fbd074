"""The HTTP conformance profile: `meterspec conformance run --http URL --api-key KEY` runs the
suite's ingestion and metering cases against a server implementing the HTTP binding
(specs/http.md), with no adapter (conformance/ADAPTERS.md, "The HTTP profile").

The key is bound to one workspace and universe, and the server keeps everything it is sent, so
each case is mapped into the key's tenant and made its own: every workspaceID and universeID
becomes the key's, every event id, subject and correction target gets a prefix unique to the
run and the case. That renaming is injective, so it changes no outcome (identities stay equal
exactly when they were, MS-ING-001), and the expected answers are renamed the same way.

- `ingest` (empty state, no expiry): the events are POSTed as one batch; each event's outcome
  and a rejected event's problems (code, path) must be the case's (MS-HTTP-003).
- `meter`: the config is PUT as a new meter (a config the case refuses must be refused with
  422 and the case's problems), the event is POSTed (an event the case refuses must be rejected
  with its problems, at ingestion or, for a measurement that fails, in the readings' problems),
  and the readings of the case's subject over all time, summed, grouped by the config's
  dimensions, must be those the case's records give (meterspec.readings.aggregate of them, ids
  and all: reading ids depend on tenant, subject, unit, window and group, MS-ID).

Cases the profile cannot express over the binding are reported skipped and not claimed, with
the reason: a starting seen state or an expiry (the binding has no state to load), events of
several tenants (one key, one tenant), an event given as text, other operations.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import msgspec

from meterspec import __version__
from meterspec.conformance.cases import Case
from meterspec.conformance.compare import json_equal, problem_set
from meterspec.conformance.runner import NOT_RUN, Outcome, Run
from meterspec.contracts import AggregationRequest, MeterRecord, Window
from meterspec.readings import aggregate

OPERATIONS = ("ingest", "meter", "aggregate")
QUANTITY = "meterspec-http-quantity"
"""The property an `aggregate` case's record quantity travels in, as an event."""
ALL_TIME = Window("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z")
TARGET = "meterspec.target"


def _problems(problems: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Problems as compared: {code, path}, sorted, each once."""
    return [{"code": c, "path": p} for c, p in sorted(problem_set(problems))]


def _measuring(problem: dict[str, Any]) -> bool:
    """A problem found by measuring an event (MS-MET-008), not by checking it."""
    return str(problem.get("path", "")).startswith("/properties/") and problem.get("code") in (
        "missing-source-property", "invalid-quantity", "quantity-out-of-range")


def _not_covered(case: Case, why: str | None = None) -> Outcome:
    """Skipped, not claimed: the case cannot be expressed over the binding (why), or its
    operation is not in the profile."""
    why = why or f"operation {case.operation!r} is not in the HTTP profile"
    return Outcome(case, "skipped", reason=f"not in the HTTP profile: {why}", claimed=False)


class NotCoveredError(Exception):
    """The case cannot be expressed over the binding: skipped, not claimed."""


class AnswerError(Exception):
    """The server's answer is not the case's."""


class Profile:
    """One run against one server with one key (scope admin: it writes meters and events)."""

    def __init__(self, url: str, key: str, timeout: float,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout,
                                   transport=transport,
                                   headers={"Authorization": f"Bearer {key}",
                                            "content-type": "application/json"})
        self.nonce = secrets.token_hex(4)
        self.tenant: tuple[str, str] | None = None
        self.number = 0

    def close(self) -> None:
        self.client.close()

    # ---------------------------------------------------------------- renaming

    def _prefix(self) -> str:
        return f"hp{self.nonce}c{self.number}-"

    def _renamed(self, value: object, fields: tuple[str, ...]) -> object:
        """An event or record with its tenant, id-like fields and correction target renamed
        (only non-empty strings: a bad value stays as bad as it was)."""
        if not isinstance(value, dict):
            return value
        assert self.tenant is not None
        renamed = dict(value)
        for name, new in (("workspaceID", self.tenant[0]), ("universeID", self.tenant[1])):
            if isinstance(renamed.get(name), str) and renamed[name]:
                renamed[name] = new
        for name in fields:
            if isinstance(renamed.get(name), str) and renamed[name]:
                renamed[name] = self._prefix() + renamed[name]
        properties = renamed.get("properties")
        if isinstance(properties, dict) and isinstance(properties.get(TARGET), str) \
                and properties[TARGET]:
            renamed["properties"] = {**properties, TARGET: self._prefix() + properties[TARGET]}
        return renamed

    @staticmethod
    def _tenants(events: list[Any]) -> set[tuple[object, object]]:
        return {(e.get("workspaceID"), e.get("universeID")) for e in events
                if isinstance(e, dict) and isinstance(e.get("workspaceID"), str)
                and isinstance(e.get("universeID"), str)}

    # ---------------------------------------------------------------- the server

    def discover_tenant(self) -> None:
        """The key's workspace and universe (GET /v1/key, MS-HTTP-001)."""
        response = self.client.get("/v1/key")
        self._status(response, 200)
        try:
            document = response.json()
            tenant = (document["workspaceID"], document["universeID"])
        except (ValueError, KeyError, TypeError):  # a web page, or JSON of something else
            raise AnswerError("GET /v1/key: not a key document (specs/http.md)") from None
        self.tenant = tenant
        if document.get("scope") != "admin":
            raise AnswerError("the profile writes meters and events: give it an admin key")

    @staticmethod
    def _status(response: httpx.Response, *wanted: int) -> None:
        if response.status_code not in wanted:  # on one line: an HTML page has many
            raise AnswerError(f"{response.request.method} {response.request.url.path}: "
                              f"{response.status_code} {' '.join(response.text[:500].split())}")

    def _put_meter(self, meter: str, config: object) -> httpx.Response:
        return self.client.put(f"/v1/meters/{meter}", content=json.dumps(config))

    # ---------------------------------------------------------------- operations

    def ingest(self, case_input: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
        state = case_input.get("state")
        if not (isinstance(state, dict) and state.get("events") == [] and "horizon" not in
                state) or "expireBefore" in case_input:
            raise NotCoveredError("a starting seen state or an expiry: the binding has no state "
                             "to load")
        events = case_input.get("events")
        if not isinstance(events, list) or not events:
            raise NotCoveredError("no events to send")
        if len(self._tenants(events)) > 1:
            raise NotCoveredError("events of several tenants: one key writes one tenant")
        if "output" not in expected:
            raise NotCoveredError("the case refuses its input as a whole")
        body = [self._renamed(e, ("id", "subject")) for e in events]
        response = self.client.post("/v1/events", content=json.dumps(body),
                                    headers={"content-type": "application/json"})
        self._status(response, 200)
        return {"results": [{"outcome": r["outcome"], "problems": _problems(
            r.get("problems", []) if r["outcome"] == "rejected" else [])}
            for r in response.json()["results"]]}

    def expected_ingest(self, expected: dict[str, Any]) -> dict[str, Any]:
        output = expected["output"]
        answer = output[0] if isinstance(output, list) else output
        rejected = {item["index"]: item["problems"] for item in answer["rejected"]}
        return {"results": [{"outcome": outcome, "problems": _problems(rejected.get(index, []))}
                            for index, outcome in enumerate(answer["outcomes"])]}

    def meter(self, case_input: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
        if "eventText" in case_input:
            raise NotCoveredError("an event given as text cannot be renamed into the key's tenant")
        event = case_input.get("event")
        if not isinstance(event, dict):
            raise NotCoveredError("the event is not a JSON object")
        if len(self._tenants([event])) > 1:
            raise NotCoveredError("events of several tenants")
        if "error" in expected:
            measuring = {_measuring(p) for p in expected["error"] if isinstance(p, dict)}
            if measuring == {True, False}:
                raise NotCoveredError(
                    "problems of the event and of its measurement together: over HTTP the "
                    "event is rejected at ingestion, before any meter measures it")
        meter = f"{self._prefix()}meter"
        response = self._put_meter(meter, case_input.get("config"))
        if response.status_code in (400, 422):
            return {"error": [{"code": c, "path": p} for c, p in sorted(problem_set(
                response.json()["problems"]))]}
        self._status(response, 200, 201)
        renamed = self._renamed(event, ("id", "subject"))
        response = self.client.post("/v1/events", content=json.dumps(renamed),
                                    headers={"content-type": "application/json"})
        if response.status_code == 400:  # not an event at all
            return {"error": [{"code": p["code"], "path": p["path"]}
                              for p in response.json()["problems"]]}
        self._status(response, 200)
        [result] = response.json()["results"]
        if result["outcome"] == "rejected":
            return {"error": [{"code": p["code"], "path": p["path"]}
                              for p in result["problems"]]}
        if result["outcome"] != "accepted":
            raise AnswerError(f"the case's event was answered {result['outcome']}")
        config = case_input.get("config")
        dimensions = config.get("dimensions") if isinstance(config, dict) else None
        request = AggregationRequest("sum", windows=[ALL_TIME], group_by=dimensions or None)
        subject = renamed["subject"] if isinstance(renamed, dict) else None
        response = self.client.post("/v1/readings", content=msgspec.json.encode(
            {"meter": meter, "request": request, "subjects": [subject]}),
            headers={"content-type": "application/json"})
        self._status(response, 200)
        document = response.json()
        mine = [p for p in document["problems"]
                if p.get("eventID") == (renamed.get("id") if isinstance(renamed, dict)
                                        else None)]
        if mine:
            return {"error": [{"code": p["code"], "path": p["path"]} for p in mine]}
        return {"output": document["readings"]}

    def expected_meter(self, case_input: dict[str, Any], expected: dict[str, Any]
                       ) -> dict[str, Any]:
        if "error" in expected:
            return {"error": [{"code": c, "path": p}
                              for c, p in sorted(problem_set(expected["error"]))]}
        records = [msgspec.convert(self._renamed(r, ("subject",)), MeterRecord)
                   for r in expected["output"]]
        config = case_input["config"]
        dimensions = config.get("dimensions") if isinstance(config, dict) else None
        request = AggregationRequest("sum", windows=[ALL_TIME], group_by=dimensions or None)
        return {"output": msgspec.to_builtins(aggregate(records, request))}

    def aggregate(self, case_input: dict[str, Any], expected: dict[str, Any]
                  ) -> dict[str, Any]:
        """Each record becomes an event measured back into that record (its quantity in
        QUANTITY, its dimensions as properties, one event type per unit), under a meter of the
        case's own; the case's request is asked of /v1/readings."""
        records = case_input.get("records")
        if "error" in expected and any(str(p.get("path", "")).startswith("/records")
                                       for p in expected["error"] if isinstance(p, dict)):
            raise NotCoveredError("a record the case refuses: the binding ingests events")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise NotCoveredError("records that are not objects")
        if len(self._tenants(records)) > 1:
            raise NotCoveredError("records of several tenants: one key reads one tenant")
        prefix = self._prefix()
        assert self.tenant is not None
        try:
            units = sorted({str(r["measurement"]["unit"]) for r in records})
            keys = sorted({k for r in records for k in r.get("dimensions", {})})
            events = [{"id": f"{prefix}{index}", "workspaceID": self.tenant[0],
                       "universeID": self.tenant[1],
                       "type": f"{prefix}{r['measurement']['unit']}",
                       "subject": f"{prefix}{r['subject']}", "time": r["recordedAt"],
                       "properties": {**r.get("dimensions", {}),
                                      QUANTITY: r["measurement"]["quantity"]}}
                      for index, r in enumerate(records)]
        except (KeyError, TypeError, AttributeError):
            raise NotCoveredError("records that cannot travel as events") from None
        if QUANTITY in keys:
            raise NotCoveredError(f"a dimension named {QUANTITY}")
        config: dict[str, Any] = {"measurements": [
            {"unit": unit, "sourceProperty": QUANTITY, "eventTypes": [f"{prefix}{unit}"]}
            for unit in units] or [  # no records: a meter that nothing matches
            {"unit": "none", "quantity": "1", "eventTypes": [f"{prefix}none"]}]}
        if keys:
            config["dimensions"] = keys
        meter = f"{prefix}meter"
        self._status(self._put_meter(meter, config), 200, 201)
        for start in range(0, len(events), 1000):
            response = self.client.post("/v1/events", content=json.dumps(
                events[start:start + 1000]))
            self._status(response, 200)
            outcomes = {r["outcome"] for r in response.json()["results"]}
            if outcomes - {"accepted"}:
                raise AnswerError(f"the case's records as events were answered {outcomes}")
        response = self.client.post("/v1/readings", content=json.dumps(
            {"meter": meter, "request": case_input.get("request")}))
        if response.status_code in (400, 422):
            return {"error": _problems(response.json()["problems"])}
        self._status(response, 200)
        tenant = next(iter(self._tenants(records)), ("", ""))
        readings = []
        for reading in response.json()["readings"]:
            reading.pop("id")
            reading["workspaceID"], reading["universeID"] = tenant
            reading["subject"] = reading["subject"].removeprefix(prefix)
            readings.append(reading)
        return {"output": readings}

    @staticmethod
    def expected_aggregate(expected: dict[str, Any]) -> dict[str, Any]:
        if "error" in expected:
            return {"error": _problems(expected["error"])}
        return {"output": [{k: v for k, v in reading.items() if k != "id"}
                           for reading in expected["output"]]}

    # ---------------------------------------------------------------- one case

    def run_case(self, case: Case) -> Outcome:
        self.number += 1
        try:
            if case.operation == "ingest":
                actual = self.ingest(case.input, case.expected)
                wanted = self.expected_ingest(case.expected)
            elif case.operation == "meter":
                actual = self.meter(case.input, case.expected)
                wanted = self.expected_meter(case.input, case.expected)
            elif case.operation == "aggregate":
                actual = self.aggregate(case.input, case.expected)
                wanted = self.expected_aggregate(case.expected)
            else:
                return _not_covered(case)
        except NotCoveredError as why:
            return _not_covered(case, str(why))
        except (AnswerError, httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            return Outcome(case, "errored", reason=f"{type(error).__name__}: {error}")
        if "error" in wanted and "error" in actual:
            same = problem_set(wanted["error"]) == problem_set(actual["error"])
        else:
            same = json_equal(wanted, actual)
        # Reported against what the profile compares (the case's answer as the binding
        # shows it), so that a diff shows only what differs over HTTP.
        shown = replace(case, expected=wanted)
        return Outcome(shown, "passed" if same else "failed", actual=actual,
                       reason=None if same else "the answer over HTTP differs")


def run(url: str, key: str, cases: list[Case], timeout: float,
        progress: Callable[[Outcome], None] | None = None, deadline: float | None = None,
        transport: httpx.BaseTransport | None = None) -> Run:
    """Every case through the binding; the implementation named after the URL. With a
    `deadline` (seconds, --deadline) the run stops when it passes, as an adapter's does
    (INTERPRETING.md 6): no request waits beyond it, and the cases not answered by then are
    skipped as not run."""
    until = None if deadline is None else time.monotonic() + deadline
    profile = Profile(url, key, timeout, transport=transport)
    outcomes: list[Outcome] = []

    def record(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome)

    def remaining() -> float:
        """Seconds left for a request: --timeout, or less when the deadline is nearer."""
        left = timeout if until is None else min(timeout, until - time.monotonic())
        profile.client.timeout = httpx.Timeout(max(left, 1e-6))
        return left

    try:
        try:
            if remaining() <= 0:
                raise httpx.TimeoutException("no time left")
            profile.discover_tenant()
        except httpx.TimeoutException:
            if until is not None and time.monotonic() >= until:
                raise AnswerError("no answer to GET /v1/key before the run's deadline "
                                  f"({deadline:g} s)") from None
            raise AnswerError(f"no answer within {timeout:g} s (--timeout)") from None
        except httpx.TransportError as error:  # nothing listens, no such host, no scheme
            raise AnswerError(f"cannot reach the server: {error or type(error).__name__}"
                              ) from None
        for case in cases:
            if remaining() <= 0:
                break
            outcome = profile.run_case(case)
            if outcome.result == "errored" and until is not None \
                    and time.monotonic() >= until:
                break  # cut short by the deadline: not run
            record(outcome)
    finally:
        profile.close()
    implementation = {"name": f"HTTP binding at {url}", "version": __version__,
                      "language": "http", "operations": list(OPERATIONS)}
    if len(outcomes) == len(cases):
        return Run(implementation, outcomes, allow_skips=True)
    for case in cases[len(outcomes):]:
        record(Outcome(case, "skipped", reason=NOT_RUN.format(deadline)) if case.operation
               in OPERATIONS else _not_covered(case))
    count = sum(1 for o in outcomes if o.reason == NOT_RUN.format(deadline))
    return Run(implementation, outcomes, f"the run's deadline ({deadline:g} s) passed", count,
               allow_skips=True)
