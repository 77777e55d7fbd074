"""MS-ING-021: a stream of events read from files counts each (workspaceID, universeID, id) once.

Pure (no I/O). `meterspec run` on files has no store to ask, so it keeps two integers per
identity (in a meterspec.int_table: 32 to 64 bytes each), never the event: a 64-bit keyed hash
of the identity and a 64-bit hash of the rest of the payload's value. An identical repeat (the
same MS-ING-002 digest: the same event however its JSON is spelt) is a duplicate, dropped and
counted; a repeat with another digest is an `event-conflict` and the first event is the one
that counts (MS-ING-004).

Cost matters here (it runs once per event in run's hot loop), so both are Python's keyed hash:
the payload is compared by the hash of (type, subject, instant, the set of properties), which
is equal exactly when the MS-ING-002 digests are, up to a 2^-64 chance per repeated identity.
"""

from __future__ import annotations

from typing import Literal

from meterspec.contracts import EventPayload
from meterspec.errors import MeterspecError, Problem
from meterspec.ingestion import event_digest
from meterspec.int_table import IntTable
from meterspec.timestamps import Instant


def identity_key(event: EventPayload) -> int:
    """A 64-bit keyed hash (Python's SipHash, with this process's secret) of (workspaceID,
    universeID, id). Cheap, because it runs once per event (a digest cost a sixth of `run`).
    Two identities sharing a key would be told apart by their payloads, so a collision shows
    up as a reported event-conflict, never as a silent drop (that also needs the payload
    hashes to collide: ~2^-128). The secret differs between processes but not between forks
    of one (meterspec.parallel compares the keys of its forked readers)."""
    return hash((event.workspace_id, event.universe_id, event.id))


def payload_hash(event: EventPayload, instant: Instant) -> int:
    """What MS-ING-002 digests, by value: the identity, the type, the subject, the instant (so
    every spelling of one time is one value) and the properties as a set. The identity is in
    it too, so two identities that share an identity key still differ here."""
    return hash((event.workspace_id, event.universe_id, event.id, event.type, event.subject,
                 instant, frozenset(event.properties.items())))


class EventDeduplicator:
    """The identities of one event stream seen so far, each with a hash of its payload (two
    integers per identity, never the event)."""

    __slots__ = ("_seen", "conflicts", "duplicates")

    def __init__(self) -> None:
        self._seen = IntTable()
        self.duplicates = 0
        """How many identical repeats were dropped so far."""
        self.conflicts = 0
        """How many repeats with another payload were rejected so far (`event-conflict`)."""

    def __len__(self) -> int:
        return len(self._seen)

    def identities(self) -> frozenset[int]:
        """The identity keys seen (for meterspec.parallel: a key seen by two ranges of one file
        needs the order of the whole file to say which copy counts)."""
        return frozenset(self._seen.keys())

    def add(self, event: EventPayload, instant: Instant) -> Literal["new", "duplicate"]:
        """"new" the first time an identity is seen (meter the event), "duplicate" for a repeat
        with the same MS-ING-002 digest (drop it; counted in `duplicates`); MeterspecError
        `event-conflict` for a repeat with another digest (reject it: the first one stands).
        Call it once per *valid* event (decoded, identity fields non-empty, `instant` its parsed
        time), whether or not any measurement takes it, and before metering it."""
        content = payload_hash(event, instant)
        first = self._seen.setdefault(identity_key(event), content)
        if first is None:
            return "new"
        if first == content:
            self.duplicates += 1
            return "duplicate"
        self.conflicts += 1
        raise MeterspecError([Problem(
            "event-conflict", "", f"event {event.id!r} in workspace {event.workspace_id!r}, "
            f"universe {event.universe_id!r} was already read with another payload; this one "
            f"has digest {event_digest(event)}: the first one counts", "MS-ING-021",
            event_id=event.id)])
