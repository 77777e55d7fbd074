"""meterspec.pipeline: the hot loop of `meterspec run` equals the general path (decode_event,
Meter.measure, Aggregator.add) on every line, good or hostile (issue 12)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec.codec import encode
from meterspec.contracts import (
    AggregationRequest,
    Filter,
    MeasurementSpec,
    MeteringConfig,
    Tumbling,
)
from meterspec.errors import MeterspecError, Problem
from meterspec.event_stream import EventDeduplicator
from meterspec.metering import Meter
from meterspec.pipeline import event_feeder
from meterspec.readings import Aggregator

TUMBLING = Tumbling("hour", "2024-01-15T00:00:00Z", "2024-01-15T06:00:00Z")
CONFIGS = [
    MeteringConfig([MeasurementSpec("tokens", source_property="tokens")]),
    MeteringConfig([MeasurementSpec("tokens", source_property="tokens"),
                    MeasurementSpec("calls", quantity="1", event_types=["llm"]),
                    MeasurementSpec("eu", quantity="2",
                                    filter=Filter(property="region", equals="eu"))]),
]
GOOD: dict[str, Any] = {"id": "e1", "workspaceID": "w", "universeID": "u", "type": "llm",
                        "subject": "s", "time": "2024-01-15T01:30:00.5Z",
                        "properties": {"tokens": "2.50", "region": "eu"}}


def _general(meter: Meter, aggregator: Aggregator, line: bytes,
             dedup: EventDeduplicator | None) -> None:
    """The general path, spelt out: decode, count the identity once (MS-ING-021), measure."""
    from meterspec.codec import decode_event
    from meterspec.metering import check_event

    event = decode_event(line)
    instant, problems = check_event(event)
    if dedup is not None and not problems and dedup.add(event, instant) == "duplicate":
        return
    instant, measured, dimensions = meter.measure(event, aggregator.needs_dimensions)
    for unit, quantity, _ in measured:
        aggregator.add(event.workspace_id, event.universe_id, event.subject, unit, dimensions,
                       instant, quantity)


_FIELD_VALUES = {
    "id": st.sampled_from(["e1", "e2", "", "e\\u0031"]),
    "workspaceID": st.sampled_from(["w", "v", ""]),
    "subject": st.sampled_from(["s", "t", "s:1"]),
    "type": st.sampled_from(["llm", "other", ""]),
    "time": st.sampled_from(["2024-01-15T01:30:00.5Z", "2024-01-15T05:59:59.999999999Z",
                             "2024-01-15T06:00:00Z", "2024-01-14T23:00:00Z",
                             "2024-01-15T02:00:00+01:00", "2024-01-15T01:30:60Z", "soon",
                             "2024-01-15t01:30:00z", "2024-01-15T01:30:00.1234567891Z"]),
}
_PROPERTIES = st.dictionaries(st.sampled_from(["tokens", "region", "x"]),
                              st.sampled_from(["1", "2.5", "-0", "1e3", "x", "eu", "us",
                                               "1e00001"]), max_size=3)


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    event = dict(GOOD)
    for name, values in _FIELD_VALUES.items():
        if draw(st.booleans()):
            event[name] = draw(values)
    if draw(st.booleans()):
        event["properties"] = draw(_PROPERTIES)
    text = json.dumps(event, separators=(",", ":"))
    change = draw(st.sampled_from(["none", "none", "repeat", "drop", "extra", "number",
                                   "escape", "space"]))
    if change == "repeat":
        text = text[:-1] + ',"subject":"other"}'
    elif change == "drop":
        text = text.replace('"universeID":"u",', "")
    elif change == "extra":
        text = text[:-1] + ',"extra":1}'
    elif change == "number":
        text = text.replace('"2.50"', "2.5")
    elif change == "escape":
        text = text.replace('"llm"', '"ll\\u006d"')
    elif change == "space":
        text = text.replace(":", " : ")
    return text.encode().replace(b"\\\\u", b"\\u")


def _outcome(feed: Any, line: bytes) -> list[Problem] | None:
    try:
        feed(line)
    except MeterspecError as error:
        return list(error.problems)
    return None


@settings(max_examples=200, deadline=None)
@given(st.lists(lines(), max_size=12), st.sampled_from(CONFIGS),
       st.sampled_from(["sum", "count", "time-weighted-avg", "max"]), st.booleans())
def test_the_hot_loop_equals_the_general_path(batch: list[bytes], config: MeteringConfig,
                                              aggregation: str, deduplicated: bool) -> None:
    request = AggregationRequest(aggregation=aggregation, tumbling=TUMBLING)  # type: ignore[arg-type]
    fast_meter, slow_meter = Meter(config), Meter(config)
    fast_aggregator, slow_aggregator = Aggregator(request), Aggregator(request)
    fast_seen, slow_seen = ((EventDeduplicator(), EventDeduplicator()) if deduplicated
                            else (None, None))
    feed = event_feeder(fast_meter, fast_aggregator, fast_seen)
    for line in batch:
        assert _outcome(feed, line) == _outcome(
            lambda item: _general(slow_meter, slow_aggregator, item, slow_seen), line), line
    if fast_seen is not None and slow_seen is not None:
        assert fast_seen.duplicates == slow_seen.duplicates
    assert [encode(r) for r in fast_aggregator.readings()] == [
        encode(r) for r in slow_aggregator.readings()]
