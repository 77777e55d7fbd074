"""Every public name the API reference shows has a docstring (issue 17): each module of
docs/reference/python/, and its public classes, functions and methods, as mkdocstrings finds
them (griffe, which it uses). Fields of classes (msgspec Structs, NamedTuples) are described
by the schema reference instead and are not required here."""

from __future__ import annotations

from pathlib import Path

import griffe  # mkdocstrings-python's, in the dev extra

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "reference" / "python"


def _undocumented(obj: griffe.Object | griffe.Alias, path: str) -> list[str]:
    missing = []
    for name, member in obj.members.items():
        if name.startswith("_") or member.is_alias or member.is_module or member.is_attribute:
            continue
        if member.docstring is None or not member.docstring.value.strip():
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
    """The walk above can fail: a public function without a docstring is reported."""
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "__init__.py").write_text(
        '"""A module."""\n\nclass Shown:\n    """A class."""\n\n    def method(self) -> None:\n'
        '        return None\n\n\ndef _hidden() -> None:\n    return None\n')
    sample = griffe.GriffeLoader(search_paths=[str(tmp_path)]).load("sample")
    assert _undocumented(sample, "sample") == ["sample.Shown.method"]
