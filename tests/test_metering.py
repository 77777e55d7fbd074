"""MS-EVT-002, MS-MET-001..008, MS-ID-002: which records an event yields under a config."""

from __future__ import annotations

import json

import msgspec
import pytest
from conftest import ms_id
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.codec import encode
from meterspec.contracts import EventPayload, Filter, MeasurementSpec, MeteringConfig
from meterspec.errors import MeterspecError
from meterspec.metering import Meter, meter


def event(properties: dict[str, str] | None = None, *, ident: str = "evt-1",
          workspace: str = "ws", universe: str = "prod", type_: str = "api.call",
          subject: str = "cust-1", time: str = "2024-01-15T10:30:00Z") -> EventPayload:
    return EventPayload(id=ident, workspace_id=workspace, universe_id=universe, type=type_,
                        subject=subject, time=time, properties=properties or {})


def config(*measurements: MeasurementSpec, dimensions: list[str] | None = None
           ) -> MeteringConfig:
    return MeteringConfig(list(measurements), dimensions)


def problems(error: pytest.ExceptionInfo[MeterspecError]) -> list[tuple[str, str]]:
    return [(p.code, p.path) for p in error.value.problems]


# --- filters (MS-MET-004/005) ----------------------------------------------------------------

def matches(flt: Filter, props: dict[str, str]) -> bool:
    return bool(meter(event(props), config(MeasurementSpec("calls", quantity="1", filter=flt))))


NFC, NFD = "\u00e9", "e\u0301"

FILTER_CASES: list[tuple[Filter, dict[str, str], bool]] = [
    (Filter(property="env", equals="prod"), {"env": "prod"}, True),
    (Filter(property="env", equals="prod"), {"env": "Prod"}, False),      # case-sensitive
    (Filter(property="env", equals="prod"), {"env": "prod "}, False),
    (Filter(property="env", equals="prod"), {"ENV": "prod"}, False),
    (Filter(property="env", equals="prod"), {}, False),                   # missing never equals
    (Filter(property="env", equals=""), {"env": ""}, True),
    (Filter(property="env", equals=""), {}, False),
    (Filter(property="name", equals=NFC), {"name": NFD}, False),          # no normalisation
    (Filter(property="name", equals=NFC), {"name": NFC}, True),
    (Filter(property="tier", in_=["a", "b"]), {"tier": "a"}, True),
    (Filter(property="tier", in_=["a", "b"]), {"tier": "b"}, True),
    (Filter(property="tier", in_=["a", "b"]), {"tier": "A"}, False),
    (Filter(property="tier", in_=["a", "b"]), {"tier": "c"}, False),
    (Filter(property="tier", in_=["a", "b"]), {}, False),                 # missing never in
    (Filter(property="tier", in_=[""]), {}, False),
    (Filter(property="tier", not_in=["a"]), {}, True),                    # missing always notIn
    (Filter(property="tier", not_in=["a"]), {"tier": "a"}, False),
    (Filter(property="tier", not_in=["a"]), {"tier": "A"}, True),
    (Filter(property="tier", not_in=["a"]), {"tier": "b"}, True),
    (Filter(property="tier", not_in=[""]), {"tier": ""}, False),
    (Filter(property="env", exists=True), {"env": ""}, True),
    (Filter(property="env", exists=True), {}, False),
    (Filter(property="env", exists=True), {"Env": "x"}, False),
    (Filter(property="env", exists=False), {}, True),
    (Filter(property="env", exists=False), {"env": "x"}, False),
    (Filter(all_of=[Filter(property="env", equals="prod"), Filter(property="region",
                                                                 exists=True)]),
     {"env": "prod", "region": "eu"}, True),
    (Filter(all_of=[Filter(property="env", equals="prod"), Filter(property="region",
                                                                 exists=True)]),
     {"env": "prod"}, False),
    (Filter(any_of=[Filter(property="env", equals="prod"), Filter(property="tier",
                                                                 in_=["gold"])]),
     {"tier": "gold"}, True),
    (Filter(any_of=[Filter(property="env", equals="prod"), Filter(property="tier",
                                                                 in_=["gold"])]),
     {"env": "prod"}, True),
    (Filter(any_of=[Filter(property="env", equals="prod"), Filter(property="tier",
                                                                 in_=["gold"])]),
     {}, False),
    (Filter(any_of=[Filter(property="a", equals="x"), Filter(property="b", not_in=["y"])]),
     {}, True),                                                           # via notIn
    (Filter(all_of=[Filter(any_of=[Filter(property="a", equals="1"),
                                   Filter(property="a", equals="2")]),
                    Filter(property="b", not_in=["x"])]), {"a": "2"}, True),
    (Filter(all_of=[Filter(any_of=[Filter(property="a", equals="1"),
                                   Filter(property="a", equals="2")]),
                    Filter(property="b", not_in=["x"])]), {"a": "2", "b": "x"}, False),
    (Filter(all_of=[Filter(any_of=[Filter(property="a", equals="1"),
                                   Filter(property="a", equals="2")]),
                    Filter(property="b", not_in=["x"])]), {"a": "3"}, False),
    (Filter(all_of=[Filter(all_of=[Filter(all_of=[Filter(property="a", exists=False)])])]),
     {}, True),
]


@pytest.mark.parametrize(("flt", "props", "expected"), FILTER_CASES)
def test_filter_semantics(flt: Filter, props: dict[str, str], expected: bool) -> None:
    """MS-MET-005: byte-exact comparisons; a missing property never matches equals/in,
    always matches notIn."""
    assert matches(flt, props) is expected


INVALID_FILTERS: list[tuple[Filter, str]] = [
    (Filter(), ""),
    (Filter(property="a"), ""),
    (Filter(equals="x"), ""),
    (Filter(in_=["x"]), ""),
    (Filter(exists=True), ""),
    (Filter(property="a", equals="x", in_=["x"]), ""),
    (Filter(property="a", exists=True, not_in=["x"]), ""),
    (Filter(property="a", all_of=[Filter(property="b", exists=True)]), ""),
    (Filter(all_of=[Filter(property="b", exists=True)],
            any_of=[Filter(property="b", exists=True)]), ""),
    (Filter(all_of=[Filter(property="a", equals="x"), Filter()]), "/allOf/1"),
    (Filter(any_of=[Filter(property="a", equals="x"),
                    Filter(all_of=[Filter(equals="x")])]), "/anyOf/1/allOf/0"),
]


@pytest.mark.parametrize(("flt", "suffix"), INVALID_FILTERS)
def test_invalid_filter_shapes(flt: Filter, suffix: str) -> None:
    good = MeasurementSpec("calls", quantity="1")
    with pytest.raises(MeterspecError) as info:
        Meter(config(good, MeasurementSpec("bytes", source_property="bytes", filter=flt)))
    assert problems(info) == [("invalid-filter", "/measurements/1/filter" + suffix)]
    assert info.value.requirement == "MS-MET-004"


def test_invalid_filters_in_every_measurement_are_reported() -> None:
    with pytest.raises(MeterspecError) as info:
        Meter(config(MeasurementSpec("a", quantity="1", filter=Filter()),
                     MeasurementSpec("b", quantity="1", filter=Filter(property="x"))))
    assert problems(info) == [("invalid-filter", "/measurements/0/filter"),
                              ("invalid-filter", "/measurements/1/filter")]


def test_empty_all_of_is_invalid_with_its_pointer() -> None:
    with pytest.raises(MeterspecError) as info:
        Meter(config(MeasurementSpec("calls", quantity="1", filter=Filter(all_of=[]))))
    # Reported where the schema reports it: the filter object that has no valid shape.
    assert problems(info) == [("empty-list", "/measurements/0/filter/allOf")]


# --- eventTypes (MS-MET-003) -----------------------------------------------------------------

@pytest.mark.parametrize(("type_", "expected"), [
    ("api.call", True), ("batch", True), ("API.CALL", False), ("api.call ", False),
    ("api", False), ("other", False)])
def test_event_types_selector(type_: str, expected: bool) -> None:
    cfg = config(MeasurementSpec("calls", quantity="1", event_types=["api.call", "batch"]))
    assert bool(meter(event(type_=type_), cfg)) is expected


def test_event_types_and_filter_must_both_match() -> None:
    cfg = config(MeasurementSpec("calls", quantity="1", event_types=["api.call"],
                                 filter=Filter(property="env", equals="prod")))
    assert len(meter(event({"env": "prod"}), cfg)) == 1
    assert meter(event({"env": "dev"}), cfg) == []
    assert meter(event({"env": "prod"}, type_="batch"), cfg) == []


# --- measurements (MS-MET-002/007) -----------------------------------------------------------

def test_constant_quantity_measurement() -> None:
    cfg = config(MeasurementSpec("requests", quantity="1.50"),
                 MeasurementSpec("zero", quantity="-0.0"))
    records = meter(event({"tokens": "abc"}), cfg)
    assert [(r.measurement.unit, r.measurement.quantity) for r in records] == [
        ("requests", "1.5"), ("zero", "0")]
    assert records[0].id == ms_id("rec_", ["meterspec/record/v1", "ws", "prod", "evt-1",
                                           "requests", "constant:1.5"])
    assert records[1].id == ms_id("rec_", ["meterspec/record/v1", "ws", "prod", "evt-1",
                                           "zero", "constant:0"])


def test_one_record_per_matching_measurement_in_config_order() -> None:
    cfg = config(MeasurementSpec("tokens", source_property="tokens"),
                 MeasurementSpec("calls", quantity="1"),
                 MeasurementSpec("bytes", source_property="bytes",
                                 filter=Filter(property="bytes", exists=True)),
                 MeasurementSpec("apples", quantity="2"))
    records = meter(event({"tokens": "1.50e1"},
                          time="2024-01-15T11:30:00.123456789+01:00"), cfg)
    assert [(r.measurement.unit, r.measurement.quantity) for r in records] == [
        ("tokens", "15"), ("calls", "1"), ("apples", "2")]
    for r in records:
        assert r.recorded_at == "2024-01-15T10:30:00.123456789Z"  # not truncated (1.1)
        assert (r.workspace_id, r.universe_id, r.subject, r.source_event_id) == (
            "ws", "prod", "cust-1", "evt-1")


@pytest.mark.parametrize(("specs", "paths"), [
    ([MeasurementSpec("calls", quantity="1"), MeasurementSpec("calls", quantity="1.0")],
     ["/measurements/1"]),
    ([MeasurementSpec("calls", quantity="1e0"), MeasurementSpec("calls", quantity="1"),
      MeasurementSpec("calls", quantity="1.000")], ["/measurements/1", "/measurements/2"]),
    ([MeasurementSpec("tokens", source_property="t",
                      filter=Filter(property="m", equals="a")),
      MeasurementSpec("tokens", source_property="t",
                      filter=Filter(property="m", equals="b"))], ["/measurements/1"]),
])
def test_duplicate_measurements(specs: list[MeasurementSpec], paths: list[str]) -> None:
    with pytest.raises(MeterspecError) as info:
        Meter(config(*specs))
    assert problems(info) == [("duplicate-measurement", p) for p in paths]
    assert info.value.requirement == "MS-MET-002"


def test_same_source_in_other_units_or_other_sources_are_not_duplicates() -> None:
    cfg = config(MeasurementSpec("tokens", source_property="t"),
                 MeasurementSpec("tokens-copy", source_property="t"),
                 MeasurementSpec("tokens", quantity="1"),
                 MeasurementSpec("tokens", quantity="2"),
                 MeasurementSpec("tokens", source_property="u"))
    assert len(meter(event({"t": "3", "u": "4"}), cfg)) == 5


def test_measurement_shape_problems_are_all_reported() -> None:
    with pytest.raises(MeterspecError) as info:
        Meter(config(MeasurementSpec("a"),
                     MeasurementSpec("b", source_property="x", quantity="1"),
                     MeasurementSpec("c", quantity="1,5"),
                     MeasurementSpec("d", quantity="1" * 31)))
    assert problems(info) == [("invalid-measurement", "/measurements/0"),
                              ("invalid-measurement", "/measurements/1"),
                              ("invalid-quantity", "/measurements/2/quantity"),
                              ("quantity-out-of-range", "/measurements/3/quantity")]


def test_config_without_measurements() -> None:
    with pytest.raises(MeterspecError) as info:
        Meter(MeteringConfig([]))
    assert problems(info) == [("empty-list", "/measurements")]


# --- dimensions (MS-MET-006) -----------------------------------------------------------------

def test_default_dimensions_exclude_every_source_property() -> None:
    cfg = config(MeasurementSpec("tokens", source_property="tokens", event_types=["llm"]),
                 MeasurementSpec("bytes", source_property="bytes", event_types=["upload"]),
                 MeasurementSpec("calls", quantity="1"))
    # bytes is not a valid quantity, but its measurement does not match: no problem, and it is
    # still not a dimension because it is the source of a measurement in the config.
    records = meter(event({"tokens": "5", "bytes": "x", "region": "eu", "model": "m"},
                          type_="llm"), cfg)
    assert [(r.measurement.unit, r.measurement.quantity) for r in records] == [
        ("tokens", "5"), ("calls", "1")]
    for r in records:
        assert list(r.dimensions.items()) == [("model", "m"), ("region", "eu")]


def test_dimension_keys_are_in_code_point_order() -> None:
    props = {"b": "1", "\U0001f600": "6", "B": "2", "\uff41": "5", "a": "3", "\u00e9": "4",
             "_": "7"}
    [rec] = meter(event(props), config(MeasurementSpec("calls", quantity="1")))
    expected = ["B", "_", "a", "b", "\u00e9", "\uff41", "\U0001f600"]  # not UTF-16 order
    assert list(rec.dimensions) == expected
    assert list(json.loads(encode(rec))["dimensions"]) == expected


def test_explicit_dimensions_are_exactly_the_listed_present_properties() -> None:
    cfg = config(MeasurementSpec("tokens", source_property="tokens"),
                 dimensions=["tokens", "region", "absent"])
    [rec] = meter(event({"tokens": "5", "region": "eu", "model": "m"}), cfg)
    assert list(rec.dimensions.items()) == [("region", "eu"), ("tokens", "5")]
    [bare] = meter(event({"tokens": "5", "region": "eu"}),
                   config(MeasurementSpec("tokens", source_property="tokens"), dimensions=[]))
    assert bare.dimensions == {}


# --- rejected events (MS-MET-008, MS-EVT-002) ------------------------------------------------

def test_bad_source_properties_reject_the_whole_event_with_every_problem() -> None:
    cfg = config(MeasurementSpec("calls", quantity="1"),
                 MeasurementSpec("tokens", source_property="tokens"),
                 MeasurementSpec("bytes", source_property="a/b~c"),
                 MeasurementSpec("huge", source_property="huge"),
                 MeasurementSpec("ignored", source_property="nope",
                                 filter=Filter(property="never", exists=True)))
    with pytest.raises(MeterspecError) as info:
        meter(event({"tokens": "1,5", "huge": "1" * 31}, subject="", time="2024-02-30T00:00:00Z"),
              cfg)
    assert sorted(problems(info)) == sorted([
        ("empty-string", "/subject"),
        ("invalid-timestamp", "/time"),
        ("invalid-quantity", "/properties/tokens"),
        ("missing-source-property", "/properties/a~1b~0c"),
        ("quantity-out-of-range", "/properties/huge"),
    ])
    assert {p.event_id for p in info.value.problems} == {"evt-1"}
    missing = [p for p in info.value.problems if p.code == "missing-source-property"]
    assert missing[0].requirement == "MS-MET-008"


def test_missing_source_property_alone_rejects_the_event() -> None:
    cfg = config(MeasurementSpec("calls", quantity="1"),
                 MeasurementSpec("tokens", source_property="tokens"))
    with pytest.raises(MeterspecError) as info:
        meter(event({"other": "1"}, ident="e-42"), cfg)
    assert problems(info) == [("missing-source-property", "/properties/tokens")]
    assert info.value.problems[0].event_id == "e-42"


def test_empty_identity_fields_are_reported_all_at_once() -> None:
    with pytest.raises(MeterspecError) as info:
        meter(event(ident="", workspace="", universe="", type_="", subject=""),
              config(MeasurementSpec("calls", quantity="1")))
    assert problems(info) == [("empty-string", "/id"), ("empty-string", "/workspaceID"),
                              ("empty-string", "/universeID"), ("empty-string", "/type"),
                              ("empty-string", "/subject")]
    assert all(p.requirement == "MS-EVT-002" for p in info.value.problems)
    assert all(p.event_id is None for p in info.value.problems)


# --- meteredAt and record ids (MS-MET-007, MS-ID-002) ---------------------------------------

def test_metered_at_only_when_given() -> None:
    cfg = config(MeasurementSpec("calls", quantity="1"))
    [plain] = meter(event(), cfg)
    assert plain.metered_at is msgspec.UNSET
    assert b"meteredAt" not in encode(plain)
    [stamped] = meter(event(), cfg, metered_at="2024-01-15T11:30:00.120+01:00")
    assert stamped.metered_at == "2024-01-15T10:30:00.12Z"
    assert b'"meteredAt":"2024-01-15T10:30:00.12Z"' in encode(stamped)
    assert stamped.id == plain.id
    with pytest.raises(MeterspecError) as info:
        meter(event(), cfg, metered_at="yesterday")
    assert problems(info) == [("invalid-timestamp", "/meteredAt")]


def test_record_ids_follow_the_recipe_and_are_tenant_scoped() -> None:
    cfg = config(MeasurementSpec("tokens", source_property="tokens"),
                 MeasurementSpec("calls", quantity="1"))
    props = {"tokens": "3"}

    def ids(**where: str) -> list[str]:
        return [r.id for r in meter(event(props, **where), cfg)]

    base = ids()
    assert base == [
        ms_id("rec_", ["meterspec/record/v1", "ws", "prod", "evt-1", "tokens",
                       "property:tokens"]),
        ms_id("rec_", ["meterspec/record/v1", "ws", "prod", "evt-1", "calls", "constant:1"]),
    ]
    assert ids() == base                                          # stable
    assert [r.id for r in Meter(cfg).records(event(props))] == base
    other_ws, other_universe = ids(workspace="ws2"), ids(universe="test")
    assert other_ws == [
        ms_id("rec_", ["meterspec/record/v1", "ws2", "prod", "evt-1", "tokens",
                       "property:tokens"]),
        ms_id("rec_", ["meterspec/record/v1", "ws2", "prod", "evt-1", "calls", "constant:1"]),
    ]
    everything = base + other_ws + other_universe + ids(ident="evt-2")
    assert len(set(everything)) == 8
    # Time, subject and type do not identify a record: a retried event keeps its ids.
    assert ids(time="2024-01-16T00:00:00Z", subject="other", type_="t") == base
    # Length-prefixed fields: ("ws", "xprod") and ("wsx", "prod") differ.
    assert ids(universe="xprod") != ids(workspace="wsx")


def test_constant_record_id_uses_the_canonical_quantity() -> None:
    a = meter(event(), config(MeasurementSpec("calls", quantity="1.50")))[0].id
    b = meter(event(), config(MeasurementSpec("calls", quantity="15e-1")))[0].id
    assert a == b == ms_id("rec_", ["meterspec/record/v1", "ws", "prod", "evt-1", "calls",
                                    "constant:1.5"])


def test_huge_exponent_in_a_property_rejects_the_event_not_the_process() -> None:
    with pytest.raises(MeterspecError) as info:
        meter(event({"n": "1e1000000000000000000"}),
              config(MeasurementSpec("n", source_property="n")))
    assert problems(info) == [("quantity-out-of-range", "/properties/n")]
    assert info.value.problems[0].event_id == "evt-1"


@pytest.mark.parametrize(("flt", "key"), [(Filter(property="a", in_=[]), "in"),
                                          (Filter(property="a", not_in=[]), "notIn")])
def test_empty_in_or_not_in_list_is_invalid(flt: Filter, key: str) -> None:
    """MS-MET-004: lists are non-empty; reported where the schema reports it."""
    try:
        Meter(config(MeasurementSpec("calls", quantity="1", filter=flt)))
    except MeterspecError as error:
        assert [(p.code, p.path) for p in error.problems] == [
            ("empty-list", f"/measurements/0/filter/{key}")]
        return
    raise AssertionError("accepted")


# --- the one-pass path of measure() and the checked path agree (issue 12) ----------------------

_VALUES = st.sampled_from(["1", "2.5", "-0", "1e3", "x", "", "1e00001", "NaN"])
_FILTERS = st.sampled_from([None, Filter(property="region", equals="eu"),
                            Filter(property="tokens", exists=True)])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["tokens", "bytes", "region"]), _VALUES, max_size=3),
       st.sampled_from(["", "evt-1"]), st.sampled_from(["api.call", "other", ""]),
       st.sampled_from(["2024-01-15T10:30:00Z", "2024-01-15T10:30:00.5+01:00", "soon",
                        "0000-01-01T00:00:00Z"]),
       st.lists(st.tuples(st.sampled_from(["tokens", "bytes", None]), _FILTERS,
                          st.sampled_from([None, ["api.call"], ["other"]])),
                min_size=1, max_size=3, unique_by=lambda t: t[0] or ""),
       st.booleans())
def test_measure_one_pass_equals_the_checked_path(
        props: dict[str, str], ident: str, type_: str, time: str,
        specs: list[tuple[str | None, Filter | None, list[str] | None]],
        dimensions: bool) -> None:
    meter_ = Meter(config(*(MeasurementSpec(f"u{i}", source_property=source,
                                            quantity=None if source else "1",
                                            filter=flt, event_types=types)
                            for i, (source, flt, types) in enumerate(specs))))
    item = event(props, ident=ident, type_=type_, time=time)
    try:
        expected: object = meter_._measure_checked(item)
    except MeterspecError as error:
        expected = list(error.problems)
    try:
        found: object = meter_.measure(item, dimensions)
    except MeterspecError as error:
        found = list(error.problems)
    if dimensions or not isinstance(found, tuple) or not isinstance(expected, tuple):
        assert found == expected
    else:
        assert found[:2] == expected[:2] and found[2] == {}
