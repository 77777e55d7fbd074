"""Decimal quantities: one strict grammar in, one canonical plain-notation form out (MS-QTY).

Nothing here touches float. All arithmetic goes through EXACT, a context that raises instead
of rounding, so the default 28-digit context can never silently lose digits.
"""

from __future__ import annotations

import decimal
import re
from decimal import Decimal
from typing import NamedTuple

from meterspec.errors import MeterspecError

MAX_TEXT_LENGTH = 64
"""The most characters of a quantity's text (MS-QTY-002)."""
MAX_INTEGER_DIGITS = 30
"""The most integer digits of a quantity (MS-QTY-002)."""
MAX_FRACTION_DIGITS = 20
"""The most fraction digits of a quantity (MS-QTY-002)."""
MAX_EXPONENT_DIGITS = 4
"""The most digits of an exponent, which is read into a machine integer before anything is computed
(MS-QTY-002)."""

# MS-QTY-001: optional minus, digits, optional fraction, optional exponent. Nothing else.
_GRAMMAR = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?")

EXACT = decimal.Context(
    prec=1000,
    rounding=decimal.ROUND_HALF_EVEN,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation, decimal.Overflow,
           decimal.DivisionByZero],
)
"""The Decimal context of all arithmetic: any result that would be rounded raises instead
(MS-QTY-003)."""
ZERO = Decimal(0)
"""The quantity 0."""


# The fast path: a plain decimal within the bounds by its shape alone (at most 30 integer and
# 20 fraction digits, no exponent) is read directly; everything else takes the full grammar,
# which accepts the same values (tests/test_quantity.py compares the two).
_PLAIN = re.compile(r"-?[0-9]{1,30}(?:\.[0-9]{1,20})?")


def parse_quantity(text: object, path: str = "") -> Decimal:
    """Parse a quantity string per MS-QTY-001..003 or raise MeterspecError."""
    if type(text) is str and _PLAIN.fullmatch(text) is not None:
        value = Decimal(text)
        return value if value else ZERO
    return parse_bounded(text, path, QUANTITY_BOUNDS)


class Bounds(NamedTuple):
    """Size bounds of a decimal kind, with the codes and rules that name their violation."""

    text_length: int
    """The most characters the text may have."""
    integer_digits: int
    """The most digits before the decimal point, after normalisation."""
    fraction_digits: int
    """The most digits after the decimal point, after normalisation."""
    noun: str
    """What the value is called in messages (`quantity`, `amount`)."""
    invalid_code: str
    """The problem code for text outside the grammar."""
    out_of_range_code: str
    """The problem code for a value outside the bounds."""
    grammar_requirement: str
    """The requirement id of the grammar (e.g. MS-QTY-001)."""
    bounds_requirement: str
    """The requirement id of the bounds (e.g. MS-QTY-002)."""


QUANTITY_BOUNDS = Bounds(MAX_TEXT_LENGTH, MAX_INTEGER_DIGITS, MAX_FRACTION_DIGITS, "quantity",
                         "invalid-quantity", "quantity-out-of-range", "MS-QTY-001", "MS-QTY-002")
"""The bounds, codes and rules of quantities."""


def parse_bounded(text: object, path: str, bounds: Bounds) -> Decimal:
    """The MS-QTY-001 grammar, then the size bounds, checked on the text before Decimal sees
    it: an exponent like 1e10**18 must cost nothing and must not reach the decimal module's
    own limits."""
    if not isinstance(text, str):
        raise MeterspecError.single(
            "wrong-type", path, f"a {bounds.noun} must be a JSON string",
            bounds.grammar_requirement)
    match = _GRAMMAR.fullmatch(text)
    if match is None:
        raise MeterspecError.single(
            bounds.invalid_code, path, f"{text[:64]!r} is not a decimal {bounds.noun}",
            bounds.grammar_requirement)
    integer, fraction, exponent_text = match.groups()
    if len(text) > bounds.text_length or len((exponent_text or "").lstrip("+-")) > \
            MAX_EXPONENT_DIGITS:  # before any conversion whose cost grows with the text
        raise _out_of_range(path, bounds)
    coefficient = (integer + (fraction or "")).lstrip("0")
    significant = coefficient.rstrip("0")
    exponent = int(exponent_text or 0) - len(fraction or "") + len(coefficient) - len(significant)
    if (coefficient and (
            len(significant) + exponent > bounds.integer_digits
            or -exponent > bounds.fraction_digits)):
        raise _out_of_range(path, bounds)
    return Decimal(text) if coefficient else ZERO


def _out_of_range(path: str, bounds: Bounds) -> MeterspecError:
    return MeterspecError.single(
        bounds.out_of_range_code, path,
        f"a {bounds.noun} has at most {bounds.text_length} characters, an exponent of at most "
        f"{MAX_EXPONENT_DIGITS} digits, {bounds.integer_digits} integer and "
        f"{bounds.fraction_digits} fraction digits",
        bounds.bounds_requirement)


def is_quantity(text: object) -> bool:
    """Whether the value is a quantity string of MS-QTY-001."""
    try:
        parse_quantity(text)
    except MeterspecError:
        return False
    return True


def format_quantity(value: Decimal) -> str:
    """The canonical form (MS-QTY-004): plain notation, no trailing fraction zeros, no '-0'."""
    if value.is_zero():
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def canonical(text: str) -> str:
    """Canonical form of a quantity string (parses, so it validates too)."""
    return format_quantity(parse_quantity(text))
