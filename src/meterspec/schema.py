"""The JSON Schemas in schemas/ as validators that report every problem with a stable code."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from meterspec.errors import Problem
from meterspec.schema_compiler import Compiler, Validator

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
    "quota-state": "quota-state",
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
    "stripe-request": "stripe-request",
    "ledger-row": "ledger-row",
}
"""`meterspec validate`'s kind -> its schema's name in schemas/."""
_BASE = "https://meterspec.dev/schemas/v1/"


def load_schema(name: str) -> dict[str, Any]:
    """schemas/<name>.schema.json as shipped with the package, parsed."""
    text = resources.files("meterspec").joinpath(f"schemas/{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_uri(name: str) -> str:
    """The `$id` of schemas/<name>.schema.json, against which its `$ref`s resolve."""
    return f"{_BASE}{name}.schema.json"


@cache
def _compiler() -> Compiler:
    return Compiler({schema_uri(n): load_schema(n) for n in ["common", *KINDS.values()]})


@cache
def _validator(kind: str) -> Validator:
    return _compiler().validator(schema_uri(KINDS[kind]))


def schema_problems(kind: str, document: object) -> list[Problem]:
    """Every schema violation in document, as Problems sorted by path (MS-ERR-002), with the
    codes and paths of MS-ERR-006; compiled once per kind (meterspec.schema_compiler)."""
    return _validator(kind)(document)
