"""The relational plan: what a backend computes, as plain data (issue 13).

A Plan is compiled once from a MeteringConfig and/or an AggregationRequest
(meterspec.engines.compiler) and says everything a backend needs without reading the
contracts again: which rows are events or records, each measurement as a rule with its
filter as a tree of conditions, the properties and dimensions a row must yield, the windows
as rows (already resolved by the reference's meterspec.windows, so time zones and daylight
saving are never re-implemented), and the constant pieces of every reading id and reading
line. A backend renders the conditions and stages into its own SQL or DataFrame calls; the
stages are, in order:

1. screen: each input row is accepted on its fast, valid shape or flagged; flagged rows are
   described by the reference (meterspec.engines.flagged), which rejects them with the
   reference's problems or hands back their measurements;
2. meter (events only): an accepted event yields one record per matching rule, in rule order;
3. assign: a record's instant finds its segment (Windows.bounds cut time into disjoint
   segments; a window is the run of segments [first, last));
4. aggregate: one partial state per group and segment, combined per window (MS-AGG-005);
5. finish: canonical quantities, reading ids (MS-ID-003), one line per active group and
   window, in MS-AGG-017 order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Input = Literal["events", "records"]


# ------------------------------------------------------------------ conditions (MS-MET-004/5)

@dataclass(frozen=True)
class Equals:
    """A present property whose value is `value`, byte for byte."""

    property: str
    value: str


@dataclass(frozen=True)
class OneOf:
    """`in` (a present property with one of the values) or, negated, `notIn` (a missing
    property or a value not in the list)."""

    property: str
    values: tuple[str, ...]
    negated: bool


@dataclass(frozen=True)
class Exists:
    """A present (or, with `present` false, a missing) property."""

    property: str
    present: bool


@dataclass(frozen=True)
class Every:
    """allOf: every part matches."""

    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Some:
    """anyOf: at least one part matches."""

    parts: tuple[Condition, ...]


Condition = Equals | OneOf | Exists | Every | Some


def condition_properties(condition: Condition | None) -> list[str]:
    """The property names a condition reads, in first-use order."""
    if condition is None:
        return []
    if isinstance(condition, Every | Some):
        names: list[str] = []
        for part in condition.parts:
            names += [n for n in condition_properties(part) if n not in names]
        return names
    return [condition.property]


def condition_sql(node: Condition, value: dict[str, str], literal: Callable[[str], str]) -> str:
    """A condition tree as an SQL boolean that is never NULL (MS-MET-005), in the SQL both
    backends share; `value` maps a property name to the SQL of its value (NULL when absent)
    and `literal` is the dialect's string literal."""
    if isinstance(node, Equals):
        return f"coalesce({value[node.property]} = {literal(node.value)}, false)"
    if isinstance(node, OneOf):
        items = ", ".join(literal(v) for v in node.values)
        found = f"{value[node.property]} IN ({items})"
        return f"coalesce(NOT ({found}), true)" if node.negated else f"coalesce({found}, false)"
    if isinstance(node, Exists):
        return f"({value[node.property]} IS {'NOT ' if node.present else ''}NULL)"
    joiner = " AND " if isinstance(node, Every) else " OR "
    return "(" + joiner.join(condition_sql(part, value, literal) for part in node.parts) + ")"


# ------------------------------------------------------------------ metering (MS-MET)

@dataclass(frozen=True)
class Rule:
    """One measurement (MS-MET-002/003/007), in config order. `source` is the record-id field
    (MS-ID-002): `property:NAME` or `constant:QUANTITY` (canonical)."""

    index: int
    unit: str
    source: str
    source_property: str | None
    constant: str | None
    event_types: tuple[str, ...] | None
    condition: Condition | None


@dataclass(frozen=True)
class Metering:
    """A compiled MeteringConfig: its rules and its dimension rule (MS-MET-006)."""

    rules: tuple[Rule, ...]
    listed_dimensions: tuple[str, ...] | None
    source_properties: frozenset[str]

    def is_dimension(self, name: str) -> bool:
        """Whether a property of this name is a record dimension (MS-MET-006)."""
        if self.listed_dimensions is not None:
            return name in self.listed_dimensions
        return name not in self.source_properties

    def read_properties(self) -> tuple[str, ...]:
        """The properties metering reads: sources and filter properties, first use first."""
        names: list[str] = []
        for rule in self.rules:
            wanted = ([rule.source_property] if rule.source_property is not None else []) \
                + condition_properties(rule.condition)
            names += [n for n in wanted if n not in names]
        return tuple(names)


# ------------------------------------------------------------------ windows (MS-WIN)

@dataclass(frozen=True)
class WindowRow:
    """One window, in MS-AGG-017 order (start, then end): its instants (int nanoseconds,
    MS-TIME-003), their canonical texts, the segments [first, last) it spans, its JSON
    (`{"start":..,"end":..}`) and its MS-ID-001 field encoding."""

    index: int
    start: int
    end: int
    start_text: str
    end_text: str
    first: int
    last: int
    json: str
    id_fields: str


@dataclass(frozen=True)
class Windows:
    """The request's windows and the segments their bounds cut time into: segment j is
    [bounds[j], bounds[j + 1]), covered when some window holds it. `size` is the common
    length of the segments when they are all of one length and all covered (a division
    finds an instant's segment), else None (a search does)."""

    rows: tuple[WindowRow, ...]
    bounds: tuple[int, ...]
    covered: tuple[bool, ...]
    disjoint: bool
    size: int | None

    @property
    def start(self) -> int:
        return self.bounds[0]

    @property
    def end(self) -> int:
        return self.bounds[-1]

    @property
    def longest(self) -> int:
        return max(row.end - row.start for row in self.rows)


# ------------------------------------------------------------------ aggregation (MS-AGG)

@dataclass(frozen=True)
class Aggregation:
    """A compiled AggregationRequest. `grouped` says whether readings carry `group` (the
    request has groupBy, possibly empty); `parameter` is MS-ID-003's; `id_prefix` and
    `id_kind` are the encoded constant fields of every reading id before and after the
    group's (workspaceID, universeID, subject, unit); `line_kind` is the aggregation's JSON."""

    kind: str
    group_by: tuple[str, ...]
    grouped: bool
    dimension: str | None
    scale: int
    parameter: str
    windows: Windows
    id_prefix: str
    id_kind: str
    line_kind: str

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The record dimensions the aggregation reads: groupBy, then unique-count's."""
        names = list(self.group_by)
        if self.dimension is not None and self.dimension not in names:
            names.append(self.dimension)
        return tuple(names)

    @property
    def weighted(self) -> bool:
        return self.kind == "time-weighted-avg"


@dataclass(frozen=True)
class Plan:
    """What to compute: `input` says what the rows are; `metering` is set for events,
    `aggregation` for readings (None: the records themselves are the output, `meter`)."""

    input: Input
    metering: Metering | None
    aggregation: Aggregation | None

    def needed(self) -> tuple[str, ...]:
        """Every property (events) or dimension (records) a row must yield, first use
        first: what metering reads, then what aggregation groups or counts by."""
        names = list(self.metering.read_properties()) if self.metering else []
        if self.aggregation is not None:
            names += [n for n in self.aggregation.dimensions if n not in names]
        return tuple(names)
