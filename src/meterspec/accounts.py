"""Billing accounts (MS-ACC): one subscription billing the usage of several (workspace,
universe, subject) groups, each read alone, their quantities summed on one invoice.

    sources --each group's own reading over the line's window (MS-AGG-004)--> quantities
            --exact sum--> one line, one tier ladder for the account

Isolation (MS-EVT-002) holds because nothing is merged but the quantities the request asks
for: the records of every group stay in their own reading.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from meterspec.errors import Problem
from meterspec.ids import digest_id

__all__ = [
    "Group",
    "Source",
    "SourceUsage",
    "account_reading_id",
    "group_problems",
    "groups",
]

Group = tuple[str, str, str]
"""(workspaceID, universeID, subject): the unit of isolation a reading belongs to."""


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True,
            kw_only=True):
    pass


class Source(_Wire, frozen=True):
    """One group a billing account bills (MS-ACC-001): a missing universe is the request's,
    a missing subject the subscription's."""

    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the workspace of the group billed."""
    universe_id: str | None = msgspec.field(default=None, name="universeID")
    """Wire `universeID`: its universe; absent means the request's (MS-ACC-001)."""
    subject: str | None = None
    """Its subject; absent means the subscription's."""


class SourceUsage(_Wire, frozen=True):
    """One source's share of an account line (MS-ACC-003): its own reading, quantity and
    records."""

    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the source group's workspace."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the source group's universe, resolved."""
    subject: str
    """The source group's subject, resolved."""
    reading_id: str = msgspec.field(name="readingID")
    """Wire `readingID`: the id of the source's reading over the line's window (MS-ID-003)."""
    quantity: str
    """The source's quantity, canonical; 0 for a null reading (MS-ACC-002)."""
    record_count: int = msgspec.field(name="recordCount")
    """Wire `recordCount`: the source's records inside the line's window."""
    records_digest: str = msgspec.field(name="recordsDigest")
    """Wire `recordsDigest`: `rds_` + digest of those records' ids (MS-INV-005)."""
    carried_in: list[str] | None = msgspec.field(default=None, name="carriedIn")
    """Wire `carriedIn`: the ids of the records carrying the source's level in (time-weighted
    average only)."""


def groups(sources: list[Source] | None, workspace: str, universe: str,
           subject: str) -> list[Group]:
    """The groups a subscription bills: its sources with their defaults filled in, or, without
    sources, the request's tenant and its own subject (MS-ACC-001)."""
    if sources is None:
        return [(workspace, universe, subject)]
    return [(s.workspace_id, universe if s.universe_id is None else s.universe_id,
             subject if s.subject is None else s.subject) for s in sources]


def group_problems(billed: Iterable[tuple[str, list[Source] | None, str]], workspace: str,
                   universe: str) -> list[Problem]:
    """MS-ACC-001: a group is billed by at most one subscription, once. `billed` holds each
    subscription's path, sources and subject, in request order."""
    problems: list[Problem] = []
    seen: set[Group] = set()
    for path, sources, subject in billed:
        for index, group in enumerate(groups(sources, workspace, universe, subject)):
            if group in seen:
                where = f"{path}/subject" if sources is None else f"{path}/sources/{index}"
                problems.append(Problem("duplicate-item", where, f"the usage of {group!r} is "
                                        "already billed by this request", "MS-ACC-001"))
            seen.add(group)
    return problems


def account_reading_id(reading_ids: list[str]) -> str:
    """MS-ACC-003: the reading id of an account line, a digest of its sources' readings."""
    return digest_id("rdg_", ("meterspec/account-reading/v1", str(len(reading_ids)),
                              *reading_ids))
