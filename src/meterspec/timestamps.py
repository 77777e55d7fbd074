"""RFC 3339 timestamps as integer microseconds since the Unix epoch, UTC (MS-TIME).

Finer input is truncated toward the past, never rounded: rounding could move an event across
a window boundary, truncation cannot (a boundary is itself a whole microsecond).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from meterspec.errors import MeterspecError

Micros = int

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_MICROS = (date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86_400_000_000
MAX_MICROS = (date(9999, 12, 31).toordinal() + 1 - _EPOCH_ORDINAL) * 86_400_000_000 - 1


def parse_timestamp(text: object, path: str = "") -> Micros:
    """Parse an RFC 3339 date-time with offset into UTC microseconds (MS-TIME-001..003)."""
    if not isinstance(text, str):
        raise MeterspecError.single(
            "wrong-type", path, "a timestamp must be a JSON string", "MS-TIME-001")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise MeterspecError.single(
            "invalid-timestamp", path,
            f"{text[:64]!r} is not an RFC 3339 date-time with a UTC offset", "MS-TIME-001")
    fraction, offset = match.groups()
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
    seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds
    micros = seconds * 1_000_000 + (int((fraction + "00000")[:6]) if fraction else 0)
    if not MIN_MICROS <= micros <= MAX_MICROS:
        raise MeterspecError.single(
            "timestamp-out-of-range", path,
            "timestamps must lie in years 0001..9999 UTC", "MS-TIME-001")
    return micros


@lru_cache(maxsize=4096)
def _epoch_day(text: str) -> int | None:
    """Days since 1970-01-01 of a YYYY-MM-DD date, None if no such date (cached: events of a
    batch share few dates)."""
    try:
        return date(int(text[:4]), int(text[5:7]), int(text[8:10])).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None


def format_timestamp(micros: Micros) -> str:
    """Canonical form (MS-TIME-004): UTC, 'Z', fraction only when non-zero, no trailing zeros."""
    moment = _EPOCH + timedelta(microseconds=micros)
    text = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
            f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def to_datetime(micros: Micros) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def from_datetime(moment: datetime) -> Micros:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
