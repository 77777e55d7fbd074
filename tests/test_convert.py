"""Numbers at the edge (specs/payloads.md, MS-CNV-001 to MS-CNV-004): payloads whose property
values are JSON numbers, converted from their text, never through a float."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Context, Decimal
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meterspec.codec import decode_event, encode
from meterspec.convert import RawNumber, convert_line, dump, load, number_to_quantity
from meterspec.errors import MeterspecError

EVENT = ('{"id":"e1","workspaceID":"w","universeID":"u","type":"t","subject":"s",'
         '"time":"2024-03-05T10:00:00Z","properties":%s}')


def _codes(line: str) -> set[tuple[str, str]]:
    with pytest.raises(MeterspecError) as raised:
        convert_line(line.encode())
    return {(p.code, p.path) for p in raised.value.problems}


def test_the_wire_stays_strict() -> None:
    """MS-CNV-001: the EventPayload decoder refuses a number, even one it could keep."""
    with pytest.raises(MeterspecError) as raised:
        decode_event((EVENT % '{"n":1}').encode())
    assert [(p.code, p.path) for p in raised.value.problems] == [("wrong-type", "/properties/n")]


@pytest.mark.parametrize(("number", "quantity"), [
    ("1024000", "1024000"), ("1e3", "1000"), ("0.1", "0.1"), ("-0", "0"), ("1E+2", "100"),
    ("1.50", "1.5"), ("1e-20", "0.00000000000000000001"), ("-0.000", "0"),
    ("12345678901234567891", "12345678901234567891"), ("1.00000000000000000000000", "1"),
    ("123456789012345678901234567890", "123456789012345678901234567890")])
def test_numbers_become_canonical_quantities(number: str, quantity: str) -> None:
    """MS-CNV-002."""
    event = convert_line((EVENT % f'{{"n":{number}}}').encode())
    assert event.properties == {"n": quantity}


@pytest.mark.parametrize("number", ["1.0000000000000000000001", "1e-21", "1e00001", "1e99999",
                                    "1234567890123456789012345678901", "9" * 100_000])
def test_numbers_outside_the_bounds_are_reported_never_rounded(number: str) -> None:
    """MS-CNV-002: MS-QTY-002's bounds, checked on the text before any conversion (a
    100,000-digit number costs nothing)."""
    assert _codes(EVENT % f'{{"n":{number}}}') == {("quantity-out-of-range", "/properties/n")}


def test_no_float_is_ever_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """MS-CNV-002: the converter never calls float(); a number reaches it as its text."""
    def no_float(*args: object) -> float:
        raise AssertionError("a float was made")

    monkeypatch.setattr("builtins.float", no_float)
    document = load(EVENT % '{"n":0.1,"m":1e3}')
    assert document["properties"] == {"n": RawNumber("0.1"), "m": RawNumber("1e3")}
    assert convert_line((EVENT % '{"n":0.1}').encode()).properties == {"n": "0.1"}


def test_strings_are_kept_and_other_values_are_wrong_type() -> None:
    """MS-CNV-003."""
    assert convert_line((EVENT % '{"n":"1.50","e":"/users"}').encode()).properties == {
        "n": "1.50", "e": "/users"}
    assert _codes(EVENT % '{"a":{"b":1},"c":[1],"d":true,"e":null,"f":2}') == {
        ("wrong-type", "/properties/a"), ("wrong-type", "/properties/c"),
        ("wrong-type", "/properties/d"), ("wrong-type", "/properties/e")}


def test_numbers_elsewhere_are_the_events_problems_all_at_once() -> None:
    """MS-CNV-003/004: an id given as a number is not converted; every problem together, with
    the event id when it is usable."""
    line = EVENT.replace('"time":"2024-03-05T10:00:00Z"', '"time":"2024-02-30T00:00:00Z"')
    with pytest.raises(MeterspecError) as raised:
        convert_line((line % '{"n":1e-21}').encode())
    assert {(p.code, p.path, p.event_id) for p in raised.value.problems} == {
        ("quantity-out-of-range", "/properties/n", "e1"), ("invalid-timestamp", "/time", "e1")}
    assert _codes('{"id":7,"workspaceID":"w","universeID":"u","type":"t","subject":"s",'
                  '"time":"2024-03-05T10:00:00Z"}') == {("wrong-type", "/id")}
    assert _codes(EVENT % '{"n":1,"n":2}') == {("duplicate-name", "/properties/n")}
    assert _codes('{"id":') == {("invalid-json", "")}


@pytest.mark.parametrize("member", ['"time":1e3', '"subject":-0',
                                    '"id":1.0000000000000000000001', '"extra":[1E+2,{"n":0.1}]'])
def test_a_number_outside_properties_is_reported_as_the_number_written(member: str) -> None:
    """MS-CNV-004: converting adds nothing to what `validate` says of the same text outside
    `properties`: the number is written back as it was read (not as an object holding its
    text), so its problem and message are the ones the event decoder gives the original."""
    members = dict(m.split(":", 1) for m in ['"id":"e1"', '"workspaceID":"w"', '"universeID":"u"',
                                              '"type":"t"', '"subject":"s"',
                                              '"time":"2024-03-05T10:00:00Z"', member])
    line = ("{" + ",".join(f"{name}:{value}" for name, value in members.items()) + "}").encode()
    with pytest.raises(MeterspecError) as converted:
        convert_line(line)
    with pytest.raises(MeterspecError) as validated:
        decode_event(line)
    assert converted.value.problems == validated.value.problems


_JSON_NUMBER = st.from_regex(r"-?(0|[1-9][0-9]{0,29})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,2})?",
                             fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(_JSON_NUMBER)
@example("100000000.00000000000000000001E-1")  # 21 fraction digits, 29 significant
def test_the_output_re_parses_to_the_same_value(text: str) -> None:
    """Law: a converted number is canonical and denotes exactly the number's value; one that
    cannot be converted is out of the bounds, never rounded."""
    exact = Decimal(text)  # Decimal of the text: exact, no float
    try:
        quantity = number_to_quantity(RawNumber(text), "/n")
    except MeterspecError as error:
        assert error.code == "quantity-out-of-range"
        # normalize() rounds to its context's precision (28 digits by default): a wide one
        plain = format(exact.normalize(Context(prec=100)), "f") if exact else "0"
        whole, _, fraction = plain.lstrip("-").partition(".")
        assert len(text) > 64 or len(whole) > 30 or len(fraction) > 20
        return
    assert Decimal(quantity) == exact
    assert quantity == format(Decimal(quantity), "f") and "e" not in quantity.lower()
    event = convert_line((EVENT % f'{{"n":{text}}}').encode())
    again = json.loads(encode(event))["properties"]["n"]
    assert again == quantity and number_to_quantity(RawNumber(again)) == quantity


def _compact(value: str | list[str] | dict[str, str]) -> str:
    if isinstance(value, list):
        return "[" + ",".join(value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{v}"
                              for k, v in value.items()) + "}"
    return value


# Compact JSON texts, numbers written in any form the grammar allows (`1E+2`, `-0`, `0.10`).
_JSON_TEXT = st.recursive(
    _JSON_NUMBER | st.sampled_from(["true", "false", "null"])
    | st.text(max_size=5).map(lambda t: json.dumps(t, ensure_ascii=False)),
    lambda inner: st.lists(inner, max_size=4).map(_compact)
    | st.dictionaries(st.text(max_size=4), inner, max_size=4).map(_compact),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(_JSON_TEXT)
def test_dump_writes_back_the_text_load_read(text: str) -> None:
    """Law: `dump` inverts `load` on compact JSON: each number comes back as its own text."""
    assert dump(load(text)) == text.encode()


def test_dump_by_hand() -> None:
    document = load('{"a": [1e3, -0, 1.0000000000000000000001, {"b": 1E+2}], "s": "x"}')
    assert document["a"][3] == {"b": RawNumber("1E+2")}
    assert dump(document) == b'{"a":[1e3,-0,1.0000000000000000000001,{"b":1E+2}],"s":"x"}'


def test_the_command_converts_and_reports(tmp_path: Path) -> None:
    """MS-CNV-004: `meterspec convert` writes the good lines and reports the bad one (exit 1)."""
    source = tmp_path / "payloads.ndjson"
    source.write_text("\n".join([EVENT % '{"n":1e3}', EVENT % '{"n":1.0000000000000000000001}',
                                 "", EVENT % '{"n":"x"}']) + "\n")
    run = subprocess.run([sys.executable, "-m", "meterspec", "convert", str(source)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 1, run.stderr
    assert [json.loads(line)["properties"] for line in run.stdout.splitlines()] == [
        {"n": "1000"}, {"n": "x"}]
    problems = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert [(p["code"], p["path"], p["line"], p["eventID"]) for p in problems] == [
        ("quantity-out-of-range", "/properties/n", 2, "e1")]
