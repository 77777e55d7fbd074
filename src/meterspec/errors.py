"""One error family for every rejected input: a stable code, a JSON Pointer, a requirement id.

Codes are part of the specification (specs/errors.md); messages are for humans and may change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec


class Problem(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """One thing wrong with one document, as written to an error report."""

    code: str
    """The stable code, lower-case words joined by `-` (e.g. `missing-field`); never changes
    meaning."""
    path: str
    """A JSON Pointer (RFC 6901) into the offending document; empty for the document itself."""
    message: str
    """A human explanation; may change at any time, never to be parsed."""
    requirement: str
    """The id of the rule broken (e.g. `MS-QTY-001`)."""
    event_id: str | None = msgspec.field(default=None, name="eventID")
    """Wire `eventID`: the id of the event concerned, when it has a usable one."""
    line: int | None = None
    """The 1-based line of the input file, in reports about a stream."""


class MeterspecError(ValueError):
    """Input rejected by the specification; carries every problem found, never only the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        """Every problem found, at least one."""
        if not self.problems:
            raise TypeError("MeterspecError needs at least one problem")
        first = self.problems[0]
        self.code = first.code
        """The first problem's code."""
        self.path = first.path
        """The first problem's JSON Pointer."""
        self.requirement = first.requirement
        """The first problem's requirement id."""
        more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(f"{first.code} at {first.path or '/'}: {first.message}{more}")

    @classmethod
    def single(cls, code: str, path: str, message: str, requirement: str) -> MeterspecError:
        """The error of one problem."""
        return cls([Problem(code, path, message, requirement)])


def pointer(*parts: str | int) -> str:
    """Build an RFC 6901 JSON Pointer from unescaped reference tokens."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def walk(value: object, fields: tuple[str, ...], path: str = "") -> Iterator[tuple[str, object]]:
    """(JSON Pointer, value) of every place `fields` reaches in a JSON document; '*' stands for
    every item of a list. Used to find the quantities and timestamps of a raw document."""
    if not fields:
        yield path, value
    elif fields[0] == "*" and isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, fields[1:], f"{path}/{index}")
    elif isinstance(value, dict) and fields[0] in value:
        yield from walk(value[fields[0]], fields[1:], path + pointer(fields[0]))


def order_problems(keyed: Iterable[tuple[str, Any]], duplicate: str, disorder: str,
                   requirement: str) -> list[Problem]:
    """Problems of a list whose (path, key) items must have strictly increasing keys: a
    repeated key is `duplicate-item`, a decreasing one `not-canonical` (a state document has
    one byte-exact form)."""
    problems: list[Problem] = []
    previous: Any = None
    for path, key in keyed:
        if previous is not None and key == previous:
            problems.append(Problem("duplicate-item", path, duplicate, requirement))
        elif previous is not None and key < previous:
            problems.append(Problem("not-canonical", path, disorder, requirement))
        previous = key
    return problems


def first_line(error: BaseException | str) -> str:
    """The first non-blank line of a library's error (or of a text), stripped: the edges
    (stores, engines) quote it in their one-line messages; an error without one gives its
    type's name."""
    text = error if isinstance(error, str) else str(error)
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line or ("" if isinstance(error, str) else type(error).__name__)
