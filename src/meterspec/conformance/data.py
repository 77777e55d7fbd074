"""Where the suite lives and the harness's own schemas (case files, protocol messages)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator


class HarnessError(Exception):
    """The harness itself cannot go on (missing files, bad arguments): exit 2, no traceback."""


def default_root() -> Path:
    """The conformance/ directory: the package's view of it (a symlink in a source tree)."""
    return Path(str(resources.files("meterspec").joinpath("conformance_data"))).resolve()


def read_json(path: Path) -> Any:
    """A JSON file, strictly: no duplicate members, no NaN or Infinity."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise HarnessError(f"cannot read {path}: {error}") from None
    try:
        return loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: nested beyond ~1000
        raise HarnessError(f"{path} is not valid JSON: {str(error)[:200]}") from None


def loads(text: str) -> Any:
    """json.loads that rejects what is not JSON (NaN, Infinity) and duplicate members."""
    return json.loads(text, object_pairs_hook=_unique_members, parse_constant=_no_constant)


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate member {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@cache
def harness_schema(name: str) -> dict[str, Any]:
    """conformance/schemas/<name>.schema.json, as shipped with the package."""
    path = resources.files("meterspec").joinpath(f"conformance_data/schemas/{name}.schema.json")
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


@cache
def validator(name: str, definition: str | None = None) -> Draft202012Validator:
    """A validator for a harness schema, or for one of its $defs."""
    schema = harness_schema(name)
    if definition is not None:
        schema = {**schema, "$ref": f"#/$defs/{definition}"}
    return Draft202012Validator(schema)
