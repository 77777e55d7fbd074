"""Our JSON Schemas compiled into Python closures that find every problem of a document in one
walk, with the codes, paths and requirements of MS-ERR-002 and MS-ERR-006.

A general validator spends most of a rejected line resolving `$ref`s; here each `$ref` is
resolved once, when its schema is compiled, so a bad line costs about what a good one does
(an attacker sending only bad lines must not slow a batch). Only the keywords of schemas/ are
supported (Draft 2020-12); any other is refused when compiling, never silently ignored. Where a
keyword's meaning decides a code, a path or a requirement, it is jsonschema's: each keyword is
checked on its own, in the order the schema writes them; `properties`, `items`, a schema under
`additionalProperties`, `allOf`, `$ref`, `if`/`then`/`else` and `dependentSchemas` report the
problems of the subschema they descend into; `oneOf`, `anyOf` and `not` report one problem at
the instance. tests/test_schema_compiler.py holds this module to a jsonschema-based oracle.
"""

from __future__ import annotations

import numbers
import re
import reprlib
from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote, urldefrag, urljoin

from meterspec.errors import Problem

Raw = tuple[str, str, "str | None", str, object]
"""One problem as a check finds it: (path, code, requirement or None for the document's own,
message template, value shown in the message); messages are formatted only for the problems kept,
once the whole document was walked."""
Check = Callable[[Any, str, list[Raw]], None]
"""A compiled (sub)schema: appends the problems of an instance found at a JSON Pointer."""

KEYWORD_CODES = {
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
"""Keyword -> problem code, when the failing subschema does not name its own (MS-ERR-006)."""
STRUCTURAL = frozenset({"type", "required", "additionalProperties", "minItems", "maxItems",
                        "uniqueItems"})
"""Keywords about a document's structure, which keep their own code even inside a subschema that
names a code for its value rules (a quantity given as a JSON number is wrong-type, not
invalid-quantity: MS-ERR-002)."""
# Keywords that never find a problem by themselves (`then` and `else` belong to `if`).
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description",
                          "default", "examples", "then", "else"})


# A `$comment` of schemas/ names the code and the requirement of its subschema's problems:
# `code=invalid-quantity requirement=MS-QTY-001`, either field alone, nothing else.
_FIELDS = {"code": re.compile(r"[a-z]+(-[a-z]+)*"),
           "requirement": re.compile(r"MS-[A-Z]+-[0-9]{3}")}


def parse_annotations(comment: str) -> tuple[str | None, str | None]:
    """The (code, requirement) that a schema `$comment` names: space-separated `code=C` and
    `requirement=R`, each at most once; ValueError for anything else."""
    named: dict[str, str] = {}
    for field in comment.split(" "):
        name, _, value = field.partition("=")
        grammar = _FIELDS.get(name)
        if grammar is None or name in named or not grammar.fullmatch(value):
            raise ValueError(f"$comment {comment!r} is not 'code=C requirement=R'")
        named[name] = value
    return named.get("code"), named.get("requirement")


def annotations_of(schema: Mapping[str, Any], location: str) -> tuple[str | None, str | None]:
    """The code and the requirement that the (sub)schema at `location` (its absolute URI and
    JSON Pointer, `...common.schema.json#/$defs/identifier`) names for the problems its own
    keywords find, or None for either. The one place that knows how they are written: in the
    subschema's own `$comment` (MS-ERR-006), so `location` is not needed."""
    del location
    comment = schema.get("$comment")
    if comment is None:
        return None, None
    if not isinstance(comment, str):
        raise ValueError(f"$comment {comment!r} is not a string")
    return parse_annotations(comment)


def keyword_code(keyword: str, named: str | None) -> str:
    """The code of a problem found by `keyword` in a subschema that names code `named`."""
    if keyword in STRUCTURAL:
        return KEYWORD_CODES[keyword]
    return named or KEYWORD_CODES.get(keyword, "invalid-value")


class SchemaUnsupportedError(ValueError):
    """A schema uses a keyword or reference this compiler does not implement."""


class _Site(NamedTuple):
    """Where a keyword sits: its schema, location, and the requirement that schema names."""

    schema: Mapping[str, Any]
    uri: str
    pointer: str
    code: str | None
    requirement: str | None


class Validator:
    """One compiled root schema: `validator(document)` is every problem of the document, one
    per (path, code) (the first found), sorted by path then code (MS-ERR-002)."""

    def __init__(self, check: Check, default_requirement: str) -> None:
        self._check = check
        self._default = default_requirement

    def __call__(self, document: object) -> list[Problem]:
        found: list[Raw] = []
        self._check(document, "", found)
        if not found:
            return []
        kept: dict[tuple[str, str], Problem] = {}
        for path, code, requirement, template, shown in found:
            if (path, code) not in kept:
                requirement = requirement or self._default
                kept[path, code] = Problem(code, path, _message(template, shown, requirement),
                                           requirement)
        return sorted(kept.values(), key=lambda p: (p.path, p.code))


class Compiler:
    """Compiles the schemas of `documents` (absolute `$id` URI -> schema) on demand; every
    `$ref` target is compiled once and shared, recursive ones included."""

    def __init__(self, documents: Mapping[str, Any]) -> None:
        self._documents = documents
        self._targets: dict[str, list[Check]] = {}

    def validator(self, uri: str) -> Validator:
        """The Validator of the document whose `$id` is `uri`."""
        _, requirement = _annotations(self._documents[uri], uri, "")
        return Validator(self._target(uri + "#"), requirement or "MS-ERR-001")

    def _target(self, reference: str) -> Check:
        uri, fragment = urldefrag(reference)
        pointer = unquote(fragment)
        key = f"{uri}#{pointer}"
        cell = self._targets.get(key)
        if cell is None:  # compile it; a $ref back to it meanwhile finds the cell empty
            cell = self._targets[key] = []
            cell.append(self._node(_resolve(self._documents, uri, pointer), uri, pointer))
        if cell:
            return cell[0]
        return lambda instance, path, out: cell[0](instance, path, out)

    def _node(self, schema: object, uri: str, pointer: str) -> Check:
        if schema is True:
            return _nothing
        if schema is False:
            site = _Site({}, uri, pointer, None, None)
            return _emit_always(keyword_code("false", None), site,
                                "False schema does not allow {0}")
        if not isinstance(schema, dict):
            raise _refused(uri, pointer, "a schema that is neither an object nor a boolean")
        code, requirement = _annotations(schema, uri, pointer)
        site = _Site(schema, uri, pointer, code, requirement)
        checks: list[Check] = []
        for keyword, value in schema.items():
            if keyword in _ANNOTATIONS:
                continue
            compile_keyword = _KEYWORDS.get(keyword)
            if compile_keyword is None:
                raise _refused(uri, pointer, f"keyword {keyword!r}")
            checks.append(compile_keyword(self, value, site))
        if not checks:
            return _nothing
        if len(checks) == 1:
            return checks[0]
        every = tuple(checks)

        def check(instance: Any, path: str, out: list[Raw]) -> None:
            for each in every:
                each(instance, path, out)
        return check

    def _sub(self, schema: object, site: _Site, *tokens: str | int) -> Check:
        return self._node(schema, site.uri, site.pointer + _steps(*tokens))

    # One method per keyword: (value, site) -> Check.

    def _ref(self, value: Any, site: _Site) -> Check:
        if not isinstance(value, str):
            raise _refused(site.uri, site.pointer, "a $ref that is not a string")
        return self._target(urljoin(site.uri, value))

    def _properties(self, value: Any, site: _Site) -> Check:
        members = tuple((name, _steps(name), self._sub(sub, site, "properties", name))
                        for name, sub in value.items()
                        if sub is not True)  # `true` only declares a required member

        def check(instance: Any, path: str, out: list[Raw]) -> None:
            if isinstance(instance, dict):
                for name, step, sub in members:
                    if name in instance:
                        sub(instance[name], path + step, out)
        return check

    def _additional_properties(self, value: Any, site: _Site) -> Check:
        known = frozenset(site.schema.get("properties", {}))
        if "patternProperties" in site.schema:
            raise _refused(site.uri, site.pointer, "patternProperties")
        if isinstance(value, dict):
            sub = self._sub(value, site, "additionalProperties")

            def descend(instance: Any, path: str, out: list[Raw]) -> None:
                if isinstance(instance, dict):
                    for name, item in instance.items():
                        if name not in known:
                            sub(item, path + _step(name), out)
            return descend
        if value:
            return _nothing
        code, requirement = keyword_code("additionalProperties", site.code), site.requirement

        def check(instance: Any, path: str, out: list[Raw]) -> None:
            if isinstance(instance, dict):
                for name in instance:
                    if name not in known:
                        out.append((path + _step(name), code, requirement,
                                    "field {0} is not part of this contract", name))
        return check

    def _required(self, value: Any, site: _Site) -> Check:
        names = tuple((name, _steps(name), _literal(f"required field {name!r} is missing"))
                      for name in value)
        code, requirement = keyword_code("required", site.code), site.requirement

        def check(instance: Any, path: str, out: list[Raw]) -> None:
            if isinstance(instance, dict):
                for name, step, message in names:
                    if name not in instance:
                        out.append((path + step, code, requirement, message, None))
        return check

    def _type(self, value: Any, site: _Site) -> Check:
        names = [value] if isinstance(value, str) else list(value)
        unknown = [n for n in names if n not in _TYPES]
        if unknown:
            raise _refused(site.uri, site.pointer, f"type {unknown[0]!r}")
        tests = tuple(_TYPES[n] for n in names)
        shown = ", ".join(repr(n) for n in names)
        if len(tests) == 1:
            test = tests[0]
        else:
            def test(instance: object) -> bool:
                return any(each(instance) for each in tests)
        return _emit_unless(test, keyword_code("type", site.code), site,
                            "{0} is not of type " + _literal(shown))

    def _enum(self, value: Any, site: _Site) -> Check:
        allowed = frozenset(json_key(v) for v in value)
        return _emit_unless(lambda instance: json_key(instance) in allowed,
                            keyword_code("enum", site.code), site,
                            "{0} is not one of " + _literal(_show(value)))

    def _const(self, value: Any, site: _Site) -> Check:
        expected = json_key(value)
        return _emit_unless(lambda instance: json_key(instance) == expected,
                            keyword_code("const", site.code), site,
                            _literal(_show(value)) + " was expected")

    def _pattern(self, value: Any, site: _Site) -> Check:
        search = re.compile(value).search  # re.search semantics, as jsonschema
        code, requirement = keyword_code("pattern", site.code), site.requirement

        def check(instance: Any, path: str, out: list[Raw]) -> None:
            if isinstance(instance, str) and not search(instance):
                out.append((path, code, requirement,
                            "{0} does not follow the grammar of {1}", instance[:64]))
        return check

    def _min_length(self, value: Any, site: _Site) -> Check:
        return _emit_if(lambda i: isinstance(i, str) and len(i) < value,
                        keyword_code("minLength", site.code), site,
                        "{0} " + ("should be non-empty" if value == 1 else "is too short"))

    def _max_length(self, value: Any, site: _Site) -> Check:
        return _emit_if(lambda i: isinstance(i, str) and len(i) > value,
                        keyword_code("maxLength", site.code), site,
                        f"{{0}} is too long: at most {value} characters ({{1}})")

    def _min_items(self, value: Any, site: _Site) -> Check:
        return _emit_if(lambda i: isinstance(i, list) and len(i) < value,
                        keyword_code("minItems", site.code), site,
                        "{0} " + ("should be non-empty" if value == 1 else "is too short"))

    def _max_items(self, value: Any, site: _Site) -> Check:
        return _emit_if(lambda i: isinstance(i, list) and len(i) > value,
                        keyword_code("maxItems", site.code), site, "{0} is too long")

    def _max_properties(self, value: Any, site: _Site) -> Check:
        return _emit_if(lambda i: isinstance(i, dict) and len(i) > value,
                        keyword_code("maxProperties", site.code), site,
                        "{0} has too many properties")

    def _minimum(self, value: Any, site: _Site) -> Check:
        return _emit_if(lambda i: is_number(i) and i < value,
                        keyword_code("minimum", site.code), site,
                        "{0} is less than the minimum of " + _literal(repr(value)))

    def _maximum(self, value: Any, site: _Site) -> Check:
        return _emit_if(lambda i: is_number(i) and i > value,
                        keyword_code("maximum", site.code), site,
                        "{0} is greater than the maximum of " + _literal(repr(value)))

    def _unique_items(self, value: Any, site: _Site) -> Check:
        if not value:
            return _nothing
        return _emit_if(lambda i: isinstance(i, list) and not unique(i),
                        keyword_code("uniqueItems", site.code), site,
                        "{0} has non-unique elements")

    def _items(self, value: Any, site: _Site) -> Check:
        if "prefixItems" in site.schema:
            raise _refused(site.uri, site.pointer, "prefixItems")
        if value is False:
            return _emit_if(lambda i: isinstance(i, list) and len(i) > 0,
                            keyword_code("items", site.code), site,
                            "{0} has items where none are allowed")
        sub = self._sub(value, site, "items")

        def check(instance: Any, path: str, out: list[Raw]) -> None:
            if isinstance(instance, list):
                for index, item in enumerate(instance):
                    sub(item, f"{path}/{index}", out)
        return check

    def _all_of(self, value: Any, site: _Site) -> Check:
        subs = tuple(self._sub(s, site, "allOf", n) for n, s in enumerate(value))

        def check(instance: Any, path: str, out: list[Raw]) -> None:
            for sub in subs:
                sub(instance, path, out)
        return check

    def _one_of(self, value: Any, site: _Site) -> Check:
        subs = tuple(self._sub(s, site, "oneOf", n) for n, s in enumerate(value))
        described = site.schema.get("description")
        code, requirement = keyword_code("oneOf", site.code), site.requirement
        none = _literal(described) if described else \
            "{0} is not valid under any of the given schemas"
        many = _literal(described) if described else \
            "{0} is valid under more than one of the given schemas"

        def check(instance: Any, path: str, out: list[Raw]) -> None:
            matches = 0
            for sub in subs:
                if _valid(sub, instance):
                    matches += 1
                    if matches > 1:
                        break
            if matches != 1:
                out.append((path, code, requirement, many if matches else none, instance))
        return check

    def _any_of(self, value: Any, site: _Site) -> Check:
        subs = tuple(self._sub(s, site, "anyOf", n) for n, s in enumerate(value))
        described = site.schema.get("description")
        return _emit_unless(lambda i: any(_valid(sub, i) for sub in subs),
                            keyword_code("anyOf", site.code), site,
                            _literal(described) if described else
                            "{0} is not valid under any of the given schemas")

    def _not(self, value: Any, site: _Site) -> Check:
        sub = self._sub(value, site, "not")
        described = site.schema.get("description")
        return _emit_if(lambda i: _valid(sub, i), keyword_code("not", site.code), site,
                        _literal(described) if described else
                        "{0} matches a schema it must not match")

    def _if(self, value: Any, site: _Site) -> Check:
        condition = self._sub(value, site, "if")
        then = self._sub(site.schema["then"], site, "then") if "then" in site.schema \
            else _nothing
        otherwise = self._sub(site.schema["else"], site, "else") if "else" in site.schema \
            else _nothing

        def check(instance: Any, path: str, out: list[Raw]) -> None:
            (then if _valid(condition, instance) else otherwise)(instance, path, out)
        return check

    def _dependent_schemas(self, value: Any, site: _Site) -> Check:
        dependents = tuple((name, self._sub(s, site, "dependentSchemas", name))
                           for name, s in value.items())

        def check(instance: Any, path: str, out: list[Raw]) -> None:
            if isinstance(instance, dict):
                for name, sub in dependents:
                    if name in instance:
                        sub(instance, path, out)
        return check


_KEYWORDS: dict[str, Callable[[Compiler, Any, _Site], Check]] = {
    "$ref": Compiler._ref,
    "properties": Compiler._properties,
    "additionalProperties": Compiler._additional_properties,
    "required": Compiler._required,
    "type": Compiler._type,
    "enum": Compiler._enum,
    "const": Compiler._const,
    "pattern": Compiler._pattern,
    "minLength": Compiler._min_length,
    "maxLength": Compiler._max_length,
    "minItems": Compiler._min_items,
    "maxItems": Compiler._max_items,
    "maxProperties": Compiler._max_properties,
    "minimum": Compiler._minimum,
    "maximum": Compiler._maximum,
    "uniqueItems": Compiler._unique_items,
    "items": Compiler._items,
    "allOf": Compiler._all_of,
    "oneOf": Compiler._one_of,
    "anyOf": Compiler._any_of,
    "not": Compiler._not,
    "if": Compiler._if,
    "dependentSchemas": Compiler._dependent_schemas,
}


def is_number(value: object) -> bool:
    """JSON Schema's number: any Python number but a bool (ints, floats, Fractions)."""
    kind = value.__class__
    if kind is int or kind is float:
        return True
    return not isinstance(value, bool) and isinstance(value, numbers.Number)


def is_integer(value: object) -> bool:
    """JSON Schema's integer: an int that is not a bool, or an integral float (2.0)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


_TYPES: dict[str, Callable[[object], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": is_number,
    "integer": is_integer,
}


class _List:
    """Tag of a list's key in `json_key`."""


class _Object:
    """Tag of an object's key in `json_key`."""


class _Bool:
    """Tag of a boolean's key in `json_key`."""


def json_key(value: object) -> Hashable:
    """A hashable key equal for two values exactly when they are equal JSON values: 1 and 1.0
    are, true and 1 are not, objects compare without regard to member order. Makes `enum`,
    `const` and `uniqueItems` one set lookup each instead of pairwise comparisons."""
    if isinstance(value, bool):
        return (_Bool, value)
    if isinstance(value, list):
        return (_List, tuple(json_key(item) for item in value))
    if isinstance(value, dict):
        return (_Object, frozenset((name, json_key(item)) for name, item in value.items()))
    if isinstance(value, Hashable):
        return value
    return (type(value), id(value))  # not a JSON value: equal only to itself


def unique(items: list[Any]) -> bool:
    """Whether no two items are equal JSON values (`uniqueItems`), in linear time."""
    return len({json_key(item) for item in items}) == len(items)


class _ProblemFoundError(Exception):
    """Raised by `_FirstProblem.append`: a subschema's verdict needs no more than one problem."""


class _FirstProblem(list[Raw]):
    """A problem list that stops the walk at its first problem (used for yes/no verdicts)."""

    def append(self, item: Raw) -> None:
        raise _ProblemFoundError


_FIRST_PROBLEM = _FirstProblem()


def _valid(check: Check, instance: object) -> bool:
    try:
        check(instance, "", _FIRST_PROBLEM)
    except _ProblemFoundError:
        return False
    return True


def _nothing(instance: Any, path: str, out: list[Raw]) -> None:
    """The check of a schema that accepts everything."""


def _emit_if(fails: Callable[[Any], bool], code: str, site: _Site, template: str) -> Check:
    requirement = site.requirement

    def check(instance: Any, path: str, out: list[Raw]) -> None:
        if fails(instance):
            out.append((path, code, requirement, template, instance))
    return check


def _emit_unless(passes: Callable[[Any], bool], code: str, site: _Site,
                 template: str) -> Check:
    requirement = site.requirement

    def check(instance: Any, path: str, out: list[Raw]) -> None:
        if not passes(instance):
            out.append((path, code, requirement, template, instance))
    return check


def _emit_always(code: str, site: _Site, template: str) -> Check:
    return _emit_if(lambda _: True, code, site, template)


def _annotations(schema: Mapping[str, Any], uri: str,
                 pointer: str) -> tuple[str | None, str | None]:
    try:
        return annotations_of(schema, f"{uri}#{pointer}")
    except ValueError as error:
        raise _refused(uri, pointer, str(error)) from None


def _refused(uri: str, pointer: str, what: str) -> SchemaUnsupportedError:
    return SchemaUnsupportedError(f"{uri}#{pointer}: {what} is not supported")


def _step(name: str) -> str:
    """JSON Pointer suffix of one member name (RFC 6901: ~ is ~0, / is ~1)."""
    if "~" in name or "/" in name:
        return "/" + name.replace("~", "~0").replace("/", "~1")
    return "/" + name


def _steps(*tokens: str | int) -> str:
    """JSON Pointer suffix of reference tokens."""
    return "".join(_step(str(t)) for t in tokens)


def _resolve(documents: Mapping[str, Any], uri: str, pointer: str) -> object:
    if uri not in documents:
        raise SchemaUnsupportedError(f"$ref to unknown schema {uri!r}")
    node: Any = documents[uri]
    for token in pointer.split("/")[1:] if pointer else []:
        token = token.replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(token)] if isinstance(node, list) else node[token]
        except (KeyError, IndexError, ValueError, TypeError):
            raise SchemaUnsupportedError(f"$ref to missing {uri}#{pointer}") from None
    return node


_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 72
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxdict = 3, 8, 8


def _show(value: object) -> str:
    """A short repr for a message: never the whole of a large hostile value."""
    if (isinstance(value, str) and len(value) <= 64) or value is None \
            or isinstance(value, float) or (isinstance(value, int) and value.bit_length() <= 200):
        return repr(value)
    try:
        return _SHOW.repr(value)
    except ValueError:  # an int too long for repr
        return f"a {type(value).__name__} too long to show"


def _literal(text: str) -> str:
    """`text` as a message template that shows it verbatim."""
    return text.replace("{", "{{").replace("}", "}}")


def _message(template: str, shown: object, requirement: str) -> str:
    return template.format(_show(shown), requirement)[:200]
