"""MS-DEV-001..011: domain events. Ids are recomputed here by hand from MS-ID-001 with hashlib,
canonical forms with an independent parser; every expected problem was worked out by hand.
The strategies at the top build valid events of every type (tests/test_schemas.py uses them)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
import referencing
from conftest import identifiers, short_text, timestamps
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ingestion import check_invalid_example, check_valid_example, example_cases
from test_quotas import quota_checks

from meterspec.codec import STRUCTS, decode, encode
from meterspec.contracts import Measurement, MeterRecord, Window
from meterspec.domain_events import (
    EVENT_TYPES,
    BillingPeriodClosed,
    InvoiceGenerated,
    UsageRecorded,
    billing_period_closed,
    decode_domain_event,
    event_type,
    invoice_generated,
    semantic_problems,
    usage_recorded,
)
from meterspec.errors import MeterspecError
from meterspec.money import Amount
from meterspec.quotas import QuotaCheck, QuotaEvent, QuotaPeriod, QuotaPolicy, decide

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
PROPERTIES = settings(max_examples=150, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
KINDS = {"usage-recorded": "domain-event-usage-recorded.schema.json",
         "quota-event": "domain-event-quota.schema.json",
         "invoice-generated": "domain-event-invoice-generated.schema.json",
         "billing-period-closed": "domain-event-billing-period-closed.schema.json"}


def ms_id(prefix: str, fields: list[str]) -> str:
    """MS-ID-001 by hand: per field its UTF-8 byte length in ASCII, ':', its bytes; SHA-256;
    the first 32 hex digits."""
    data = b"".join(str(len(f.encode())).encode() + b":" + f.encode() for f in fields)
    return prefix + hashlib.sha256(data).hexdigest()[:32]


_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
                      r"([Zz]|[+-]\d\d:\d\d)")


def canonical_time(text: str) -> str:
    """MS-TIME-002..004 by hand with datetime: UTC, nanoseconds kept, fraction only when
    non-zero and without trailing zeros."""
    m = _RFC3339.fullmatch(text)
    assert m is not None, text
    y, mo, d, h, mi, s, fraction, offset = m.groups()
    moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s))
    if offset not in ("Z", "z"):
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
        moment = moment - delta if offset[0] == "+" else moment + delta
    nanos = int((fraction or "").ljust(9, "0")[:9])
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
            f"{moment.minute:02d}:{moment.second:02d}"
            + (f".{nanos:09d}".rstrip("0") if nanos else "") + "Z")


def canonical_quantity(text: str) -> str:
    value = Decimal(text)
    if value == 0:
        return "0"
    plain = format(value, "f")
    return plain.rstrip("0").rstrip(".") if "." in plain else plain


# ------------------------------------------------------------------ strategies

quantities = st.from_regex(r"-?[0-9]{1,10}(\.[0-9]{1,10})?([eE][+-]?[0-9])?", fullmatch=True)


records = st.builds(
    MeterRecord, id=identifiers, workspace_id=identifiers, universe_id=identifiers,
    subject=identifiers, recorded_at=timestamps(),
    measurement=st.builds(Measurement, quantity=quantities, unit=identifiers),
    dimensions=st.dictionaries(short_text, short_text, max_size=4),
    source_event_id=identifiers, metered_at=st.just(msgspec.UNSET) | timestamps())
usage_recorded_events = records.map(usage_recorded)

hex_ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
MINOR = {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3, "CLF": 4}


def _decimal_text(value: Decimal) -> str:
    return canonical_quantity(str(value))


@st.composite
def invoice_fields(draw: st.DrawFn) -> dict[str, Any]:
    """The fields an invoice event takes from an invoice: canonical period and amounts, the
    rounded total in the currency's minor units."""
    start = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9998, 1, 1)))
    length = draw(st.sampled_from([timedelta(microseconds=1), timedelta(days=1),
                                   timedelta(days=31), timedelta(days=28, hours=23)]))
    code = draw(st.sampled_from(sorted(MINOR)))
    minor = draw(st.integers(-10**12, 10**12))
    rounded = Decimal(minor).scaleb(-MINOR[code])
    # The precise total is within half a minor unit per line of the rounded one (MS-MNY-007).
    precise = rounded + Decimal(draw(st.integers(-5000, 5000))).scaleb(-MINOR[code] - 4)
    return {
        "invoice_id": "inv_" + draw(hex_ids), "revision": "rev_" + draw(hex_ids),
        "workspace_id": draw(identifiers), "universe_id": draw(identifiers),
        "subject": draw(identifiers),
        "period": Window(canonical_time(start.isoformat() + "Z"),
                         canonical_time((start + length).isoformat() + "Z")),
        "currency_code": code,
        "total": Amount(_decimal_text(precise), _decimal_text(rounded)),
    }


invoice_generated_events = invoice_fields().map(lambda f: invoice_generated(**f))
billing_period_closed_events = invoice_fields().map(lambda f: billing_period_closed(**f))


@st.composite
def crossing_checks(draw: st.DrawFn) -> QuotaCheck:
    """A SOFT check from usage -1 to at least the limit: crosses the limit and, with a
    threshold, the warning level, in any period size and zone (MS-QTA-010)."""
    c = draw(quota_checks())
    policy = msgspec.structs.replace(c.policy, mode="SOFT", max_staleness_seconds=None)
    beyond = str(Decimal(policy.limit) + 1 + draw(st.sampled_from([Decimal(0), Decimal("0.5"),
                                                                   Decimal(7)])))
    return msgspec.structs.replace(c, policy=policy, usage="-1", requested=beyond,
                                   usage_as_of=None)


quota_events = crossing_checks().map(decide).flatmap(lambda d: st.sampled_from(d.events))
INSTANCES: dict[str, st.SearchStrategy[Any]] = {
    "usage-recorded": usage_recorded_events, "quota-event": quota_events,
    "invoice-generated": invoice_generated_events,
    "billing-period-closed": billing_period_closed_events,
}
any_events = st.one_of(*INSTANCES.values())


# ------------------------------------------------------------------ schemas from files


def _documents() -> dict[str, Any]:
    return {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")}


def _validator(name: str) -> jsonschema.Draft202012Validator:
    docs = _documents()
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (d["$id"], referencing.Resource.from_contents(d)) for d in docs.values())
    return jsonschema.Draft202012Validator(docs[name], registry=registry)


VALIDATORS = {kind: _validator(name) for kind, name in KINDS.items()}


def problems_of(call: Any) -> set[tuple[str, str]]:
    with pytest.raises(MeterspecError) as caught:
        call()
    return {(p.code, p.path) for p in caught.value.problems}


# ------------------------------------------------------------------ the catalogue (MS-DEV-001)


def test_catalogue_lists_the_five_types_with_their_schemas() -> None:
    """MS-DEV-001: five types, version 1, each with its schema file and $id."""
    assert {name: (t.version, t.kind, t.schema) for name, t in EVENT_TYPES.items()} == {
        "usage.recorded": (1, "usage-recorded", KINDS["usage-recorded"]),
        "quota.warning": (1, "quota-event", KINDS["quota-event"]),
        "quota.exceeded": (1, "quota-event", KINDS["quota-event"]),
        "invoice.generated": (1, "invoice-generated", KINDS["invoice-generated"]),
        "billing.period.closed": (1, "billing-period-closed", KINDS["billing-period-closed"]),
    }
    for kind, name in KINDS.items():
        schema = _documents()[name]
        assert schema["$id"] == f"https://meterspec.dev/schemas/v1/{name}"
        assert schema["required"][:5] == ["id", "type", "workspaceID", "universeID", "subject"]
        assert list(schema["properties"]) == schema["required"], kind
        assert schema["additionalProperties"] is False
        assert STRUCTS[kind] is {t.kind: t.struct for t in EVENT_TYPES.values()}[kind]


@PROPERTIES
@given(any_events)
def test_every_event_is_schema_valid_and_round_trips(event: Any) -> None:
    """MS-DEV-001, MS-DEV-011: the JSON of every constructed event passes its schema (a plain
    JSON Schema validator, built from the files), decodes back to an equal Struct through the
    kind's checks and through the type dispatch, and its first fields are the common five."""
    kind = event_type(event.type).kind
    data = encode(event)
    document = json.loads(data)
    assert list(VALIDATORS[kind].iter_errors(document)) == []
    assert list(document)[:5] == ["id", "type", "workspaceID", "universeID", "subject"]
    assert decode(kind, data, STRUCTS[kind], fast=False) == event
    assert decode_domain_event(data) == event
    assert semantic_problems(event) == []


# ------------------------------------------------------------------ usage.recorded (MS-DEV-007)

SEED = json.loads((EXAMPLES / "record/valid/seed-readme.json").read_text())


def record(**changes: Any) -> MeterRecord:
    base = msgspec.convert(SEED, MeterRecord)
    return msgspec.structs.replace(base, **changes)


def test_usage_recorded_of_the_seed_record_byte_for_byte() -> None:
    """MS-DEV-007: the seed README's record as a usage.recorded event, written out by hand;
    the id is the MS-ID-001 digest over the tag and the fields."""
    expected_id = ms_id("dev_", [
        "meterspec/usage-recorded/v1", "acme-prod", "production", "customer:cust_123",
        "rec_b60c13d8d866b67532dc8a8c4530bed3", "evt_abc123", "2024-01-15T10:30:00Z", "145",
        "milliseconds", "2", "endpoint", "/api/users", "region", "us-east"])
    expected = (
        '{"id":"' + expected_id + '","type":"usage.recorded","workspaceID":"acme-prod",'
        '"universeID":"production","subject":"customer:cust_123",'
        '"recordID":"rec_b60c13d8d866b67532dc8a8c4530bed3","sourceEventID":"evt_abc123",'
        '"recordedAt":"2024-01-15T10:30:00Z","measurement":{"quantity":"145",'
        '"unit":"milliseconds"},"dimensions":{"endpoint":"/api/users","region":"us-east"}}')
    assert encode(usage_recorded(record())).decode() == expected
    example = json.loads((EXAMPLES / "usage-recorded/valid/seed-readme.json").read_text())
    assert example == json.loads(expected)


def test_usage_recorded_canonicalises_and_drops_metered_at() -> None:
    """MS-DEV-002, MS-DEV-007: other spellings of the same record (the non-canonical record
    example, a meteredAt, dimensions in another order) give the same bytes."""
    spelled = msgspec.convert(
        json.loads((EXAMPLES / "record/valid/non-canonical-input.json").read_text()),
        MeterRecord)
    event = usage_recorded(spelled)
    assert (event.recorded_at, event.measurement.quantity) == ("2024-01-15T10:30:00Z", "-145")
    reference = usage_recorded(record(measurement=Measurement("-145", "milliseconds")))
    assert encode(event) == encode(reference)
    metered = record(metered_at="2024-01-15T10:30:05.5Z",
                     dimensions={"region": "us-east", "endpoint": "/api/users"})
    assert encode(usage_recorded(metered)) == encode(usage_recorded(record()))
    assert "meteredAt" not in json.loads(encode(usage_recorded(metered)))


@PROPERTIES
@given(records)
def test_usage_recorded_id_and_content_recomputed_by_hand(rec: MeterRecord) -> None:
    """MS-DEV-003, MS-DEV-007: canonical time and quantity (recomputed independently), the
    record's other fields unchanged, dimensions in code-point order, and the id is the digest
    of exactly those fields."""
    event = usage_recorded(rec)
    at, quantity = canonical_time(rec.recorded_at), canonical_quantity(rec.measurement.quantity)
    keys = sorted(rec.dimensions)
    fields = ["meterspec/usage-recorded/v1", rec.workspace_id, rec.universe_id, rec.subject,
              rec.id, rec.source_event_id, at, quantity, rec.measurement.unit, str(len(keys))]
    for key in keys:
        fields += [key, rec.dimensions[key]]
    assert event.id == ms_id("dev_", fields)
    assert (event.type, event.workspace_id, event.universe_id, event.subject, event.record_id,
            event.source_event_id, event.recorded_at, event.measurement) == (
        "usage.recorded", rec.workspace_id, rec.universe_id, rec.subject, rec.id,
        rec.source_event_id, at, Measurement(quantity, rec.measurement.unit))
    assert list(event.dimensions.items()) == [(k, rec.dimensions[k]) for k in keys]


def test_usage_recorded_rejects_a_bad_record_with_every_problem() -> None:
    """MS-DEV-007, MS-ERR-002: paths into the record."""
    bad = record(id="", subject="", recorded_at="2024-02-30T00:00:00Z",
                 measurement=Measurement("1e99", ""))
    assert problems_of(lambda: usage_recorded(bad)) == {
        ("empty-string", "/id"), ("empty-string", "/subject"),
        ("empty-string", "/measurement/unit"), ("invalid-timestamp", "/recordedAt"),
        ("quantity-out-of-range", "/measurement/quantity")}


def test_an_amended_record_is_a_new_event_with_the_same_record_id() -> None:
    """MS-DEV-003, MS-DEV-007: new content, new id; the recordID stays."""
    first = usage_recorded(record())
    amended = usage_recorded(record(measurement=Measurement("150", "milliseconds")))
    assert amended.record_id == first.record_id and amended.id != first.id


@PROPERTIES
@given(records, st.sampled_from(["id", "workspace_id", "universe_id", "subject",
                                  "source_event_id", "recorded_at", "quantity", "unit",
                                  "dimension"]))
def test_any_change_of_content_changes_the_id(rec: MeterRecord, field: str) -> None:
    """MS-DEV-003: the id covers every field (the tenant included)."""
    before = usage_recorded(rec)
    if field == "recorded_at":
        changed = msgspec.structs.replace(rec, recorded_at=canonical_time(
            (datetime.fromisoformat(before.recorded_at[:19]) + timedelta(seconds=1)).isoformat()
            + "Z") if before.recorded_at[:4] != "9999" else "2000-01-01T00:00:00Z")
    elif field in ("quantity", "unit"):
        m = rec.measurement
        changed = msgspec.structs.replace(rec, measurement=Measurement(
            str(Decimal(m.quantity) + 1) if field == "quantity" else m.quantity,
            m.unit + "x" if field == "unit" else m.unit))
    elif field == "dimension":
        changed = msgspec.structs.replace(rec, dimensions={**rec.dimensions,
                                                           "\x00a-new-dimension": ""})
    else:
        changed = msgspec.structs.replace(rec, **{field: getattr(rec, field) + "x"})
    assert usage_recorded(changed).id != before.id


# ------------------------------------------------------------------ purity (MS-DEV-002)


@PROPERTIES
@given(any_events)
def test_events_carry_no_time_of_emission_and_rebuild_byte_identically(event: Any) -> None:
    """MS-DEV-002: an event has no field beyond its type's content, so re-running its
    constructor on its own content (a retry) gives the same bytes; nothing in it names the
    moment it was made."""
    document = json.loads(encode(event))
    assert not {"emittedAt", "createdAt", "time", "meteredAt", "usage", "remaining"} & set(
        document)
    again = decode_domain_event(encode(event))
    assert encode(again) == encode(event)


def test_retries_of_one_record_in_any_order_are_one_event() -> None:
    """MS-DEV-002, MS-DEV-006: a consumer deduplicating by id sees one fact per content,
    whatever the order and number of deliveries."""
    facts = [usage_recorded(record(source_event_id=f"evt_{i}", id=f"rec_{i}"))
             for i in range(5)]
    deliveries = facts * 3
    random.Random(7).shuffle(deliveries)
    seen: dict[str, bytes] = {}
    for delivered in deliveries:
        data = encode(delivered)
        assert seen.setdefault(delivered.id, data) == data  # a duplicate, never a conflict
    assert sorted(seen) == sorted(f.id for f in facts)


# ------------------------------------------------------------------ quota events (MS-DEV-008)


@PROPERTIES
@given(quota_checks())
def test_the_quota_schema_accepts_every_event_decide_emits(c: QuotaCheck) -> None:
    """MS-DEV-008: whatever quotas.decide emits is a valid quota-event document (schema from
    the file, the codec's checks) and its id is the MS-QTA-011 digest, recomputed here."""
    for event in decide(c).events:
        document = json.loads(encode(event))
        assert list(VALIDATORS["quota-event"].iter_errors(document)) == []
        assert decode("quota-event", encode(event), QuotaEvent, fast=False) == event
        assert event.id == ms_id("qev_", [
            "meterspec/quota-event/v1", event.type, event.workspace_id, event.universe_id,
            event.subject, event.unit, event.period.start, event.period.end, event.limit,
            event.threshold])


@PROPERTIES
@given(crossing_checks())
def test_crossing_checks_reach_the_limit(c: QuotaCheck) -> None:
    """MS-DEV-008: the strategy used for the schema tests always yields quota.exceeded (and
    quota.warning first when the policy has a threshold)."""
    events = decide(c).events
    assert events[-1].type == "quota.exceeded" and events[-1].threshold == events[-1].limit
    has_warning = c.policy.warning_threshold_percent is not None
    assert [e.type for e in events[:-1]] == (["quota.warning"] if has_warning else [])
    assert semantic_problems(events[0]) == []


def test_quota_event_schema_states_the_quota_decision_shape() -> None:
    """MS-DEV-008: the same properties, required fields and value types as the quotaEvent of
    quota-decision.schema.json (only the id's error code is this document's)."""
    mine = _documents()[KINDS["quota-event"]]
    theirs = _documents()["quota-decision.schema.json"]["$defs"]["quotaEvent"]
    assert mine["required"] == theirs["required"]
    assert list(mine["properties"]) == list(theirs["properties"])
    for name, spec in mine["properties"].items():
        if name == "id":
            assert spec["pattern"] == theirs["properties"]["id"]["pattern"]
        else:
            assert {k: v for k, v in spec.items() if k != "description"} == {
                k: v for k, v in theirs["properties"][name].items() if k != "description"}


def test_quota_event_rules_beyond_the_schema() -> None:
    """MS-DEV-008: limit at least 0, exceeded at the limit, warning between 0 and the limit."""
    [event] = decide(QuotaCheck("acme", "prod", "c", "calls", "9", "1", "2024-01-15T00:00:00Z",
                                QuotaPolicy("10", "HARD", QuotaPeriod("month")))).events
    assert (event.type, event.limit, event.threshold) == ("quota.exceeded", "10", "10")

    def rule_problems(**changes: str) -> set[tuple[str, str]]:
        return {(p.code, p.path) for p in semantic_problems(msgspec.structs.replace(
            event, **changes))}

    assert rule_problems(threshold="9") == {("invalid-value", "/threshold")}
    assert rule_problems(type="quota.warning", threshold="10.5") == {
        ("out-of-range", "/threshold")}
    assert rule_problems(limit="-1", threshold="-1") == {("out-of-range", "/limit")}
    assert rule_problems(limit="10.0", threshold="10.0") == {
        ("not-canonical", "/limit"), ("not-canonical", "/threshold")}
    assert rule_problems(id="qev_" + "0" * 32) == {("inconsistent-id", "/id")}


# ------------------------------------------------------------------ invoice events (MS-DEV-009/010)

INV = ms_id("inv_", ["meterspec/invoice/v1", "acme", "prod", "customer:42",
                     "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"])
REV = ms_id("rev_", ["example revision 1"])
JANUARY = Window("2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z")


def invoice_args(**changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"invoice_id": INV, "revision": REV, "workspace_id": "acme",
                            "universe_id": "prod", "subject": "customer:42", "period": JANUARY,
                            "currency_code": "USD", "total": Amount("1234.5675", "1234.57")}
    return {**args, **changes}


@pytest.mark.parametrize(("build", "tag", "name"), [
    (invoice_generated, "meterspec/invoice-generated/v1", "invoice-generated/valid/usd.json"),
    (billing_period_closed, "meterspec/billing-period-closed/v1",
     "billing-period-closed/valid/usd.json")])
def test_invoice_events_byte_for_byte(build: Any, tag: str, name: str) -> None:
    """MS-DEV-009, MS-DEV-010: fields in order, the id over the tag and every field."""
    event = build(**invoice_args())
    expected_id = ms_id("dev_", [tag, "acme", "prod", "customer:42", INV, REV,
                                 "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "USD",
                                 "1234.5675", "1234.57"])
    type_name = tag.split("/")[1].replace("-", ".")
    assert encode(event).decode() == (
        '{"id":"' + expected_id + '","type":"' + type_name + '","workspaceID":"acme",'
        '"universeID":"prod","subject":"customer:42","invoiceID":"' + INV + '",'
        '"revision":"' + REV + '","period":{"start":"2024-01-01T00:00:00Z",'
        '"end":"2024-02-01T00:00:00Z"},"currency":"USD","total":{"precise":"1234.5675",'
        '"rounded":"1234.57"}}')
    assert json.loads((EXAMPLES / name).read_text()) == json.loads(encode(event))


@PROPERTIES
@given(invoice_fields())
def test_invoice_event_ids_recomputed_by_hand(fields: dict[str, Any]) -> None:
    """MS-DEV-003, MS-DEV-009, MS-DEV-010: the two types never share an id for one invoice."""
    period, total = fields["period"], fields["total"]
    tail = [fields["workspace_id"], fields["universe_id"], fields["subject"],
            fields["invoice_id"], fields["revision"], period.start, period.end,
            fields["currency_code"], total.precise, total.rounded]
    generated, closed = invoice_generated(**fields), billing_period_closed(**fields)
    assert generated.id == ms_id("dev_", ["meterspec/invoice-generated/v1", *tail])
    assert closed.id == ms_id("dev_", ["meterspec/billing-period-closed/v1", *tail])
    assert generated.id != closed.id


def test_a_new_revision_is_a_new_fact_about_the_same_invoice() -> None:
    """MS-DEV-009, MS-DEV-010: a second close of one invoice with another revision has another
    id and the same invoiceID, so a consumer can see the conflict (and keep the first)."""
    other = ms_id("rev_", ["example revision 2"])
    first = billing_period_closed(**invoice_args())
    second = billing_period_closed(**invoice_args(revision=other,
                                                  total=Amount("1240", "1240")))
    assert first.invoice_id == second.invoice_id and first.id != second.id
    assert invoice_generated(**invoice_args()) == invoice_generated(**invoice_args())


@pytest.mark.parametrize("build", [invoice_generated, billing_period_closed])
def test_invoice_event_inputs_are_checked_with_every_problem(build: Any) -> None:
    """MS-DEV-009, MS-DEV-010: paths into the event; every problem at once."""
    bad = invoice_args(invoice_id="INV-1", revision="rev_" + "G" * 32, subject="",
                       period=Window("2024-02-01T00:00:00+00:00", "2024-01-01T00:00:00Z"),
                       currency_code="XTS", total=Amount("1.50", "1.505"))
    assert problems_of(lambda: build(**bad)) == {
        ("invalid-value", "/invoiceID"), ("invalid-value", "/revision"),
        ("empty-string", "/subject"), ("not-canonical", "/period/start"),
        ("invalid-window", "/period"), ("unknown-currency", "/currency"),
        ("not-canonical", "/total/precise")}
    # The rounded total has no digit below the currency's minor unit (JPY: none).
    assert problems_of(lambda: build(**invoice_args(currency_code="JPY",
                                                     total=Amount("2.5", "2.5")))) == {
        ("inconsistent-amount", "/total/rounded")}
    assert problems_of(lambda: build(**invoice_args(period=Window(
        "2024-02-30T00:00:00Z", "2024-03-01T00:00:00Z")))) == {
        ("invalid-timestamp", "/period/start")}


def test_invoice_event_schemas_take_total_as_the_invoice_states_it() -> None:
    """MS-DEV-009: the total and currency have the invoice schema's shape (if the invoice's
    total changes shape, these event types need a new version, MS-DEV-004)."""
    invoice = _documents()["invoice.schema.json"]["properties"]
    for name in ("domain-event-invoice-generated.schema.json",
                 "domain-event-billing-period-closed.schema.json"):
        mine = _documents()[name]["properties"]
        assert mine["total"]["$ref"] == invoice["total"]["$ref"]
        assert mine["currency"]["$ref"] == invoice["currency"]["$ref"]
        assert mine["period"]["$ref"] == "common.schema.json#/$defs/window"


# ------------------------------------------------------------------ versions and unknown types


def test_version_is_carried_by_the_type_name() -> None:
    """MS-DEV-004: version 1 names are bare; no name ends in .v<digits>; the tag names the
    version, so a v2 of the same content would never share the v1 id."""
    assert all(not re.search(r"\.v[0-9]+$", name) for name in EVENT_TYPES)
    assert all(t.version == 1 for t in EVENT_TYPES.values())
    event = usage_recorded(record())
    v1 = ms_id("dev_", ["meterspec/usage-recorded/v1", "acme-prod", "production",
                        "customer:cust_123", "rec_b60c13d8d866b67532dc8a8c4530bed3",
                        "evt_abc123", "2024-01-15T10:30:00Z", "145", "milliseconds", "2",
                        "endpoint", "/api/users", "region", "us-east"])
    v2 = ms_id("dev_", ["meterspec/usage-recorded/v2", *[
        "acme-prod", "production", "customer:cust_123", "rec_b60c13d8d866b67532dc8a8c4530bed3",
        "evt_abc123", "2024-01-15T10:30:00Z", "145", "milliseconds", "2", "endpoint",
        "/api/users", "region", "us-east"]])
    assert event.id == v1 != v2


@pytest.mark.parametrize(("document", "expected"), [
    ({"type": "usage.recorded.v2"}, {("unknown-event-type", "/type")}),
    ({"type": "usage.deleted"}, {("unknown-event-type", "/type")}),
    ({"type": "Usage.Recorded"}, {("unknown-event-type", "/type")}),
    ({"type": 1}, {("wrong-type", "/type")}),
    ({"id": "dev_1"}, {("missing-field", "/type")}),
    (["usage.recorded"], {("wrong-type", "")}),
])
def test_unknown_types_and_versions_are_never_read_as_known_ones(
        document: Any, expected: set[tuple[str, str]]) -> None:
    """MS-DEV-005: a v2 (or any unknown type) with v1's fields is not decoded as v1."""
    seed = json.loads((EXAMPLES / "usage-recorded/valid/seed-readme.json").read_text())
    body = {**seed, **document} if isinstance(document, dict) else document
    if isinstance(body, dict) and "type" not in document:
        del body["type"]
    assert problems_of(lambda: decode_domain_event(json.dumps(body))) == expected
    with pytest.raises(MeterspecError) as caught:
        decode_domain_event(b"{")
    assert caught.value.code == "invalid-json"


def test_an_unknown_type_does_not_stop_the_others() -> None:
    """MS-DEV-005 with MS-ERR-005: a stream with an unknown type set aside, the rest read."""
    known = [encode(usage_recorded(record(id=f"rec_{i}"))) for i in range(3)]
    unknown = json.dumps({**json.loads(known[0]), "type": "usage.recorded.v9"}).encode()
    read, aside = [], []
    for line in [known[0], unknown, known[1], known[2]]:
        try:
            read.append(decode_domain_event(line))
        except MeterspecError as error:
            aside.append((line, error.code))
    assert [encode(e) for e in read] == known
    assert aside == [(unknown, "unknown-event-type")]


# ------------------------------------------------------------------ validation (MS-DEV-011)


def test_validation_reports_values_beside_schema_problems() -> None:
    """MS-DEV-011, MS-ERR-002: a Feb 30 and a bad currency beside an unknown field."""
    doc = json.loads(encode(billing_period_closed(**invoice_args())))
    doc |= {"currency": "ZZZ", "period": {"start": "2024-02-30T00:00:00Z",
                                          "end": "2024-03-01T00:00:00Z"}, "sentAt": "now"}
    got = problems_of(lambda: decode("billing-period-closed", json.dumps(doc),
                                     BillingPeriodClosed, fast=False))
    assert got == {("unknown-field", "/sentAt"), ("invalid-timestamp", "/period/start"),
                   ("unknown-currency", "/currency")}


@pytest.mark.parametrize(("change", "expected"), [
    ({"recordedAt": "2024-01-15T10:30:00.000Z"}, {("not-canonical", "/recordedAt")}),
    ({"measurement": {"quantity": "1.45e2", "unit": "milliseconds"}},
     {("not-canonical", "/measurement/quantity")}),
    ({"dimensions": {"region": "us-east", "endpoint": "/api/users"}},
     {("not-canonical", "/dimensions")}),
    ({"subject": "customer:cust_124"}, {("inconsistent-id", "/id")}),
    ({"recordID": ""}, {("empty-string", "/recordID")}),
])
def test_a_valid_usage_event_is_what_its_content_builds(
        change: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    """MS-DEV-002, MS-DEV-003, MS-DEV-011: canonical values, the content's id."""
    doc = {**json.loads((EXAMPLES / "usage-recorded/valid/seed-readme.json").read_text()),
           **change}
    assert problems_of(lambda: decode("usage-recorded", json.dumps(doc), UsageRecorded,
                                      fast=False)) == expected


def test_every_kind_decodes_only_its_own_type() -> None:
    closed = json.loads(encode(billing_period_closed(**invoice_args())))
    assert problems_of(lambda: decode("invoice-generated", json.dumps(closed),
                                      InvoiceGenerated, fast=False)) == {
        ("invalid-value", "/type")}


# ------------------------------------------------------------------ example documents


@pytest.mark.parametrize("key", example_cases(KINDS, "valid"))
def test_valid_domain_event_examples(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    """MS-DEV-011: every valid example passes the schema, round-trips and `meterspec
    validate`; its id is the digest of its content, recomputed here."""
    check_valid_example(key, KINDS, capsys)
    doc = json.loads((EXAMPLES / key).read_text())
    if doc["type"] == "usage.recorded":
        fields = ["meterspec/usage-recorded/v1", doc["workspaceID"], doc["universeID"],
                  doc["subject"], doc["recordID"], doc["sourceEventID"], doc["recordedAt"],
                  doc["measurement"]["quantity"], doc["measurement"]["unit"],
                  str(len(doc["dimensions"]))]
        for key_, value in sorted(doc["dimensions"].items()):
            fields += [key_, value]
        assert doc["id"] == ms_id("dev_", fields)
    elif doc["type"].startswith("quota."):
        assert doc["id"] == ms_id("qev_", [
            "meterspec/quota-event/v1", doc["type"], doc["workspaceID"], doc["universeID"],
            doc["subject"], doc["unit"], doc["period"]["start"], doc["period"]["end"],
            doc["limit"], doc["threshold"]])
    else:
        assert doc["id"] == ms_id("dev_", [
            f"meterspec/{doc['type'].replace('.', '-')}/v1", doc["workspaceID"],
            doc["universeID"], doc["subject"], doc["invoiceID"], doc["revision"],
            doc["period"]["start"], doc["period"]["end"], doc["currency"],
            doc["total"]["precise"], doc["total"]["rounded"]])


@pytest.mark.parametrize("key", example_cases(KINDS, "invalid"))
def test_invalid_domain_event_examples(key: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """MS-DEV-011: exactly the hand-written (code, path) pairs, by the library and the CLI."""
    check_invalid_example(key, KINDS, tmp_path, capsys)


def test_quota_event_examples_are_the_decision_examples_events() -> None:
    """MS-DEV-008: the valid quota-event examples are events of the quota-decision examples."""
    decided = [e for name in ("warning-crossed", "limit-reached-in-grace") for e in json.loads(
        (EXAMPLES / f"quota-decision/valid/{name}.json").read_text())["events"]]
    examples = [json.loads((EXAMPLES / f"quota-event/valid/{n}.json").read_text())
                for n in ("warning", "exceeded")]
    assert examples == decided


def test_codes_are_in_the_errors_table() -> None:
    table = (ROOT / "specs" / "errors.md").read_text()
    for code in ("unknown-event-type", "inconsistent-id"):
        assert f"| `{code}` |" in table
