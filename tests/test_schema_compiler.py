"""meterspec.schema_compiler reports exactly what a general JSON Schema validator does.

The oracle here is jsonschema (Draft 2020-12) with the mapping from errors to problems that
meterspec.schema used before the compiler (MS-ERR-006): same (code, path, requirement) list for
every example document of every kind and for documents hypothesis derives from the valid
examples by removing, adding, retyping and replacing parts of them. The one deliberate
difference is `uniqueItems`: jsonschema 4.x sorts the items first and then compares only
neighbours, which misses [[1], [true], [1]] (1 == true while sorting, not while comparing), so
the oracle uses a plain pairwise comparison of JSON values instead.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema._utils import equal
from jsonschema.exceptions import ValidationError

from meterspec import json_text
from meterspec.errors import MeterspecError, Problem, pointer
from meterspec.schema import KINDS, load_schema, schema_problems, schema_uri
from meterspec.schema_compiler import (
    Compiler,
    SchemaUnsupportedError,
    annotations_of,
    is_integer,
    is_number,
    json_key,
    unique,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "schemas" / "examples"

# The oracle's own copy of MS-ERR-006's table (meterspec.schema's, before the compiler).
_KEYWORD_CODES = {
    "required": "missing-field",
    "additionalProperties": "unknown-field",
    "type": "wrong-type",
    "minLength": "empty-string",
    "minItems": "empty-list",
    "maxItems": "too-many-items",
    "uniqueItems": "duplicate-item",
    "minimum": "out-of-range",
    "maximum": "out-of-range",
    "maxLength": "out-of-range",
}
_STRUCTURAL = frozenset({"type", "required", "additionalProperties", "minItems", "maxItems",
                         "uniqueItems"})


@cache
def _registry() -> referencing.Registry[Any]:
    return referencing.Registry().with_resources(
        (schema_uri(n), referencing.Resource.from_contents(load_schema(n)))
        for n in ["common", *KINDS.values()])


@cache
def _locations() -> dict[int, str]:
    """id() of every schema object the oracle's registry holds -> its URI#pointer."""
    found: dict[int, str] = {}

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            found[id(node)] = where
            for key, value in node.items():
                walk(value, where + pointer(key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, where + pointer(index))

    for name in ["common", *KINDS.values()]:
        uri = schema_uri(name)
        walk(_registry().contents(uri), uri + "#")
    return found


def _unique_items(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if value and validator.is_type(instance, "array") and any(
            equal(a, b) for n, a in enumerate(instance) for b in instance[n + 1:]):
        yield ValidationError(f"{instance!r} has non-unique elements")


_OracleValidator: Any = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator, {"uniqueItems": _unique_items})


@cache
def _oracle_validator(kind: str) -> Any:
    return _OracleValidator(_registry().contents(schema_uri(KINDS[kind])), registry=_registry())


def reference_schema_problems(kind: str, document: object) -> list[Problem]:
    """schema_problems as it was before the compiler: jsonschema plus MS-ERR-006's mapping."""
    validator = _oracle_validator(kind)
    _, root = annotations_of(validator.schema, schema_uri(KINDS[kind]) + "#")
    found: dict[tuple[str, str], Problem] = {}
    for error in validator.iter_errors(document):
        for problem in _problems(error, root or "MS-ERR-001"):
            found.setdefault((problem.path, problem.code), problem)
    return sorted(found.values(), key=lambda p: (p.path, p.code))


def _problems(error: ValidationError, requirement: str) -> Iterator[Problem]:
    subschema = error.schema if isinstance(error.schema, dict) else {}
    named_code, named_requirement = (
        annotations_of(subschema, _locations()[id(subschema)]) if subschema else (None, None))
    requirement = named_requirement or requirement
    base = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        for name in error.validator_value:  # type: ignore[union-attr]
            if name not in instance:
                yield Problem("missing-field", pointer(*base, name), "", requirement)
        return
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = subschema.get("properties", {})
        for name in instance:
            if name not in known:
                yield Problem("unknown-field", pointer(*base, name), "", requirement)
        return
    keyword = str(error.validator)
    code = _KEYWORD_CODES.get(keyword) if keyword in _STRUCTURAL else None
    code = code or named_code or _KEYWORD_CODES.get(keyword, "invalid-value")
    yield Problem(code, pointer(*base), error.message[:200], requirement)


def _verdict(problems: list[Problem]) -> list[tuple[str, str, str]]:
    return [(p.code, p.path, p.requirement) for p in problems]


def _assert_same(kind: str, document: object) -> list[Problem]:
    compiled = schema_problems(kind, document)
    assert _verdict(compiled) == _verdict(reference_schema_problems(kind, document)), document
    for problem in compiled:
        assert problem.message and len(problem.message) <= 200
    return compiled


def _load(path: Path) -> Any:
    """A document as the careful parser gives it (Fractions for non-integral numbers)."""
    try:
        return json_text.load(path.read_bytes())
    except MeterspecError:
        return json.loads(path.read_bytes())


_ALL_EXAMPLES = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.glob("*/*/*.json"))


@pytest.mark.parametrize("key", _ALL_EXAMPLES)
def test_every_example_gets_the_oracles_problems(key: str) -> None:
    kind = key.split("/")[0]
    compiled = _assert_same(kind, _load(EXAMPLES / key))
    if "/valid/" in key:
        assert compiled == []
    _assert_same(kind, json.loads((EXAMPLES / key).read_bytes()))  # floats, not Fractions


def test_the_examples_cover_every_kind() -> None:
    assert {key.split("/")[0] for key in _ALL_EXAMPLES} == set(KINDS)
    assert sum(bool(schema_problems(k.split("/")[0], _load(EXAMPLES / k)))
               for k in _ALL_EXAMPLES) > 150


# Mutations of the valid examples.

def _property_names() -> list[str]:
    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            names.update(node.get("properties", {}) if isinstance(
                node.get("properties"), dict) else ())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for name in ["common", *KINDS.values()]:
        walk(load_schema(name))
    return sorted(names)


def _leaves_and_subtrees() -> list[Any]:
    """Every value of every example: strings that fit some other field, whole filters..."""
    found: list[Any] = []

    def walk(node: object) -> None:
        found.append(node)
        children = node.values() if isinstance(node, dict) else \
            node if isinstance(node, list) else ()
        for child in children:
            walk(child)

    for key in _ALL_EXAMPLES:
        walk(_load(EXAMPLES / key))
    unique_found: dict[str, Any] = {}
    for value in found:
        unique_found.setdefault(json.dumps(value, sort_keys=True, default=str), value)
    return list(unique_found.values())


NAMES = _property_names()
POOL = _leaves_and_subtrees()
EDGE_STRINGS = ["", " ", "0", "-0", "1e400", "00", "0.5", "1.", ".5", "-", "NaN", "x" * 300,
                "é", "\u0000", "\n", "a\n", "2024-02-30T00:00:00Z", "2024-01-01T00:00:00Z\n",
                "2024-01-01T00:00:00+24:00", "USD", "usd", "P1D", "PT1H", "hour", "day", "month",
                "~/", "a/b", "{x}", "api.request", "MS-ERR-001", "0" * 40]
EDGE_NUMBERS: list[Any] = [0, -1, 1, 2, 2.0, 1.5, -0.0, 10**30, -(10**30), 2**53, 2**53 - 1,
                           Fraction(1, 3), Fraction(-5, 2), 1e300, True, False, None]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(EDGE_NUMBERS)
    | st.sampled_from(EDGE_STRINGS) | st.sampled_from(NAMES),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=3), inner, max_size=3),
    max_leaves=8)
replacements = (json_values | st.sampled_from(POOL) | st.sampled_from(EDGE_STRINGS)
                | st.sampled_from(EDGE_NUMBERS))


def _places(document: Any) -> list[tuple[Any, str | int | None]]:
    """(container, key) of every value in a document; (None, None) for the document itself."""
    found: list[tuple[Any, str | int | None]] = [(None, None)]
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.extend((node, key) for key in node)
            stack.extend(node.values())
        elif isinstance(node, list):
            found.extend((node, index) for index in range(len(node)))
            stack.extend(node)
    return found


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Fraction)) and not isinstance(value, bool)


STRINGS = sorted({v for v in POOL if isinstance(v, str)} | set(EDGE_STRINGS))
NUMBERS = [v for v in POOL if _is_number(v)] + [v for v in EDGE_NUMBERS if _is_number(v)]


def _mutate(draw: st.DrawFn, document: Any) -> Any:
    """One change at one place: mostly a value swapped for another of its JSON type (to reach
    patterns, enums, bounds and oneOf), sometimes a member removed or added, a list emptied or
    given a duplicate, or anything replaced by junk."""
    container, key = draw(st.sampled_from(_places(document)))
    value = document if container is None else container[key]
    operations = ["junk"] + ["remove"] * (container is not None)
    if isinstance(value, str):
        operations += ["string"] * 4
    elif _is_number(value):
        operations += ["number"] * 3
    elif isinstance(value, dict):
        operations += ["add", "add", "empty"]
    elif isinstance(value, list):
        operations += ["add", "empty", "duplicate"]
    operation = draw(st.sampled_from(operations))
    new: Any
    if operation == "remove":
        del container[key]
        return document
    if operation == "add" and isinstance(value, dict):
        value[draw(st.sampled_from(NAMES) | st.text(max_size=4))] = copy.deepcopy(
            draw(replacements))
        return document
    if operation == "add":
        value.append(copy.deepcopy(draw(st.sampled_from(value) if value else replacements)))
        return document
    if operation == "empty":
        value.clear()
        return document
    if operation == "duplicate":
        if value:
            value.append(copy.deepcopy(draw(st.sampled_from(value))))
        return document
    if operation == "string":
        new = draw(st.sampled_from(STRINGS) | st.text(max_size=6))
    elif operation == "number":
        new = draw(st.sampled_from(NUMBERS) | st.integers(-(2**64), 2**64))
    else:
        new = copy.deepcopy(draw(replacements))
    if container is None:
        return new
    container[key] = new
    return document


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> Any:
    valid = sorted((EXAMPLES / kind / "valid").glob("*.json"))
    document = _load(draw(st.sampled_from(valid)))
    for _ in range(draw(st.integers(1, 3))):
        document = _mutate(draw, document)
    return document


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_documents_get_the_oracles_problems(kind: str, data: st.DataObject) -> None:
    _assert_same(kind, data.draw(mutated(kind)))


# What the mutations might not reach, written out.

def _filter(depth: int) -> dict[str, Any]:
    if depth == 0:
        return {"property": "region", "in": ["eu", "eu", 3]}
    return {"allOf": [_filter(depth - 1), {"anyOf": [{"property": "x", "exists": "yes"}]}]}


def _config(filter_: object) -> Any:
    document = json.loads((EXAMPLES / "config" / "valid" / "seed-readme.json").read_bytes())
    document["measurements"][0]["filter"] = filter_
    return document


def test_a_recursive_filter_is_checked_at_every_depth() -> None:
    problems = _assert_same("config", _config(_filter(6)))
    paths = {(p.code, p.path) for p in problems}
    deep = "/measurements/0/filter" + "/allOf/0" * 6
    assert ("wrong-type", deep + "/in/2") in paths
    assert ("wrong-type", "/measurements/0/filter/allOf/1/anyOf/0/exists") in paths


def test_one_of_is_one_problem_at_the_object_with_its_code() -> None:
    problems = _assert_same("config", _config({"property": "a", "equals": "b", "exists": True}))
    assert [(p.code, p.path, p.requirement) for p in problems] == [
        ("invalid-filter", "/measurements/0/filter", "MS-MET-004")]
    assert "exactly one of" in problems[0].message  # the subschema's description


def test_unique_items_is_json_equality() -> None:
    def duplicates(group_by: list[Any]) -> bool:
        document = json.loads((EXAMPLES / "request" / "valid" / "min-group-by.json").read_bytes())
        document["groupBy"] = group_by
        problems = _assert_same("request", document)
        return ("duplicate-item", "/groupBy") in {(p.code, p.path) for p in problems}

    assert duplicates(["a", "a"]) and duplicates([1, 1.0]) and duplicates([Fraction(1, 2), 0.5])
    assert duplicates([{"a": [1]}, {"a": [1.0]}]) and duplicates([[1], [True], [1]])
    assert not duplicates(["a", "b"]) and not duplicates([True, 1])
    assert not duplicates([[True], [1]])
    assert not duplicates([{"a": 1}, {"a": 1, "b": 2}]) and not duplicates([0, False, None, ""])


def test_json_values_and_types() -> None:
    assert json_key(1) == json_key(1.0) == json_key(Fraction(1)) != json_key(True)
    assert json_key({"a": 1, "b": [2]}) == json_key({"b": [2.0], "a": 1})
    assert not unique([{"a": 1}, {"a": 1.0}]) and unique([False, 0])
    assert is_integer(2) and is_integer(2.0) and not is_integer(2.5)
    assert not is_integer(True) and not is_integer(Fraction(1, 2)) and not is_integer("2")
    assert is_number(Fraction(1, 3)) and is_number(1e300) and not is_number(False)


def test_every_mistyped_number_and_bool() -> None:
    record = _load(EXAMPLES / "record" / "valid" / "seed-readme.json")
    for value in [True, 2.0, 2.5, Fraction(5, 2), "2", None, [], {}, 10**30, -1]:
        for name in list(record):
            _assert_same("record", {**record, name: value})


def test_a_schema_keyword_the_compiler_does_not_know_is_refused() -> None:
    uri = "https://example.test/s.json"
    for schema in [{"format": "date-time"}, {"properties": {"a": {"exclusiveMinimum": 0}}},
                   {"type": "strnig"}, {"$ref": "#/$defs/missing"}, {"$ref": "other.json"},
                   # annotations are `$comment`s now (MS-ERR-006): a stale or malformed one
                   {"x-code": "invalid-value"}, {"$comment": "a note"},
                   {"items": {"$comment": "code=invalid-value code=invalid-value"}},
                   {"$comment": 1}]:
        with pytest.raises(SchemaUnsupportedError):
            Compiler({uri: schema}).validator(uri)


def test_boolean_schemas_and_annotations() -> None:
    uri = "https://example.test/s.json"
    schema = {"$comment": "code=bad-thing requirement=MS-X-001", "description": "ignored",
              "properties": {"no": False, "yes": True},
              "items": False, "not": {"required": ["z"], "type": "object"}}
    validate = Compiler({uri: schema}).validator(uri)
    assert [(p.code, p.path, p.requirement) for p in validate({"no": 1, "yes": 2, "z": 3})] == [
        ("bad-thing", "", "MS-X-001"), ("invalid-value", "/no", "MS-X-001")]
    assert [(p.code, p.path) for p in validate([1])] == [("bad-thing", "")]
    assert validate({"yes": 1}) == validate([]) == []


def test_messages_stay_short_and_informative() -> None:
    event = _load(EXAMPLES / "event" / "valid" / "seed-readme.json")
    event["x" * 5000] = 1
    event["subject"] = ["y" * 100_000]
    event["time"] = "z" * 1000
    problems = schema_problems("event", event)
    by_code = {p.code: p.message for p in problems}
    assert set(by_code) == {"unknown-field", "wrong-type", "invalid-timestamp"}
    assert all(len(message) <= 200 for message in by_code.values())
    assert "array" in by_code["wrong-type"] or "string" in by_code["wrong-type"]
    assert "MS-TIME-001" in by_code["invalid-timestamp"]




def test_search_semantics_and_first_found_in_schema_order() -> None:
    """Patterns search (jsonschema's re.search), and of two problems at one (path, code) the
    one found first in the schema's own order is kept, whatever requirement the other names."""
    uri = "https://example.test/s.json"
    properties = {"x": {"type": "string", "pattern": "b$", "$comment": "requirement=MS-A-001"}}
    all_of = [{"properties": {"x": {"type": "string", "$comment": "requirement=MS-B-001"}}},
              {"properties": {"x": {"type": "string", "$comment": "requirement=MS-C-001"}}}]
    schema = {"properties": properties, "allOf": all_of}
    validate = Compiler({uri: schema}).validator(uri)
    assert validate({"x": "ab"}) == []
    assert [(p.code, p.requirement) for p in validate({"x": "ba"})] == [
        ("invalid-value", "MS-A-001")]
    assert [(p.code, p.requirement) for p in validate({"x": 1})] == [("wrong-type", "MS-A-001")]
    reordered = {"allOf": all_of[::-1], "properties": properties}
    validate = Compiler({uri: reordered}).validator(uri)
    assert [(p.code, p.requirement) for p in validate({"x": 1})] == [("wrong-type", "MS-C-001")]
