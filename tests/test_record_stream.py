"""MS-ING-020: a record stream counts each (workspaceID, universeID, id) once. An identical
repeat (apart from meteredAt) is a duplicate; any other difference is a record-conflict and the
first record is the one that counts. The deduplicator keeps digests, never the records."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc
from collections.abc import Iterator

import msgspec
import pytest
from conftest import record, records_strategy
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from meterspec.contracts import Measurement, MeterRecord
from meterspec.errors import MeterspecError
from meterspec.readings import parse_record
from meterspec.record_stream import RecordDeduplicator, content_digest, identity_key


def add(dedup: RecordDeduplicator, item: MeterRecord) -> str:
    """What the CLI does: parse the record, then ask."""
    return dedup.add(item, *parse_record(item))


def test_another_spelling_of_the_same_time_or_quantity_is_a_duplicate() -> None:
    dedup = RecordDeduplicator()
    assert add(dedup, _base()) == "new"
    assert add(dedup, _base(measurement=Measurement("1.0", "calls"))) == "duplicate"
    assert add(dedup, _base(measurement=Measurement("10e-1", "calls"))) == "duplicate"
    assert add(dedup, _base(recorded_at="2024-01-01T11:00:00+01:00")) == "duplicate"
    assert add(dedup, _base(recorded_at="2024-01-01t10:00:00.000000z")) == "duplicate"
    assert dedup.duplicates == 4


def _base(**changes: object) -> MeterRecord:
    return replace(record("2024-01-01T10:00:00Z", "1", dimensions={"a": "1", "b": "2"},
                          ident="rec_1"), **changes)


def test_first_is_new_and_an_identical_repeat_is_a_duplicate() -> None:
    dedup = RecordDeduplicator()
    assert add(dedup, _base()) == "new"
    assert add(dedup, _base()) == "duplicate"
    assert add(dedup, _base()) == "duplicate"
    assert (dedup.duplicates, len(dedup)) == (2, 1)


def test_a_repeat_metered_later_is_a_duplicate() -> None:
    dedup = RecordDeduplicator()
    assert add(dedup, _base()) == "new"
    assert add(dedup, _base(metered_at="2024-02-01T00:00:00Z")) == "duplicate"
    assert add(dedup, _base(metered_at="2024-03-01T00:00:00Z")) == "duplicate"


def test_dimension_order_is_not_a_difference() -> None:
    """Two JSON objects with the same members in another order are the same value."""
    dedup = RecordDeduplicator()
    assert add(dedup, _base(dimensions={"a": "1", "b": "2"})) == "new"
    assert add(dedup, _base(dimensions={"b": "2", "a": "1"})) == "duplicate"


@pytest.mark.parametrize("changes", [
    {"subject": "other"},
    {"recorded_at": "2024-01-01T10:00:01Z"},
    {"measurement": Measurement("2", "calls")},
    {"measurement": Measurement("1", "bytes")},
    {"measurement": Measurement("2", "calls")},
    {"recorded_at": "2024-01-01T10:00:00.000001Z"},
    {"dimensions": {"a": "1"}},
    {"dimensions": {"a": "1", "b": "3"}},
    {"source_event_id": "evt_other"},
])
def test_any_other_difference_is_a_conflict_and_the_first_counts(
        changes: dict[str, object]) -> None:
    dedup = RecordDeduplicator()
    assert add(dedup, _base()) == "new"
    with pytest.raises(MeterspecError) as caught:
        add(dedup, _base(**changes))
    [problem] = caught.value.problems
    assert (problem.code, problem.path, problem.requirement, problem.event_id) == (
        "record-conflict", "", "MS-ING-020", None)
    # The first one is kept: it repeats as a duplicate, the conflicting one conflicts again.
    assert add(dedup, _base(metered_at="2024-05-01T00:00:00Z")) == "duplicate"
    with pytest.raises(MeterspecError):
        add(dedup, _base(**changes))
    assert (dedup.duplicates, len(dedup)) == (1, 1)


@pytest.mark.parametrize("changes", [
    {"id": "rec_2"}, {"workspace_id": "ws2"}, {"universe_id": "prod2"},
])
def test_identity_is_workspace_universe_and_id(changes: dict[str, object]) -> None:
    dedup = RecordDeduplicator()
    assert add(dedup, _base()) == "new"
    assert add(dedup, _base(**changes)) == "new"


def test_identity_fields_cannot_run_into_each_other() -> None:
    """MS-ID-001 length prefixes: ("ab", "c") and ("a", "bc") are different tenants."""
    dedup = RecordDeduplicator()
    assert add(dedup, _base(workspace_id="ab", universe_id="c")) == "new"
    assert add(dedup, _base(workspace_id="a", universe_id="bc")) == "new"
    assert add(dedup, _base(universe_id="x", id="y:z")) == "new"
    assert add(dedup, _base(universe_id="x:y", id="z")) == "new"


@given(st.text(), st.text(), st.text())
def test_identity_key_is_a_digest_of_the_ms_id_001_encoding(workspace: str, universe: str,
                                                            ident: str) -> None:
    """Written here from MS-ID-001: per field its UTF-8 length in decimal, ':', its bytes."""
    data = b"".join(b"%d:" % len(f.encode()) + f.encode() for f in (workspace, universe, ident))
    expected = int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "big")
    assert identity_key(_base(workspace_id=workspace, universe_id=universe, id=ident)) == (
        expected)


def test_content_digest_ignores_only_metered_at() -> None:
    body = msgspec.json.encode(_base())  # no meteredAt, canonical time and quantity
    later = _base(metered_at="2024-09-09T00:00:00Z")
    assert content_digest(later, *parse_record(later)) == int.from_bytes(
        hashlib.blake2b(body, digest_size=8).digest(), "big")


@given(st.lists(records_strategy, max_size=12), st.data())
def test_duplicates_counted_are_the_repeats_fed(distinct_pool: list[MeterRecord],
                                               data: st.DataObject) -> None:
    distinct = [replace(r, id=f"rec_{i}") for i, r in enumerate(distinct_pool)]
    repeats = data.draw(st.lists(st.sampled_from(distinct), max_size=20) if distinct
                        else st.just([]))
    stamps = data.draw(st.lists(st.sampled_from([msgspec.UNSET, "2024-06-01T00:00:00Z"]),
                                min_size=len(repeats), max_size=len(repeats)))
    dedup = RecordDeduplicator()
    outcomes = [add(dedup, r) for r in distinct]
    outcomes += [add(dedup, replace(r, metered_at=m))
                 for r, m in zip(repeats, stamps, strict=True)]
    assert outcomes == ["new"] * len(distinct) + ["duplicate"] * len(repeats)
    assert dedup.duplicates == len(repeats)
    assert len(dedup) == len(distinct)


def test_records_are_not_kept() -> None:
    """Millions of records must fit: the deduplicator's memory per identity is a small fixed
    size (two digests), far below a record's own size, which it must not keep alive."""
    count = 20_000

    def stream() -> Iterator[MeterRecord]:
        for index in range(count):
            yield record("2024-01-01T10:00:00Z", "1", ident=f"rec_{index:08d}",
                         subject=f"customer:{index}" + "x" * 200,
                         dimensions={"region": "eu-west-1"})

    dedup = RecordDeduplicator()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for item in stream():
            add(dedup, item)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(dedup) == count
    assert (after - before) / count < 200
