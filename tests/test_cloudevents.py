"""MS-CE-001..010: the CloudEvents 1.0 binding (JSON structured mode). Expected CloudEvents and
problems are written by hand; ids are recomputed with hashlib (MS-ID-001)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_domain_events import any_events, invoice_args, ms_id, record

from meterspec.cloudevents import (
    CloudEvent,
    cloudevent_type,
    domain_event_from_cloudevent,
    event_from_cloudevent,
    events_from_batch,
    to_cloudevent,
)
from meterspec.codec import encode
from meterspec.contracts import EventPayload
from meterspec.domain_events import (
    EVENT_TYPES,
    EventType,
    UsageRecorded,
    billing_period_closed,
    event_type,
    invoice_generated,
    usage_recorded,
)
from meterspec.errors import MeterspecError
from meterspec.ingestion import ingest

ROOT = Path(__file__).resolve().parents[1]
PROPERTIES = settings(max_examples=100, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
SOURCE = "https://billing.example.com/meterspec"
CODES = {line.split("`")[1] for line in (ROOT / "specs" / "errors.md").read_text().splitlines()
         if line.startswith("| `")}


def problems_of(call: Any) -> set[tuple[str, str]]:
    with pytest.raises(MeterspecError) as caught:
        call()
    assert all(p.code in CODES for p in caught.value.problems)
    return {(p.code, p.path) for p in caught.value.problems}


# ------------------------------------------------------------------ publishing


def test_a_usage_recorded_cloudevent_byte_for_byte() -> None:
    """MS-CE-002: attributes in order; id = the domain event's id; type per MS-CE-003; time =
    recordedAt (business time); the data is the domain event itself."""
    event = usage_recorded(record())
    expected_id = ms_id("dev_", [
        "meterspec/usage-recorded/v1", "acme-prod", "production", "customer:cust_123",
        "rec_b60c13d8d866b67532dc8a8c4530bed3", "evt_abc123", "2024-01-15T10:30:00Z", "145",
        "milliseconds", "2", "endpoint", "/api/users", "region", "us-east"])
    assert encode(to_cloudevent(event, SOURCE)).decode() == (
        '{"specversion":"1.0","id":"' + expected_id + '",'
        '"source":"https://billing.example.com/meterspec",'
        '"type":"dev.meterspec.usage.recorded.v1","subject":"customer:cust_123",'
        '"time":"2024-01-15T10:30:00Z","datacontenttype":"application/json",'
        '"dataschema":"https://meterspec.dev/schemas/v1/domain-event-usage-recorded.schema.json",'
        '"data":' + encode(event).decode() + '}')


def test_business_time_per_type() -> None:
    """MS-CE-002, MS-DEV-001: period end for billing.period.closed; no time for
    invoice.generated (its content has no business instant)."""
    closed = to_cloudevent(billing_period_closed(**invoice_args()), "/meterspec/eu-1")
    generated = to_cloudevent(invoice_generated(**invoice_args()), "/meterspec/eu-1")
    assert (closed.time, closed.type) == ("2024-02-01T00:00:00Z",
                                          "dev.meterspec.billing.period.closed.v1")
    assert generated.time is None and "time" not in json.loads(encode(generated))
    assert generated.type == "dev.meterspec.invoice.generated.v1"


@PROPERTIES
@given(any_events)
def test_published_attributes(event: Any) -> None:
    """MS-CE-002, MS-CE-004: the CloudEvent id is the data's id; dataschema names the schema
    file whose $id it is; datacontenttype is JSON."""
    ce = json.loads(encode(to_cloudevent(event, SOURCE)))
    assert ce["specversion"] == "1.0" and ce["id"] == ce["data"]["id"] == event.id
    assert ce["datacontenttype"] == "application/json"
    name = ce["dataschema"].rsplit("/", 1)[1]
    schema = json.loads((ROOT / "schemas" / name).read_text())
    assert schema["$id"] == ce["dataschema"]
    assert ce["data"] == json.loads(encode(event))
    assert ce.get("time") == {"usage.recorded": ce["data"].get("recordedAt"),
                              "billing.period.closed": ce["data"].get("period", {}).get("end"),
                              }.get(event.type)


@pytest.mark.parametrize(("name", "version", "ce_type"), [
    ("usage.recorded", 1, "dev.meterspec.usage.recorded.v1"),
    ("quota.warning", 1, "dev.meterspec.quota.warning.v1"),
    ("quota.exceeded", 1, "dev.meterspec.quota.exceeded.v1"),
    ("invoice.generated", 1, "dev.meterspec.invoice.generated.v1"),
    ("billing.period.closed", 1, "dev.meterspec.billing.period.closed.v1"),
    ("usage.recorded.v2", 2, "dev.meterspec.usage.recorded.v2"),
    ("billing.period.closed.v13", 13, "dev.meterspec.billing.period.closed.v13"),
])
def test_type_mapping(name: str, version: int, ce_type: str) -> None:
    """MS-CE-003: reverse-DNS prefix, the name without its version suffix, `.v<N>`."""
    found = EVENT_TYPES.get(name) or EventType(name, version, "k", UsageRecorded, "s", str)
    assert cloudevent_type(found) == ce_type


def test_a_second_version_gets_another_cloudevents_type_than_the_first() -> None:
    """MS-CE-003: one to one, so a v1 subscription never receives v2."""
    v1 = cloudevent_type(event_type("usage.recorded"))
    v2 = cloudevent_type(EventType("usage.recorded.v2", 2, "k", UsageRecorded, "s", str))
    assert v1 != v2 and v1.removesuffix(".v1") == v2.removesuffix(".v2")


@PROPERTIES
@given(any_events)
def test_retries_publish_byte_identical_cloudevents(event: Any) -> None:
    """MS-CE-004, MS-CE-005: the same fact and source give the same bytes and (source, id);
    the event rebuilt from its own content (a retry) too."""
    first = encode(to_cloudevent(event, SOURCE))
    again = encode(to_cloudevent(msgspec.json.decode(encode(event), type=type(event)), SOURCE))
    assert first == again
    other = json.loads(encode(to_cloudevent(event, "/meterspec/eu-2")))
    assert other["id"] == json.loads(first)["id"] and other["source"] == "/meterspec/eu-2"


@pytest.mark.parametrize(("source", "code"), [
    ("", "empty-string"), ("/meterspec pod 7", "invalid-value"), ("/a%zz", "invalid-value"),
    ("/a\nb", "invalid-value")])
def test_a_source_must_be_a_uri_reference(source: str, code: str) -> None:
    """MS-CE-004, MS-CE-006."""
    assert problems_of(lambda: to_cloudevent(usage_recorded(record()), source)) == {
        (code, "/source")}
    for good in ("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", "/meterspec/eu-1",
                 "1-555-123-4567", "https://x.example/a%20b?q=1#f"):
        assert to_cloudevent(usage_recorded(record()), good).source == good


def test_a_subject_that_is_no_cloudevents_string_is_left_out() -> None:
    """MS-CE-002: the data keeps it."""
    event = usage_recorded(record(subject="customer\x00ctl"))
    ce = to_cloudevent(event, SOURCE)
    assert ce.subject is None and ce.data.subject == "customer\x00ctl"
    assert "subject" not in json.loads(encode(ce))
    assert domain_event_from_cloudevent(encode(ce)) == event


@PROPERTIES
@given(any_events)
def test_published_domain_events_come_back(event: Any) -> None:
    """MS-CE-010: publishing then receiving gives the domain event, from bytes or a decoded
    object."""
    data = encode(to_cloudevent(event, SOURCE))
    assert domain_event_from_cloudevent(data) == event
    assert domain_event_from_cloudevent(json.loads(data)) == event


def test_received_domain_events_are_checked_as_domain_events() -> None:
    """MS-CE-010: a mislabelled type, a v2 data type, a bad id: problems under /data or at
    /type; a foreign CloudEvents type is accepted (the data is self-describing)."""
    event = usage_recorded(record())
    ce = json.loads(encode(to_cloudevent(event, SOURCE)))
    assert problems_of(lambda: domain_event_from_cloudevent(
        {**ce, "type": "dev.meterspec.quota.warning.v1"})) == {("invalid-value", "/type")}
    assert problems_of(lambda: domain_event_from_cloudevent(
        {**ce, "type": "dev.meterspec.usage.recorded"})) == {("invalid-value", "/type")}
    assert domain_event_from_cloudevent({**ce, "type": "com.example.billing.usage"}) == event
    assert problems_of(lambda: domain_event_from_cloudevent(
        {**ce, "data": {**ce["data"], "type": "usage.recorded.v2"}})) == {
        ("unknown-event-type", "/data/type")}
    assert problems_of(lambda: domain_event_from_cloudevent(
        {**ce, "data": {**ce["data"], "id": "dev_" + "0" * 32}, "specversion": "0.3"})) == {
        ("inconsistent-id", "/data/id"), ("unsupported-specversion", "/specversion")}


# ------------------------------------------------------------------ ingesting usage events

PAYLOAD = {"id": "evt_1", "workspaceID": "acme", "universeID": "prod", "type": "api_call",
           "subject": "customer:42", "time": "2024-01-15T10:30:00+01:00",
           "properties": {"endpoint": "/v1/x"}}
ENVELOPE = {"specversion": "1.0", "id": "6e8bc430-9c3a-11d9-9669-0800200c9a66",
            "source": "https://api.example.com/usage", "type": "com.example.api.call",
            "time": "2024-01-15T09:31:07.25Z", "datacontenttype": "application/json"}


def ce(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {**ENVELOPE, "data": PAYLOAD}
    for name, value in changes.items():
        if value is ...:
            document.pop(name, None)
        else:
            document[name] = value
    return document


def test_the_payload_comes_out_exactly_as_written() -> None:
    """MS-CE-009: the envelope's id and time differ from the payload's; that is no error; the
    event has the payload's id and time; the envelope is kept beside it."""
    received = event_from_cloudevent(json.dumps(ce()))
    assert received.event == EventPayload("evt_1", "acme", "prod", "api_call", "customer:42",
                                           "2024-01-15T10:30:00+01:00", {"endpoint": "/v1/x"})
    assert (received.envelope.id, received.envelope.source, received.envelope.type,
            received.envelope.time, received.envelope.subject) == (
        ENVELOPE["id"], ENVELOPE["source"], ENVELOPE["type"], ENVELOPE["time"], None)


@PROPERTIES
@given(st.text(min_size=1, max_size=12).filter(lambda s: not any(
    ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF
    or 0xFDD0 <= ord(c) <= 0xFDEF or (ord(c) & 0xFFFE) == 0xFFFE for c in s)),
       st.sampled_from([..., "2020-01-01T00:00:00Z", "2024-01-15T09:30:00Z",
                        "2099-12-31T23:59:59.999999-05:00"]),
       st.sampled_from([..., "customer:7", "someone else"]))
def test_any_envelope_gives_the_same_event_and_the_same_digest(
        envelope_id: str, envelope_time: Any, subject: Any) -> None:
    """MS-CE-009: nothing of the envelope reaches the event, so two deliveries of one payload
    in different envelopes are one event to ingestion (a duplicate, never a conflict)."""
    first = event_from_cloudevent(ce())
    other = event_from_cloudevent(ce(id=envelope_id, time=envelope_time, subject=subject,
                                     source="/another/broker", comexampletrace="00-ab"))
    assert other.event == first.event and other.envelope.id == envelope_id
    assert ingest([first.event, other.event]).outcomes == ("accepted", "duplicate")


def test_the_envelope_never_fills_in_the_payload() -> None:
    """MS-CE-009: a payload without time is rejected even though the envelope has a time; a
    payload without subject even though the envelope has one."""
    payload = {k: v for k, v in PAYLOAD.items() if k not in ("time", "subject")}
    assert problems_of(lambda: event_from_cloudevent(ce(data=payload, subject="customer:42"))
                       ) == {("missing-field", "/data/time"), ("missing-field", "/data/subject")}


@pytest.mark.parametrize(("changes", "expected"), [
    ({"specversion": ...}, {("missing-field", "/specversion")}),
    ({"specversion": None}, {("missing-field", "/specversion")}),
    ({"specversion": "0.3"}, {("unsupported-specversion", "/specversion")}),
    ({"specversion": "1.0.2"}, {("unsupported-specversion", "/specversion")}),
    ({"specversion": 1.0}, {("wrong-type", "/specversion")}),
    ({"id": ...}, {("missing-field", "/id")}),
    ({"id": ""}, {("empty-string", "/id")}),
    ({"id": 42}, {("wrong-type", "/id")}),
    ({"source": ...}, {("missing-field", "/source")}),
    ({"source": ""}, {("empty-string", "/source")}),
    ({"source": "not a uri"}, {("invalid-value", "/source")}),
    ({"type": None}, {("missing-field", "/type")}),
    ({"type": ""}, {("empty-string", "/type")}),
    ({"type": "com.example\u0007bell"}, {("invalid-value", "/type")}),
])
def test_required_attributes(changes: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    """MS-CE-006: codes and JSON Pointers into the CloudEvent; null is unset."""
    assert problems_of(lambda: event_from_cloudevent(ce(**changes))) == expected


@pytest.mark.parametrize(("changes", "expected"), [
    ({"subject": ""}, {("empty-string", "/subject")}),
    ({"subject": 7}, {("wrong-type", "/subject")}),
    ({"dataschema": ""}, {("empty-string", "/dataschema")}),
    ({"time": "2024-02-30T00:00:00Z"}, {("invalid-timestamp", "/time")}),
    ({"time": "yesterday"}, {("invalid-timestamp", "/time")}),
    ({"time": 1705311000}, {("wrong-type", "/time")}),
    ({"Data": {"x": 1}}, {("unknown-field", "/Data")}),
    ({"comExampleTrace": "x"}, {("unknown-field", "/comExampleTrace")}),
    ({"traceparent": "a\u0000b"}, {("invalid-value", "/traceparent")}),
    ({"datacontenttype": "text/plain"}, {("unsupported-content-type", "/datacontenttype")}),
    ({"datacontenttype": ""}, {("unsupported-content-type", "/datacontenttype")}),
    ({"datacontenttype": 5}, {("wrong-type", "/datacontenttype")}),
])
def test_optional_and_extension_attributes(changes: dict[str, Any],
                                           expected: set[tuple[str, str]]) -> None:
    """MS-CE-007, MS-CE-008."""
    assert problems_of(lambda: event_from_cloudevent(ce(**changes))) == expected


@pytest.mark.parametrize("changes", [
    {"subject": None, "time": None, "dataschema": None, "datacontenttype": None},
    {"datacontenttype": ...},
    {"datacontenttype": "application/json; charset=utf-8"},
    {"datacontenttype": "application/vnd.example.usage+json"},
    {"datacontenttype": "Application/JSON"},
    {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "partitionkey": 7,
     "comexampleflag": True, "subject": "customer:42", "dataschema": "urn:example:usage"},
])
def test_attributes_that_are_accepted(changes: dict[str, Any]) -> None:
    """MS-CE-007, MS-CE-008: unset optionals, JSON media types, extensions (ignored)."""
    assert event_from_cloudevent(ce(**changes)).event == event_from_cloudevent(ce()).event


@pytest.mark.parametrize(("changes", "expected"), [
    ({"data": ...}, {("missing-field", "/data")}),
    ({"data": None}, {("wrong-type", "/data")}),
    ({"data": json.dumps(PAYLOAD)}, {("wrong-type", "/data")}),
    ({"data": [PAYLOAD]}, {("wrong-type", "/data")}),
    ({"data": ..., "data_base64": "eyJpZCI6ICJldnRfMSJ9"},
     {("unsupported-content-type", "/data_base64")}),
    ({"data_base64": "eyJpZCI6ICJldnRfMSJ9"}, {("unsupported-content-type", "/data_base64")}),
    ({"data": {**PAYLOAD, "time": "2024-02-30T10:30:00Z"}}, {("invalid-timestamp", "/data/time")}),
    ({"data": {**PAYLOAD, "workspaceId": "acme"}}, {("unknown-field", "/data/workspaceId")}),
    ({"data": {**PAYLOAD, "properties": {"n": 1}}}, {("wrong-type", "/data/properties/n")}),
])
def test_data(changes: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    """MS-CE-008: data is a JSON object holding a valid EventPayload; a string is never parsed
    as JSON; binary data carries no EventPayload; payload problems point under /data."""
    assert problems_of(lambda: event_from_cloudevent(ce(**changes))) == expected


def test_every_problem_at_once_and_named_by_the_event() -> None:
    """MS-CE-006..008 with MS-ERR-002: envelope and payload problems together; the payload's
    id names the event (MS-ERR-001)."""
    bad = ce(specversion="0.3", source=None, time="soon", Type="x",
             data={**PAYLOAD, "workspaceID": "", "time": "2024-13-01T00:00:00Z"})
    with pytest.raises(MeterspecError) as caught:
        event_from_cloudevent(bad)
    got = {(p.code, p.path) for p in caught.value.problems}
    assert got == {("unsupported-specversion", "/specversion"), ("missing-field", "/source"),
                   ("invalid-timestamp", "/time"), ("unknown-field", "/Type"),
                   ("empty-string", "/data/workspaceID"), ("invalid-timestamp", "/data/time")}
    assert {p.event_id for p in caught.value.problems} == {"evt_1"}
    without_id = ce(source=None, data={**PAYLOAD, "id": ""})
    with pytest.raises(MeterspecError) as caught:
        event_from_cloudevent(without_id)
    assert {p.event_id for p in caught.value.problems} == {None}


@pytest.mark.parametrize(("data", "code"), [(b"{", "invalid-json"), (b"[]", "wrong-type"),
                                            (b'"1.0"', "wrong-type"), ([], "wrong-type")])
def test_a_cloudevent_is_a_json_object(data: Any, code: str) -> None:
    """MS-CE-006."""
    assert problems_of(lambda: event_from_cloudevent(data)) == {(code, "")}


def test_a_batch_converts_each_cloudevent_on_its_own() -> None:
    """MS-CE-001 with MS-ERR-005: the good ones in order, the bad ones' problems under their
    index."""
    second = {**PAYLOAD, "id": "evt_2"}
    batch = [ce(), ce(data={**PAYLOAD, "time": "x"}), ce(data=second), {"id": 1}]
    received, problems = events_from_batch(json.dumps(batch))
    assert [r.event.id for r in received] == ["evt_1", "evt_2"]
    assert {(p.code, p.path) for p in problems} == {
        ("invalid-timestamp", "/1/data/time"), ("wrong-type", "/3/id"),
        ("missing-field", "/3/specversion"), ("missing-field", "/3/source"),
        ("missing-field", "/3/type"), ("missing-field", "/3/data")}
    assert problems_of(lambda: events_from_batch(b'{"specversion": "1.0"}')) == {
        ("wrong-type", "")}
    assert events_from_batch(b"[]") == ([], [])


def test_cloudevent_struct_has_the_published_attribute_order() -> None:
    """MS-CE-002: the Struct's fields are the attributes in the order written above."""
    assert [f.name for f in msgspec.structs.fields(CloudEvent)] == [
        "specversion", "id", "source", "type", "subject", "time", "datacontenttype",
        "dataschema", "data"]
