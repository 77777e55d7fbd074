"""examples/plan-change: an upgrade and a downgrade in the middle of April, billed by the
reference CLI and compared with the numbers its README works out by hand (MS-SUB-006,
MS-SUB-007, MS-PRO-001 to MS-PRO-006). The expected numbers are also rederived here from the
README's fractions with `fractions.Fraction`, so the file cannot drift from the arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plan-change"


def _cli(*argv: str, stdin: bytes = b"") -> bytes:
    done = subprocess.run([sys.executable, "-m", "meterspec", *argv], input=stdin,
                          capture_output=True, check=True, cwd=ROOT)
    return done.stdout


@pytest.fixture(scope="module")
def invoices() -> list[dict[str, Any]]:
    records = _cli("meter", "--config", str(EXAMPLE / "config.json"),
                   str(EXAMPLE / "events.ndjson"))
    out = _cli("invoice", "--request", str(EXAMPLE / "invoice-request.json"), "-",
               stdin=records)
    return [json.loads(line) for line in out.splitlines()]


def _summary(invoice: dict[str, Any]) -> dict[str, Any]:
    lines = []
    for line in invoice["lines"]:
        rated = line["rated"]
        found: dict[str, Any] = {
            "plan": line["plan"]["id"],
            "servicePeriod": [line["servicePeriod"]["start"], line["servicePeriod"]["end"]],
            "chargeID": rated["chargeID"]}
        for name in ("quantity", "includedQuantity", "billableQuantity"):
            if name in rated:
                found[name] = rated[name]
        found["amount"] = rated["amount"]
        lines.append(found)
    return {"subject": invoice["subject"], "period": invoice["period"], "lines": lines,
            "total": invoice["total"]}


def test_the_reference_bills_the_hand_worked_numbers(invoices: list[dict[str, Any]]) -> None:
    expected = json.loads((EXAMPLE / "expected-invoices.json").read_text())
    assert [_summary(i) for i in invoices] == expected
    assert all(line["plan"]["version"] == 1 for i in invoices for line in i["lines"])


def _included(allowance: int, f: Fraction) -> Decimal:
    """MS-PRO-004: the allowance times f, rounded once, half to even, to 20 digits."""
    exact = Fraction(allowance) * f
    scaled = exact * 10**20
    whole, rest = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * rest
    if twice > scaled.denominator or (twice == scaled.denominator and whole % 2):
        whole += 1
    return Decimal(whole).scaleb(-20)


def _cents(value: Fraction | Decimal) -> Decimal:
    exact = value if isinstance(value, Decimal) else Decimal(value.numerator) / value.denominator
    return exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


@pytest.mark.parametrize(("subject", "lines"), [
    # (plan fee, f, usage, allowance, unit price) per segment, from the README.
    ("customer:acme", [(30, Fraction(1, 3), 2000, 1000, "0.01"),
                       (90, Fraction(2, 3), 9000, 10000, "0.005")]),
    ("customer:globex", [(90, Fraction(41, 60), 5000, 10000, "0.005"),
                         (30, Fraction(19, 60), 1500, 1000, "0.01")])])
def test_the_expected_numbers_follow_from_the_fractions(
        subject: str, lines: list[tuple[int, Fraction, int, int, str]]) -> None:
    expected = {e["subject"]: e for e in
                json.loads((EXAMPLE / "expected-invoices.json").read_text())}[subject]
    amounts: list[Decimal] = []
    for fee, f, used, allowance, price in lines:
        included = _included(allowance, f)
        billable = max(Decimal(used) - included, Decimal(0))
        amounts += [_cents(fee * f), _cents(billable * Decimal(price))]
    assert [Decimal(line["amount"]["rounded"]) for line in expected["lines"]] == amounts
    assert Decimal(expected["total"]["rounded"]) == sum(amounts)


def test_segments_are_exact_nanoseconds() -> None:
    """MS-PRO-001: 20.5 days of a 30-day month is 41/60 with no rounding of time."""
    day = 86_400 * 10**9
    assert Fraction(20 * day + 12 * 3_600 * 10**9, 30 * day) == Fraction(41, 60)


def test_the_ledger_rows_add_up_to_each_total(invoices: list[dict[str, Any]]) -> None:
    """MS-EXP-010 on a segmented invoice: one row per segment line, service periods kept."""
    text = "\n".join(json.dumps(i) for i in invoices) + "\n"
    rows = [json.loads(line) for line in _cli("export", "ledger", "--format", "json",
                                                "--invoices", "-", stdin=text.encode())
            .splitlines()]
    assert [r["plan_id"] for r in rows] == ["starter"] * 2 + ["pro"] * 4 + ["starter"] * 2
    for invoice in invoices:
        mine = [r for r in rows if r["document_id"] == invoice["id"]]
        assert sum(Decimal(r["amount_rounded"]) for r in mine) == Decimal(
            invoice["total"]["rounded"])
