"""MS-ING-020: a stream of meter records counts each (workspaceID, universeID, id) once.

Pure (no I/O). A repeat equal to the first record apart from `meteredAt` (a retry metered
later, a file fed twice) is a duplicate, to drop and count; a repeat with any other difference
is a `record-conflict`, and the first record is the one that counts. Memory is what matters
with millions of records, so only digests are kept: a 128-bit one of the identity (MS-ID-001
field encoding, so no two identities share input bytes) and a 64-bit one of the content."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from hashlib import blake2b
from typing import Literal

import msgspec

from meterspec.contracts import Measurement, MeterRecord
from meterspec.errors import MeterspecError
from meterspec.ids import encode_fields
from meterspec.quantity import format_quantity
from meterspec.timestamps import Instant, format_timestamp

# Sorted object members: {"a":..,"b":..} and {"b":..,"a":..} are one JSON value.
_content_encoder = msgspec.json.Encoder(order="deterministic")


@lru_cache(maxsize=4096)
def _tenant_fields(workspace: str, universe: str) -> bytes:
    """The first two identity fields, encoded once per tenant rather than once per record."""
    return encode_fields((workspace, universe))


def identity_key(record: MeterRecord) -> int:
    """128-bit blake2b digest of the MS-ID-001 encoding of (workspaceID, universeID, id): a
    collision needs ~2^64 records."""
    ident = record.id.encode()
    fields = _tenant_fields(record.workspace_id, record.universe_id) + b"%d:%b" % (
        len(ident), ident)  # == encode_fields((workspace, universe, id))
    return int.from_bytes(blake2b(fields, digest_size=16).digest(), "big")


def content_digest(record: MeterRecord, instant: Instant, quantity: Decimal) -> int:
    """64-bit digest of everything but meteredAt, which a retry may change; the time and the
    quantity by value (their canonical forms), so `"1.0"` repeats `"1"` and `+01:00` repeats
    the same instant in `Z`."""
    record = msgspec.structs.replace(
        record, metered_at=msgspec.UNSET, recorded_at=format_timestamp(instant),
        measurement=Measurement(format_quantity(quantity), record.measurement.unit))
    content = _content_encoder.encode(record)
    return int.from_bytes(blake2b(content, digest_size=8).digest(), "big")


class RecordDeduplicator:
    """The identities of one record stream seen so far, each with its content digest (two
    integers per identity, never the record)."""

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}
        self.duplicates = 0
        """How many identical repeats were dropped so far."""

    def __len__(self) -> int:
        return len(self._seen)

    def identities(self) -> frozenset[int]:
        """The identity keys seen (meterspec.parallel: a key seen by two ranges of one file
        needs the order of the whole file to say which copy counts)."""
        return frozenset(self._seen)

    def add(self, record: MeterRecord, instant: Instant, quantity: Decimal
            ) -> Literal["new", "duplicate"]:
        """"new" the first time an identity is seen (count the record), "duplicate" for an
        identical repeat (drop it); MeterspecError `record-conflict` for a repeat with other
        content (reject it: the first one stands). `instant` and `quantity` are the record's
        parsed time and quantity (meterspec.readings.parse_record)."""
        key, content = identity_key(record), content_digest(record, instant, quantity)
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = content
            return "new"
        if first != content:
            raise MeterspecError.single(
                "record-conflict", "", f"record {record.id!r} of {record.workspace_id!r}/"
                f"{record.universe_id!r} was already read with other content; the first one "
                "counts", "MS-ING-020")
        self.duplicates += 1
        return "duplicate"
