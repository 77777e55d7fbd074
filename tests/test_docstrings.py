"""Every public name the API reference shows has a docstring (issue 17): each module of
docs/reference/python/, and its public classes, functions, methods and attributes, as
mkdocstrings finds them (griffe, which it uses). Attributes of a class are its fields (of
msgspec Structs, dataclasses, NamedTuples), its properties and the attributes its __init__
sets, each documented by a string on the line after it (a property by its own docstring); the
reference shows them all (show_if_no_docstring), so each needs a description. Module-level
constants, type aliases and TypeVars are attributes of the module, shown too, and are required
as well. A docstring that only repeats the name ("The unit." for `unit`) counts as missing."""

from __future__ import annotations

from pathlib import Path

import griffe  # mkdocstrings-python's, in the dev extra

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "reference" / "python"


def _undocumented(obj: griffe.Object | griffe.Alias, path: str) -> list[str]:
    missing = []
    for name, member in obj.members.items():
        if name.startswith("_") or member.is_alias or member.is_module:
            continue
        text = "" if member.docstring is None else member.docstring.value.strip()
        if text.lower().rstrip(".") in ("", name.lower(), f"the {name.replace('_', ' ').lower()}"):
            missing.append(f"{path}.{name}")
        if member.is_class:
            missing += _undocumented(member, f"{path}.{name}")
    return missing


def test_every_public_name_of_the_api_reference_has_a_docstring() -> None:
    package = griffe.GriffeLoader(search_paths=[str(ROOT / "src")]).load("meterspec")
    modules = sorted(p.stem for p in PAGES.glob("meterspec*.md"))
    assert "meterspec.readings" in modules and "meterspec.aggregations" in modules
    missing = []
    for name in modules:
        module = package if name == "meterspec" else package[name.removeprefix("meterspec.")]
        if module.docstring is None:
            missing.append(name)
        missing += _undocumented(module, name)
    assert missing == [], f"{len(missing)} public names without a docstring: {missing}"


def test_the_check_sees_a_missing_docstring(tmp_path: Path) -> None:
    """The walk above can fail: a public method, a field and a constant without a docstring,
    and a field whose docstring only repeats its name, are reported; a documented field and
    private names are not."""
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "__init__.py").write_text(
        '"""A module."""\n\nLIMIT = 3\n_PRIVATE = 4\n\n\nclass Shown:\n    """A class."""\n\n'
        '    quantity: str\n    """The canonical quantity."""\n    unit: str\n    _slot: int\n'
        '    currency_code: str\n    """The currency code."""\n\n'
        '    def method(self) -> None:\n        return None\n\n\n'
        'def _hidden() -> None:\n    return None\n')
    sample = griffe.GriffeLoader(search_paths=[str(tmp_path)]).load("sample")
    assert _undocumented(sample, "sample") == [
        "sample.LIMIT", "sample.Shown.unit", "sample.Shown.currency_code", "sample.Shown.method"]
