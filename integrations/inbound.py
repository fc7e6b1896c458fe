"""Applying stored webhooks to the domain, once each, in a safe order.

Every event type has a handler that calls the order services and flows. A handler
that finds an earlier event missing (a delivery before its shipment) raises ``Defer``:
the event waits and is retried after the next event of the same order, or by the
periodic sweep; past ``DEFER_LIMIT`` it fails into an integration exception. A handler
that finds its effect already in place (a duplicate, a superseded stock figure) returns
``SKIPPED``.
"""

from collections.abc import Callable
from datetime import timedelta

from django.db import transaction

from exceptions import services as exception_services
from flows import fulfilment as flows
from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.errors import ApplicationError
from integrations.models import InboundEvent
from orders import services as order_services
from orders.models import Order, Shipment, Status

DEFER_LIMIT = timedelta(minutes=15)
APPLIED, SKIPPED = InboundEvent.State.APPLIED, InboundEvent.State.SKIPPED


class Defer(Exception):
    pass


def _order(external_id: str) -> Order:
    order = Order.objects.select_related("customer", "warehouse").filter(external_id=external_id).first()
    if order is None:
        raise Defer(f"Order {external_id} is not known yet.")
    return order


def _inventory_adjusted(event: InboundEvent, actor: Actor) -> str:
    data = event.data
    change = order_services.inventory_set_on_hand(
        warehouse_code=data["warehouse"], sku=data["sku"], on_hand=data["on_hand"], as_of=event.occurred_at
    )
    if not change.applied:
        return SKIPPED
    if change.increased_by > 0:
        flows.stock_arrived(product=change.inventory.product, actor=actor)
    return APPLIED


def _pick_completed(event: InboundEvent, actor: Actor) -> str:
    order = _order(event.data["order"])
    if order.status in (Status.RECEIVED, Status.CREDIT_CHECK, Status.ALLOCATING, Status.ALLOCATED):
        raise Defer(f"Order {order.external_id} is {order.status}, not yet released.")
    if order.status != Status.RELEASED:
        return SKIPPED
    flows.pick_completed(
        order=order,
        warehouse_code=event.data["warehouse"],
        picked={line["sku"]: line["picked"] for line in event.data["lines"]},
        actor=actor,
    )
    return APPLIED


def _shipment_confirmed(event: InboundEvent, actor: Actor) -> str:
    data = event.data
    if Shipment.objects.filter(external_id=data["shipment_id"]).exists():
        return SKIPPED
    order = _order(data["order"])
    if order.status in (Status.RELEASED, Status.ALLOCATED, Status.AWAITING_RELEASE):
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


def _delivery_confirmed(event: InboundEvent, actor: Actor) -> str:
    data = event.data
    shipment = Shipment.objects.filter(external_id=data["shipment_id"]).first()
    if shipment is None:
        raise Defer(f"Shipment {data['shipment_id']} is not confirmed yet.")
    if shipment.delivered_at is not None:
        return SKIPPED
    flows.delivery_confirmed(
        order=_order(data["order"]),
        shipment_id=data["shipment_id"],
        delivered_at=data["delivered_at"],
        signed_by=data["signed_by"],
        actor=actor,
    )
    return APPLIED


def _return_initiated(event: InboundEvent, actor: Actor) -> str:
    order = _order(event.data["order"])
    order_services.order_record_return(
        order=order,
        reference=event.event_id,
        lines={line["sku"]: line["quantity"] for line in event.data["lines"]},
        reason=event.data["reason"],
        actor=actor,
    )
    return APPLIED


def _tracking_updated(event: InboundEvent, actor: Actor) -> str:
    shipment = Shipment.objects.select_related("order").filter(tracking=event.data["tracking"]).first()
    if shipment is None:
        raise Defer(f"No shipment with tracking {event.data['tracking']} yet.")
    applied = flows.tracking_updated(
        shipment=shipment,
        status=event.data["status"],
        eta=event.data.get("eta"),
        as_of=event.occurred_at,
        actor=actor,
    )
    return APPLIED if applied else SKIPPED


HANDLERS: dict[tuple[str, str], Callable[[InboundEvent, Actor], str]] = {
    ("wms", "inventory.adjusted"): _inventory_adjusted,
    ("wms", "pick.completed"): _pick_completed,
    ("wms", "shipment.confirmed"): _shipment_confirmed,
    ("wms", "delivery.confirmed"): _delivery_confirmed,
    ("wms", "return.initiated"): _return_initiated,
    ("carrier", "tracking.updated"): _tracking_updated,
}


def inbound_event_apply(*, event_pk: int) -> str:
    """Apply one stored event (safe to call any number of times); returns its state."""
    with transaction.atomic():
        event = InboundEvent.objects.select_for_update().select_related("partner").get(pk=event_pk)
        if event.state not in (InboundEvent.State.PENDING, InboundEvent.State.DEFERRED):
            return event.state
        actor = Actor.named(event.partner.name)
        event.attempts += 1
        try:
            with transaction.atomic():
                event.state = HANDLERS[(event.partner.name, event.type)](event, actor)
            event.applied_at = clock.now()
            event.last_error = ""
        except Defer as waiting:
            event.last_error = str(waiting)
            event.state = InboundEvent.State.DEFERRED
            if clock.now() - event.received_at > DEFER_LIMIT:
                _fail(event, f"Waited {DEFER_LIMIT} for an earlier event: {waiting}")
        except ApplicationError as exc:
            _fail(event, exc.message)
        event.save(update_fields=["state", "attempts", "applied_at", "last_error"])
    if event.state == APPLIED and event.subject_ref:
        retry_deferred(subject_ref=event.subject_ref)
    return event.state


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


def retry_deferred(*, subject_ref: str | None = None) -> int:
    """Try the waiting events again, oldest first (of one order, or all)."""
    waiting = InboundEvent.objects.filter(state=InboundEvent.State.DEFERRED)
    if subject_ref is not None:
        waiting = waiting.filter(subject_ref=subject_ref)
    applied = 0
    for pk in waiting.order_by("occurred_at", "id").values_list("pk", flat=True):
        applied += inbound_event_apply(event_pk=pk) == APPLIED
    return applied
