"""schemas/, the msgspec Structs and the example documents in schemas/examples/ agree.

The schemas are the source of truth for the wire (MS-EVT-001, MS-MET-001, MS-AGG-001,
MS-AGG-002, MS-ERR-001). Every example under schemas/examples/<kind>/valid must pass the schema,
decode into its Struct and re-encode to the same JSON value; every one under .../invalid must be
rejected by a plain JSON Schema validator (unless schemas/examples/beyond-schema.json says the
problem is one a schema cannot state) and by `meterspec validate`, which must report exactly the
(code, path) pairs written by hand in schemas/examples/expected-errors.json, every one of them
(MS-ERR-002). The JSON Schema side here is built from the files alone, not from meterspec.schema.
"""

from __future__ import annotations

import hashlib
import json
import re
import types
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import jsonschema
import msgspec
import pytest
import referencing
from conftest import identifiers, short_text, timestamps
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_domain_events import INSTANCES as DOMAIN_EVENT_INSTANCES
from test_ingestion import ingestion_states
from test_invoices import (
    adjustment_documents,
    invoice_documents,
    projection_documents,
    scenarios,
)
from test_pricing import plans, rated_charges
from test_quota_reservations import quota_states
from test_quotas import quota_checks, quota_decisions, quota_policies
from test_ratelimit import rate_policies, rate_states

from meterspec import cli
from meterspec.codec import STRUCTS, decode, encode
from meterspec.contracts import (
    AggregationRequest,
    EventPayload,
    Filter,
    Measurement,
    MeasurementSpec,
    MeteringConfig,
    MeterReading,
    MeterRecord,
    ReadingMeasurement,
    Tumbling,
    Window,
)
from meterspec.errors import MeterspecError, Problem
from meterspec.metering import meter
from meterspec.schema import schema_problems
from meterspec.timestamps import parse_timestamp

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
KINDS = ("event", "config", "record", "reading", "request", "problem", "plan", "rated-charge",
         "ingestion-state", "quota-policy", "quota-check", "quota-decision", "rate-limit-policy",
         "rate-limit-state", "invoice-request", "invoice", "adjustment", "projection",
         "usage-recorded", "quota-event", "invoice-generated", "billing-period-closed",
         "quota-state")
# Outputs no Struct decodes (specs/exports.md): held to their schemas alone, by
# python-jsonschema here and by meterspec.schema, which must report the expected problems.
SCHEMA_ONLY_KINDS = ("stripe-request", "ledger-row")
SCHEMA_FILES = {
    "event": "event-payload.schema.json",
    "config": "metering-config.schema.json",
    "record": "meter-record.schema.json",
    "reading": "meter-reading.schema.json",
    "request": "aggregation-request.schema.json",
    "problem": "problem.schema.json",
    "plan": "plan.schema.json",
    "rated-charge": "rated-charge.schema.json",
    "ingestion-state": "ingestion-state.schema.json",
    "quota-policy": "quota-policy.schema.json",
    "quota-check": "quota-check.schema.json",
    "quota-decision": "quota-decision.schema.json",
    "rate-limit-policy": "rate-limit-policy.schema.json",
    "rate-limit-state": "rate-limit-state.schema.json",
    "invoice-request": "invoice-request.schema.json",
    "invoice": "invoice.schema.json",
    "usage-recorded": "domain-event-usage-recorded.schema.json",
    "quota-event": "domain-event-quota.schema.json",
    "invoice-generated": "domain-event-invoice-generated.schema.json",
    "billing-period-closed": "domain-event-billing-period-closed.schema.json",
    "adjustment": "adjustment.schema.json",
    "projection": "projection.schema.json",
    "quota-state": "quota-state.schema.json",
    "stripe-request": "stripe-request.schema.json",
    "ledger-row": "ledger-row.schema.json",
}
# specs/errors.md, "Codes": the closed list, read from its table.
CODES = set(re.findall(r"^\| `([a-z-]+)` \|", (ROOT / "specs" / "errors.md").read_text(),
                       re.MULTILINE))
POINTER = re.compile(r"^(/([^~/]|~[01])*)*$")

_TYPE_CODE = ("specs/errors.md defines wrong-type as 'a value of the wrong JSON type (e.g. a "
              "quantity as a JSON number)'")
KNOWN_BUGS: dict[str, str] = {}


# ------------------------------------------------------------------ schemas, built from files

def _schema_documents() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        out[path.name] = json.loads(path.read_text())
    return out


@cache
def _registry() -> referencing.Registry[Any]:
    return referencing.Registry().with_resources(
        (doc["$id"], referencing.Resource.from_contents(doc))
        for doc in _schema_documents().values())


@cache
def _validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = _schema_documents()[SCHEMA_FILES[kind]]
    return jsonschema.Draft202012Validator(schema, registry=_registry())


# ------------------------------------------------------------------ example files

def _examples(verdict: str, kinds: tuple[str, ...] = KINDS) -> list[str]:
    return sorted(str(p.relative_to(EXAMPLES)) for kind in kinds
                  for p in (EXAMPLES / kind / verdict).glob("*.json"))


def _expected() -> dict[str, list[dict[str, str]]]:
    loaded: dict[str, list[dict[str, str]]] = json.loads(
        (EXAMPLES / "expected-errors.json").read_text())
    return loaded


def _beyond_schema() -> dict[str, str]:
    loaded: dict[str, str] = json.loads((EXAMPLES / "beyond-schema.json").read_text())
    return loaded


def _params(keys: Iterable[str]) -> list[Any]:
    return [pytest.param(key, id=key, marks=[pytest.mark.xfail(strict=True,
                                                               reason=KNOWN_BUGS[key])]
                         if key in KNOWN_BUGS else []) for key in keys]


VALID = _examples("valid")
INVALID = _examples("invalid")
SCHEMA_ONLY_VALID = _examples("valid", SCHEMA_ONLY_KINDS)
SCHEMA_ONLY_INVALID = _examples("invalid", SCHEMA_ONLY_KINDS)


def _ms_id(prefix: str, fields: list[str]) -> str:
    """MS-ID-001, written here independently of meterspec.ids."""
    data = b"".join(str(len(f.encode())).encode() + b":" + f.encode() for f in fields)
    return prefix + hashlib.sha256(data).hexdigest()[:32]


# ------------------------------------------------------------------ (a) schema files

@pytest.mark.parametrize("name", sorted(_schema_documents()))
def test_schema_file_is_a_2020_12_schema_with_an_id(name: str) -> None:
    schema = _schema_documents()[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://meterspec.dev/schemas/v1/{name}"


def test_every_kind_has_a_schema_file_and_every_ref_resolves() -> None:
    names = set(_schema_documents())
    assert set(SCHEMA_FILES.values()) | {"common.schema.json"} == names

    def refs(node: object) -> Iterable[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for item in node:
                yield from refs(item)

    for doc in _schema_documents().values():
        resolver = _registry().resolver(base_uri=doc["$id"])
        for ref in refs(doc):
            assert resolver.lookup(ref).contents is not None, (doc["$id"], ref)


# ------------------------------------------------------------------ the example set itself

def test_examples_cover_every_kind_and_expected_errors_cover_every_invalid_example() -> None:
    for kind in KINDS + SCHEMA_ONLY_KINDS:
        assert any(k.startswith(f"{kind}/") for k in VALID + SCHEMA_ONLY_VALID), kind
        assert any(k.startswith(f"{kind}/") for k in INVALID + SCHEMA_ONLY_INVALID), kind
    expected = _expected()
    assert set(expected) == set(INVALID + SCHEMA_ONLY_INVALID)
    assert set(_beyond_schema()) <= set(INVALID)
    assert set(KNOWN_BUGS) <= set(INVALID)
    for key, errors in expected.items():
        assert errors, key
        pairs = [(e["code"], e["path"]) for e in errors]
        assert len(pairs) == len(set(pairs)), key
        for error in errors:
            assert set(error) == {"code", "path"}, key
            assert error["code"] in CODES, key
            assert POINTER.fullmatch(error["path"]), key


# ------------------------------------------------------------------ (b) valid examples

def _without_explicit_defaults(kind: str, doc: Any) -> Any:
    """Structs omit some fields equal to their default on output (omit_defaults): an explicit
    `"properties": {}` (MS-EVT-001: absent means empty) or `"timeZone": "UTC"` (MS-WIN-003
    default) may come back absent. Equal JSON values are compared without them."""
    if kind == "request" and isinstance(doc.get("tumbling"), dict):
        tumbling = {k: v for k, v in doc["tumbling"].items()
                    if (k, v) != ("timeZone", "UTC")}
        return {**doc, "tumbling": tumbling}
    if kind == "event" and doc.get("properties") == {}:
        return {k: v for k, v in doc.items() if k != "properties"}
    return doc


@pytest.mark.parametrize("key", _params(VALID))
def test_valid_example_passes_schema_and_round_trips_through_its_struct(key: str) -> None:
    kind = key.split("/")[0]
    data = (EXAMPLES / key).read_bytes()
    document = json.loads(data)
    assert list(_validator(kind).iter_errors(document)) == []
    value = decode(kind, data, STRUCTS[kind], fast=False)
    assert type(value) is STRUCTS[kind]
    encoded = encode(value)
    assert (_without_explicit_defaults(kind, json.loads(encoded))
            == _without_explicit_defaults(kind, document))
    assert encode(decode(kind, encoded, STRUCTS[kind], fast=False)) == encoded


@pytest.mark.parametrize("key", _params(VALID))
def test_valid_example_passes_meterspec_validate(key: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    kind = key.split("/")[0]
    assert cli.main(["validate", kind, str(EXAMPLES / key)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "meterspec validate: 1 valid documents, 0 rejected\n"


def test_equal_structs_encode_to_identical_bytes() -> None:
    built = Tumbling(size="day", start="2024-01-15T00:00:00Z", end="2024-01-17T00:00:00Z",
                     time_zone="UTC")
    data = (EXAMPLES / "request/valid/api-calls-day-utc.json").read_bytes()
    decoded = decode("request", data, AggregationRequest, fast=False).tumbling
    assert decoded == built
    assert encode(decoded) == encode(built)


# ------------------------------------------------------------------ (c) invalid examples

@pytest.mark.parametrize("key", INVALID + SCHEMA_ONLY_INVALID)
def test_invalid_example_verdict_of_a_plain_json_schema_validator(key: str) -> None:
    """Rejected by the schema alone, except the documented few whose problem (a calendar date,
    digit bounds, window order, zone names, ...) no JSON Schema states."""
    kind = key.split("/")[0]
    errors = list(_validator(kind).iter_errors(json.loads((EXAMPLES / key).read_bytes())))
    if key in _beyond_schema():
        assert errors == [], "the schema now catches this: drop it from beyond-schema.json"
    else:
        assert errors, "a JSON Schema validator accepts this invalid example"


def _reported(kind: str, path: Path, report: Path) -> list[dict[str, Any]]:
    status = cli.main(["validate", kind, str(path), "--errors", str(report)])
    assert status == 1
    lines = report.read_bytes().splitlines()
    problems = [json.loads(line) for line in lines]
    for problem in problems:
        assert list(_validator("problem").iter_errors(problem)) == [], problem
    return problems


@pytest.mark.parametrize("key", _params(INVALID))
def test_invalid_example_reports_exactly_the_expected_problems(
        key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Codes and paths of schema failures (MS-ERR-006). The examples exercise the quantity and
    timestamp grammars and bounds (MS-QTY-001, MS-QTY-002, MS-TIME-001), event identity
    (MS-EVT-002), measurements and filters (MS-MET-002, MS-MET-004), windows (MS-WIN-001: order;
    MS-WIN-002: windows xor tumbling, no duplicates; MS-WIN-003: alignment and zones;
    MS-WIN-004: bound) and request fields (MS-AGG-002, scale MS-AGG-015, dimension
    MS-AGG-016)."""
    kind = key.split("/")[0]
    problems = _reported(kind, EXAMPLES / key, tmp_path / "errors.ndjson")
    assert capsys.readouterr().err == "meterspec validate: 0 valid documents, 1 rejected\n"
    got = [(p["code"], p["path"]) for p in problems]
    assert len(got) == len(set(got)), "a problem reported twice"
    assert set(got) == {(e["code"], e["path"]) for e in _expected()[key]}
    # A single document has no line; an event with a usable id names it (MS-ERR-001).
    document = json.loads((EXAMPLES / key).read_bytes())
    event_id = document.get("id") if kind == "event" and isinstance(document, dict) else None
    for problem in problems:
        assert "line" not in problem
        if isinstance(event_id, str) and event_id:
            assert problem["eventID"] == event_id
        else:
            assert "eventID" not in problem


@pytest.mark.parametrize("key", SCHEMA_ONLY_VALID)
def test_schema_only_valid_example_passes_both_validators(key: str) -> None:
    document = json.loads((EXAMPLES / key).read_bytes())
    assert list(_validator(key.split("/")[0]).iter_errors(document)) == []
    assert schema_problems(key.split("/")[0], document) == []


@pytest.mark.parametrize("key", SCHEMA_ONLY_INVALID)
def test_schema_only_invalid_example_reports_exactly_the_expected_problems(key: str) -> None:
    """meterspec.schema's codes and paths (MS-ERR-006) for a document with no Struct."""
    problems = schema_problems(key.split("/")[0], json.loads((EXAMPLES / key).read_bytes()))
    got = [(p.code, p.path) for p in problems]
    assert len(got) == len(set(got)), "a problem reported twice"
    assert set(got) == {(e["code"], e["path"]) for e in _expected()[key]}


def test_empty_event_identity_cites_ms_evt_002(tmp_path: Path) -> None:
    problems = _reported("event", EXAMPLES / "event/invalid/empty-identity-fields.json",
                         tmp_path / "errors.ndjson")
    assert {p["requirement"] for p in problems} == {"MS-EVT-002"}


@pytest.mark.parametrize("key", INVALID)
def test_invalid_example_raises_from_the_python_decoder(key: str) -> None:
    """The library path (codec.decode plus the checks the Meter/Aggregator constructors and the
    record parser make) rejects the document too, never returning a value for it."""
    kind = key.split("/")[0]
    data = (EXAMPLES / key).read_bytes()
    with pytest.raises(MeterspecError) as caught:
        value = decode(kind, data, STRUCTS[kind], fast=False)
        cli._check_semantics(kind, value)
    assert all(p.code in CODES for p in caught.value.problems)


# ------------------------------------------------------------------ seed README, adjusted

def test_seed_readme_flow_produces_the_example_record_byte_for_byte() -> None:
    """The seed's quick example: its event and config give exactly its record, once the record
    carries what this spec adds (workspaceID, universeID, sourceEventID, a real id)."""
    event = decode("event", (EXAMPLES / "event/valid/seed-readme.json").read_bytes(),
                   EventPayload, fast=False)
    config = decode("config", (EXAMPLES / "config/valid/seed-readme.json").read_bytes(),
                    MeteringConfig, fast=False)
    expected = json.loads((EXAMPLES / "record/valid/seed-readme.json").read_bytes())
    assert expected["id"] == _ms_id("rec_", [
        "meterspec/record/v1", "acme-prod", "production", "evt_abc123", "milliseconds",
        "property:response_time_ms"])
    [record] = meter(event, config)
    assert encode(record) == json.dumps(expected, separators=(",", ":")).encode()


def test_seed_readme_reading_id_is_the_ms_id_003_digest() -> None:
    reading = json.loads((EXAMPLES / "reading/valid/seed-readme.json").read_bytes())
    assert reading["id"] == _ms_id("rdg_", [
        "meterspec/reading/v1", "acme-prod", "production", "customer:cust_123", "milliseconds",
        "sum", "", "2024-01-15T00:00:00Z", "2024-01-16T00:00:00Z", "0"])


# ------------------------------------------------------------------ schema vs Struct disagreements

@pytest.mark.parametrize(("kind", "key", "field", "value"), [
    ("request", "request/valid/time-weighted-avg-scale-20.json", "scale", 2.0),
    ("reading", "reading/valid/seed-readme.json", "recordCount", 100.0),
    ("problem", "problem/valid/event-line.json", "line", 3.0),
])
def test_schema_and_decoder_agree_on_integral_floats(kind: str, key: str, field: str,
                                                     value: float) -> None:
    document = {**json.loads((EXAMPLES / key).read_bytes()), field: value}
    schema_accepts = _validator(kind).is_valid(document)
    try:
        decode(kind, json.dumps(document), STRUCTS[kind], fast=False)
        decoder_accepts = True
    except MeterspecError:
        decoder_accepts = False
    assert schema_accepts == decoder_accepts


# ------------------------------------------------------------------ (e) Struct fields vs schema

_Resolver = Any  # referencing.Resolver, which referencing exports only from a private module


def _resolve(schema: Any, resolver: _Resolver) -> tuple[Any, _Resolver]:
    while isinstance(schema, dict) and "$ref" in schema:
        resolved = resolver.lookup(schema["$ref"])
        schema, resolver = resolved.contents, resolved.resolver
    return schema, resolver


def _object_shape(schema: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Properties and required names of an object schema; for a oneOf of object shapes (the
    filter) the union of properties and the names every branch requires."""
    if "properties" in schema:
        return schema["properties"], set(schema.get("required", []))
    branches = schema["oneOf"]
    properties: dict[str, Any] = {}
    for branch in branches:
        properties.update(branch["properties"])
    required = set.intersection(*(set(b.get("required", [])) for b in branches))
    return properties, required


def _walk(struct: type[Any], schema: Any, resolver: _Resolver,
          seen: set[type[Any]], where: str) -> int:
    schema, resolver = _resolve(schema, resolver)
    if struct in seen:
        return 0
    seen.add(struct)
    properties, required = _object_shape(schema)
    fields = msgspec.structs.fields(struct)
    names = {f.encode_name for f in fields}
    assert names == set(properties), (where, names ^ set(properties))
    assert {f.encode_name for f in fields if f.required} == required, where
    assert schema.get("additionalProperties") is False or "oneOf" in schema, where
    checked = len(fields)
    for field in fields:
        checked += _walk_type(field.type, properties[field.encode_name], resolver, seen,
                              f"{where}/{field.encode_name}")
    return checked


def _walk_type(tp: Any, schema: Any, resolver: _Resolver,
               seen: set[type[Any]], where: str) -> int:
    schema, resolver = _resolve(schema, resolver)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return sum(_walk_type(a, schema, resolver, seen, where)
                   for a in get_args(tp) if a is not type(None))
    if origin is list:
        return _walk_type(get_args(tp)[0], schema["items"], resolver, seen, where + "/items")
    if origin is dict:
        return _walk_type(get_args(tp)[1], schema["additionalProperties"], resolver, seen,
                          where + "/*")
    if origin is Literal:
        assert set(get_args(tp)) == set(schema["enum"]), where
        return 1
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _walk(tp, schema, resolver, seen, where)
    return 0


@pytest.mark.parametrize("kind", KINDS)
def test_struct_fields_and_schema_properties_agree(kind: str) -> None:
    """Every Struct field's wire name is a schema property and every property a field, with the
    same required-ness, all the way down (Filter, MeasurementSpec, Tumbling, Window, ...);
    Literal fields list exactly the schema's enum."""
    schema = _schema_documents()[SCHEMA_FILES[kind]]
    resolver = _registry().resolver(base_uri=schema["$id"])
    assert _walk(STRUCTS[kind], schema, resolver, set(), kind) > 0


def test_the_walk_covers_the_nested_structs() -> None:
    seen: set[type[Any]] = set()
    for kind in KINDS:
        schema = _schema_documents()[SCHEMA_FILES[kind]]
        _walk(STRUCTS[kind], schema, _registry().resolver(base_uri=schema["$id"]), seen, kind)
    assert {Filter, MeasurementSpec, Measurement, ReadingMeasurement, Window, Tumbling} <= seen


# ------------------------------------------------------------------ (d) hypothesis

# MS-QTY-001 grammar, sized so every value also meets the MS-QTY-002 bounds.
quantities = st.from_regex(r"-?[0-9]{1,10}(\.[0-9]{1,10})?([eE][+-]?[0-9])?", fullmatch=True)
canonical_quantities = st.from_regex(r"-?(0|[1-9][0-9]{0,15})(\.[0-9]{0,8}[1-9])?",
                                     fullmatch=True).filter(lambda q: q != "-0")


_leaf_filters = st.one_of(
    st.builds(lambda p, v: Filter(property=p, equals=v), short_text, short_text),
    st.builds(lambda p, v: Filter(property=p, in_=v), short_text,
              st.lists(short_text, min_size=1, max_size=3)),
    st.builds(lambda p, v: Filter(property=p, not_in=v), short_text,
              st.lists(short_text, min_size=1, max_size=3)),
    st.builds(lambda p, v: Filter(property=p, exists=v), short_text, st.booleans()),
)
filters = st.recursive(_leaf_filters, lambda inner: st.one_of(
    st.builds(lambda c: Filter(all_of=c), st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda c: Filter(any_of=c), st.lists(inner, min_size=1, max_size=3))),
    max_leaves=6)


@st.composite
def measurement_specs(draw: st.DrawFn) -> MeasurementSpec:
    constant = draw(st.booleans())
    return MeasurementSpec(
        unit=draw(identifiers),
        source_property=None if constant else draw(identifiers),
        quantity=draw(quantities) if constant else None,
        event_types=draw(st.none() | st.lists(identifiers, min_size=1, max_size=3, unique=True)),
        filter=draw(st.none() | filters),
    )


configs = st.builds(
    MeteringConfig,
    # Distinct units, so no two measurements repeat a (unit, source) pair (MS-MET-002).
    measurements=st.lists(measurement_specs(), min_size=1, max_size=3, unique_by=lambda m: m.unit),
    dimensions=st.none() | st.lists(identifiers, max_size=3, unique=True))

events = st.builds(
    EventPayload, id=identifiers, workspace_id=identifiers, universe_id=identifiers,
    type=identifiers, subject=identifiers, time=timestamps(),
    properties=st.dictionaries(short_text, short_text, max_size=4))

records = st.builds(
    MeterRecord, id=identifiers, workspace_id=identifiers, universe_id=identifiers,
    subject=identifiers, recorded_at=timestamps(),
    measurement=st.builds(Measurement, quantity=quantities, unit=identifiers),
    dimensions=st.dictionaries(short_text, short_text, max_size=4),
    source_event_id=identifiers, metered_at=st.just(msgspec.UNSET) | timestamps())

windows = st.builds(Window, start=timestamps(), end=timestamps())
AGGREGATIONS = ["sum", "count", "min", "max", "latest", "time-weighted-avg", "unique-count"]


@st.composite
def explicit_windows(draw: st.DrawFn) -> list[Window]:
    """Windows with start before end (MS-WIN-001), none listed twice (MS-WIN-002)."""
    spans: dict[tuple[int, int], Window] = {}
    for _ in range(draw(st.integers(1, 3))):
        first, second = draw(timestamps()), draw(timestamps())
        a, b = parse_timestamp(first), parse_timestamp(second)
        if a != b:
            spans[(min(a, b), max(a, b))] = Window(*((first, second) if a < b
                                                     else (second, first)))
    assume(spans)
    return list(spans.values())


@st.composite
def tumbling_ranges(draw: st.DrawFn) -> Tumbling:
    """Aligned UTC ranges (MS-WIN-003): whole minutes, hours, days or months."""
    size = draw(st.sampled_from(["minute", "hour", "day", "month"]))
    day = draw(st.dates(min_value=date(1, 1, 1), max_value=date(9998, 1, 1)))
    count = draw(st.integers(1, 40))
    start = datetime(day.year, day.month, 1 if size == "month" else day.day)
    if size == "month":
        months = start.month - 1 + count
        end = start.replace(year=start.year + months // 12, month=months % 12 + 1)
    else:
        end = start + timedelta(**{f"{size}s": count})
    return Tumbling(size=size, start=start.isoformat() + "Z",  # type: ignore[arg-type]
                    end=end.isoformat() + "Z", time_zone="UTC")


@st.composite
def requests(draw: st.DrawFn) -> AggregationRequest:
    aggregation = draw(st.sampled_from(AGGREGATIONS))
    tumbling = None
    window_list = None
    if draw(st.booleans()):
        window_list = draw(explicit_windows())
    else:
        tumbling = draw(tumbling_ranges())
    return AggregationRequest(
        aggregation=aggregation,  # type: ignore[arg-type]
        dimension=draw(identifiers) if aggregation == "unique-count" else None,
        scale=draw(st.none() | st.integers(0, 20))
        if aggregation == "time-weighted-avg" else None,
        windows=window_list, tumbling=tumbling,
        group_by=draw(st.none() | st.lists(identifiers, max_size=3, unique=True)))


readings = st.builds(
    MeterReading, id=identifiers, workspace_id=identifiers, universe_id=identifiers,
    subject=identifiers,
    measurement=st.builds(ReadingMeasurement, quantity=st.none() | canonical_quantities,
                          unit=identifiers),
    aggregation=st.sampled_from(AGGREGATIONS), window=windows,
    record_count=st.integers(0, 2**40),
    group=st.none() | st.dictionaries(short_text, st.none() | short_text, max_size=3))


def _pointer(tokens: list[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


problems = st.builds(
    Problem,
    code=st.from_regex(r"[a-z]{1,8}(-[a-z]{1,8}){0,3}", fullmatch=True),
    path=st.builds(_pointer, st.lists(short_text, max_size=3)),
    message=st.text(max_size=20),
    requirement=st.from_regex(r"MS-[A-Z]{1,5}-[0-9]{3}", fullmatch=True),
    event_id=st.none() | st.text(max_size=8),
    line=st.none() | st.integers(1, 2**40))

INSTANCES: dict[str, st.SearchStrategy[Any]] = {
    "event": events, "config": configs, "record": records, "reading": readings,
    "request": requests(), "problem": problems, "plan": plans(), "rated-charge": rated_charges(),
    "ingestion-state": ingestion_states, "quota-policy": quota_policies(),
    "quota-check": quota_checks(), "quota-decision": quota_decisions,
    "rate-limit-policy": rate_policies, "rate-limit-state": rate_states,
    "invoice-request": scenarios().map(lambda scenario: scenario[0]),
    "invoice": invoice_documents(), "adjustment": adjustment_documents(),
    "projection": projection_documents(), "quota-state": quota_states,
    **DOMAIN_EVENT_INSTANCES,
}
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("kind", KINDS)
def test_generated_structs_encode_to_schema_valid_json_and_decode_back(kind: str) -> None:
    @FAST
    @given(INSTANCES[kind])
    def check(value: Any) -> None:
        data = encode(value)
        document = json.loads(data)
        assert list(_validator(kind).iter_errors(document)) == []
        assert decode(kind, data, STRUCTS[kind], fast=False) == value

    check()


JSON_SAMPLES: list[Any] = [12, 1.5, True, "text", [], {}, [1], {"k": "v"}]


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}[type(value)]


def _mutate_drop(data: st.DataObject, kind: str, doc: dict[str, Any]) -> tuple[str, str]:
    name = data.draw(st.sampled_from(_schema_documents()[SCHEMA_FILES[kind]]["required"]))
    del doc[name]
    return "missing-field", _pointer([name])


def _mutate_add(data: st.DataObject, kind: str, doc: dict[str, Any]) -> tuple[str, str]:
    known = _schema_documents()[SCHEMA_FILES[kind]]["properties"]
    name = data.draw(st.text(max_size=10).filter(lambda n: n not in known))
    doc[name] = data.draw(st.sampled_from([None, *JSON_SAMPLES]))
    return "unknown-field", _pointer([name])


def _mutate_type(data: st.DataObject, kind: str, doc: dict[str, Any]) -> tuple[str, str]:
    name = data.draw(st.sampled_from(sorted(n for n, v in doc.items() if v is not None)))
    current = _json_type(doc[name])
    doc[name] = data.draw(st.sampled_from([v for v in JSON_SAMPLES if _json_type(v) != current]))
    return "", _pointer([name])


MUTATIONS: dict[str, Callable[[st.DataObject, str, dict[str, Any]], tuple[str, str]]] = {
    "drop-required": _mutate_drop, "add-unknown": _mutate_add, "wrong-type": _mutate_type,
}


def test_problem_struct_rejects_unknown_fields_like_its_schema() -> None:
    document = {**json.loads((EXAMPLES / "problem/valid/whole-document.json").read_bytes()),
                "severity": "error"}
    assert not _validator("problem").is_valid(document)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(json.dumps(document), type=Problem)


def _mutation_params() -> list[Any]:
    """Every kind and mutation; the Problem Struct's unknown fields are the test above."""
    return [pytest.param(kind, mutation, id=f"{kind}-{mutation}")
            for kind in KINDS for mutation in MUTATIONS
            if (kind, mutation) != ("problem", "add-unknown")]


@pytest.mark.parametrize(("kind", "mutation"), _mutation_params())
def test_schema_and_struct_decoder_both_reject_mutations(kind: str, mutation: str) -> None:
    """Drop a required field, add an unknown one, or give a field a value of another JSON type:
    the schema, the bare Struct decoder and meterspec's decoder all reject it, and the decoder
    names the field (MS-ERR-001)."""

    @FAST
    @given(st.data())
    def check(data: st.DataObject) -> None:
        document = json.loads(encode(data.draw(INSTANCES[kind])))
        code, path = MUTATIONS[mutation](data, kind, document)
        raw = json.dumps(document).encode()
        assert not _validator(kind).is_valid(document)
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(raw, type=STRUCTS[kind])
        with pytest.raises(MeterspecError) as caught:
            decode(kind, raw, STRUCTS[kind], fast=False)
        reported = {(p.code, p.path) for p in caught.value.problems}
        if code:
            assert (code, path) in reported
        else:
            assert path in {p for _, p in reported}

    check()
