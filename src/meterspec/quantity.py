"""Decimal quantities: one strict grammar in, one canonical plain-notation form out (MS-QTY).

Nothing here touches float. All arithmetic goes through EXACT, a context that raises instead
of rounding, so the default 28-digit context can never silently lose digits.
"""

from __future__ import annotations

import decimal
import re
from decimal import Decimal

from meterspec.errors import MeterspecError

MAX_TEXT_LENGTH = 64
MAX_INTEGER_DIGITS = 30
MAX_FRACTION_DIGITS = 20

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
ZERO = Decimal(0)


def parse_quantity(text: object, path: str = "") -> Decimal:
    """Parse a quantity string per MS-QTY-001..003 or raise MeterspecError."""
    if not isinstance(text, str):
        raise MeterspecError.single(
            "wrong-type", path, "a quantity must be a JSON string", "MS-QTY-001")
    match = _GRAMMAR.fullmatch(text)
    if match is None:
        raise MeterspecError.single(
            "invalid-quantity", path, f"{text[:64]!r} is not a decimal quantity", "MS-QTY-001")
    if len(text) > MAX_TEXT_LENGTH:
        raise _out_of_range(path)
    # Check the bounds on the text before Decimal sees it: an exponent like 1e10**18 must cost
    # nothing and must not reach the decimal module's own limits.
    integer, fraction, exponent_text = match.groups()
    coefficient = (integer + (fraction or "")).lstrip("0")
    if not coefficient:
        return ZERO
    significant = coefficient.rstrip("0")
    exponent = int(exponent_text or 0) - len(fraction or "") + len(coefficient) - len(significant)
    if len(significant) + exponent > MAX_INTEGER_DIGITS or -exponent > MAX_FRACTION_DIGITS:
        raise _out_of_range(path)
    return Decimal(text)


def _out_of_range(path: str) -> MeterspecError:
    return MeterspecError.single(
        "quantity-out-of-range", path,
        f"a quantity has at most {MAX_TEXT_LENGTH} characters, {MAX_INTEGER_DIGITS} integer and "
        f"{MAX_FRACTION_DIGITS} fraction digits", "MS-QTY-002")


def is_quantity(text: object) -> bool:
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
