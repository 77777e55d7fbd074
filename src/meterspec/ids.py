"""Deterministic identifiers (MS-ID): SHA-256 over length-prefixed fields, so no two distinct
field lists can produce the same input bytes, and tenants can never collide.

Encoding (MS-ID-001): for each field in order, the UTF-8 byte length in decimal ASCII, ':',
then the bytes. The id is a prefix followed by the first 32 lowercase hex digits of the digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable


def encode_fields(fields: Iterable[str]) -> bytes:
    """The MS-ID-001 digest input: per field, its UTF-8 byte length, ':', its bytes."""
    return b"".join(b"%d:%b" % (len(data), data) for data in (f.encode() for f in fields))


def digest_id(prefix: str, fields: Iterable[str]) -> str:
    """MS-ID-001: prefix + the first 32 hex digits of SHA-256 over the length-prefixed fields."""
    return prefix + hashlib.sha256(encode_fields(fields)).hexdigest()[:32]


def record_id(workspace: str, universe: str, event_id: str, unit: str, source: str) -> str:
    """MS-ID-002: identity of one measurement of one event; `source` is 'property:NAME' or
    'constant:QUANTITY' (canonical quantity)."""
    return digest_id("rec_", ("meterspec/record/v1", workspace, universe, event_id, unit, source))


def reading_ids(
    workspace: str,
    universe: str,
    subject: str,
    unit: str,
    aggregation: str,
    parameter: str,
    group: tuple[tuple[str, str | None], ...] = (),
) -> Callable[[bytes], str]:
    """MS-ID-003 for one group: returns a function from the encoded window bounds
    (encode_fields([start, end])) to the reading id, hashing the group's fields only once.

    `parameter` is 'dimension=NAME' for unique-count, 'scale=N' for time-weighted-avg, ''
    otherwise; window bounds are canonical timestamps (MS-TIME-004); then the number of group
    entries and, per entry in groupBy order, the name and '!' (dimension absent) or '='
    followed by the value."""
    head = hashlib.sha256(encode_fields(("meterspec/reading/v1", workspace, universe, subject,
                                         unit, aggregation, parameter)))
    tail = [str(len(group))]
    for name, value in group:
        tail += (name, "!" if value is None else "=" + value)
    encoded_tail = encode_fields(tail)

    def for_window(window: bytes) -> str:
        hasher = head.copy()
        hasher.update(window)
        hasher.update(encoded_tail)
        return "rdg_" + hasher.hexdigest()[:32]

    return for_window


def reading_id(
    workspace: str,
    universe: str,
    subject: str,
    unit: str,
    aggregation: str,
    parameter: str,
    window_start: str,
    window_end: str,
    group: tuple[tuple[str, str | None], ...] = (),
) -> str:
    """MS-ID-003: the id of one reading (see reading_ids)."""
    ids = reading_ids(workspace, universe, subject, unit, aggregation, parameter, group)
    return ids(encode_fields((window_start, window_end)))
