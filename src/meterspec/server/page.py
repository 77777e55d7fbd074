"""The usage page of one subject (MS-HTTP-014): server-rendered HTML, no script, its readings
as an SVG bar chart and a table, the quota status under a policy and the invoices under an
InvoiceRequest given in the query. For people: the binding's clients read /v1/readings.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import escape

import msgspec

from meterspec.codec import decode_event
from meterspec.contracts import (
    AggregationRequest,
    MeteringConfig,
    MeterReading,
    MeterRecord,
    Tumbling,
)
from meterspec.errors import MeterspecError
from meterspec.invoices import InvoiceRequest, build_invoices
from meterspec.metering import Meter
from meterspec.quantity import EXACT, ZERO, format_quantity
from meterspec.quotas import QuotaCheck, QuotaPolicy, decide, period_at
from meterspec.readings import Aggregator
from meterspec.server.registry import Key, tenant_events
from meterspec.store.base import Store
from meterspec.timestamps import NANOS_PER_SECOND, Instant, format_timestamp

WINDOWS = ("hour", "day", "month")
MAX_BARS = 400
WIDTH, HEIGHT = 720, 240


def _floor(moment: datetime, window: str) -> datetime:
    if window == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if window == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next(moment: datetime, window: str) -> datetime:
    if window == "hour":
        return moment + timedelta(hours=1)
    if window == "day":
        return moment + timedelta(days=1)
    return (moment.replace(day=28) + timedelta(days=4)).replace(day=1)


def _moment(instant: Instant) -> datetime:
    return datetime.fromtimestamp(instant // NANOS_PER_SECOND, UTC)


def _text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def readings(store: Store, key: Key, config: MeteringConfig, subject: str, window: str
             ) -> tuple[list[MeterReading], list[tuple[Instant, str, Decimal]]]:
    """The subject's sums per window (UTC, up to MAX_BARS windows ending with its last
    event), and its measurements (instant, unit, quantity) for the quota status."""
    meter = Meter(config)
    measured: list[tuple[Instant, str, Decimal]] = []
    for line in tenant_events(store, key):
        event = decode_event(line)
        if event.subject != subject:
            continue
        try:
            instant, found, _ = meter.measure(event, False)
        except MeterspecError:
            continue
        measured += [(instant, unit, quantity) for unit, quantity, _ in found]
    if not measured:
        return [], measured
    end = _next(_floor(_moment(max(m[0] for m in measured)), window), window)
    start = _floor(_moment(min(m[0] for m in measured)), window)
    moment, bars = end, 0
    while moment > start and bars < MAX_BARS:
        moment = _floor(moment - timedelta(seconds=1), window)
        bars += 1
    aggregator = Aggregator(AggregationRequest(
        "sum", tumbling=Tumbling(window, _text(moment), _text(end))))  # type: ignore[arg-type]
    for instant, unit, quantity in measured:
        aggregator.add(key.workspace_id, key.universe_id, subject, unit, {}, instant, quantity)
    return aggregator.readings(), measured


def _records(meter: Meter, line: bytes, subject: str) -> list[MeterRecord]:
    event = decode_event(line)
    if event.subject != subject:
        return []
    try:
        return meter.records(event)
    except MeterspecError:
        return []


def _chart(found: list[MeterReading]) -> str:
    values = [Decimal(r.measurement.quantity or "0") for r in found]
    top = max([*values, Decimal(1)])
    step = WIDTH / max(len(values), 1)
    bars = []
    for index, (reading, value) in enumerate(zip(found, values, strict=True)):
        height = float(value / top) * (HEIGHT - 20) if value > 0 else 0.0
        bars.append(f'<rect x="{index * step:.2f}" y="{HEIGHT - height:.2f}" '
                    f'width="{max(step - 1, 1):.2f}" height="{height:.2f}" fill="#3f51b5">'
                    f"<title>{escape(reading.window.start)}: {escape(str(value))} "
                    f"{escape(reading.measurement.unit)}</title></rect>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" '
            f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" aria-label="usage per window">'
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#f5f5f5"/>{"".join(bars)}</svg>')


def _quota(policy: QuotaPolicy, key: Key, subject: str,
           measured: list[tuple[Instant, str, Decimal]], now: Instant) -> str:
    start, end = period_at(policy, now)
    rows = []
    for unit in sorted({m[1] for m in measured}):
        usage = ZERO
        for instant, found, quantity in measured:
            if found == unit and start <= instant < end:
                usage = EXACT.add(usage, quantity)
        decision = decide(QuotaCheck(key.workspace_id, key.universe_id, subject, unit,
                                     format_quantity(usage), "0", format_timestamp(now),
                                     policy))
        rows.append(f"<tr><td>{escape(unit)}</td><td>{escape(decision.usage)}</td>"
                    f"<td>{escape(decision.limit)}</td><td>{escape(decision.remaining)}</td>"
                    f"<td class='{escape(decision.decision)}'>{escape(decision.decision)} "
                    f"({escape(decision.reason)})</td><td>{escape(decision.reset_at)}</td></tr>")
    return ("<h2>Quota</h2><table id='quota'><tr><th>unit</th><th>usage</th><th>limit</th>"
            "<th>remaining</th><th>status</th><th>resets</th></tr>" + "".join(rows) +
            "</table>")


def _invoices(request: InvoiceRequest, records: list[MeterRecord], subject: str) -> str:
    """The subject's invoices under an InvoiceRequest (its subscriptions of this subject)."""
    mine = [s for s in request.subscriptions if s.subject == subject]
    found = build_invoices(msgspec.structs.replace(request, subscriptions=mine), records) \
        if mine else []
    rows = "".join(f"<tr><td>{escape(i.period.start)}</td><td>{escape(i.period.end)}</td>"
                   f"<td>{escape(i.currency)}</td><td>{escape(i.total.rounded)}</td>"
                   f"<td>{len(i.lines)}</td></tr>" for i in found)
    return ("<h2>Invoices</h2><table id='invoices'><tr><th>from</th><th>to</th>"
            "<th>currency</th><th>total</th><th>lines</th></tr>" + rows + "</table>")


def render(store: Store, key: Key, config: MeteringConfig, meter_id: str, subject: str,
           window: str, policy: QuotaPolicy | None, now: Instant,
           invoice_request: InvoiceRequest | None = None) -> str:
    """The page's HTML: readings, then the quota status under `policy` and the invoices
    under `invoice_request`, each when given."""
    found, measured = readings(store, key, config, subject, window)
    shown = [r for r in found if r.record_count]
    table = "".join(f"<tr><td>{escape(r.window.start)}</td><td>{escape(r.window.end)}</td>"
                    f"<td>{escape(r.measurement.unit)}</td>"
                    f"<td>{escape(r.measurement.quantity or '')}</td>"
                    f"<td>{r.record_count}</td></tr>" for r in shown)
    body = (_chart(found) + "<h2>Readings</h2><table id='readings'><tr><th>from</th><th>to"
            "</th><th>unit</th><th>sum</th><th>records</th></tr>" + table + "</table>"
            if found else "<p id='empty'>No usage yet.</p>")
    quota = "" if policy is None else _quota(policy, key, subject, measured, now)
    if invoice_request is not None:
        records = [r for line in tenant_events(store, key)
                   for r in _records(Meter(config), line, subject)]
        quota += _invoices(invoice_request, records, subject)
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Usage of "
            f"{escape(subject)}</title><style>body{{font-family:sans-serif;margin:2em}}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
            ".deny{color:#b00020}.allow-with-warning{color:#e65100}</style></head><body>"
            f"<h1>Usage of {escape(subject)}</h1><p>Workspace {escape(key.workspace_id)}, "
            f"universe {escape(key.universe_id)}, meter {escape(meter_id)}, per {window} "
            f"(UTC).</p>{body}{quota}</body></html>")
