"""Licensing (issue 11): LICENSE is the Apache License 2.0 for all of the repository (NOTICE
says so, README.md says why), declared as a PEP 639 expression, and shipped in the wheel and
the sdist, whose metadata carry the version of meterspec.__version__."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from meterspec import __version__
from meterspec.cli import version_text

ROOT = Path(__file__).resolve().parents[1]
# The SHA-256 of https://www.apache.org/licenses/LICENSE-2.0.txt, the standard text.
APACHE_2_0 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
LICENSE_FILES = ("LICENSE", "NOTICE")


def test_the_license_is_the_standard_apache_2_0_text() -> None:
    assert hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest() == APACHE_2_0
    notice = (ROOT / "NOTICE").read_text(encoding="utf-8")
    for part in ("Apache License, Version 2.0", "src/", "specs/", "schemas/", "conformance/"):
        assert part in notice
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## License" in readme and "Apache-2.0" in readme.split("## License")[1]


def test_the_project_declares_it_as_an_spdx_expression() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "Apache-2.0"
    assert project["project"]["license-files"] == list(LICENSE_FILES)
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])


def _source_tree(into: Path) -> Path:
    """What a build reads, copied (src/ links to schemas/ and conformance/), so that the
    build's own files are not written into the repository."""
    tree = into / "meterspec"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "node_modules")
    for name in ("src", "schemas", "conformance"):
        shutil.copytree(ROOT / name, tree / name, symlinks=True, ignore=ignore)
    for name in ("pyproject.toml", "README.md", *LICENSE_FILES):
        shutil.copy2(ROOT / name, tree / name)
    return tree


def test_the_wheel_and_the_sdist_carry_the_license(tmp_path: Path) -> None:
    """`python -m build`: the sdist, then the wheel built from it (about 10 s: the build
    installs setuptools in an isolated environment from the configured package index)."""
    pytest.importorskip("build")
    out = tmp_path / "dist"
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out),
                             str(_source_tree(tmp_path))], capture_output=True, text=True,
                            check=False, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    wheel = out / f"meterspec-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        info = f"meterspec-{__version__}.dist-info"
        for name in LICENSE_FILES:
            assert archive.read(f"{info}/licenses/{name}") == (ROOT / name).read_bytes()
        metadata = archive.read(f"{info}/METADATA").decode("utf-8").splitlines()
        archive.extractall(tmp_path / "installed")
    assert f"Version: {__version__}" in metadata
    assert "License-Expression: Apache-2.0" in metadata
    assert {f"License-File: {name}" for name in LICENSE_FILES} <= set(metadata)
    with tarfile.open(out / f"meterspec-{__version__}.tar.gz") as sdist:
        for name in LICENSE_FILES:
            member = sdist.extractfile(f"meterspec-{__version__}/{name}")
            assert member is not None and member.read() == (ROOT / name).read_bytes()
    # The wheel has the suite bundle, not the case folders: --version reads the bundle.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import meterspec.cli as c; "
            "assert c.__file__.startswith(sys.argv[1]), c.__file__; print(c.version_text())")
    printed = subprocess.run([sys.executable, "-c", code, str(tmp_path / "installed")],
                             capture_output=True, text=True, check=True).stdout
    assert printed == version_text() + "\n"
