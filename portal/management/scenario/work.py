"""Work items for the demo's queues, opened through the real services and flows.

The orders were written in bulk with their history; this step asks for what the flows
would have asked for along the way: finance approvals for credit holds (with the credit
check's exposure figures) and high-value releases, shortfall exceptions for orders
short of stock, a few short picks, carrier problems and integration failures, and two
example escalation rules; then the stall sweep gives every other stalled order an owner.

An item is opened at the time its order entered its state, so SLA clocks and ages are
what they would be. The per-item calls are capped (newest orders first): the stall
sweep, a handful of set-based queries, covers the rest, so that a run of 100,000 orders
stays quick.
"""

import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta

from django.contrib.auth.models import User
from django.db.models import QuerySet

from approvals import services as approval_services
from approvals.models import Kind as ApprovalKind
from exceptions import services as exception_services
from flows import fulfilment as flows
from fulfillment.core import clock, escalation, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.models import EscalationRule, WorkItem
from integrations.inbound import inbound_event_apply
from integrations.models import InboundEvent, Partner
from orders.models import Allocation, Order, OrderLine, OrderTransition, Shipment, Status, Tier

CREDIT_HOLD_REQUESTS = 120
RELEASE_REQUESTS = 80
SHORTFALLS = 150
PICK_SHORTS = 4
DELIVERY_FAILURES = 3
LATE_SHIPMENTS = 5
CARRIER_NEWS = DELIVERY_FAILURES + LATE_SHIPMENTS
FAILED_PICK_EVENTS = 2

PORTAL = Actor.named("portal")
WMS = Actor.named("wms")
CARRIER = Actor.named("carrier")
SCHEDULER = Actor.named("scheduler")
UNKNOWN_SKU = "BRG-99999"  # what a mis-scanned barcode reports


def work_items_open(*, users: dict[str, User]) -> Counter[str]:
    """Open the demo's work items; returns how many of each kind."""
    shipments = _undelivered_shipments(CARRIER_NEWS + 2)
    return Counter(
        {
            "credit-hold approvals": _credit_hold_requests(),
            "release approvals": _release_requests(),
            "shortfall exceptions": _shortfalls(),
            "short picks": _short_picks(),
            "carrier exceptions": _carrier_news(shipments[:CARRIER_NEWS]),
            "failed WMS events": _failed_events(shipments[CARRIER_NEWS:]),
            "escalation rules": _escalation_rules(users),
            "stalled-order exceptions": exception_services.stall_sweep(actor=SCHEDULER),
        }
    )


def _newest(status: str, limit: int) -> QuerySet[Order]:
    return (
        Order.objects.filter(status=status)
        .select_related("customer", "warehouse")
        .order_by("-status_changed_at", "-id")[:limit]
    )


def _credit_hold_requests() -> int:
    """With the figures the failed credit check recorded on the order's timeline."""
    orders = list(_newest(Status.CREDIT_HOLD, CREDIT_HOLD_REQUESTS))
    checks = OrderTransition.objects.filter(order__in=orders, transition="fail_credit_check")
    figures = {order_id: data for order_id, data in checks.order_by("at", "id").values_list("order", "data")}
    for order in orders:
        with clock.frozen(order.status_changed_at):
            approval_services.approval_request(
                order=order, kind=ApprovalKind.CREDIT_HOLD, actor=PORTAL, figures=figures.get(order.pk)
            )
    return len(orders)


def _release_requests() -> int:
    orders = list(_newest(Status.AWAITING_RELEASE, RELEASE_REQUESTS))
    for order in orders:
        with clock.frozen(order.status_changed_at):
            approval_services.approval_request(
                order=order, kind=ApprovalKind.HIGH_VALUE_RELEASE, actor=PORTAL
            )
    return len(orders)


def _shortfalls() -> int:
    """The lines' open units, as the allocation that left them open reported them."""
    orders = [
        *_newest(Status.BACKORDERED, SHORTFALLS // 2),
        *_newest(Status.PARTIALLY_ALLOCATED, SHORTFALLS - SHORTFALLS // 2),
    ]
    shortfall: dict[int, dict[str, int]] = {order.pk: {} for order in orders}
    allocated: dict[int, dict[str, int]] = {order.pk: {} for order in orders}
    lines = OrderLine.objects.filter(order__in=orders).values_list(
        "order", "product__sku", "quantity", "allocated_quantity", "shipped_quantity"
    )
    for order_id, sku, quantity, allocated_units, shipped in lines:
        if missing := quantity - allocated_units - shipped:
            shortfall[order_id][sku] = missing
        if allocated_units:
            allocated[order_id][sku] = allocated_units
    raised = [order for order in orders if shortfall[order.pk]]
    for order in raised:
        with clock.frozen(order.status_changed_at):
            exception_services.exception_raise(
                type_code=flows.SHORTFALL,
                order=order,
                details={"shortfall": shortfall[order.pk], "allocated": allocated[order.pk]},
                actor=PORTAL,
            )
    return len(raised)


def _reserved(orders: Iterable[Order]) -> dict[int, tuple[str, dict[str, int]]]:
    """Per order: the warehouse of its first reservation and the units reserved there."""
    reserved: dict[int, tuple[str, dict[str, int]]] = {}
    for order_id, warehouse, sku, units in (
        Allocation.objects.filter(line__order__in=orders)
        .order_by("id")
        .values_list("line__order", "warehouse__code", "line__product__sku", "quantity")
    ):
        code, picked = reserved.setdefault(order_id, (warehouse, {}))
        if code == warehouse:
            picked[sku] = picked.get(sku, 0) + units
    return reserved


def _short_picks() -> int:
    """Released orders the WMS picks now, one line short."""
    orders = list(_newest(Status.RELEASED, PICK_SHORTS))
    reserved = _reserved(orders)
    for order in orders:
        warehouse, picked = reserved[order.pk]
        sku = max(sorted(picked), key=picked.__getitem__)
        picked[sku] //= 2  # half of the largest line was not on the shelf
        flows.pick_completed(order=order, warehouse_code=warehouse, picked=picked, actor=WMS)
    return len(orders)


def _undelivered_shipments(limit: int) -> list[Shipment]:
    """One undelivered shipment each of the newest shipped orders whose tracking the carrier
    last updated before now (news is applied only when newer)."""
    shipments = (
        Shipment.objects.filter(
            order__status=Status.SHIPPED, delivered_at=None, tracking_updated_at__lt=clock.now()
        )
        .select_related("order__customer", "order__warehouse")
        .order_by("-order__status_changed_at", "-order_id", "id")
    )
    first: dict[int, Shipment] = {}
    for shipment in shipments[: limit * 3]:
        first.setdefault(shipment.order_id, shipment)
    return list(first.values())[:limit]


def _carrier_news(shipments: list[Shipment]) -> int:
    """Shipped orders: a few deliveries fail, a few are expected after their promised date."""
    now = clock.now()
    for n, shipment in enumerate(shipments):
        if n < DELIVERY_FAILURES:
            status, eta = "failed", None
        else:
            status = "in_transit"
            eta = max(now, exception_services.promised_at(shipment.order)) + timedelta(days=1, hours=n)
        flows.tracking_updated(shipment=shipment, status=status, eta=eta, as_of=now, actor=CARRIER)
    return len(shipments)


def _failed_events(shipments: list[Shipment]) -> int:
    """WMS reports the portal cannot apply, stored and applied as the webhook intake does:
    picks of a SKU that is not on the order, and a delivery that names another order's
    shipment."""
    events = []
    for order in _newest(Status.RELEASED, FAILED_PICK_EVENTS):
        warehouse = order.warehouse.code if order.warehouse_id else ""
        lines = [{"sku": UNKNOWN_SKU, "picked": 1}]
        events.append(
            ("pick.completed", {"order": order.external_id, "warehouse": warehouse, "lines": lines})
        )
    if len(shipments) == 2:
        theirs, ours = shipments
        data = {
            "order": ours.order.external_id,
            "shipment_id": theirs.external_id,
            "delivered_at": clock.now().isoformat(),
            "signed_by": "J. Doe",
        }
        events.append(("delivery.confirmed", data))
    wms, now = Partner.objects.get(name="wms"), clock.now()
    for event_type, data in events:
        event = InboundEvent.objects.create(
            partner=wms,
            event_id=f"evt_{uuid.uuid4().hex}",
            type=event_type,
            occurred_at=now,
            data=data,
            subject_ref=data["order"],
            received_at=now,
        )
        inbound_event_apply(event_pk=event.pk)
    return len(events)


def _escalation_rules(users: dict[str, User]) -> int:
    """Two examples an admin would set up; kept when they exist already."""
    rules = [
        {
            "name": "Strategic customers: unclaimed for 2 hours",
            "customer_tier": Tier.STRATEGIC,
            "trigger": EscalationRule.Trigger.UNCLAIMED_FOR,
            "trigger_value": 120,
            "raise_level": True,
        },
        {
            "name": "Finance approvals past their SLA",
            "queue": workqueue.queue_get(slug=approval_services.QUEUE_SLUG),
            "kind": WorkItem.Kind.APPROVAL,
            "trigger": EscalationRule.Trigger.PAST_SLA,
            "raise_level": True,
            "notify": EscalationRule.Notify.USER,
            "notify_user": users["finance"],
        },
    ]
    admin = Actor.of(users["admin"])
    made = 0
    for data in rules:
        if not EscalationRule.objects.filter(name=data["name"]).exists():
            escalation.rule_save(data=data, actor=admin)
            made += 1
    return made
