"""`POST /v1/events` bodies (MS-HTTP-002) as one store Batch, and the batch's answer
(MS-HTTP-003). No web framework here: bytes and a media type in, a Batch or a refusal out.

Every event keeps the bytes it was sent with (an array item, an NDJSON line), so the store's
log holds what the client wrote; an item spread over several lines is made one line first
(msgspec.json.format: whitespace only). A CloudEvent's EventPayload is taken from its data
(MS-CE-009) and encoded once. An event of another tenant than the key's is rejected with
`wrong-tenant` (MS-HTTP-011) before the store sees it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import msgspec

from meterspec import cloudevents
from meterspec.errors import MeterspecError, Problem
from meterspec.lines import read_lines
from meterspec.server.problems import HttpError
from meterspec.store.base import BatchResult
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


def media_type(header: str | None) -> str | None:
    """The accepted media type a Content-Type header names (parameters ignored), or None."""
    kind = (header or "").split(";", 1)[0].strip().lower()
    return kind if kind in MEDIA_TYPES else None


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


def answer(batch: Batch, result: BatchResult) -> IngestResult:
    """MS-HTTP-003: one result per event, in batch order."""
    ids = dict(zip(batch.positions, batch.ids, strict=True))
    problems: dict[int, list[Problem]] = {}
    for conflict in result.conflicts:
        problems[conflict.position] = [conflict.problem()]
    for late in result.late:
        problems[late.position] = [late.problem()]
    for position, error in result.rejected:
        problems[position] = [msgspec.structs.replace(p, line=None) for p in error.problems]
    results = []
    for position, outcome in enumerate(result.outcomes()):
        event_id = ids.get(position)
        found = problems.get(position)
        if event_id is None and found:
            event_id = found[0].event_id
        results.append(EventResult(position, outcome, event_id, found))
    return IngestResult(result.accepted, result.duplicates, len(result.conflicts),
                        len(result.late), len(result.rejected), results)
