"""Versions, each stated once (issue 11): the package's (`meterspec.__version__`, which
pyproject.toml reads), the specification's (the specs' titles and status lines) and the
conformance suite's (INTERPRETING.md, copied into suite-v1.json); `meterspec --version` and
`python -m meterspec --version` print all three."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import meterspec
from meterspec import SPEC_VERSION, __version__
from meterspec.cli import main, version_text
from meterspec.conformance.adapter import implementation
from meterspec.conformance.cases import suite_version

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "conformance" / "suite-v1.json"


def _bundle_version() -> str:
    version: str = json.loads(BUNDLE.read_bytes())["suiteVersion"]
    return version


def test_version_prints_the_package_spec_and_suite_versions(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    expected = f"meterspec {__version__} (spec {SPEC_VERSION}, suite {_bundle_version()})\n"
    assert capsys.readouterr().out == expected
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", _bundle_version())
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", __version__)


def test_python_dash_m_meterspec_is_the_command() -> None:
    result = subprocess.run([sys.executable, "-m", "meterspec", "--version"],
                            capture_output=True, text=True, check=False, cwd=ROOT)
    assert (result.returncode, result.stdout, result.stderr) == (0, version_text() + "\n", "")
    result = subprocess.run([sys.executable, "-m", "meterspec", "conformance", "run",
                             "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "--allow-skips" in result.stdout


def test_the_suite_version_is_read_from_the_bundle_without_case_folders(
        tmp_path: Path) -> None:
    (tmp_path / "suite-v1.json").write_bytes(BUNDLE.read_bytes())
    assert suite_version(tmp_path) == _bundle_version() == suite_version(ROOT / "conformance")
    (tmp_path / "suite-v1.json").write_text('{"version": 1, "files": {}}')
    assert suite_version(tmp_path) is None
    (tmp_path / "suite-v1.json").write_text("[]")
    assert suite_version(tmp_path) is None
    assert suite_version(tmp_path / "none") is None


def test_the_package_version_is_stated_once() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "meterspec.__version__"}
    assert implementation()["version"] == __version__
    assert "__version__" in meterspec.__all__ and "SPEC_VERSION" in meterspec.__all__


def _number(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def test_the_spec_version_is_the_one_the_specs_state() -> None:
    """SPEC_VERSION is core.md's title; every other spec file's title names the version it last
    changed in: of the same major version, and not later."""
    titles = {}
    for path in sorted((ROOT / "specs").glob("*.md")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        title = re.fullmatch(r"# meterspec .*?, version ([0-9]+(?:\.[0-9]+)*)(?::.*)?", first)
        if title is not None:
            titles[path.name] = title.group(1)
    assert {"core.md", "errors.md", "billing.md"} <= set(titles), titles
    assert titles["core.md"] == SPEC_VERSION
    for name, version in titles.items():
        assert _number(version)[0] == _number(SPEC_VERSION)[0], (name, version)
        assert _number(version) <= _number(SPEC_VERSION), (name, version)
