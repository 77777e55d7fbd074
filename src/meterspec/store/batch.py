"""One ingest batch: NDJSON event lines checked and digested into columns for a bulk insert.

What MS-ING-003 decides before any state is asked: whether an event is `rejected` (its
schema, MS-EVT-002, MS-TIME-001, a malformed correction: MS-ING-012), and for the others the
identity, the MS-ING-002 digest, the instant and the line itself, which the store keeps byte
for byte so that an export gives back exactly what was sent. Everything that needs the seen
state (duplicate, conflict, late, accepted) is decided by the store, in SQL, over these columns.

Most lines take the fast path of meterspec.pipeline: one msgspec decode into EventPayload, the
string count that rules out repeated names, non-empty identity fields, an ordinary type, a
timestamp on parse_timestamp's fast path, and the digest as one formatted string. Anything else
goes through the careful path (decode_event, check_event, correction_problems, the field-list
digest), which finds every problem; tests/test_store_batch.py holds the two to the same result.
"""

from __future__ import annotations

from collections.abc import Iterator
from hashlib import sha256

import msgspec

from meterspec.codec import decode_event
from meterspec.contracts import EventPayload
from meterspec.errors import MeterspecError
from meterspec.ids import encode_fields
from meterspec.ingestion import (
    AMEND,
    RESERVED_PREFIX,
    RETRACT,
    TARGET,
    correction_problems,
    digest_fields,
)
from meterspec.lines import is_blank, line_too_long
from meterspec.metering import check_event
from meterspec.timestamps import NANOS_PER_SECOND, Instant, format_timestamp, parse_timestamp

_TAG = "18:meterspec/event/v1"  # encode_fields((DIGEST_TAG,)), checked by the tests
_decode = msgspec.json.Decoder(EventPayload).decode
_encode_properties = msgspec.json.Encoder(order="sorted").encode


def digest(event: EventPayload, instant: Instant) -> bytes:
    """The 32 bytes of the MS-ING-002 digest of a valid event whose time is `instant`:
    ingestion.event_digest(event) == digest(event, instant).hex(), one formatted string for
    the common case (ASCII fields, a time already in canonical form)."""
    time = event.time
    if not (time[-1:] == "Z" and time[10:11] == "T"
            and (len(time) == 20 or (len(time) <= 30 and time[-2:-1] != "0"))):
        time = format_timestamp(instant)  # an offset, a lower-case letter or trailing zeros
    ws, uni, ident, kind, subject = (event.workspace_id, event.universe_id, event.id,
                                     event.type, event.subject)
    properties = event.properties
    count = len(properties)
    text = (f"{_TAG}{len(ws)}:{ws}{len(uni)}:{uni}{len(ident)}:{ident}{len(kind)}:{kind}"
            f"{len(subject)}:{subject}{len(time)}:{time}{len(str(count))}:{count}")
    if count:
        text += "".join([f"{len(k)}:{k}{len(v)}:{v}" for k, v in sorted(properties.items())])
    if text.isascii():  # character counts are byte counts
        return sha256(text.encode()).digest()
    return sha256(encode_fields(digest_fields(event, instant))).digest()


class Batch:
    """The events of one batch as columns, in input order, and the rejected ones.

    `size` counts every event of the batch (every non-blank line, rejected ones included):
    position p (0-based) is the p-th of them, line `numbers[p]`-th of the input. Columns hold
    one entry per valid event, `positions` saying which; corrections have a second, shorter
    set of columns (`correction_positions`...)."""

    def __init__(self) -> None:
        self.size = 0
        self.numbers: list[int] = []
        self.positions: list[int] = []
        self.workspace_ids: list[str] = []
        self.universe_ids: list[str] = []
        self.ids: list[str] = []
        self.types: list[str] = []
        self.subjects: list[str] = []
        self.seconds: list[int] = []
        self.nanos: list[int] = []
        self.digests: list[bytes] = []
        self.payloads: list[bytes] = []
        self.correction_positions: list[int] = []
        self.correction_columns: list[int] = []
        self.correction_kinds: list[str] = []
        self.correction_targets: list[str | None] = []
        self.correction_properties: list[str] = []
        self.correction_shapes: list[bool] = []
        self.rejected: list[tuple[int, MeterspecError]] = []
        """(position, every problem of the event), in input order."""

    def __len__(self) -> int:
        return self.size

    def reject(self, number: int, error: MeterspecError) -> None:
        """A line that is no event at all (too long: MS-ERR-012) still takes a position."""
        self.numbers.append(number)
        self.rejected.append((self.size, error))
        self.size += 1

    def add(self, number: int, line: bytes) -> None:
        """Check one non-blank line (without its line end) and add it to the batch."""
        try:
            event = _decode(line)
        except (msgspec.DecodeError, RecursionError):
            return self._careful(number, line)
        properties = event.properties
        if b"\\" in line or line.count(b'"') >> 1 != 13 + 2 * len(properties):
            return self._careful(number, line)  # escapes, a name may repeat, no properties
        kind = event.type
        if not (event.id and event.workspace_id and event.universe_id and kind
                and event.subject) or kind[:10] == RESERVED_PREFIX:
            return self._careful(number, line)
        try:
            instant = parse_timestamp(event.time)
        except MeterspecError:
            return self._careful(number, line)
        self._append(number, line, event, instant)
        return None

    def fill(self, lines: Iterator[tuple[int, bytes | None]], limit: int) -> bool:
        """Take lines (numbered, None for one too long: meterspec.lines.read_lines) until the
        batch holds `limit` events; False once the lines are exhausted. The same checks as
        add(), one loop with everything bound to locals (the ingest hot loop): the common
        line costs one decode, a few string tests and one SHA-256, nothing else."""
        decode, parse, sha, careful = _decode, parse_timestamp, sha256, self._careful
        numbers, positions = self.numbers.append, self.positions.append
        workspaces, universes, idents = (self.workspace_ids.append, self.universe_ids.append,
                                         self.ids.append)
        kinds, subjects, seconds_of, nanos_of = (self.types.append, self.subjects.append,
                                                 self.seconds.append, self.nanos.append)
        digests, payloads = self.digests.append, self.payloads.append
        orders: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        size = self.size
        for number, line in lines:
            if line is None:
                self.size = size
                self.reject(number, line_too_long())
                size = self.size
            elif line[:1] != b"{" and is_blank(line):
                continue
            else:
                try:
                    event = decode(line)
                except (msgspec.DecodeError, RecursionError):
                    event = None
                if event is not None:
                    properties = event.properties
                    ws, uni, ident, kind, subject, time = (
                        event.workspace_id, event.universe_id, event.id, event.type,
                        event.subject, event.time)
                    if (b"\\" not in line and line.count(b'"') >> 1 == 13 + 2 * len(properties)
                            and ws and uni and ident and kind and subject
                            and kind[:10] != RESERVED_PREFIX):
                        try:
                            instant = parse(time)
                        except MeterspecError:
                            instant = None
                    else:
                        instant = None
                else:
                    instant = None
                if event is None or instant is None:
                    self.size = size
                    careful(number, line)
                    size = self.size
                else:
                    if not (time[-1:] == "Z" and time[10:11] == "T" and (
                            len(time) == 20 or (len(time) <= 30 and time[-2:-1] != "0"))):
                        time = format_timestamp(instant)
                    keys = tuple(properties)
                    order = orders.get(keys)
                    if order is None:
                        order = orders[keys] = [(k, f"{len(k)}:{k}") for k in sorted(keys)]
                    count = len(keys)
                    text = (f"{_TAG}{len(ws)}:{ws}{len(uni)}:{uni}{len(ident)}:{ident}"
                            f"{len(kind)}:{kind}{len(subject)}:{subject}{len(time)}:{time}"
                            f"{len(str(count))}:{count}"
                            + "".join([f"{head}{len(properties[k])}:{properties[k]}"
                                       for k, head in order]))
                    digests(sha(text.encode()).digest() if text.isascii()
                            else sha(encode_fields(digest_fields(event, instant))).digest())
                    numbers(number)
                    positions(size)
                    size += 1
                    workspaces(ws)
                    universes(uni)
                    idents(ident)
                    kinds(kind)
                    subjects(subject)
                    second, nano = divmod(instant, NANOS_PER_SECOND)
                    seconds_of(second)
                    nanos_of(nano)
                    payloads(line)
            if size >= limit:
                self.size = size
                return True
        self.size = size
        return False

    def _careful(self, number: int, line: bytes, *, shape: bool = True) -> None:
        """The full checks: every problem of the line, or the event appended."""
        try:
            event = decode_event(line)
        except MeterspecError as error:
            self.reject(number, error)
            return
        instant, problems = check_event(event)
        problems += correction_problems(event) if shape else []
        if problems:
            event_id = event.id if isinstance(event.id, str) and event.id else None
            self.reject(number, MeterspecError(
                msgspec.structs.replace(p, event_id=event_id) for p in problems))
            return
        self._append(number, line, event, instant)

    def add_logged(self, number: int, line: bytes) -> None:
        """Add an event as a log holds it, a malformed correction included (the store marks
        it so: MS-ING-013 lists it as ineffective). For loading a log, never for ingesting."""
        self._careful(number, line, shape=False)

    def _append(self, number: int, line: bytes, event: EventPayload, instant: Instant) -> None:
        position = self.size
        self.size += 1
        self.numbers.append(number)
        self.positions.append(position)
        self.workspace_ids.append(event.workspace_id)
        self.universe_ids.append(event.universe_id)
        self.ids.append(event.id)
        self.types.append(event.type)
        self.subjects.append(event.subject)
        seconds, nanos = divmod(instant, NANOS_PER_SECOND)
        self.seconds.append(seconds)
        self.nanos.append(nanos)
        self.digests.append(digest(event, instant))
        self.payloads.append(line)
        if event.type[:10] == RESERVED_PREFIX:
            self._append_correction(position, event)

    def _append_correction(self, position: int, event: EventPayload) -> None:
        """The corrections index (MS-ING-011): kind, target, the amended properties (without
        the target, as a JSON object), and whether its shape is well formed (MS-ING-012)."""
        properties = event.properties
        target = properties.get(TARGET)
        self.correction_positions.append(position)
        self.correction_columns.append(len(self.positions) - 1)
        self.correction_kinds.append(
            {RETRACT: "retract", AMEND: "amend"}.get(event.type, "other"))
        self.correction_targets.append(target if target else None)
        self.correction_properties.append(_encode_properties(
            {k: v for k, v in properties.items() if k != TARGET}).decode())
        self.correction_shapes.append(not correction_problems(event))

    def accepted_columns(self) -> int:
        """How many valid (not rejected) events the columns hold."""
        return len(self.positions)
