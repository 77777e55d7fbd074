"""MS-MNY-001..008: currencies, amount grammar and bounds, exact arithmetic, half-even rounding
once per line, canonical output, totals and negative amounts."""

from __future__ import annotations

import decimal
import json
import re
import tokenize
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.codec import encode
from meterspec.errors import MeterspecError
from meterspec.money import (
    Amount,
    currencies,
    currency,
    display,
    format_money,
    is_rounded,
    iso_4217_published,
    parse_money,
    round_money,
    to_minor_units,
    total,
)
from meterspec.quantity import EXACT

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "src" / "meterspec" / name for name in ("money.py", "plans.py", "pricing.py")]


# ------------------------------------------------------------------ MS-MNY-001 currencies

@pytest.mark.parametrize(("code", "minor"), [
    ("JPY", 0), ("KRW", 0), ("ISK", 0), ("CLP", 0), ("USD", 2), ("EUR", 2), ("GBP", 2),
    ("CHF", 2), ("KWD", 3), ("BHD", 3), ("TND", 3), ("CLF", 4), ("UYW", 4), ("ZWG", 2),
])
def test_currency_minor_units(code: str, minor: int) -> None:
    """MS-MNY-001: ISO 4217 List One minor units, e.g. JPY 0, USD 2, KWD 3, CLF 4."""
    assert currency(code).minor_units == minor
    assert currency(code).code == code


@pytest.mark.parametrize("code", [
    "usd", "Usd", "US", "USDD", "", " USD", "USD ", "XAU", "XAG", "XDR", "XTS", "XXX", "ABC",
    "DEM", "FRF",
])
def test_unknown_currency(code: str) -> None:
    """MS-MNY-001: lower case, unknown, withdrawn and minor-unit-less (N.A.) codes."""
    with pytest.raises(MeterspecError) as caught:
        currency(code, "/currency")
    assert (caught.value.code, caught.value.path, caught.value.requirement) == (
        "unknown-currency", "/currency", "MS-MNY-001")


@pytest.mark.parametrize("value", [840, None, ["USD"], {"code": "USD"}])
def test_currency_code_must_be_a_string(value: object) -> None:
    with pytest.raises(MeterspecError) as caught:
        currency(value, "/c")
    assert caught.value.code == "wrong-type"


def test_currency_table_is_iso_list_one_with_minor_units() -> None:
    """MS-MNY-001: 165 codes of the 2026-01-01 list, three capital letters, 0-4 minor units,
    distinct numeric codes; the table ships as package data."""
    table = currencies()
    assert iso_4217_published() == "2026-01-01"
    assert len(table) == 165
    assert all(re.fullmatch(r"[A-Z]{3}", code) for code in table)
    assert {c.minor_units for c in table.values()} == {0, 2, 3, 4}
    numerics = [c.numeric for c in table.values()]
    assert all(re.fullmatch(r"[0-9]{3}", n) for n in numerics)
    assert len(set(numerics)) == len(numerics)
    shipped = json.loads((ROOT / "src" / "meterspec" / "currencies.json").read_text())
    assert set(shipped["currencies"]) == set(table)
    assert 'currencies.json' in (ROOT / "pyproject.toml").read_text()


# ------------------------------------------------------------------ MS-MNY-002 amounts

ACCEPTED = ["0", "-0", "1", "-1", "0.5", "12.50", "1e3", "1E-3", "-2.5e-2", "007",
            "0.000000000000000000000000000001", "9" * 30, "1e29", "1e-30",
            "123456789012345678901234567890.123456789012345678901234567890"]
REJECTED = ["", " 1", "1 ", "+1", ".5", "5.", "1,000", "1_000", "NaN", "Infinity", "0x10",
            "$1", "1 USD", "1.2.3", "--1", "1e", "\uff11"]


@pytest.mark.parametrize("text", ACCEPTED)
def test_amount_grammar_accepts(text: str) -> None:
    """MS-MNY-002: the quantity grammar, the money bounds."""
    assert parse_money(text) == Decimal(text)


@pytest.mark.parametrize("text", REJECTED)
def test_amount_grammar_rejects(text: str) -> None:
    with pytest.raises(MeterspecError) as caught:
        parse_money(text, "/unitPrice")
    assert (caught.value.code, caught.value.path, caught.value.requirement) == (
        "invalid-amount", "/unitPrice", "MS-MNY-002")


@pytest.mark.parametrize("value", [1, 1.5, None, True, [], Decimal("1")])
def test_amount_must_be_a_string(value: object) -> None:
    with pytest.raises(MeterspecError) as caught:
        parse_money(value)
    assert caught.value.code == "wrong-type"


@pytest.mark.parametrize(("text", "accepted"), [
    ("9" * 30, True), ("9" * 31, False),                       # integer digits
    ("0." + "0" * 29 + "1", True), ("0." + "0" * 30 + "1", False),  # fraction digits
    ("1e29", True), ("1e30", False), ("1e-30", True), ("1e-31", False),
    ("1" + "0" * 29 + ".5", True),
    ("0" * 99 + "1", True), ("0" * 100 + "1", False),           # 100 characters
    ("1." + "0" * 98, True), ("1." + "0" * 99, False),
    ("1e999999999", False), ("1e-999999999", False), ("0e999999999", False),
    ("0e9999", True), ("1e-0030", True), ("1e00030", False),     # exponent digits (1.1)
    ("-" + "9" * 30 + "." + "9" * 30, True),
])
def test_amount_bounds(text: str, accepted: bool) -> None:
    """MS-MNY-002: at most 100 characters, 30 integer and 30 fraction digits (after trailing
    zeros are removed); a hostile exponent costs nothing."""
    if accepted:
        assert parse_money(text) == Decimal(text)
    else:
        with pytest.raises(MeterspecError) as caught:
            parse_money(text, "/a")
        assert (caught.value.code, caught.value.requirement) == (
            "amount-out-of-range", "MS-MNY-002")


# ------------------------------------------------------------------ MS-MNY-005 rounding

TIES = [
    ("USD", "0.125", "0.12"), ("USD", "0.135", "0.14"), ("USD", "0.145", "0.14"),
    ("USD", "2.675", "2.68"), ("USD", "1.005", "1"), ("USD", "0.0050", "0"),
    ("USD", "0.015", "0.02"), ("USD", "-0.125", "-0.12"), ("USD", "-0.135", "-0.14"),
    ("USD", "0.12500000000000000001", "0.13"), ("USD", "0.12499999999999999999", "0.12"),
    ("JPY", "0.5", "0"), ("JPY", "1.5", "2"), ("JPY", "2.5", "2"), ("JPY", "3.5", "4"),
    ("JPY", "-2.5", "-2"), ("JPY", "-3.5", "-4"), ("JPY", "2.5000001", "3"), ("JPY", "100", "100"),
    ("KWD", "1.0005", "1"), ("KWD", "1.0015", "1.002"), ("KWD", "1.0025", "1.002"),
    ("KWD", "-1.0035", "-1.004"), ("KWD", "0.0004", "0"),
    ("CLF", "0.00005", "0"), ("CLF", "0.00015", "0.0002"), ("CLF", "1.23445", "1.2344"),
    ("USD", "-0.004", "0"), ("USD", "-0.005", "0"), ("USD", "-0.0051", "-0.01"),
    ("USD", "1E+3", "1000"), ("USD", "12.50", "12.5"),
]


@pytest.mark.parametrize(("code", "precise", "rounded"), TIES)
def test_rounding_half_even_to_minor_units(code: str, precise: str, rounded: str) -> None:
    """MS-MNY-005 ties in currencies with 0, 2, 3 and 4 minor units; MS-MNY-006 canonical
    output; MS-MNY-008 negatives round symmetrically and -0 is written 0."""
    value = round_money(Decimal(precise), code)
    assert format_money(value) == rounded
    assert Amount.of(Decimal(precise), code) == Amount(format_money(Decimal(precise)), rounded)


def _half_even(value: Fraction, minor: int) -> Fraction:
    """MS-MNY-005 written independently with integers."""
    scaled = value * 10**minor
    floor = scaled.numerator // scaled.denominator
    rest = scaled - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2 == 1):
        floor += 1
    return Fraction(floor, 10**minor)


amount_texts = st.from_regex(r"-?[0-9]{1,12}(\.[0-9]{1,10})?", fullmatch=True)
codes = st.sampled_from(["JPY", "USD", "KWD", "CLF", "EUR", "BHD", "ISK"])


@settings(max_examples=300, deadline=None)
@given(amount_texts, codes)
def test_rounding_is_half_even_and_within_half_a_minor_unit(text: str, code: str) -> None:
    """MS-MNY-005: the rounded value is the half-even neighbour, at most half a minor unit away,
    has at most the minor-unit digits, and rounding it again changes nothing."""
    minor = currency(code).minor_units
    precise = Decimal(text)
    rounded = round_money(precise, code)
    assert Fraction(rounded) == _half_even(Fraction(precise), minor)
    assert abs(Fraction(rounded) - Fraction(precise)) <= Fraction(1, 2 * 10**minor)
    assert is_rounded(rounded, code)
    assert round_money(rounded, code) == rounded
    written = format_money(rounded)
    assert len(written.partition(".")[2]) <= minor
    # MS-MNY-008: symmetric around zero.
    assert round_money(-precise, code) == -rounded


# ------------------------------------------------------------------ MS-MNY-003 exactness

def test_products_beyond_28_digits_are_exact() -> None:
    """MS-MNY-003: Python's default 28-digit context would round this product silently."""
    quantity = Decimal("123456789012345678901234567890.12345678901234567891")
    price = Decimal("0.123456789012345678901234567891")
    product = EXACT.multiply(quantity, price)
    assert Fraction(product) == Fraction(quantity) * Fraction(price)
    assert len(format_money(product).replace("-", "").replace(".", "")) > 28


def test_no_float_in_money_and_pricing_sources() -> None:
    """MS-MNY-003: the money and pricing code names no float and holds no float literal
    (strings and comments aside)."""
    for path in SOURCES:
        with path.open("rb") as source:
            for token in tokenize.tokenize(source.readline):
                if token.type == tokenize.NAME:
                    assert token.string != "float", (path, token.start)
                if token.type == tokenize.NUMBER:
                    assert token.string.isdigit(), (path, token.start)


@settings(max_examples=100, deadline=None)
@given(amount_texts, codes)
def test_money_functions_never_mix_floats(text: str, code: str) -> None:
    """MS-MNY-003: with FloatOperation trapped, any float mixed into a Decimal would raise."""
    with decimal.localcontext() as context:
        context.traps[decimal.FloatOperation] = True
        amount = Amount.of(parse_money(text), code)
        assert total([amount, amount]).rounded_value == 2 * amount.rounded_value


# ------------------------------------------------------------------ MS-MNY-004 / 006 / 007

def test_amount_keeps_precise_and_rounded_on_the_wire() -> None:
    """MS-MNY-004 and MS-MNY-006: {precise, rounded}, both canonical ("12.5", never "12.50")."""
    amount = Amount.of(Decimal("12.4950"), "USD")
    assert (amount.precise, amount.rounded) == ("12.495", "12.5")
    assert amount.precise_value == Decimal("12.495")
    assert amount.rounded_value == Decimal("12.50")
    assert encode(amount) == b'{"precise":"12.495","rounded":"12.5"}'
    assert Amount.of(Decimal("0.00"), "KWD") == Amount("0", "0")
    assert Amount.of(Decimal("-0.001"), "USD") == Amount("-0.001", "0")


@pytest.mark.parametrize(("code", "value", "shown", "minor"), [
    ("USD", "12.5", "12.50", 1250), ("USD", "0", "0.00", 0), ("USD", "-0.1", "-0.10", -10),
    ("JPY", "12", "12", 12), ("KWD", "12.5", "12.500", 12500), ("CLF", "1", "1.0000", 10000),
    ("USD", "-0", "0.00", 0),
])
def test_display_and_minor_units_are_presentation(code: str, value: str, shown: str,
                                                  minor: int) -> None:
    """MS-MNY-006: padding to the minor unit and integer minor units exist only for people and
    payment APIs; the wire keeps the canonical form."""
    assert display(Decimal(value), code) == shown
    assert to_minor_units(Decimal(value), code) == minor


@pytest.mark.parametrize("function", [display, to_minor_units])
def test_presentation_refuses_unrounded_amounts(function: object) -> None:
    with pytest.raises(ValueError, match="minor unit"):
        function(Decimal("1.005"), "USD")  # type: ignore[operator]


def test_total_is_the_sum_of_rounded_lines() -> None:
    """MS-MNY-007: three lines of 0.005 USD round to 0 each; the total is 0, not the 0.02 that
    rounding the precise sum 0.015 would give. The precise sum is kept beside it."""
    lines = [Amount.of(Decimal("0.005"), "USD")] * 3
    assert total(lines) == Amount("0.015", "0")
    assert total([]) == Amount("0", "0")
    mixed = [Amount.of(Decimal(v), "JPY") for v in ("2.5", "-3.5", "0.4", "10")]
    assert total(mixed) == Amount("9.4", "8")


@settings(max_examples=200, deadline=None)
@given(st.lists(amount_texts, max_size=8), codes)
def test_total_differs_from_rounding_the_sum_by_at_most_half_a_unit_per_line(
        texts: list[str], code: str) -> None:
    """MS-MNY-007 and MS-MNY-008 (lines of either sign)."""
    minor = currency(code).minor_units
    lines = [Amount.of(Decimal(t), code) for t in texts]
    summed = total(lines)
    assert summed.rounded_value == sum((line.rounded_value for line in lines), Decimal(0))
    assert Fraction(summed.precise_value) == sum((Fraction(Decimal(t)) for t in texts),
                                                 Fraction(0))
    rounded_sum = round_money(summed.precise_value, code)
    assert abs(Fraction(summed.rounded_value) - Fraction(rounded_sum)) <= Fraction(
        len(lines), 2 * 10**minor) + Fraction(1, 2 * 10**minor)
