"""The reference's `decode-text` (conformance/INTERPRETING.md 3.19) and what `meterspec
conformance check` says about its cases: texts as bytes in three forms, one document or NDJSON
lines, and the result documents checked as their kind. The suite's own cases
(cases/v1/errors/json-text.json) are run by tests/test_conformance_teeth.py."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from meterspec.codec import STRUCTS, decode
from meterspec.conformance.adapter import handle
from meterspec.conformance.check import _check_case, error_codes, requirements
from meterspec.errors import MeterspecError

ROOT = Path(__file__).resolve().parents[1]
EVENT = ('{"id":"evt_1","workspaceID":"ws_1","universeID":"prod","type":"api.call",'
         '"subject":"cust_1","time":"2024-01-15T10:30:00Z"}')
DOCUMENT = {"id": "evt_1", "workspaceID": "ws_1", "universeID": "prod", "type": "api.call",
            "subject": "cust_1", "time": "2024-01-15T10:30:00Z"}
BOM = "\ufeff"


def run(text: object, kind: str = "event", **more: Any) -> dict[str, Any]:
    return handle({"operation": "decode-text", "input": {"kind": kind, "text": text, **more}})


@pytest.mark.parametrize("text", [
    EVENT,
    {"base64": base64.b64encode(EVENT.encode()).decode()},
    {"parts": [EVENT[:10], {"repeat": EVENT[10:20], "count": 1}, EVENT[20:],
               {"repeat": " ", "count": 3}, {"repeat": "x", "count": 0}]},
])
def test_the_three_forms_of_a_text_are_the_same_bytes(text: object) -> None:
    assert run(text) == {"output": [{"document": DOCUMENT}]}


@pytest.mark.parametrize("text", [
    {"base64": "not base64!"}, {"parts": [{"repeat": "x"}]}, {"parts": [1]},
    {"base64": "AA==", "parts": []}, 7, "\ud800",
])
def test_a_malformed_text_is_a_malformed_case(text: object) -> None:
    assert set(run(text)) == {"errored"}


def test_an_unknown_kind_is_a_malformed_case() -> None:
    assert set(run(EVENT, kind="eventpayload")) == {"errored"}


def test_one_bom_is_dropped_at_the_start_of_a_document_only() -> None:
    assert run(BOM + EVENT) == {"output": [{"document": DOCUMENT}]}
    invalid = {"error": [{"code": "invalid-json", "path": ""}]}
    assert run(BOM + BOM + EVENT) == invalid
    assert run(" " + BOM + EVENT) == invalid


def test_a_document_is_bounded() -> None:
    padding = 67_108_864 - len(EVENT)
    assert run({"parts": [EVENT, {"repeat": " ", "count": padding + 1}]}) == {
        "error": [{"code": "document-too-large", "path": ""}]}


def test_the_document_is_the_decoded_value_not_the_struct() -> None:
    assert run(EVENT[:-1] + ',"properties":{}}') == {
        "output": [{"document": {**DOCUMENT, "properties": {}}}]}
    plan = ('{"id":"pro","version":20e-1,"currency":"USD","effectiveFrom":'
            '"2024-01-01T00:00:00Z","charges":[{"id":"a","model":"flat","amount":"1"}]}')
    version = run(plan, kind="plan")["output"][0]["document"]["version"]
    assert version == 2 and type(version) is int


def test_stream_lines_are_numbered_blank_ones_skipped_bad_ones_reported() -> None:
    other = EVENT.replace("evt_1", "evt_2")
    long_line = EVENT + " " * (1_048_577 - len(EVENT))
    text = (BOM + EVENT + "\r\n\n \t\r\n" + EVENT[:-1] + ',"id":"x"}\n'
            + long_line + "\n" + other)
    assert run(text, stream=True) == {"output": [{"lines": [
        {"line": 1, "document": DOCUMENT},
        {"line": 4, "problems": [{"code": "duplicate-name", "path": "/id"}]},
        {"line": 5, "problems": [{"code": "line-too-long", "path": ""}]},
        {"line": 6, "document": {**DOCUMENT, "id": "evt_2"}},
    ]}]}


def test_stream_problems_are_sorted_and_unique() -> None:
    text = '{"id":"","workspaceID":1,"extra":true}\n'
    problems = run(text, stream=True)["output"][0]["lines"][0]["problems"]
    pairs = [(p["path"], p["code"]) for p in problems]
    assert pairs == sorted(set(pairs)) and len(pairs) >= 4


def test_a_long_fraction_within_the_bounds_is_only_wrong_type() -> None:
    """A non-integer with more digits than the parser converts still compares with an integer
    field's bounds as itself (json_text: its integer part and a half)."""
    def problems(number: str) -> set[tuple[str, str]]:
        text = ('{"id":"pro","version":' + number + ',"currency":"USD","effectiveFrom":'
                '"2024-01-01T00:00:00Z","charges":[{"id":"a","model":"flat","amount":"1"}]}')
        with pytest.raises(MeterspecError) as caught:
            decode("plan", text, STRUCTS["plan"], fast=False)
        return {(p.code, p.path) for p in caught.value.problems}

    assert problems("1." + "0" * 4999 + "1") == {("wrong-type", "/version")}
    assert problems("-1." + "0" * 4999 + "1") == {("wrong-type", "/version"),
                                                  ("out-of-range", "/version")}
    assert problems("9" * 40 + "." + "5" * 30) == {("wrong-type", "/version"),
                                                   ("out-of-range", "/version")}


def _check(case: dict[str, Any]) -> list[str]:
    specs = ROOT / "specs"
    base = {"id": "text-999", "description": "d", "operation": "decode-text",
            "features": ["json-text"], "requirements": ["MS-ERR-007"]}
    return list(_check_case("x", {**base, **case}, requirements(specs), error_codes(specs)))


def test_check_reads_decoded_documents_as_the_kind_of_the_case() -> None:
    good = {"input": {"kind": "event", "text": EVENT}, "output": [{"document": DOCUMENT}]}
    assert _check(good) == []
    wrong = {**good, "output": [{"document": {**DOCUMENT, "time": "yesterday"}}]}
    assert any("not a valid event" in line for line in _check(wrong))
    as_plan = {**good, "input": {"kind": "plan", "text": EVENT}}
    assert any("not a valid plan" in line for line in _check(as_plan))


def test_check_wants_lines_in_order_and_problems_sorted_with_known_codes() -> None:
    def lines(*entries: dict[str, Any]) -> dict[str, Any]:
        return {"input": {"kind": "event", "text": EVENT, "stream": True},
                "output": [{"lines": list(entries)}]}

    a = {"line": 1, "document": DOCUMENT}
    b = {"line": 2, "problems": [{"code": "wrong-type", "path": "/b"},
                                 {"code": "empty-string", "path": "/a"}]}
    assert _check(lines(a)) == []
    assert any("not increasing" in line for line in _check(lines({**a, "line": 3}, b)))
    assert any("not sorted" in line for line in _check(lines(a, b)))
    unknown = {"line": 2, "problems": [{"code": "no-such-code", "path": ""}]}
    assert any("not in specs/errors.md" in line for line in _check(lines(a, unknown)))
    both = {"line": 2, "document": DOCUMENT, "problems": [{"code": "wrong-type", "path": ""}]}
    assert any("decodedText" in line for line in _check(lines(a, both)))
