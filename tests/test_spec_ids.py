"""Requirement ids tie prose, schemas, code and tests together: none may dangle."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ID = re.compile(r"MS-[A-Z]+-[0-9]{3}")
DEFINITION = re.compile(r"^\*\*(MS-[A-Z]+-[0-9]{3}) ", re.MULTILINE)


def _defined() -> list[str]:
    return [m for f in sorted((ROOT / "specs").glob("*.md"))
            for m in DEFINITION.findall(f.read_text())]


def _used_in(*folders: str) -> set[str]:
    return {m for folder in folders for f in (ROOT / folder).rglob("*")
            if f.is_file() and f.suffix in (".py", ".json") for m in ID.findall(f.read_text())}


def test_every_requirement_is_defined_once() -> None:
    defined = _defined()
    assert defined, "no requirement definitions found in specs/"
    assert len(defined) == len(set(defined)), sorted(d for d in defined if defined.count(d) > 1)


def test_code_and_schemas_cite_only_defined_requirements() -> None:
    assert _used_in("src", "schemas") - set(_defined()) == set()


def test_every_requirement_is_exercised_by_a_test() -> None:
    untested = set(_defined()) - _used_in("tests")
    assert not untested, f"requirements with no test citing them: {sorted(untested)}"


def test_schema_annotations_cite_defined_requirements() -> None:
    """The requirements that schemas name for their problems (`$comment`, MS-ERR-006)."""
    comments = [m for f in sorted((ROOT / "schemas").glob("*.schema.json"))
                for m in re.findall(r'"\$comment": "([^"]*)"', f.read_text())]
    cited = {r for c in comments for r in re.findall(r"(?:^| )requirement=(MS-[A-Z]+-[0-9]{3})", c)}
    assert len(cited) > 40 and cited <= set(_defined()), sorted(cited - set(_defined()))
