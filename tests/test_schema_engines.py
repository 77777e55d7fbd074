"""The schemas read the same in every JSON Schema engine, not only in Python's.

ajv (Node, `Ajv2020` with ajv-formats and nothing else) compiles every schema in its default
strict mode and with `strict: true`, and gives the same verdict as python-jsonschema on every
example of schemas/examples/, valid and invalid; check-jsonschema validates offline from the
files. What makes that hold is checked here without Node too: annotations are `$comment`s
(MS-ERR-006), every member a subschema requires is declared in its own `properties` (ajv's
strictRequired), and patterns use only what ECMA-262 and Python's `re.search` read alike: they
end with `(?![\\s\\S])`, never `$` (Python's `$` also matches before a final newline).

The suite's own schemas (conformance/schemas: case files, protocol messages, result documents)
are held to the same rules: ajv compiles them in strict mode, their patterns read alike, and
ajv and python-jsonschema agree that every case file of the suite is valid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing

from meterspec.schema import KINDS
from meterspec.schema_compiler import parse_annotations

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
SUITE_SCHEMAS = ROOT / "conformance" / "schemas"
CASES = ROOT / "conformance" / "cases" / "v1"
NODE = Path(__file__).resolve().parent / "node"
END = r"(?![\s\S])"
CODES = set(re.findall(r"^\| `([a-z-]+)` \|", (ROOT / "specs" / "errors.md").read_text(),
                       re.MULTILINE))


def _documents(folder: Path = SCHEMAS) -> dict[str, Any]:
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.schema.json"))}


def _subschemas(node: object, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object under `node` with its JSON Pointer (values of `properties`,
    `$defs` and `dependentSchemas` are schemas; other objects and arrays are walked through)."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            if key in ("properties", "$defs", "dependentSchemas") and isinstance(value, dict):
                for name, sub in value.items():
                    yield from _subschemas(sub, f"{where}/{key}/{name}")
            elif key not in ("enum", "const", "default", "examples"):
                yield from _subschemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _subschemas(item, f"{where}/{index}")


def _every_subschema(*folders: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for folder in folders or (SCHEMAS,):
        for name, schema in _documents(folder).items():
            for where, sub in _subschemas(schema):
                yield f"{folder.parent.name}/{folder.name}/{name}#{where}", sub


@cache
def _examples() -> list[tuple[str, str]]:
    """(kind, path relative to schemas/examples) of every example document."""
    return [(kind, str(p.relative_to(EXAMPLES))) for kind in KINDS
            for p in sorted(EXAMPLES.glob(f"{kind}/*/*.json"))]


# ------------------------------------------------------------------ without Node


def test_annotations_are_comments_that_name_a_code_and_a_requirement() -> None:
    """MS-ERR-006: a subschema names its code and requirement in its `$comment`
    (`code=C requirement=R`); no `x-` keyword is left for strict validators to refuse."""
    found = 0
    for location, sub in _every_subschema():
        assert not [k for k in sub if k.startswith("x-")], location
        if "$comment" in sub:
            code, requirement = parse_annotations(sub["$comment"])
            assert code is None or code in CODES, (location, code)
            assert requirement is None or re.fullmatch(r"MS-[A-Z]+-[0-9]{3}", requirement)
            found += 1
    assert found > 50


@pytest.mark.parametrize("comment", ["", "code=x ", "code=x  requirement=MS-A-001", "note",
                                     "code=x code=y", "code=", "requirement=MS-ERR-001\n",
                                     "code=Bad", "requirement=ms-err-001"])
def test_a_malformed_annotation_is_refused(comment: str) -> None:
    with pytest.raises(ValueError):
        parse_annotations(comment)


def test_every_required_member_is_declared_beside_it() -> None:
    """ajv's strictRequired: a subschema that requires a member declares it in its own
    `properties` (`true` where the parent holds its real schema), so no engine depends on the
    order in which it compiles a parent's `properties` and its combinators; the suite's own
    schemas too."""
    for location, sub in _every_subschema(SCHEMAS, SUITE_SCHEMAS):
        declared = sub.get("properties", {})
        assert [n for n in sub.get("required", []) if n not in declared] == [], location


def _patterns(*folders: Path) -> list[tuple[str, str]]:
    return [(location, sub["pattern"]) for location, sub in _every_subschema(*folders)
            if isinstance(sub.get("pattern"), str)]


@pytest.mark.parametrize(("location", "pattern"), _patterns(SCHEMAS, SUITE_SCHEMAS),
                         ids=lambda v: str(v)[:60])
def test_pattern_reads_the_same_in_ecma_262_and_python(location: str, pattern: str) -> None:
    """Anchored at both ends without `$`; no `.`, `\\d`, `\\w`, `\\s` or `\\b` (whose meanings
    differ between the engines) outside the `[\\s\\S]` of the end anchor."""
    assert pattern.startswith("^") and "$" not in pattern
    assert pattern.endswith(END) or pattern.endswith(END + ")")
    bare = re.sub(r"\[(\\.|[^\]\\])*\]", "", re.sub(r"\\[.\\\-+*?()\[\]{}|^/]", "", pattern))
    assert "." not in bare
    assert re.findall(r"\\[dDwWsSbB]", pattern.replace(r"[\s\S]", "")) == []


@cache
def _probe_strings() -> tuple[str, ...]:
    """Every string of the examples, and each with a line break before or after it."""
    def strings(node: object) -> Iterator[str]:
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict | list):
            for item in node.values() if isinstance(node, dict) else node:
                yield from strings(item)
    found = {s for p in EXAMPLES.glob("*/*/*.json") for s in strings(json.loads(p.read_bytes()))}
    return tuple(sorted({w for s in found for w in (s, s + "\n", s + "\r\n", "\n" + s,
                                                     s + "\u2028", s + "\r")}))


@cache
def _suite_probe_strings() -> tuple[str, ...]:
    """Every short string of the case files (ids, codes, paths, features, requirement ids,
    timestamps, quantities), and each with a line break before or after it."""
    def strings(node: object) -> Iterator[str]:
        if isinstance(node, str):
            if len(node) <= 80:
                yield node
        elif isinstance(node, dict | list):
            for item in node.values() if isinstance(node, dict) else node:
                yield from strings(item)
    found = {s for p in CASES.rglob("*.json") for s in strings(json.loads(p.read_bytes()))}
    return tuple(sorted({w for s in found for w in (s, s + "\n", s + "\r\n", "\n" + s,
                                                     s + "\u2028", s + "\r")}))


@cache
def _jsonschema(kind: str) -> jsonschema.Draft202012Validator:
    documents = _documents()
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (d["$id"], referencing.Resource.from_contents(d)) for d in documents.values())
    return jsonschema.Draft202012Validator(documents[f"{KINDS[kind]}.schema.json"],
                                           registry=registry)


@cache
def _beyond_schema() -> frozenset[str]:
    return frozenset(json.loads((EXAMPLES / "beyond-schema.json").read_text()))


def _expected_verdict(key: str) -> bool:
    """Valid examples pass; invalid ones fail unless only checks beyond a schema catch them."""
    return key.split("/")[1] == "valid" or key in _beyond_schema()


# ------------------------------------------------------------------ ajv


def _ajv_installed() -> bool:
    """Whether node_modules holds exactly the versions package-lock.json pins."""
    hidden = NODE / "node_modules" / ".package-lock.json"
    if not hidden.exists():
        return False
    pinned = json.loads((NODE / "package-lock.json").read_text())["packages"]
    installed = json.loads(hidden.read_text())["packages"]
    return {k: v.get("version") for k, v in pinned.items() if k} == {
        k: v.get("version") for k, v in installed.items()}


@cache
def _ajv(jobs: tuple[tuple[str, str], ...], folder: Path = SCHEMAS) -> dict[str, Any]:
    """validate.mjs's answer for `jobs` (schema files of `folder`) and for the patterns of
    `folder` on its probe strings (the examples' for schemas/, the cases' for the suite's)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to compare with ajv (tests/node)")
    if not _ajv_installed():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE,
                       check=True, timeout=300)
    strings = _probe_strings() if folder == SCHEMAS else _suite_probe_strings()
    patterns = sorted({p for _, p in _patterns(folder)})
    result = subprocess.run([node, "validate.mjs", str(folder)], cwd=NODE, check=True,
                            input=json.dumps({"jobs": jobs, "strings": strings,
                                              "patterns": patterns}),
                            capture_output=True, text=True, timeout=120)
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def _ajv_jobs() -> tuple[tuple[str, str], ...]:
    return tuple((f"{KINDS[kind]}.schema.json", str(EXAMPLES / key)) for kind, key in _examples())


def test_every_pattern_matches_the_same_strings_in_ecma_262_and_python() -> None:
    """Each pattern's `new RegExp(pattern, "u").test` (ajv's) against Python's `re.search`
    (python-jsonschema's and meterspec's) on every example string, bare and with line breaks."""
    patterns = sorted({p for _, p in _patterns()})
    strings = _probe_strings()
    ecma = _ajv(_ajv_jobs())["matches"]
    for pattern in patterns:
        search = re.compile(pattern).search
        python = {n for n, s in enumerate(strings) if search(s)}
        differ = sorted(strings[n] for n in python.symmetric_difference(ecma[pattern]))
        assert differ == [], f"{pattern} matches these in only one engine: {differ[:5]}"


def test_the_suite_schemas_patterns_match_the_same_strings_in_ecma_262_and_python() -> None:
    """As above, for conformance/schemas, on every short string of the case files."""
    patterns = sorted({p for _, p in _patterns(SUITE_SCHEMAS)})
    strings = _suite_probe_strings()
    ecma = _ajv(_suite_jobs(), SUITE_SCHEMAS)["matches"]
    assert patterns
    for pattern in patterns:
        search = re.compile(pattern).search
        python = {n for n, s in enumerate(strings) if search(s)}
        differ = sorted(strings[n] for n in python.symmetric_difference(ecma[pattern]))
        assert differ == [], f"{pattern} matches these in only one engine: {differ[:5]}"


def _suite_jobs() -> tuple[tuple[str, str], ...]:
    return tuple(("case-file.schema.json", str(p)) for p in sorted(CASES.rglob("*.json")))


def test_ajv_compiles_the_suite_schemas_in_strict_mode_and_accepts_every_case_file() -> None:
    """conformance/schemas in Ajv2020 with its defaults and with `strict: true`, as schemas/;
    every case file is valid to ajv as it is to python-jsonschema (`meterspec conformance
    check`)."""
    answer = _ajv(_suite_jobs(), SUITE_SCHEMAS)
    assert answer["complaints"] == []
    schema = jsonschema.Draft202012Validator(_documents(SUITE_SCHEMAS)["case-file.schema.json"])
    for (_, path), verdict in zip(_suite_jobs(), answer["verdicts"], strict=True):
        document = json.loads(Path(path).read_bytes())
        assert (verdict, schema.is_valid(document)) == (True, True), path


@cache
def _ajv_verdicts() -> dict[str, bool]:
    return dict(zip((k for _, k in _examples()), _ajv(_ajv_jobs())["verdicts"], strict=True))


def test_ajv_compiles_every_schema_in_strict_mode() -> None:
    """Ajv2020 with its defaults and with `strict: true`: no unknown keyword, no strictRequired,
    strictTypes or strictTuples complaint, no unknown format; nothing added to ajv."""
    assert _ajv(_ajv_jobs())["complaints"] == []


@pytest.mark.parametrize(("kind", "key"), _examples(), ids=[k for _, k in _examples()])
def test_ajv_and_jsonschema_give_the_same_verdict(kind: str, key: str) -> None:
    verdicts = _ajv_verdicts()
    document = json.loads((EXAMPLES / key).read_bytes())
    assert (verdicts[key], _jsonschema(kind).is_valid(document)) == (_expected_verdict(key),) * 2


# ------------------------------------------------------------------ check-jsonschema


def _check_jsonschema(kind: str, *keys: str) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with the recipe of docs/reference/schemas/index.md: the schema file's
    own file: URI as base URI, so relative `$ref`s name files beside it. Any fetch would fail:
    the proxy is a closed port and the cache is off."""
    schema = SCHEMAS / f"{KINDS[kind]}.schema.json"
    command = Path(sys.executable).parent / "check-jsonschema"
    environment = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9",
                   "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    return subprocess.run(
        [str(command), "--no-cache", "--base-uri", schema.as_uri(), "--schemafile", str(schema),
         *(str(EXAMPLES / k) for k in keys)],
        capture_output=True, text=True, env=environment, timeout=60, check=False)


def test_check_jsonschema_validates_offline_from_the_files() -> None:
    """Valid invoices (invoice -> plan -> common) pass; a reading whose window starts with a
    time ending in a newline fails on the timestamp that common.schema.json's window refers to
    from inside that file, so both references were resolved from the files."""
    valid = [k for _, k in _examples() if k.startswith("invoice/valid/")]
    passed = _check_jsonschema("invoice", *valid)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    failed = _check_jsonschema("reading", "reading/invalid/window-start-trailing-newline.json")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "$.window.start: '2024-01-15T00:00:00Z\\n' does not match" in failed.stdout, (
        failed.stdout + failed.stderr)
