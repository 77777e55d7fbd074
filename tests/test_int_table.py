"""meterspec.int_table: the same answers as a dict, through growth, at any 64-bit key."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.int_table import IntTable

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=200)
@given(st.lists(st.tuples(INT64 | st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]), INT64),
                max_size=300))
def test_setdefault_answers_as_a_dict_does(pairs: list[tuple[int, int]]) -> None:
    table, model = IntTable(slots=4), dict[int, int]()
    for key, value in pairs:
        stored = 1 if key == 0 else key  # the documented spelling of key 0
        expected = model.get(stored)
        assert table.setdefault(key, value) == expected
        model.setdefault(stored, value)
        assert len(table) == len(model)
    assert sorted(table.keys()) == sorted(model)


def test_colliding_low_bits_probe_onwards_and_survive_growth() -> None:
    table = IntTable(slots=8)
    keys = [5 + (n << 40) for n in range(100)]  # one slot for all of them at every size
    for n, key in enumerate(keys):
        assert table.setdefault(key, n) is None
    assert [table.setdefault(key, -1) for key in keys] == list(range(100))
    assert len(table) == 100


def test_slots_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        IntTable(slots=12)
