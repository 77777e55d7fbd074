"""The concept pictures (issue 17, scripts/pictures.py) say what the reference computes: their
texts hold the facts worked here by hand. scripts/docgen.py --check (tests/test_docs.py) keeps
the committed SVGs equal to what the generator writes."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "docs" / "assets"
SVG = "{http://www.w3.org/2000/svg}"


def _texts(name: str) -> list[str]:
    tree = ElementTree.parse(ASSETS / name)
    return [t.text or "" for t in tree.iter(f"{SVG}text")]


def test_dst_windows() -> None:
    """New York days of 9, 10 and 11 March 2024: the 10th loses an hour. 04:59:59Z is 23:59:59
    EST on the 9th; 05:00:00Z is midnight on the 10th, so it is the 10th's (half-open);
    03:59:59Z on the 11th is still the 10th (EDT), 04:00:00Z is the 11th's start."""
    texts = _texts("dst-windows.svg")
    for text in ("Mar 9: 24 hours", "Mar 10: 23 hours", "Mar 11: 24 hours", "count 1",
                 "count 3", "count 2", "Mar 10 0:00 EST", "Mar 11 0:00 EDT"):
        assert text in texts, text
    homes = [t for t in texts if t.startswith("in the window of")]
    assert homes == ["in the window of Mar 9"] + ["in the window of Mar 10"] * 3 + [
        "in the window of Mar 11"] * 2


def test_tiers() -> None:
    """docs/data/api-pricing.json: at 1000 units 1000 x 0.10 = 100 for graduated and volume,
    2 packs x 40 = 80; just above, graduated adds the second tier's fee of 5, volume prices
    every unit at 0.05 (50), and a third pack starts (120). At 2000: 100 + 5 + 1000 x 0.05 =
    155, 2000 x 0.05 = 100, 4 x 40 = 160."""
    texts = _texts("tiers.svg")
    assert "At 1000 units (upTo is inclusive): graduated 100.00, volume 100.00, package " \
           "80.00." in texts
    assert "Just above 1000: graduated 105.00, volume 50.00 (it drops), package 120.00 (a " \
           "third pack)." in texts
    assert {"graduated 155", "volume 100", "package 160"} <= set(texts)


def test_anchor_31() -> None:
    """Anchored on the 31st (2024, a leap year): February has no 31st, so its period starts
    on the 29th; March is back on the 31st; April and June end on the 30th."""
    texts = _texts("anchor-31.svg")
    periods = [t for t in texts if " to " in t and t[:3] in ("Jan", "Feb", "Mar", "Apr", "May")]
    assert periods == ["Jan 31 to Feb 29", "Feb 29 to Mar 31", "Mar 31 to Apr 30",
                       "Apr 30 to May 31", "May 31 to Jun 30"]
    assert [t for t in texts if t.endswith(" days")] == ["29 days", "31 days", "30 days",
                                                         "31 days", "30 days"]


def test_late_adjustment() -> None:
    """examples/monthly-invoice/README.md: acme's invoice closed at 170.19 USD; the late 900
    API calls are billable at 0.001 (past 10,000): +0.90, so the rebuilt invoice is 171.09."""
    texts = _texts("late-adjustment.svg")
    assert {"170.19 USD", "+0.9 USD", "171.09 USD", "late: 900 api_call"} <= set(texts)
