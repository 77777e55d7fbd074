"""`meterspec conformance badge REPORT`: a conformance badge (SVG) made from a run's JSON-lines
report (issue 17): the suite's version on the left, the cases passed of the cases run on the
right, green when every case passed, blue when every case the implementation claims passed
(a run with --allow-skips that succeeded), amber or red otherwise."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from meterspec.conformance.data import HarnessError

GREEN, BLUE, AMBER, RED = "#2e7d32", "#1565c0", "#b26a00", "#c62828"
# Verdana at 11 px, the usual badge face: advance widths in pixels, near enough to size the
# boxes (a browser without Verdana uses DejaVu Sans, which is as wide).
_NARROW, _WIDE = set("fijlrt.,:;!|'()[] "), set("mwMW%")
HEIGHT, PAD = 20, 6


@dataclass(frozen=True)
class Badge:
    """What a badge says: the suite's version and the tally of the run."""

    suite: str
    passed: int
    total: int
    claimed_all_passed: bool

    @property
    def label(self) -> str:
        return f"meterspec suite {self.suite}"

    @property
    def message(self) -> str:
        return f"{self.passed}/{self.total} passed"

    @property
    def color(self) -> str:
        if self.total and self.passed == self.total:
            return GREEN
        if self.claimed_all_passed:
            return BLUE
        return AMBER if self.total and self.passed * 2 >= self.total else RED


def from_report(text: str) -> Badge:
    """The badge of a report written by `conformance run --report` (its last line is the
    summary); HarnessError when it is not one."""
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        summary: Any = json.loads(lines[-1]) if lines else None
    except ValueError:
        summary = None
    if not isinstance(summary, dict) or not isinstance(summary.get("summary"), dict):
        raise HarnessError("not a conformance report (conformance run --report FILE.jsonl): "
                           "its last line has no summary")
    tally, suite = summary["summary"], summary.get("suite") or {}
    try:
        passed, total = int(tally["passed"]), int(tally["total"])
        unclaimed_only = (int(tally["failed"]) == 0 and int(tally["errored"]) == 0
                          and int(tally["skipped"]) == int(summary.get("notClaimed", -1)))
    except (KeyError, TypeError, ValueError):
        raise HarnessError("the report's summary has no passed/failed/skipped/errored/total "
                           "counts") from None
    return Badge(str(suite.get("version", "unknown")), passed, total, unclaimed_only)


def _width(text: str) -> int:
    return round(sum(3.6 if c in _NARROW else 10.0 if c in _WIDE else 8.0 if c.isupper()
                     else 7.0 for c in text))


def svg(badge: Badge) -> str:
    """The badge as a flat SVG of two boxes, with its text as title and aria-label."""
    left, right = _width(badge.label) + 2 * PAD, _width(badge.message) + 2 * PAD
    width, title = left + right, escape(f"{badge.label}: {badge.message}")
    label, message = escape(badge.label), escape(badge.message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" '
        f'role="img" aria-label="{title}">\n'
        f"  <title>{title}</title>\n"
        f'  <clipPath id="r"><rect width="{width}" height="{HEIGHT}" rx="3"/></clipPath>\n'
        f'  <g clip-path="url(#r)">\n'
        f'    <rect width="{left}" height="{HEIGHT}" fill="#555"/>\n'
        f'    <rect x="{left}" width="{right}" height="{HEIGHT}" fill="{badge.color}"/>\n'
        f"  </g>\n"
        f'  <g fill="#fff" text-anchor="middle" '
        f'font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">\n'
        f'    <text x="{left / 2:g}" y="14">{label}</text>\n'
        f'    <text x="{left + right / 2:g}" y="14">{message}</text>\n'
        f"  </g>\n"
        f"</svg>\n")
