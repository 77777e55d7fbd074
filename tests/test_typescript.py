"""TypeScript definitions (issue 17): typescript/meterspec.d.ts is what json-schema-to-typescript
makes of schemas/ (typescript/generate.mjs --check), and `tsc` compiles it with the Node adapter
checked against it; a record of the wrong shape in the adapter fails the compile. Skipped, with
the reason, where node or npm is missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TYPES = ROOT / "typescript"
ADAPTER = ROOT / "examples" / "node-adapter" / "adapter.js"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """typescript/node_modules, installed from package-lock.json when absent (npm ci)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the TypeScript definitions (Node 18 or later)")
    modules = TYPES / "node_modules"
    if not (modules / ".bin" / "tsc").exists():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=TYPES,
                              capture_output=True, text=True, check=False, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"npm ci failed (no registry?): {done.stderr[-500:]}")
    return modules


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=600)


def test_the_definitions_are_what_the_schemas_give(node_modules: Path, tmp_path: Path) -> None:
    done = _run("node", "generate.mjs", "--check", cwd=TYPES)
    assert done.returncode == 0, done.stdout + done.stderr
    # The check can fail: a copy whose definitions lost a line is out of date.
    copy = tmp_path / "typescript"
    copy.mkdir()
    (tmp_path / "schemas").symlink_to(ROOT / "schemas")
    (copy / "node_modules").symlink_to(node_modules)
    shutil.copy2(TYPES / "generate.mjs", copy)
    text = (TYPES / "meterspec.d.ts").read_text(encoding="utf-8")
    (copy / "meterspec.d.ts").write_text(text.replace("  sourceEventID: string;\n", "", 1))
    stale = _run("node", "generate.mjs", "--check", cwd=copy)
    assert stale.returncode == 1
    assert "out of date" in stale.stderr


def test_the_contracts_are_declared_with_strings_for_decimals() -> None:
    text = (TYPES / "meterspec.d.ts").read_text(encoding="utf-8")
    for name in ("EventPayload", "MeterRecord", "MeterReading", "MeteringConfig",
                 "AggregationRequest", "Invoice", "InvoiceRequest", "QuotaDecision"):
        assert f"export interface {name} " in text or f"export type {name} = " in text, name
    record = text.split("export interface MeterRecord {", 1)[1].split("\n}\n", 1)[0]
    assert "sourceEventID: string;" in record and "quantity: string;" in text
    assert ": number" not in record  # quantities and instants are strings on the wire


def test_tsc_compiles_them_with_the_node_adapter(node_modules: Path, tmp_path: Path) -> None:
    done = _run(str(node_modules / ".bin" / "tsc"), "-p", ".", cwd=TYPES)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
    # The adapter is really checked: a record with a misspelt member does not compile.
    broken = tmp_path / "examples" / "node-adapter"
    broken.mkdir(parents=True)
    text = ADAPTER.read_text(encoding="utf-8")
    assert text.count("      sourceEventID: event.id,\n") == 1
    (broken / "adapter.js").write_text(text.replace("      sourceEventID: event.id,\n",
                                                    "      sourceEventId: event.id,\n"))
    types = tmp_path / "typescript"
    types.mkdir()
    (types / "node_modules").symlink_to(node_modules)
    for name in ("meterspec.d.ts", "tsconfig.json"):
        shutil.copy2(TYPES / name, types)
    failed = _run(str(node_modules / ".bin" / "tsc"), "-p", ".", cwd=types)
    assert failed.returncode != 0
    assert "sourceEventId" in failed.stdout and "MeterRecord" in failed.stdout
