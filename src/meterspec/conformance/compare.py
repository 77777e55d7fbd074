"""Pass or fail: the comparison rules of INTERPRETING.md section 4."""

from __future__ import annotations

import difflib
import json
from typing import Any

ANSWER_KINDS = ("output", "error", "skipped", "errored")


def json_equal(left: Any, right: Any) -> bool:
    """Equality of parsed JSON values: member order ignored, array order kept, strings exact,
    absent never equal to null, booleans never equal to numbers (Python's 1 == True)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(json_equal(v, right[k])
                                                   for k, v in left.items())
    if isinstance(left, list):
        return len(left) == len(right) and all(json_equal(a, b)
                                               for a, b in zip(left, right, strict=True))
    return bool(left == right)


def problem_set(problems: list[Any]) -> set[tuple[str, str]]:
    """Errors compare as sets of (code, path): messages, order and extra members ignored."""
    return {(p["code"], p["path"]) for p in problems}


def answer_kind(answer: dict[str, Any]) -> str:
    return next(k for k in ANSWER_KINDS if k in answer)


def judge(expected: dict[str, Any], actual: dict[str, Any]) -> tuple[str, str | None]:
    """(result, reason) for one answer: passed, failed, skipped or errored. The answer has
    already been checked against the protocol (exactly one kind, right types)."""
    kind = answer_kind(actual)
    if kind in ("skipped", "errored"):
        return kind, str(actual[kind])
    wanted = answer_kind(expected)
    if kind != wanted:
        return "failed", f"expected {wanted}, got {kind}"
    if kind == "output":
        same = json_equal(expected["output"], actual["output"])
    else:
        same = problem_set(expected["error"]) == problem_set(actual["error"])
    return ("passed", None) if same else ("failed", f"{kind} differs")


def _shown(answer: dict[str, Any]) -> str:
    """An answer as compared: errors as a sorted set of {code, path}; members sorted so
    only differences that count show in a diff."""
    if "error" in answer:
        answer = {"error": [{"code": c, "path": p} for c, p in
                            sorted(problem_set(answer["error"]))]}
    return json.dumps(answer, indent=2, sort_keys=True, ensure_ascii=False)


def diff(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    """A unified diff of the expected and actual answers as indented JSON."""
    lines = difflib.unified_diff(_shown(expected).splitlines(), _shown(actual).splitlines(),
                                 "expected", "actual", lineterm="")
    return "\n".join(lines)
