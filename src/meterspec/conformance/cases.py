"""Loading the suite (case files or suite-v1.json) and selecting cases (INTERPRETING.md 1, 2)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterspec.conformance.data import HarnessError, loads, read_json, validator

CASES_DIR = Path("cases") / "v1"
SUITE_FILE = "suite-v1.json"
SUITE_VERSION = 1
"""The bundle's format (`"version"`), not the suite's release: see RELEASE_MEMBER."""
RELEASE_MEMBER = "suiteVersion"
"""The bundle member that carries the suite's semantic version (INTERPRETING.md 7)."""
RULES_FILE = "INTERPRETING.md"
_RELEASE = re.compile(r"^Document version \*\*([0-9]+\.[0-9]+\.[0-9]+)\*\*", re.MULTILINE)
_SEMVER = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")


@dataclass(frozen=True)
class Case:
    """One case, with where it came from."""

    id: str
    area: str
    file: str
    description: str
    operation: str
    input: dict[str, Any]
    expected: dict[str, Any]  # {"output": [...]} or {"error": [...]}
    features: tuple[str, ...]
    requirements: tuple[str, ...]

    def request(self) -> dict[str, Any]:
        """The case as the runner sends it: never the expected result."""
        return {"id": self.id, "operation": self.operation, "input": self.input}


def case_files(root: Path) -> dict[str, Any]:
    """Every case file under root/cases/v1, by path relative to it, in code-point order."""
    folder = root / CASES_DIR
    if not folder.is_dir():
        raise HarnessError(f"no case files: {folder} is not a directory")
    paths = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*.json") if p.is_file()}
    return {name: read_json(paths[name]) for name in sorted(paths)}


def release(root: Path) -> str:
    """The suite's semantic version: the `Document version **X.Y.Z**` line of root's
    INTERPRETING.md, whose version is the suite's (INTERPRETING.md 7)."""
    path = root / RULES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise HarnessError(f"no suite version: cannot read {path}: {error}") from None
    match = _RELEASE.search(text)
    if match is None:
        raise HarnessError(f"no suite version: {path} has no 'Document version **X.Y.Z**' line")
    return match.group(1)


def suite_version(root: Path) -> str | None:
    """The version of the suite at root, as a run would report it, without loading its
    cases: INTERPRETING.md's beside case folders, else suite-v1.json's; None if neither."""
    try:
        if (root / CASES_DIR).is_dir():
            return release(root)
        version = read_json(root / SUITE_FILE).get(RELEASE_MEMBER)
    except (HarnessError, AttributeError):  # AttributeError: the file is not an object
        return None
    return version if isinstance(version, str) else None


def bundle(files: dict[str, Any], version: str) -> bytes:
    """suite-v1.json as `build` writes it: indent 1, UTF-8, a final newline."""
    suite = {"version": SUITE_VERSION, RELEASE_MEMBER: version, "files": files}
    return (json.dumps(suite, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


@dataclass(frozen=True)
class Suite:
    """The case files of a suite and which suite they are (INTERPRETING.md 6): its semantic
    version and the SHA-256 of its suite-v1.json: the file read, or, for case folders, the
    file `build` would write from them (None without a version to build it with)."""

    files: dict[str, Any]
    version: str | None
    sha256: str | None
    source: str  # "suite-v1.json" or "cases/v1"

    def identity(self) -> dict[str, Any]:
        """The reports' `suite` member."""
        return {"version": self.version, "sha256": self.sha256, "source": self.source}


def load_suite(source: Path) -> Suite:
    """A suite: a conformance/ directory (its cases/v1, else its suite-v1.json) or a
    suite-v1.json file, which must match a suite-v1.json.sha256 beside it."""
    if source.is_dir():
        if (source / CASES_DIR).is_dir():
            files = case_files(source)
            try:
                known = release(source)
            except HarnessError:
                return Suite(files, None, None, CASES_DIR.as_posix())
            digest = hashlib.sha256(bundle(files, known)).hexdigest()
            return Suite(files, known, digest, CASES_DIR.as_posix())
        source = source / SUITE_FILE
    if not source.is_file():
        raise HarnessError(f"no suite at {source}: expected a conformance directory with "
                           f"{CASES_DIR.as_posix()}/ or a {SUITE_FILE} file")
    data = _read_bytes(source)
    digest = hashlib.sha256(data).hexdigest()
    _verify_checksum(source, digest)
    try:
        suite = loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise HarnessError(f"{source} is not valid JSON: {str(error)[:200]}") from None
    if not isinstance(suite, dict) or suite.get("version") != SUITE_VERSION or not isinstance(
            suite.get("files"), dict):
        raise HarnessError(f"{source} is not a version {SUITE_VERSION} suite "
                           '({"version": 1, "files": {...}})')
    version = suite.get(RELEASE_MEMBER)  # absent from bundles built before suite 1.3.0's
    if version is not None and not (isinstance(version, str) and _SEMVER.fullmatch(version)):
        raise HarnessError(f"{source}: {RELEASE_MEMBER} is not a version X.Y.Z")
    return Suite(suite["files"], version, digest, SUITE_FILE)


def load_files(source: Path) -> dict[str, Any]:
    """The case files of the suite at source (see load_suite)."""
    return load_suite(source).files


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise HarnessError(f"cannot read {path}: {error}") from None


def _verify_checksum(path: Path, digest: str) -> None:
    """A vendored suite file with its .sha256 next to it must match it (INTERPRETING.md 1)."""
    checksum = path.with_name(path.name + ".sha256")
    if not checksum.is_file():
        return
    words = _read_bytes(checksum).decode("utf-8", "replace").split()
    if not words or words[0].lower() != digest:
        raise HarnessError(f"{path} does not match its checksum in {checksum}")


def load_cases(source: Path | Suite) -> list[Case]:
    """Every case of the suite (at source), in file order then case order. Files must be valid
    case files; `meterspec conformance check` says more about what is wrong."""
    suite = source if isinstance(source, Suite) else load_suite(source)
    cases: list[Case] = []
    schema = validator("case-file")
    for name, document in suite.files.items():
        error = next(iter(schema.iter_errors(document)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            raise HarnessError(f"{name} is not a valid case file (at /{where}); run "
                               "`meterspec conformance check` for details")
        for item in document["cases"]:
            kind = "output" if "output" in item else "error"
            cases.append(Case(
                id=item["id"], area=document["area"], file=name,
                description=item["description"], operation=item["operation"],
                input=item["input"], expected={kind: item[kind]},
                features=tuple(item["features"]), requirements=tuple(item["requirements"])))
    return cases


def select(cases: Sequence[Case], *, areas: Iterable[str] = (), features: Iterable[str] = (),
           ids: Iterable[str] = ()) -> list[Case]:
    """The cases every given filter admits; filters of one kind admit any of their values.
    Naming an area, feature or id the suite does not have is a harness error (a typo would
    otherwise select nothing, or less than meant, and still look like a result)."""
    wanted = {"area": set(areas), "feature": set(features), "case": set(ids)}
    known = {"area": {c.area for c in cases}, "feature": {f for c in cases for f in c.features},
             "case": {c.id for c in cases}}
    for kind, values in wanted.items():
        unknown = sorted(values - known[kind])
        if unknown:
            raise HarnessError(f"no {kind} named {', '.join(unknown)} in the suite")
    chosen = [c for c in cases
              if (not wanted["area"] or c.area in wanted["area"])
              and (not wanted["feature"] or wanted["feature"] & set(c.features))
              and (not wanted["case"] or c.id in wanted["case"])]
    if not chosen:
        raise HarnessError("the filters select no case")
    return chosen
