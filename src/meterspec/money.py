"""Money: ISO 4217 currencies, exact amounts, one half-even rounding per invoice line (MS-MNY).

Amounts are Decimals in the quantity grammar with their own bounds (MS-MNY-002). Every sum and
product goes through EXACT, which raises instead of rounding; the one rounding that money has
is `round_money` (MS-MNY-005), and it is applied by the caller once per invoice line.
"""

from __future__ import annotations

import decimal
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from types import MappingProxyType

import msgspec

from meterspec.errors import MeterspecError
from meterspec.quantity import EXACT, ZERO, Bounds, format_quantity, parse_bounded

MAX_AMOUNT_TEXT_LENGTH = 100
"""The most characters of an amount's text (MS-MNY-002)."""
MAX_AMOUNT_INTEGER_DIGITS = 30
"""The most integer digits of an amount (MS-MNY-002)."""
MAX_AMOUNT_FRACTION_DIGITS = 30
"""The most fraction digits of an amount (MS-MNY-002)."""

_CODE = re.compile(r"[A-Z]{3}")

# Rounding is allowed here and nowhere else: half to even, and still an error on overflow.
_ROUNDING = decimal.Context(
    prec=EXACT.prec, rounding=decimal.ROUND_HALF_EVEN, Emax=EXACT.Emax, Emin=EXACT.Emin,
    traps=[decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero])


@dataclass(frozen=True)
class Currency:
    """One ISO 4217 currency: its alphabetic code, minor units, numeric code and name."""

    code: str
    """The alphabetic ISO 4217 code, e.g. `EUR`."""
    minor_units: int
    """The digits after the decimal point of the currency's minor unit (2 for EUR, 0 for JPY, 3 for
    KWD)."""
    numeric: str
    """The three-digit numeric ISO 4217 code, as text (leading zeros kept)."""
    name: str
    """The currency's English name."""


@cache
def _table() -> tuple[str, Mapping[str, Currency]]:
    text = resources.files("meterspec").joinpath("currencies.json").read_text(encoding="utf-8")
    document = json.loads(text)
    table = {code: Currency(code, entry["minorUnits"], entry["numeric"], entry["name"])
             for code, entry in document["currencies"].items()}
    return document["published"], MappingProxyType(table)


def currencies() -> Mapping[str, Currency]:
    """Every currency MS-MNY-001 accepts, by code."""
    return _table()[1]


def iso_4217_published() -> str:
    """The publication date of the ISO 4217 list this implementation uses (MS-MNY-001)."""
    return _table()[0]


def currency(code: object, path: str = "") -> Currency:
    """The currency with this code (MS-MNY-001) or MeterspecError `unknown-currency`."""
    if not isinstance(code, str):
        raise MeterspecError.single(
            "wrong-type", path, "a currency code must be a JSON string", "MS-MNY-001")
    found = currencies().get(code) if _CODE.fullmatch(code) else None
    if found is None:
        raise MeterspecError.single(
            "unknown-currency", path,
            f"{code[:16]!r} is not an ISO 4217 currency with minor units (three capital "
            f"letters, list of {iso_4217_published()})", "MS-MNY-001")
    return found


def _as_currency(value: Currency | str) -> Currency:
    return value if isinstance(value, Currency) else currency(value)


AMOUNT_BOUNDS = Bounds(MAX_AMOUNT_TEXT_LENGTH, MAX_AMOUNT_INTEGER_DIGITS,
                       MAX_AMOUNT_FRACTION_DIGITS, "amount", "invalid-amount",
                       "amount-out-of-range", "MS-MNY-002", "MS-MNY-002")
"""The bounds, codes and rules of amounts, for meterspec.quantity's parser."""


def parse_money(text: object, path: str = "") -> Decimal:
    """Parse an amount per MS-MNY-002 (quantity grammar, money bounds) or raise."""
    return parse_bounded(text, path, AMOUNT_BOUNDS)


def format_money(value: Decimal) -> str:
    """The canonical form of an amount, precise or rounded (MS-MNY-006 = MS-QTY-004)."""
    return format_quantity(value)


def round_money(value: Decimal, currency_: Currency | str) -> Decimal:
    """Round half to even to the currency's minor units (MS-MNY-005); -0 comes back as 0."""
    minor = _as_currency(currency_).minor_units
    rounded = value.quantize(Decimal(1).scaleb(-minor), context=_ROUNDING)
    return ZERO if rounded.is_zero() else rounded


def is_rounded(value: Decimal, currency_: Currency | str) -> bool:
    """True when value has no digit below the currency's minor unit."""
    return round_money(value, currency_) == value


class Amount(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An amount of money on the wire: the exact value and the value rounded to the currency's
    minor units, both in canonical form (MS-MNY-004, MS-MNY-006)."""

    precise: str
    """The exact amount, canonical (MS-MNY-006); never rounded."""
    rounded: str
    """The precise amount rounded once, half to even, to the currency's minor units (MS-MNY-005)."""

    @classmethod
    def of(cls, precise: Decimal, currency_: Currency | str) -> Amount:
        """The amount of one invoice line: precise as given, rounded once (MS-MNY-005)."""
        return cls(format_money(precise), format_money(round_money(precise, currency_)))

    @property
    def precise_value(self) -> Decimal:
        """The precise amount as an exact Decimal."""
        return Decimal(self.precise)

    @property
    def rounded_value(self) -> Decimal:
        """The rounded amount as an exact Decimal."""
        return Decimal(self.rounded)


def total(amounts: Iterable[Amount]) -> Amount:
    """MS-MNY-007: a total is the exact sum of its lines' rounded amounts (never rounded again)
    beside the exact sum of their precise amounts; the two may differ by up to half a minor
    unit per line."""
    precise = rounded = ZERO
    for amount in amounts:
        precise = EXACT.add(precise, amount.precise_value)
        rounded = EXACT.add(rounded, amount.rounded_value)
    return Amount(format_money(precise), format_money(rounded))


def to_minor_units(rounded: Decimal, currency_: Currency | str) -> int:
    """A rounded amount as an integer count of minor units (cents), as payment APIs take it."""
    found = _as_currency(currency_)
    if not is_rounded(rounded, found):
        raise ValueError(f"{rounded} has digits below the minor unit of {found.code}")
    return int(EXACT.scaleb(rounded, found.minor_units))


def display(rounded: Decimal, currency_: Currency | str) -> str:
    """A rounded amount with exactly the currency's minor-unit digits ("12.50" USD, "12" JPY,
    "12.500" KWD), for people. Never for the wire: documents carry the canonical form."""
    found = _as_currency(currency_)
    if not is_rounded(rounded, found):
        raise ValueError(f"{rounded} has digits below the minor unit of {found.code}")
    value = ZERO if rounded.is_zero() else rounded
    return format(value.quantize(Decimal(1).scaleb(-found.minor_units), context=EXACT), "f")
