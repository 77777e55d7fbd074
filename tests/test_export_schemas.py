"""What `meterspec export stripe|ledger` writes fits schemas/stripe-request.schema.json and
schemas/ledger-row.schema.json (specs/exports.md, MS-EXP-002 to MS-EXP-012), the wire's source
of truth: every line exported for the invoices and adjustments of examples/, checked by
python-jsonschema from the files and by meterspec.schema; the conformance check holds the
export cases' outputs to the same schemas."""

from __future__ import annotations

import copy
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing

from meterspec.codec import STRUCTS, decode, decode_config, decode_event, encode
from meterspec.conformance.check import _check_case, error_codes, requirements
from meterspec.invoices import Invoice, build_invoices
from meterspec.metering import meter
from meterspec.reconcile import Adjustment, rebuild_request, reconcile
from meterspec.schema import schema_problems

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
EXAMPLES = ROOT / "examples"
BILLED = ("monthly-invoice", "plan-change", "billing-account")  # the examples with invoices


def _records(folder: Path, name: str) -> list[Any]:
    config = decode_config((folder / "config.json").read_bytes())
    return [r for line in (folder / name).open("rb") for r in meter(decode_event(line), config)]


@pytest.fixture(scope="module")
def documents() -> list[Invoice | Adjustment]:
    """The closed invoices of every billed example, and the adjustment that the late events of
    examples/monthly-invoice make."""
    found: list[Invoice | Adjustment] = []
    for name in BILLED:
        folder = EXAMPLES / name
        request = decode("invoice-request", (folder / "invoice-request.json").read_bytes(),
                         STRUCTS["invoice-request"], fast=False)
        closed = build_invoices(request, _records(folder, "events.ndjson"))
        found += closed
        if (folder / "late-events.ndjson").exists():
            every = _records(folder, "events.ndjson") + _records(folder, "late-events.ndjson")
            rebuilt = build_invoices(rebuild_request(request, closed[0]), every)[0]
            adjustment = reconcile(closed[0], rebuilt)
            assert adjustment is not None
            found.append(adjustment)
    return found


@pytest.fixture(scope="module")
def exported(documents: list[Invoice | Adjustment],
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    """The stdout lines of each export command over all the documents."""
    folder = tmp_path_factory.mktemp("export")
    invoices = folder / "invoices.ndjson"
    invoices.write_bytes(b"".join(encode(d) + b"\n" for d in documents))
    customers = folder / "customers.json"
    subjects = sorted({d.subject for d in documents})
    customers.write_text(json.dumps({s: f"cus_{n}" for n, s in enumerate(subjects)}))
    stripe = ("export", "stripe", "--invoices", str(invoices), "--customers", str(customers))
    commands = {"invoice-items": stripe, "meter-events": (*stripe, "--objects", "meter-events"),
                "ledger": ("export", "ledger", "--format", "json", "--invoices", str(invoices)),
                "ledger-csv": ("export", "ledger", "--invoices", str(invoices))}
    out: dict[str, list[bytes]] = {}
    for name, argv in commands.items():
        done = subprocess.run([sys.executable, "-m", "meterspec", *argv], capture_output=True,
                              check=False, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        out[name] = done.stdout.splitlines(keepends=name == "ledger-csv")
    return out


def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return loaded


def _validator(name: str) -> jsonschema.Draft202012Validator:
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (doc["$id"], referencing.Resource.from_contents(doc)) for doc in
        (json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")))
    return jsonschema.Draft202012Validator(_schema(name), registry=registry)


@pytest.mark.parametrize(("output", "kind"), [("invoice-items", "stripe-request"),
                                              ("meter-events", "stripe-request"),
                                              ("ledger", "ledger-row")])
def test_every_exported_line_fits_its_schema(exported: dict[str, list[bytes]], output: str,
                                             kind: str) -> None:
    validator = _validator(kind)
    assert exported[output]
    for line in exported[output]:
        document = json.loads(line)
        assert [e.message for e in validator.iter_errors(document)] == [], line
        assert schema_problems(kind, document) == [], line


def test_the_examples_reach_every_shape_the_schemas_allow(
        exported: dict[str, list[bytes]], documents: list[Invoice | Adjustment]) -> None:
    """So the test above checks each branch: invoice items of invoices, of segmented lines and
    of an adjustment; meter events; ledger rows of flat, usage and adjustment lines, one per
    line of every document (MS-EXP-010)."""
    items = [json.loads(line)["body"]["metadata"] for line in exported["invoice-items"]]
    assert {"meterspec_revision", "meterspec_line_plan", "meterspec_adjustment_id"} <= {
        name for metadata in items for name in metadata}
    events = [json.loads(line) for line in exported["meter-events"]]
    assert {e["endpoint"] for e in events} == {"POST /v1/billing/meter_events"}
    rows = [json.loads(line) for line in exported["ledger"]]
    assert len(rows) == sum(len(d.lines) for d in documents)
    assert {r["document_type"] for r in rows} == {"invoice", "adjustment"}
    assert None in {r["unit"] for r in rows} and None in {r["reading_id"] for r in rows}


def test_ledger_columns_are_in_the_schema_order(exported: dict[str, list[bytes]]) -> None:
    """MS-EXP-011/012: the schema's `properties` are the columns in order, the JSON rows'
    members and the CSV header alike."""
    columns = list(_schema("ledger-row")["properties"])
    assert columns == _schema("ledger-row")["required"]
    assert all(list(json.loads(line)) == columns for line in exported["ledger"])
    header = next(csv.reader(io.StringIO(exported["ledger-csv"][0].decode())))
    assert header == columns


def _case(name: str) -> dict[str, Any]:
    path = ROOT / "conformance" / "cases" / "v1" / "exports" / f"{name}.json"
    case = json.loads(path.read_text())["cases"][0]
    assert isinstance(case, dict)
    return copy.deepcopy(case)


@pytest.mark.parametrize(("name", "field", "path", "kind"), [
    ("stripe", "requests", "/body/amount", "stripe-request"),
    ("ledger", "rows", "/amount_minor", "ledger-row")])
def test_the_conformance_check_holds_export_cases_to_the_schemas(
        name: str, field: str, path: str, kind: str) -> None:
    """An expected output whose amount is a string where the schema wants an integer, or a
    number where it wants a string, is a problem of the case, found through the schema."""
    case = _case(name)
    specs = ROOT / "specs"
    defined, codes = requirements(specs), error_codes(specs)
    assert list(_check_case("x", case, defined, codes)) == []
    item = case["output"][0][field][0]
    if kind == "stripe-request":
        item["body"]["amount"] = str(item["body"]["amount"])
    else:
        item["amount_minor"] = int(item["amount_minor"])
    found = list(_check_case("x", case, defined, codes))
    assert found == [f"x: output/0/{field}/0{path}: not a valid {kind}: wrong-type: "
                     + schema_problems(kind, item)[0].message]
