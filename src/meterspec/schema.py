"""The JSON Schemas in schemas/ as validators that report every problem with a stable code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import referencing
from jsonschema.exceptions import ValidationError

from meterspec.errors import Problem, pointer

KINDS = {
    "event": "event-payload",
    "config": "metering-config",
    "record": "meter-record",
    "reading": "meter-reading",
    "request": "aggregation-request",
    "problem": "problem",
    "plan": "plan",
    "rated-charge": "rated-charge",
    "ingestion-state": "ingestion-state",
    "quota-policy": "quota-policy",
    "quota-check": "quota-check",
    "quota-decision": "quota-decision",
    "rate-limit-policy": "rate-limit-policy",
    "rate-limit-state": "rate-limit-state",
    "invoice-request": "invoice-request",
    "invoice": "invoice",
    "usage-recorded": "domain-event-usage-recorded",
    "quota-event": "domain-event-quota",
    "invoice-generated": "domain-event-invoice-generated",
    "billing-period-closed": "domain-event-billing-period-closed",
    "adjustment": "adjustment",
    "projection": "projection",
}
_BASE = "https://meterspec.dev/schemas/v1/"

# Keyword -> error code when the failing subschema does not name its own x-code.
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


# Keywords about a document's structure keep their own code even inside a subschema that names
# an x-code for its value rules (a quantity given as a JSON number is wrong-type, not
# invalid-quantity).
_STRUCTURAL = frozenset({"type", "required", "additionalProperties", "minItems", "maxItems",
                         "uniqueItems"})


def load_schema(name: str) -> dict[str, Any]:
    text = resources.files("meterspec").joinpath(f"schemas/{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _registry() -> referencing.Registry[Any]:
    names = ["common", *KINDS.values()]
    return referencing.Registry().with_resources(
        (_BASE + f"{n}.schema.json", referencing.Resource.from_contents(load_schema(n)))
        for n in names
    )


@cache
def validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(KINDS[kind]), registry=_registry())


def schema_problems(kind: str, document: object) -> list[Problem]:
    """Every schema violation in document, as Problems sorted by path (MS-ERR-002)."""
    schema = validator(kind).schema
    default = schema.get("x-requirement", "MS-ERR-001") if isinstance(schema, dict) else ""
    found: dict[tuple[str, str], Problem] = {}
    for error in validator(kind).iter_errors(document):
        for problem in _problems(error, default):
            found.setdefault((problem.path, problem.code), problem)
    return sorted(found.values(), key=lambda p: (p.path, p.code))


def _problems(error: ValidationError, requirement: str) -> Iterator[Problem]:
    subschema = error.schema if isinstance(error.schema, dict) else {}
    requirement = subschema.get("x-requirement", requirement)
    base = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        for name in error.validator_value:  # type: ignore[union-attr]
            if name not in instance:
                yield Problem("missing-field", pointer(*base, name),
                              f"required field {name!r} is missing", requirement)
        return
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = subschema.get("properties", {})
        for name in instance:
            if name not in known:
                yield Problem("unknown-field", pointer(*base, name),
                              f"field {name!r} is not part of this contract", requirement)
        return
    keyword = str(error.validator)
    code = _KEYWORD_CODES.get(keyword) if keyword in _STRUCTURAL else None
    code = code or subschema.get("x-code") or _KEYWORD_CODES.get(keyword, "invalid-value")
    if error.validator == "pattern":
        message = f"{str(instance)[:64]!r} does not follow the grammar of {requirement}"
    elif error.validator in ("oneOf", "anyOf", "not") and "description" in subschema:
        message = subschema["description"]
    else:
        message = error.message[:200]
    yield Problem(code, pointer(*base), message, requirement)
