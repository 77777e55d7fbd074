"""A smoke run of each benchmark job (benchmarks/run.py) at a tiny size: it exits 0, so the
results equal DuckDB's and `--jobs 2` wrote what `--jobs 1` wrote, and it prints its table and
the summary. No timing is asserted: the heavy runs are by hand (benchmarks/README.md)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("duckdb", reason="the benchmarks need DuckDB: pip install -e '.[bench]'")

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--events", "3000", "--subjects", "50", "--days", "3"]
JOBS = {
    "run": TINY,
    "dense": TINY,
    "twa-scaling": ["--twa-sizes", "1500,3000", "--subjects", "50", "--days", "3"],
    "invoice": ["--invoice-sizes", "300x40x3,600x40x12"],
    # The engines beside the reference (byte-identical or exit 1); Spark only where installed.
    "engines": [*TINY, "--dense-events", "3000", "--spark-sizes",
                "3000" if importlib.util.find_spec("pyspark") else "0"],
}


@pytest.mark.parametrize("job", JOBS)
def test_benchmark_job_runs_and_agrees_with_duckdb(job: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--job", job, "--jobs", "2",
         "--workdir", str(tmp_path), *JOBS[job]],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CPU / duckdb 1t" in result.stdout  # the table
    assert "summary (issue 12)" in result.stdout


def test_ingest_benchmark_runs_and_checks_the_stores(tmp_path: Path) -> None:
    """benchmarks/ingest.py at a tiny size on DuckDB (PostgreSQL has its own tests): it exits
    0 only when every event is stored once, a second sending is all duplicates, the export is
    the input and the readings from the store equal run on the file."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ingest.py"), "--events", "2000",
         "--subjects", "40", "--days", "3", "--batch-size", "700", "--postgres", "none",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ingest again into duckdb (all duplicates)" in result.stdout
    assert "run --store duckdb (sum/day)" in result.stdout
