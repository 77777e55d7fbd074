"""Late events after an invoice closed (MS-REC): a closed invoice never changes; the difference
between it and the invoice rebuilt from every record is an adjustment document that refers to
it, and applying the adjustment to the closed invoice gives the rebuilt one exactly.

    closed = build(records known at closing)      rebuilt = build(every record now)
    adjustment = reconcile(closed, rebuilt)        apply_adjustment(closed, adjustment) == rebuilt
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from meterspec.contracts import Window
from meterspec.errors import MeterspecError, Problem
from meterspec.ids import digest_id
from meterspec.invoices import (
    Invoice,
    InvoiceLine,
    InvoiceRequest,
    PlanRef,
    invoice_problems,
    invoice_value_problems,
    line_problems,
    with_totals,
)
from meterspec.money import Amount, format_money
from meterspec.quantity import EXACT
from meterspec.subscriptions import billed_span
from meterspec.timestamps import parse_timestamp

__all__ = ["Adjustment", "AdjustmentLine", "apply_adjustment", "rebuild_request",
           "rebuild_requests", "reconcile"]


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True,
            kw_only=True):
    pass


class AdjustmentLine(_Wire, frozen=True, kw_only=True):
    """One changed line (MS-REC-003): the line as closed, the line as rebuilt, and the signed
    differences of the billable quantity and of the amount, precise and rounded."""

    charge_id: str = msgspec.field(name="chargeID")
    """Wire `chargeID`: the charge whose line changed."""
    before: InvoiceLine
    """The closed invoice's line, with its audit trail."""
    after: InvoiceLine
    """The rebuilt invoice's line, with its audit trail."""
    billable_quantity: str | None = msgspec.field(default=None, name="billableQuantity")
    """Wire `billableQuantity`: after minus before, present when both lines have one
    (MS-REC-003)."""
    amount: Amount
    """The signed difference: precise minus precise, rounded minus rounded (MS-REC-004)."""


class Adjustment(_Wire, frozen=True):
    """The delta document for one closed invoice (MS-REC-002)."""

    id: str
    """`adj_` + digest of the invoice id and the two revisions (MS-REC-002)."""
    invoice_id: str = msgspec.field(name="invoiceID")
    """Wire `invoiceID`: the closed invoice adjusted."""
    from_revision: str = msgspec.field(name="fromRevision")
    """Wire `fromRevision`: the closed invoice's revision."""
    to_revision: str = msgspec.field(name="toRevision")
    """Wire `toRevision`: the rebuilt invoice's revision."""
    workspace_id: str = msgspec.field(name="workspaceID")
    """Wire `workspaceID`: the tenant of the invoice."""
    universe_id: str = msgspec.field(name="universeID")
    """Wire `universeID`: the tenant's universe."""
    subject: str
    """The subject of the invoice."""
    period: Window
    """The invoice's billing period."""
    plan: PlanRef
    """The plan version, the same before and after (MS-REC-001)."""
    currency: str
    """The invoice's currency code."""
    lines: list[AdjustmentLine]
    """One line per changed charge, in plan order (MS-REC-003)."""
    total: Amount
    """The sum of the lines' amounts: closed total plus this is exactly the rebuilt total."""


def _difference(after: str | None, before: str | None) -> str | None:
    if after is None or before is None:
        return None
    return format_money(EXACT.subtract(Decimal(after), Decimal(before)))


def _delta(after: Amount, before: Amount) -> Amount:
    """MS-REC-004: both parts are exact differences; the rounded one is the difference of two
    rounded amounts, so it is itself in minor units and closed + delta = rebuilt."""
    return Amount(_difference(after.precise, before.precise) or "0",
                  _difference(after.rounded, before.rounded) or "0")


def _mismatch(path: str, message: str, requirement: str) -> MeterspecError:
    return MeterspecError.single("invoice-mismatch", path, message, requirement)


LineKey = tuple[str, Window | None, PlanRef | None]
"""What pairs a closed line with its rebuilt one: (chargeID, servicePeriod, plan)."""


def line_key(line: InvoiceLine) -> LineKey:
    """What names a line within its invoice: its charge, and on a segmented period its window
    and plan (MS-PRO-009)."""
    return line.rated.charge_id, line.service_period, line.plan


def rebuild_request(request: InvoiceRequest, closed: Invoice) -> InvoiceRequest:
    """MS-REC-001: the request that rebuilds a closed invoice: its subject's subscription
    alone, billed for the one period that starts where the closed invoice's starts."""
    return rebuild_requests(request, [closed])[0][0]


def rebuild_requests(request: InvoiceRequest, closed: list[Invoice],
                     ) -> list[tuple[InvoiceRequest, list[Invoice]]]:
    """rebuild_request for many closed invoices at once: one request per distinct period start,
    billing the subjects whose closed invoice starts there (each subject's period holding its
    own start is its closed period), with the closed invoices in the request's billing order."""
    by_subject = {s.subject: s for s in request.subscriptions}
    groups: dict[str, list[Invoice]] = {}
    billed: set[tuple[str, str]] = set()
    for index, invoice in enumerate(closed):
        if (request.workspace_id, request.universe_id) != (
                invoice.workspace_id, invoice.universe_id) or invoice.subject not in by_subject:
            raise _mismatch(f"/closed/{index}/subject", f"the request has no subscription "
                            f"for {invoice.subject!r} in the closed invoice's workspace and "
                            "universe", "MS-REC-001")
        if (invoice.period.start, invoice.subject) in billed:
            raise _mismatch(f"/closed/{index}", "the same invoice is closed twice",
                            "MS-REC-001")
        low, high = billed_span(by_subject[invoice.subject])
        start, end = (parse_timestamp(invoice.period.start, f"/closed/{index}/period/start"),
                      parse_timestamp(invoice.period.end, f"/closed/{index}/period/end"))
        if (low is not None and end <= low) or (high is not None and high <= start):
            raise _mismatch(f"/closed/{index}/period", "the subscription, as the request "
                            "states it, bills no part of this period", "MS-PRO-009")
        billed.add((invoice.period.start, invoice.subject))
        groups.setdefault(invoice.period.start, []).append(invoice)
    return [(msgspec.structs.replace(
        request, at=start, periods=1,
        subscriptions=[by_subject[invoice.subject] for invoice in invoices]), invoices)
        for start, invoices in groups.items()]


def reconcile(closed: Invoice, rebuilt: Invoice) -> Adjustment | None:
    """The adjustment that turns `closed` into `rebuilt`, or None when they are equal. Both
    must be the same invoice (id) rated with the same plan version in the same currency:
    anything else is not a late event but a different bill (`invoice-mismatch`)."""
    for name, invoice in (("/closed", closed), ("/rebuilt", rebuilt)):
        problems = invoice_problems(invoice)
        if problems:
            raise MeterspecError(Problem(p.code, name + p.path, p.message, p.requirement)
                                 for p in problems)
    if closed.id != rebuilt.id:
        raise _mismatch("/rebuilt/id", "the rebuilt invoice is another subject's or "
                        "period's", "MS-REC-001")
    if (closed.plan, closed.currency) != (rebuilt.plan, rebuilt.currency):
        raise _mismatch("/rebuilt/plan", "a closed period is rebuilt with the plan version "
                        "it was closed with (MS-PRC-003): plan versions are immutable",
                        "MS-REC-001")
    if [line_key(line) for line in closed.lines] != [line_key(line) for line in rebuilt.lines]:
        raise _mismatch("/rebuilt/lines", "the same plan version gives the same lines",
                        "MS-REC-001")
    if closed.revision == rebuilt.revision:
        return None
    lines = [AdjustmentLine(
        charge_id=after.rated.charge_id, before=before, after=after,
        billable_quantity=_difference(after.rated.billable_quantity,
                                      before.rated.billable_quantity),
        amount=_delta(after.rated.amount, before.rated.amount))
        for before, after in zip(closed.lines, rebuilt.lines, strict=True) if before != after]
    return Adjustment(
        id=adjustment_id(closed.id, closed.revision, rebuilt.revision),
        invoice_id=closed.id, from_revision=closed.revision, to_revision=rebuilt.revision,
        workspace_id=closed.workspace_id, universe_id=closed.universe_id,
        subject=closed.subject, period=closed.period, plan=closed.plan,
        currency=closed.currency, lines=lines, total=_delta(rebuilt.total, closed.total))


def apply_adjustment(invoice: Invoice, adjustment: Adjustment) -> Invoice:
    """MS-REC-005: replace each adjusted line, then recompute the totals and the revision.
    The adjustment must have been made from this very revision (`invoice-mismatch`)."""
    if (adjustment.invoice_id, adjustment.from_revision) != (invoice.id, invoice.revision):
        raise _mismatch("/fromRevision", "the adjustment was made from another revision of "
                        "this invoice, or for another invoice", "MS-REC-005")
    replaced = {(line.charge_id, *line_key(line.before)[1:]): line for line in adjustment.lines}
    lines = []
    for index, line in enumerate(invoice.lines):
        change = replaced.pop(line_key(line), None)
        if change is not None and change.before != line:
            raise _mismatch(f"/lines/{index}", "the adjustment's `before` is not this line",
                            "MS-REC-005")
        lines.append(line if change is None else change.after)
    if replaced:
        missing = next(iter(replaced.values())).charge_id
        raise _mismatch("/lines", f"no line for charge {missing!r}", "MS-REC-005")
    result = with_totals(msgspec.structs.replace(invoice, lines=lines))
    if result.revision != adjustment.to_revision:
        raise _mismatch("/toRevision", "applying the adjustment does not give its "
                        "toRevision", "MS-REC-005")
    return result


def adjustment_id(invoice_id: str, from_revision: str, to_revision: str) -> str:
    """MS-REC-002: one adjustment per (invoice, revision it starts from, revision it gives)."""
    return digest_id("adj_", ("meterspec/adjustment/v1", invoice_id, from_revision,
                              to_revision))


def adjustment_value_problems(document: object, reported: set[str]) -> list[Problem]:
    """Timestamps and currencies of a raw adjustment, beyond the schema."""
    return invoice_value_problems(document, reported, (("lines", "*", "before", "rated"),
                                                       ("lines", "*", "after", "rated")))


def adjustment_problems(adjustment: Adjustment) -> list[Problem]:
    """MS-REC-003/004: each line's before and after are consistent lines of the same charge,
    its differences are after minus before, the total is the sum of the line differences,
    and the id is the one the invoice and revisions give."""
    problems: list[Problem] = []
    precise = rounded = Decimal(0)
    for index, line in enumerate(adjustment.lines):
        path = f"/lines/{index}"
        for side in ("before", "after"):
            found = getattr(line, side)
            problems += line_problems(found, adjustment.currency, f"{path}/{side}")
            if found.rated.charge_id != line.charge_id:
                problems.append(Problem("inconsistent-amount", f"{path}/{side}/rated/chargeID",
                                        "before and after are the line's charge", "MS-REC-003"))
        if line_key(line.before)[1:] != line_key(line.after)[1:]:
            problems.append(Problem("inconsistent-amount", f"{path}/after", "before and after "
                                    "are the same segment's line", "MS-PRO-009"))
        expected = _delta(line.after.rated.amount, line.before.rated.amount)
        if line.amount != expected:
            problems.append(Problem("inconsistent-amount", f"{path}/amount",
                                    "the amount is after minus before", "MS-REC-004"))
        billable = _difference(line.after.rated.billable_quantity,
                               line.before.rated.billable_quantity)
        if line.billable_quantity != billable:
            problems.append(Problem("inconsistent-amount", f"{path}/billableQuantity",
                                    "billableQuantity is after minus before", "MS-REC-003"))
        if line.before == line.after:
            problems.append(Problem("inconsistent-amount", path, "an unchanged line is not "
                                    "part of an adjustment", "MS-REC-003"))
        precise = EXACT.add(precise, Decimal(line.amount.precise))
        rounded = EXACT.add(rounded, Decimal(line.amount.rounded))
    if adjustment.total != Amount(format_money(precise), format_money(rounded)):
        problems.append(Problem("inconsistent-amount", "/total", "the total is the sum of the "
                                "lines' differences", "MS-REC-004"))
    if adjustment.id != adjustment_id(adjustment.invoice_id, adjustment.from_revision,
                                      adjustment.to_revision):
        problems.append(Problem("inconsistent-amount", "/id", "the id is not the one the "
                                "invoice and revisions give", "MS-REC-002"))
    return problems
