"""Applying stored webhooks to the domain, once each, in a safe order.

A committed event kicks ``apply_pending`` (unless a run is bound to take it:
``webhooks.kick_apply_for``), which applies the pending events, earliest occurrence
first, until none is left. Every event type has a handler that calls the order services
and flows. A handler that finds an earlier event missing (a delivery before its
shipment) raises ``Defer``: the event waits and is retried after the next event it may
depend on (of the same order, tracking number or SKU), or by the periodic sweep; past
``DEFER_LIMIT`` it fails into an integration exception. A handler that finds its effect
already in place (a duplicate, a superseded stock figure) returns ``SKIPPED``.
"""

import logging
import time
from collections.abc import Callable, Collection, Iterable
from datetime import timedelta
from typing import Any

from django.db import OperationalError, transaction
from django.db.models import Q, Sum

from exceptions import services as exception_services
from flows import fulfilment as flows
from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.errors import ApplicationError, ConcurrentUpdate, InvalidInput
from integrations.models import InboundEvent
from integrations.webhooks import APPLY_LINGER, event_data, kick_apply
from orders import services as order_services
from orders.models import PRE_RELEASE, Allocation, Order, Shipment, Status

log = logging.getLogger(__name__)

DEFER_LIMIT = timedelta(minutes=15)
# A pending event this old has lost its kick (the broker was down at intake): the sweep applies it.
PENDING_GRACE = timedelta(minutes=2)
APPLY_BATCH = 100
APPLY_POLL_SECONDS = 0.1
# A run stops taking events after this long, well inside the task timeout (Q_CLUSTER).
RUN_BUDGET_SECONDS = 40.0
APPLIED, SKIPPED = InboundEvent.State.APPLIED, InboundEvent.State.SKIPPED
WAITING = (InboundEvent.State.PENDING, InboundEvent.State.DEFERRED)

NOT_RELEASED = {*PRE_RELEASE, Status.ON_HOLD}
NOT_PICKED = NOT_RELEASED | {Status.RELEASED}
NOT_SHIPPED = NOT_PICKED | {Status.PICKING, Status.PACKED}

Data = dict[str, Any]


class Defer(Exception):
    pass


def _order(external_id: str) -> Order:
    order = Order.objects.select_related("customer", "warehouse").filter(external_id=external_id).first()
    if order is None:
        raise Defer(f"Order {external_id} is not known yet.")
    return order


def _inventory_adjusted(event: InboundEvent, data: Data, actor: Actor) -> str:
    try:
        change = order_services.inventory_set_on_hand(
            warehouse_code=data["warehouse"],
            sku=data["sku"],
            on_hand=data["on_hand"],
            as_of=event.occurred_at,
        )
    except order_services.StockBelowReserved as below:
        raise Defer(below.message) from below
    if not change.applied:
        return SKIPPED
    if change.increased_by > 0:
        flows.stock_arrived(product=change.inventory.product, actor=actor)
    return APPLIED


def _pick_completed(event: InboundEvent, data: Data, actor: Actor) -> str:
    order = _order(data["order"])
    if order.status in NOT_RELEASED:
        raise Defer(f"Order {order.external_id} is {order.status}, not released yet.")
    if order.status != Status.RELEASED:
        return _later_pick(order, data)
    flows.pick_completed(
        order=order,
        warehouse_code=data["warehouse"],
        picked={line["sku"]: line["picked"] for line in data["lines"]},
        actor=actor,
        picked_at=event.occurred_at,
    )
    return APPLIED


def _later_pick(order: Order, data: Data) -> str:
    """A pick of an order picked already: the same warehouse again (a resend) or, for an
    order released to several warehouses, another one. The order records one pick, so
    another warehouse's pick in full changes nothing, and its short pick goes to a person
    instead of being lost."""
    picked_here = order.transitions.filter(transition="start_picking", data__warehouse=data["warehouse"])
    reserved = dict(
        Allocation.objects.filter(line__order=order, warehouse__code=data["warehouse"])
        .values_list("line__product__sku")
        .annotate(units=Sum("quantity"))
    )
    short = {
        line["sku"]: reserved[line["sku"]] - line["picked"]
        for line in data["lines"]
        if reserved.get(line["sku"], 0) > line["picked"]
    }
    if picked_here.exists() or not short:
        return SKIPPED
    raise InvalidInput(
        f"Order {order.external_id} is {order.status} after its pick elsewhere; the short pick at "
        f"{data['warehouse']} ({', '.join(f'{sku}: {n} short' for sku, n in sorted(short.items()))}) "
        "was not applied: adjust its reservations and stock by hand."
    )


def _shipment_confirmed(event: InboundEvent, data: Data, actor: Actor) -> str:
    if Shipment.objects.filter(external_id=data["shipment_id"]).exists():
        return SKIPPED
    order = _order(data["order"])
    if order.status in NOT_PICKED:
        raise Defer(f"Order {order.external_id} is {order.status}: its pick is not confirmed yet.")
    order_services.order_record_shipment(
        order=order,
        shipment_id=data["shipment_id"],
        warehouse_code=data["warehouse"],
        carrier_code=data["carrier"],
        tracking=data["tracking"],
        lines=[
            order_services.ShippedLine(sku=line["sku"], quantity=line["quantity"]) for line in data["lines"]
        ],
        shipped_at=event.occurred_at,
        actor=actor,
    )
    return APPLIED


def _delivery_confirmed(event: InboundEvent, data: Data, actor: Actor) -> str:
    shipment = (
        Shipment.objects.select_related("order__customer", "order__warehouse")
        .filter(external_id=data["shipment_id"])
        .first()
    )
    if shipment is None:
        raise Defer(f"Shipment {data['shipment_id']} is not confirmed yet.")
    if shipment.order.external_id != data["order"]:
        raise InvalidInput(
            f"Shipment {shipment.external_id} belongs to order {shipment.order.external_id}, "
            f"not {data['order']}."
        )
    if shipment.delivered_at is not None:
        return SKIPPED
    flows.delivery_confirmed(
        order=shipment.order,
        shipment_id=shipment.external_id,
        delivered_at=data["delivered_at"],
        signed_by=data["signed_by"],
        actor=actor,
    )
    return APPLIED


def _return_initiated(event: InboundEvent, data: Data, actor: Actor) -> str:
    order = _order(data["order"])
    if order.status in NOT_SHIPPED:
        raise Defer(f"Order {order.external_id} is {order.status}: its shipment is not confirmed yet.")
    order_services.order_record_return(
        order=order,
        reference=event.event_id,
        lines={line["sku"]: line["quantity"] for line in data["lines"]},
        reason=data["reason"],
        actor=actor,
    )
    return APPLIED


def _tracking_updated(event: InboundEvent, data: Data, actor: Actor) -> str:
    shipment = (
        Shipment.objects.select_related("order__customer", "order__warehouse")
        .filter(tracking=data["tracking"])
        .first()
    )
    if shipment is None:
        raise Defer(f"No shipment with tracking {data['tracking']} yet.")
    # From now on the event is filed under its order, like the WMS's events.
    event.subject_ref = shipment.order.external_id
    applied = flows.tracking_updated(
        shipment=shipment, status=data["status"], eta=data.get("eta"), as_of=event.occurred_at, actor=actor
    )
    return APPLIED if applied else SKIPPED


HANDLERS: dict[tuple[str, str], Callable[[InboundEvent, Data, Actor], str]] = {
    ("wms", "inventory.adjusted"): _inventory_adjusted,
    ("wms", "pick.completed"): _pick_completed,
    ("wms", "shipment.confirmed"): _shipment_confirmed,
    ("wms", "delivery.confirmed"): _delivery_confirmed,
    ("wms", "return.initiated"): _return_initiated,
    ("carrier", "tracking.updated"): _tracking_updated,
}


def _refs_unblocked_by(event: InboundEvent) -> set[str]:
    """The subjects of events that may have waited for this one: its order, the tracking
    number of a shipment, the SKUs whose stock it moved."""
    refs = {event.subject_ref}
    if event.type == "shipment.confirmed":
        refs.add(event.data["tracking"])
    refs.update(line["sku"] for line in event.data.get("lines", ()))
    return refs


def inbound_event_apply(*, event_pk: int) -> str:
    """Apply one stored event if it is waiting (safe to call any number of times, also at
    once: the event's row is locked); returns its state."""
    state, _ = _apply(event_pk, WAITING)
    return state


def _apply(event_pk: int, states: Collection[str]) -> tuple[str, bool]:
    """Try the event if it is in one of ``states``: the state it ends in, and whether this
    call tried it."""
    with transaction.atomic():
        # The event's row only: a lock on its partner's would hold up the intake of that
        # partner's events (their foreign key) until this apply commits.
        event = (
            InboundEvent.objects.select_for_update(of=("self",)).select_related("partner").get(pk=event_pk)
        )
        if event.state not in states:
            return event.state, False
        actor = Actor.named(event.partner.name)
        event.attempts += 1
        try:
            with transaction.atomic():
                data = event_data(event.partner.name, event.type, event.data)
                event.state = HANDLERS[(event.partner.name, event.type)](event, data, actor)
            event.applied_at = clock.now()
            event.last_error = ""
        except (Defer, ConcurrentUpdate, OperationalError) as waiting:
            # Waiting for an earlier event, or a conflict that a later try will not meet.
            event.last_error = str(waiting)
            event.state = InboundEvent.State.DEFERRED
            if clock.now() - event.received_at > DEFER_LIMIT:
                _fail(event, f"Waited {DEFER_LIMIT} for an earlier event: {waiting}")
        except ApplicationError as exc:
            _fail(event, exc.message)
        event.save(update_fields=["state", "attempts", "applied_at", "last_error", "subject_ref"])
    if event.state == APPLIED:
        retry_deferred(subject_refs=_refs_unblocked_by(event))
    return event.state, True


def _fail(event: InboundEvent, error: str) -> None:
    event.state = InboundEvent.State.FAILED
    event.last_error = error
    order = Order.objects.filter(external_id=event.subject_ref).first() if event.subject_ref else None
    exception_services.exception_raise(
        type_code="integration_sync_failed",
        order=order,
        details={
            "direction": "inbound",
            "partner": event.partner.name,
            "event_id": event.event_id,
            "type": event.type,
            "error": error,
        },
        actor=Actor.named(event.partner.name),
        note=error,
    )


def apply_pending(
    *, budget_seconds: float = RUN_BUDGET_SECONDS, linger_seconds: float = APPLY_LINGER.total_seconds()
) -> int:
    """Apply the pending events, earliest occurrence first, reading again until none is
    left and it has tried none for ``linger_seconds`` (a new event committed meanwhile
    rides on this run: ``webhooks.kick_apply_for``); returns how many it applied.

    Two runs at once apply each event once: the second waits for the event's lock and
    then finds it no longer pending. A run that reaches its budget kicks the next one.
    """
    deadline = time.monotonic() + budget_seconds
    last_try = time.monotonic()
    pending = InboundEvent.objects.filter(state=InboundEvent.State.PENDING).order_by("occurred_at", "id")
    broken: set[int] = set()  # stay pending, for the sweep
    applied = 0
    while True:
        batch = list(pending.exclude(pk__in=broken).values_list("pk", flat=True)[:APPLY_BATCH])
        if not batch:
            if time.monotonic() - last_try >= linger_seconds:
                return applied
            time.sleep(APPLY_POLL_SECONDS)
        for pk in batch:
            if time.monotonic() >= deadline:
                kick_apply()
                return applied
            try:
                state, tried = _apply(pk, [InboundEvent.State.PENDING])
                applied += tried and state == APPLIED
            except Exception:
                log.exception("Applying inbound event %s failed", pk)
                broken.add(pk)
            last_try = time.monotonic()


def retry_deferred(*, subject_refs: Iterable[str] | None = None) -> int:
    """Try waiting events again, earliest occurrence first; returns how many applied.

    With ``subject_refs``: the deferred events about those subjects. Without (the periodic
    sweep): every deferred event, and every pending one whose kick was lost.
    """
    if subject_refs is None:
        stale = clock.now() - PENDING_GRACE
        waiting = InboundEvent.objects.filter(
            Q(state=InboundEvent.State.DEFERRED) | Q(state=InboundEvent.State.PENDING, received_at__lt=stale)
        )
    else:
        waiting = InboundEvent.objects.filter(state=InboundEvent.State.DEFERRED, subject_ref__in=subject_refs)
    applied = 0
    for pk in list(waiting.order_by("occurred_at", "id").values_list("pk", flat=True)):
        try:
            applied += inbound_event_apply(event_pk=pk) == APPLIED
        except Exception:
            # One broken event must not hold up the others; it stays waiting for the next try.
            log.exception("Applying inbound event %s failed", pk)
    return applied
