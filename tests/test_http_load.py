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
        store="duckdb", workers=1, seconds=2.0, clients=2, batch=100, duplicates=0.3))
    assert result["checks"] == {name: True for name in result["checks"]}
    assert result["duplicates"] and result["accepted"] == result["distinct_stored"]
    assert result["events"] == result["accepted"] + result["duplicates"]
