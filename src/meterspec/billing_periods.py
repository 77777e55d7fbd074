"""Billing periods (MS-BIL-001..004): a subject's billing cycle, in its own time zone, cut into
half-open periods that start at local midnight on an anchor day every N months.

An anchor day past a month's end falls on that month's last day (an anchor on the 31st bills on
30 April and 28 or 29 February), and the next period returns to the anchor day. Pure: the
period containing an instant is computed, never read from a clock.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime
from functools import lru_cache
from itertools import pairwise
from typing import cast

import msgspec

from meterspec.errors import MeterspecError, Problem
from meterspec.timestamps import Instant, to_datetime
from meterspec.windows import time_zone, wall_start

Period = tuple[Instant, Instant]
"""A billing period as [start, end) in ns since the epoch (MS-BIL-002)."""
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class BillingCycle(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """When a subject's periods start (MS-BIL-001): local midnight of `anchorDate`'s day of the
    month, every `intervalMonths` months counted from `anchorDate`'s month, in `timeZone`."""

    anchor_date: str = msgspec.field(name="anchorDate")
    """Wire `anchorDate`: a calendar date `YYYY-MM-DD`; period 0 starts on it, later ones on its day
    of the month or the month's last day (MS-BIL-002)."""
    time_zone: str = msgspec.field(default="UTC", name="timeZone")
    """Wire `timeZone`: the IANA zone whose local midnight starts each period; default `UTC`
    (MS-BIL-003)."""
    interval_months: int = msgspec.field(default=1, name="intervalMonths")
    """Wire `intervalMonths`: the months per period, 1 to 12 (3 quarterly, 12 yearly); default 1."""


def anchor(cycle: BillingCycle, path: str = "") -> date:
    """The cycle's anchor as a calendar date, or MeterspecError `invalid-value` (MS-BIL-001)."""
    text = cycle.anchor_date
    try:
        if _DATE.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise MeterspecError.single("invalid-value", f"{path}/anchorDate",
                                f"{text[:32]!r} is not a calendar date YYYY-MM-DD", "MS-BIL-001")


def cycle_problems(cycle: BillingCycle, path: str = "") -> list[Problem]:
    """Every problem of a cycle the schema cannot state: the date and the time zone."""
    problems: list[Problem] = []
    for check in (lambda: anchor(cycle, path),
                  lambda: time_zone(cycle.time_zone, f"{path}/timeZone")):
        try:
            check()
        except MeterspecError as error:
            problems += error.problems
    if not 1 <= cycle.interval_months <= 12:
        problems.append(Problem("out-of-range", f"{path}/intervalMonths",
                                "intervalMonths is 1..12", "MS-BIL-001"))
    return problems


def _start(cycle: BillingCycle, first: date, n: int) -> Instant | None:
    """Start of period n (period 0 starts on the anchor date): MS-BIL-002."""
    months = first.year * 12 + first.month - 1 + n * cycle.interval_months
    year, month = divmod(months, 12)
    if not 1 <= year <= 9999:
        return None
    day = min(first.day, calendar.monthrange(year, month + 1)[1])
    return _midnight(cycle.time_zone, year, month + 1, day)


@lru_cache(maxsize=1 << 16)
def _midnight(zone: str, year: int, month: int, day: int) -> Instant | None:
    """When a day starts in a zone (MS-BIL-003); cycles with other anchors share days."""
    return wall_start(time_zone(zone), datetime(year, month, day))


def _out_of_range(path: str) -> MeterspecError:
    return MeterspecError.single("timestamp-out-of-range", path, "the billing period holding "
                                 "this instant starts or ends outside years 0001..9999",
                                 "MS-BIL-002")


def _holding(cycle: BillingCycle, instant: Instant, path: str) -> tuple[date, int]:
    """The anchor and the number n of the period holding `instant` (MS-BIL-002/003)."""
    problems = cycle_problems(cycle)
    if problems:
        raise MeterspecError(problems)
    first = anchor(cycle)
    zone = time_zone(cycle.time_zone)
    local = to_datetime(instant).astimezone(zone)
    months = local.year * 12 + local.month - 1 - (first.year * 12 + first.month - 1)
    n = months // cycle.interval_months
    # The estimate is off by at most one period: step until start(n) <= instant < start(n + 1).
    while True:
        start, end = _start(cycle, first, n), _start(cycle, first, n + 1)
        if start is None or end is None:
            raise _out_of_range(path)
        if instant < start:
            n -= 1
        elif instant >= end:
            n += 1
        else:
            return first, n


def period_containing(cycle: BillingCycle, instant: Instant, path: str = "") -> Period:
    """The billing period [start, end) holding `instant` (MS-BIL-002/003); MeterspecError
    `timestamp-out-of-range` when that period would start or end outside years 1..9999."""
    return periods(cycle, instant, 1, path)[0]


def periods(cycle: BillingCycle, instant: Instant, count: int, path: str = "") -> list[Period]:
    """The `count` consecutive periods ending with the one holding `instant`, oldest first
    (MS-BIL-004: a usage history)."""
    first, n = _holding(cycle, instant, path)
    starts = [_start(cycle, first, k) for k in range(n - count + 1, n + 2)]
    if None in starts:
        raise _out_of_range(path)
    return list(pairwise(cast(list[Instant], starts)))
