"""examples/billing-account: one customer's usage in two regional workspaces on one invoice,
billed by the reference CLI and compared with the numbers its README works out by hand
(MS-ACC-001 to MS-ACC-004)."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "billing-account"


def _cli(*argv: str, stdin: bytes = b"") -> bytes:
    return subprocess.run([sys.executable, "-m", "meterspec", *argv], input=stdin,
                          capture_output=True, check=True, cwd=ROOT).stdout


def _summary(invoice: dict[str, Any]) -> dict[str, Any]:
    lines = []
    for line in invoice["lines"]:
        rated = line["rated"]
        found: dict[str, Any] = {"chargeID": rated["chargeID"]}
        if "quantity" in rated:
            found["quantity"] = rated["quantity"]
            found["sources"] = [[s["workspaceID"], s["quantity"], s["recordCount"]]
                                for s in line["usage"]["sources"]]
        found["amount"] = rated["amount"]
        lines.append(found)
    return {"workspaceID": invoice["workspaceID"], "subject": invoice["subject"],
            "period": invoice["period"], "lines": lines, "total": invoice["total"]}


def test_the_reference_bills_the_hand_worked_numbers() -> None:
    records = _cli("meter", "--config", str(EXAMPLE / "config.json"),
                   str(EXAMPLE / "events.ndjson"))
    out = _cli("invoice", "--request", str(EXAMPLE / "invoice-request.json"), "-",
               stdin=records)
    invoices = [json.loads(line) for line in out.splitlines()]
    assert [_summary(i) for i in invoices] == json.loads(
        (EXAMPLE / "expected-invoices.json").read_text())


def test_the_readme_arithmetic() -> None:
    """The US seats' average and the account's one ladder, from the README's fractions."""
    us = Decimal(7 * 15 + 9 * 16) / Decimal(31)  # 28 digits, then scale 6, half to even
    assert us.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN) == Decimal("8.032258")
    assert 10_000 * Fraction("0.002") + 3_000 * Fraction("0.001") == 23
    assert 7_000 * Fraction("0.002") + 6_000 * Fraction("0.002") == 26  # billed apart
