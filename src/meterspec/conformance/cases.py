"""Loading the suite (case files or suite-v1.json) and selecting cases (INTERPRETING.md 1, 2)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterspec.conformance.data import HarnessError, read_json, validator

CASES_DIR = Path("cases") / "v1"
SUITE_FILE = "suite-v1.json"
SUITE_VERSION = 1


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


def load_files(source: Path) -> dict[str, Any]:
    """The case files of a suite: a conformance/ directory (its cases/v1, else its
    suite-v1.json) or a suite-v1.json file."""
    if source.is_dir():
        if (source / CASES_DIR).is_dir():
            return case_files(source)
        source = source / SUITE_FILE
    if not source.is_file():
        raise HarnessError(f"no suite at {source}: expected a conformance directory with "
                           f"{CASES_DIR.as_posix()}/ or a {SUITE_FILE} file")
    _verify_checksum(source)
    suite = read_json(source)
    if not isinstance(suite, dict) or suite.get("version") != SUITE_VERSION or not isinstance(
            suite.get("files"), dict):
        raise HarnessError(f"{source} is not a version {SUITE_VERSION} suite "
                           '({"version": 1, "files": {...}})')
    files: dict[str, Any] = suite["files"]
    return files


def _verify_checksum(path: Path) -> None:
    """A vendored suite file with its .sha256 next to it must match it (INTERPRETING.md 1)."""
    checksum = path.with_name(path.name + ".sha256")
    if not checksum.is_file():
        return
    words = checksum.read_text(encoding="utf-8").split()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not words or words[0].lower() != digest:
        raise HarnessError(f"{path} does not match its checksum in {checksum}")


def load_cases(source: Path) -> list[Case]:
    """Every case of the suite at source, in file order then case order. Files must be valid
    case files; `meterspec conformance check` says more about what is wrong."""
    cases: list[Case] = []
    schema = validator("case-file")
    for name, document in load_files(source).items():
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
