"""The fast, valid shapes a backend may accept without the reference (RE2 and Java regex
syntax alike, so a Spark backend reads them too).

Each shape is a subset of what the reference accepts, read to the same value: a row of that
shape is valid and a backend's own parse of it is exact. Anything else is flagged and
described by the reference (meterspec.engines.flagged), whose answer wins.

- TIMESTAMP: MS-TIME-001's grammar (fraction digits past the ninth only zeros, MS-TIME-003);
  a backend still checks the date is real, the fields in range and the instant in years
  0001-9999 (year 0000 and the bounds go to the reference, which names their problem).
- QUANTITY: a plain decimal within MS-QTY-002's digits (the reference's own fast path); an
  exponent, a 31st integer digit or anything else goes to the reference.
- Events and records as text are accepted only in the member order of their schema, compact,
  without escapes (what meterspec, msgspec and struct-based encoders write): a backend
  rebuilds that text from the values it read and compares it byte for byte with the line,
  which proves the line valid JSON with exactly those members, each a string, no name
  repeated (MS-EVT-001, MS-ERR-009). `properties` and `dimensions` are checked by count: a
  flat object of strings has four quotes per member (STRINGS_PER_MEMBER).
"""

from __future__ import annotations

from meterspec.quantity import MAX_FRACTION_DIGITS, MAX_INTEGER_DIGITS

TIMESTAMP = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9}0*)?"
             r"([Zz]|[+-][0-9]{2}:[0-9]{2})")
TIMESTAMP_MAX_LENGTH = 64
UTC_TIMESTAMP = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z"
"""The common case of TIMESTAMP: UTC, upper-case, at most nine fraction digits."""
QUANTITY = rf"-?[0-9]{{1,{MAX_INTEGER_DIGITS}}}(\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?"
PLAIN = r"-?[0-9]+(\.[0-9]+)?"
"""QUANTITY without its digit counts (a backend counts them itself: cheaper than counted
repetition in some regex engines)."""
QUOTES_PER_MEMBER = 4

EVENT_MEMBERS = ("id", "workspaceID", "universeID", "type", "subject", "time")
"""The string members of an EventPayload, in schema order; `properties` (an object) last."""
RECORD_MEMBERS = ("id", "workspaceID", "universeID", "subject", "recordedAt")
"""The string members of a MeterRecord before `measurement` (quantity, unit), `dimensions`,
`sourceEventID` and the optional `meteredAt`, in schema order."""
