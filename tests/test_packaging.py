"""Licensing (issue 11): LICENSE is the Apache License 2.0 for all of the repository (NOTICE
says so, README.md says why), declared as a PEP 639 expression, and shipped in the wheel and
the sdist, whose metadata carry the version of meterspec.__version__.

Releasing (issue 17): the wheel carries what `validate` and `conformance check|build|run` read
and works installed in a fresh virtual environment outside the checkout; the sdist carries what
the test suite reads and runs it. Both are built once per module (about 10 s: the build
installs setuptools in an isolated environment from the configured package index)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterspec import __version__
from meterspec.cli import version_text

ROOT = Path(__file__).resolve().parents[1]
# The SHA-256 of https://www.apache.org/licenses/LICENSE-2.0.txt, the standard text.
APACHE_2_0 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
LICENSE_FILES = ("LICENSE", "NOTICE")
# What the tests read besides src/: the sdist must carry all of it (MANIFEST.in).
TEST_INPUTS = ("specs", "schemas", "conformance", "docs", "examples", "scripts", "benchmarks",
               "tests", "typescript")
SKIPPED = ("__pycache__", "*.egg-info", "node_modules", "*.pyc", ".pytest_cache", "data")


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


def _files(folder: Path) -> Iterator[str]:
    """Paths under folder, relative to it, as a build copies them (SKIPPED left out)."""
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part == skip or Path(part).match(skip)
                                      for part in relative.parts for skip in SKIPPED):
            yield relative.as_posix()


def _source_tree(into: Path) -> Path:
    """What a build reads, copied (src/ links to schemas/, specs/ and conformance/), so that
    the build's own files are not written into the repository."""
    tree = into / "meterspec"
    ignore = shutil.ignore_patterns(*SKIPPED)
    for name in ("src", ".ci", *TEST_INPUTS):
        shutil.copytree(ROOT / name, tree / name, symlinks=True, ignore=ignore)
    for name in ("pyproject.toml", "MANIFEST.in", "README.md", "CHANGELOG.md", "CONTRIBUTING.md",
                 "mkdocs.yml", "action.yml", "Dockerfile", ".dockerignore", *LICENSE_FILES):
        shutil.copy2(ROOT / name, tree / name)
    return tree


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build`: the sdist, then the wheel built from it."""
    pytest.importorskip("build")
    tmp = tmp_path_factory.mktemp("build")
    out = tmp / "dist"
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out),
                             str(_source_tree(tmp))], capture_output=True, text=True,
                            check=False, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def _wheel(dists: Path) -> Path:
    return dists / f"meterspec-{__version__}-py3-none-any.whl"


def test_the_wheel_and_the_sdist_carry_the_license(dists: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(_wheel(dists)) as archive:
        info = f"meterspec-{__version__}.dist-info"
        for name in LICENSE_FILES:
            assert archive.read(f"{info}/licenses/{name}") == (ROOT / name).read_bytes()
        metadata = archive.read(f"{info}/METADATA").decode("utf-8").splitlines()
        archive.extractall(tmp_path / "installed")
    assert f"Version: {__version__}" in metadata
    assert "License-Expression: Apache-2.0" in metadata
    assert {f"License-File: {name}" for name in LICENSE_FILES} <= set(metadata)
    assert not any(line.startswith("Classifier: License ::") for line in metadata)
    for label in ("Documentation", "Source", "Issues", "Changelog"):
        assert any(line.startswith(f"Project-URL: {label}, https://") for line in metadata)
    assert "Classifier: Typing :: Typed" in metadata
    with tarfile.open(dists / f"meterspec-{__version__}.tar.gz") as sdist:
        for name in LICENSE_FILES:
            member = sdist.extractfile(f"meterspec-{__version__}/{name}")
            assert member is not None and member.read() == (ROOT / name).read_bytes()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import meterspec.cli as c; "
            "assert c.__file__.startswith(sys.argv[1]), c.__file__; print(c.version_text())")
    printed = subprocess.run([sys.executable, "-c", code, str(tmp_path / "installed")],
                             capture_output=True, text=True, check=True).stdout
    assert printed == version_text() + "\n"


def test_the_wheel_carries_the_suite_and_the_specs(dists: Path) -> None:
    """Every case file, the rules, the adapter guide, the suite's schemas and every spec:
    what `conformance check` reads (it holds the cases to specs/)."""
    with zipfile.ZipFile(_wheel(dists)) as archive:
        names = set(archive.namelist())
    data = "meterspec/conformance_data/"
    expected = {data + name for name in _files(ROOT / "conformance")}
    expected |= {f"meterspec/specs/{p.name}" for p in (ROOT / "specs").glob("*.md")}
    expected |= {f"meterspec/schemas/{p.name}" for p in (ROOT / "schemas").glob("*.json")}
    assert expected - names == set()
    assert f"{data}INTERPRETING.md" in names and f"{data}ADAPTERS.md" in names


def test_the_sdist_carries_what_the_tests_read_and_runs_them(dists: Path,
                                                             tmp_path: Path) -> None:
    """Every file of specs/, schemas/, conformance/, docs/, examples/, scripts/, benchmarks/
    and tests/; from the unpacked sdist, every test module imports (collection) and the
    version and example tests pass against the sdist's own src/."""
    with tarfile.open(dists / f"meterspec-{__version__}.tar.gz") as sdist:
        names = set(sdist.getnames())
        sdist.extractall(tmp_path, filter="data")
    top = f"meterspec-{__version__}"
    for folder in TEST_INPUTS:
        missing = {f"{top}/{folder}/{name}" for name in _files(ROOT / folder)} - names
        assert missing == set(), f"not in the sdist: {sorted(missing)[:5]}"
    unpacked = tmp_path / top
    env = {**os.environ, "PYTHONPATH": str(unpacked / "src")}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    collected = subprocess.run([*command, "--collect-only", "tests"], cwd=unpacked, env=env,
                               capture_output=True, text=True, check=False, timeout=300)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-2000:]
    assert "error" not in collected.stdout.splitlines()[-1]
    ran = subprocess.run([*command, "tests/test_versions.py", "tests/test_examples.py"],
                         cwd=unpacked, env=env, capture_output=True, text=True, check=False,
                         timeout=300)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    where = subprocess.run([sys.executable, "-c", "import meterspec; print(meterspec.__file__)"],
                           cwd=unpacked, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(unpacked / "src"))


@pytest.fixture(scope="module")
def installed(dists: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment outside the checkout with only the wheel installed in it
    (pip --no-deps --no-index: offline and fast); its dependencies are this interpreter's,
    reached by a .pth file, which adds the folder but not the editable checkout in it."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(_wheel(dists))], check=True, timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = {p for p in sys.path if p.endswith("-packages") and Path(p).is_dir()}
    (Path(site) / "meterspec-test-deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return venv


def _installed_run(venv: Path, *args: str, stdin: str | None = None,
                   cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=cwd, env=env,
                          input=stdin, capture_output=True, text=True, check=False,
                          timeout=300)


def test_the_installed_wheel_runs_the_cli_outside_the_checkout(installed: Path,
                                                               tmp_path: Path) -> None:
    """From a directory outside the checkout: the module is the wheel's, --version and
    `python -m meterspec` agree, validate and run give the api-calls example's hand-worked
    readings, and the suite checks, is up to date and passes against the reference."""
    where = _installed_run(installed, "python", "-c", "import meterspec; "
                           "print(meterspec.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(installed)), where.stdout + where.stderr
    version = _installed_run(installed, "meterspec", "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout == version_text() + "\n"
    module = _installed_run(installed, "python", "-m", "meterspec", "--version", cwd=tmp_path)
    assert module.stdout == version.stdout
    example = ROOT / "examples" / "api-calls"
    for file in ("config.json", "request.json"):
        (tmp_path / file).write_bytes((example / file).read_bytes())
    valid = _installed_run(installed, "meterspec", "validate", "config", "config.json",
                           cwd=tmp_path)
    assert valid.returncode == 0 and "1 valid documents, 0 rejected" in valid.stderr
    run = _installed_run(installed, "meterspec", "run", "--config", "config.json", "--request",
                         "request.json", "-", stdin=(example / "events.ndjson").read_text(),
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    readings = [json.loads(line) for line in run.stdout.splitlines()]
    expected = json.loads((example / "expected-readings.json").read_text())
    assert [{k: v for k, v in r.items() if k != "id"} for r in readings] == expected
    # The checkout's own verdict ("no problems" on a finished tree) is the wheel's too.
    check = _installed_run(installed, "meterspec", "conformance", "check", cwd=tmp_path)
    here = subprocess.run([sys.executable, "-m", "meterspec", "conformance", "check"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert (check.returncode, check.stdout) == (here.returncode, here.stdout), check.stderr
    assert check.stdout.endswith(("cases, no problems\n", "problem(s)\n"))
    build = _installed_run(installed, "meterspec", "conformance", "build", "--check",
                           cwd=tmp_path)
    assert build.returncode == 0 and "up to date" in build.stdout, build.stdout + build.stderr
    suite = _installed_run(installed, "meterspec", "conformance", "run", "--impl",
                           "python:meterspec", "--area", "aggregation", "--report", "r.jsonl",
                           cwd=tmp_path)
    assert suite.returncode == 0 and "PASS:" in suite.stdout, suite.stdout[-2000:]
    assert (tmp_path / "r.jsonl").stat().st_size > 0
