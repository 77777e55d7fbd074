"""MS-PRC-001..018: plans, version selection, the five models, included quantities, minimums and
maximums, rated charges; hand-computed tables at and around every boundary, and properties."""

from __future__ import annotations

import decimal
import json
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.codec import decode, decode_plan, decode_rated_charge, encode
from meterspec.errors import MeterspecError
from meterspec.money import Amount, currency, round_money
from meterspec.plans import (
    Charge,
    Model,
    Plan,
    RatedCharge,
    Tier,
    check_plan,
    plan_problems,
    select_plan,
)
from meterspec.pricing import rate, rate_plan

SEED_TIERS = [Tier("1000", "0.10"), Tier("10000", "0.08"), Tier(None, "0.05")]  # seed 003
FEE_TIERS = [Tier("10", "1", "5"), Tier("20", "0.5", "3"), Tier(None, "0.25", "2")]


def graduated(tiers: list[Tier], **extra: Any) -> Charge:
    return Charge(id="c", model="graduated", unit="u", tiers=tiers, **extra)


def volume(tiers: list[Tier], **extra: Any) -> Charge:
    return Charge(id="c", model="volume", unit="u", tiers=tiers, **extra)


def amount_of(charge: Charge, quantity: str, code: str = "USD") -> str:
    return rate(charge, quantity, code).amount.precise


# ------------------------------------------------------------------ graduated (MS-PRC-009)

@pytest.mark.parametrize(("quantity", "expected"), [
    ("0", "0"), ("0.5", "0.05"), ("1", "0.1"), ("999", "99.9"), ("1000", "100"),
    ("1000.000001", "100.00000008"), ("1001", "100.08"), ("5000", "420"),
    ("9999.5", "819.96"), ("10000", "820"), ("10001", "820.05"), ("15000", "1070"),
    ("1e6", "50320"), ("-10", "-1"),
])
def test_graduated_seed_tiers_at_and_around_every_boundary(quantity: str, expected: str) -> None:
    """MS-PRC-007 inclusive upTo, MS-PRC-009 units per tier, MS-PRC-015 fractional units exact,
    MS-PRC-011 negative quantities at the first tier's price."""
    assert amount_of(graduated(SEED_TIERS), quantity) == expected


def test_graduated_stripe_style_example() -> None:
    """First 1000 at 0.01, next 9000 at 0.008, the rest at 0.005: 15000 units cost 107."""
    tiers = [Tier("1000", "0.01"), Tier("10000", "0.008"), Tier(None, "0.005")]
    rated = rate(graduated(tiers), "15000", "USD")
    assert [(r.tier, r.from_, r.to, r.units, r.amount) for r in rated.tiers or []] == [
        (0, "0", "1000", "1000", "10"), (1, "1000", "10000", "9000", "72"),
        (2, "10000", None, "5000", "25")]
    assert rated.amount == Amount("107", "107")


@pytest.mark.parametrize(("quantity", "expected", "rows"), [
    ("0", "0", []),                                   # MS-PRC-011: no tier, no fee at 0
    ("0.001", "5.001", [(0, "0.001", "5")]),
    ("10", "15", [(0, "10", "5")]),                   # at the bound: tier 1 not entered
    ("10.5", "18.25", [(0, "10", "5"), (1, "0.5", "3")]),
    ("20", "23", [(0, "10", "5"), (1, "10", "3")]),
    ("21", "25.25", [(0, "10", "5"), (1, "10", "3"), (2, "1", "2")]),
    ("-4", "-4", [(0, "-4", "0")]),                   # negative: first price, no fee
])
def test_graduated_flat_fees_are_charged_when_a_tier_holds_units(
        quantity: str, expected: str, rows: list[tuple[int, str, str]]) -> None:
    """MS-PRC-009 and MS-PRC-011; the breakdown lists the tiers holding units (MS-PRC-016)."""
    rated = rate(graduated(FEE_TIERS), quantity, "USD")
    assert rated.amount.precise == expected
    assert [(r.tier, r.units, r.flat_fee) for r in rated.tiers or []] == rows


def test_graduated_breakdown_row_fields() -> None:
    """MS-PRC-016: from/to are the tier's bounds as defined, amount = units x price + fee."""
    rated = rate(graduated(FEE_TIERS), "12.5", "USD")
    assert json.loads(encode(rated)) == {
        "chargeID": "c", "model": "graduated", "currency": "USD", "unit": "u",
        "quantity": "12.5", "includedQuantity": "0", "billableQuantity": "12.5",
        "tiers": [
            {"tier": 0, "from": "0", "to": "10", "units": "10", "unitPrice": "1",
             "flatFee": "5", "amount": "15"},
            {"tier": 1, "from": "10", "to": "20", "units": "2.5", "unitPrice": "0.5",
             "flatFee": "3", "amount": "4.25"}],
        "subtotal": "19.25", "amount": {"precise": "19.25", "rounded": "19.25"}}


# ------------------------------------------------------------------ volume (MS-PRC-010)

@pytest.mark.parametrize(("quantity", "expected", "tier"), [
    ("0", "0", None), ("0.5", "0.05", 0), ("1000", "100", 0), ("1000.5", "80.04", 1),
    ("1001", "80.08", 1), ("10000", "800", 1), ("10000.0001", "500.000005", 2),
    ("20000", "1000", 2), ("-3", "-0.3", 0),
])
def test_volume_seed_tiers_at_and_around_every_boundary(quantity: str, expected: str,
                                                        tier: int | None) -> None:
    """MS-PRC-007/010: exactly 1000 is in the first tier (100, not the 50 an exclusive bound
    would give); 1000.5 is in the second; MS-PRC-011 for 0 and negatives."""
    rated = rate(volume(SEED_TIERS), quantity, "USD")
    assert rated.amount.precise == expected
    assert [r.tier for r in rated.tiers or []] == ([] if tier is None else [tier])
    if rated.tiers:
        assert rated.tiers[0].units == rated.billable_quantity


@pytest.mark.parametrize(("quantity", "expected"), [
    ("0", "0"), ("0.1", "5.1"), ("10", "15"), ("10.000001", "8.0000005"), ("11", "8.5"),
    ("-1", "-1"),
])
def test_volume_flat_fee_of_the_selected_tier_only(quantity: str, expected: str) -> None:
    """MS-PRC-010/011: the selected tier's fee; none at zero or below."""
    tiers = [Tier("10", "1", "5"), Tier(None, "0.5", "3")]
    assert amount_of(volume(tiers), quantity) == expected


def test_first_tier_fee_always_charged_converts_exactly() -> None:
    """MS-PRC-011: a plan written for 'the first tier's fee is due even at zero usage' (Lago
    since 2026, OpenMeter) converts exactly: move the fee F into a flat charge and subtract F
    from the other volume tiers' fees."""
    fee = Decimal(5)

    def always(quantity: Decimal) -> Decimal:  # the other convention, written out
        if quantity <= 10:
            return quantity * 1 + fee
        return quantity * Decimal("0.5") + 3

    converted = Plan(id="p", version=1, currency="USD", effective_from="2024-01-01T00:00:00Z",
                     charges=[Charge(id="base", model="flat", amount="5"),
                              volume([Tier("10", "1"), Tier(None, "0.5", "-2")])])
    for text in ["0", "0.5", "10", "10.5", "100"]:
        lines = rate_plan(converted, {"u": text})
        assert sum(Decimal(line.amount.precise) for line in lines) == always(Decimal(text))


# ------------------------------------------------------------------ per-unit, included

@pytest.mark.parametrize(("quantity", "included", "billable", "expected"), [
    ("75", "50", "25", "1.25"),          # seed 004: 50 free scans, 0.05 each, 75 used
    ("50", "50", "0", "0"), ("49.5", "49.5", "0", "0"), ("0", "0", "0", "0"),
    ("50.01", "50", "0.01", "0.0005"), ("-2", "0", "-2", "-0.1"),
])
def test_per_unit_with_included_quantity(quantity: str, included: str, billable: str,
                                         expected: str) -> None:
    """MS-PRC-005: the included quantity absorbs the first positive units, never a negative
    quantity; MS-PRC-008: per-unit is one open tier."""
    charge = Charge(id="ocr", model="per-unit", unit="scan", unit_price="0.05",
                    included_quantity="50")
    rated = rate(charge, quantity, "EUR")
    assert (rated.included_quantity, rated.billable_quantity, rated.amount.precise) == (
        included, billable, expected)
    rows = rated.tiers or []
    assert [(r.tier, r.from_, r.to) for r in rows] == ([] if billable == "0" else
                                                       [(0, "0", None)])


def test_included_quantity_shifts_tier_bounds_to_billable_units() -> None:
    """MS-PRC-005: with 100 included and a first tier up to 1000, raw usage 1100 fills exactly
    the first tier."""
    charge = graduated(SEED_TIERS, included_quantity="100")
    assert amount_of(charge, "1100") == "100"
    assert amount_of(charge, "1101") == "100.08"


# ------------------------------------------------------------------ package (MS-PRC-012)

@pytest.mark.parametrize(("quantity", "packages", "expected"), [
    ("0", "0", "0"), ("10", "0", "0"), ("10.01", "1", "1.5"), ("110", "1", "1.5"),
    ("110.5", "2", "3"), ("1010", "10", "15"), ("1010.0000001", "11", "16.5"),
    ("-5", "0", "0"),
])
def test_package_rounds_the_count_up_and_never_negative(quantity: str, packages: str,
                                                        expected: str) -> None:
    """packages = ceil(max(0, q - included) / size), exactly."""
    charge = Charge(id="sms", model="package", unit="sms", package_size="100",
                    package_price="1.5", included_quantity="10")
    rated = rate(charge, quantity, "USD")
    assert (rated.packages, rated.amount.precise, rated.tiers) == (packages, expected, None)


@pytest.mark.parametrize(("quantity", "expected"), [
    ("100000", "0"), ("100001", "0.5"), ("101000", "0.5"), ("250000", "75"),
])
def test_package_seed_usameter_starter_overage(quantity: str, expected: str) -> None:
    """Seed 003 Starter: 100,000 events included, then 0.50 per 1K (MS-PRC-012)."""
    plan = decode_plan(_example("plan/valid/seed-usameter-starter.json"))
    flat, overage = rate_plan(plan, {"event": quantity})
    assert flat.amount == Amount("29", "29")
    assert overage.amount.precise == expected


def test_fractional_package_size() -> None:
    """MS-PRC-015: package sizes may be fractional; 1 / 0.3 needs 4 packages."""
    charge = Charge(id="p", model="package", unit="u", package_size="0.3", package_price="2")
    assert rate(charge, "1", "USD").packages == "4"
    assert rate(charge, "0.9", "USD").packages == "3"


# ------------------------------------------------------------------ flat, min, max

@pytest.mark.parametrize("quantity", ["0", "1e6", "-5", "0.5"])
def test_flat_fee_regardless_of_usage(quantity: str) -> None:
    """MS-PRC-013: no unit, no quantity fields, the amount every period."""
    rated = rate(Charge(id="platform", model="flat", amount="49.995"), quantity, "USD")
    assert json.loads(encode(rated)) == {
        "chargeID": "platform", "model": "flat", "currency": "USD", "subtotal": "49.995",
        "amount": {"precise": "49.995", "rounded": "50"}}


@pytest.mark.parametrize(("quantity", "subtotal", "expected"), [
    ("0", "0", "36"), ("2", "24", "36"), ("3", "36", "36"), ("5", "60", "60"),
    ("100", "1200", "1000"), ("-1", "-12", "36"),
])
def test_minimum_and_maximum_bound_the_subtotal(quantity: str, subtotal: str,
                                                expected: str) -> None:
    """MS-PRC-014: amount = min(max(subtotal, minimum), maximum), at zero usage too."""
    charge = Charge(id="seats", model="per-unit", unit="seat", unit_price="12",
                    minimum_amount="36", maximum_amount="1000")
    rated = rate(charge, quantity, "USD")
    assert (rated.subtotal, rated.amount.precise) == (subtotal, expected)


def test_rounding_comes_after_minimum_and_maximum() -> None:
    """MS-MNY-005: the line is rounded once, after the maximum (which may have more digits)."""
    charge = Charge(id="c", model="per-unit", unit="u", unit_price="1",
                    maximum_amount="10.125")
    rated = rate(charge, "11", "USD")
    assert rated.amount == Amount("10.125", "10.12")
    assert rated.subtotal == "11"


# ------------------------------------------------------------------ currencies and rounding

@pytest.mark.parametrize(("code", "price", "quantity", "precise", "rounded"), [
    ("JPY", "0.0025", "1000", "2.5", "2"), ("JPY", "0.0025", "1400", "3.5", "4"),
    ("JPY", "0.0025", "1401", "3.5025", "4"), ("USD", "0.125", "1", "0.125", "0.12"),
    ("USD", "0.135", "1", "0.135", "0.14"), ("USD", "0.001", "12345", "12.345", "12.34"),
    ("USD", "-0.125", "1", "-0.125", "-0.12"), ("KWD", "0.0005", "3", "0.0015", "0.002"),
    ("KWD", "0.0005", "5", "0.0025", "0.002"), ("CLF", "0.00001", "5", "0.00005", "0"),
    ("USD", "0.0001", "-40", "-0.004", "0"), ("USD", "2", "6.25", "12.5", "12.5"),
])
def test_line_rounding_half_even_per_currency(code: str, price: str, quantity: str,
                                              precise: str, rounded: str) -> None:
    """MS-MNY-005 (ties to even in JPY, USD, KWD, CLF), MS-MNY-006 ("12.5", not "12.50"),
    MS-MNY-008 (credits round symmetrically, -0 is 0)."""
    charge = Charge(id="c", model="per-unit", unit="u", unit_price=price)
    assert rate(charge, quantity, code).amount == Amount(precise, rounded)


# ------------------------------------------------------------------ errors

def test_rate_reports_every_problem_with_codes_paths_and_requirements() -> None:
    """MS-ERR-002 for a lone charge: bad currency, bad quantity and a bad tier value at once."""
    charge = graduated([Tier("10", "1"), Tier("1,5", "x")])
    with pytest.raises(MeterspecError) as caught:
        rate(charge, "1.2.3", "usd")
    got = {(p.code, p.path, p.requirement) for p in caught.value.problems}
    assert got == {
        ("unknown-currency", "/currency", "MS-MNY-001"),
        ("invalid-quantity", "/quantity", "MS-QTY-001"),
        ("invalid-quantity", "/tiers/1/upTo", "MS-QTY-001"),
        ("invalid-amount", "/tiers/1/unitPrice", "MS-MNY-002"),
    }


def test_tier_order_problems_are_reported_together() -> None:
    """MS-PRC-006: not increasing, not positive, open in the middle, last not open."""
    charge = graduated([Tier("0", "1"), Tier(None, "1"), Tier("5", "1"), Tier("4", "1")])
    with pytest.raises(MeterspecError) as caught:
        rate(charge, "1", "USD")
    assert [(p.code, p.path) for p in caught.value.problems] == [
        ("invalid-tiers", "/tiers/0/upTo"), ("invalid-tiers", "/tiers/1/upTo"),
        ("invalid-tiers", "/tiers/3/upTo")]
    assert "; " in caught.value.problems[2].message  # not increasing, and not open
    assert {p.requirement for p in caught.value.problems} == {"MS-PRC-006"}


@pytest.mark.parametrize(("charge", "expected"), [
    (Charge(id="c", model="per-unit", unit="u", unit_price="1", tiers=[Tier(None, "1")]),
     {("unknown-field", "/tiers", "MS-PRC-004")}),
    (Charge(id="c", model="graduated", unit="u"), {("missing-field", "/tiers", "MS-PRC-004")}),
    (Charge(id="c", model="flat", amount="1", unit="u", minimum_amount="1"),
     {("unknown-field", "/unit", "MS-PRC-004"), ("unknown-field", "/minimumAmount",
                                                  "MS-PRC-004")}),
    (Charge(id="c", model="package", unit="u", package_size="-1", package_price="1"),
     {("out-of-range", "/packageSize", "MS-PRC-012")}),
    (Charge(id="c", model="per-unit", unit="u", unit_price="1", included_quantity="-0.5"),
     {("out-of-range", "/includedQuantity", "MS-PRC-005")}),
    (Charge(id="c", model="per-unit", unit="u", unit_price="1", minimum_amount="2",
            maximum_amount="1"), {("out-of-range", "/maximumAmount", "MS-PRC-014")}),
    (Charge(id="", model="per-unit", unit="u", unit_price="1e31"),
     {("empty-string", "/id", "MS-PRC-001"), ("amount-out-of-range", "/unitPrice",
                                              "MS-MNY-002")}),
])
def test_charges_built_in_code_get_the_schema_checks_too(
        charge: Charge, expected: set[tuple[str, str, str]]) -> None:
    """MS-PRC-004/005/012/014: rate() checks a Struct built in code exactly as a document."""
    with pytest.raises(MeterspecError) as caught:
        rate(charge, "1", "USD")
    assert {(p.code, p.path, p.requirement) for p in caught.value.problems} == expected


@pytest.mark.parametrize("quantity", [1.5, 2, None, Decimal("NaN"), Decimal("Infinity")])
def test_quantity_is_never_a_float(quantity: Any) -> None:
    """MS-MNY-003 / MS-QTY-003: a float (or anything but a string or finite Decimal) is refused."""
    charge = Charge(id="c", model="per-unit", unit="u", unit_price="1")
    with pytest.raises(MeterspecError) as caught:
        rate(charge, quantity, "USD")
    assert (caught.value.code, caught.value.path) == ("wrong-type", "/quantity")


def test_plan_problems_cover_every_semantic_rule() -> None:
    """MS-PRC-001 unique charge ids, MS-PRC-002 effective period order, and the charge rules,
    all in one report."""
    plan = Plan(id="p", version=1, currency="USD", effective_from="2024-02-01T00:00:00Z",
                effective_to="2024-01-31T00:00:00-01:00",
                charges=[Charge(id="a", model="flat", amount="1"),
                         Charge(id="a", model="graduated", unit="u",
                                tiers=[Tier("10", "1"), Tier("10", "2")])])
    got = [(p.code, p.path, p.requirement) for p in plan_problems(plan)]
    assert got == [
        ("duplicate-item", "/charges/1/id", "MS-PRC-001"),
        ("invalid-tiers", "/charges/1/tiers/1/upTo", "MS-PRC-006"),
        ("invalid-window", "/effectiveTo", "MS-PRC-002"),
    ]
    with pytest.raises(MeterspecError):
        check_plan(plan)
    with pytest.raises(MeterspecError):
        rate_plan(plan, {})


# ------------------------------------------------------------------ versions (MS-PRC-002/003)

def _version(number: int, start: str, end: str | None = None, price: str = "1") -> Plan:
    return Plan(id="pro", version=number, currency="USD", effective_from=start, effective_to=end,
                charges=[Charge(id="c", model="per-unit", unit="u", unit_price=price)])


V1 = _version(1, "2024-01-01T00:00:00Z", price="1")
V2 = _version(2, "2024-02-15T00:00:00Z", price="2")       # a change in the middle of February
V3 = _version(3, "2024-04-01T00:00:00Z", "2024-05-01T00:00:00Z", price="3")


@pytest.mark.parametrize(("window_start", "expected"), [
    ("2023-12-31T23:59:59.999999Z", None),
    ("2024-01-01T00:00:00Z", 1), ("2024-02-01T00:00:00Z", 1),   # February keeps v1 ...
    ("2024-02-15T00:00:00Z", 2),                                # ... a window starting then: v2
    ("2024-03-01T00:00:00Z", 2),                                # next month: v2
    ("2024-04-01T00:00:00+00:00", 3), ("2024-04-30T23:59:59Z", 3),
    ("2024-05-01T00:00:00Z", 2),                                # v3's end is exclusive
    ("2024-03-31T20:00:00-04:00", 3),                           # an offset is the same instant
])
def test_version_effective_at_the_window_start(window_start: str, expected: int | None) -> None:
    """MS-PRC-003: the version effective at the start rates the whole window, so a mid-cycle
    change applies from the next window (seed 001); MS-PRC-002: [effectiveFrom, effectiveTo)."""
    chosen = select_plan([V3, V1, V2], "pro", window_start)
    assert (chosen.version if chosen else None) == expected


def test_version_selection_ignores_other_plans_and_breaks_ties_by_version() -> None:
    other = Plan(id="basic", version=9, currency="USD", effective_from="2024-01-01T00:00:00Z",
                 charges=V1.charges)
    same_start = _version(4, "2024-02-15T00:00:00Z", price="4")
    chosen = select_plan([other, V1, V2, same_start], "pro", "2024-03-01T00:00:00Z")
    assert chosen == same_start
    assert select_plan([other], "pro", "2024-03-01T00:00:00Z") is None


def test_two_different_documents_with_one_version_number_are_an_error() -> None:
    clash = _version(2, "2024-03-01T00:00:00Z")
    assert select_plan([V2, V2], "pro", "2024-03-01T00:00:00Z") == V2
    with pytest.raises(MeterspecError) as caught:
        select_plan([V2, clash], "pro", "2024-03-01T00:00:00Z")
    assert (caught.value.code, caught.value.requirement) == ("duplicate-item", "MS-PRC-003")


# ------------------------------------------------------------------ rating a plan (MS-PRC-018)

def _example(key: str) -> bytes:
    return (Path(__file__).resolve().parents[1] / "schemas" / "examples" / key).read_bytes()


def test_rate_plan_in_plan_order_with_missing_and_unpriced_units() -> None:
    """MS-PRC-018: one line per charge in plan order; a missing unit rates 0 (its minimum
    still shows), an unpriced unit is ignored; MS-PRC-001: the plan's currency."""
    plan = decode_plan(_example("plan/valid/every-model.json"))
    lines = rate_plan(plan, {"api_call": "151000.5", "gb_month": Decimal("10.75"),
                             "sms": "250", "unpriced": "99"})
    assert [(line.charge_id, line.amount.precise, line.amount.rounded) for line in lines] == [
        ("platform", "49.99", "49.99"), ("seats", "36", "36"),
        ("api", "150.0004", "150"), ("storage", "3.15", "3.15"), ("sms", "4.5", "4.5")]
    assert {line.currency for line in lines} == {"USD"}
    assert lines[1].quantity == "0"


def test_rated_examples_are_what_the_reference_computes() -> None:
    """MS-PRC-016: the valid rated-charge examples are reproduced byte for byte."""
    plan = decode_plan(_example("plan/valid/every-model.json"))
    lines = rate_plan(plan, {"seat": "2", "api_call": "151000.5", "gb_month": "10.75",
                             "sms": "250"})
    names = ["flat", "per-unit-minimum", "graduated-fractional", "volume-second-tier", "package"]
    for name, line in zip(names, lines, strict=True):
        expected = json.loads(_example(f"rated-charge/valid/{name}.json"))
        assert json.loads(encode(line)) == expected


def test_seed_billing_module_example() -> None:
    """Seed 004's test: 50 free scans, 0.05 each, 75 scans -> overage 25, amount 1.25 EUR."""
    plan = decode_plan(_example("plan/valid/seed-billing-module-features.json"))
    ocr, api, storage = rate_plan(plan, {"scan": "75", "call": "10000", "GB": "5.5"})
    assert (ocr.billable_quantity, ocr.amount.rounded) == ("25", "1.25")
    assert (api.billable_quantity, api.amount.rounded) == ("0", "0")
    assert (storage.billable_quantity, storage.amount.precise) == ("0.5", "0.01")


# ------------------------------------------------------------------ rated-charge checks

def test_rated_charge_validator_finds_inconsistent_numbers() -> None:
    """MS-PRC-017: a document whose numbers do not add up is rejected field by field."""
    rated = rate(graduated(FEE_TIERS), "12.5", "USD")
    document = json.loads(encode(rated))
    assert decode_rated_charge(json.dumps(document)) == rated
    document["billableQuantity"] = "12"
    document["tiers"][1]["amount"] = "4"
    document["amount"]["rounded"] = "19.3"
    with pytest.raises(MeterspecError) as caught:
        decode_rated_charge(json.dumps(document))
    assert [(p.code, p.path) for p in caught.value.problems] == [
        ("inconsistent-amount", "/billableQuantity"), ("inconsistent-amount", "/tiers/1/amount"),
        ("inconsistent-amount", "/subtotal"), ("inconsistent-amount", "/amount/rounded")]


# ------------------------------------------------------------------ strategies

quantity_texts = st.builds(
    lambda whole, fraction, negative: ("-" if negative and (whole or fraction) else "")
    + str(whole) + (f".{fraction:04d}".rstrip("0") if fraction else ""),
    st.integers(0, 30_000), st.integers(0, 9999), st.booleans())
price_texts = st.builds(lambda cents, scale: str(Decimal(cents).scaleb(-scale)),
                        st.integers(0, 50_000), st.integers(0, 6))
signed_price_texts = st.builds(lambda p, negative: ("-" + p) if negative and p != "0" else p,
                               price_texts, st.booleans())


@st.composite
def tier_lists(draw: st.DrawFn, prices: st.SearchStrategy[str] = price_texts) -> list[Tier]:
    """MS-PRC-006-valid tiers: positive, strictly increasing bounds, open last tier."""
    bounds = draw(st.lists(st.integers(1, 40_000), max_size=4, unique=True))
    scale = draw(st.integers(0, 2))
    ups = [str(Decimal(b).scaleb(-scale)) for b in sorted(bounds)]
    fees = st.none() | prices
    return [Tier(up, draw(prices), draw(fees)) for up in [*ups, None]]


MODELS: tuple[Model, ...] = ("per-unit", "graduated", "volume", "package", "flat")


@st.composite
def charges(draw: st.DrawFn, index: int = 0) -> Charge:
    model = draw(st.sampled_from(MODELS))
    ident = f"c{index}"
    if model == "flat":
        return Charge(id=ident, model="flat", amount=draw(signed_price_texts))
    low = draw(st.none() | price_texts)
    high = draw(st.none() | price_texts)
    if low is not None and high is not None and Decimal(low) > Decimal(high):
        low, high = high, low
    common: dict[str, Any] = {
        "unit": draw(st.sampled_from(["u", "v", "w"])),
        "included_quantity": draw(st.none() | st.sampled_from(["0", "1", "10.5", "100"])),
        "minimum_amount": low, "maximum_amount": high}
    if model == "per-unit":
        return Charge(id=ident, model="per-unit", unit_price=draw(signed_price_texts), **common)
    if model == "package":
        return Charge(id=ident, model="package",
                      package_size=draw(st.sampled_from(["1", "0.5", "3", "100", "1000"])),
                      package_price=draw(signed_price_texts), **common)
    return Charge(id=ident, model=model, tiers=draw(tier_lists(signed_price_texts)), **common)


timestamps = st.sampled_from(["2024-01-01T00:00:00Z", "2024-02-15T12:30:00.5+01:00",
                              "2023-12-31T23:00:00-05:00"])


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """Plans that pass every MS-PRC check (used by tests/test_schemas.py too)."""
    count = draw(st.integers(1, 4))
    start = draw(timestamps)
    return Plan(id=draw(st.sampled_from(["pro", "basic"])), version=draw(st.integers(1, 9)),
                currency=draw(st.sampled_from(["USD", "JPY", "KWD", "CLF", "EUR"])),
                effective_from=start,
                effective_to=draw(st.none() | st.just("2030-01-01T00:00:00Z")),
                charges=[draw(charges(i)) for i in range(count)])


@st.composite
def rated_charges(draw: st.DrawFn) -> RatedCharge:
    """Rated charges as the reference computes them (used by tests/test_schemas.py too)."""
    plan = draw(plans())
    charge = draw(st.sampled_from(plan.charges))
    return rate(charge, draw(quantity_texts), plan.currency)


FAST = settings(max_examples=150, deadline=None)


def _fraction(text: str | None) -> Fraction:
    return Fraction(0) if text is None else Fraction(Decimal(text))


def _expected_graduated(q: Fraction, tiers: list[Tier]) -> Fraction:
    """MS-PRC-009 written independently, with Fractions."""
    total = Fraction(0)
    lower = Fraction(0)
    for index, tier in enumerate(tiers):
        upper = None if tier.up_to is None else _fraction(tier.up_to)
        top = q if upper is None else min(q, upper)
        units = top - lower if index == 0 else max(top, lower) - lower
        total += units * _fraction(tier.unit_price) + (
            _fraction(tier.flat_fee) if units > 0 else 0)
        if upper is None:
            break
        lower = upper
    return total


def _expected_volume(q: Fraction, tiers: list[Tier]) -> Fraction:
    """MS-PRC-010/011 written independently."""
    if q <= 0:
        return q * _fraction(tiers[0].unit_price)
    lower = Fraction(0)
    for tier in tiers:
        if tier.up_to is None or lower < q <= _fraction(tier.up_to):
            return q * _fraction(tier.unit_price) + _fraction(tier.flat_fee)
        lower = _fraction(tier.up_to)
    raise AssertionError


@FAST
@given(tier_lists(), quantity_texts, quantity_texts)
def test_graduated_never_decreases_as_quantity_grows(tiers: list[Tier], a: str, b: str) -> None:
    """MS-PRC-009: for non-negative prices and fees, q1 <= q2 implies amount(q1) <= amount(q2),
    negative quantities included (MS-PRC-011 continues the first tier's slope)."""
    low, high = sorted([Decimal(a), Decimal(b)])
    charge = graduated(tiers)
    assert (Decimal(rate(charge, low, "USD").amount.precise)
            <= Decimal(rate(charge, high, "USD").amount.precise))


@FAST
@given(tier_lists(signed_price_texts), quantity_texts)
def test_graduated_is_the_sum_over_its_tiers(tiers: list[Tier], text: str) -> None:
    """MS-PRC-009 and MS-PRC-016: the amount equals an independent sum over the tiers; the rows'
    units add up to the quantity, each row is units x price + fee, rows add up to the subtotal."""
    rated = rate(graduated(tiers), text, "USD")
    q = Fraction(Decimal(text))
    assert _fraction(rated.amount.precise) == _expected_graduated(q, tiers)
    rows = rated.tiers or []
    assert sum((_fraction(r.units) for r in rows), Fraction(0)) == q
    assert [r.tier for r in rows] == sorted(r.tier for r in rows)
    assert all(_fraction(r.amount) == _fraction(r.units) * _fraction(r.unit_price)
               + _fraction(r.flat_fee) for r in rows)
    assert sum((_fraction(r.amount) for r in rows), Fraction(0)) == _fraction(rated.subtotal)


@FAST
@given(tier_lists(signed_price_texts), quantity_texts)
def test_volume_is_piecewise_linear_in_the_holding_tier(tiers: list[Tier], text: str) -> None:
    """MS-PRC-010: every unit at the price of the one tier holding q (lower < q <= upTo)."""
    rated = rate(volume(tiers), text, "USD")
    q = Fraction(Decimal(text))
    assert _fraction(rated.amount.precise) == _expected_volume(q, tiers)
    assert len(rated.tiers or []) == (0 if q == 0 else 1)


@FAST
@given(signed_price_texts, quantity_texts)
def test_per_unit_is_one_open_graduated_tier(price: str, text: str) -> None:
    """MS-PRC-008."""
    per_unit = rate(Charge(id="c", model="per-unit", unit="u", unit_price=price), text, "USD")
    as_tier = rate(graduated([Tier(None, price)]), text, "USD")
    assert msgspec.structs.replace(as_tier, model="per-unit") == per_unit


@FAST
@given(st.sampled_from(["1", "0.5", "3", "100", "0.0003"]), price_texts, quantity_texts,
       st.sampled_from(["0", "2", "10.5"]))
def test_package_is_the_exact_ceiling_and_never_negative(size: str, price: str, text: str,
                                                         included: str) -> None:
    """MS-PRC-012 with MS-PRC-005."""
    charge = Charge(id="c", model="package", unit="u", package_size=size, package_price=price,
                    included_quantity=included)
    rated = rate(charge, text, "USD")
    q = Fraction(Decimal(text))
    billable = q - min(max(q, Fraction(0)), Fraction(Decimal(included)))
    packages = -((-max(billable, Fraction(0))) // Fraction(Decimal(size)))
    assert rated.packages == str(packages)
    assert Decimal(rated.amount.precise) >= 0
    assert _fraction(rated.amount.precise) == packages * Fraction(Decimal(price))


@FAST
@given(plans(), quantity_texts)
def test_every_line_is_rounded_once_half_even_within_half_a_minor_unit(plan: Plan,
                                                                       text: str) -> None:
    """MS-MNY-005 at the line: rounded = half-even(precise), at most half a minor unit away;
    MS-PRC-014: precise = clamp(subtotal, minimum, maximum); MS-PRC-017: the output is a valid,
    consistent RatedCharge; MS-MNY-003: nothing mixes a float in (FloatOperation trapped)."""
    minor = currency(plan.currency).minor_units
    with decimal.localcontext() as context:
        context.traps[decimal.FloatOperation] = True
        lines = rate_plan(plan, dict.fromkeys(["u", "v", "w"], text))
    for charge, line in zip(plan.charges, lines, strict=True):
        precise, rounded = Decimal(line.amount.precise), Decimal(line.amount.rounded)
        assert rounded == round_money(precise, plan.currency)
        assert abs(Fraction(rounded) - Fraction(precise)) <= Fraction(1, 2 * 10**minor)
        expected = Decimal(line.subtotal)
        if charge.minimum_amount is not None:
            expected = max(expected, Decimal(charge.minimum_amount))
        if charge.maximum_amount is not None:
            expected = min(expected, Decimal(charge.maximum_amount))
        assert precise == expected
        data = encode(line)
        assert decode("rated-charge", data, RatedCharge, fast=False) == line


@FAST
@given(plans(), quantity_texts)
def test_rating_is_deterministic_and_spelling_independent(plan: Plan, text: str) -> None:
    """MS-ID-004 for pricing: equal quantities written differently give identical bytes."""
    respelled = f"{Decimal(text):E}"
    first = [encode(line) for line in rate_plan(plan, {"u": text, "v": text, "w": text})]
    second = [encode(line) for line in rate_plan(plan, {"u": respelled, "v": respelled,
                                                        "w": Decimal(text)})]
    assert first == second


@FAST
@given(plans())
def test_generated_plans_round_trip_through_the_schema(plan: Plan) -> None:
    """MS-PRC-001: a valid plan encodes to a document that decodes to the same plan."""
    assert decode_plan(encode(plan)) == plan
