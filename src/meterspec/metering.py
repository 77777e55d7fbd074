"""EventPayload -> MeterRecords (MS-EVT, MS-MET): which measurements an event yields, with
which quantity and dimensions. Pure: the only time it knows is the one the caller passes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from heapq import merge
from typing import NamedTuple

from msgspec import UNSET
from msgspec.structs import replace

from meterspec.contracts import (
    EventPayload,
    Filter,
    Measurement,
    MeasurementSpec,
    MeteringConfig,
    MeterRecord,
)
from meterspec.errors import MeterspecError, Problem, pointer
from meterspec.ids import record_id
from meterspec.quantity import format_quantity, parse_quantity
from meterspec.timestamps import Instant, format_timestamp, parse_timestamp

Predicate = Callable[[Mapping[str, str]], bool]
"""A compiled filter: whether an event's properties match (MS-MET-005)."""
_IDENTITY_FIELDS = ("id", "workspaceID", "universeID", "type", "subject")


class Measured(NamedTuple):
    """One measurement taken from one event, before it is written as a MeterRecord."""

    unit: str
    """The unit of the measurement that matched."""
    quantity: Decimal
    """The exact quantity measured: the property's value or the constant."""
    source: str
    """`property:<sourceProperty>` or `constant:<canonical quantity>`, as the record id encodes it
    (MS-ID-002)."""


class _Rule(NamedTuple):
    unit: str
    source_property: str | None
    constant: Decimal | None
    source: str
    event_types: frozenset[str] | None
    matches: Predicate
    always: bool  # no filter: matches every event of its types


_NO_DIMENSIONS: dict[str, str] = {}  # shared: never written to
_MAX_CACHED_TYPES = 4096


def compile_filter(spec: Filter, path: str) -> Predicate:
    """MS-MET-004/005: one condition per filter object; missing properties never match
    `equals`/`in`, always match `notIn`."""
    conditions = [name for name in ("equals", "in_", "not_in", "exists", "all_of", "any_of")
                  if getattr(spec, name) is not None]
    needs_property = conditions and conditions[0] not in ("all_of", "any_of")
    if len(conditions) != 1 or needs_property != (spec.property is not None):
        raise MeterspecError.single(
            "invalid-filter", path, "a filter has exactly one of equals, in, notIn, exists "
            "(each with property) or allOf, anyOf (without property)", "MS-MET-004")
    for key, values in (("in", spec.in_), ("notIn", spec.not_in), ("allOf", spec.all_of),
                        ("anyOf", spec.any_of)):
        if values == []:
            raise MeterspecError.single("empty-list", f"{path}/{key}",
                                        f"{key} needs at least one item", "MS-MET-004")
    name = spec.property or ""
    if spec.equals is not None:
        wanted = spec.equals
        return lambda props: props.get(name) == wanted
    if spec.in_ is not None:
        allowed = frozenset(spec.in_)
        return lambda props: name in props and props[name] in allowed
    if spec.not_in is not None:
        banned = frozenset(spec.not_in)
        return lambda props: props.get(name) not in banned if name in props else True
    if spec.exists is not None:
        present = spec.exists
        return lambda props: (name in props) == present
    key = "allOf" if spec.all_of is not None else "anyOf"
    parts = spec.all_of or spec.any_of or []
    children = [compile_filter(p, f"{path}/{key}/{i}") for i, p in enumerate(parts)]
    combine = all if key == "allOf" else any
    return lambda props: combine(child(props) for child in children)


class Meter:
    """A compiled MeteringConfig: turns events into records, one event at a time."""

    def __init__(self, config: MeteringConfig) -> None:
        problems: list[Problem] = []
        rules: list[_Rule] = []
        seen: set[tuple[str, str]] = set()
        if not config.measurements:
            problems.append(Problem("empty-list", "/measurements",
                                    "a config needs at least one measurement", "MS-MET-001"))
        for index, spec in enumerate(config.measurements):
            path = f"/measurements/{index}"
            try:
                rules.append(self._rule(spec, path))
            except MeterspecError as error:
                problems.extend(error.problems)
                continue
            identity = (rules[-1].unit, rules[-1].source)
            if identity in seen:
                problems.append(Problem(
                    "duplicate-measurement", path, "two measurements with the same unit and "
                    "source would count the same usage twice", "MS-MET-002"))
            seen.add(identity)
        if problems:
            raise MeterspecError(problems)
        self._rules = tuple(rules)
        # An event is checked against the rules of its type and the rules of every type only,
        # in config order: its cost does not grow with measurements for other event types.
        self._untyped = [i for i, rule in enumerate(rules) if rule.event_types is None]
        self._typed: dict[str, list[int]] = {}
        for index, rule in enumerate(rules):
            for event_type in rule.event_types or ():
                self._typed.setdefault(event_type, []).append(index)
        self._by_type: dict[str, tuple[_Rule, ...]] = {}
        self._sources = frozenset(r.source_property for r in rules if r.source_property)
        # A set, so an event costs its own properties whatever the size of the list.
        self._dimensions = (frozenset(config.dimensions) if config.dimensions is not None
                            else None)

    @staticmethod
    def _rule(spec: MeasurementSpec, path: str) -> _Rule:
        if (spec.source_property is None) == (spec.quantity is None):
            raise MeterspecError.single(
                "invalid-measurement", path,
                "a measurement has exactly one of sourceProperty and quantity", "MS-MET-002")
        constant = None
        if spec.quantity is not None:
            constant = parse_quantity(spec.quantity, path + "/quantity")
            source = "constant:" + format_quantity(constant)
        else:
            source = f"property:{spec.source_property}"
        matches: Predicate = (
            compile_filter(spec.filter, path + "/filter") if spec.filter else lambda _: True)
        types = frozenset(spec.event_types) if spec.event_types is not None else None
        return _Rule(spec.unit, spec.source_property, constant, source, types, matches,
                     spec.filter is None)

    def rules_of(self, event_type: str) -> tuple[_Rule, ...]:
        """The rules an event of this type meets, in config order (cached per type, a bounded
        number of types: a hostile stream of distinct types costs a merge each, not memory)."""
        rules = self._by_type.get(event_type)
        if rules is None:
            typed = self._typed.get(event_type, [])
            rules = tuple(self._rules[i] for i in (merge(typed, self._untyped) if typed
                                                   else self._untyped))
            if len(self._by_type) < _MAX_CACHED_TYPES:
                self._by_type[event_type] = rules
        return rules

    def measure(self, event: EventPayload, dimensions: bool = True
                ) -> tuple[Instant, list[Measured], dict[str, str]]:
        """The event's instant, its measurements and (unless `dimensions` is false, for a
        caller that groups by none) its dimensions; raises MeterspecError listing every
        problem of the event (MS-MET-008), each tagged with the event id.

        The common case, a good event, takes one pass with no problem bookkeeping; anything
        unusual goes to the full checks, which find every problem."""
        if event.id and event.workspace_id and event.universe_id and event.type and \
                event.subject:
            try:
                instant = parse_timestamp(event.time, "/time")
                props = event.properties
                measured: list[Measured] = []
                for rule in self.rules_of(event.type):
                    if not rule.always and not rule.matches(props):
                        continue
                    constant = rule.constant
                    if constant is None:
                        constant = parse_quantity(props[rule.source_property or ""])
                    measured.append(Measured(rule.unit, constant, rule.source))
                return instant, measured, (self.dimensions(props) if dimensions
                                           else _NO_DIMENSIONS)
            except (MeterspecError, KeyError):
                pass
        return self._measure_checked(event)

    def _measure_checked(self, event: EventPayload
                         ) -> tuple[Instant, list[Measured], dict[str, str]]:
        """measure() with every check spelt out: the path of a bad event."""
        instant, problems = check_event(event)
        props = event.properties
        measured: list[Measured] = []
        typed = self._typed.get(event.type, [])
        for index in merge(typed, self._untyped) if typed else self._untyped:
            rule = self._rules[index]
            if not rule.matches(props):
                continue
            if rule.constant is not None:
                measured.append(Measured(rule.unit, rule.constant, rule.source))
                continue
            name = rule.source_property or ""
            text = props.get(name)
            if text is None:
                problems.append(Problem(
                    "missing-source-property", pointer("properties", name),
                    f"measurement {rule.unit!r} matched but property {name!r} is missing",
                    "MS-MET-008"))
                continue
            try:
                quantity = parse_quantity(text)
            except MeterspecError as error:
                where = pointer("properties", name)
                problems.extend(replace(p, path=where) for p in error.problems)
                continue
            measured.append(Measured(rule.unit, quantity, rule.source))
        if problems:
            event_id = event.id if isinstance(event.id, str) and event.id else None
            raise MeterspecError(replace(p, event_id=event_id) for p in problems)
        return instant, measured, self.dimensions(props)

    def dimensions(self, props: Mapping[str, str]) -> dict[str, str]:
        """MS-MET-006: the listed properties if the config lists them, else every property
        that is not the source of any measurement in the config; keys in code-point order."""
        kept = self._dimensions
        if kept is not None:
            return {k: props[k] for k in sorted(props) if k in kept}
        return {k: props[k] for k in sorted(props) if k not in self._sources}

    def records(self, event: EventPayload, metered_at: str | None = None) -> list[MeterRecord]:
        """MS-MET-007: one MeterRecord per matching measurement, in config order."""
        instant, measured, dims = self.measure(event)
        recorded_at = format_timestamp(instant)
        stamp = (UNSET if metered_at is None
                 else format_timestamp(parse_timestamp(metered_at, "/meteredAt")))
        return [
            MeterRecord(
                id=record_id(event.workspace_id, event.universe_id, event.id, m.unit, m.source),
                workspace_id=event.workspace_id,
                universe_id=event.universe_id,
                subject=event.subject,
                recorded_at=recorded_at,
                measurement=Measurement(format_quantity(m.quantity), m.unit),
                dimensions=dims,
                source_event_id=event.id,
                metered_at=stamp,
            )
            for m in measured
        ]


def check_event(event: EventPayload) -> tuple[Instant, list[Problem]]:
    """The event's instant and its problems beyond the Struct's types: identity fields are
    non-empty (MS-EVT-002) and time is a real instant (MS-TIME-001)."""
    values = (event.id, event.workspace_id, event.universe_id, event.type, event.subject)
    problems = [] if all(values) else [
        Problem("empty-string", "/" + name, f"{name} must not be empty", "MS-EVT-002")
        for name, value in zip(_IDENTITY_FIELDS, values, strict=True) if not value
    ]
    try:
        return parse_timestamp(event.time, "/time"), problems
    except MeterspecError as error:
        return 0, problems + list(error.problems)


def meter(
    event: EventPayload, config: MeteringConfig, metered_at: str | None = None
) -> list[MeterRecord]:
    """The MeterRecords one event yields under config (compiles config; use Meter for streams)."""
    return Meter(config).records(event, metered_at)
