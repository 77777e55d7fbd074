"""Fuzzing the decoders and the CLI's line loop with hostile JSON text (MS-ERR-005, MS-ERR-007,
MS-ERR-008, MS-ERR-009, MS-ERR-010, MS-ERR-011): whatever the text, a decoder answers with a
value or with problems whose codes the spec defines, and a batch keeps every good line.

The bounded run here is part of CI; `FUZZ_EXAMPLES=200000 pytest tests/test_fuzz.py` runs the
long one (figures in tests/README.md)."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterspec import cli
from meterspec.codec import STRUCTS, decode
from meterspec.errors import MeterspecError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "schemas" / "examples"
EXAMPLES_PER_TEST = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES_PER_TEST, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# The codes the spec defines: the table in specs/errors.md.
CODES = set(re.findall(r"^\| `([a-z-]+)` \|", (ROOT / "specs" / "errors.md").read_text(),
                       re.MULTILINE))
POINTER = re.compile(r"(/([^~/]|~[01])*)*")
KINDS = ["event", "record", "config", "request", "plan", "invoice-request", "quota-check",
         "ingestion-state", "rate-limit-state", "invoice", "adjustment"]


def _valid(kind: str) -> list[Any]:
    folder = EXAMPLES / kind / "valid"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] or [{}]


# --- hostile JSON text, built as text so names can repeat and numbers can be anything -------

_NUMBERS = st.one_of(
    st.integers().map(str),
    st.sampled_from(["1e400", "-1e-400", "1e" + "9" * 5000, "1" * 5000, "2.0", "0.5",
                     "9007199254740993", "-0", "0e999999999", "1E+2"]),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-10**6, 10**6),
              st.integers(-10**12, 10**12)),
)
_STRINGS = st.one_of(
    st.text(max_size=12).map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.text(max_size=12).map(json.dumps),
    st.sampled_from(['"\\ud800"', '"\\udc00"', '"\\ud83d\\ude00"', '"1e' + "1" * 5000 + '"',
                     '"2024-01-15T10:30:00Z"', '"-0"', '"NaN"', '"\\u0000"', '""']),
)
_SCALARS = st.one_of(_NUMBERS, _STRINGS, st.sampled_from(["true", "false", "null"]))
_NAMES = st.one_of(st.sampled_from(['"id"', '"workspaceID"', '"properties"', '"tokens"',
                                    '"measurements"', '"quantity"', '"unit"', '"allOf"']),
                   _STRINGS)


def _texts(depth: int) -> st.SearchStrategy[str]:
    return st.recursive(
        _SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
            st.lists(st.tuples(_NAMES, inner), max_size=4).map(
                lambda members: "{" + ",".join(f"{n}:{v}" for n, v in members) + "}")),
        max_leaves=depth)


def _deep(opening: str, closing: str, depth: int) -> str:
    return opening * depth + closing * depth


@st.composite
def hostile_documents(draw: st.DrawFn, kind: str) -> bytes:
    """A valid example of `kind` with one hostile change, or hostile text from scratch."""
    base = json.dumps(draw(st.sampled_from(_valid(kind))), ensure_ascii=False)
    change = draw(st.sampled_from(["member", "repeat", "deep", "replace", "bytes", "text"]))
    if change == "text":
        text = draw(_texts(30))
    elif change == "member" and base.startswith("{") and base != "{}":
        text = base[:-1] + "," + draw(_NAMES) + ":" + draw(_texts(10)) + "}"
    elif change == "repeat" and base.startswith("{") and base != "{}":
        name = draw(st.sampled_from(list(json.loads(base)) or ["id"]))
        text = base[:-1] + "," + json.dumps(name) + ":" + draw(_texts(5)) + "}"
    elif change == "deep":
        depth = draw(st.sampled_from([63, 64, 65, 200, 5000]))
        text = base[:-1] + ',"x":' + _deep("[", "]", depth) + "}" if base.endswith("}") \
            else _deep("[", "]", depth)
    elif change == "replace":
        strings = list(re.finditer(r'"(?:[^"\\]|\\.)*"', base))
        if strings:
            spot = draw(st.sampled_from(strings))
            text = base[:spot.start()] + draw(_texts(5)) + base[spot.end():]
        else:
            text = base
    else:
        raw = base.encode()
        cut = draw(st.integers(0, len(raw)))
        junk = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff", b"\xed\xa0\x80", b"\x00", b"}",
                                     b"\n", b"\r"]))
        return raw[:cut] + junk + raw[cut:]
    return text.encode("utf-8", "surrogatepass")


def _assert_problems(error: MeterspecError) -> None:
    assert error.problems
    for problem in error.problems:
        assert problem.code in CODES, problem
        assert POINTER.fullmatch(problem.path), problem


@pytest.mark.parametrize("kind", KINDS)
def test_a_decoder_answers_a_value_or_problems(kind: str) -> None:
    @FUZZ
    @given(hostile_documents(kind), st.booleans())
    def check(text: bytes, fast: bool) -> None:
        try:
            decode(kind, text, STRUCTS[kind], fast=fast)
        except MeterspecError as error:
            _assert_problems(error)

    check()


# --- the CLI's line loop: good lines survive any bad neighbours (MS-ERR-005) ----------------

CONFIG = ROOT / "examples" / "api-calls" / "config.json"
GOOD = [line for line in (ROOT / "examples" / "api-calls" / "events.ndjson").read_bytes()
        .splitlines() if line.strip()]


def _meter(data: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[int, bytes,
                                                                                    bytes]:
    source = tmp_path / "events.ndjson"
    source.write_bytes(data)
    out, err = io.BytesIO(), io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, write_through=True))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, write_through=True))
    status = cli.main(["meter", "--config", str(CONFIG), "--metered-at",
                       "2024-02-01T00:00:00Z", str(source)])
    sys.stdout.flush()
    sys.stderr.flush()
    return status, out.getvalue(), err.getvalue()


def test_every_good_line_of_a_fuzzed_batch_comes_out(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    _, alone, _ = _meter(b"\n".join(GOOD) + b"\n", monkeypatch, tmp_path)
    assert len(alone.splitlines()) == 5  # five of the six events are api.request calls

    @FUZZ
    @given(st.lists(hostile_documents("event"), min_size=1, max_size=6), st.randoms())
    def check(bad: list[bytes], random: Any) -> None:
        bad = [line.replace(b"\n", b" ").replace(b"\r", b" ") for line in bad]
        bad = [line for line in bad if line.strip()]
        lines = [*GOOD, *bad]
        random.shuffle(lines)
        status, out, err = _meter(b"\n".join(lines) + b"\n", monkeypatch, tmp_path)
        good_first = [line for line in lines if line in GOOD]
        _, expected, _ = _meter(b"\n".join(good_first) + b"\n", monkeypatch, tmp_path)
        # Every record of the good lines, in their order; a bad line that happens to be a
        # valid event adds its own records, never removes one.
        produced = out.splitlines()
        position = 0
        for record in expected.splitlines():
            position = produced.index(record, position) + 1
        assert status in (0, 1)
        assert b"Traceback" not in err

    check()
