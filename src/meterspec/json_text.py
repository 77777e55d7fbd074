"""JSON text as a hostile client may write it: bounded depth, unique names, numbers of any size
(MS-ERR-007 to MS-ERR-011).

`load` is the careful parser every rejected or whole-document input goes through; it never
recurses without bound, never converts a digit string whose length it has not bounded, and
reports problems with a code and a JSON Pointer instead of raising anything else.
`string_count` and `repeats_a_name` are the cheap exact tests the fast path runs on a decoded
event or record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any, NamedTuple

from meterspec.errors import MeterspecError, Problem, pointer

MAX_DEPTH = 64
"""The deepest nesting of objects and arrays a document may have (MS-ERR-008)."""
# Integers this long (or longer) are out of every bound the contracts have (MS-ERR-011), so they
# become a stand-in beyond all of them instead of being converted digit by digit.
_MAX_INTEGER_DIGITS = 30
_BEYOND_EVERY_BOUND: int = 10**_MAX_INTEGER_DIGITS
_NUMBER = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?")
# Tokens that matter for depth: strings (skipped whole, escapes included) and punctuation. The
# closing quote is optional so an unterminated string matches at once instead of failing at
# every quote it holds (which made a 40 KB line of escaped quotes take seconds).
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{},:]', re.DOTALL)
# A \uD800-\uDFFF escape: the only way JSON text can spell a surrogate (MS-ERR-007).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB]|\\u[dD][c-fC-F]")


def load(data: bytes | str, *, numbers: Callable[[str], Any] | None = None) -> Any:
    """Parse one JSON document (MS-ERR-007 to MS-ERR-011) or raise MeterspecError with the
    text-level problems alone (MS-ERR-010). `numbers`, when given, receives the text of every
    number instead (meterspec.convert keeps it, so no number is ever read through a float)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _invalid(f"not UTF-8 ({error.reason} at byte {error.start})") from None
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:  # could be too deep: find where
        deep = _scan(raw).too_deep
        if deep is not None:
            raise MeterspecError.single(
                "nesting-too-deep", deep, f"objects and arrays nest at most {MAX_DEPTH} deep",
                "MS-ERR-008")
    repeated = False

    def pairs(members: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        found = dict(members)
        repeated = repeated or len(found) != len(members)
        return found

    try:
        document = json.loads(text, object_pairs_hook=pairs, parse_int=numbers or _integer,
                              parse_float=numbers or _number, parse_constant=_constant)
    except (ValueError, RecursionError) as error:
        raise _invalid(str(error)[:200]) from None
    if _SURROGATE_ESCAPE.search(raw) and has_lone_surrogate(document):
        raise _invalid("a \\u escape names a lone surrogate, which is no Unicode character")
    if repeated:
        raise MeterspecError([
            Problem("duplicate-name", path, f"the name {path.rsplit('/', 1)[-1]!r} appears "
                    "more than once in one object", "MS-ERR-009")
            for path in _scan(raw).repeated])
    return document


def string_count(line: bytes) -> int | None:
    """How many strings (names included) the valid JSON text `line` holds, or None when it has
    an escape (and a quote may be part of a string).

    Without escapes every quote of a JSON text opens or closes a string. A decoder that merges
    a repeated name keeps fewer strings than the text holds (at least the repeated name is
    gone), so comparing this count with the strings of the decoded value proves that no name
    was repeated without parsing the text again: the fast path's exact check (MS-ERR-009)."""
    if b"\\" in line:
        return None
    return line.count(b'"') >> 1


def repeats_a_name(line: bytes | str) -> bool:
    """Whether a valid JSON text repeats a name in some object (MS-ERR-009); the exact check
    for texts `string_count` cannot judge."""
    repeated = False

    def pairs(members: list[tuple[str, Any]]) -> None:
        nonlocal repeated
        if not repeated and len({name for name, _ in members}) != len(members):
            repeated = True

    try:
        json.loads(line, object_pairs_hook=pairs, parse_int=len, parse_float=len)
    except (ValueError, RecursionError):
        return True  # not for this check to judge: `load` reports what is wrong
    return repeated


def _invalid(message: str) -> MeterspecError:
    return MeterspecError.single("invalid-json", "", message, "MS-ERR-003")


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _integer(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > _MAX_INTEGER_DIGITS and text.lstrip("-").lstrip("0"):
        return -_BEYOND_EVERY_BOUND if text.startswith("-") else _BEYOND_EVERY_BOUND
    return int(text)


def _number(text: str) -> int | Fraction:
    """A number with a fraction or exponent, without converting more than a bounded number of
    digits: an integer value stays an integer (2.0 is the integer 2, as JSON Schema says) or
    becomes the stand-in beyond every bound; any other value is only ever checked for its
    type, so a Fraction keeps it non-integral (exact where that is cheap)."""
    match = _NUMBER.fullmatch(text)
    if match is None:  # json only calls this for its own number grammar
        raise ValueError(f"{text[:64]!r} is not a number")
    integer, fraction, exponent_text = match.groups()
    sign = -1 if text.startswith("-") else 1
    digits = (integer + (fraction or "")).lstrip("0")
    significant = digits.rstrip("0")
    if not significant:
        return 0
    exponent_text = exponent_text or "0"
    if len(exponent_text.lstrip("+-").lstrip("0")) > 9:  # |exponent| >= 10**9: no bound near
        if exponent_text.startswith("-"):
            return Fraction(sign, _BEYOND_EVERY_BOUND)
        return sign * _BEYOND_EVERY_BOUND
    # value = significant * 10**scale, significant without leading or trailing zeros
    scale = int(exponent_text) - len(fraction or "") + len(digits) - len(significant)
    if scale >= 0:
        if len(significant) + scale > _MAX_INTEGER_DIGITS:
            return sign * _BEYOND_EVERY_BOUND
        return sign * int(significant + "0" * scale)
    if len(significant) > 2 * _MAX_INTEGER_DIGITS or scale < -2 * _MAX_INTEGER_DIGITS:
        # Not an integer. Against an integer bound it compares as its integer part plus one
        # half does (1.000...01 is within [1, 10]), so that stands in for it.
        whole = len(significant) + scale  # digits before the point
        part = (0 if whole <= 0 else _BEYOND_EVERY_BOUND if whole > _MAX_INTEGER_DIGITS
                else int(significant[:whole]))
        return sign * (part + Fraction(1, 2))
    return Fraction(sign * int(significant), int("1" + "0" * -scale))


class _Scan(NamedTuple):
    too_deep: str | None  # the pointer of the first container opening at depth 65
    repeated: list[str]  # the pointer of every name repeated in its object, in text order


def _scan(raw: bytes) -> _Scan:
    """Depth and repeated names straight from the text, without recursion and in every object
    (also the value of a member whose name repeats, which a parser overwrites): a scan of
    strings and punctuation only (numbers and literals are skipped)."""
    # One frame per open container: [is_object, current name or index, expecting a name,
    # names seen, names reported].
    frames: list[list[Any]] = []
    repeated: list[str] = []
    for match in _TOKENS.finditer(raw):
        token = match.group()
        top = frames[-1] if frames else None
        if token in (b"{", b"["):
            if len(frames) == MAX_DEPTH:
                return _Scan(pointer(*(frame[1] for frame in frames)), repeated)
            frames.append([token == b"{", 0 if token == b"[" else "", token == b"{",
                           set(), set()])
        elif token in (b"}", b"]"):
            if frames:
                frames.pop()
        elif top is None:
            continue
        elif token == b",":
            if top[0]:
                top[2] = True
            else:
                top[1] += 1
        elif token == b":":
            top[2] = False
        elif top[0] and top[2]:  # a string where an object expects a name
            try:
                name = json.loads(token)
            except ValueError:
                name = token[1:-1].decode("utf-8", "replace")
            # A lone surrogate escape cannot be written in a report: U+FFFD stands for it.
            name = name.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            top[1] = name
            if name in top[3] and name not in top[4]:
                top[4].add(name)
                repeated.append(pointer(*(frame[1] for frame in frames)))
            top[3].add(name)
    return _Scan(None, repeated)


def has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded value holds, in a string or a member name, a lone surrogate (which
    only a \\u escape can give, and UTF-8 cannot carry)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
