"""Shared hypothesis strategies and small builders for the core tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import datetime

import pytest
from hypothesis import settings
from hypothesis import strategies as st

from meterspec.contracts import Measurement, MeterRecord

# No wall-clock assertion in a test: hypothesis's per-example deadline fails on a busy machine
# (two xdist workers, or CI beside other jobs) without anything being wrong.
settings.register_profile("meterspec", deadline=None)
settings.load_profile("meterspec")

# Quantities that are numerically equal but written differently, negatives, zero spellings.
QUANTITY_TEXTS = ["0", "-0", "0.00", "1", "1.0", "1.50", "2", "-2.5", "3e1", "30",
                  "0.000001", "-0.000001", "7", "12.345"]


def ms_id(prefix: str, fields: Iterable[str]) -> str:
    """MS-ID-001 written independently of meterspec.ids: '<utf-8 length>:<bytes>' per field,
    concatenated, SHA-256, first 32 lowercase hex digits after the prefix."""
    data = b""
    for field in fields:
        raw = field.encode("utf-8")
        data += str(len(raw)).encode("ascii") + b":" + raw
    return prefix + hashlib.sha256(data).hexdigest()[:32]


def record(
    recorded_at: str,
    quantity: str,
    *,
    unit: str = "calls",
    subject: str = "cust-1",
    workspace: str = "ws",
    universe: str = "prod",
    dimensions: dict[str, str] | None = None,
    ident: str = "rec",
) -> MeterRecord:
    return MeterRecord(
        id=ident, workspace_id=workspace, universe_id=universe, subject=subject,
        recorded_at=recorded_at, measurement=Measurement(quantity, unit),
        dimensions=dimensions or {}, source_event_id=ident)


# Records for the law tests: few distinct axes so groups collide, instants around 10:00-13:00
# UTC on 2024-01-01 (before, inside, between and after the windows used by the tests).
_BASE_SECONDS = 1_704_103_200  # 2024-01-01T10:00:00Z (checked in test_aggregations)


def stamp(offset_minutes: int, micro: int) -> str:
    total = _BASE_SECONDS + offset_minutes * 60
    hours, rest = divmod(total % 86_400, 3600)
    minutes, seconds = divmod(rest, 60)
    day = 1 + (total - 1_704_067_200) // 86_400
    fraction = f".{micro:06d}" if micro else ""
    return f"2024-01-{day:02d}T{hours:02d}:{minutes:02d}:{seconds:02d}{fraction}Z"


_AXES: list[list[object]] = [
    # Minutes after 10:00 UTC: on, just before and just after the boundaries the law tests
    # use, few enough that records often share an instant (ties are where order could leak).
    [0, -90, -1, 1, 30, 59, 60, 61, 89, 90, 119, 120, 121, 150, 179, 180, 181, 300],
    [0, 0, 0, 1, 999_999],              # microseconds
    list(QUANTITY_TEXTS),
    ["calls", "calls", "bytes"],        # repeats make shared groups likelier
    ["s1", "s1", "s2"],
    ["w1", "w1", "w2"],
    ["u1", "u1", "u2"],
    [None, "a", "b", "c"],              # region
    [None, "a", "b", "c"],              # tier
]
_SIZE = 1
for _axis in _AXES:
    _SIZE *= len(_axis)


def _decode(number: int) -> MeterRecord:
    """One integer per record, read in mixed radix: far cheaper to generate than one draw
    per field, and still shrinks toward the first value of every axis."""
    picks: list[object] = []
    for axis in _AXES:
        number, index = divmod(number, len(axis))
        picks.append(axis[index])
    minute, micro, quantity, unit, subject, workspace, universe, region, tier = picks
    assert isinstance(minute, int) and isinstance(micro, int)
    dims = {name: value for name, value in (("region", region), ("tier", tier))
            if isinstance(value, str)}
    return record(stamp(minute, micro), str(quantity), unit=str(unit), subject=str(subject),
                  workspace=str(workspace), universe=str(universe), dimensions=dims)


records_strategy = st.integers(0, _SIZE - 1).map(_decode)
record_lists = st.lists(records_strategy, max_size=25)


identifiers = st.text(min_size=1, max_size=10)
short_text = st.text(max_size=8)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """MS-TIME-001: real calendar instants, any offset within +-23:59, 0-9 fraction digits,
    upper or lower case T and Z; the local date range keeps the UTC date in 0001..9999."""
    moment = draw(st.datetimes(min_value=datetime(1, 1, 2),
                               max_value=datetime(9999, 12, 30, 23, 59, 59)))
    digits = draw(st.text("0123456789", max_size=9))
    offset = draw(st.one_of(
        st.sampled_from(["Z", "z", "+00:00", "-00:00"]),
        st.builds(lambda sign, h, m: f"{sign}{h:02d}:{m:02d}", st.sampled_from("+-"),
                  st.integers(0, 23), st.integers(0, 59))))
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}{draw(st.sampled_from('Tt'))}"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
            f"{'.' + digits if digits else ''}{offset}")


# ------------------------------------------------------------------ PostgreSQL (meterspec.store)

@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for this test session (tests/pg_cluster.py): started once,
    stopped at the end; the tests that need it are skipped where no binaries exist."""
    import pg_cluster

    if pg_cluster.binaries() is None:
        pytest.skip("no PostgreSQL binaries (initdb and pg_ctl on PATH or in "
                    "/usr/lib/postgresql/*/bin): the PostgreSQL store tests need them")
    pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg: pip install "
                        "-e '.[dev]'")
    with pg_cluster.cluster() as url:
        yield url
