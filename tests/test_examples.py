"""Every examples/*/ directory runs through the CLI and yields its hand-computed readings.

expected-readings.json holds the readings a reader can derive with the example's README
(quantities, windows, recordCount, group); the reading ids are recomputed here from the prose of
MS-ID-001/MS-ID-003 with hashlib, never with meterspec.ids.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from meterspec.cli import main

ROOT = Path(__file__).resolve().parents[1]
# Pipeline walk-throughs: every examples/ folder with a request (node-adapter is not one).
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if (p / "request.json").is_file())
FILES = ("config.json", "request.json", "events.ndjson", "expected-readings.json", "README.md")
Capture = pytest.CaptureFixture[bytes]
Json = dict[str, Any]


def _digest_id(prefix: str, fields: list[str]) -> str:
    """MS-ID-001: per field its UTF-8 byte length in decimal ASCII, ':', the bytes; SHA-256;
    prefix + the first 32 lowercase hex digits."""
    preimage = b"".join(b"%d:%b" % (len(f.encode("utf-8")), f.encode("utf-8")) for f in fields)
    return prefix + hashlib.sha256(preimage).hexdigest()[:32]


def _reading_id(reading: Json, request: Json) -> str:
    """MS-ID-003, from the reading's own fields and the request's parameter and groupBy."""
    aggregation = request["aggregation"]
    parameter = ""
    if aggregation == "unique-count":
        parameter = f"dimension={request['dimension']}"
    elif aggregation == "time-weighted-avg":
        parameter = f"scale={request.get('scale', 6)}"
    group_by: list[str] = request.get("groupBy", [])
    fields = ["meterspec/reading/v1", reading["workspaceID"], reading["universeID"],
              reading["subject"], reading["measurement"]["unit"], aggregation, parameter,
              reading["window"]["start"], reading["window"]["end"], str(len(group_by))]
    for name in group_by:
        value = reading["group"][name]
        fields += [name, "!" if value is None else "=" + value]
    return _digest_id("rdg_", fields)


def _load(example: Path, name: str) -> Any:
    return json.loads((example / name).read_text(encoding="utf-8"))


def _expected(example: Path) -> list[Json]:
    """expected-readings.json with each reading's id prepended."""
    request = _load(example, "request.json")
    return [{"id": _reading_id(r, request), **r} for r in _load(example, "expected-readings.json")]


def _cli(capture: Capture, *argv: str) -> tuple[int, bytes]:
    status = main(list(argv))
    out, err = capture.readouterr()
    assert status == 0, err.decode()
    return status, out


def _ndjson(data: bytes) -> list[Json]:
    return [json.loads(line) for line in data.splitlines()]


def _run(example: Path, capture: Capture) -> bytes:
    return _cli(capture, "run", "--config", str(example / "config.json"),
                "--request", str(example / "request.json"), str(example / "events.ndjson"))[1]


def test_the_examples_are_there_and_complete() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"api-calls", "llm-tokens", "premium-tier", "seats-twa"} <= names
    for example in EXAMPLES:
        missing = [f for f in FILES if not (example / f).is_file()]
        assert not missing, f"{example.name} lacks {missing}"


def test_id_recipe_matches_a_hand_written_preimage() -> None:
    """The test's own MS-ID-003 recipe against the bytes spelled out in api-calls/README.md."""
    preimage = (b"20:meterspec/reading/v1" b"9:acme-prod" b"10:production"
                b"17:customer:cust_123" b"9:api_calls" b"3:sum" b"0:"
                b"20:2024-01-15T00:00:00Z" b"20:2024-01-16T00:00:00Z" b"1:0")
    first = _load(ROOT / "examples" / "api-calls", "expected-readings.json")[0]
    assert _reading_id(first, {"aggregation": "sum"}) == (
        "rdg_" + hashlib.sha256(preimage).hexdigest()[:32])
    assert preimage.decode() in (ROOT / "examples" / "api-calls" / "README.md").read_text()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_run_gives_the_hand_computed_readings(example: Path, capsysbinary: Capture) -> None:
    """`meterspec run` exits 0 (MS-ERR-004) and prints exactly the expected readings, in the
    MS-AGG-017 order, with MS-ID-003 ids."""
    assert _ndjson(_run(example, capsysbinary)) == _expected(example)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_meter_then_aggregate_gives_the_same_readings(
        example: Path, capsysbinary: Capture, tmp_path: Path) -> None:
    """The two-step pipeline agrees with the streaming one, byte for byte (MS-ID-004)."""
    records = tmp_path / "records.ndjson"
    records.write_bytes(_cli(capsysbinary, "meter", "--config", str(example / "config.json"),
                             str(example / "events.ndjson"))[1])
    readings = _cli(capsysbinary, "aggregate", "--request", str(example / "request.json"),
                    str(records))[1]
    assert _ndjson(readings) == _expected(example)
    assert readings == _run(example, capsysbinary)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_document_validates(
        example: Path, capsysbinary: Capture, tmp_path: Path) -> None:
    """Inputs, the metered records and the expected readings all pass `meterspec validate`."""
    records = tmp_path / "records.ndjson"
    records.write_bytes(_cli(capsysbinary, "meter", "--config", str(example / "config.json"),
                             str(example / "events.ndjson"))[1])
    readings = tmp_path / "readings.ndjson"
    readings.write_text("".join(json.dumps(r) + "\n" for r in _expected(example)))
    documents = [("config", example / "config.json"), ("request", example / "request.json"),
                 ("event", example / "events.ndjson"), ("record", records),
                 ("reading", readings)]
    for kind, path in documents:
        _cli(capsysbinary, "validate", kind, str(path))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_readme_derives_every_expected_quantity(example: Path) -> None:
    """Each README walks through the arithmetic; every expected quantity appears in it."""
    readme = (example / "README.md").read_text(encoding="utf-8")
    for reading in _load(example, "expected-readings.json"):
        assert f"`{reading['measurement']['quantity']}`" in readme
