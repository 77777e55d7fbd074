"""RFC 3339 timestamps as integer nanoseconds since the Unix epoch, UTC (MS-TIME).

Nanoseconds are carried exactly and never truncated or rounded (MS-TIME-003): either could
reorder two events or move one across a window boundary. Digits finer than a nanosecond must
be zero. Python's datetime holds only microseconds, so calendar arithmetic here works on whole
seconds and keeps the nanoseconds beside them.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from meterspec.errors import MeterspecError

Instant = int
"""Nanoseconds since 1970-01-01T00:00:00Z (negative before it), the reference type of
MS-TIME-003."""

NANOS_PER_SECOND = 1_000_000_000
"""Nanoseconds in a second: instants are integer ns since 1970-01-01T00:00:00Z (MS-TIME-003)."""
NANOS_PER_DAY = 86_400 * NANOS_PER_SECOND
"""Nanoseconds in a UTC day."""
MAX_TEXT_LENGTH = 64
"""The most characters of a timestamp's text (MS-TIME-001)."""

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.([0-9]{1,9})(0*))?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_INSTANT = (date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * NANOS_PER_DAY
"""0001-01-01T00:00:00Z in ns, the earliest instant (MS-TIME-001)."""
MAX_INSTANT = (date(9999, 12, 31).toordinal() + 1 - _EPOCH_ORDINAL) * NANOS_PER_DAY - 1
"""9999-12-31T23:59:59.999999999Z in ns, the latest instant."""


# The fast path: most timestamps are `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, and events of a batch
# share few minutes. A minute prefix enters the cache only once the full grammar has accepted a
# UTC timestamp of that minute, so the fast path accepts exactly what the full path accepts
# (tests/test_timestamps.py compares them on hostile input).
_MINUTES: dict[str, int] = {}
_MAX_MINUTES = 1 << 16
_SECONDS = {f"{second:02d}": second * 1_000_000_000 for second in range(60)}


def parse_timestamp(text: object, path: str = "") -> Instant:
    """Parse an RFC 3339 date-time with offset into UTC nanoseconds (MS-TIME-001..003)."""
    if type(text) is str and text[-1:] == "Z" and text[16:17] == ":":
        base = _MINUTES.get(text[:16])
        second = _SECONDS.get(text[17:19])
        if base is not None and second is not None:
            length = len(text)
            if length == 20:
                return base + second
            fraction = text[20:-1]
            if text[19] == "." and length <= 30 and fraction.isdigit() and fraction.isascii():
                return base + second + int(fraction.ljust(9, "0"))
    return _parse(text, path)


def _parse(text: object, path: str) -> Instant:
    """The full grammar (MS-TIME-001..003); remembers the minute of a valid UTC timestamp."""
    if not isinstance(text, str):
        raise MeterspecError.single(
            "wrong-type", path, "a timestamp must be a JSON string", "MS-TIME-001")
    match = _RFC3339.fullmatch(text) if len(text) <= MAX_TEXT_LENGTH else None
    if match is None:
        raise MeterspecError.single(
            "invalid-timestamp", path,
            f"{text[:64]!r} is not an RFC 3339 date-time with a UTC offset, at most "
            f"{MAX_TEXT_LENGTH} characters, no non-zero digit finer than a nanosecond",
            "MS-TIME-001")
    fraction, _, offset = match.groups()
    days = _epoch_day(text[:10])
    hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
    offset_seconds = 0
    if offset not in ("Z", "z"):
        off_h, off_m = int(offset[1:3]), int(offset[4:6])
        if off_h > 23 or off_m > 59:
            days = None
        offset_seconds = (off_h * 3600 + off_m * 60) * (-1 if offset[0] == "-" else 1)
    if days is None or hour > 23 or minute > 59 or second > 59:
        raise MeterspecError.single(
            "invalid-timestamp", path, f"{text!r} names no instant (field out of range; "
            "leap seconds are not accepted)", "MS-TIME-001")
    if days is _YEAR_ZERO:
        raise _out_of_range(path)
    seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds
    nanos = seconds * NANOS_PER_SECOND + (int(fraction.ljust(9, "0")) if fraction else 0)
    if not MIN_INSTANT <= nanos <= MAX_INSTANT:
        raise _out_of_range(path)
    if offset_seconds == 0 and text[10] == "T":
        if len(_MINUTES) >= _MAX_MINUTES:
            _MINUTES.clear()
        _MINUTES[text[:16]] = nanos - nanos % (60 * NANOS_PER_SECOND)
    return nanos


def _out_of_range(path: str) -> MeterspecError:
    return MeterspecError.single(
        "timestamp-out-of-range", path,
        "timestamps must lie in years 0001..9999, as local and as UTC dates", "MS-TIME-001")


_YEAR_ZERO = -(10**9)  # a real date of year 0000: out of range, not invalid (MS-TIME-001)


@lru_cache(maxsize=4096)
def _epoch_day(text: str) -> int | None:
    """Days since 1970-01-01 of a YYYY-MM-DD date, None if no such date, _YEAR_ZERO for a
    real date of year 0000 (a leap year of the proleptic Gregorian calendar, as 2000 is).
    Cached: events of a batch share few dates."""
    year, month, day = int(text[:4]), int(text[5:7]), int(text[8:10])
    try:
        days = date(year or 2000, month, day).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    return _YEAR_ZERO if year == 0 else days


def format_timestamp(instant: Instant) -> str:
    """Canonical form (MS-TIME-004): UTC, 'Z', a fraction only when non-zero: its nine
    nanosecond digits without trailing zeros. The date and the time of day are each written
    once and cached (invoices write the same period bounds again and again)."""
    seconds, nanos = divmod(instant, NANOS_PER_SECOND)
    days, second = divmod(seconds, 86_400)
    text = _date_text(days) + _clock_text(second)
    if nanos:
        return f"{text}.{nanos:09d}".rstrip("0") + "Z"
    return text + "Z"


@lru_cache(maxsize=8192)
def _date_text(days: int) -> str:
    """YYYY-MM-DD of a day since the epoch (years 0001..9999: four digits, zero-padded)."""
    found = date.fromordinal(days + _EPOCH_ORDINAL)
    return f"{found.year:04d}-{found.month:02d}-{found.day:02d}"


@lru_cache(maxsize=86_400)
def _clock_text(second: int) -> str:
    """THH:MM:SS of a second of the day."""
    hour, rest = divmod(second, 3600)
    return f"T{hour:02d}:{rest // 60:02d}:{rest % 60:02d}"


def to_datetime(instant: Instant) -> datetime:
    """The instant as an aware UTC datetime, floored to the microsecond (datetime holds no
    finer): for calendar questions, whose answers change only on whole seconds."""
    return _EPOCH + timedelta(microseconds=instant // 1000)


def from_datetime(moment: datetime) -> Instant:
    """An aware datetime as an Instant (nanoseconds since the epoch)."""
    delta = moment - _EPOCH
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000
