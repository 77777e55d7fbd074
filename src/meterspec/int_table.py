"""A map of 64-bit integers to 64-bit integers in two flat arrays: 32 to 64 bytes an entry
where a dict of ints takes ~120 (its entry plus two int objects), and nothing for the cycle
collector to walk. MS-ING-021 keeps one entry per event identity read from a file, so with
millions of events this is most of `meterspec run`'s memory.

Open addressing with linear probing, the table between a quarter and half full. The keys are
hashes already (uniform bits), so a key's low bits are its slot; 0 marks an empty slot, so a
key 0 is stored as 1 (the caller compares values anyway: two keys that meet are told apart
by them, as any two that collide are)."""

from __future__ import annotations

from array import array
from collections.abc import Iterator

_EMPTY = 0


class IntTable:
    """Keys and values are signed 64-bit integers (Python's hash() values fit)."""

    __slots__ = ("_keys", "_mask", "_size", "_values")

    def __init__(self, slots: int = 1 << 12) -> None:
        if slots <= 0 or slots & (slots - 1):
            raise ValueError("slots is a power of two")
        self._keys = array("q", bytes(8 * slots))
        self._values = array("q", bytes(8 * slots))
        self._mask = slots - 1
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def setdefault(self, key: int, value: int) -> int | None:
        """The value stored under `key`; or, when there is none, store `value` and return
        None (one probe sequence for both, as the hot loop needs)."""
        if key == _EMPTY:
            key = 1
        keys, mask = self._keys, self._mask
        slot = key & mask
        found = keys[slot]
        while found != _EMPTY:
            if found == key:
                return self._values[slot]
            slot = (slot + 1) & mask
            found = keys[slot]
        keys[slot] = key
        self._values[slot] = value
        self._size += 1
        if self._size > (mask + 1) >> 1:
            self._grow()
        return None

    def keys(self) -> Iterator[int]:
        """The keys stored (a key 0 as 1), in no particular order."""
        return (key for key in self._keys if key != _EMPTY)

    def _grow(self) -> None:
        old = zip(self._keys, self._values, strict=True)
        slots = (self._mask + 1) << 1
        keys = self._keys = array("q", bytes(8 * slots))
        values = self._values = array("q", bytes(8 * slots))
        mask = self._mask = slots - 1
        for key, value in old:
            if key != _EMPTY:
                slot = key & mask
                while keys[slot] != _EMPTY:
                    slot = (slot + 1) & mask
                keys[slot] = key
                values[slot] = value
