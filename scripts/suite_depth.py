"""How deep the conformance suite covers each requirement, and how many cases catch each fault.

    python scripts/suite_depth.py requirements [--max N] [--ids ID ...]
    python scripts/suite_depth.py faults [--jobs N] [--json FILE] [FAULT ...]

`requirements` lists, per requirement id cited by a case of conformance/cases/v1, how many cases
cite it and of which operations (`--max N`: only ids cited by at most N cases, the thin ones;
`--ids`: only those ids). Requirements whose text says MUST and that no case cites are listed
first, as `check` would find them.

`faults` runs every fault of tests/conformance_fixtures/broken_adapter.py (or the ones named)
against the whole suite, except the MS-WIN-004 cases (100 000 windows each, about no fault),
and prints how many cases catch each: cases that fail against the fault and pass against the
reference. `--json FILE` writes {fault: [case ids]} too.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from meterspec.conformance import report
from meterspec.conformance.cases import Case, load_cases
from meterspec.conformance.runner import Runner, make_adapter

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "conformance"
SPECS = ROOT / "specs"
BROKEN = ROOT / "tests" / "conformance_fixtures" / "broken_adapter.py"
_DEFINITION = re.compile(r"^\*\*(MS-[A-Z]+-[0-9]{3})\b", re.MULTILINE)


def spec_requirements() -> dict[str, bool]:
    """Every requirement id of specs/, and whether its text says MUST."""
    found: dict[str, bool] = {}
    for path in sorted(SPECS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        marks = list(_DEFINITION.finditer(text))
        for index, mark in enumerate(marks):
            end = marks[index + 1].start() if index + 1 < len(marks) else len(text)
            body = text[mark.start():end].split("\n#", 1)[0]
            found[mark.group(1)] = "MUST" in body
    return found


def requirements(cases: list[Case], most: int | None, only: list[str]) -> list[str]:
    citing: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        for requirement in case.requirements:
            citing[requirement].append(case)
    lines: list[str] = []
    for requirement, must in spec_requirements().items():
        if must and requirement not in citing and not only:
            lines.append(f"{requirement}\t0\t(a MUST cited by no case)")
    for requirement in sorted(citing):
        chosen = citing[requirement]
        if only and requirement not in only:
            continue
        if most is not None and len(chosen) > most:
            continue
        operations = Counter(case.operation for case in chosen)
        kinds = ", ".join(f"{op} {n}" for op, n in sorted(operations.items()))
        outcomes = Counter("error" if "error" in case.expected else "output" for case in chosen)
        shape = "/".join(f"{n} {kind}" for kind, n in sorted(outcomes.items()))
        ids = " ".join(case.id for case in chosen) if len(chosen) <= 6 else ""
        lines.append(f"{requirement}\t{len(chosen)}\t{kinds}; {shape}\t{ids}".rstrip())
    return lines


def fault_names() -> list[str]:
    listing = subprocess.run([sys.executable, str(BROKEN), "--list"], capture_output=True,
                             text=True, check=True, timeout=120).stdout
    return [line.split("\t")[0] for line in listing.splitlines()]


def catchers(impl: str, cases: list[Case]) -> list[str]:
    run = Runner(make_adapter(impl, 120.0)).run(cases)
    lines = report.jsonl_lines(run)
    return [line["id"] for line in lines[:-1] if line["result"] == "failed"]


def faults(names: list[str], jobs: int) -> dict[str, list[str]]:
    cases = [case for case in load_cases(SUITE) if "MS-WIN-004" not in case.requirements]
    reference = set(catchers("python:meterspec", cases))

    def one(name: str) -> list[str]:
        command = f"{shlex.quote(sys.executable)} {shlex.quote(str(BROKEN))} --fault {name}"
        return [case for case in catchers(command, cases) if case not in reference]

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("requirements")
    listing.add_argument("--max", type=int, default=None)
    listing.add_argument("--ids", nargs="*", default=[])
    running = commands.add_parser("faults")
    running.add_argument("--jobs", type=int, default=2)
    running.add_argument("--json", type=Path, default=None)
    running.add_argument("names", nargs="*")
    options = parser.parse_args(argv)
    if options.command == "requirements":
        print("\n".join(requirements(load_cases(SUITE), options.max, options.ids)))
        return 0
    caught = faults(options.names or fault_names(), options.jobs)
    for name, ids in caught.items():
        shown = " ".join(ids) if len(ids) <= 8 else " ".join(ids[:8]) + " ..."
        print(f"{name}\t{len(ids)}\t{shown}", flush=True)
    if options.json is not None:
        options.json.write_text(json.dumps(caught, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
