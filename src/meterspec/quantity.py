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
_GRAMMAR = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")

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
    if len(text) > MAX_TEXT_LENGTH:
        raise MeterspecError.single(
            "quantity-out-of-range", path,
            f"a quantity is at most {MAX_TEXT_LENGTH} characters", "MS-QTY-002")
    if _GRAMMAR.fullmatch(text) is None:
        raise MeterspecError.single(
            "invalid-quantity", path, f"{text!r} is not a decimal quantity", "MS-QTY-001")
    value = Decimal(text)
    if value.is_zero():
        return ZERO
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    # Drop trailing zeros of the coefficient: they do not count against the bounds.
    stripped = len(digits)
    while stripped > 1 and digits[stripped - 1] == 0:
        stripped -= 1
    exponent += len(digits) - stripped
    integer_digits = max(stripped + exponent, 0)
    fraction_digits = max(-exponent, 0)
    if integer_digits > MAX_INTEGER_DIGITS or fraction_digits > MAX_FRACTION_DIGITS:
        raise MeterspecError.single(
            "quantity-out-of-range", path,
            f"a quantity has at most {MAX_INTEGER_DIGITS} integer and "
            f"{MAX_FRACTION_DIGITS} fraction digits", "MS-QTY-002")
    return value


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
