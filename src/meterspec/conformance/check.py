"""`meterspec conformance check`: is the suite itself sound? (INTERPRETING.md 6)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from jsonschema.exceptions import ValidationError

from meterspec.codec import STRUCTS, decode
from meterspec.conformance.cases import CASES_DIR, case_files
from meterspec.conformance.data import HarnessError, validator
from meterspec.domain_events import decode_domain_event
from meterspec.errors import MeterspecError, Problem, walk
from meterspec.schema import schema_problems

DEFINITION = re.compile(r"^\*\*(MS-[A-Z]+-[0-9]{3}) ")
HEADING = re.compile(r"^#")
MUST = re.compile(r"\bMUST\b")
ERROR_CODE = re.compile(r"^\|\s*`([a-z]+(?:-[a-z]+)*)`\s*\|")
RETIRED_ID = re.compile(r"^([a-z][a-z0-9]*(?:-[a-z0-9]+)*-[0-9]{3})\b")



class Output(NamedTuple):
    """What an operation's expected output items are (INTERPRETING.md 2, 3): a contract kind
    of schemas/, or a result document of conformance/schemas/results.schema.json with the
    contract documents it holds ('*' = every list item)."""

    kind: str | None = None
    result: str | None = None
    inside: tuple[tuple[tuple[str, ...], str], ...] = ()


DOMAIN_EVENT = "domain-event"
"""Not a kind of schemas/ but any of them: a domain event is checked as the kind its `type`
names (MS-DEV-005, MS-DEV-011)."""

OUTPUTS: dict[str, Output] = {
    "meter": Output("record"),
    "aggregate": Output("reading"),
    "rate": Output("rated-charge"),
    "rate-plan": Output(result="ratedPlan", inside=((("charges", "*"), "rated-charge"),)),
    "ingest": Output(result="ingestResult", inside=((("state",), "ingestion-state"),)),
    "apply-corrections": Output(result="correctionsResult",
                                inside=((("effective", "*"), "event"),)),
    "quota": Output("quota-decision"),
    "rate-limit": Output(result="rateLimitDecision", inside=((("state",), "rate-limit-state"),)),
    "billing-periods": Output(result="billingPeriod"),
    "invoice": Output("invoice"),
    "reconcile": Output("adjustment"),
    "apply-adjustment": Output("invoice"),
    "project": Output("projection"),
    "domain-event": Output(DOMAIN_EVENT),
    "to-cloudevent": Output(result="cloudEvent", inside=((("data",), DOMAIN_EVENT),)),
    "from-cloudevent": Output(result="receivedEvent", inside=((("event",), "event"),)),
    "domain-event-from-cloudevent": Output(result="receivedEvent",
                                           inside=((("event",), DOMAIN_EVENT),)),
    # The documents inside are of the kind the case's input names: see _decoded_text.
    "decode-text": Output(result="decodedText"),
    "webhook-sign": Output(result="webhookHeaders"),
    "webhook-verify": Output(result="webhookVerified"),
    "webhook-attempt": Output(result="webhookAttempt"),
    "quota-reserve": Output(result="quotaReserveResult", inside=(
        (("state",), "quota-state"), (("results", "*", "decision"), "quota-decision"),
        (("results", "*", "events", "*"), "quota-event"))),
    "convert-event": Output(result="convertedEvent", inside=((("event",), "event"),)),
    "allocate": Output(result="allocation"),
    "export-stripe": Output(result="stripeRequests",
                            inside=((("requests", "*"), "stripe-request"),)),
    "stripe-outcome": Output(result="stripeOutcome"),
    "export-ledger": Output(result="ledgerRows", inside=((("rows", "*"), "ledger-row"),)),
}
# Kinds checked in full (schema, values and rules: a RatedCharge must add up, MS-PRC-017; a
# state must be in order, MS-ING-007; an invoice's totals, id and revision must be its own,
# MS-INV-007); the core kinds by their schema, as in suite 1.0.0.
_FULL_CHECK = {"rated-charge", "quota-decision", "ingestion-state", "rate-limit-state", "event",
               "invoice", "adjustment", "projection", "quota-state"}


class Requirement(NamedTuple):
    file: str  # the spec file's name, e.g. core.md
    text: str  # from the definition to the next definition or heading


def requirements(specs: Path) -> dict[str, Requirement]:
    """Every requirement id defined in specs/*.md (a line starting `**MS-XXX-NNN `)."""
    files = sorted(specs.glob("*.md"))
    if not files:
        raise HarnessError(f"no specs: {specs} has no *.md files")
    texts: dict[str, tuple[str, list[str]]] = {}
    for path in files:
        current: list[str] | None = None
        for line in path.read_text(encoding="utf-8").splitlines():
            match = DEFINITION.match(line)
            if match:
                current = texts.setdefault(match.group(1), (path.name, []))[1]
            elif HEADING.match(line):
                current = None
            if current is not None:
                current.append(line)
    return {rid: Requirement(name, "\n".join(lines)) for rid, (name, lines) in texts.items()}


def error_codes(specs: Path) -> set[str]:
    """The codes of the table in specs/errors.md."""
    path = specs / "errors.md"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise HarnessError(f"cannot read {path}: {error}") from None
    return {m.group(1) for line in text.splitlines() if (m := ERROR_CODE.match(line))}


def retired_ids(root: Path) -> set[str]:
    """Ids listed in cases/v1/RETIRED (one per line, first word; # comments)."""
    path = root / CASES_DIR / "RETIRED"
    if not path.is_file():
        return set()
    return {m.group(1) for line in path.read_text(encoding="utf-8").splitlines()
            if (m := RETIRED_ID.match(line.strip()))}


def _message(error: ValidationError) -> str:
    """A schema error in a few words (oneOf messages otherwise repeat the whole instance)."""
    alternatives = error.validator_value if error.validator == "oneOf" else None
    if isinstance(alternatives, list) and all(
            isinstance(a, dict) and len(a.get("required", [])) == 1 for a in alternatives):
        names = " and ".join(str(a["required"][0]) for a in alternatives)
        return f"needs exactly one of {names}"
    message = error.message
    return message if len(message) <= 200 else message[:200] + "..."


def check(root: Path, specs: Path) -> Iterator[str]:
    """Every problem of the suite at root (a conformance/ directory), one message each."""
    defined = requirements(specs)
    codes = error_codes(specs)
    retired = retired_ids(root)
    schema = validator("case-file")
    first_seen: dict[str, str] = {}
    cited: set[str] = set()
    for name, document in case_files(root).items():
        errors = sorted(schema.iter_errors(document), key=lambda e: list(map(str, e.path)))
        invalid_cases: set[object] = set()
        for error in errors:
            where = "".join(f"/{p}" for p in error.absolute_path)
            yield f"{name}: {where or '/'}: {_message(error)}"
            path = list(error.absolute_path)
            invalid_cases.add(path[1] if len(path) > 1 and path[0] == "cases" else None)
        if None in invalid_cases:  # the file itself is malformed: nothing more to say
            continue
        area = document["area"]
        if "/" not in name or name.split("/")[0] != area:
            yield f"{name}: area {area!r} but the file is not in {area}/"
        for index, case in enumerate(document["cases"]):
            if index in invalid_cases:
                continue
            yield from _check_case(f"{name}: {case['id']}", case, defined, codes)
            cited.update(case["requirements"])
            if case["id"] in first_seen:
                yield f"{name}: /cases/{index}: id {case['id']} repeats (first in " \
                      f"{first_seen[case['id']]})"
            else:
                first_seen[case["id"]] = name
            if case["id"] in retired:
                yield f"{name}: /cases/{index}: id {case['id']} is retired (cases/v1/RETIRED)"
    # Every MUST counts, except in the spec files cases/v1/PENDING names on purpose (areas
    # whose operations the protocol does not have yet, INTERPRETING.md 2).
    pending = pending_specs(root)
    for name in sorted(pending - {r.file for r in defined.values()}):
        yield f"cases/v1/PENDING: {name} is not a spec file"
    for rid in sorted(defined):
        if (defined[rid].file not in pending and MUST.search(defined[rid].text)
                and rid not in cited):
            yield f"{rid} says MUST but no case cites it"


def pending_specs(root: Path) -> set[str]:
    """Spec files listed in cases/v1/PENDING (first word per line; # comments): not yet in the
    suite's scope, each by an explicit decision rather than by having no cases."""
    path = root / CASES_DIR / "PENDING"
    if not path.is_file():
        return set()
    return {line.split()[0] for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")}


def _check_case(where: str, case: dict[str, Any], defined: dict[str, Requirement],
                codes: set[str]) -> Iterator[str]:
    for rid in case["requirements"]:
        if rid not in defined:
            yield f"{where}: requirement {rid} is not defined in specs/"
    for problem in case.get("error", []):
        if problem["code"] not in codes:
            yield f"{where}: error code {problem['code']!r} is not in specs/errors.md"
    shape = OUTPUTS[case["operation"]]
    for index, item in enumerate(case.get("output", [])):
        if shape.kind is not None:
            for problem in _contract_problems(shape.kind, item):
                yield (f"{where}: output/{index}{problem.path}: not a valid {shape.kind}: "
                       f"{problem.code}: {problem.message}")
            continue
        assert shape.result is not None
        errors = list(validator("results", shape.result).iter_errors(item))
        for error in errors:
            at = "".join(f"/{p}" for p in error.absolute_path)
            yield f"{where}: output/{index}{at}: not a valid {shape.result}: {_message(error)}"
        if errors:
            continue
        inside = list(shape.inside)
        if case["operation"] == "decode-text":
            yield from _decoded_text(f"{where}: output/{index}", item, codes)
            inside = [(("document",), case["input"]["kind"]),
                      (("lines", "*", "document"), case["input"]["kind"])]
        for fields, kind in inside:
            for path, document in walk(item, fields):
                for problem in _contract_problems(kind, document):
                    yield (f"{where}: output/{index}{path}{problem.path}: not a valid {kind}: "
                           f"{problem.code}: {problem.message}")


def _decoded_text(where: str, item: dict[str, Any], codes: set[str]) -> Iterator[str]:
    """What results.schema.json cannot say about a decode-text result (3.19): lines in
    increasing order, each line's problems sorted by path then code, each pair once, with
    codes of specs/errors.md."""
    numbers = [entry["line"] for entry in item.get("lines", [])]
    if numbers != sorted(set(numbers)):
        yield f"{where}/lines: line numbers are not increasing: {numbers}"
    for position, entry in enumerate(item.get("lines", [])):
        pairs = [(p["path"], p["code"]) for p in entry.get("problems", [])]
        if pairs != sorted(set(pairs)):
            yield f"{where}/lines/{position}/problems: not sorted by path then code, each once"
        for _, code in pairs:
            if code not in codes:
                yield f"{where}/lines/{position}/problems: code {code!r} is not in " \
                      "specs/errors.md"


def _contract_problems(kind: str, document: object) -> list[Problem]:
    if kind == DOMAIN_EVENT:
        try:
            decode_domain_event(json.dumps(document, ensure_ascii=False))
        except MeterspecError as error:
            return list(error.problems)
        return []
    if kind not in _FULL_CHECK:
        return schema_problems(kind, document)
    try:
        decode(kind, json.dumps(document, ensure_ascii=False), STRUCTS[kind], fast=False)
    except MeterspecError as error:
        return list(error.problems)
    return []
