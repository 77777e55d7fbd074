"""The backend-neutral half of meterspec.engines (no engine needed): the plan the compiler
makes, the fast shapes (a subset of what the reference accepts, read to the same values), the
exact number forms and their 128-bit bounds, and NDJSON lines numbered as the reference
numbers them. The reference is the oracle wherever one exists."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.codec import decode_config, decode_request
from meterspec.engines.compiler import compile_plan
from meterspec.engines.numbers import (
    INT128_BOUND,
    LIMB,
    Digits,
    Limbs,
    Units,
    limbs_text,
    representation,
    twa_bounds,
)
from meterspec.engines.plan import Equals, Every, Exists, OneOf, Some
from meterspec.engines.shapes import PLAIN, QUANTITY, TIMESTAMP, UTC_TIMESTAMP
from meterspec.errors import MeterspecError
from meterspec.lines import is_blank, read_lines
from meterspec.quantity import EXACT, parse_quantity
from meterspec.timestamps import parse_timestamp
from meterspec.windows import request_windows


def test_the_pure_engine_modules_import_without_duckdb() -> None:
    code = ("import sys; import meterspec.cli, meterspec.engines.compiler, "
            "meterspec.engines.cli, meterspec.engines.flagged, meterspec.engines.ndjson, "
            "meterspec.engines.fallback, meterspec.engines.streams, meterspec.engines.sources; "
            "assert 'duckdb' not in sys.modules, 'duckdb imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_the_compiler_keeps_rules_conditions_and_dimensions() -> None:
    config = decode_config(b'{"measurements": [{"unit": "u", "sourceProperty": "q", '
                           b'"eventTypes": ["a", "b"], "filter": {"allOf": [{"property": '
                           b'"r", "in": ["x"]}, {"anyOf": [{"property": "t", "notIn": ["y"]},'
                           b' {"property": "v", "exists": false}, {"property": "r", "equals":'
                           b' "z"}]}]}}, {"unit": "c", "quantity": "1.50"}]}')
    request = decode_request(b'{"aggregation": "unique-count", "dimension": "d", "groupBy": '
                             b'["g", "q"], "windows": [{"start": "2024-01-01T00:00:00Z", '
                             b'"end": "2024-01-02T00:00:00Z"}]}')
    plan = compile_plan("events", config, request)
    assert plan.metering is not None and plan.aggregation is not None
    first, second = plan.metering.rules
    assert first.condition == Every((OneOf("r", ("x",), False), Some((
        OneOf("t", ("y",), True), Exists("v", False), Equals("r", "z")))))
    assert first.event_types == ("a", "b") and first.source == "property:q"
    assert second.constant == "1.5" and second.source == "constant:1.5"
    assert plan.needed() == ("q", "r", "t", "v", "g", "d")
    assert plan.aggregation.dimensions == ("g", "q", "d")
    assert plan.metering.is_dimension("g") and not plan.metering.is_dimension("q")
    assert plan.aggregation.parameter == "dimension=d"


def test_windows_become_rows_and_segments() -> None:
    request = decode_request(
        b'{"aggregation": "sum", "windows": [{"start": "2024-01-01T00:00:00Z", "end": '
        b'"2024-01-03T00:00:00Z"}, {"start": "2024-01-02T00:00:00Z", "end": '
        b'"2024-01-04T00:00:00Z"}, {"start": "2024-01-05T00:00:00Z", "end": '
        b'"2024-01-06T00:00:00Z"}]}')
    windows = compile_plan("records", None, request).aggregation.windows  # type: ignore[union-attr]
    reference = request_windows(request)
    assert [(r.start, r.end) for r in windows.rows] == reference.spans
    assert [(r.first, r.last) for r in windows.rows] == [(0, 2), (1, 3), (4, 5)]
    assert windows.covered == (True, True, True, False, True)
    assert not windows.disjoint and windows.size is None
    assert windows.rows[0].json == ('{"start":"2024-01-01T00:00:00Z",'
                                    '"end":"2024-01-03T00:00:00Z"}')
    days = decode_request(b'{"aggregation": "sum", "tumbling": {"size": "day", "start": '
                          b'"2024-01-01T00:00:00Z", "end": "2024-01-05T00:00:00Z"}}')
    uniform = compile_plan("records", None, days).aggregation.windows  # type: ignore[union-attr]
    assert uniform.disjoint and uniform.size == 86_400 * 10**9


# ------------------------------------------------------------------ shapes are the reference's

texts = st.text(alphabet="0123456789.-+eEZzTt:x ", max_size=40)


@settings(max_examples=500)
@given(st.one_of(texts, st.from_regex(QUANTITY, fullmatch=True)))
def test_the_quantity_shape_is_read_as_the_reference_reads_it(text: str) -> None:
    if not re.fullmatch(QUANTITY, text):
        return
    assert re.fullmatch(PLAIN, text)
    assert parse_quantity(text) == Decimal(text)


@settings(max_examples=500)
@given(st.one_of(texts, st.from_regex(TIMESTAMP, fullmatch=True),
                 st.from_regex(UTC_TIMESTAMP, fullmatch=True)))
def test_the_timestamp_shapes_hold_only_reference_grammar(text: str) -> None:
    """A text of either shape is either valid for the reference, or refused by it for a
    reason the backend checks (a date, a field or a year out of range, too long)."""
    if re.fullmatch(UTC_TIMESTAMP, text):
        assert re.fullmatch(TIMESTAMP, text)
    if not re.fullmatch(TIMESTAMP, text):
        return
    try:
        parse_timestamp(text)
    except MeterspecError as error:
        assert error.code in ("invalid-timestamp", "timestamp-out-of-range")
        assert len(text) > 64 or not _fields_in_range(text) or error.code != "invalid-timestamp"


def _fields_in_range(text: str) -> bool:
    import datetime

    try:
        datetime.date(int(text[:4]) or 1, int(text[5:7]), int(text[8:10]))
    except ValueError:
        return False
    offset_ok = text[-1] in "Zz" or (int(text[-5:-3]) <= 23 and int(text[-2:]) <= 59)
    return int(text[11:13]) <= 23 and int(text[14:16]) <= 59 and int(text[17:19]) <= 59 \
        and offset_ok


# ------------------------------------------------------------------ numbers


@given(st.integers(0, 30), st.integers(0, 20))
def test_a_representation_holds_every_quantity_of_its_digits(integer: int, fraction: int) -> None:
    chosen = representation(Digits(integer, fraction))
    if isinstance(chosen, Units):
        assert chosen.scale == fraction and integer + fraction <= 18
        assert 10 ** (integer + fraction) - 1 < 2**63  # one value fits 64 bits
        assert (10 ** (integer + fraction)) * 2**63 < 2**127  # so does any sum of 2**63
    else:
        assert isinstance(chosen, Limbs) and integer + fraction > 18


@given(st.decimals(min_value=Decimal("-1e30") + Decimal("1e-20"),
                   max_value=Decimal("1e30") - Decimal("1e-20"), places=20,
                   allow_nan=False, allow_infinity=False))
def test_limbs_are_the_value_and_order_like_it(value: Decimal) -> None:
    text = format(value, "f")
    high, middle, low = limbs_text(text)
    assert all(abs(limb) < LIMB for limb in (middle, low)) and abs(high) < LIMB
    # EXACT, not the default 28-digit context, which would round the oracle itself
    assert EXACT.scaleb(Decimal(high * LIMB * LIMB + middle * LIMB + low), -20) == value
    other = limbs_text(format(EXACT.add(value, Decimal("1e-20")), "f"))
    assert (high, middle, low) < other


@given(st.integers(0, 20), st.integers(0, 20), st.integers(1, 3 * 10**20),
       st.integers(1, 3 * 10**20))
def test_twa_bounds_keep_every_intermediate_in_128_bits(fraction: int, scale: int,
                                                       length: int, longest: int) -> None:
    longest = min(longest, length)
    bounds = twa_bounds(fraction, scale, length, longest)
    if bounds.level_limit is None:
        return
    limit = bounds.level_limit
    assert limit * length <= INT128_BOUND  # every integral and running total
    if scale >= fraction:
        factor = 10 ** (scale - fraction)
        assert limit * factor <= INT128_BOUND and longest * factor <= INT128_BOUND
    else:
        assert longest * 10 ** (fraction - scale) <= INT128_BOUND
    assert INT128_BOUND < 2**127 - 1


# ------------------------------------------------------------------ NDJSON lines


lines_of_bytes = st.lists(st.one_of(
    st.binary(max_size=12), st.sampled_from([b"", b" ", b"\t", b"\r", b"{}", b"\x00", b"\xff",
                                             b"\xef\xbb\xbf", b"\xed\xa0\x80", b"a\r"])),
    max_size=12)


@settings(max_examples=300)
@given(lines_of_bytes, st.booleans(), st.booleans())
def test_prepared_files_number_lines_as_the_reference(parts: list[bytes], bom: bool,
                                                      final_break: bool) -> None:
    import tempfile

    from meterspec.engines.ndjson import prepare

    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(parts) + (b"\n" if final_break
                                                                   else b"")
    expected = list(read_lines(io.BytesIO(data), limit=8))
    with tempfile.TemporaryDirectory() as directory:
        source = Path(directory) / "in.ndjson"
        source.write_bytes(data)
        flagged: list[tuple[int, bytes | None]] = []
        import meterspec.engines.ndjson as ndjson

        limit, ndjson.MAX_LINE_BYTES = ndjson.MAX_LINE_BYTES, 8
        try:
            prepared = prepare(str(source), directory, lambda n, b: flagged.append((n, b)), 5)
        finally:
            ndjson.MAX_LINE_BYTES = limit
        assert prepared.lines == len(expected)
        plain = Path(prepared.path).read_bytes()
    got = dict(flagged)
    engine_lines = plain.split(b"\n")
    for number, line in expected:
        if number + 4 in got:
            assert got[number + 4] == line and engine_lines[number - 1] == b""
        else:  # a plain line as it is; a blank one (spaces, tabs, a CR) may become empty
            assert line is not None
            engine_line = engine_lines[number - 1]
            assert engine_line == line or (is_blank(line) and engine_line == b"")
            assert b"\r" not in engine_line and b"\x00" not in engine_line
            engine_line.decode("utf-8")
