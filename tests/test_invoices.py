"""Invoices, billing periods and reconciliation (specs/billing.md: MS-BIL, MS-INV, MS-REC).

Expected numbers come from the hand arithmetic of examples/monthly-invoice/README.md, ids and
digests are recomputed from the MS-ID-001 prose with hashlib (conftest.ms_id), and the laws the
spec states are hypothesis properties: lines sum to the total, record order does not matter,
an adjustment applied to the closed invoice gives the rebuilt one.
"""

from __future__ import annotations

import calendar
import json
import random
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from conftest import ms_id
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_pricing import plans

from meterspec.billing_periods import BillingCycle, period_containing, periods
from meterspec.cli import main
from meterspec.codec import decode, decode_config, decode_event, encode
from meterspec.contracts import Measurement, MeterRecord
from meterspec.errors import MeterspecError
from meterspec.invoices import (
    Invoice,
    InvoiceRequest,
    Subscription,
    UsageRule,
    build_invoices,
    invoice_problems,
)
from meterspec.metering import Meter
from meterspec.projection import Projection, project, projection_problems
from meterspec.reconcile import (
    Adjustment,
    adjustment_problems,
    apply_adjustment,
    rebuild_request,
    reconcile,
)
from meterspec.schema import schema_problems
from meterspec.timestamps import format_timestamp, parse_timestamp

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "monthly-invoice"
Json = dict[str, Any]
Capture = pytest.CaptureFixture[bytes]


# ------------------------------------------------------------------ billing periods


def _local(instant: str, zone: str) -> str:
    return datetime.fromisoformat(instant).astimezone(ZoneInfo(zone)).isoformat()


@pytest.mark.parametrize(("anchor", "zone", "months", "at", "start", "end"), [
    # MS-BIL-002: an anchor on the 31st falls on the last day of shorter months.
    ("2024-01-31", "UTC", 1, "2024-02-15T00:00:00Z", "2024-01-31T00:00:00Z",
     "2024-02-29T00:00:00Z"),
    ("2024-01-31", "UTC", 1, "2024-03-01T00:00:00Z", "2024-02-29T00:00:00Z",
     "2024-03-31T00:00:00Z"),
    ("2024-01-31", "UTC", 1, "2023-02-28T00:00:00Z", "2023-02-28T00:00:00Z",
     "2023-03-31T00:00:00Z"),
    ("2024-01-31", "UTC", 1, "2024-04-30T00:00:00Z", "2024-04-30T00:00:00Z",
     "2024-05-31T00:00:00Z"),
    # MS-BIL-003: local midnight in the subject's zone; New York is UTC-5 in winter, -4 in summer.
    ("2024-01-31", "America/New_York", 1, "2024-03-31T03:59:59Z", "2024-02-29T05:00:00Z",
     "2024-03-31T04:00:00Z"),
    # The anchor date itself is a period start; instants before it are billed too.
    ("2024-05-15", "Asia/Kolkata", 1, "2024-05-14T18:30:00Z", "2024-05-14T18:30:00Z",
     "2024-06-14T18:30:00Z"),
    ("2024-05-15", "Asia/Kolkata", 1, "2024-05-14T18:29:59Z", "2024-04-14T18:30:00Z",
     "2024-05-14T18:30:00Z"),
    # Quarterly from mid-January.
    ("2024-01-15", "UTC", 3, "2024-05-01T00:00:00Z", "2024-04-15T00:00:00Z",
     "2024-07-15T00:00:00Z"),
    ("2024-01-15", "UTC", 3, "2024-01-14T00:00:00Z", "2023-10-15T00:00:00Z",
     "2024-01-15T00:00:00Z"),
    # Sao Paulo skipped midnight on 2018-11-04 (00:00 -> 01:00): that period starts at the jump.
    ("2018-01-04", "America/Sao_Paulo", 1, "2018-11-10T00:00:00Z", "2018-11-04T03:00:00Z",
     "2018-12-04T02:00:00Z"),
])
def test_billing_period_holding_an_instant(anchor: str, zone: str, months: int, at: str,
                                           start: str, end: str) -> None:
    cycle = BillingCycle(anchor_date=anchor, time_zone=zone, interval_months=months)
    found = period_containing(cycle, parse_timestamp(at))
    assert tuple(map(format_timestamp, found)) == (start, end)


@pytest.mark.parametrize(("cycle", "code", "path"), [
    (BillingCycle(anchor_date="2024-02-30"), "invalid-value", "/anchorDate"),
    (BillingCycle(anchor_date="24-01-01"), "invalid-value", "/anchorDate"),
    (BillingCycle(anchor_date="2024-01-01", time_zone="Mars/Base"), "invalid-time-zone",
     "/timeZone"),
    (BillingCycle(anchor_date="2024-01-01", interval_months=0), "out-of-range",
     "/intervalMonths"),
])
def test_a_bad_cycle_is_an_error_not_a_guess(cycle: BillingCycle, code: str, path: str) -> None:
    """MS-BIL-001: a date that exists, a known zone, 1 to 12 months."""
    with pytest.raises(MeterspecError) as caught:
        period_containing(cycle, 0)
    assert [(p.code, p.path) for p in caught.value.problems] == [(code, path)]


def test_a_period_outside_the_supported_years_is_reported() -> None:
    cycle = BillingCycle(anchor_date="2024-01-01", interval_months=12)
    with pytest.raises(MeterspecError) as caught:
        period_containing(cycle, parse_timestamp("9999-06-01T00:00:00Z"), "/at")
    assert caught.value.code == "timestamp-out-of-range"


ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe",
         "America/Sao_Paulo", "Pacific/Apia"]


@settings(max_examples=200, deadline=None)
@given(anchor=st.dates(min_value=datetime(1990, 1, 1).date(),
                       max_value=datetime(2030, 12, 31).date()),
       zone=st.sampled_from(ZONES), months=st.integers(1, 12),
       at=st.integers(631_152_000, 1_924_992_000), count=st.integers(1, 4))
def test_periods_tile_time_and_start_on_the_anchor_day(anchor: Any, zone: str, months: int,
                                                       at: int, count: int) -> None:
    """MS-BIL-002/004: consecutive, contiguous periods hold the instant; each starts on the
    anchor's day of its month (or that month's last day) at the first local instant of it."""
    cycle = BillingCycle(anchor_date=anchor.isoformat(), time_zone=zone, interval_months=months)
    instant = at * 1_000_000_000
    spans = periods(cycle, instant, count)
    assert len(spans) == count
    assert spans[-1][0] <= instant < spans[-1][1]
    for (_, end), (start, _) in pairwise(spans):
        assert end == start
    tz = ZoneInfo(zone)
    for start, _ in spans:
        local = datetime.fromtimestamp(start / 1_000_000_000, UTC).astimezone(tz)
        last = calendar.monthrange(local.year, local.month)[1]
        months_apart = (local.year - anchor.year) * 12 + local.month - anchor.month
        before = datetime.fromtimestamp(start / 1_000_000_000 - 1, UTC).astimezone(tz)
        assert months_apart % months == 0
        # The local day starts here: either the clock shows midnight, or it jumped past it.
        assert local.day == min(anchor.day, last)
        assert (local.hour, local.minute) == (0, 0) or before.day != local.day


# ------------------------------------------------------------------ the worked example


def _cli(capsysbinary: Capture, *argv: str, status: int = 0) -> tuple[bytes, bytes]:
    assert main(list(argv)) == status
    out, err = capsysbinary.readouterr()
    return out, err


def _ndjson(data: bytes) -> list[Json]:
    return [json.loads(line) for line in data.splitlines()]


def _records(capsysbinary: Capture, tmp: Path, *events: str) -> tuple[Path, list[Json]]:
    source = tmp / "events.ndjson"
    source.write_bytes(b"".join((EXAMPLE / name).read_bytes() for name in events))
    out, _ = _cli(capsysbinary, "meter", "--config", str(EXAMPLE / "config.json"), str(source))
    path = tmp / "records.ndjson"
    path.write_bytes(out)
    return path, _ndjson(out)


def _record_ids(records: list[Json], events: list[str], unit: str) -> list[str]:
    return [r["id"] for r in records
            if r["sourceEventID"] in events and r["measurement"]["unit"] == unit]


def _check_line(line: Json, expected: Json, records: list[Json]) -> None:
    rated = line["rated"]
    for name in ("quantity", "billableQuantity", "amount"):
        assert rated.get(name) == expected.get(name), (rated["chargeID"], name)
    usage = line.get("usage")
    if "recordEvents" not in expected:
        assert usage is None
        return
    assert usage is not None
    ids = _record_ids(records, expected["recordEvents"], rated["unit"])
    assert usage["recordCount"] == len(ids)
    assert usage["recordsDigest"] == ms_id("rds_", ["meterspec/records/v1", *sorted(ids)])
    carried = _record_ids(records, expected.get("carriedInEvents", []), rated["unit"])
    assert usage.get("carriedIn") == (sorted(carried) or None)


def test_the_example_invoices_match_the_hand_arithmetic(capsysbinary: Capture,
                                                        tmp_path: Path) -> None:
    records_path, records = _records(capsysbinary, tmp_path, "events.ndjson")
    out, err = _cli(capsysbinary, "invoice", "--request", str(EXAMPLE / "invoice-request.json"),
                    str(records_path))
    assert b"2 invoices, 0 rejected" in err
    invoices = _ndjson(out)
    expected = json.loads((EXAMPLE / "expected-invoices.json").read_text())
    assert [(i["subject"], i["period"]) for i in invoices] == [
        (e["subject"], e["period"]) for e in expected]
    for invoice, wanted in zip(invoices, expected, strict=True):
        assert invoice["id"] == ms_id("inv_", [
            "meterspec/invoice/v1", "acme-prod", "production", wanted["subject"],
            wanted["period"]["start"], wanted["period"]["end"]])
        assert invoice["total"] == invoice["subtotal"] == wanted["total"]
        assert [line["rated"]["chargeID"] for line in invoice["lines"]] == [
            line["chargeID"] for line in wanted["lines"]]
        for line, wanted_line in zip(invoice["lines"], wanted["lines"], strict=True):
            _check_line(line, wanted_line, records)
        assert schema_problems("invoice", invoice) == []


def test_the_late_event_becomes_an_adjustment_of_the_closed_invoice(capsysbinary: Capture,
                                                                    tmp_path: Path) -> None:
    request = str(EXAMPLE / "invoice-request.json")
    on_time, _ = _records(capsysbinary, tmp_path, "events.ndjson")
    closed_out, _ = _cli(capsysbinary, "invoice", "--request", request, str(on_time))
    closed_path = tmp_path / "closed.ndjson"
    closed_path.write_bytes(closed_out)
    (tmp_path / "late").mkdir()
    everything, records = _records(capsysbinary, tmp_path / "late", "events.ndjson",
                                   "late-events.ndjson")
    out, err = _cli(capsysbinary, "reconcile", "--request", request, "--closed", str(closed_path),
                    str(everything))
    assert b"1 adjustments, 0 rejected" in err
    [adjustment] = _ndjson(out)
    [wanted] = json.loads((EXAMPLE / "expected-adjustments.json").read_text())
    closed = _ndjson(closed_out)[0]
    assert (adjustment["subject"], adjustment["period"]) == (wanted["subject"], wanted["period"])
    assert (adjustment["invoiceID"], adjustment["fromRevision"]) == (closed["id"],
                                                                     closed["revision"])
    assert adjustment["total"] == wanted["total"]
    [line] = adjustment["lines"]
    [wanted_line] = wanted["lines"]
    assert (line["chargeID"], line["billableQuantity"], line["amount"]) == (
        wanted_line["chargeID"], wanted_line["billableQuantity"], wanted_line["amount"])
    assert line["before"] == closed["lines"][2]
    _check_line(line["after"], wanted_line["after"], records)
    # MS-REC-005 on the example: the closed invoice plus the adjustment is the rebuilt one.
    rebuilt_out, _ = _cli(capsysbinary, "invoice", "--request", request, str(everything))
    rebuilt = msgspec.json.decode(rebuilt_out.splitlines()[0], type=Invoice)
    applied = apply_adjustment(msgspec.json.decode(json.dumps(closed), type=Invoice),
                               msgspec.json.decode(out, type=Adjustment))
    assert applied == rebuilt
    assert adjustment["toRevision"] == rebuilt.revision


def test_reconcile_writes_nothing_when_no_late_record_changed_a_bill(capsysbinary: Capture,
                                                                    tmp_path: Path) -> None:
    request = str(EXAMPLE / "invoice-request.json")
    records, _ = _records(capsysbinary, tmp_path, "events.ndjson")
    closed, _ = _cli(capsysbinary, "invoice", "--request", request, str(records))
    (tmp_path / "closed.ndjson").write_bytes(closed)
    out, err = _cli(capsysbinary, "reconcile", "--request", request, "--closed",
                    str(tmp_path / "closed.ndjson"), str(records))
    assert out == b""
    assert b"0 adjustments" in err


def test_bad_records_are_reported_by_line_and_the_good_ones_still_billed(
        capsysbinary: Capture, tmp_path: Path) -> None:
    """MS-INV-008, MS-ERR-004/005 for `meterspec invoice`: exit 1, every bad line reported,
    the good ones billed as if the bad ones were not there."""
    good, records = _records(capsysbinary, tmp_path, "events.ndjson")
    lines = good.read_bytes().splitlines()
    broken = [lines[0], b'{"id": 1}', *lines[1:3], b"not json", *lines[3:]]
    path = tmp_path / "broken.ndjson"
    path.write_bytes(b"\n".join(broken) + b"\n")
    out, err = _cli(capsysbinary, "invoice", "--request", str(EXAMPLE / "invoice-request.json"),
                    str(path), status=1)
    problems = [json.loads(line) for line in err.splitlines() if line.startswith(b"{")]
    assert {p["line"] for p in problems} == {2, 5}
    assert {p["code"] for p in problems if p["line"] == 5} == {"invalid-json"}
    clean, _ = _cli(capsysbinary, "invoice", "--request", str(EXAMPLE / "invoice-request.json"),
                    str(good))
    assert out == clean
    assert len(records) == 7


def test_an_unusable_request_stops_with_exit_2(capsysbinary: Capture, tmp_path: Path) -> None:
    request = json.loads((EXAMPLE / "invoice-request.json").read_text())
    request["subscriptions"][0]["cycle"]["anchorDate"] = "2024-02-30"
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    _, err = _cli(capsysbinary, "invoice", "--request", str(path), str(EXAMPLE / "events.ndjson"),
                  status=2)
    assert b"/subscriptions/0/cycle/anchorDate" in err


def test_periods_bills_a_usage_history(capsysbinary: Capture, tmp_path: Path) -> None:
    """MS-BIL-004: --periods 3 gives three consecutive invoices per subscription."""
    records, _ = _records(capsysbinary, tmp_path, "events.ndjson")
    out, _ = _cli(capsysbinary, "invoice", "--request", str(EXAMPLE / "invoice-request.json"),
                  "--periods", "3", str(records))
    invoices = _ndjson(out)
    acme = [i for i in invoices if i["subject"] == "customer:acme"]
    # Anchor 31 in New York: November has 30 days, so its period starts on the 30th.
    assert [i["period"]["start"] for i in acme] == [
        "2023-11-30T05:00:00Z", "2023-12-31T05:00:00Z", "2024-01-31T05:00:00Z"]
    # Before any usage only the platform fee; then 8 seats for the last 269 of 744 hours:
    # 8 x 269 / 744 = 2.892473 (scale 6), x $10 = $28.92473 -> $28.92, plus $49.
    assert [i["total"]["rounded"] for i in acme] == ["49", "77.92", "170.19"]


def test_revision_and_usage_rules_of_the_example(capsysbinary: Capture, tmp_path: Path) -> None:
    """MS-INV-006 recomputed from the prose's field list; MS-INV-002: each line's aggregation
    is the request's usage rule for its unit."""
    records_path, _ = _records(capsysbinary, tmp_path, "events.ndjson")
    out, _ = _cli(capsysbinary, "invoice", "--request", str(EXAMPLE / "invoice-request.json"),
                  str(records_path))
    rules = json.loads((EXAMPLE / "invoice-request.json").read_text())["usage"]
    for invoice in _ndjson(out):
        fields = ["meterspec/invoice-revision/v1", invoice["id"], invoice["plan"]["id"],
                  str(invoice["plan"]["version"]), invoice["currency"],
                  str(len(invoice["lines"]))]
        for line in invoice["lines"]:
            rated, usage = line["rated"], line.get("usage")
            carried = None if usage is None else usage.get("carriedIn")
            fields += [rated["chargeID"], rated.get("quantity", ""),
                       rated.get("billableQuantity", ""), rated["amount"]["precise"],
                       rated["amount"]["rounded"],
                       "" if usage is None else str(usage["recordCount"]),
                       "" if usage is None else usage["recordsDigest"],
                       "" if carried is None else ms_id("rds_", ["meterspec/records/v1",
                                                                 *sorted(carried)])]
            if usage is not None:
                assert usage["aggregation"] == rules[rated["unit"]]["aggregation"]
        fields += [invoice["subtotal"]["precise"], invoice["subtotal"]["rounded"],
                   invoice["total"]["precise"], invoice["total"]["rounded"]]
        assert invoice["revision"] == ms_id("rev_", fields)


# ------------------------------------------------------------------ laws, by hypothesis

ZONES_FOR_BILLS = ["UTC", "America/New_York", "Australia/Lord_Howe"]
SUBJECTS = ["a", "b"]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[InvoiceRequest, list[MeterRecord]]:
    """A request on one generated plan for two subjects, and records around its periods:
    other subjects, other units and other tenants included, ids unique."""
    plan = msgspec.structs.replace(draw(plans()), effective_from="2023-06-01T00:00:00Z",
                                   effective_to=None)
    units = sorted({c.unit for c in plan.charges if c.unit is not None})
    usage = {unit: draw(st.sampled_from([
        UsageRule(aggregation="sum"), UsageRule(aggregation="count"),
        UsageRule(aggregation="max"), UsageRule(aggregation="latest"),
        UsageRule(aggregation="time-weighted-avg", scale=draw(st.integers(0, 8))),
        UsageRule(aggregation="unique-count", dimension="region")])) for unit in units}
    subscriptions = [Subscription(subject=s, plan_id=plan.id, cycle=BillingCycle(
        anchor_date=f"2024-01-{draw(st.integers(1, 31)):02d}",
        time_zone=draw(st.sampled_from(ZONES_FOR_BILLS)),
        interval_months=draw(st.integers(1, 2)))) for s in SUBJECTS]
    request = InvoiceRequest(workspace_id="ws", universe_id="prod", at="2024-05-20T00:00:00Z",
                             periods=draw(st.integers(1, 2)), plans=[plan], usage=usage,
                             subscriptions=subscriptions)
    count = draw(st.integers(0, 25))
    records = []
    for index in range(count):
        day = draw(st.integers(0, 150))
        second = draw(st.integers(0, 86_399))
        instant = datetime(2024, 1, 1, tzinfo=UTC).timestamp() + day * 86_400 + second
        records.append(MeterRecord(
            id=f"rec_{index}", workspace_id=draw(st.sampled_from(["ws", "ws", "ws", "other"])),
            universe_id="prod", subject=draw(st.sampled_from([*SUBJECTS, "c"])),
            recorded_at=format_timestamp(int(instant) * 1_000_000_000),
            measurement=Measurement(draw(st.sampled_from(["0", "1", "2.5", "7", "-1", "40"])),
                                    draw(st.sampled_from([*units, "other-unit"]))),
            dimensions=draw(st.sampled_from([{}, {"region": "eu"}, {"region": "us"}])),
            source_event_id=f"e{index}"))
    return request, records


@st.composite
def invoice_documents(draw: st.DrawFn) -> Invoice:
    """Invoices as the reference builds them (used by tests/test_schemas.py too)."""
    request, records = draw(scenarios())
    return draw(st.sampled_from(build_invoices(request, records)))


@st.composite
def adjustment_documents(draw: st.DrawFn) -> Adjustment:
    """Adjustments between invoices built from some of the records and from all of them."""
    request, records = draw(scenarios())
    found = []
    for known in ([r for r in records if draw(st.booleans())], []):
        for closed in build_invoices(request, known):
            rebuilt = build_invoices(rebuild_request(request, closed), records)[0]
            adjustment = reconcile(closed, rebuilt)
            if adjustment is not None:
                found.append(adjustment)
        if found:
            break
    assume(found)
    return draw(st.sampled_from(found))


LAWS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _money(text: str) -> Fraction:
    return Fraction(Decimal(text))


@LAWS
@given(scenarios())
def test_invoice_lines_sum_to_the_total(scenario: tuple[InvoiceRequest, list[MeterRecord]],
                                        ) -> None:
    """MS-INV-003 / MS-MNY-007: total = subtotal = the sum of the rounded lines (and the
    precise part the sum of the precise lines), for every generated invoice."""
    request, records = scenario
    invoices = build_invoices(request, records)
    assert len(invoices) == len(request.subscriptions) * request.periods
    for invoice in invoices:
        assert invoice_problems(invoice) == []
        rounded = sum((_money(line.rated.amount.rounded) for line in invoice.lines), Fraction(0))
        precise = sum((_money(line.rated.amount.precise) for line in invoice.lines), Fraction(0))
        assert _money(invoice.total.rounded) == _money(invoice.subtotal.rounded) == rounded
        assert _money(invoice.total.precise) == precise
        assert len(invoice.lines) == len(request.plans[0].charges)


@LAWS
@given(scenarios(), st.randoms(use_true_random=False))
def test_record_order_does_not_change_an_invoice(
        scenario: tuple[InvoiceRequest, list[MeterRecord]], rng: random.Random) -> None:
    """MS-INV-004: same records in any order, byte-identical invoices."""
    request, records = scenario
    shuffled = list(records)
    rng.shuffle(shuffled)
    assert encode(build_invoices(request, shuffled)) == encode(build_invoices(request, records))


@LAWS
@given(scenarios())
def test_each_line_digests_exactly_the_records_inside_its_period(
        scenario: tuple[InvoiceRequest, list[MeterRecord]]) -> None:
    """MS-INV-005, recomputed from the records with the prose's selection and hashlib."""
    request, records = scenario
    for invoice in build_invoices(request, records):
        start, end = (parse_timestamp(invoice.period.start), parse_timestamp(invoice.period.end))
        for line in invoice.lines:
            if line.usage is None:
                assert line.rated.unit is None
                continue
            inside = [r.id for r in records if (r.workspace_id, r.subject,
                                                r.measurement.unit) == (
                "ws", invoice.subject, line.rated.unit)
                and start <= parse_timestamp(r.recorded_at) < end]
            assert line.usage.record_count == len(inside)
            assert line.usage.records_digest == ms_id("rds_", ["meterspec/records/v1",
                                                               *sorted(inside)])


@LAWS
@given(scenarios(), st.data())
def test_an_adjustment_applied_to_the_closed_invoice_is_the_rebuilt_one(
        scenario: tuple[InvoiceRequest, list[MeterRecord]], data: st.DataObject) -> None:
    """MS-REC-001, MS-REC-002, MS-REC-005: whatever records arrive late, the rebuilt invoice
    has the closed one's id, closed + adjustment == rebuilt, the adjustment is a valid
    document (only changed lines, MS-REC-003) and the totals add up exactly (MS-REC-004)."""
    request, records = scenario
    known = [r for r in records if data.draw(st.booleans())]
    closed_invoices = build_invoices(request, known)
    for closed in closed_invoices:
        rebuilt = build_invoices(rebuild_request(request, closed), records)[0]
        assert rebuilt.id == closed.id
        adjustment = reconcile(closed, rebuilt)
        if adjustment is None:
            assert closed == rebuilt
            continue
        assert adjustment_problems(adjustment) == []
        assert schema_problems("adjustment", msgspec.to_builtins(adjustment)) == []
        assert apply_adjustment(closed, adjustment) == rebuilt
        assert (_money(closed.total.rounded) + _money(adjustment.total.rounded)
                == _money(rebuilt.total.rounded))
        assert (_money(closed.total.precise) + _money(adjustment.total.precise)
                == _money(rebuilt.total.precise))
        assert decode("adjustment", encode(adjustment), Adjustment, fast=False) == adjustment


# ------------------------------------------------------------------ refusing the wrong bill


@pytest.fixture(scope="module")
def example() -> tuple[InvoiceRequest, list[MeterRecord]]:
    request = decode("invoice-request", (EXAMPLE / "invoice-request.json").read_bytes(),
                     InvoiceRequest, fast=False)
    meter = Meter(decode_config((EXAMPLE / "config.json").read_bytes()))
    records = [r for line in (EXAMPLE / "events.ndjson").read_bytes().splitlines()
               for r in meter.records(decode_event(line))]
    return request, records


def test_reconcile_refuses_two_different_invoices(
        example: tuple[InvoiceRequest, list[MeterRecord]]) -> None:
    """MS-REC-001 (another subject's bill is no rebuild) and MS-INV-007 (a tampered total)."""
    request, records = example
    acme, globex = build_invoices(request, records)
    with pytest.raises(MeterspecError) as caught:
        reconcile(acme, globex)
    assert (caught.value.code, caught.value.problems[0].path) == ("invoice-mismatch",
                                                                  "/rebuilt/id")
    tampered = msgspec.structs.replace(acme, total=globex.total)
    with pytest.raises(MeterspecError) as caught:
        reconcile(tampered, acme)
    assert caught.value.problems[0].path == "/closed/total"


def test_an_adjustment_applies_only_to_the_revision_it_was_made_from(
        example: tuple[InvoiceRequest, list[MeterRecord]]) -> None:
    request, records = example
    closed = build_invoices(request, records[:2])[0]
    rebuilt = build_invoices(request, records)[0]
    adjustment = reconcile(closed, rebuilt)
    assert adjustment is not None
    with pytest.raises(MeterspecError) as caught:
        apply_adjustment(rebuilt, adjustment)
    assert (caught.value.code, caught.value.problems[0].path) == ("invoice-mismatch",
                                                                  "/fromRevision")
    forged = msgspec.structs.replace(adjustment, lines=[msgspec.structs.replace(
        adjustment.lines[0], before=rebuilt.lines[1])])
    with pytest.raises(MeterspecError) as caught:
        apply_adjustment(closed, forged)
    assert caught.value.code == "invoice-mismatch"


def test_no_effective_plan_is_named_not_guessed(
        example: tuple[InvoiceRequest, list[MeterRecord]]) -> None:
    """MS-INV-001: a period without an effective plan version is never billed with another."""
    request, records = example
    early = msgspec.structs.replace(request, at="2022-06-01T00:00:00Z")
    with pytest.raises(MeterspecError) as caught:
        build_invoices(early, records)
    assert {(p.code, p.path) for p in caught.value.problems} == {
        ("no-effective-plan", "/subscriptions/0/planID"),
        ("no-effective-plan", "/subscriptions/1/planID")}


def test_quota_command_decides_each_check(capsysbinary: Capture, tmp_path: Path) -> None:
    check = json.loads(sorted((ROOT / "schemas/examples/quota-check/valid").glob("*.json"))[0]
                       .read_text())
    path = tmp_path / "checks.ndjson"
    path.write_text(json.dumps(check) + "\n{}\n")
    out, err = _cli(capsysbinary, "quota", str(path), status=1)
    [decision] = _ndjson(out)
    assert decision["decision"] in {"allow", "allow-with-warning", "deny"}
    assert b'"line":2' in err


# ------------------------------------------------------------------ projection (MS-PRJ)


def test_the_example_projected_mid_period(capsysbinary: Capture, tmp_path: Path) -> None:
    """acme at 2024-02-15T05:00Z: 360 of 696 hours gone. Calls so far 6000 -> 6000 x 696 /
    360 = 11600 projected (10600 billable: $20 + $0.60); seats keep their level 12, so the
    average is already the whole period's (10.068966). globex: 341 of 696 hours, 800 calls
    -> 800 x 696 / 341 = 1632.844575 (half even at 6 digits), 632.844575 billable x 0.002 =
    $1.26568915 -> $1.27."""
    records, _ = _records(capsysbinary, tmp_path, "events.ndjson")
    out, err = _cli(capsysbinary, "project", "--request", str(EXAMPLE / "invoice-request.json"),
                    "--as-of", "2024-02-15T05:00:00Z", str(records))
    assert b"2 projections, 0 rejected" in err
    acme, globex = _ndjson(out)
    assert acme["asOf"] == "2024-02-15T05:00:00Z"
    api = acme["lines"][2]
    assert (api["quantity"], api["projectedQuantity"]) == ("6000", "11600")
    assert (api["amount"]["rounded"], api["projectedAmount"]["rounded"]) == ("10", "20.6")
    assert acme["lines"][1]["projectedQuantity"] == acme["lines"][1]["quantity"] == "10.068966"
    assert (acme["total"]["rounded"], acme["projectedTotal"]["rounded"]) == ("159.69", "170.29")
    exact = Fraction(800 * 696, 341) * 10**6
    assert globex["lines"][2]["projectedQuantity"] == str(Decimal(round(exact)) / 10**6)
    assert globex["lines"][2]["projectedQuantity"] == "1632.844575"
    assert globex["projectedTotal"]["rounded"] == "80.27"
    for projection in (acme, globex):
        assert schema_problems("projection", projection) == []


@pytest.mark.parametrize(("aggregation", "so_far", "elapsed", "length", "expected"), [
    ("sum", "1", 1, 3, "3"),
    ("count", "7", 7, 7 * 24, "168"),
    ("sum", "0.00000125", 1, 2, "0.000002"),  # 0.0000025: a tie, to even
    ("sum", "0.00000175", 1, 2, "0.000004"),  # 0.0000035: a tie, to even
    ("sum", "-3", 1, 2, "-6"),
    ("sum", "5", 0, 10, "5"),                 # nothing elapsed: as it is
    ("max", "9", 1, 10, "9"),
    ("latest", "4", 1, 10, "4"),
    ("unique-count", "2", 1, 10, "2"),
    ("time-weighted-avg", "2.5", 1, 10, "2.5"),
])
def test_projected_quantity_per_aggregation(aggregation: str, so_far: str, elapsed: int,
                                            length: int, expected: str) -> None:
    """MS-PRJ-002: counters grow at their rate so far, everything else stays."""
    from meterspec.projection import projected_quantity
    from meterspec.quantity import format_quantity
    assert format_quantity(projected_quantity(aggregation, Decimal(so_far), elapsed,
                                              length)) == expected


@st.composite
def projection_documents(draw: st.DrawFn) -> Projection:
    """Projections as the reference computes them (used by tests/test_schemas.py too)."""
    request, records = draw(scenarios())
    as_of = draw(st.sampled_from(["2024-04-02T00:00:00Z", "2024-05-20T00:00:00Z",
                                  "2024-05-31T23:59:59.999999Z"]))
    found = project(msgspec.structs.replace(request, at=as_of, periods=1), records)
    return draw(st.sampled_from(found))


@LAWS
@given(scenarios(), st.sampled_from(["2024-04-02T00:00:00Z", "2024-05-20T00:00:00Z"]))
def test_a_projection_is_consistent_and_ignores_later_records(
        scenario: tuple[InvoiceRequest, list[MeterRecord]], as_of: str) -> None:
    """MS-PRJ-001/MS-PRJ-003: only records before asOf count (adding later ones changes nothing);
    totals are the sums of their lines; counters never project below zero growth."""
    request, records = scenario
    request = msgspec.structs.replace(request, at=as_of, periods=1)
    before = [r for r in records if parse_timestamp(r.recorded_at) < parse_timestamp(as_of)]
    found = project(request, records)
    assert encode(found) == encode(project(request, before))
    for projection in found:
        assert projection_problems(projection) == []
        for line in projection.lines:
            if line.aggregation in ("sum", "count") and line.quantity is not None:
                assert line.projected_quantity is not None
                assert abs(Decimal(line.projected_quantity)) >= abs(Decimal(line.quantity)) \
                    - Decimal("0.0000005")


def test_invoice_events_carry_the_invoice_they_announce(
        example: tuple[InvoiceRequest, list[MeterRecord]]) -> None:
    """MS-DEV-009/MS-DEV-010 from an Invoice: the event names the invoice's id, revision and
    total, and a new revision (a late record) is a new event."""
    from meterspec.domain_events import billing_period_closed_for, invoice_generated_for
    request, records = example
    closed = build_invoices(request, records[:3])[0]
    rebuilt = build_invoices(request, records)[0]
    generated, final = invoice_generated_for(closed), billing_period_closed_for(closed)
    for event in (generated, final):
        assert (event.invoice_id, event.revision, event.total) == (closed.id, closed.revision,
                                                                   closed.total)
    assert (generated.type, final.type) == ("invoice.generated", "billing.period.closed")
    assert invoice_generated_for(rebuilt).id != generated.id
    assert invoice_generated_for(closed) == generated


@pytest.mark.parametrize(("argv", "message"), [
    (["project", "--as-of", "yesterday"], b"invalid-timestamp at --as-of"),
    (["invoice", "--periods", "0"], b"argument --periods: an integer from 1 to 120"),
    (["invoice", "--periods", "121"], b"argument --periods: an integer from 1 to 120"),
])
def test_bad_command_line_values_name_the_option(capsysbinary: Capture, argv: list[str],
                                                 message: bytes) -> None:
    """A bad --as-of or --periods is the command line's fault, not the request file's."""
    request = str(EXAMPLE / "invoice-request.json")
    full = [argv[0], "--request", request, *argv[1:], str(EXAMPLE / "events.ndjson")]
    try:
        status = main(full)
    except SystemExit as exit_:  # argparse's usage error
        status = int(exit_.code or 0)
    _, err = capsysbinary.readouterr()
    assert status == 2
    assert message in err
    assert b"is not usable" not in err


def test_invoice_can_write_its_invoice_generated_events(capsysbinary: Capture,
                                                        tmp_path: Path) -> None:
    """MS-DEV-009 from the CLI: one invoice.generated per invoice, naming its id, revision
    and total, with the id recomputed from the prose (tag, then every field, MS-ID-001)."""
    records, _ = _records(capsysbinary, tmp_path, "events.ndjson")
    events_path = tmp_path / "events-out.ndjson"
    out, _ = _cli(capsysbinary, "invoice", "--request", str(EXAMPLE / "invoice-request.json"),
                  "--events", str(events_path), str(records))
    invoices, events = _ndjson(out), _ndjson(events_path.read_bytes())
    assert [e["type"] for e in events] == ["invoice.generated"] * len(invoices) == [
        "invoice.generated"] * 2
    for invoice, event in zip(invoices, events, strict=True):
        assert (event["invoiceID"], event["revision"], event["total"]) == (
            invoice["id"], invoice["revision"], invoice["total"])
        assert event["id"] == ms_id("dev_", [
            "meterspec/invoice-generated/v1", invoice["workspaceID"], invoice["universeID"],
            invoice["subject"], invoice["id"], invoice["revision"], invoice["period"]["start"],
            invoice["period"]["end"], invoice["currency"], invoice["total"]["precise"],
            invoice["total"]["rounded"]])
