"""`POST /v1/events` bodies (MS-HTTP-002) as one store Batch, and the batch's answer
(MS-HTTP-003). No web framework here: bytes and a media type in, a Batch or a refusal out.

Every event keeps the bytes it was sent with (an array item, an NDJSON line), so the store's
log holds what the client wrote; an item spread over several lines is made one line first
(msgspec.json.format: whitespace only). A CloudEvent's EventPayload is taken from its data
(MS-CE-009) and encoded once. An event of another tenant than the key's is rejected with
`wrong-tenant` (MS-HTTP-011) before the store sees it. Batches waiting together are merged into
one for one transaction and their outcomes split back (merge, split: the server's group
commit).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import msgspec

from meterspec import cloudevents
from meterspec.errors import MeterspecError, Problem
from meterspec.lines import read_lines
from meterspec.server.problems import HttpError
from meterspec.store.base import BatchResult, Outcome
from meterspec.store.batch import Batch

MAX_EVENTS = 1_000
MEDIA_TYPES = ("application/json", "application/x-ndjson", "application/jsonl",
               "application/cloudevents+json", "application/cloudevents-batch+json")
_items = msgspec.json.Decoder(list[msgspec.Raw])
_encode = msgspec.json.Encoder().encode


class EventResult(msgspec.Struct, omit_defaults=True):
    index: int
    outcome: str
    id: str | None = None
    problems: list[Problem] | None = None


class IngestResult(msgspec.Struct):
    """schemas/openapi.json#/components/schemas/IngestResult."""

    accepted: int
    duplicates: int
    conflicts: int
    late: int
    rejected: int
    results: list[EventResult]


def _one_line(raw: bytes) -> bytes:
    raw = raw.strip(b" \t\r\n")
    return msgspec.json.format(raw, indent=-1) if b"\n" in raw or b"\r" in raw else raw


def _too_many() -> HttpError:
    return HttpError(400, [Problem("too-many-items", "", f"a batch holds at most {MAX_EVENTS:,} "
                                 "events: split it", "MS-HTTP-008")])


def _not_json(message: str) -> HttpError:
    return HttpError(400, [Problem("invalid-json", "", message, "MS-HTTP-003")])


def _object(body: bytes) -> bytes:
    """A body of one event: 400 unless it is a JSON text (its problems as an event are the
    event's, MS-HTTP-003)."""
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise _not_json(f"the body is not JSON: {error}") from None
    return _one_line(body)


def _array(body: bytes) -> list[bytes]:
    try:
        items = _items.decode(body)
    except msgspec.DecodeError as error:
        raise _not_json(f"the body is not a JSON array of events: {error}") from None
    if len(items) > MAX_EVENTS:
        raise _too_many()
    return [_one_line(bytes(item)) for item in items]


def batch_of(kind: str, body: bytes, workspace: str, universe: str) -> Batch:
    """The events of a body of media type `kind` as one Batch, events of another tenant
    rejected; HttpError if the body cannot be read as a batch or holds over MAX_EVENTS events."""
    batch = Batch()
    if kind.startswith("application/cloudevents"):
        documents = _array(body) if kind.endswith("batch+json") else [body]
        for number, document in enumerate(documents, 1):
            try:
                received = cloudevents.event_from_cloudevent(document)
            except MeterspecError as error:
                batch.reject(number, error)
                continue
            batch.add(number, _encode(received.event))
    else:
        if kind == "application/json":
            array = body.lstrip(b" \t\r\n")[:1] == b"["
            lines: Iterator[tuple[int, bytes | None]] = iter(
                enumerate(_array(body) if array else [_object(body)], 1))
        else:
            lines = read_lines(io.BytesIO(body))
        batch.fill(lines, MAX_EVENTS + 1)
        if batch.size > MAX_EVENTS:
            raise _too_many()
    return _tenant_checked(batch, workspace, universe)


def _tenant_checked(batch: Batch, workspace: str, universe: str) -> Batch:
    """Reject (wrong-tenant) the valid events of another workspace or universe."""
    wrong = {position for position, ws, uni in zip(batch.positions, batch.workspace_ids,
                                                   batch.universe_ids, strict=True)
             if ws != workspace or uni != universe}
    if not wrong:
        return batch
    column = {position: index for index, position in enumerate(batch.positions)}
    rejected = dict(batch.rejected)
    checked = Batch()
    for position in range(batch.size):
        number = batch.numbers[position]
        if position in rejected:
            checked.reject(number, rejected[position])
        elif position in wrong:
            index = column[position]
            problems = [Problem("wrong-tenant", path, f"this key writes to workspace "
                                f"{workspace!r}, universe {universe!r} only", "MS-HTTP-011",
                                event_id=batch.ids[index])
                        for path, value, own in (("/workspaceID", batch.workspace_ids[index],
                                                  workspace),
                                                 ("/universeID", batch.universe_ids[index],
                                                  universe)) if value != own]
            checked.reject(number, MeterspecError(problems))
        else:
            checked.add(number, batch.payloads[column[position]])
    return checked


COLUMNS = ("workspace_ids", "universe_ids", "ids", "types", "subjects", "seconds", "nanos",
           "digests", "payloads")
CORRECTION_COLUMNS = ("correction_kinds", "correction_targets", "correction_properties",
                      "correction_shapes")


def merge(batches: list[Batch]) -> Batch:
    """One Batch holding `batches` one after the other, for one transaction (group commit).
    Ingesting it decides every event as ingesting the batches in turn would (MS-ING-006)."""
    if len(batches) == 1:
        return batches[0]
    merged = Batch()
    for batch in batches:
        offset, columns = merged.size, len(merged.positions)
        merged.numbers += batch.numbers
        merged.positions += [offset + p for p in batch.positions]
        for name in COLUMNS + CORRECTION_COLUMNS:
            getattr(merged, name).extend(getattr(batch, name))
        merged.correction_positions += [offset + p for p in batch.correction_positions]
        merged.correction_columns += [columns + c for c in batch.correction_columns]
        merged.rejected += [(offset + p, error) for p, error in batch.rejected]
        merged.size += batch.size
    return merged


Decided = tuple[list[Outcome], dict[int, list[Problem]]]
"""Each event's outcome, and the problems of those that have some, by position."""


def split(batches: list[Batch], result: BatchResult) -> list[Decided]:
    """The outcomes of a merged batch, batch by batch."""
    outcomes = result.outcomes()
    problems: dict[int, list[Problem]] = {}
    for conflict in result.conflicts:
        problems[conflict.position] = [conflict.problem()]
    for late in result.late:
        problems[late.position] = [late.problem()]
    for position, error in result.rejected:
        problems[position] = [msgspec.structs.replace(p, line=None) for p in error.problems]
    decided: list[Decided] = []
    offset = 0
    for batch in batches:
        decided.append((outcomes[offset:offset + batch.size],
                        {p - offset: found for p, found in problems.items()
                         if offset <= p < offset + batch.size}))
        offset += batch.size
    return decided


def answer(batch: Batch, decided: Decided) -> IngestResult:
    """MS-HTTP-003: one result per event, in batch order, and the counts."""
    outcomes, problems = decided
    ids = dict(zip(batch.positions, batch.ids, strict=True))
    results = []
    counts = dict.fromkeys(("accepted", "duplicate", "conflict", "late-beyond-retention",
                            "rejected"), 0)
    for position, outcome in enumerate(outcomes):
        counts[outcome] += 1
        event_id = ids.get(position)
        found = problems.get(position)
        if event_id is None and found:
            event_id = found[0].event_id
        results.append(EventResult(position, outcome, event_id, found))
    return IngestResult(counts["accepted"], counts["duplicate"], counts["conflict"],
                        counts["late-beyond-retention"], counts["rejected"], results)
