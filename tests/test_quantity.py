"""MS-QTY-001..004: quantity grammar, bounds, exact arithmetic and canonical form."""

from __future__ import annotations

import decimal
import json
from decimal import Decimal

import pytest
from conftest import record
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.codec import decode
from meterspec.contracts import AggregationRequest, MeterRecord, Window
from meterspec.errors import MeterspecError
from meterspec.quantity import (
    EXACT,
    QUANTITY_BOUNDS,
    canonical,
    format_quantity,
    is_quantity,
    parse_bounded,
    parse_quantity,
)
from meterspec.readings import aggregate
from meterspec.schema import schema_problems

ACCEPTED = [
    "0", "-0", "1", "-1", "007", "1.5", "-1.50", "0.0", "1e3", "1E3", "1e+3", "1E-3", "-2.5e-2",
    "123456789", "0.000001", "10e-21", "1.0E+1",
]

REJECTED_GRAMMAR = [
    "NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "", " ", " 1", "1 ", "\t1",
    "1\n", "+1", ".5", "-.5", "5.", "-5.", "1,000", "1_000", "0x10", "1e", "1e+", "1E-", "e3",
    "1.2.3", "--1", "-", "1e3.5", "\uff11", "1.5e", "1 000", "0b1", "1/2",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_grammar_accepts(text: str) -> None:
    assert is_quantity(text)
    assert isinstance(parse_quantity(text), Decimal)


@pytest.mark.parametrize("text", REJECTED_GRAMMAR)
def test_grammar_rejects_with_invalid_quantity(text: str) -> None:
    with pytest.raises(MeterspecError) as info:
        parse_quantity(text, "/q")
    assert info.value.code == "invalid-quantity"
    assert info.value.path == "/q"
    assert info.value.requirement == "MS-QTY-001"
    assert not is_quantity(text)


@pytest.mark.parametrize("value", [1, 1.5, 0, None, True, [], {}, b"1", Decimal("1")])
def test_non_string_is_wrong_type(value: object) -> None:
    with pytest.raises(MeterspecError) as info:
        parse_quantity(value, "/x")
    assert info.value.code == "wrong-type"
    assert info.value.path == "/x"


# (text, accepted?) at the exact bounds of MS-QTY-002.
BOUNDS = [
    ("9" * 30, True),                                  # 30 integer digits
    ("9" * 31, False),                                 # 31 integer digits
    ("-" + "9" * 30, True),                            # the sign is not a digit
    ("1" + "0" * 29, True),                            # 30 integer digits, trailing integer zeros
    ("1" + "0" * 30, False),                           # trailing zeros of the integer part count
    ("1e29", True),
    ("1e30", False),
    ("0." + "1" * 20, True),                           # 20 fraction digits
    ("0." + "1" * 21, False),                          # 21 fraction digits
    ("0." + "1" * 20 + "0" * 10, True),                # trailing fraction zeros do not count
    ("1." + "0" * 40, True),                           # all-zero fraction: 1 integer digit only
    ("1e-20", True),
    ("1e-21", False),
    ("10e-21", True),                                  # = 1e-20
    ("1000e-23", True),                                # = 1e-20
    ("0.1e-19", True),                                 # = 1e-20
    ("0.1e-20", False),                                # = 1e-21
    ("9" * 30 + "." + "9" * 20, True),                 # both bounds at once (51 chars)
    ("9" * 30 + "." + "9" * 21, False),
    ("1." + "0" * 62, True),                           # exactly 64 characters
    ("1." + "0" * 63, False),                          # 65 characters
    ("-1." + "0" * 61, True),                          # 64 with the sign
    ("-1." + "0" * 62, False),                         # 65 with the sign
    ("0" * 64, True),                                  # 64 zeros: zero
    ("0" * 65, False),
]


@pytest.mark.parametrize(("text", "ok"), BOUNDS)
def test_bounds(text: str, ok: bool) -> None:
    if ok:
        parse_quantity(text)
        return
    with pytest.raises(MeterspecError) as info:
        parse_quantity(text, "/q")
    assert info.value.code == "quantity-out-of-range"
    assert info.value.path == "/q"
    assert info.value.requirement == "MS-QTY-002"


def test_bound_lengths_are_what_the_table_says() -> None:
    assert len("1." + "0" * 62) == 64
    assert len("-1." + "0" * 61) == 64
    assert len("9" * 30 + "." + "9" * 20) == 51


CANONICAL = [
    ("1E+3", "1000"),
    ("1e3", "1000"),
    ("-0.00", "0"),
    ("-0", "0"),
    ("0e5", "0"),
    ("-0e-5", "0"),
    ("000", "0"),
    ("1.50", "1.5"),
    ("1.0", "1"),
    ("-1.0", "-1"),
    ("10", "10"),
    ("100.000", "100"),
    ("007.10", "7.1"),
    ("1e-20", "0.00000000000000000001"),
    ("-1e-20", "-0.00000000000000000001"),
    ("12.5e-3", "0.0125"),
    ("1.23E+2", "123"),
    ("1.234E+2", "123.4"),
    ("5E+1", "50"),
    ("1e29", "100000000000000000000000000000"),
    ("0.1e1", "1"),
    ("123456789012345678901234567890.12345678901234567890",
     "123456789012345678901234567890.1234567890123456789"),
]


@pytest.mark.parametrize(("text", "expected"), CANONICAL)
def test_canonical_form(text: str, expected: str) -> None:
    assert canonical(text) == expected


def test_canonical_rejects_what_parse_rejects() -> None:
    with pytest.raises(MeterspecError):
        canonical("1,5")


def test_negative_quantities_are_allowed() -> None:
    assert parse_quantity("-42.5") == Decimal("-42.5")
    assert canonical("-42.50") == "-42.5"


# Decimals inside the bounds: up to 30 integer and 20 fraction digits.
# Built from text: arithmetic in the default 28-digit context would round them.
in_bounds = st.builds(
    lambda sign, whole, frac: Decimal(f"{sign}{whole}.{frac:020d}"),
    st.sampled_from(["", "-"]),
    st.integers(0, 10**30 - 1),
    st.integers(0, 10**20 - 1),
)


@st.composite
def quantity_texts(draw: st.DrawFn) -> str:
    """Valid quantity strings in many spellings: exponents, trailing zeros, leading zeros,
    a decimal point anywhere in the mantissa."""
    mantissa = str(draw(st.integers(0, 10**15 - 1))) + "0" * draw(st.integers(0, 3))
    mantissa = "0" * draw(st.integers(0, 2)) + mantissa
    point = draw(st.integers(0, len(mantissa) - 1))
    if point:
        mantissa = mantissa[:point] + "." + mantissa[point:]
    sign = draw(st.sampled_from(["", "-"]))
    exponent = draw(st.one_of(st.none(), st.integers(-30, 20)))
    if exponent is None:
        return sign + mantissa
    mark = draw(st.sampled_from(["e", "E", "e+", "E+"] if exponent >= 0 else ["e", "E"]))
    return f"{sign}{mantissa}{mark}{exponent}"


@settings(max_examples=200)
@given(quantity_texts())
def test_canonical_is_idempotent(text: str) -> None:
    try:
        once = canonical(text)
    except MeterspecError as error:
        assert error.code == "quantity-out-of-range"
        return
    assert canonical(once) == once
    assert "e" not in once.lower()
    assert Decimal(once) == Decimal(text)


@settings(max_examples=200)
@given(in_bounds)
def test_format_parse_round_trip(value: Decimal) -> None:
    text = format_quantity(value)
    assert "E" not in text and "e" not in text
    assert parse_quantity(text) == value
    assert canonical(text) == text
    assert text != "-0"
    if "." in text:
        assert not text.endswith("0") and not text.endswith(".")


@settings(max_examples=100)
@given(st.integers(-(10**12), 10**12), st.integers(-25, 25))
def test_format_is_plain_notation_for_any_exponent(coefficient: int, exponent: int) -> None:
    value = Decimal(coefficient).scaleb(exponent)
    text = format_quantity(value)
    assert "E" not in text and "e" not in text
    assert Decimal(text) == value


def _scaled(text: str) -> int:
    """A plain decimal string as an integer count of 1e-20 units, by string manipulation."""
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    units = int(whole) * 10**20 + int((frac + "0" * 20)[:20])
    return -units if negative else units


def _unscaled(units: int) -> str:
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**20)
    frac_text = f"{frac:020d}".rstrip("0")
    return f"{sign}{whole}" + (f".{frac_text}" if frac_text else "")


def test_sum_beyond_28_significant_digits_is_exact() -> None:
    """MS-QTY-003: no silent 28-digit rounding."""
    # 50 significant digits each; the default decimal context (28 digits) would round.
    texts = [
        "123456789012345678901234567890.12345678901234567891",
        "876543210987654321098765432109.87654321098765432109",
        "0.00000000000000000001",
        "-99999999999999999999999999999.99999999999999999999",
    ]
    expected = _unscaled(sum(_scaled(t) for t in texts))
    assert expected == "900000000000000000000000000000.00000000000000000002"
    with decimal.localcontext() as ctx:
        ctx.prec = 28
        assert str(sum(Decimal(t) for t in texts)) != expected  # the trap it avoids
    request = AggregationRequest(
        "sum", windows=[Window("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z")])
    records = [record("2024-01-01T12:00:00Z", t, ident=str(i)) for i, t in enumerate(texts)]
    [reading] = aggregate(records, request)
    assert reading.measurement.quantity == expected


def test_exact_context_traps_rounding() -> None:
    """MS-QTY-003: the arithmetic context raises instead of rounding."""
    assert EXACT.traps[decimal.Inexact]
    assert EXACT.traps[decimal.Rounded]
    with pytest.raises((decimal.Inexact, decimal.Rounded)):
        EXACT.divide(Decimal(1), Decimal(3))
    with pytest.raises((decimal.Inexact, decimal.Rounded)):
        EXACT.add(Decimal("1E+1000"), Decimal(1))
    # Additions of in-bounds quantities never come near the context's precision.
    big = Decimal("9" * 30 + "." + "9" * 20)
    assert EXACT.add(big, big) == Decimal("1" + "9" * 30 + "." + "9" * 19 + "8")


def test_exponent_just_below_ten_to_the_eighteen_is_out_of_range() -> None:
    for text in ("1e999999999999999999", "1e-999999999999999999"):
        with pytest.raises(MeterspecError) as info:
            parse_quantity(text)
        assert info.value.code == "quantity-out-of-range"


@pytest.mark.parametrize("text", ["0e-99999999999999999999", "-0e1000000000000000000",
                                  "0e99999", "1e00001", "1.5e+00002"])
def test_an_exponent_of_more_than_four_digits_is_out_of_range(text: str) -> None:
    """MS-QTY-002 (1.1): even for a zero coefficient, and leading zeros count, so every
    implementation reads the exponent into a machine integer first."""
    with pytest.raises(MeterspecError) as info:
        parse_quantity(text)
    assert info.value.code == "quantity-out-of-range"


@pytest.mark.parametrize(("text", "expected"), [("0e9999", "0"), ("1e0002", "100"),
                                                ("-25e-0001", "-2.5"), ("1e+29", "1" + "0" * 29)])
def test_an_exponent_of_four_digits_is_read(text: str, expected: str) -> None:
    assert canonical(text) == expected


@pytest.mark.parametrize("text", ["1e1000000000000000000", "-1e-9999999999999999999",
                                  "1e99999999999999999999"])
def test_huge_exponent_is_out_of_range_not_a_crash(text: str) -> None:
    with pytest.raises(MeterspecError) as info:
        parse_quantity(text)
    assert info.value.code == "quantity-out-of-range"


def test_decoder_and_parser_agree_on_the_length_bound_code() -> None:
    """MS-QTY-002: the schema states only the grammar; the decoder adds the bounds."""
    text = "1." + "0" * 63
    with pytest.raises(MeterspecError) as info:
        parse_quantity(text, "/measurement/quantity")
    document = {"id": "r", "workspaceID": "w", "universeID": "u", "subject": "s",
                "recordedAt": "2024-01-01T00:00:00Z",
                "measurement": {"quantity": text, "unit": "c"}, "dimensions": {},
                "sourceEventID": "e"}
    assert schema_problems("record", document) == []
    with pytest.raises(MeterspecError) as decoded:
        decode("record", json.dumps(document), MeterRecord, fast=False)
    assert [(p.code, p.path) for p in decoded.value.problems] == [
        (info.value.code, "/measurement/quantity")]
    assert info.value.code == "quantity-out-of-range"


# --- the fast path reads exactly what the grammar reads (issue 12) ----------------------------



@settings(max_examples=500)
@given(st.lists(st.sampled_from(["-", "0", "1", "9", ".", "e", "E", "+", "\uff11", "\u0661",
                                 " ", "_", "00000000000000000000", "12345678901234567890",
                                 "1234567890", ""]), max_size=8))
def test_the_fast_path_agrees_with_the_grammar(pieces: list[str]) -> None:
    text = "".join(pieces)
    try:
        expected: Decimal | str = parse_bounded(text, "/q", QUANTITY_BOUNDS)
    except MeterspecError as error:
        expected = error.code
    try:
        found: Decimal | str = parse_quantity(text, "/q")
    except MeterspecError as error:
        found = error.code
    assert found == expected, text
    if isinstance(found, Decimal) and isinstance(expected, Decimal):
        assert str(found) == str(expected)  # the same Decimal, sign of zero included
