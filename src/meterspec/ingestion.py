"""Idempotent ingestion and corrections (specs/ingestion.md, MS-ING).

`ingest` is a pure function of a batch and a SeenState: it never reads a clock and never mutates
its input. Identity is (workspaceID, universeID, id); "identical" means the same SHA-256 digest
over the canonical encoding of MS-ING-002. Corrections (retract, amend) are events themselves;
`apply_corrections` turns an event log into the effective events that metering should see.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Literal, NamedTuple

import msgspec
from msgspec.structs import replace

from meterspec.contracts import EventPayload
from meterspec.errors import MeterspecError, Problem, order_problems, pointer
from meterspec.ids import encode_fields
from meterspec.metering import check_event
from meterspec.timestamps import NANOS_PER_DAY, Instant, format_timestamp, parse_timestamp

Identity = tuple[str, str, str]
"""(workspaceID, universeID, id): MS-ING-001."""

DIGEST_TAG = "meterspec/event/v1"
"""The first field of an event digest (MS-ING-002)."""
RESERVED_PREFIX = "meterspec."
"""The namespace of event types reserved for corrections (MS-ING-012)."""
RETRACT = "meterspec.retract"
"""The event type of a retraction (MS-ING-014)."""
AMEND = "meterspec.amend"
"""The event type of an amendment (MS-ING-015)."""
TARGET = "meterspec.target"
"""The property naming the id of the event a correction corrects (MS-ING-012)."""
CORRECTION_TYPES = frozenset({RETRACT, AMEND})
"""The event types of corrections."""
RECOMMENDED_RETENTION = 35 * NANOS_PER_DAY
"""MS-ING-009: 35 days in nanoseconds (Stripe accepts events 35 days back, Metronome 34)."""

Outcome = Literal["accepted", "duplicate", "conflict", "late-beyond-retention", "rejected"]
"""What ingestion made of one event (MS-ING-003)."""


# ------------------------------------------------------------------ digest (MS-ING-002)

def digest_fields(event: EventPayload, instant: Instant) -> list[str]:
    """The MS-ING-002 field list: tag, identity, type, subject, canonical time, the number of
    properties, then each property's key and value in code-point order of the keys."""
    props = event.properties
    fields = [DIGEST_TAG, event.workspace_id, event.universe_id, event.id, event.type,
              event.subject, format_timestamp(instant), str(len(props))]
    for key in sorted(props):
        fields += (key, props[key])
    return fields


def event_digest(event: EventPayload) -> str:
    """MS-ING-002: 64 lowercase hex digits of SHA-256 over the MS-ID-001 encoding of the
    digest fields. Raises MeterspecError when the event's time is not a timestamp."""
    return _digest(event, parse_timestamp(event.time, "/time"))


def _digest(event: EventPayload, instant: Instant) -> str:
    return hashlib.sha256(encode_fields(digest_fields(event, instant))).hexdigest()


def identity(event: EventPayload) -> Identity:
    """An event's identity (MS-ING-001): workspace, universe and id."""
    return (event.workspace_id, event.universe_id, event.id)


# ------------------------------------------------------------------ the seen state (MS-ING-007)

class Seen(NamedTuple):
    """What the state remembers of one accepted identity."""

    digest: str
    """The accepted payload's digest: 64 lowercase hex digits of SHA-256 (MS-ING-002)."""
    time: Instant
    """The event's time in ns since the epoch, UTC: what retention expires by (MS-ING-009)."""


class SeenEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One accepted identity in an ingestion state: its event time and payload digest."""
    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the first part of the event's identity (MS-ING-001)."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the second part of the identity."""
    id: str
    """The event's id, the third part of the identity."""
    time: str
    """The event's time as a canonical timestamp (MS-TIME-004)."""
    digest: str
    """The accepted payload's digest (MS-ING-002); a conflicting one is never stored."""


class IngestionState(msgspec.Struct, frozen=True, forbid_unknown_fields=True,
                     omit_defaults=True):
    """The wire form of a SeenState (schemas/ingestion-state.schema.json)."""

    events: list[SeenEvent]
    """One entry per accepted identity, sorted by workspaceID, universeID, id in code-point order
    (MS-ING-007)."""
    horizon: str | None = None
    """A canonical timestamp: events before it were expired and are reported late (MS-ING-009,
    MS-ING-010); absent until the first expiry."""


class SeenState:
    """Identities accepted so far, each with its payload digest and event time, and the
    retention horizon. Immutable: `ingest` and `expire` return new states."""

    __slots__ = ("_horizon", "_seen")

    def __init__(self, seen: Mapping[Identity, Seen] | None = None,
                 horizon: Instant | None = None) -> None:
        entries = dict(seen or {})
        if horizon is not None and any(s.time < horizon for s in entries.values()):
            raise ValueError("a SeenState holds no event older than its horizon (MS-ING-009)")
        self._seen = entries
        self._horizon = horizon

    @classmethod
    def _own(cls, seen: dict[Identity, Seen], horizon: Instant | None) -> SeenState:
        state = cls.__new__(cls)
        state._seen = seen
        state._horizon = horizon
        return state

    @property
    def horizon(self) -> Instant | None:
        """Events before this instant are no longer remembered (MS-ING-009, MS-ING-010)."""
        return self._horizon

    def get(self, key: Identity) -> Seen | None:
        """What was accepted under this identity, or None."""
        return self._seen.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def __iter__(self) -> Iterator[Identity]:
        return iter(sorted(self._seen))

    def items(self) -> list[tuple[Identity, Seen]]:
        """Entries in the document's order: by workspaceID, universeID, id (code points)."""
        return sorted(self._seen.items())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeenState):
            return NotImplemented
        return self._horizon == other._horizon and self._seen == other._seen

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SeenState({len(self._seen)} identities, horizon={self._horizon!r})"

    def to_wire(self) -> IngestionState:
        """MS-ING-007: the deterministic document; equal states encode to identical bytes."""
        return IngestionState(
            events=[SeenEvent(ws, uni, ident, format_timestamp(seen.time), seen.digest)
                    for (ws, uni, ident), seen in self.items()],
            horizon=None if self._horizon is None else format_timestamp(self._horizon))

    @classmethod
    def from_wire(cls, document: IngestionState) -> SeenState:
        """Resume from a stored document, checking what its schema cannot (MS-ING-007): times
        in canonical form, entries strictly ordered by identity, none before the horizon."""
        problems = state_problems(document)
        if problems:
            raise MeterspecError(problems)
        horizon = None if document.horizon is None else parse_timestamp(document.horizon)
        return cls._own({(e.workspace_id, e.universe_id, e.id):
                         Seen(e.digest, parse_timestamp(e.time)) for e in document.events},
                        horizon)


EMPTY = SeenState()
"""The seen state before anything was ingested."""


def state_problems(document: IngestionState) -> list[Problem]:
    """Every MS-ING-007 problem of a decoded ingestion-state document."""
    problems: list[Problem] = []
    horizon = None
    if document.horizon is not None:
        horizon = _canonical_instant(document.horizon, "/horizon", problems)
    keys: list[tuple[str, Identity]] = []
    for index, entry in enumerate(document.events):
        path = f"/events/{index}"
        for name in ("workspace_id", "universe_id", "id"):
            if not getattr(entry, name):
                wire = {"workspace_id": "workspaceID", "universe_id": "universeID"}.get(name, name)
                problems.append(Problem("empty-string", f"{path}/{wire}",
                                        f"{wire} must not be empty", "MS-ING-001"))
        if not _is_digest(entry.digest):
            problems.append(Problem("invalid-value", f"{path}/digest",
                                    "a digest is 64 lowercase hex digits", "MS-ING-002"))
        instant = _canonical_instant(entry.time, f"{path}/time", problems)
        if instant is not None and horizon is not None and instant < horizon:
            problems.append(Problem("invalid-value", f"{path}/time", "an entry before the "
                                    "horizon should have expired", "MS-ING-009"))
        keys.append((path, (entry.workspace_id, entry.universe_id, entry.id)))
    return problems + order_problems(
        keys, "the same identity twice", "entries are ordered by workspaceID, universeID, id",
        "MS-ING-007")


def _is_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _canonical_instant(text: str, path: str, problems: list[Problem]) -> Instant | None:
    try:
        instant = parse_timestamp(text, path)
    except MeterspecError as error:
        problems.extend(error.problems)
        return None
    if format_timestamp(instant) != text:
        problems.append(Problem("not-canonical", path, "a stored time is in the canonical "
                                "form of MS-TIME-004", "MS-ING-007"))
    return instant


def state_value_problems(document: object, reported: set[str]) -> list[Problem]:
    """Timestamp problems of a raw ingestion-state document beyond its schema (for the codec,
    which reports them beside schema problems: MS-ERR-002)."""
    problems: list[Problem] = []
    if not isinstance(document, dict):
        return problems
    candidates: list[tuple[str, object]] = [("/horizon", document.get("horizon"))]
    events = document.get("events")
    if isinstance(events, list):
        candidates += [(f"/events/{i}/time", e.get("time")) for i, e in enumerate(events)
                       if isinstance(e, dict)]
    for path, value in candidates:
        if isinstance(value, str) and path not in reported:
            try:
                parse_timestamp(value, path)
            except MeterspecError as error:
                problems.extend(error.problems)
    return problems


# ------------------------------------------------------------------ ingest (MS-ING-003..006)

class Duplicate(NamedTuple):
    """A repeat of an accepted event with the same digest: dropped (MS-ING-003)."""
    position: int
    """The event's 0-based index in the batch."""
    identity: Identity
    """The (workspaceID, universeID, id) already known with the same digest."""
    digest: str
    """The digest the batch's event and the known one share."""


class Conflict(NamedTuple):
    """Same identity, different payload: the accepted payload stays (MS-ING-004)."""

    position: int
    """The event's 0-based index in the batch."""
    identity: Identity
    """The (workspaceID, universeID, id) already known with another digest."""
    accepted_digest: str
    """The digest of the payload accepted first, which stays (MS-ING-004)."""
    conflicting_digest: str
    """The digest of this event's different payload, not accepted."""

    def problem(self, requirement: str = "MS-ING-004") -> Problem:
        """The event-conflict problem of this payload (MS-ING-004)."""
        return Problem("event-conflict", "", f"event {self.identity[2]!r} in workspace "
                       f"{self.identity[0]!r}, universe {self.identity[1]!r} was accepted with "
                       f"digest {self.accepted_digest}; this payload has digest "
                       f"{self.conflicting_digest}", requirement, event_id=self.identity[2])


class Late(NamedTuple):
    """An unknown identity older than the retention horizon (MS-ING-010)."""

    position: int
    """The event's 0-based index in the batch."""
    identity: Identity
    """The unknown (workspaceID, universeID, id) of the event."""
    time: str
    """The event's time, canonical: before the horizon."""
    horizon: str
    """The state's horizon, canonical (MS-ING-010)."""

    def problem(self) -> Problem:
        """The late-beyond-retention problem of this event (MS-ING-010)."""
        return Problem("late-beyond-retention", "/time", f"event time {self.time} is before the "
                       f"retention horizon {self.horizon}: a repeat can no longer be told from "
                       "a new event", "MS-ING-010", event_id=self.identity[2])


class Rejected(NamedTuple):
    """An event of the batch that is not valid, at its position, with every problem."""
    position: int
    """The event's 0-based index in the batch."""
    problems: tuple[Problem, ...]
    """Everything wrong with the event, each with a code and a JSON Pointer (MS-ERR-002)."""


class IngestResult(NamedTuple):
    """Every event of a batch in exactly one outcome, by position."""
    accepted: tuple[EventPayload, ...]
    """The accepted events, in input order."""
    duplicates: tuple[Duplicate, ...]
    """The events dropped as duplicates (MS-ING-003)."""
    conflicts: tuple[Conflict, ...]
    """The events whose identity was accepted with another payload (MS-ING-004)."""
    late: tuple[Late, ...]
    """The unknown events older than the horizon (MS-ING-010)."""
    rejected: tuple[Rejected, ...]
    """The invalid events with their problems."""
    outcomes: tuple[Outcome, ...]
    """One outcome per input event, in input order."""
    state: SeenState
    """The new seen state: the input's plus the accepted identities (the input is not modified)."""

    def problems(self) -> list[tuple[int, Problem]]:
        """(position, problem) for every conflict, late and rejected event, by position."""
        found = [(c.position, c.problem()) for c in self.conflicts]
        found += [(late.position, late.problem()) for late in self.late]
        found += [(r.position, p) for r in self.rejected for p in r.problems]
        return sorted(found, key=lambda item: item[0])


def ingest(batch: Iterable[EventPayload], state: SeenState = EMPTY) -> IngestResult:
    """MS-ING-003: classify each event of the batch, in order, against the state and the
    events before it in the batch; return the accepted events and the new state. The input
    state is not modified."""
    seen = dict(state._seen)
    horizon = state.horizon
    accepted: list[EventPayload] = []
    duplicates: list[Duplicate] = []
    conflicts: list[Conflict] = []
    late: list[Late] = []
    rejected: list[Rejected] = []
    outcomes: list[Outcome] = []
    for index, event in enumerate(batch):
        instant, problems = check_event(event)
        problems += correction_problems(event)
        if problems:
            event_id = event.id if isinstance(event.id, str) and event.id else None
            rejected.append(Rejected(index, tuple(replace(p, event_id=event_id)
                                                  for p in problems)))
            outcomes.append("rejected")
            continue
        key = identity(event)
        digest = _digest(event, instant)
        prior = seen.get(key)
        if prior is not None:
            if prior.digest == digest:
                duplicates.append(Duplicate(index, key, digest))
                outcomes.append("duplicate")
            else:
                conflicts.append(Conflict(index, key, prior.digest, digest))
                outcomes.append("conflict")
            continue
        if horizon is not None and instant < horizon:
            late.append(Late(index, key, format_timestamp(instant), format_timestamp(horizon)))
            outcomes.append("late-beyond-retention")
            continue
        seen[key] = Seen(digest, instant)
        accepted.append(event)
        outcomes.append("accepted")
    return IngestResult(tuple(accepted), tuple(duplicates), tuple(conflicts), tuple(late),
                        tuple(rejected), tuple(outcomes), SeenState._own(seen, horizon))


def expire(state: SeenState, before: Instant) -> SeenState:
    """MS-ING-009: forget identities whose event time is before `before` and raise the horizon
    to it (never lower it). Idempotent; expire(expire(s, a), b) == expire(s, max(a, b))."""
    horizon = before if state.horizon is None else max(state.horizon, before)
    return SeenState._own({k: v for k, v in state._seen.items() if v.time >= horizon}, horizon)


# ------------------------------------------------------------------ corrections (MS-ING-011..)

def is_correction(event: EventPayload) -> bool:
    """True for every event whose type is in the reserved `meterspec.` namespace."""
    return event.type.startswith(RESERVED_PREFIX)


def correction_problems(event: EventPayload) -> list[Problem]:
    """MS-ING-012: the shape of a correction event (nothing for ordinary events)."""
    if not isinstance(event.type, str) or not is_correction(event):
        return []
    problems: list[Problem] = []
    if event.type not in CORRECTION_TYPES:
        problems.append(Problem("invalid-correction", "/type", f"{event.type[:64]!r}: the "
                                f"type namespace {RESERVED_PREFIX!r} is reserved for {RETRACT} "
                                f"and {AMEND}", "MS-ING-011"))
    props = event.properties if isinstance(event.properties, dict) else {}
    target = props.get(TARGET)
    where = pointer("properties", TARGET)
    if target is None:
        problems.append(Problem("missing-field", where, f"a correction names its target in "
                                f"property {TARGET!r}", "MS-ING-012"))
    elif target == "":
        problems.append(Problem("empty-string", where, "the target id must not be empty",
                                "MS-ING-012"))
    elif target == event.id:
        problems.append(Problem("invalid-correction", where, "a correction cannot target "
                                "itself", "MS-ING-017"))
    for key in sorted(props):
        if key.startswith(RESERVED_PREFIX) and key != TARGET:
            problems.append(Problem("unknown-field", pointer("properties", key),
                                    f"property names starting with {RESERVED_PREFIX!r} are "
                                    "reserved in corrections", "MS-ING-012"))
    return problems


class Issue(NamedTuple):
    """A correction that had no effect, and why (MS-ING-016, MS-ING-017)."""

    correction: Identity
    """The identity of the correction that had no effect."""
    problem: Problem
    """Why: an unknown target (MS-ING-016) or a correction of a correction (MS-ING-017)."""


class Corrected(NamedTuple):
    """The effect of the correction events of a log (MS-ING-013 to MS-ING-015)."""
    effective: tuple[EventPayload, ...]
    """Ordinary events after corrections, in log order; no correction events (MS-ING-013)."""
    retracted: tuple[tuple[Identity, str], ...]
    """(target, id of the retraction that applies), by target identity (MS-ING-014)."""
    amended: tuple[tuple[Identity, str], ...]
    """(target, id of the amendment in force), by target identity (MS-ING-015)."""
    issues: tuple[Issue, ...]
    """Corrections without effect, by correction identity then problem."""


def apply_corrections(log: Iterable[EventPayload]) -> Corrected:
    """MS-ING-013: the effective events of an event log. Identical repeats in the log count
    once; two different payloads for one identity reject the log (MS-ING-019)."""
    events: dict[Identity, tuple[EventPayload, Instant, str]] = {}
    conflicts: list[Problem] = []
    issues: list[Issue] = []
    for event in log:
        instant, problems = check_event(event)
        key = identity(event)
        if problems:
            issues += [Issue(key, replace(p, event_id=event.id or None)) for p in problems]
            continue
        digest = _digest(event, instant)
        prior = events.get(key)
        if prior is None:
            events[key] = (event, instant, digest)
        elif prior[2] != digest:
            conflicts.append(Conflict(0, key, prior[2], digest).problem("MS-ING-019"))
    if conflicts:
        raise MeterspecError(conflicts)
    by_target: dict[Identity, list[tuple[EventPayload, Instant]]] = {}
    for key, (event, instant, _) in events.items():
        if not is_correction(event):
            continue
        problems = correction_problems(event)
        if not problems:
            target_key = (event.workspace_id, event.universe_id, event.properties[TARGET])
            problems = _target_problems(event, events.get(target_key))
            if not problems:
                by_target.setdefault(target_key, []).append((event, instant))
        issues += [Issue(key, replace(p, event_id=event.id)) for p in problems]
    effective: list[EventPayload] = []
    retracted: list[tuple[Identity, str]] = []
    amended: list[tuple[Identity, str]] = []
    for key, (event, _, _) in events.items():
        if is_correction(event):
            continue
        corrections = by_target.get(key)
        if not corrections:
            effective.append(event)
            continue
        retractions = [c for c in corrections if c[0].type == RETRACT]
        if retractions:
            first = min(retractions, key=lambda c: (c[1], c[0].id))
            retracted.append((key, first[0].id))
            continue
        latest = max(corrections, key=lambda c: (c[1], c[0].id))[0]
        props = {k: v for k, v in latest.properties.items() if k != TARGET}
        effective.append(replace(event, properties=props))
        amended.append((key, latest.id))
    issues.sort(key=lambda i: (i.correction, i.problem.path, i.problem.code))
    return Corrected(tuple(effective), tuple(sorted(retracted)), tuple(sorted(amended)),
                     tuple(issues))


def _target_problems(correction: EventPayload,
                     target: tuple[EventPayload, Instant, str] | None) -> list[Problem]:
    where = pointer("properties", TARGET)
    if target is None:
        return [Problem("unknown-target", where, f"no event {correction.properties[TARGET]!r} "
                        "in this workspace and universe", "MS-ING-016")]
    if is_correction(target[0]):
        return [Problem("invalid-correction", where, "a correction cannot correct a "
                        "correction", "MS-ING-017")]
    if target[0].subject != correction.subject:
        return [Problem("invalid-correction", "/subject", "a correction has its target's "
                        "subject", "MS-ING-011")]
    return []
