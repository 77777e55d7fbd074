"""Hostile JSON text (MS-ERR-007, MS-ERR-008, MS-ERR-009, MS-ERR-010, MS-ERR-011, MS-QTY-002):
every input ends in a value or in problems with a code and a pointer, never in another
exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec import json_text
from meterspec.codec import STRUCTS, decode, decode_event, decode_record
from meterspec.contracts import MeasurementSpec, MeteringConfig
from meterspec.errors import MeterspecError
from meterspec.metering import Meter
from meterspec.quantity import parse_quantity
from meterspec.quotas import QuotaCheck

EVENT = {"id": "e1", "workspaceID": "victim", "universeID": "prod", "type": "llm",
         "subject": "cust", "time": "2024-01-15T10:30:00Z", "properties": {"tokens": "5"}}
RECORD = {"id": "rec_1", "workspaceID": "w", "universeID": "u", "subject": "s",
          "recordedAt": "2024-01-15T10:30:00Z", "measurement": {"quantity": "1", "unit": "c"},
          "dimensions": {}, "sourceEventID": "e1"}
HUGE_EXPONENT = "1e" + "1" * 5000


def codes(error: pytest.ExceptionInfo[MeterspecError]) -> list[tuple[str, str]]:
    return [(p.code, p.path) for p in error.value.problems]


def problems_of(kind: str, data: bytes | str) -> list[tuple[str, str]]:
    with pytest.raises(MeterspecError) as error:
        decode(kind, data, STRUCTS[kind], fast=kind in ("event", "record"))
    return codes(error)


# --- 1. digit strings are bounded before they are converted (MS-QTY-002) -------------------

def test_huge_exponent_quantity_is_out_of_range_not_a_conversion_error() -> None:
    with pytest.raises(MeterspecError) as error:
        parse_quantity(HUGE_EXPONENT, "/q")
    assert codes(error) == [("quantity-out-of-range", "/q")]


def test_huge_exponent_through_an_event_is_a_problem_of_that_event() -> None:
    meter = Meter(MeteringConfig(measurements=[MeasurementSpec(unit="t",
                                                               source_property="tokens")]))
    event = decode_event(json.dumps({**EVENT, "properties": {"tokens": HUGE_EXPONENT}}))
    with pytest.raises(MeterspecError) as error:
        meter.records(event, None)
    assert codes(error) == [("quantity-out-of-range", "/properties/tokens")]


@pytest.mark.parametrize(("kind", "document", "path"), [
    ("record", {**RECORD, "measurement": {"quantity": HUGE_EXPONENT, "unit": "c"}},
     "/measurement/quantity"),
    ("config", {"measurements": [{"unit": "c", "quantity": HUGE_EXPONENT}]},
     "/measurements/0/quantity"),
])
def test_huge_exponent_in_a_document_is_out_of_range(kind: str, document: object,
                                                     path: str) -> None:
    with pytest.raises(MeterspecError) as error:  # the careful path; aggregation checks
        decode(kind, json.dumps(document), STRUCTS[kind], fast=False)  # the fast one's values
    assert codes(error) == [("quantity-out-of-range", path)]


def test_huge_exponent_in_a_quota_check_is_a_problem() -> None:
    check = {"workspaceID": "w", "universeID": "u", "subject": "s", "unit": "c",
             "usage": HUGE_EXPONENT, "requested": "1", "now": "2024-01-15T10:30:00Z",
             "policy": {"limit": "10", "enforcement": "HARD"}}
    with pytest.raises(MeterspecError) as error:
        decode("quota-check", json.dumps(check), QuotaCheck, fast=False)
    assert ("quantity-out-of-range", "/usage") in codes(error)


# --- 2. nesting is bounded (MS-ERR-008) ----------------------------------------------------

def nested(depth: int) -> str:
    """An event whose `id` holds arrays nested so the deepest opens at `depth`."""
    return '{"id":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


def test_nesting_of_64_is_allowed_and_65_is_rejected_at_the_65th_container() -> None:
    # depth 64: only schema problems (the id is an array, fields are missing)
    assert ("nesting-too-deep", "") not in {(c, "") for c, _ in problems_of("event",
                                                                           nested(64))}
    assert all(code != "nesting-too-deep" for code, _ in problems_of("event", nested(64)))
    assert problems_of("event", nested(65)) == [("nesting-too-deep", "/id" + "/0" * 63)]


def test_a_thousand_levels_in_one_kilobyte_is_one_problem() -> None:
    line = nested(1000)
    assert len(line) < 2100
    assert problems_of("event", line) == [("nesting-too-deep", "/id" + "/0" * 63)]
    assert problems_of("record", line) == [("nesting-too-deep", "/id" + "/0" * 63)]


def test_deep_pointer_names_object_members_and_array_indices() -> None:
    text = '{"a":[1,{"b":' + "[" * 70 + "]" * 70 + "}]}"
    with pytest.raises(MeterspecError) as error:
        json_text.load(text)
    assert codes(error) == [("nesting-too-deep", "/a/1/b" + "/0" * 61)]


def test_config_filter_nested_200_deep_is_a_problem_not_a_crash() -> None:
    condition: dict[str, Any] = {"property": "p", "exists": True}
    for _ in range(200):
        condition = {"allOf": [condition]}
    config = {"measurements": [{"unit": "c", "quantity": "1", "filter": condition}]}
    found = problems_of("config", json.dumps(config))
    # depths: config 1, measurements 2, measurement 3, filter 4, its allOf 5, ... so the
    # 65th container is the allOf array 30 filters further down
    assert found == [("nesting-too-deep",
                      "/measurements/0/filter" + "/allOf/0" * 30 + "/allOf")]


# --- 4. duplicate names (MS-ERR-009) -------------------------------------------------------

def test_a_repeated_workspace_is_rejected_not_billed_to_the_last() -> None:
    line = ('{"id":"e1","workspaceID":"victim","workspaceID":"attacker","universeID":"prod",'
            '"type":"llm","subject":"cust","time":"2024-01-15T10:30:00Z"}')
    assert problems_of("event", line) == [("duplicate-name", "/workspaceID")]


def test_a_repeated_quantity_property_is_rejected() -> None:
    line = json.dumps(EVENT)[:-2] + ', "tokens": "500"}}'
    assert problems_of("event", line) == [("duplicate-name", "/properties/tokens")]


def test_duplicates_behind_escapes_are_found() -> None:
    line = json.dumps(EVENT)[:-2] + ', "tok\\u0065ns": "500"}}'
    assert problems_of("event", line) == [("duplicate-name", "/properties/tokens")]


def test_every_repeated_name_is_reported_once() -> None:
    line = json.dumps(EVENT)[:-2] + ', "tokens": "6", "tokens": "7"}, "subject": "x"}'
    assert problems_of("event", line) == [("duplicate-name", "/properties/tokens"),
                                          ("duplicate-name", "/subject")]  # in text order


def test_names_repeated_inside_an_overwritten_value_are_found_too() -> None:
    """A parser keeps one of the two `a` members; the scan sees both objects."""
    with pytest.raises(MeterspecError) as error:
        json_text.load('{"a":{"b":1,"b":2},"a":{"c":[{"d":1,"d":1,"d":1}]}}')
    assert codes(error) == [("duplicate-name", "/a/b"), ("duplicate-name", "/a"),
                            ("duplicate-name", "/a/c/0/d")]


def test_repeated_names_in_records_and_configs() -> None:
    record = json.dumps(RECORD)[:-1] + ', "workspaceID": "other"}'
    assert problems_of("record", record) == [("duplicate-name", "/workspaceID")]
    config = '{"measurements":[{"unit":"c","quantity":"1","quantity":"2"}]}'
    assert problems_of("config", config) == [("duplicate-name", "/measurements/0/quantity")]


def test_an_empty_properties_object_is_not_mistaken_for_a_repeat() -> None:
    for text in ['{"id":"e","workspaceID":"w","universeID":"u","type":"t","subject":"s",'
                 '"time":"2024-01-15T10:30:00Z","properties" : {}}',
                 '{"id":"e","workspaceID":"w","universeID":"u","type":"t","subject":"s",'
                 '"time":"2024-01-15T10:30:00Z"}']:
        assert decode_event(text).properties == {}


def test_a_repeated_name_beside_absent_properties_is_found() -> None:
    """Seven names with no properties could be `properties: {}`: it is not."""
    line = ('{"id":"e","id":"f","workspaceID":"w","universeID":"u","type":"t","subject":"s",'
            '"time":"2024-01-15T10:30:00Z"}')
    assert problems_of("event", line) == [("duplicate-name", "/id")]


def _has_repeat(text: str) -> bool:
    """Independent oracle: Python's json with a pairs hook."""
    found = False

    def pairs(members: list[tuple[str, object]]) -> dict[str, object]:
        nonlocal found
        names = [name for name, _ in members]
        found = found or len(set(names)) != len(names)
        return dict(members)

    json.loads(text, object_pairs_hook=pairs)
    return found


_NAMES = st.sampled_from(["id", "workspaceID", "universeID", "type", "subject", "time",
                          "properties"])
_TEXT = st.text(st.sampled_from('ab:"\\/é\u2028 '), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NAMES, _TEXT), max_size=3),
       st.dictionaries(_TEXT, _TEXT, max_size=3),
       st.lists(st.tuples(_TEXT, _TEXT), max_size=2),
       st.booleans(), st.booleans())
def test_the_fast_path_accepts_exactly_the_texts_without_repeats(
        extra: list[tuple[str, str]], properties: dict[str, str],
        extra_properties: list[tuple[str, str]], ascii_only: bool, spaced: bool) -> None:
    members = [(name, json.dumps(value, ensure_ascii=ascii_only))
               for name, value in EVENT.items() if name != "properties"]
    members += [(name, json.dumps("x" if name != "properties" else {}))
                if name != "properties" else (name, "{}") for name, _ in extra]
    inner = [(json.dumps(k, ensure_ascii=ascii_only), json.dumps(v, ensure_ascii=ascii_only))
             for k, v in [*properties.items(), *extra_properties]]
    colon = " : " if spaced else ":"
    body = ",".join(f"{k}{colon}{v}" for k, v in inner)
    members.append(("properties", "{" + body + "}"))
    text = "{" + ",".join(f'"{name}"{colon}{value}' for name, value in members) + "}"
    if _has_repeat(text):
        with pytest.raises(MeterspecError) as error:
            decode_event(text)
        assert {code for code, _ in codes(error)} == {"duplicate-name"}
    else:
        try:
            decode_event(text)
        except MeterspecError as error:  # a schema problem, never a repeat
            assert all(p.code != "duplicate-name" for p in error.problems)


# --- 5. numbers of any size (MS-ERR-011) ---------------------------------------------------

@pytest.mark.parametrize("number", ["1e400", "1" * 100_000, "-1e-400", "1e" + "9" * 5000,
                                    "12345678901234567890123456789012345"])
def test_a_huge_number_where_a_string_belongs_is_wrong_type(number: str) -> None:
    line = json.dumps(EVENT).replace('"5"', number)
    assert problems_of("event", line) == [("wrong-type", "/properties/tokens")]


@pytest.mark.parametrize(("scale", "expected"), [
    ("1e400", "out-of-range"), ("1" * 100_000, "out-of-range"), ("-1e400", "out-of-range"),
    ("9007199254740993", "out-of-range"), ("2.5", "wrong-type"), ("1e-400", "wrong-type"),
    ("21", "out-of-range"), ("1" + "0" * 5000 + "e-4980", "out-of-range"),
    ("1" + "0" * 5000 + "e-4999", None),
])
def test_a_number_where_an_integer_belongs(scale: str, expected: str | None) -> None:
    text = ('{"aggregation":"time-weighted-avg","scale":' + scale + ',"windows":[{"start":'
            '"2024-01-01T00:00:00Z","end":"2024-01-02T00:00:00Z"}]}')
    if expected is None:  # 10 with five thousand zeros taken away again
        assert decode("request", text, STRUCTS["request"], fast=False).scale == 10
    else:
        assert problems_of("request", text) == [(expected, "/scale")]


@pytest.mark.parametrize("scale", ["2.0", "20e-1", "0.2e1", "2"])
def test_an_integral_number_is_an_integer_however_spelt(scale: str) -> None:
    text = ('{"aggregation":"time-weighted-avg","scale":' + scale + ',"windows":[{"start":'
            '"2024-01-01T00:00:00Z","end":"2024-01-02T00:00:00Z"}]}')
    assert decode("request", text, STRUCTS["request"], fast=False).scale == 2


def test_every_integer_field_of_every_schema_is_bounded() -> None:
    """MS-ERR-011: so a stand-in beyond 2**53 - 1 is never accepted as a value."""
    from meterspec.schema import KINDS, load_schema

    unbounded: list[str] = []

    def visit(node: object, where: str) -> None:
        if isinstance(node, dict):
            every = node.get("allOf")  # a bound may carry its own code in an allOf
            bounds = [node, *(every if isinstance(every, list) else [])]
            maximum = min(b.get("maximum", 2**53) for b in bounds if isinstance(b, dict))
            if node.get("type") == "integer" and maximum > 2**53 - 1:
                unbounded.append(where)
            for key, child in node.items():
                visit(child, f"{where}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                visit(child, f"{where}/{index}")

    for name in ["common", *KINDS.values()]:
        visit(load_schema(name), name)
    assert unbounded == []


# --- 6 and MS-ERR-007: what is not JSON text ------------------------------------------------

@pytest.mark.parametrize("text", [
    b"\xef\xbb\xbf" + json.dumps(EVENT).encode(),  # a BOM is the edge's to strip, at the start
    json.dumps(EVENT).replace('"cust"', '"\\ud800"').encode(),  # lone surrogate
    json.dumps(EVENT).replace('"cust"', '"\\udc00x"').encode(),
    json.dumps(EVENT).replace('"5"', "NaN").encode(),
    json.dumps(EVENT).replace('"5"', "-Infinity").encode(),
    json.dumps(EVENT).encode().replace(b"cust", b"cu\xffst"),  # not UTF-8
    json.dumps(EVENT).encode().replace(b"cust", b"cu\xed\xa0\x80st"),  # encoded surrogate
])
def test_not_json_text_is_invalid_json(text: bytes) -> None:
    assert problems_of("event", text) == [("invalid-json", "")]


def test_a_surrogate_pair_is_one_character() -> None:
    line = json.dumps(EVENT).replace('"cust"', '"\\ud83d\\ude00"')
    assert decode_event(line).subject == "\U0001f600"


def test_a_record_round_trips_through_both_paths() -> None:
    text = json.dumps(RECORD)
    assert decode_record(text) == decode("record", text, STRUCTS["record"], fast=False)


def test_a_lone_surrogate_in_a_repeated_name_is_invalid_json_not_a_crash() -> None:
    """Found by tests/test_fuzz.py: the duplicate's pointer held the surrogate, which no
    report can encode. A lone surrogate makes the text invalid first (MS-ERR-007)."""
    line = json.dumps(EVENT)[:-1] + ', "\\ud800": {"id": 0, "id": []}}'
    assert problems_of("event", line) == [("invalid-json", "")]


def test_a_too_deep_pointer_through_a_lone_surrogate_name_can_be_written() -> None:
    text = '{"\\ud800":' + "[" * 70 + "]" * 70 + "}"
    with pytest.raises(MeterspecError) as error:
        json_text.load(text)
    assert codes(error) == [("nesting-too-deep", "/\ufffd" + "/0" * 63)]
    error.value.problems[0].path.encode("utf-8")


def test_an_unterminated_string_is_one_token_so_the_depth_scan_stays_linear() -> None:
    """An unterminated string of escaped quotes made the scan retry at every quote
    (quadratic: 13 s for 40 KB). It is now consumed in one match."""
    text = b'{"a":"' + b'\\"' * 10_000 + b"[" * 70
    assert json_text._TOKENS.match(text, 5) is not None
    assert json_text._TOKENS.match(text, 5).end() == len(text)  # type: ignore[union-attr]
    with pytest.raises(MeterspecError) as error:
        json_text.load(text)
    assert codes(error) == [("invalid-json", "")]
