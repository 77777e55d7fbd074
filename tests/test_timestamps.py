"""MS-TIME-001..004: RFC 3339 in, UTC nanoseconds inside (never truncated), one canonical form
out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec import timestamps as _timestamps
from meterspec.errors import MeterspecError
from meterspec.timestamps import MAX_INSTANT, MIN_INSTANT, format_timestamp, parse_timestamp

# Nanoseconds since the epoch, computed by hand (seconds x 10**9).
T_2024_01_15_103000 = 1_705_314_600 * 10**9  # 2024-01-15T10:30:00Z
DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9
MINUTE = 60 * 10**9

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
    ("2024-01-15T10:30:00.5Z", T_2024_01_15_103000 + 500_000_000),
    ("2024-01-15T10:30:00.000001Z", T_2024_01_15_103000 + 1_000),
    ("2024-01-15T10:30:00.000000001Z", T_2024_01_15_103000 + 1),
    ("2024-01-15T10:30:00.123456789Z", T_2024_01_15_103000 + 123_456_789),
    ("2024-01-15T10:30:00.1234569Z", T_2024_01_15_103000 + 123_456_900),  # not truncated
    ("2024-01-15T10:30:00.000000000Z", T_2024_01_15_103000),
    ("2024-01-15T10:30:00.1234567890Z", T_2024_01_15_103000 + 123_456_789),  # zero 10th
    ("2024-01-15T10:30:00.123456789" + "0" * 30 + "Z", T_2024_01_15_103000 + 123_456_789),
    ("2024-01-15T10:30:00." + "0" * 43 + "Z", T_2024_01_15_103000),  # 64 characters
    ("1970-01-01T00:00:00Z", 0),
    ("1969-12-31T23:59:59.999999999Z", -1),
    ("1969-12-31T23:59:59.9999999Z", -100),
    ("1969-12-31T23:59:59.0000001Z", -999_999_900),
    ("2024-02-29T00:00:00Z", 1_709_164_800 * 10**9),
    ("2000-02-29T00:00:00Z", 951_782_400 * 10**9),
    ("0001-01-01T00:00:00Z", -62_135_596_800 * 10**9),
    ("9999-12-31T23:59:59.999999999Z", 253_402_300_800 * 10**9 - 1),
    ("0001-01-01T01:00:00+01:00", -62_135_596_800 * 10**9),
    ("9999-12-31T22:59:59.999999999-01:00", 253_402_300_800 * 10**9 - 1),
]


@pytest.mark.parametrize(("text", "nanos"), ACCEPTED)
def test_accepted(text: str, nanos: int) -> None:
    assert parse_timestamp(text) == nanos


def test_bounds_constants() -> None:
    assert MIN_INSTANT == -62_135_596_800 * 10**9
    assert MAX_INSTANT == 253_402_300_800 * 10**9 - 1


INVALID = [
    "2024-01-15T10:30:00",            # missing offset
    "2024-01-15 10:30:00Z",           # space instead of T
    "2024-01-15_10:30:00Z",
    "2024-01-15T10:30Z",              # no seconds
    "2024-01-15",
    "10:30:00Z",
    "2024-01-15T10:30:00.Z",          # empty fraction
    "2024-01-15T10:30:00.1234567891Z",  # a non-zero digit finer than a nanosecond
    "2024-01-15T10:30:00.0000000001Z",
    "2024-01-15T10:30:00.123456789" + "0" * 36 + "1Z",
    "2024-01-15T10:30:00." + "0" * 44 + "Z",  # 65 characters
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


@pytest.mark.parametrize("text", [
    "0000-01-01T00:00:00Z",
    "0000-12-31T23:30:00-01:00",      # its instant is in year 1: the local date still counts
    "0000-02-29T12:00:00Z",           # year 0000 is a leap year (proleptic Gregorian)
    "0001-01-01T00:30:00+01:00",      # its instant is in year 0000
])
def test_year_zero_is_out_of_range_not_invalid(text: str) -> None:
    """MS-TIME-001 (1.1): a real date of year 0000 is out of range."""
    with pytest.raises(MeterspecError) as info:
        parse_timestamp(text, "/t")
    assert (info.value.code, info.value.path) == ("timestamp-out-of-range", "/t")


def test_a_date_that_does_not_exist_in_year_zero_is_invalid() -> None:
    with pytest.raises(MeterspecError) as info:
        parse_timestamp("0000-02-30T00:00:00Z")
    assert info.value.code == "invalid-timestamp"


@pytest.mark.parametrize("value", [0, 1.5, None, True, [], b"2024-01-15T10:30:00Z"])
def test_non_string_is_wrong_type(value: object) -> None:
    with pytest.raises(MeterspecError) as info:
        parse_timestamp(value, "/t")
    assert info.value.code == "wrong-type"


@pytest.mark.parametrize(("earlier", "later"), [
    ("2024-01-15T12:00:00.1234561Z", "2024-01-15T12:00:00.1234569Z"),  # 800 ns apart
    ("2024-01-15T12:00:00.123456789Z", "2024-01-15T12:00:00.12345679Z"),
    ("1969-12-31T23:59:59.999999998Z", "1969-12-31T23:59:59.999999999Z"),
])
def test_instants_a_few_nanoseconds_apart_keep_their_order(earlier: str, later: str) -> None:
    """MS-TIME-003 (1.1): no truncation, so no tie that a value could break the wrong way."""
    assert parse_timestamp(earlier) < parse_timestamp(later)


@pytest.mark.parametrize("text", [
    "2024-01-01T23:59:59.999999999Z",
    "2024-01-02T00:59:59.999999999+01:00",
    "2024-01-01T18:59:59.999999999-05:00",
])
def test_one_nanosecond_before_a_boundary_stays_before_it(text: str) -> None:
    boundary = parse_timestamp("2024-01-02T00:00:00Z")
    assert parse_timestamp(text) == boundary - 1
    assert format_timestamp(parse_timestamp(text)) == "2024-01-01T23:59:59.999999999Z"


CANONICAL = [
    ("2024-01-15T10:30:00.120Z", "2024-01-15T10:30:00.12Z"),
    ("2024-01-15T10:30:00.000Z", "2024-01-15T10:30:00Z"),
    ("2024-01-15T10:30:00.100000000Z", "2024-01-15T10:30:00.1Z"),
    ("2024-01-15T10:30:00.000001000Z", "2024-01-15T10:30:00.000001Z"),
    ("2024-01-15T10:30:00.0000009Z", "2024-01-15T10:30:00.0000009Z"),
    ("2024-01-15T10:30:00.123456780Z", "2024-01-15T10:30:00.12345678Z"),
    ("2024-01-15t10:30:00z", "2024-01-15T10:30:00Z"),
    ("2024-01-15T12:30:00+02:00", "2024-01-15T10:30:00Z"),
    ("2024-01-15T00:30:00+02:00", "2024-01-14T22:30:00Z"),
    ("2023-12-31T22:00:00-02:00", "2024-01-01T00:00:00Z"),
    ("2024-03-01T00:00:00+00:01", "2024-02-29T23:59:00Z"),
    ("2024-01-15T10:30:00.5-00:30", "2024-01-15T11:00:00.5Z"),
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
    ("0999-06-01T00:00:00Z", "0999-06-01T00:00:00Z"),
    ("9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59.999999999Z"),
    ("1969-12-31T23:59:59.999999999Z", "1969-12-31T23:59:59.999999999Z"),
    ("1969-12-31T23:59:59.9Z", "1969-12-31T23:59:59.9Z"),
]


@pytest.mark.parametrize(("text", "expected"), CANONICAL)
def test_canonical_output(text: str, expected: str) -> None:
    assert format_timestamp(parse_timestamp(text)) == expected


@settings(max_examples=200)
@given(st.integers(MIN_INSTANT, MAX_INSTANT))
def test_round_trip_over_the_whole_range(nanos: int) -> None:
    text = format_timestamp(nanos)
    assert parse_timestamp(text) == nanos
    # The expected text, from datetime's calendar fields and the nanoseconds beside them.
    seconds, fraction = divmod(nanos, 10**9)
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    expected = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
                f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")
    if fraction:
        expected += "." + f"{fraction:09d}".rstrip("0")
    assert text == expected + "Z"


@settings(max_examples=200)
@given(st.integers(MIN_INSTANT + 2 * DAY, MAX_INSTANT - 2 * DAY),
       st.integers(-(23 * 60 + 59), 23 * 60 + 59),
       st.integers(0, 3))
def test_offsets_and_nanoseconds_normalise(nanos: int, offset_minutes: int,
                                           zeros: int) -> None:
    """Write the instant in a local offset with 9 fraction digits (and trailing zeros), by
    hand; parsing must give the instant back exactly."""
    seconds, fraction = divmod(nanos, 10**9)
    local = datetime(1970, 1, 1) + timedelta(seconds=seconds, minutes=offset_minutes)
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = (f"{local.year:04d}-{local.month:02d}-{local.day:02d}T{local.hour:02d}:"
            f"{local.minute:02d}:{local.second:02d}.{fraction:09d}{'0' * zeros}"
            f"{sign}{hours:02d}:{minutes:02d}")
    assert parse_timestamp(text) == nanos


# --- the fast path accepts exactly what the grammar accepts (issue 12) -------------------------


_PIECES = st.sampled_from(["0", "1", "5", "9", "00", "59", "60", "99", ".", ":", "-", "T",
                           "t", "Z", "z", "+01:00", "\uff11", "\u0661", " ", "\n", "_", "e",
                           "123456789", "0000000000", "1234567891", ""])


@settings(max_examples=500)
@given(st.sampled_from(["2024-01-15T10:30", "1969-12-31T23:59", "9999-12-31T23:59",
                        "0001-01-01T00:00"]),
       st.lists(_PIECES, max_size=6))
def test_the_fast_path_agrees_with_the_grammar(minute: str, tail: list[str]) -> None:
    """A cached minute makes every text of that minute take the fast path: it must accept,
    reject and compute exactly as the full grammar does, whatever follows the minute."""
    _timestamps.parse_timestamp(minute + ":00Z")  # the minute is now cached
    text = minute + "".join(tail)
    try:
        expected: int | str = _timestamps._parse(text, "/t")
    except MeterspecError as error:
        expected = error.code
    try:
        found: int | str = parse_timestamp(text, "/t")
    except MeterspecError as error:
        found = error.code
    assert found == expected, text
