"""benchmarks/http_load.py in small: two clients, two seconds, batches of 100 with repeats;
its checks (each distinct id stored once, each accepted once) hold."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import http_load


def test_a_short_load_run_stores_each_distinct_event_once() -> None:
    result = http_load.run(argparse.Namespace(
        store="duckdb", workers=1, seconds=2.0, clients=2, batch=100, duplicates=0.3,
        kill_after=0.0))
    assert result["checks"] == {name: True for name in result["checks"]}
    assert result["duplicates"] and result["accepted"] == result["distinct_stored"]
    assert result["events"] == result["accepted"] + result["duplicates"]


def test_a_kill_9_under_load_then_resending_stores_each_event_once() -> None:
    """--kill-after: the batches in flight at the kill get no answer; after a restart they
    are sent again, and the store ends with each distinct id once, each accepted at most
    once (an event stored just before the kill, whose answer was lost, is a duplicate when
    re-sent: stored, never seen accepted)."""
    result = http_load.run(argparse.Namespace(
        store="duckdb", workers=1, seconds=6.0, clients=2, batch=100, duplicates=0.3,
        kill_after=2.0))
    assert result["checks"] == {name: True for name in result["checks"]}
    assert result["unanswered_batches"] >= 1  # the kill came while clients were sending
    assert result["resent_events"] == 100 * result["unanswered_batches"]
    lost_answers = result["distinct_stored"] - result["accepted"] - result["resent_accepted"]
    assert 0 <= lost_answers <= result["resent_events"]
