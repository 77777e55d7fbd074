"""Every code and JSON block of the documentation site runs or validates (docs/about.md).

- docs/**/*.md: ```python blocks run in page order in one namespace per page, from the repository
  root, and a block titled "Output" right after one must equal what it printed; ```json blocks
  are titled with the schema they are an instance of and must pass meterspec's validation for
  that kind; ```console blocks run their `$ meterspec ...` commands and compare standard output;
  any other fenced block is ```text. Blocks inside the generated regions of scripts/docgen.py
  are checked the same way (their JSON) or by its drift check (the rest).
- The pages the site includes from specs/ and conformance/: their Python runs, and their
  protocol messages are valid against conformance/schemas/protocol.schema.json.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from meterspec.codec import STRUCTS, decode
from meterspec.errors import MeterspecError
from meterspec.schema import KINDS, load_schema, schema_problems

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent> *)(?P<ticks>`{3,})(?P<info>.*)$")
ATTRIBUTE = re.compile(r'(\w+)="([^"]*)"')
GENERATED_BEGIN = "<!-- BEGIN GENERATED"
GENERATED_END = "<!-- END GENERATED"
LANGUAGES = {"python", "json", "console", "text"}
# Commands a console block may show without running them: CI covers each its own way (.ci/run
# installs the package, tests/test_docs.py builds the site and runs the generator's check).
NOT_RUN = ("pip install ", "mkdocs serve", "mkdocs build", "python scripts/docgen.py",
           "python3 -m venv ")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    language: str
    attributes: dict[str, str]
    body: str
    generated: bool
    after_python: bool  # only blank lines since the end of a python block

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(text: str, page: str) -> list[Block]:
    found: list[Block] = []
    lines = text.split("\n")
    generated = False
    last_python_end: int | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith(GENERATED_BEGIN):
            generated = True
        elif line.startswith(GENERATED_END):
            generated = False
        opening = FENCE.match(line)
        if not opening:
            if line.strip():
                last_python_end = None
            index += 1
            continue
        indent, ticks = opening.group("indent"), opening.group("ticks")
        info = opening.group("info").strip()
        language = info.split()[0] if info else ""
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != ticks:
            body.append(lines[index][len(indent):] if lines[index].startswith(indent)
                        else lines[index].lstrip())
            index += 1
        found.append(Block(page, len(text.split("\n")[: index - len(body)]), language,
                           dict(ATTRIBUTE.findall(info)), "\n".join(body) + "\n", generated,
                           last_python_end is not None))
        last_python_end = index if language == "python" else None
        index += 1
    return found


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _page_blocks() -> dict[str, list[Block]]:
    return {str(p.relative_to(ROOT)): blocks(p.read_text(encoding="utf-8"),
                                             str(p.relative_to(ROOT))) for p in _pages()}


PAGE_BLOCKS = _page_blocks()
TITLES = {load_schema(schema)["title"]: kind for kind, schema in KINDS.items()}


def _run_python(code: str, namespace: dict[str, Any], where: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, where, "exec"), namespace)
    return out.getvalue()


def _pages_with(language: str) -> list[str]:
    return [page for page, found in PAGE_BLOCKS.items()
            if any(b.language == language for b in found)]


def test_the_docs_have_code_to_check() -> None:
    """The parser finds the blocks (a broken fence regex would make every test below vacuous)."""
    assert len(_pages_with("python")) >= 10
    assert len(_pages_with("json")) >= 10


def test_blocks_are_parsed_with_their_titles_and_followers() -> None:
    text = ("# t\n\n```python\nprint(1)\n```\n\n```text title=\"Output\"\n1\n```\n\n"
            "???+ example \"x\"\n\n    ```json title=\"Plan\"\n    {}\n    ```\n")
    found = blocks(text, "t.md")
    assert [(b.line, b.language, b.attributes, b.body, b.after_python) for b in found] == [
        (3, "python", {}, "print(1)\n", False),
        (7, "text", {"title": "Output"}, "1\n", True),
        (13, "json", {"title": "Plan"}, "{}\n", False)]


def test_every_block_has_a_checked_language() -> None:
    wrong = [f"{b.where}: ```{b.language}" for found in PAGE_BLOCKS.values() for b in found
             if b.language not in LANGUAGES]
    assert not wrong, f"use python, json, console or text (docs/about.md): {wrong}"


def test_output_blocks_follow_python_blocks() -> None:
    orphans = [b.where for found in PAGE_BLOCKS.values() for b in found
               if b.attributes.get("title") == "Output" and not b.after_python]
    assert not orphans, f"an Output block must come right after a python block: {orphans}"


@pytest.mark.parametrize("page", _pages_with("python"))
def test_python_blocks_run_and_print_what_the_page_shows(
        page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    found = PAGE_BLOCKS[page]
    printed: str | None = None
    for block in found:
        if block.language == "python":
            printed = _run_python(block.body, namespace, block.where)
        elif block.attributes.get("title") == "Output" and block.after_python:
            assert printed == block.body, (
                f"{block.where}: the page shows\n{block.body}\nthe code printed\n{printed}")
            printed = None
        else:
            printed = None


def _json_blocks() -> list[Block]:
    return [b for found in PAGE_BLOCKS.values() for b in found
            if b.language == "json" and b.attributes.get("title") != "Output"]


def _schema_and_file(block: Block) -> tuple[str | None, str | None]:
    """A json block's title: `Schema` or `Schema: path/of/the/file.json`."""
    schema, _, path = block.attributes.get("title", "").partition(": ")
    return (schema if schema in TITLES else None), (path or None)


def test_json_blocks_name_their_schema() -> None:
    unnamed = [f"{b.where}: title={b.attributes.get('title')!r}" for b in _json_blocks()
               if _schema_and_file(b)[0] is None]
    assert not unnamed, f"title a json block with its schema, one of {sorted(TITLES)}: {unnamed}"


@pytest.mark.parametrize("block", [b for b in _json_blocks() if _schema_and_file(b)[0]],
                         ids=lambda b: b.where)
def test_json_blocks_are_valid_documents(block: Block) -> None:
    schema, path = _schema_and_file(block)
    assert schema is not None
    kind = TITLES[schema]
    document = json.loads(block.body)
    if path is not None:  # the block shows a file of the repository: it must be that file
        assert document == json.loads((ROOT / path).read_text(encoding="utf-8")), (
            f"{block.where}: differs from {path}")
    assert schema_problems(kind, document) == [], block.where
    if kind not in STRUCTS:  # a wire document with no Struct (stripe-request, ledger-row)
        return
    try:
        decode(kind, block.body, STRUCTS[kind], fast=False)
    except MeterspecError as error:
        pytest.fail(f"{block.where}: {error.problems}")


def test_a_json_block_that_breaks_a_rule_is_caught() -> None:
    """The check above has teeth: a window that ends before it starts is schema-valid."""
    bad = ('{"aggregation": "sum", "windows": [{"start": "2024-01-02T00:00:00Z", '
           '"end": "2024-01-01T00:00:00Z"}]}')
    assert schema_problems("request", json.loads(bad)) == []
    with pytest.raises(MeterspecError):
        decode("request", bad, STRUCTS["request"], fast=False)


def _console_commands() -> list[tuple[Block, str, str]]:
    """(block, command, expected stdout) for every `$ ` line of every console block."""
    found: list[tuple[Block, str, str]] = []
    for page_blocks in PAGE_BLOCKS.values():
        for block in page_blocks:
            if block.language != "console":
                continue
            command: str | None = None
            expected: list[str] = []
            for line in block.body.rstrip("\n").split("\n"):
                if line.startswith("$ "):
                    if command is not None:
                        found.append((block, command, "".join(expected)))
                    command, expected = line[2:], []
                else:
                    assert command is not None, f"{block.where}: output before a command"
                    expected.append(line + "\n")
            if command is not None:
                found.append((block, command, "".join(expected)))
    return found


def test_console_commands_are_meterspec_or_covered_setup() -> None:
    others = [f"{b.where}: {c}" for b, c, _ in _console_commands()
              if not c.startswith("meterspec ") and not c.startswith(NOT_RUN)]
    assert not others, others


@pytest.mark.parametrize("case", [c for c in _console_commands()
                                  if c[1].startswith("meterspec ")],
                         ids=lambda c: f"{c[0].where}: {c[1]}")
def test_console_commands_print_what_the_page_shows(case: tuple[Block, str, str]) -> None:
    block, command, expected = case
    argv = shlex.split(command)[1:]
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from meterspec.cli import main; sys.exit(main())",
         *argv], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{block.where}: {command}\n{result.stderr}"
    assert result.stdout == expected, (
        f"{block.where}: {command}\nthe page shows\n{expected}\nthe command printed\n"
        f"{result.stdout}")


# ------------------------------------------------------------------ pages included at build time


def _included(path: str) -> list[Block]:
    return blocks((ROOT / path).read_text(encoding="utf-8"), path)


def _spec_python() -> list[Block]:
    return [b for p in sorted((ROOT / "specs").glob("*.md"))
            for b in _included(str(p.relative_to(ROOT))) if b.language == "python"]


# What the specs' informative Python assumes is already defined. A spec whose Python has no
# setup here still has its imports run and its code compiled (a renamed module or function
# fails); with a setup, it runs in full.
SPEC_SETUP = {
    "specs/pricing.md": """
from meterspec.codec import decode_plan
versions = [decode_plan(open("schemas/examples/plan/valid/every-model.json", "rb").read())]
""",
    "specs/billing.md": """
from meterspec import meter
from meterspec.codec import STRUCTS, decode, decode_config, decode_event
from meterspec.invoices import build_invoices
folder = "examples/monthly-invoice"
config = decode_config(open(f"{folder}/config.json", "rb").read())
request = decode("invoice-request", open(f"{folder}/invoice-request.json", "rb").read(),
                 STRUCTS["invoice-request"], fast=False)
def records_of(name):
    return [r for line in open(f"{folder}/{name}", "rb") for r in meter(decode_event(line), config)]
records = records_of("events.ndjson")
closed = build_invoices(request, records)[0]
every_record = records + records_of("late-events.ndjson")
""",
}


@pytest.mark.parametrize("block", _spec_python(), ids=lambda b: b.where)
def test_spec_python_runs(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    tree = ast.parse(block.body)
    imports = ast.Module([n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)],
                         type_ignores=[])
    exec(compile(imports, block.where, "exec"), namespace)
    if block.page in SPEC_SETUP:
        _run_python(SPEC_SETUP[block.page], namespace, f"{block.page}:setup")
        _run_python(block.body, namespace, block.where)
    else:
        compile(block.body, block.where, "exec")


def _protocol_messages() -> list[tuple[Block, str]]:
    return [(b, line) for path in ("conformance/ADAPTERS.md", "conformance/INTERPRETING.md")
            for b in _included(path) if b.language == "json"
            for line in b.body.split("\n") if line.strip()]


def _is_elided(line: str) -> bool:
    return "..." in line or "\u2026" in line


# A line of the JSON-lines report (conformance/INTERPRETING.md section 6).
REPORT_CASE = {"id", "area", "features", "result"}
REPORT_OPTIONAL = {"expected", "actual", "reason", "claimed", "stderr"}
SUMMARY = {"summary", "implementation"}
SUMMARY_OPTIONAL = {"suite", "notClaimed", "allowSkips", "interrupted"}
RESULTS = {"passed", "failed", "skipped", "errored"}


def _is_report_line(document: object) -> bool:
    if not isinstance(document, dict):
        return False
    if SUMMARY <= set(document) <= SUMMARY | SUMMARY_OPTIONAL:
        return set(document["summary"]) == RESULTS | {"total"}
    return (REPORT_CASE <= set(document) <= REPORT_CASE | REPORT_OPTIONAL
            and document["result"] in RESULTS)


def test_protocol_messages_in_the_guides_are_valid() -> None:
    schema = json.loads((ROOT / "conformance" / "schemas" / "protocol.schema.json").read_text())
    messages = [(b, line) for b, line in _protocol_messages() if not _is_elided(line)]
    assert len(messages) >= 4
    validators = [jsonschema.Draft202012Validator({"$defs": schema["$defs"],
                                                   "$ref": f"#/$defs/{name}"})
                  for name in ("request", "started", "result")]
    for block, line in messages:
        document = json.loads(line)
        if not any(v.is_valid(document) for v in validators) and not _is_report_line(document):
            pytest.fail(f"{block.where}: neither a protocol message nor a report line: {line}")
