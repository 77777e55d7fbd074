"""Concept pictures computed by the reference, so that they cannot drift (issue 17): written by
scripts/docgen.py beside the seats-twa chart and checked by its --check.

- docs/assets/dst-windows.svg: day windows in New York across the March 2024 DST change, with
  events at their edges counted into the windows meterspec assigns them to.
- docs/assets/tiers.svg: graduated, volume and package charges of docs/data/api-pricing.json,
  rated by meterspec over the same quantities.
- docs/assets/anchor-31.svg: monthly billing periods anchored on the 31st, through February.
- docs/assets/late-adjustment.svg: examples/monthly-invoice's late event becoming an Adjustment
  of the closed invoice.

Each picture's numbers come from meterspec's own functions; the SVG only places them.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from meterspec.contracts import MeterRecord
    from meterspec.invoices import Invoice, InvoiceRequest

DST_SVG = Path("docs/assets/dst-windows.svg")
TIERS_SVG = Path("docs/assets/tiers.svg")
ANCHOR_SVG = Path("docs/assets/anchor-31.svg")
LATE_SVG = Path("docs/assets/late-adjustment.svg")
HOUR = 3_600_000_000_000  # nanoseconds
DAY = 24 * HOUR
INK, MUTED, GRID = "#222222", "#555555", "#e0e0e0"
BLUE, ORANGE, GREEN = "#3f51b5", "#e65100", "#2e7d32"
HALO = 'stroke="#ffffff" stroke-width="4" paint-order="stroke"'


def _n(value: Fraction | int | float | Decimal) -> str:
    """A coordinate with at most two decimals, without trailing zeros."""
    text = f"{float(value):.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" font-family="sans-serif" font-size="12" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        *body, "</svg>"]) + "\n"


def _text(x: object, y: object, text: str, *, fill: str = INK, anchor: str = "start",
          extra: str = "") -> str:
    more = f" {extra}" if extra else ""
    return (f'<text x="{x}" y="{y}" fill="{fill}" text-anchor="{anchor}"{more}>'
            f"{escape(text)}</text>")


# ------------------------------------------------------------------ DST windows

DST_EVENTS = ("2024-03-10T04:59:59Z", "2024-03-10T05:00:00Z", "2024-03-10T07:30:00Z",
              "2024-03-11T03:59:59Z", "2024-03-11T04:00:00Z", "2024-03-11T16:00:00Z")


def dst_svg(root: Path) -> str:
    """Three New York day windows, 24, 23 and 24 hours long, and where each event falls."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from meterspec import aggregate, meter
    from meterspec.codec import decode_config, decode_event, decode_request
    from meterspec.timestamps import parse_timestamp
    from meterspec.windows import tumbling_spans

    del root
    request = decode_request(b'{"aggregation": "count", "tumbling": {"size": "day", '
                             b'"timeZone": "America/New_York", "start": '
                             b'"2024-03-09T05:00:00Z", "end": "2024-03-12T04:00:00Z"}}')
    assert request.tumbling is not None
    spans = tumbling_spans(request.tumbling)
    config = decode_config(b'{"measurements": [{"unit": "events", "quantity": "1"}]}')

    def records(at: str, number: int) -> list[MeterRecord]:
        return meter(decode_event(f'{{"id": "e{number}", "workspaceID": "w", "universeID": '
                                  f'"u", "type": "t", "subject": "s", "time": "{at}"}}'
                                  .encode()), config)

    everything = [r for i, at in enumerate(DST_EVENTS) for r in records(at, i)]
    counts = [r.record_count for r in aggregate(everything, request)]
    # The window meterspec puts each event in: the one whose reading counts it alone.
    homes = [next(index for index, r in enumerate(aggregate(records(at, i), request))
                  if r.record_count == 1) for i, at in enumerate(DST_EVENTS)]
    zone = ZoneInfo("America/New_York")
    width, left, right = 680, 20, 20
    start, end = spans[0][0], spans[-1][1]
    colors = (BLUE, GREEN, BLUE)

    def x(instant: int) -> str:
        return _n(left + Fraction(width - left - right) * Fraction(instant - start, end - start))

    def local(instant: int, seconds: bool = False) -> str:
        moment = datetime.fromtimestamp(instant // 1_000_000_000, UTC).astimezone(zone)
        text = moment.strftime("%b %d %H:%M:%S %Z" if seconds else "%b %d %H:%M %Z")
        return text.replace(" 0", " ")

    def middle(low: int, high: int) -> str:
        return _n((float(x(low)) + float(x(high))) / 2)

    body = [_text(left, 18, "Day windows in America/New_York across the DST change "
                  "(2024-03-10), as meterspec computes them", extra='font-weight="bold"'),
            _text(left, 36, "Each window is [start, end): it holds its start, not its end. "
                  "The day of the change is 23 hours long.", fill=MUTED)]
    bar_top, bar_height = 56, 44
    for index, ((low, high), count) in enumerate(zip(spans, counts, strict=True)):
        color = colors[index]
        body += [f'<rect x="{x(low)}" y="{bar_top}" width="{_n(float(x(high)) - float(x(low)))}" '
                 f'height="{bar_height}" fill="{color}" fill-opacity="0.14" stroke="{color}"/>',
                 _text(middle(low, high), bar_top + 19, f"{local(low)[:6].strip()}: "
                       f"{(high - low) // HOUR} hours", fill=color, anchor="middle",
                       extra='font-weight="bold"'),
                 _text(middle(low, high), bar_top + 36, f"count {count}", fill=color,
                       anchor="middle")]
    for low in [s[0] for s in spans] + [end]:
        body.append(f'<line x1="{x(low)}" x2="{x(low)}" y1="{bar_top - 6}" '
                    f'y2="{bar_top + bar_height + 8}" stroke="{MUTED}" stroke-dasharray="3 3"/>')
    edges = [s[0] for s in spans] + [end]
    for number, instant in enumerate(edges):
        anchor = "start" if number == 0 else "end" if number == len(edges) - 1 else "middle"
        body += [_text(x(instant), bar_top + bar_height + 22, local(instant), anchor=anchor),
                 _text(x(instant), bar_top + bar_height + 37, _utc(instant), fill=MUTED,
                       anchor=anchor)]
    for at in DST_EVENTS:
        instant = parse_timestamp(at)
        body.append(f'<line x1="{x(instant)}" x2="{x(instant)}" y1="{bar_top + bar_height - 9}" '
                    f'y2="{bar_top + bar_height}" stroke="{ORANGE}" stroke-width="2"/>')
    rows = bar_top + bar_height + 64
    body.append(_text(left, rows, "Events (orange marks), and the window meterspec counts "
                      "each in:", fill=MUTED))
    for number, (at, home) in enumerate(zip(DST_EVENTS, homes, strict=True)):
        row = rows + 18 + number * 17
        instant = parse_timestamp(at)
        body += [_text(left + 10, row, at, extra='font-family="monospace"'),
                 _text(left + 200, row, f"= {local(instant, seconds=True)}", fill=MUTED),
                 _text(left + 390, row, f"in the window of {local(spans[home][0])[:6].strip()}",
                       fill=colors[home], extra='font-weight="bold"')]
    return _svg(width, rows + 18 + len(DST_EVENTS) * 17, "Day windows in New York across the "
                "DST change, and the window each event falls in", body)


def _utc(instant: int) -> str:
    from meterspec.timestamps import format_timestamp

    return format_timestamp(instant).replace("T", " ").replace(":00Z", "Z")


# ------------------------------------------------------------------ tiers

def tiers_svg(root: Path) -> str:
    """Amount against quantity for docs/data/api-pricing.json's three charges."""
    from meterspec.codec import decode_plan
    from meterspec.pricing import rate_plan

    plan = decode_plan((root / "docs" / "data" / "api-pricing.json").read_bytes())
    edges = [Decimal(0), Decimal(500), Decimal(1000), Decimal(1500)]
    step = Decimal("0.000001")
    quantities = sorted({Decimal(q) for q in range(0, 2001, 25)}
                        | {e + step for e in edges} | set(edges))
    amounts: dict[str, list[tuple[Decimal, Decimal]]] = {}
    for quantity in quantities:
        for line in rate_plan(plan, {"api_calls": quantity}):
            amounts.setdefault(line.charge_id, []).append(
                (quantity, Decimal(line.amount.precise)))
    width, height, left, right, top, bottom = 680, 400, 56, 120, 90, 90
    top_amount = 175

    def x(q: Decimal) -> str:
        return _n(left + Fraction(width - left - right) * Fraction(q) / 2000)

    def y(a: Decimal) -> str:
        return _n(height - bottom - Fraction(height - top - bottom) * Fraction(a) / top_amount)

    colors = {"graduated": BLUE, "volume": ORANGE, "package": GREEN}
    dashes = {"graduated": ' stroke-dasharray="9 5"'}
    body = [_text(20, 18, "One plan, three charges on the same api_calls "
                  "(docs/data/api-pricing.json), rated by meterspec", extra='font-weight="bold"'),
            _text(20, 36, "graduated: each tier prices its own units, +5 on entering the "
                  "second; volume: the tier", fill=MUTED),
            _text(20, 52, "the whole quantity reaches prices all of it; package: whole "
                  "packs of 500 at 40", fill=MUTED)]
    for tick in range(0, top_amount + 1, 25):
        body += [f'<line x1="{left}" x2="{width - right}" y1="{y(Decimal(tick))}" '
                 f'y2="{y(Decimal(tick))}" stroke="{GRID}"/>',
                 _text(left - 6, _n(float(y(Decimal(tick))) + 4), f"{tick}", fill=MUTED,
                       anchor="end")]
    for tick in range(0, 2001, 250):
        body += [f'<line x1="{x(Decimal(tick))}" x2="{x(Decimal(tick))}" '
                 f'y1="{height - bottom}" y2="{height - bottom + 4}" stroke="{MUTED}"/>',
                 _text(x(Decimal(tick)), height - bottom + 17, f"{tick}", fill=MUTED,
                       anchor="middle")]
    body += [_text(width - right, height - bottom + 34, "quantity (api_calls)", fill=MUTED,
                   anchor="end"),
             _text(left - 6, top - 8, "USD", fill=MUTED, anchor="end"),
             f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" '
             f'y2="{height - bottom}" stroke="{MUTED}"/>']
    order = sorted(amounts, key=lambda c: c != "volume")  # graduated dashed over volume
    label_ys: list[float] = []
    for charge in sorted(amounts, key=lambda c: -amounts[c][-1][1]):
        wanted = float(y(amounts[charge][-1][1])) + 4
        label_ys.append(max(wanted, label_ys[-1] + 15) if label_ys else wanted)
    labels = dict(zip(sorted(amounts, key=lambda c: -amounts[c][-1][1]), label_ys, strict=True))
    for charge in order:
        points = amounts[charge]
        color = colors.get(charge, INK)
        body.append(f'<polyline points="{" ".join(f"{x(q)},{y(a)}" for q, a in points)}" '
                    f'fill="none" stroke="{color}" stroke-width="2.5" '
                    f'stroke-linejoin="round"{dashes.get(charge, "")}/>')
        body.append(_text(_n(float(x(points[-1][0])) + 8), _n(labels[charge]),
                          f"{charge} {points[-1][1].normalize():f}", fill=color,
                          extra='font-weight="bold"'))
    at = {c: dict(p) for c, p in amounts.items()}
    edge, above = edges[2], edges[2] + step

    def money(value: Decimal) -> str:
        return f"{value.quantize(Decimal('0.01')):f}"

    body += [_text(20, height - 30, f"At 1000 units (upTo is inclusive): graduated "
                   f"{money(at['graduated'][edge])}, volume {money(at['volume'][edge])}, "
                   f"package {money(at['package'][edge])}.", fill=INK),
             _text(20, height - 12, f"Just above 1000: graduated "
                   f"{money(at['graduated'][above])}, volume {money(at['volume'][above])} "
                   f"(it drops), package {money(at['package'][above])} (a third pack).",
                   fill=INK)]
    return _svg(width, height, "Graduated, volume and package charges on the same quantities",
                body)


# ------------------------------------------------------------------ billing periods, anchor 31

def anchor_svg(root: Path) -> str:
    """Monthly periods anchored on 31 January 2024, through February (a leap year)."""
    from meterspec.billing_periods import BillingCycle, periods
    from meterspec.timestamps import format_timestamp, parse_timestamp

    del root
    cycle = BillingCycle(anchor_date="2024-01-31")
    spans = periods(cycle, parse_timestamp("2024-06-15T00:00:00Z"), 5)
    width, left, right = 680, 20, 20
    start, end = parse_timestamp("2024-01-28T00:00:00Z"), parse_timestamp("2024-07-03T00:00:00Z")

    def x(instant: int) -> str:
        return _n(left + Fraction(width - left - right) * Fraction(instant - start, end - start))

    def day(instant: int) -> str:
        text = format_timestamp(instant)
        return f"{MONTHS[int(text[5:7]) - 1]} {int(text[8:10])}"

    body = [_text(left, 18, "Monthly billing periods anchored on the 31st (anchorDate "
                  "2024-01-31, UTC), as meterspec computes them", extra='font-weight="bold"'),
            _text(left, 35, "Each period is [start, end). A month without a 31st starts its "
                  "period on its last day; the next starts on the 31st again.", fill=MUTED)]
    axis = 124
    for month in range(2, 8):
        instant = parse_timestamp(f"2024-{month:02d}-01T00:00:00Z")
        body += [f'<line x1="{x(instant)}" x2="{x(instant)}" y1="{axis - 4}" y2="{axis + 4}" '
                 f'stroke="{MUTED}"/>',
                 _text(x(instant), axis + 18, f"{MONTHS[month - 1]} 1", fill=MUTED,
                       anchor="middle")]
    body.append(f'<line x1="{left}" x2="{width - right}" y1="{axis}" y2="{axis}" '
                f'stroke="{MUTED}"/>')
    for index, (low, high) in enumerate(spans):
        color = BLUE if index % 2 == 0 else GREEN
        row, days = 56, (high - low) // DAY
        middle = _n((float(x(low)) + float(x(high))) / 2)
        body += [f'<rect x="{x(low)}" y="{row}" width="{_n(float(x(high)) - float(x(low)))}" '
                 f'height="44" fill="{color}" fill-opacity="0.15" stroke="{color}"/>',
                 _text(middle, row + 18, f"{day(low)} to {day(high)}", fill=color,
                       anchor="middle", extra='font-weight="bold"'),
                 _text(middle, row + 35, f"{days} days", fill=color, anchor="middle"),
                 f'<line x1="{x(low)}" x2="{x(low)}" y1="{row + 44}" y2="{axis}" '
                 f'stroke="{color}" stroke-dasharray="2 3"/>']
    return _svg(width, axis + 30, "Monthly billing periods anchored on the 31st", body)


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# ------------------------------------------------------------------ a late event, an adjustment

def late_svg(root: Path) -> str:
    """examples/monthly-invoice: the closed invoice, the late event, the Adjustment."""
    from meterspec.codec import decode, decode_config, decode_event
    from meterspec.invoices import InvoiceRequest
    from meterspec.metering import meter
    from meterspec.reconcile import apply_adjustment, reconcile
    from meterspec.timestamps import parse_timestamp

    example = root / "examples" / "monthly-invoice"
    config = decode_config((example / "config.json").read_bytes())
    request = decode("invoice-request", (example / "invoice-request.json").read_bytes(),
                     InvoiceRequest, fast=False)

    def records(name: str) -> list[MeterRecord]:
        return [r for line in (example / name).read_bytes().splitlines() if line.strip()
                for r in meter(decode_event(line), config)]

    on_time, late = records("events.ndjson"), records("late-events.ndjson")
    closed = _invoices(request, on_time)
    rebuilt = _invoices(request, on_time + late)
    pairs = [(c, r) for c, r in zip(closed, rebuilt, strict=True) if reconcile(c, r)]
    if len(pairs) != 1:
        raise SystemExit("late-adjustment: the picture draws one adjusted invoice")
    before, after = pairs[0]
    adjustment = reconcile(before, after)
    assert adjustment is not None
    revised = apply_adjustment(before, adjustment)
    subject = before.subject
    period = (parse_timestamp(before.period.start), parse_timestamp(before.period.end))
    mine = [r for r in on_time if r.subject == subject]
    late_mine = [r for r in late if r.subject == subject]
    width, left, right = 680, 20, 20
    low, high = period[0] - 3 * DAY, period[1] + 12 * DAY

    def x(instant: int) -> str:
        return _n(left + Fraction(width - left - right) * Fraction(instant - low, high - low))

    body = [_text(left, 18, f"examples/monthly-invoice: a late event for {subject} becomes an "
                  "Adjustment of the closed invoice", extra='font-weight="bold"'),
            _text(left, 35, "The closed invoice is never rewritten: reconcile rebuilds it with "
                  "every record now known and states the difference.", fill=MUTED)]
    lane = 84
    body += [f'<rect x="{x(period[0])}" y="{lane - 22}" '
             f'width="{_n(float(x(period[1])) - float(x(period[0])))}" height="44" '
             f'fill="{BLUE}" fill-opacity="0.10" stroke="{BLUE}"/>',
             _text(x(period[0]), lane - 28, f"billing period [{_utc(period[0])}, "
                   f"{_utc(period[1])}): the events by their time", fill=BLUE)]
    for record in mine:
        at = parse_timestamp(record.recorded_at)
        if low <= at < high:
            body.append(f'<circle cx="{x(at)}" cy="{lane}" r="5" fill="{BLUE}"/>')
    for record in late_mine:
        at = parse_timestamp(record.recorded_at)
        body += [f'<circle cx="{x(at)}" cy="{lane}" r="6" fill="{ORANGE}"/>',
                 f'<path d="M {x(period[1] + 8 * DAY)} {lane + 52} C {x(period[1])} '
                 f'{lane + 52}, {x(at)} {lane + 40}, {x(at)} {lane + 9}" fill="none" '
                 f'stroke="{ORANGE}" stroke-width="2" marker-end="url(#arrow)"/>',
                 _text(width - right, lane + 56, "the late event arrives after the invoice "
                       "closed", fill=ORANGE, anchor="end", extra=HALO),
                 _text(_n(float(x(at)) - 10), lane + 38, f"late: {_measured(record)}",
                       fill=ORANGE, anchor="end", extra=HALO)]
    boxes = [("Invoice, as closed", f"{before.total.rounded} {before.currency}",
              f"revision {before.revision[:12]}…", BLUE),
             ("Adjustment", f"{_signed(adjustment.total.rounded)} {adjustment.currency}",
              f"{adjustment.from_revision[:10]}… to {adjustment.to_revision[:10]}…", ORANGE),
             ("Invoice, rebuilt", f"{revised.total.rounded} {revised.currency}",
              f"revision {revised.revision[:12]}…", GREEN)]
    box_top, box_width, box_gap = 176, 186, 40
    body.insert(0, '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" '
                'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
                f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{ORANGE}"/></marker>'
                f'<marker id="arrow-ink" viewBox="0 0 10 10" refX="9" refY="5" '
                'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
                f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{MUTED}"/></marker></defs>')
    for index, (title, value, revision, color) in enumerate(boxes):
        bx = left + index * (box_width + box_gap)
        body += [f'<rect x="{bx}" y="{box_top}" width="{box_width}" height="66" rx="4" '
                 f'fill="{color}" fill-opacity="0.12" stroke="{color}"/>',
                 _text(bx + box_width // 2, box_top + 20, title, fill=color, anchor="middle",
                       extra='font-weight="bold"'),
                 _text(bx + box_width // 2, box_top + 39, value, fill=INK, anchor="middle"),
                 _text(bx + box_width // 2, box_top + 57, revision, fill=MUTED,
                       anchor="middle", extra='font-size="11"')]
        if index:
            body.append(f'<line x1="{bx - box_gap + 4}" x2="{bx - 4}" y1="{box_top + 26}" '
                        f'y2="{box_top + 26}" stroke="{MUTED}" stroke-width="2" '
                        'marker-end="url(#arrow-ink)"/>')
    changed = ", ".join(f"{line.charge_id} {_signed(line.amount.rounded)}"
                        for line in adjustment.lines)
    body.append(_text(left, box_top + 90, f"Changed lines: {changed}; "
                      f"{before.total.rounded} + ({_signed(adjustment.total.rounded)}) = "
                      f"{revised.total.rounded}", fill=MUTED))
    return _svg(width, box_top + 102, "A late event becomes an adjustment of a closed invoice",
                body)


def _measured(record: MeterRecord) -> str:
    return f"{record.measurement.quantity} {record.measurement.unit}"


def _signed(amount: str) -> str:
    return amount if amount.startswith("-") else "+" + amount


def _invoices(request: InvoiceRequest, records: list[MeterRecord]) -> list[Invoice]:
    """The request's invoices of these records."""
    from meterspec.invoices import InvoiceBuilder

    builder = InvoiceBuilder(request)
    for record in records:
        builder.add(record)
    return list(builder.iter_invoices())


# ------------------------------------------------------------------ all of them

def outputs(root: Path) -> dict[Path, str]:
    """Each picture's path and its text."""
    return {DST_SVG: dst_svg(root), TIERS_SVG: tiers_svg(root), ANCHOR_SVG: anchor_svg(root),
            LATE_SVG: late_svg(root)}
