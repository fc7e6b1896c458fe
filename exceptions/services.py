"""Exceptions: raise (a repeat signal updates the open one, never duplicates it), resolve,
clear when the cause goes away, and the stall sweep that gives every stalled order an
owner. The work items themselves are written through ``fulfillment.core.workqueue``."""

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery

from exceptions.models import AUTO_CLEARED, ExceptionType, OrderException, StateDeadline
from fulfillment.core import clock, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.calendars import WorkingTime
from fulfillment.core.errors import InvalidInput, NotFound
from fulfillment.core.models import WorkItem, WorkItemEvent
from orders.models import TERMINAL, Order, Status

STALLED_ORDER = "stalled_order"
# Types whose scope is the short lines: details carry {"shortfall": {sku: units short}}.
SHORTFALL_TYPES = {"inventory_shortfall", "pick_short"}
# Who closes an exception whose cause cleared after a person's action.
SYSTEM = Actor.named("system")

Open = WorkItem.State.OPEN


def exception_type_get(*, code: str) -> ExceptionType:
    ex_type = ExceptionType.objects.select_related("default_queue").filter(code=code).first()
    if ex_type is None:
        raise NotFound(f"There is no exception type '{code}'.")
    return ex_type


def promised_at(order: Order) -> datetime:
    """The end of the promised date in the warehouse's time zone (UTC without one)."""
    try:
        zone = ZoneInfo(order.warehouse.time_zone if order.warehouse_id else "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.combine(order.promised_date, time.max, tzinfo=zone)


def _subject(order: Order, revenue_at_risk: Decimal) -> workqueue.Subject:
    return workqueue.Subject(
        ref=order.external_id,
        customer_code=order.customer.code,
        customer_tier=order.customer.tier,
        warehouse_code=order.warehouse.code if order.warehouse_id else "",
        revenue_at_risk=revenue_at_risk,
        promised_at=promised_at(order),
    )


@dataclass(frozen=True)
class _Signal:
    title: str
    subject: workqueue.Subject


def _signal(ex_type: ExceptionType, order: Order | None, details: dict[str, Any]) -> _Signal:
    """Check the signal and work out what the item shows and how it ranks.

    Revenue at risk is the order value in the exception's scope: the short lines for a
    shortfall (units short times unit price), the order total otherwise.
    """
    if not isinstance(details, dict):
        raise InvalidInput("Exception details must be a mapping.", fields={"details": ["Not a mapping."]})
    if order is None:
        return _Signal(title=ex_type.name, subject=workqueue.Subject())
    title = f"{ex_type.name} on {order.external_id}"
    if ex_type.code not in SHORTFALL_TYPES:
        return _Signal(title=title, subject=_subject(order, order.total))

    shortfall = details.get("shortfall")
    prices = {line.product.sku: line.unit_price for line in order.lines.select_related("product")}
    errors = []
    if not isinstance(shortfall, dict) or not shortfall:
        errors.append("Give the units short per SKU, e.g. {'SKU-1': 2}.")
    else:
        for sku, units in shortfall.items():
            if sku not in prices:
                errors.append(f"SKU '{sku}' is not on order {order.external_id}.")
            elif not isinstance(units, int) or isinstance(units, bool) or units <= 0:
                errors.append(f"Units short of '{sku}' must be a whole number above zero.")
    if errors:
        raise InvalidInput("The shortfall is not valid.", fields={"details": errors})
    revenue = sum((prices[sku] * units for sku, units in shortfall.items()), Decimal(0))
    skus = len(shortfall)
    return _Signal(title=f"{title} ({skus} SKU{'' if skus == 1 else 's'})", subject=_subject(order, revenue))


def _lock_open(*, order: Order, ex_type: ExceptionType) -> OrderException | None:
    """The open exception of this type about the order, locked with its work item."""
    found = (
        OrderException.objects.select_for_update(of=("self", "work_item"))
        .select_related("work_item", "type")
        .filter(order=order, type=ex_type, is_open=True)
        .first()
    )
    if found is not None and found.work_item.state != Open:
        # Its item was resolved through the work queue directly (not exception_resolve):
        # mirror that, so the next signal opens a new exception instead of feeding a closed one.
        found.is_open = False
        found.save(update_fields=["is_open"])
        return None
    return found


def _open(
    *,
    ex_type: ExceptionType,
    order: Order | None,
    details: dict[str, Any],
    signal: _Signal,
    actor: Actor,
    note: str,
) -> OrderException:
    item = workqueue.work_item_open(
        queue=ex_type.default_queue,
        kind=WorkItem.Kind.EXCEPTION,
        type=ex_type.code,
        title=signal.title,
        subject=signal.subject,
        actor=actor,
        severity=ex_type.severity,
        sla_minutes=ex_type.sla_minutes,
        raised_by=actor.user,
        note=note,
    )
    return OrderException.objects.create(
        work_item=item, type=ex_type, order=order, details=details, last_signal_at=item.created_at
    )


def _repeat(
    existing: OrderException, *, details: dict[str, Any], signal: _Signal, actor: Actor, note: str
) -> OrderException:
    existing.occurrences += 1
    existing.details = details
    existing.last_signal_at = clock.now()
    existing.save(update_fields=["occurrences", "details", "last_signal_at"])
    workqueue.work_item_update(
        item=existing.work_item,
        actor=actor,
        note=note or f"Signal {existing.occurrences} about the same problem.",
        subject=signal.subject,
        severity=existing.type.severity,
        title=signal.title,
    )
    return existing


def exception_raise(
    *, type_code: str, order: Order | None, details: dict[str, Any], actor: Actor, note: str = ""
) -> OrderException:
    """Open an exception in its type's queue, or count a repeat signal on the open one.

    At most one exception of a type is open per order (a database constraint). When two
    signals race, the one whose insert hits the constraint retries after the winner has
    committed, and then finds the winner's row and updates it. Exceptions about no order
    (a dead letter) are each their own.
    """
    ex_type = exception_type_get(code=type_code)
    signal = _signal(ex_type, order, details)

    def attempt() -> OrderException:
        with transaction.atomic():
            existing = None if order is None else _lock_open(order=order, ex_type=ex_type)
            if existing is not None:
                return _repeat(existing, details=details, signal=signal, actor=actor, note=note)
            return _open(ex_type=ex_type, order=order, details=details, signal=signal, actor=actor, note=note)

    try:
        return attempt()
    except IntegrityError:
        if order is None:
            raise
        return attempt()


def _lock(exception: OrderException) -> OrderException:
    locked = (
        OrderException.objects.select_for_update(of=("self",))
        .select_related("type", "work_item")
        .filter(pk=exception.pk)
        .first()
    )
    if locked is None:
        raise NotFound(f"Exception {exception.pk} does not exist.")
    return locked


@transaction.atomic
def exception_resolve(
    *, exception: OrderException, reason_code: str, note: str, actor: Actor
) -> OrderException:
    """A person (or a system) closes the exception with one of its type's reason codes.

    The work queue checks that a person holds the item (or is an admin).
    """
    locked = _lock(exception)
    if not locked.is_open:
        raise InvalidInput(f"Exception {locked.pk} is resolved already.")
    locked.work_item = workqueue.work_item_resolve(
        item=locked.work_item,
        reason_code=reason_code,
        note=note,
        actor=actor,
        allowed_codes=locked.type.reason_codes,
    )
    locked.is_open = False
    locked.save(update_fields=["is_open"])
    return locked


@transaction.atomic
def exception_clear(*, order: Order, type_code: str, note: str, actor: Actor) -> OrderException | None:
    """The cause cleared (e.g. stock arrived and re-allocation succeeded): close the open
    exception, if there is one, as resolved ``auto_cleared`` by the system.

    When a person's action cleared it, the system closes it and the note names the person,
    so that nobody needs to hold the item first.
    """
    ex_type = exception_type_get(code=type_code)
    found = _lock_open(order=order, ex_type=ex_type)
    if found is None:
        return None
    closer = actor
    if actor.user is not None:
        closer = SYSTEM
        note = f"{note} (after an action by {actor.label})".strip()
    found.work_item = workqueue.work_item_resolve(
        item=found.work_item, reason_code=AUTO_CLEARED, note=note, actor=closer
    )
    found.is_open = False
    found.save(update_fields=["is_open"])
    return found


# --- the stall sweep -----------------------------------------------------------------------


def _duration(minutes: float) -> str:
    if minutes < 120:
        return f"{int(minutes)} min"
    if minutes < 2 * 24 * 60:
        return f"{int(minutes // 60)} h"
    return f"{int(minutes // (24 * 60))} days"


def _close_ended_stalls(*, ex_type: ExceptionType, now: datetime, actor: Actor) -> None:
    """Close open stalled-order exceptions whose order has changed state since the signal."""
    ended = list(
        OrderException.objects.filter(
            type=ex_type, is_open=True, order__status_changed_at__gte=F("last_signal_at")
        ).values_list("pk", "work_item_id", "order__status")
    )
    if not ended:
        return
    note = "The order moved on."
    WorkItem.objects.filter(pk__in=[item_id for _, item_id, _ in ended]).update(
        state=WorkItem.State.RESOLVED,
        resolved_at=now,
        resolved_by=None,
        resolution_code=AUTO_CLEARED,
        resolution_note=note,
        next_sla_warning_at=None,
    )
    OrderException.objects.filter(pk__in=[pk for pk, _, _ in ended]).update(is_open=False)
    WorkItemEvent.objects.bulk_create(
        WorkItemEvent(
            item_id=item_id,
            action="resolved",
            actor_user=actor.user,
            actor_system=actor.system,
            note=f"{note} It is {Status(status).label.lower()} now.",
            data={"reason_code": AUTO_CLEARED},
            at=now,
        )
        for _, item_id, status in ended
    )


@transaction.atomic
def stall_sweep(*, actor: Actor) -> int:
    """Give every stalled order an owner; returns how many stalled-order exceptions it opened.

    An order is stalled when it has been in a non-terminal state longer than that state's
    deadline and no work item of any kind is open about it. A person who resolved a stall
    while the order stayed put restarts the clock: the order is raised again only after
    another full deadline. Stalls whose order has since changed state close themselves.

    Set-based: a fixed number of queries whatever the number of stalled orders (the work
    items, their history and the exceptions are bulk-inserted).
    """
    # Locking the type row serialises concurrent sweeps: the second sees the first's work.
    ex_type = ExceptionType.objects.select_for_update().filter(code=STALLED_ORDER).first()
    if ex_type is None:
        raise NotFound(f"There is no exception type '{STALLED_ORDER}'.")
    now = clock.now()
    # Items resolved through the work queue directly: mirror them before counting what is open.
    OrderException.objects.filter(type=ex_type, is_open=True).exclude(work_item__state=Open).update(
        is_open=False
    )
    _close_ended_stalls(ex_type=ex_type, now=now, actor=actor)

    deadlines = {
        d.state: d for d in StateDeadline.objects.select_related("queue").exclude(state__in=TERMINAL)
    }
    if not deadlines:
        return 0
    handled_at = (
        OrderException.objects.filter(order=OuterRef("pk"), type=ex_type, is_open=False)
        .exclude(work_item__resolution_code=AUTO_CLEARED)
        .order_by("-work_item__resolved_at")
        .values("work_item__resolved_at")[:1]
    )
    cuts = {state: now - timedelta(minutes=d.max_minutes) for state, d in deadlines.items()}
    overdue = Q()
    for state, cut in cuts.items():
        overdue |= Q(status=state, status_changed_at__lt=cut)
    open_item = WorkItem.objects.filter(subject_ref=OuterRef("external_id"), state=Open)
    candidates = (
        Order.objects.filter(overdue)
        .filter(~Exists(open_item))
        .annotate(stall_handled_at=Subquery(handled_at))
        .select_related("customer", "warehouse")
        .order_by("status_changed_at", "id")
    )
    stalled = [o for o in candidates if o.stall_handled_at is None or o.stall_handled_at < cuts[o.status]]
    if not stalled:
        return 0

    clocks: dict[int, WorkingTime] = {}
    items, details = [], []
    for order in stalled:
        deadline = deadlines[order.status]
        queue = deadline.queue
        if queue.pk not in clocks:
            clocks[queue.pk] = workqueue.working_time(queue)
        subject = _subject(order, order.total)
        state = order.get_status_display().lower()
        item = WorkItem(
            queue=queue,
            kind=WorkItem.Kind.EXCEPTION,
            type=ex_type.code,
            title=f"{ex_type.name} on {order.external_id} "
            f"({state} for {_duration((now - order.status_changed_at).total_seconds() / 60)})",
            subject_ref=subject.ref,
            customer_code=subject.customer_code,
            customer_tier=subject.customer_tier,
            warehouse_code=subject.warehouse_code,
            revenue_at_risk=subject.revenue_at_risk,
            promised_at=subject.promised_at,
            severity=ex_type.severity,
            sla_minutes=ex_type.sla_minutes,
            created_at=now,
        )
        workqueue.rank(item)
        workqueue.schedule_sla(item, clocks[queue.pk])
        items.append(item)
        details.append(
            {
                "state": order.status,
                "since": order.status_changed_at.isoformat(),
                "deadline_minutes": deadline.max_minutes,
            }
        )
    WorkItem.objects.bulk_create(items)
    WorkItemEvent.objects.bulk_create(
        WorkItemEvent(
            item=item,
            action="opened",
            actor_user=actor.user,
            actor_system=actor.system,
            note=f"In {order.get_status_display().lower()} longer than {_duration(d['deadline_minutes'])}.",
            at=now,
        )
        for item, order, d in zip(items, stalled, details, strict=True)
    )
    OrderException.objects.bulk_create(
        OrderException(work_item=item, type=ex_type, order=order, details=d, last_signal_at=now)
        for item, order, d in zip(items, stalled, details, strict=True)
    )
    return len(items)
