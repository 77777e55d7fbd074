"""Deterministic identifiers (MS-ID): SHA-256 over length-prefixed fields, so no two distinct
field lists can produce the same input bytes, and tenants can never collide.

Encoding (MS-ID-001): for each field in order, the UTF-8 byte length in decimal ASCII, ':',
then the bytes. The id is a prefix followed by the first 32 lowercase hex digits of the digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def digest_id(prefix: str, fields: Iterable[str]) -> str:
    encoded = [field.encode("utf-8") for field in fields]
    data = b"".join(b"%d:%b" % (len(field), field) for field in encoded)
    return prefix + hashlib.sha256(data).hexdigest()[:32]


def record_id(workspace: str, universe: str, event_id: str, unit: str, source: str) -> str:
    """MS-ID-002: identity of one measurement of one event; `source` is 'property:NAME' or
    'constant:QUANTITY' (canonical quantity)."""
    return digest_id("rec_", ("meterspec/record/v1", workspace, universe, event_id, unit, source))


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
    """MS-ID-003: every axis that identifies a reading. `parameter` is 'dimension=NAME' for
    unique-count, 'scale=N' for time-weighted-avg, '' otherwise; window bounds in canonical form
    (full microsecond precision); then the number of group entries and, per entry in groupBy
    order, the name and '!' (dimension absent) or '=' followed by the value."""
    fields = ["meterspec/reading/v1", workspace, universe, subject, unit, aggregation, parameter,
              window_start, window_end, str(len(group))]
    for name, value in group:
        fields.append(name)
        fields.append("!" if value is None else "=" + value)
    return digest_id("rdg_", fields)
