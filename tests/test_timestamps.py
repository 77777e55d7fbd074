"""MS-TIME-001..004: RFC 3339 in, UTC microseconds inside, one canonical form out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.errors import MeterspecError
from meterspec.timestamps import MAX_MICROS, MIN_MICROS, format_timestamp, parse_timestamp

# Microseconds since the epoch, computed by hand.
T_2024_01_15_103000 = 1_705_314_600_000_000  # 2024-01-15T10:30:00Z
DAY = 86_400_000_000
HOUR = 3_600_000_000
MINUTE = 60_000_000

ACCEPTED = [
    ("2024-01-15T10:30:00Z", T_2024_01_15_103000),
    ("2024-01-15t10:30:00z", T_2024_01_15_103000),
    ("2024-01-15T10:30:00+00:00", T_2024_01_15_103000),
    ("2024-01-15T10:30:00-00:00", T_2024_01_15_103000),
    ("2024-01-15T11:30:00+01:00", T_2024_01_15_103000),
    ("2024-01-15T16:00:00+05:30", T_2024_01_15_103000),
    ("2024-01-15T05:30:00-05:00", T_2024_01_15_103000),
    ("2024-01-16T10:29:00+23:59", T_2024_01_15_103000),
    ("2024-01-14T10:31:00-23:59", T_2024_01_15_103000),
    ("2024-01-15T10:30:00.5Z", T_2024_01_15_103000 + 500_000),
    ("2024-01-15T10:30:00.000001Z", T_2024_01_15_103000 + 1),
    ("2024-01-15T10:30:00.123456789Z", T_2024_01_15_103000 + 123_456),
    ("2024-01-15T10:30:00.000000000Z", T_2024_01_15_103000),
    ("1970-01-01T00:00:00Z", 0),
    ("1969-12-31T23:59:59.999999Z", -1),
    ("2024-02-29T00:00:00Z", 1_709_164_800_000_000),
    ("2000-02-29T00:00:00Z", 951_782_400_000_000),
    ("0001-01-01T00:00:00Z", -62_135_596_800_000_000),
    ("9999-12-31T23:59:59.999999Z", 253_402_300_799_999_999),
    ("0001-01-01T01:00:00+01:00", -62_135_596_800_000_000),
    ("9999-12-31T22:59:59.999999-01:00", 253_402_300_799_999_999),
]


@pytest.mark.parametrize(("text", "micros"), ACCEPTED)
def test_accepted(text: str, micros: int) -> None:
    assert parse_timestamp(text) == micros


def test_bounds_constants() -> None:
    assert MIN_MICROS == -62_135_596_800_000_000
    assert MAX_MICROS == 253_402_300_799_999_999


INVALID = [
    "2024-01-15T10:30:00",            # missing offset
    "2024-01-15 10:30:00Z",           # space instead of T
    "2024-01-15_10:30:00Z",
    "2024-01-15T10:30Z",              # no seconds
    "2024-01-15",
    "10:30:00Z",
    "2024-01-15T10:30:00.Z",          # empty fraction
    "2024-01-15T10:30:00.1234567890Z",  # 10 fraction digits
    "2024-01-15T10:30:00,5Z",         # comma fraction
    "2024-01-15T10:30:00+0100",       # offset without colon
    "2024-01-15T10:30:00+01",
    "2024-01-15T10:30:00+24:00",      # offset hour out of range
    "2024-01-15T10:30:00+01:60",      # offset minute out of range
    "2024-01-15T10:30:00UTC",
    "2024-01-15T10:30:00 Z",
    " 2024-01-15T10:30:00Z",
    "2024-01-15T10:30:00Z ",
    "2024-01-15T10:30:00Z\n",
    "2024-1-15T10:30:00Z",
    "24-01-15T10:30:00Z",
    "+2024-01-15T10:30:00Z",
    "12024-01-15T10:30:00Z",
    "2024-12-31T23:59:60Z",           # leap second
    "2016-12-31T23:59:60Z",           # even a real one
    "2024-01-15T24:00:00Z",
    "2024-01-15T10:60:00Z",
    "2023-02-29T00:00:00Z",           # not a leap year
    "1900-02-29T00:00:00Z",           # century, not a leap year
    "2024-02-30T00:00:00Z",
    "2024-04-31T00:00:00Z",
    "2024-13-01T00:00:00Z",           # month 13
    "2024-00-10T00:00:00Z",
    "2024-01-00T00:00:00Z",
    "2024-01-32T00:00:00Z",
    "\uff12\uff10\uff12\uff14-01-15T10:30:00Z",  # non-ASCII digits
    "",
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid(text: str) -> None:
    with pytest.raises(MeterspecError) as info:
        parse_timestamp(text, "/time")
    assert info.value.code == "invalid-timestamp"
    assert info.value.path == "/time"
    assert info.value.requirement == "MS-TIME-001"


OUT_OF_RANGE = [
    "0001-01-01T00:59:59.999999+01:00",   # 0000-12-31T23:59:59.999999Z
    "0001-01-01T00:00:00+00:01",
    "9999-12-31T23:59:59-00:01",           # 10000-01-01T00:00:59Z
    "9999-12-31T23:00:00-01:00",
]


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_out_of_range_after_offset(text: str) -> None:
    with pytest.raises(MeterspecError) as info:
        parse_timestamp(text, "/time")
    assert info.value.code == "timestamp-out-of-range"
    assert info.value.path == "/time"


def test_year_zero_in_utc_is_rejected() -> None:
    with pytest.raises(MeterspecError) as info:
        parse_timestamp("0000-01-01T00:00:00Z")
    assert info.value.code in ("invalid-timestamp", "timestamp-out-of-range")


def test_year_zero_local_date_is_rejected_even_when_the_utc_instant_is_in_range() -> None:
    """MS-TIME-001: both the local and the UTC date must lie in years 0001..9999."""
    with pytest.raises(MeterspecError) as info:
        parse_timestamp("0000-12-31T23:30:00-01:00")
    assert info.value.code == "invalid-timestamp"


@pytest.mark.parametrize("value", [0, 1.5, None, True, [], b"2024-01-15T10:30:00Z"])
def test_non_string_is_wrong_type(value: object) -> None:
    with pytest.raises(MeterspecError) as info:
        parse_timestamp(value, "/t")
    assert info.value.code == "wrong-type"


TRUNCATION = [
    ("2024-01-15T10:30:00.1234569Z", T_2024_01_15_103000 + 123_456),   # not ...457
    ("2024-01-15T10:30:00.999999999Z", T_2024_01_15_103000 + 999_999),  # not the next second
    ("2024-01-15T10:30:00.0000009Z", T_2024_01_15_103000),
    ("2024-01-15T10:30:00.0000001Z", T_2024_01_15_103000),
    ("1969-12-31T23:59:59.9999999Z", -1),                               # toward the past
    ("1969-12-31T23:59:59.0000001Z", -1_000_000),
]


@pytest.mark.parametrize(("text", "micros"), TRUNCATION)
def test_truncation_to_microseconds(text: str, micros: int) -> None:
    assert parse_timestamp(text) == micros


@pytest.mark.parametrize("text", [
    "2024-01-01T23:59:59.999999999Z",
    "2024-01-02T00:59:59.999999999+01:00",
    "2024-01-01T18:59:59.9999999-05:00",
])
def test_one_nanosecond_before_a_boundary_stays_before_it(text: str) -> None:
    boundary = parse_timestamp("2024-01-02T00:00:00Z")
    assert parse_timestamp(text) == boundary - 1
    assert format_timestamp(parse_timestamp(text)) == "2024-01-01T23:59:59.999999Z"


CANONICAL = [
    ("2024-01-15T10:30:00.120Z", "2024-01-15T10:30:00.12Z"),
    ("2024-01-15T10:30:00.000Z", "2024-01-15T10:30:00Z"),
    ("2024-01-15T10:30:00.100000000Z", "2024-01-15T10:30:00.1Z"),
    ("2024-01-15T10:30:00.000001000Z", "2024-01-15T10:30:00.000001Z"),
    ("2024-01-15T10:30:00.0000009Z", "2024-01-15T10:30:00Z"),
    ("2024-01-15t10:30:00z", "2024-01-15T10:30:00Z"),
    ("2024-01-15T12:30:00+02:00", "2024-01-15T10:30:00Z"),
    ("2024-01-15T00:30:00+02:00", "2024-01-14T22:30:00Z"),
    ("2023-12-31T22:00:00-02:00", "2024-01-01T00:00:00Z"),
    ("2024-03-01T00:00:00+00:01", "2024-02-29T23:59:00Z"),
    ("2024-01-15T10:30:00.5-00:30", "2024-01-15T11:00:00.5Z"),
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
    ("0999-06-01T00:00:00Z", "0999-06-01T00:00:00Z"),
    ("9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59.999999Z"),
    ("1969-12-31T23:59:59.9Z", "1969-12-31T23:59:59.9Z"),
]


@pytest.mark.parametrize(("text", "expected"), CANONICAL)
def test_canonical_output(text: str, expected: str) -> None:
    assert format_timestamp(parse_timestamp(text)) == expected


@settings(max_examples=200)
@given(st.integers(MIN_MICROS, MAX_MICROS))
def test_round_trip_over_the_whole_range(micros: int) -> None:
    text = format_timestamp(micros)
    assert parse_timestamp(text) == micros
    # The expected text, from datetime's calendar fields.
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    expected = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
                f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")
    if moment.microsecond:
        expected += "." + f"{moment.microsecond:06d}".rstrip("0")
    assert text == expected + "Z"


@settings(max_examples=200)
@given(st.integers(MIN_MICROS + 2 * DAY, MAX_MICROS - 2 * DAY),
       st.integers(-(23 * 60 + 59), 23 * 60 + 59),
       st.integers(0, 999))
def test_offsets_and_nanoseconds_normalise(micros: int, offset_minutes: int, nanos: int) -> None:
    """Write the instant in a local offset with 9 fraction digits, by hand; parsing must give
    the instant back, the extra nanoseconds truncated."""
    local = datetime(1970, 1, 1) + timedelta(microseconds=micros, minutes=offset_minutes)
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = (f"{local.year:04d}-{local.month:02d}-{local.day:02d}T{local.hour:02d}:"
            f"{local.minute:02d}:{local.second:02d}.{local.microsecond:06d}{nanos:03d}"
            f"{sign}{hours:02d}:{minutes:02d}")
    assert parse_timestamp(text) == micros
