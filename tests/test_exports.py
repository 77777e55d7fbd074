"""The hand-off to Stripe and to ledgers (specs/exports.md, MS-EXP-001 to MS-EXP-012).

The bodies are held to the field rules of the official `stripe` package's request types
(InvoiceItemCreateParams, MeterEventCreateParams, RequestOptions); the numbers to the
invoices of examples/monthly-invoice, whose README works them by hand."""

from __future__ import annotations

import calendar
import csv
import hashlib
import io
import json
import subprocess
import sys
import types
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import typing_extensions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_invoices import adjustment_documents, invoice_documents

from meterspec import ledger_export, stripe_export
from meterspec.codec import STRUCTS, decode, decode_config, decode_event, encode
from meterspec.errors import MeterspecError
from meterspec.invoices import Invoice, build_invoices
from meterspec.metering import meter
from meterspec.reconcile import Adjustment, rebuild_request, reconcile

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "examples" / "monthly-invoice"
CUSTOMERS = {"customer:acme": "cus_Acme123", "customer:globex": "cus_Globex456"}


def _records(name: str) -> list[Any]:
    config = decode_config((FOLDER / "config.json").read_bytes())
    return [r for line in (FOLDER / name).open("rb") for r in meter(decode_event(line), config)]


@pytest.fixture(scope="module")
def documents() -> tuple[list[Invoice], Adjustment]:
    request = decode("invoice-request", (FOLDER / "invoice-request.json").read_bytes(),
                     STRUCTS["invoice-request"], fast=False)
    closed = build_invoices(request, _records("events.ndjson"))
    every = _records("events.ndjson") + _records("late-events.ndjson")
    rebuilt = build_invoices(rebuild_request(request, closed[0]), every)[0]
    adjustment = reconcile(closed[0], rebuilt)
    assert adjustment is not None
    return closed, adjustment


def _both(invoices: list[Invoice], adjustment: Adjustment) -> list[Invoice | Adjustment]:
    return [*invoices, adjustment]


# ------------------------------------------------------------------ the stripe package's rules

def _resolve(annotation: Any, module: types.ModuleType) -> Any:
    if isinstance(annotation, str):
        return eval(annotation, vars(module))  # the package's own forward references
    if isinstance(annotation, typing.ForwardRef):
        return eval(annotation.__forward_arg__, vars(module))
    return annotation


def _fields(params: type) -> dict[str, tuple[Any, types.ModuleType]]:
    fields: dict[str, tuple[Any, types.ModuleType]] = {}
    for klass in reversed(params.__mro__):
        module = sys.modules[klass.__module__]
        for name, annotation in getattr(klass, "__annotations__", {}).items():
            fields[name] = (annotation, module)
    return fields


def _problems(value: Any, annotation: Any, module: types.ModuleType, path: str) -> list[str]:
    """Where `value` (as a client library would receive it from JSON) breaks `annotation`."""
    annotation = _resolve(annotation, module)
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.NotRequired, typing.Required, typing_extensions.NotRequired,
                  typing_extensions.Required):
        return _problems(value, arguments[0], module, path)
    if origin in (typing.Union, types.UnionType):
        tries = [_problems(value, option, module, path) for option in arguments]
        return [] if any(not found for found in tries) else [f"{path}: no option of "
                                                            f"{annotation} fits {value!r}"]
    if origin is typing.Literal:
        return [] if value in arguments else [f"{path}: {value!r} not in {arguments}"]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        return [p for key, item in value.items()
                for p in (_problems(key, arguments[0], module, f"{path}/{key}")
                          + _problems(item, arguments[1], module, f"{path}/{key}"))]
    if typing_extensions.is_typeddict(annotation):
        return _typed_dict_problems(value, annotation, path)
    if annotation is int:
        return [] if type(value) is int else [f"{path}: {value!r} is not an integer"]
    if annotation is str:
        return [] if isinstance(value, str) else [f"{path}: {value!r} is not a string"]
    if annotation is Decimal:  # a JSON string holding a decimal, as the API takes it
        return [] if isinstance(value, str) else [f"{path}: {value!r} is not a decimal"]
    return [f"{path}: {annotation!r} is not a type a JSON body can fill"]


def _typed_dict_problems(value: Any, params: type, path: str = "") -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: not an object"]
    fields = _fields(params)
    found = [f"{path}/{key}: not a parameter of {params.__name__}" for key in value
             if key not in fields]
    found += [f"{path}/{key}: required by {params.__name__}"
              for key in getattr(params, "__required_keys__", ()) if key not in value]
    for key, item in value.items():
        if key in fields:
            found += _problems(item, *fields[key], f"{path}/{key}")
    return found


def _stripe_types() -> tuple[type, type, type]:
    from stripe._request_options import RequestOptions
    from stripe.params._invoice_item_create_params import InvoiceItemCreateParams
    from stripe.params.billing._meter_event_create_params import MeterEventCreateParams
    return InvoiceItemCreateParams, MeterEventCreateParams, RequestOptions


def _check_against_stripe(request: stripe_export.StripeRequest) -> list[str]:
    items, events, options = _stripe_types()
    params = items if request.endpoint == stripe_export.INVOICE_ITEMS else events
    body = json.loads(msgspec.json.encode(request.body))  # what the sender reads back
    found = _typed_dict_problems(body, params)
    found += _typed_dict_problems({"idempotency_key": request.idempotency_key}, options)
    metadata = body.get("metadata", {})
    # Stripe's metadata limits: 50 keys, names of 40 characters, values of 500.
    if len(metadata) > 50 or any(len(k) > 40 or len(v) > 500 for k, v in metadata.items()):
        found.append("metadata over Stripe's limits")
    if len(request.idempotency_key) > 255:
        found.append("idempotency key over 255 characters")
    if params is events and len(body["event_name"]) > 100:
        found.append("event_name over 100 characters")
    return found


def test_the_checker_has_teeth() -> None:
    """A float amount, a misspelt parameter, a missing event_name and half a period are each
    caught: the checks below are not vacuous."""
    items, events, _ = _stripe_types()
    assert _typed_dict_problems({"amount": 49.0, "currency": "usd"}, items)
    assert _typed_dict_problems({"amount": 4900, "curency": "usd"}, items)
    assert _typed_dict_problems({"payload": {"value": "1"}}, events)
    assert _typed_dict_problems({"period": {"start": 1}}, items)
    assert not _typed_dict_problems({"amount": 4900, "currency": "usd",
                                     "period": {"start": 1, "end": 2}}, items)


@pytest.mark.parametrize("objects", ["invoice-items", "meter-events"])
def test_every_body_fits_the_stripe_package_types(
        documents: tuple[list[Invoice], Adjustment], objects: stripe_export.Objects) -> None:
    invoices, adjustment = documents
    requests = [r for d in _both(invoices, adjustment)
                for r in stripe_export.export_document(d, CUSTOMERS, objects)]
    assert requests
    assert [p for r in requests for p in _check_against_stripe(r)] == []


# ------------------------------------------------------------------ the numbers, by hand

def _unix(text: str) -> int:
    fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
    return calendar.timegm((*(int(x) for x in fields), 0, 0, 0))


def test_invoice_items_carry_the_hand_worked_amounts(
        documents: tuple[list[Invoice], Adjustment]) -> None:
    """MS-EXP-002, MS-EXP-004: examples/monthly-invoice/README.md: acme 49 + 100.69 + 20.50,
    globex 49 + 30 + 0 (no item for 0), the adjustment +0.90; in cents, lowercase currency,
    inclusive seconds."""
    invoices, adjustment = documents
    found = [(r.body["customer"], r.body["amount"], r.body["currency"], r.body["description"],
              r.body["period"]["start"], r.body["period"]["end"])
             for d in _both(invoices, adjustment)
             for r in stripe_export.export_document(d, CUSTOMERS)]
    acme = (_unix("2024-01-31T05:00:00Z"), _unix("2024-02-29T05:00:00Z") - 1)
    globex = (_unix("2024-02-01T00:00:00Z"), _unix("2024-03-01T00:00:00Z") - 1)
    assert found == [
        ("cus_Acme123", 4900, "usd", "platform", *acme),
        ("cus_Acme123", 10069, "usd", "seats: 10.068966 seats", *acme),
        ("cus_Acme123", 2050, "usd", "api: 11500 api_call", *acme),
        ("cus_Globex456", 4900, "usd", "platform", *globex),
        ("cus_Globex456", 3000, "usd", "seats: 3 seats", *globex),
        ("cus_Acme123", 90, "usd", "adjustment: api: 900 api_call", *acme)]


def test_metadata_names_the_bill_and_its_audit_trail(
        documents: tuple[list[Invoice], Adjustment]) -> None:
    invoices, adjustment = documents
    seats = stripe_export.export_document(invoices[0], CUSTOMERS)[1]
    line = invoices[0].lines[1]
    assert line.usage is not None
    metadata = seats.body["metadata"]
    assert metadata["meterspec_key"] == seats.idempotency_key
    assert metadata["meterspec_invoice_id"] == invoices[0].id
    assert metadata["meterspec_revision"] == invoices[0].revision
    assert metadata["meterspec_records_digest"] == line.usage.records_digest
    assert metadata["meterspec_amount_precise"] == "100.68966"
    credit = stripe_export.export_document(adjustment, CUSTOMERS)[0].body["metadata"]
    assert (credit["meterspec_adjustment_id"], credit["meterspec_from_revision"],
            credit["meterspec_to_revision"]) == (adjustment.id, adjustment.from_revision,
                                                 adjustment.to_revision)


def _ms_id(prefix: str, *fields: str) -> str:
    data = b"".join(b"%d:%b" % (len(f.encode()), f.encode()) for f in fields)
    return prefix + hashlib.sha256(data).hexdigest()[:32]


def test_keys_are_the_line_of_the_bill_and_nothing_else(
        documents: tuple[list[Invoice], Adjustment]) -> None:
    """MS-EXP-005: computed here from the spec's formula; a new revision keeps the keys (so a
    second send is refused by Stripe, never charged), an adjustment has its own."""
    invoices, adjustment = documents
    first = stripe_export.export_document(invoices[0], CUSTOMERS)
    assert [r.idempotency_key for r in first] == [
        _ms_id("msx_", "meterspec/stripe/v1", "invoiceitem", invoices[0].id, str(i))
        for i in range(3)]
    revised = msgspec.structs.replace(invoices[0], revision="rev_" + "0" * 32)
    assert [r.idempotency_key for r in stripe_export.export_document(revised, CUSTOMERS)] == [
        r.idempotency_key for r in first]
    events = stripe_export.export_document(invoices[0], CUSTOMERS, "meter-events")
    assert all(r.body["identifier"] == r.idempotency_key for r in events)
    keys = [r.idempotency_key for d in _both(invoices, adjustment)
            for objects in ("invoice-items", "meter-events")
            for r in stripe_export.export_document(d, CUSTOMERS, objects)]
    assert len(keys) == len(set(keys))


def test_meter_events_send_quantities_and_adjustments_send_changes(
        documents: tuple[list[Invoice], Adjustment]) -> None:
    """MS-EXP-006: the line's quantity at the period's last second; the adjustment's change."""
    invoices, adjustment = documents
    found = [(r.body["event_name"], r.body["payload"], r.body["timestamp"])
             for d in _both(invoices[:1], adjustment)
             for r in stripe_export.export_document(d, CUSTOMERS, "meter-events")]
    last = _unix("2024-02-29T05:00:00Z") - 1
    customer = {"stripe_customer_id": "cus_Acme123"}
    assert found == [("seats", {**customer, "value": "10.068966"}, last),
                     ("api_call", {**customer, "value": "11500"}, last),
                     ("api_call", {**customer, "value": "900"}, last)]  # 12400 - 11500


def test_the_same_documents_give_the_same_bytes(
        documents: tuple[list[Invoice], Adjustment]) -> None:
    """MS-EXP-007: a function of the document, the map and `objects`, in line order."""
    invoices, adjustment = documents

    def export() -> bytes:
        return b"".join(msgspec.json.encode(r.to_builtins()) for d in _both(invoices, adjustment)
                        for r in stripe_export.export_document(d, dict(CUSTOMERS)))

    assert export() == export()
    assert [r.body["metadata"]["meterspec_line"] for r in
            stripe_export.export_document(invoices[0], CUSTOMERS)] == ["0", "1", "2"]


# ------------------------------------------------------------------ not exportable (MS-EXP-003)

def _priced(invoice: Invoice, currency: str, rounded: str) -> Invoice:
    line = invoice.lines[0]
    rated = msgspec.structs.replace(line.rated, currency=currency, amount=msgspec.structs.replace(
        line.rated.amount, rounded=rounded))
    return msgspec.structs.replace(invoice, currency=currency, lines=[
        msgspec.structs.replace(line, rated=rated)])


@pytest.mark.parametrize(("currency", "rounded", "amount"), [
    ("JPY", "4900", 4900), ("ISK", "4900", 490000), ("KWD", "49.12", 49120),
    ("EUR", "-0.01", -1), ("HUF", "12.34", 1234), ("BHD", "0.01", 10)])
def test_amounts_in_stripe_minor_units(documents: tuple[list[Invoice], Adjustment],
                                       currency: str, rounded: str, amount: int) -> None:
    request = stripe_export.export_document(_priced(documents[0][0], currency, rounded),
                                            CUSTOMERS)[0]
    assert (request.body["amount"], request.body["currency"]) == (amount, currency.lower())


@pytest.mark.parametrize(("currency", "rounded"), [
    ("MGA", "12.34"), ("KWD", "49.123"), ("IQD", "1.234"), ("USD", "90071992547409.92")])
def test_what_stripe_cannot_hold_is_not_exported(documents: tuple[list[Invoice], Adjustment],
                                                 currency: str, rounded: str) -> None:
    with pytest.raises(MeterspecError) as raised:
        stripe_export.export_document(_priced(documents[0][0], currency, rounded), CUSTOMERS)
    assert [(p.code, p.path) for p in raised.value.problems] == [
        ("not-exportable", "/lines/0/rated/amount/rounded")]


def test_a_subject_without_a_customer_exports_nothing(
        documents: tuple[list[Invoice], Adjustment]) -> None:
    with pytest.raises(MeterspecError) as raised:
        stripe_export.export_document(documents[0][0], {"customer:globex": "cus_1"})
    assert [(p.code, p.path) for p in raised.value.problems] == [("not-exportable", "/subject")]


def test_a_meter_value_over_fifteen_digits_is_not_exported(
        documents: tuple[list[Invoice], Adjustment]) -> None:
    invoice = documents[0][0]
    lines = list(invoice.lines)
    lines[2] = msgspec.structs.replace(lines[2], rated=msgspec.structs.replace(
        lines[2].rated, quantity="1234567890.123456"))
    with pytest.raises(MeterspecError) as raised:
        stripe_export.export_document(msgspec.structs.replace(invoice, lines=lines), CUSTOMERS,
                                      "meter-events")
    assert [(p.code, p.path) for p in raised.value.problems] == [
        ("not-exportable", "/lines/2/rated/quantity")]


def test_customer_map_problems() -> None:
    """MS-EXP-002: a map of non-empty strings, its problems at their subjects."""
    assert [(p.code, p.path) for p in stripe_export.customer_problems(
        {"a/b": "", "c": 1})] == [("empty-string", "/a~1b"), ("wrong-type", "/c")]
    assert [p.code for p in stripe_export.customer_problems([])] == ["wrong-type"]


# ------------------------------------------------------------------ the report (MS-EXP-008/009)

S = 1_000_000_000
T0 = 1_700_000_000 * S


@pytest.mark.parametrize(("attempt", "finished", "status", "state", "next_in"), [
    (1, 2, 200, "done", None), (3, 9, 201, "done", None),
    (1, 2, None, "failed-retryable", 30), (2, 40, 503, "failed-retryable", 60),
    (4, 100, 429, "failed-retryable", 240), (1, 1, 409, "failed-retryable", 30),
    (7, 5000, 500, "failed-retryable", 1920), (8, 9000, 500, "failed-permanent", None),
    (1, 2, 400, "failed-permanent", None), (1, 2, 402, "failed-permanent", None),
    (1, 2, 404, "failed-permanent", None), (1, 2, 301, "failed-permanent", None),
    (1, 86_400 - 31, None, "failed-retryable", 30), (1, 86_400 - 30, None, "failed-permanent",
                                                     None)])
def test_outcomes_by_hand(attempt: int, finished: int, status: int | None, state: str,
                          next_in: int | None) -> None:
    outcome = stripe_export.after_attempt(attempt, T0, T0 + finished * S, status)
    expected = None if next_in is None else T0 + (finished + next_in) * S
    assert (outcome.state, outcome.next_attempt_at) == (state, expected)


@given(st.integers(1, stripe_export.MAX_ATTEMPTS), st.integers(0, 2 * 86_400 * S),
       st.one_of(st.none(), st.integers(100, 599)))
def test_no_retry_outlives_the_key(attempt: int, elapsed: int, status: int | None) -> None:
    """MS-EXP-008: a retry is always later than the attempt and earlier than 24 hours after
    the first send; done exactly for 2xx."""
    outcome = stripe_export.after_attempt(attempt, T0, T0 + elapsed, status)
    assert (outcome.state == "done") == (status is not None and 200 <= status <= 299)
    if outcome.state == "failed-retryable":
        assert outcome.next_attempt_at is not None
        assert T0 + elapsed < outcome.next_attempt_at < T0 + 86_400 * S


def test_the_schedule_is_sixty_three_and_a_half_minutes() -> None:
    """MS-EXP-009: 30 s doubling, seven waits before the eighth attempt."""
    delays = [stripe_export.retry_delay(n) for n in range(1, stripe_export.MAX_ATTEMPTS)]
    assert delays == [30, 60, 120, 240, 480, 960, 1920] and sum(delays) == 3810


# ------------------------------------------------------------------ the ledger (MS-EXP-010..012)

def test_rows_sum_to_the_totals(documents: tuple[list[Invoice], Adjustment]) -> None:
    """MS-EXP-010: an invoice's rows sum to its total; with its adjustment's rows, to the
    rebuilt total (170.19 + 0.90 = 171.09 by hand, examples/monthly-invoice/README.md)."""
    invoices, adjustment = documents
    rows = list(ledger_export.rows([*invoices, adjustment]))
    assert len(rows) == 3 + 3 + 1
    acme = [r for r in rows if r["subject"] == "customer:acme"]
    assert sum(Decimal(str(r["amount_rounded"])) for r in acme[:3]) == Decimal("170.19")
    assert sum(Decimal(str(r["amount_rounded"])) for r in acme) == Decimal("171.09")
    assert [r["amount_minor"] for r in acme] == ["4900", "10069", "2050", "90"]
    assert acme[3]["quantity"] is None and acme[3]["billable_quantity"] == "900"
    assert acme[3]["revision"] == adjustment.to_revision
    assert rows[5]["amount_rounded"] == "0"  # a zero line is still a ledger row
    assert [list(r) for r in rows] == [list(ledger_export.COLUMNS)] * len(rows)


def test_csv_is_rfc_4180_with_the_columns_in_order(
        documents: tuple[list[Invoice], Adjustment]) -> None:
    """MS-EXP-011, MS-EXP-012: the header is the columns in order; CRLF; exact decimals."""
    text = "".join(ledger_export.csv_text(documents[0]))
    assert text.startswith(",".join(ledger_export.COLUMNS) + "\r\n")
    assert text.count("\r\n") == 7 and "\n" not in text.replace("\r\n", "")
    parsed = list(csv.DictReader(io.StringIO(text, newline="")))
    assert parsed[1]["amount_precise"] == "100.68966" and parsed[0]["unit"] == ""


def test_csv_cells_never_run_as_formulas(documents: tuple[list[Invoice], Adjustment]) -> None:
    """MS-EXP-012: a subject `=HYPERLINK(...)` gets its apostrophe; a negative amount keeps
    its sign."""
    invoice = _priced(documents[0][0], "USD", "-1")
    invoice = msgspec.structs.replace(invoice, subject='=HYPERLINK("x","y")')
    record = list(csv.reader(io.StringIO("".join(ledger_export.csv_text([invoice])),
                                         newline="")))[1]
    row = dict(zip(ledger_export.COLUMNS, record, strict=True))
    assert row["subject"] == '\'=HYPERLINK("x","y")' and row["amount_rounded"] == "-1"


# ------------------------------------------------------------------ laws, by hypothesis

LAWS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _minor(document: Invoice | Adjustment, rounded: str) -> int:
    return int(Decimal(rounded).scaleb(stripe_export.stripe_exponent(document.currency)))


@LAWS
@given(st.one_of(invoice_documents(), adjustment_documents()))
def test_items_add_up_to_the_total_and_rows_to_the_lines(document: Invoice | Adjustment) -> None:
    """MS-EXP-004: the invoice items of a document add up to its rounded total in Stripe's
    minor units (only zero lines are left out), each key is its own, and the body fits the
    stripe package's types; MS-EXP-010: one ledger row per line, summing to the total."""
    subject = {document.subject: "cus_1"}
    try:
        requests = stripe_export.export_document(document, subject)
    except MeterspecError as error:  # a currency whose rounding Stripe cannot hold
        assert {p.code for p in error.problems} == {"not-exportable"}
        return
    assert sum(r.body["amount"] for r in requests) == _minor(document, document.total.rounded)
    assert len({r.idempotency_key for r in requests}) == len(requests)
    assert [p for r in requests for p in _check_against_stripe(r)] == []
    rows = list(ledger_export.rows([document]))
    assert len(rows) == len(document.lines)
    assert sum(Decimal(str(r["amount_rounded"])) for r in rows) == Decimal(
        document.total.rounded)


# ------------------------------------------------------------------ the command

def _cli(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "meterspec", *argv], input=stdin,
                          capture_output=True, check=False, cwd=ROOT)


def test_export_reports_bad_lines_and_exports_the_good(
        documents: tuple[list[Invoice], Adjustment], tmp_path: Path) -> None:
    invoices, adjustment = documents
    customers = tmp_path / "customers.json"
    customers.write_text(json.dumps(CUSTOMERS))
    lines = [encode(invoices[0]), b'{"id": 1}', encode(adjustment)]
    done = _cli("export", "stripe", "--invoices", "-", "--customers", str(customers),
                stdin=b"\n".join(lines) + b"\n")
    assert done.returncode == 1
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["body"]["amount"] for o in out] == [4900, 10069, 2050, 90]
    report = [json.loads(line) for line in done.stderr.splitlines()[:-1]]
    assert report and {p["line"] for p in report} == {2}
    ledger = _cli("export", "ledger", "--format", "json", "--invoices", "-",
                  stdin=lines[0] + b"\n")
    assert ledger.returncode == 0
    assert [json.loads(x)["amount_minor"] for x in ledger.stdout.splitlines()] == [
        "4900", "10069", "2050"]


def test_export_stripe_without_customers_is_unusable(tmp_path: Path) -> None:
    done = _cli("export", "stripe", "--invoices", "-", stdin=b"")
    assert done.returncode == 2 and b"--customers" in done.stderr
