"""Subscriptions, proration and billing accounts (specs/subscriptions.md: MS-SUB, MS-PRO, MS-ACC).

The laws the spec states are hypothesis properties: a subscription without lifecycle members
bills as before, a start before the requested periods changes nothing, a trial is a later
billed start, an immediate cancellation is an end, prorated parts of a period add up to the
whole within half a minor unit each, rounding to odd then half to even is one half-even
rounding, an account's quantity is the sum of its groups' readings, and records of groups an
account does not name change nothing. Expected numbers are worked from the spec by hand.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_EVEN, Context, Decimal
from fractions import Fraction
from typing import Any

import msgspec
import pytest
from conftest import ms_id
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.codec import decode
from meterspec.contracts import Measurement, MeterRecord
from meterspec.errors import MeterspecError
from meterspec.invoices import (
    Invoice,
    InvoiceBuilder,
    InvoiceRequest,
    build_invoices,
    invoice_problems,
    request_problems,
)
from meterspec.projection import project
from meterspec.proration import exact_decimal, prorated_allowance, round_to_odd, written_amount
from meterspec.reconcile import apply_adjustment, rebuild_request, reconcile
from meterspec.timestamps import format_timestamp, parse_timestamp

Json = dict[str, Any]
DAY = 86_400 * 10**9
FEB = parse_timestamp("2024-02-01T00:00:00Z")  # February 2024 has 29 days
MAR = parse_timestamp("2024-03-01T00:00:00Z")
WIDE = Context(prec=200)

PLANS: list[Json] = [
    {"id": "basic", "version": 1, "currency": "USD", "effectiveFrom": "2023-01-01T00:00:00Z",
     "charges": [{"id": "base", "model": "flat", "amount": "29"},
                 {"id": "api", "model": "per-unit", "unit": "api_call", "unitPrice": "0.01",
                  "includedQuantity": "1000"}]},
    {"id": "pro", "version": 1, "currency": "USD", "effectiveFrom": "2023-01-01T00:00:00Z",
     "charges": [{"id": "base", "model": "flat", "amount": "99"},
                 {"id": "api", "model": "per-unit", "unit": "api_call", "unitPrice": "0.005",
                  "includedQuantity": "10000", "minimumAmount": "50"},
                 {"id": "seats", "model": "volume", "unit": "seats",
                  "tiers": [{"upTo": "10", "unitPrice": "12"},
                            {"upTo": None, "unitPrice": "9"}]}]},
    {"id": "basic-eur", "version": 1, "currency": "EUR",
     "effectiveFrom": "2023-01-01T00:00:00Z",
     "charges": [{"id": "base", "model": "flat", "amount": "29"}]},
]
USAGE: Json = {"api_call": {"aggregation": "sum"}, "seats": {"aggregation": "time-weighted-avg"}}


def request(*subscriptions: Json, at: str = "2024-03-15T00:00:00Z", periods: int = 3,
            plans: list[Json] | None = None) -> InvoiceRequest:
    document = {"workspaceID": "ws", "universeID": "prod", "at": at, "periods": periods,
                "plans": PLANS if plans is None else plans, "usage": USAGE,
                "subscriptions": list(subscriptions)}
    return decode("invoice-request", json.dumps(document), InvoiceRequest, fast=False)


def sub(subject: str = "c1", plan: str = "basic", **terms: Any) -> Json:
    return {"subject": subject, "planID": plan, "cycle": {"anchorDate": "2024-01-01"}, **terms}


def rec(at: str, quantity: str, unit: str = "api_call", subject: str = "c1",
        workspace: str = "ws", universe: str = "prod", ident: str | None = None,
        dimensions: dict[str, str] | None = None) -> MeterRecord:
    name = ident or f"{workspace}/{universe}/{subject}/{unit}/{at}/{quantity}"
    return MeterRecord(id=ms_id("rec_", [name]), workspace_id=workspace, universe_id=universe,
                       subject=subject, recorded_at=at, measurement=Measurement(quantity, unit),
                       dimensions=dimensions or {}, source_event_id=name)


def bill(req: InvoiceRequest, records: list[MeterRecord]) -> list[Json]:
    return [msgspec.to_builtins(invoice) for invoice in build_invoices(req, records)]


def problems_of(req: Json) -> list[tuple[str, str]]:
    with pytest.raises(MeterspecError) as caught:
        decode("invoice-request", json.dumps(req), InvoiceRequest, fast=False)
    return sorted((p.code, p.path) for p in caught.value.problems)


def whole(*subscriptions: Json, at: str = "2024-03-15T00:00:00Z", periods: int = 3) -> Json:
    return {"workspaceID": "ws", "universeID": "prod", "at": at, "periods": periods,
            "plans": PLANS, "usage": USAGE, "subscriptions": list(subscriptions)}


RECORDS = [rec("2024-01-20T00:00:00Z", "700"), rec("2024-02-01T00:00:00Z", "500"),
           rec("2024-02-20T00:00:00Z", "2000"), rec("2024-03-05T00:00:00Z", "1500"),
           rec("2024-03-20T00:00:00Z", "30000"), rec("2024-03-01T00:00:00Z", "4", "seats")]


# ------------------------------------------------------------------ lifecycle (MS-SUB)


def test_a_subscription_without_lifecycle_members_bills_as_before() -> None:
    """MS-SUB-001: the members are optional and change nothing when absent: three whole
    periods, the v1 revision (MS-INV-006)."""
    invoices = bill(request(sub()), RECORDS)
    assert [i["period"]["start"] for i in invoices] == [
        "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"]
    for invoice in invoices:
        assert all("servicePeriod" not in line and "plan" not in line
                   for line in invoice["lines"])
    first = invoices[0]
    assert first["total"] == {"precise": "29", "rounded": "29"}  # 700 calls are included


def test_periods_before_the_start_are_not_billed_and_the_first_is_partial() -> None:
    """MS-SUB-002, MS-SUB-005, MS-PRO-001, MS-PRO-004: from 10 February, January gets no
    invoice; February bills 20 of its 29 days (the 10th to the 29th): the fee 29 x 20/29 = 20
    exactly, the 2,000 calls of 20 February (500 on 1 February are before the start) with
    1,000 x 20/29 included."""
    invoices = bill(request(sub(start="2024-02-10T00:00:00Z")), RECORDS)
    assert [i["period"]["start"] for i in invoices] == ["2024-02-01T00:00:00Z",
                                                       "2024-03-01T00:00:00Z"]
    base, api = invoices[0]["lines"]
    window = {"start": "2024-02-10T00:00:00Z", "end": "2024-03-01T00:00:00Z"}
    assert base["servicePeriod"] == api["servicePeriod"] == window
    assert base["rated"]["amount"] == {"precise": "20", "rounded": "20"}
    # 1000 x 20/29 = 689.65517241379310344827|586...; half to even at 20 digits: up.
    assert api["rated"]["includedQuantity"] == "689.65517241379310344828"
    assert api["rated"]["billableQuantity"] == "1310.34482758620689655172"
    assert api["rated"]["amount"] == {"precise": "13.1034482758620689655172",
                                      "rounded": "13.1"}
    assert api["usage"]["recordCount"] == 1
    assert invoices[1]["lines"][0]["rated"]["amount"]["precise"] == "29"  # whole again
    # MS-PRO-007: the revision names the windows.
    assert invoices[0]["revision"] != invoices[1]["revision"]


def test_an_immediate_cancellation_ends_the_subscription_then() -> None:
    """MS-SUB-003: cancelled on 20 February at 12:00, immediately: February is billed up to
    then (19.5 of 29 days), March not at all; the same invoices as `end` at that instant."""
    cancelled = bill(request(sub(cancellation={"requestedAt": "2024-02-20T12:00:00Z",
                                               "effective": "immediately"})), RECORDS)
    ended = bill(request(sub(end="2024-02-20T12:00:00Z")), RECORDS)
    assert cancelled == ended
    assert [i["period"]["start"] for i in cancelled] == ["2024-01-01T00:00:00Z",
                                                        "2024-02-01T00:00:00Z"]
    base = cancelled[1]["lines"][0]
    assert base["servicePeriod"]["end"] == "2024-02-20T12:00:00Z"
    # 29 x 19.5/29 = 19.5
    assert base["rated"]["amount"] == {"precise": "19.5", "rounded": "19.5"}


def test_a_cancellation_at_period_end_bills_that_period_whole() -> None:
    """MS-SUB-003: requested on 20 February, effective at the period's end: February whole,
    March not billed; an earlier `end` wins."""
    req = request(sub(cancellation={"requestedAt": "2024-02-20T12:00:00Z",
                                    "effective": "period-end"}))
    invoices = bill(req, RECORDS)
    assert [i["period"]["start"] for i in invoices] == ["2024-01-01T00:00:00Z",
                                                       "2024-02-01T00:00:00Z"]
    assert all("servicePeriod" not in line for line in invoices[1]["lines"])
    earlier = bill(request(sub(end="2024-02-10T00:00:00Z", cancellation={
        "requestedAt": "2024-02-20T12:00:00Z", "effective": "period-end"})), RECORDS)
    assert earlier[-1]["lines"][0]["servicePeriod"]["end"] == "2024-02-10T00:00:00Z"


def test_nothing_in_a_trial_is_billed() -> None:
    """MS-SUB-004: a trial until 20 February: January (wholly in the trial) has no invoice,
    February is billed from the 20th only (its 500 calls on the 1st are trial usage), and the
    invoices are those of a subscription starting at the trial's end."""
    trial = bill(request(sub(start="2024-01-15T00:00:00Z", trialEnd="2024-02-20T00:00:00Z")),
                 RECORDS)
    later = bill(request(sub(start="2024-02-20T00:00:00Z")), RECORDS)
    assert trial == later
    assert [i["period"]["start"] for i in trial] == ["2024-02-01T00:00:00Z",
                                                    "2024-03-01T00:00:00Z"]
    assert trial[0]["lines"][1]["rated"]["quantity"] == "2000"
    # 29 x 10/29 = 10 (the 20th to the 29th)
    assert trial[0]["lines"][0]["rated"]["amount"]["precise"] == "10"


def test_a_subscription_that_bills_nothing_writes_no_invoice() -> None:
    """MS-SUB-005: no invoice, not a zero invoice, for periods outside the billed span; a
    cancellation before the start leaves nothing."""
    assert bill(request(sub(start="2024-04-01T00:00:00Z")), RECORDS) == []
    assert bill(request(sub(start="2024-03-10T00:00:00Z", cancellation={
        "requestedAt": "2024-03-01T00:00:00Z", "effective": "immediately"})), RECORDS) == []


@pytest.mark.parametrize(("terms", "expected"), [
    ({"start": "2024-02-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"},
     [("invalid-window", "/subscriptions/0/end")]),
    ({"start": "2024-02-01T00:00:00Z", "trialEnd": "2024-01-01T00:00:00Z"},
     [("invalid-window", "/subscriptions/0/trialEnd")]),
    ({"planChanges": [{"at": "2024-02-01T00:00:00Z", "planID": "pro"},
                      {"at": "2024-02-01T00:00:00Z", "planID": "basic"}]},
     [("invalid-value", "/subscriptions/0/planChanges/1/at")]),
    ({"planChanges": [{"at": "2024-02-01T00:00:00Z", "planID": "basic"}]},
     [("invalid-value", "/subscriptions/0/planChanges/0/planID")]),
    ({"cancellation": {"requestedAt": "2024-02-01T00:00:00Z", "effective": "now"}},
     [("invalid-value", "/subscriptions/0/cancellation/effective")]),
    ({"start": "2024-02-30T00:00:00Z", "planChanges": []},
     [("empty-list", "/subscriptions/0/planChanges"),
      ("invalid-timestamp", "/subscriptions/0/start")]),
    ({"planChanges": [{"at": "2024-02-10T00:00:00Z", "planID": "none"}]},
     [("no-effective-plan", "/subscriptions/0/planChanges/0/planID")]),
    ({"planChanges": [{"at": "2024-02-10T00:00:00Z", "planID": "basic-eur"}]},
     [("invalid-value", "/subscriptions/0/planChanges/0/planID")]),
    ({"cancellation": {"requestedAt": "9999-12-31T00:00:00Z", "effective": "period-end"}},
     [("timestamp-out-of-range", "/subscriptions/0/cancellation/requestedAt")]),
])
def test_lifecycle_problems_have_codes_and_paths(terms: Json,
                                                 expected: list[tuple[str, str]]) -> None:
    """MS-SUB-001, MS-SUB-003, MS-SUB-006, MS-SUB-007: each rule's code at its member."""
    assert problems_of(whole(sub(**terms))) == expected


def test_a_change_to_another_currency_at_a_period_start_is_allowed() -> None:
    """MS-SUB-007: segments of one period share a currency; periods may differ."""
    invoices = bill(request(sub(planChanges=[{"at": "2024-03-01T00:00:00Z",
                                              "planID": "basic-eur"}])), RECORDS)
    assert [i["currency"] for i in invoices] == ["USD", "USD", "EUR"]
    assert all("servicePeriod" not in line for i in invoices for line in i["lines"])


# ------------------------------------------------------------------ plan changes (MS-PRO)


def test_an_upgrade_mid_period_rates_each_segment_with_its_plan() -> None:
    """MS-SUB-006, MS-SUB-007, MS-PRO-002, MS-PRO-003, MS-PRO-004, MS-PRO-006: upgraded on
    11 March 00:00 (10 of 31 days on basic, 21 on pro); usage rated under the plan in force
    when it happened; a level (seats, 4 from 1 March) prorated by amount; lines carry
    servicePeriod and plan."""
    req = request(sub(planChanges=[{"at": "2024-03-11T00:00:00Z", "planID": "pro"}]))
    march = bill(req, RECORDS)[-1]
    keys = [(line["rated"]["chargeID"], line["plan"]["id"], line["servicePeriod"]["start"])
            for line in march["lines"]]
    assert keys == [("base", "basic", "2024-03-01T00:00:00Z"),
                    ("api", "basic", "2024-03-01T00:00:00Z"),
                    ("base", "pro", "2024-03-11T00:00:00Z"),
                    ("api", "pro", "2024-03-11T00:00:00Z"),
                    ("seats", "pro", "2024-03-11T00:00:00Z")]
    amounts = [line["rated"]["amount"] for line in march["lines"]]
    # 29 x 10/31 = 9.354838709677419354838709677419|35... cut after 30 digits, last digit 9
    assert amounts[0] == {"precise": "9.354838709677419354838709677419", "rounded": "9.35"}
    # 1,500 calls; 1000 x 10/31 = 322.58064516129032258064|5... -> ...258065 (half even)
    assert march["lines"][1]["rated"]["includedQuantity"] == "322.58064516129032258065"
    assert amounts[1] == {"precise": "11.7741935483870967741935", "rounded": "11.77"}
    # 99 x 21/31 = 67.064516129032258064516129032258|06...
    assert amounts[2] == {"precise": "67.064516129032258064516129032258", "rounded": "67.06"}
    # 30,000 calls, 10,000 x 21/31 = 6774.19354838709677419354|8... -> ...355 included:
    # 23225.80645161290322580645 x 0.005 = 116.12903225806451612903225 (minimum 50 x 21/31
    # = 33.87... does not bind)
    assert amounts[3] == {"precise": "116.12903225806451612903225", "rounded": "116.13"}
    # seats: 4 carried in, volume tier 12 -> 48, x 21/31 = 32 + 16/31, whose 15-digit period
    # is 516129032258064: cut after two periods, the last kept digit 4 stays
    assert amounts[4] == {"precise": "32.516129032258064516129032258064", "rounded": "32.52"}
    assert march["lines"][4]["usage"]["carriedIn"] == [RECORDS[5].id]
    assert march["plan"] == {"id": "basic", "version": 1}
    assert invoice_problems(msgspec.convert(march, Invoice)) == []


def test_a_prorated_minimum_is_exact_until_the_line_is_rounded() -> None:
    """MS-PRO-004, MS-PRO-005: pro's 50 minimum over 21/31 of March binds when usage is low:
    50 x 21/31 = 33.870967741935483870967741935483|87..., written to odd, rounded once."""
    req = request(sub(planChanges=[{"at": "2024-03-11T00:00:00Z", "planID": "pro"}]))
    march = bill(req, RECORDS[:4])[-1]
    api = march["lines"][3]["rated"]
    assert api["subtotal"] == "0"
    assert api["amount"] == {"precise": "33.870967741935483870967741935483", "rounded": "33.87"}


def test_a_plan_change_at_a_period_start_needs_no_proration() -> None:
    """MS-SUB-006: a downgrade effective at 1 March: February on pro, March on basic, both
    whole, no servicePeriod."""
    req = request(sub(plan="pro", planChanges=[{"at": "2024-03-01T00:00:00Z",
                                                "planID": "basic"}]), periods=2)
    feb, march = bill(req, RECORDS)
    assert (feb["plan"]["id"], march["plan"]["id"]) == ("pro", "basic")
    assert all("servicePeriod" not in line and "plan" not in line
               for invoice in (feb, march) for line in invoice["lines"])


def test_the_revision_of_a_segmented_invoice_follows_the_v2_recipe() -> None:
    """MS-PRO-007, recomputed from the prose with hashlib."""
    invoice = bill(request(sub(start="2024-02-10T00:00:00Z")), RECORDS)[0]
    fields = ["meterspec/invoice-revision/v2", invoice["id"], "basic", "1", "USD", "2"]
    for line in invoice["lines"]:
        rated, usage, window = line["rated"], line.get("usage"), line["servicePeriod"]
        fields += [rated["chargeID"], rated.get("quantity", ""),
                   rated.get("billableQuantity", ""), rated["amount"]["precise"],
                   rated["amount"]["rounded"],
                   "" if usage is None else str(usage["recordCount"]),
                   "" if usage is None else usage["recordsDigest"], "",
                   window["start"], window["end"], "", "", "0"]
    fields += [invoice["subtotal"]["precise"], invoice["subtotal"]["rounded"],
               invoice["total"]["precise"], invoice["total"]["rounded"]]
    assert invoice["revision"] == ms_id("rev_", fields)


def test_a_prorated_flat_line_is_checked() -> None:
    """MS-PRO-008: a servicePeriod outside the period, and a prorated fee that is not the
    fee times the fraction, are reported."""
    invoice = bill(request(sub(start="2024-02-10T00:00:00Z")), RECORDS)[0]
    wrong = json.loads(json.dumps(invoice))
    wrong["lines"][0]["rated"]["amount"] = {"precise": "19.01", "rounded": "19.01"}
    wrong["lines"][1]["servicePeriod"]["end"] = "2024-03-02T00:00:00Z"
    found = invoice_problems(msgspec.convert(wrong, Invoice))
    assert {(p.code, p.path) for p in found} >= {
        ("inconsistent-amount", "/lines/0/rated/amount/precise"),
        ("invalid-window", "/lines/1/servicePeriod")}


# ------------------------------------------------------------------ laws (MS-PRO-005)


@settings(max_examples=500, deadline=None)
@given(numerator=st.integers(-10**40, 10**40), denominator=st.integers(1, 10**18),
       minor=st.integers(0, 4))
def test_rounding_to_odd_then_half_even_is_one_half_even_rounding(
        numerator: int, denominator: int, minor: int) -> None:
    """MS-PRO-005: precise written to odd at 30 digits, rounded half to even to the minor
    units, equals the exact rational rounded half to even once."""
    exact = Fraction(numerator, denominator)
    once = round(exact * 10**minor)  # round() of a Fraction is half to even
    written = round_to_odd(exact)
    assert written.quantize(Decimal(1).scaleb(-minor), rounding=ROUND_HALF_EVEN,
                            context=WIDE) == Decimal(once).scaleb(-minor, context=WIDE)
    assert abs(Fraction(written) - exact) < Fraction(1, 10**30)


@settings(max_examples=300, deadline=None)
@given(units=st.integers(0, 10**6), half=st.booleans(), minor=st.integers(0, 4),
       nudge=st.integers(1, 10**6), denominator=st.integers(10**31, 10**33))
def test_values_next_to_a_tie_round_as_their_exact_value(units: int, half: bool, minor: int,
                                                         nudge: int, denominator: int) -> None:
    """Near ties, where a rounding to 30 digits half to even would round a second time wrong:
    a tie plus or minus less than 10^-30 still rounds away from the tie's even neighbour."""
    tie = (Fraction(2 * units + 1, 2) if half else Fraction(units)) / 10**minor
    for exact in (tie + Fraction(nudge, denominator), tie - Fraction(nudge, denominator)):
        once = round(exact * 10**minor)
        assert Decimal(written_amount(exact)).quantize(
            Decimal(1).scaleb(-minor), rounding=ROUND_HALF_EVEN, context=WIDE) \
            == Decimal(once).scaleb(-minor, context=WIDE)


def test_exact_decimals_and_allowances() -> None:
    """MS-PRO-004/005: finite expansions are written exactly; allowances rounded half to even
    at 20 digits."""
    assert exact_decimal(Fraction(49, 1024)) == Decimal("0.0478515625")
    assert exact_decimal(Fraction(1, 3)) is None
    assert written_amount(Fraction(1, 3)) == "0.333333333333333333333333333333"
    assert written_amount(Fraction(-1, 3 * 10**31)) == "-0." + "0" * 29 + "1"  # cut to 0: odd
    assert written_amount(Fraction(-1, 2 * 10**31)) == "-0." + "0" * 31 + "5"  # finite: exact
    assert prorated_allowance(Decimal(1), Fraction(1, 2 * 10**20)) == Decimal(0)  # a tie: even
    assert prorated_allowance(Decimal(3), Fraction(1, 2 * 10**20)) == Decimal("2E-20")


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(1, 29 * 24 - 1), min_size=1, max_size=3, unique=True),
       fee=st.decimals(min_value=0, max_value=10**6, places=2))
def test_prorated_flat_parts_add_up_to_the_fee_within_half_a_cent_each(
        cuts: list[int], fee: Decimal) -> None:
    """MS-PRO-003, MS-PRO-005: February cut at hours into segments alternating between two
    plans with the same fee: the segments' rounded fees differ from the whole fee by at most
    half a cent per segment."""
    plans = [{"id": name, "version": 1, "currency": "USD",
              "effectiveFrom": "2023-01-01T00:00:00Z",
              "charges": [{"id": "base", "model": "flat", "amount": str(fee)}]}
             for name in ("a", "b")]
    changes = [{"at": format_timestamp(FEB + hour * DAY // 24), "planID": "ab"[(i + 1) % 2]}
               for i, hour in enumerate(sorted(cuts))]
    req = request(sub(plan="a", planChanges=changes), at="2024-02-10T00:00:00Z", periods=1,
                  plans=plans)
    [invoice] = bill(req, [])
    rounded = sum(Decimal(line["rated"]["amount"]["rounded"]) for line in invoice["lines"])
    precise = sum(Fraction(Decimal(line["rated"]["amount"]["precise"]))
                  for line in invoice["lines"])
    assert len(invoice["lines"]) == len(cuts) + 1
    assert abs(rounded - fee) <= Decimal("0.005") * len(invoice["lines"])
    assert abs(precise - Fraction(fee)) < Fraction(len(cuts) + 1, 10**30)


@settings(max_examples=40, deadline=None)
@given(start_hour=st.integers(-24 * 40, 24 * 70), length=st.integers(1, 24 * 90),
       trial=st.one_of(st.none(), st.integers(0, 24 * 60)))
def test_a_trial_is_a_later_start_and_a_start_before_the_periods_changes_nothing(
        start_hour: int, length: int, trial: int | None) -> None:
    """MS-SUB-002, MS-SUB-004, MS-SUB-005 as laws: billing with a trial equals billing from
    its end; a start and end around all requested periods equal no start and end."""
    start = parse_timestamp("2024-01-01T00:00:00Z") + start_hour * DAY // 24
    end = start + length * DAY // 24
    terms: Json = {"start": format_timestamp(start), "end": format_timestamp(end)}
    if trial is not None:
        trial_end = start + trial * DAY // 24 + 1
        with_trial = bill(request(sub(**terms, trialEnd=format_timestamp(trial_end))), RECORDS)
        later = max(start, trial_end)
        plain = bill(request(sub(**{**terms, "start": format_timestamp(later)})), RECORDS) \
            if later < end else []
        assert with_trial == plain
    around = {"start": "2023-06-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"}
    assert bill(request(sub(**around)), RECORDS) == bill(request(sub()), RECORDS)


# ------------------------------------------------------------------ accounts (MS-ACC)


ACCOUNT = [{"workspaceID": "acme-us"}, {"workspaceID": "acme-eu", "subject": "acme"}]


def test_an_account_bills_the_sum_of_its_groups_readings() -> None:
    """MS-ACC-001, MS-ACC-002, MS-ACC-003: US and EU workspaces on one invoice of the
    request's tenant; seats add across regions (5 + 7 = 12, one volume price for the
    account); the request's own workspace is not billed unless listed; a third workspace takes
    no part."""
    records = [rec("2024-02-12T00:00:00Z", "5", "seats", workspace="acme-us"),
               rec("2024-02-12T00:00:00Z", "7", "seats", subject="acme", workspace="acme-eu"),
               rec("2024-02-12T00:00:00Z", "900", "seats", workspace="ws"),
               rec("2024-02-12T00:00:00Z", "300", "seats", workspace="acme-apac"),
               rec("2024-03-13T00:00:00Z", "20000", workspace="acme-us"),
               rec("2024-03-14T00:00:00Z", "30000", subject="acme", workspace="acme-eu")]
    req = request(sub(plan="pro", sources=ACCOUNT), at="2024-03-15T00:00:00Z", periods=1)
    [invoice] = bill(req, records)
    assert (invoice["workspaceID"], invoice["subject"]) == ("ws", "c1")
    _, api, seats = invoice["lines"]
    assert api["rated"]["quantity"] == "50000"
    assert [s["quantity"] for s in api["usage"]["sources"]] == ["20000", "30000"]
    assert seats["rated"]["quantity"] == "12" and seats["rated"]["tiers"][0]["unitPrice"] == "9"
    usage = seats["usage"]
    assert usage["recordCount"] == 0 and usage["carriedIn"] == sorted(
        [records[0].id, records[1].id])
    assert [(s["workspaceID"], s["universeID"], s["subject"]) for s in usage["sources"]] == [
        ("acme-us", "prod", "c1"), ("acme-eu", "prod", "acme")]
    assert usage["readingID"] == ms_id("rdg_", ["meterspec/account-reading/v1", "2",
                                                *[s["readingID"] for s in usage["sources"]]])
    assert invoice_problems(msgspec.convert(invoice, Invoice)) == []


@pytest.mark.parametrize(("subscriptions", "expected"), [
    ([sub(sources=[{"workspaceID": "a"}, {"workspaceID": "a", "universeID": "prod"}])],
     [("duplicate-item", "/subscriptions/0/sources/1")]),
    ([sub(sources=[{"workspaceID": "ws"}]), sub("c2", sources=[{"workspaceID": "ws",
                                                                "subject": "c1"}])],
     [("duplicate-item", "/subscriptions/1/sources/0")]),
    ([sub(sources=[{"workspaceID": "ws", "subject": "c2"}]), sub("c2")],
     [("duplicate-item", "/subscriptions/1/subject")]),
    ([sub(sources=[])], [("empty-list", "/subscriptions/0/sources")]),
])
def test_a_group_is_billed_once(subscriptions: list[Json],
                                expected: list[tuple[str, str]]) -> None:
    """MS-ACC-001: no usage is billed twice."""
    assert problems_of(whole(*subscriptions)) == expected


unique_values = st.lists(st.tuples(st.sampled_from(["us", "eu", "apac"]),
                                   st.sampled_from(["u1", "u2", "u3"]),
                                   st.integers(0, 27)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(rows=unique_values)
def test_an_account_quantity_is_the_sum_of_isolated_readings(
        rows: list[tuple[str, str, int]]) -> None:
    """MS-ACC-002, MS-ACC-004: a unique-count of users over two regions is the sum of each
    region's count (a user id in two workspaces is two values), and a third region's records
    change nothing."""
    plans = [{"id": "p", "version": 1, "currency": "USD",
              "effectiveFrom": "2023-01-01T00:00:00Z",
              "charges": [{"id": "mau", "model": "per-unit", "unit": "active",
                           "unitPrice": "1"}]}]
    document = {"workspaceID": "home", "universeID": "prod", "at": "2024-02-10T00:00:00Z",
                "plans": plans, "usage": {"active": {"aggregation": "unique-count",
                                                     "dimension": "user"}},
                "subscriptions": [{"subject": "c", "planID": "p",
                                   "cycle": {"anchorDate": "2024-01-01"},
                                   "sources": [{"workspaceID": "us"}, {"workspaceID": "eu"}]}]}
    req = decode("invoice-request", json.dumps(document), InvoiceRequest, fast=False)
    records = [rec(format_timestamp(FEB + day * DAY), "1", "active", subject="c",
                   workspace=region, ident=f"{region}{user}{day}", dimensions={"user": user})
               for region, user, day in rows]
    [invoice] = build_invoices(req, records)
    expected = sum(len({user for region, user, _ in rows if region == name})
                   for name in ("us", "eu"))
    line = invoice.lines[0]
    assert line.rated.quantity == str(expected)
    assert line.usage is not None and line.usage.record_count == sum(
        1 for region, _, _ in rows if region != "apac")


# ------------------------------------------------------------------ reconcile, project, jobs


@settings(max_examples=25, deadline=None)
@given(late=st.lists(st.tuples(st.integers(0, 30 * 24 - 1), st.integers(1, 50_000)),
                     min_size=1, max_size=4))
def test_late_records_in_a_segmented_period_reconcile(late: list[tuple[int, int]]) -> None:
    """MS-PRO-009 with MS-REC-005: a late record in either segment adjusts that segment's
    lines; the closed invoice plus the adjustment is the rebuilt invoice."""
    req = request(sub(planChanges=[{"at": "2024-03-11T00:00:00Z", "planID": "pro"}]))
    closed = build_invoices(req, RECORDS)[-1]
    more = [rec(format_timestamp(MAR + hour * DAY // 24), str(q), ident=f"late{i}")
            for i, (hour, q) in enumerate(late)]
    rebuilt = build_invoices(rebuild_request(req, closed), RECORDS + more)[0]
    adjustment = reconcile(closed, rebuilt)
    assert adjustment is not None
    assert apply_adjustment(closed, adjustment) == rebuilt
    assert {(line.before.service_period, line.before.plan) for line in adjustment.lines} <= {
        (line.service_period, line.plan) for line in closed.lines}


def test_a_closed_period_the_subscription_no_longer_bills_is_another_bill() -> None:
    """MS-PRO-009: the request now ends the subscription before March."""
    closed = build_invoices(request(sub()), RECORDS)[-1]
    with pytest.raises(MeterspecError) as caught:
        rebuild_request(request(sub(end="2024-03-01T00:00:00Z")), closed)
    assert (caught.value.code, caught.value.problems[0].path) == ("invoice-mismatch",
                                                                  "/closed/0/period")


def test_a_projection_projects_each_line_over_its_window() -> None:
    """MS-PRO-009: as of 21 March, a period upgraded on the 11th: the pro segment's 30,000
    calls from the 20th over 10 of its 21 days project to 63,000; basic's segment is over."""
    req = request(sub(planChanges=[{"at": "2024-03-11T00:00:00Z", "planID": "pro"}]),
                  at="2024-03-21T00:00:00Z", periods=1)
    [projection] = project(req, RECORDS)
    lines = msgspec.to_builtins(projection)["lines"]
    assert [(line["chargeID"], line["plan"]["id"]) for line in lines] == [
        ("base", "basic"), ("api", "basic"), ("base", "pro"), ("api", "pro"), ("seats", "pro")]
    assert lines[1]["projectedQuantity"] == lines[1]["quantity"] == "1500"
    assert lines[3]["quantity"] == "30000" and lines[3]["projectedQuantity"] == "63000"
    assert lines[2]["projectedAmount"] == lines[2]["amount"]


@settings(max_examples=20, deadline=None)
@given(split=st.lists(st.booleans(), min_size=len(RECORDS) + 2, max_size=len(RECORDS) + 2))
def test_builders_of_parts_merge_into_the_whole(split: list[bool]) -> None:
    """MS-AGG-005 for segmented and account subscriptions: slots of two builders, merged, give
    the invoices of one builder (what `invoice --jobs` relies on)."""
    req = request(sub(start="2024-02-10T00:00:00Z",
                      planChanges=[{"at": "2024-03-11T00:00:00Z", "planID": "pro"}]),
                  sub("c2", sources=[{"workspaceID": "ws", "subject": "c2"},
                                     {"workspaceID": "eu", "subject": "c1"}]))
    records = [*RECORDS, rec("2024-03-02T00:00:00Z", "3", "seats", workspace="eu"),
               rec("2024-03-03T00:00:00Z", "1", "seats", workspace="eu")]
    one = InvoiceBuilder(req)
    left, right = one.fresh(), one.fresh()
    for record, side in zip(records, split, strict=True):
        one.add(record)
        (left if side else right).add(record)
    left.merge_slots(right.slots())
    assert left.invoices() == one.invoices()
    assert request_problems(req) == []
