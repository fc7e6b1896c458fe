"""The order's way through the portal, written out in one visible place.

Each step calls the services of the apps below in order; nothing here is hidden in a
signal or ``save()``. Every function runs in one transaction: a step that fails undoes
the steps before it.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F

from approvals import services as approval_services
from approvals.models import Kind as ApprovalKind
from exceptions import services as exception_services
from fulfillment.core.actors import Actor
from fulfillment.core.models import OutboxMessage
from orders import services as order_services
from orders.models import Order, OrderLine, Product, Shipment, Status

SHORTFALL = "inventory_shortfall"
POLICY = Actor.named("policy")
# Orders offered new stock per arrival; the stall sweep and the next arrival reach the rest.
STOCK_ARRIVAL_BATCH = 200


@dataclass(frozen=True)
class IntakeOutcome:
    order: Order
    credit_passed: bool
    allocation: order_services.AllocationResult | None


@transaction.atomic
def order_intake(*, order: Order, actor: Actor) -> IntakeOutcome:
    """received → credit check → (credit hold for finance | allocation → release)."""
    decision = order_services.order_credit_check(order=order, actor=actor)
    if not decision.passed:
        approval_services.approval_request(
            order=order, kind=ApprovalKind.CREDIT_HOLD, actor=actor, figures=decision.as_data()
        )
        return IntakeOutcome(order=order, credit_passed=False, allocation=None)
    return IntakeOutcome(order=order, credit_passed=True, allocation=order_allocate(order=order, actor=actor))


@transaction.atomic
def order_allocate(*, order: Order, actor: Actor) -> order_services.AllocationResult:
    """Reserve stock; a shortfall becomes (or updates) the planners' exception, a full
    allocation clears it and releases the order — after finance approval when its value
    is at or above the high-value threshold."""
    result = order_services.order_allocate(order=order, actor=actor)
    if result.shortfall:
        exception_services.exception_raise(
            type_code=SHORTFALL,
            order=order,
            details={"shortfall": result.shortfall, "allocated": result.allocated},
            actor=actor,
        )
        return result
    exception_services.exception_clear(
        order=order, type_code=SHORTFALL, note="Allocated in full.", actor=actor
    )
    threshold = approval_services.high_value_threshold()
    if threshold is not None and order.total >= threshold:
        order_services.order_request_release_approval(
            order=order, actor=actor, reason=f"Order value {order.total} is at or above {threshold}."
        )
        # The policy asks, not whoever allocated: a finance approver who released the credit
        # hold may still decide the release (separation of duties binds requesters).
        approval_services.approval_request(order=order, kind=ApprovalKind.HIGH_VALUE_RELEASE, actor=POLICY)
    else:
        order_services.order_release(order=order, actor=actor)
    return result


def stock_arrived(*, product: Product, actor: Actor) -> int:
    """Offer new stock of ``product`` to the orders waiting for it, earliest promise
    first; returns how many orders got more. Each order is its own transaction."""
    waiting = (
        Order.objects.filter(
            status__in=[Status.BACKORDERED, Status.PARTIALLY_ALLOCATED],
            pk__in=OrderLine.objects.filter(product=product, allocated_quantity__lt=F("quantity")).values(
                "order"
            ),
        )
        .select_related("customer", "warehouse")
        .order_by("promised_date", "created_at", "id")
    )
    helped = 0
    for order in waiting[:STOCK_ARRIVAL_BATCH]:
        helped += bool(order_allocate(order=order, actor=actor).allocated)
    return helped


@transaction.atomic
def pick_completed(
    *,
    order: Order,
    warehouse_code: str,
    picked: dict[str, int],
    actor: Actor,
    picked_at: datetime | None = None,
) -> dict[str, int]:
    short = order_services.order_record_pick(
        order=order, warehouse_code=warehouse_code, picked=picked, actor=actor, picked_at=picked_at
    )
    if short:
        exception_services.exception_raise(
            type_code="pick_short", order=order, details={"shortfall": short, "warehouse": warehouse_code},
            actor=actor,
        )  # fmt: skip
    return short


# Carrier statuses that mean the parcel will not arrive as planned.
DELIVERY_PROBLEMS = {"exception", "failed"}
DELIVERY_FAILED, LATE_SHIPMENT_RISK = "delivery_failed", "late_shipment_risk"


def _clear_settled_carrier_risks(order: Order, *, actor: Actor) -> None:
    """Close the carrier-risk exceptions that no undelivered shipment of the order still
    justifies: the exceptions follow the shipments' current state, not the order in which
    the carrier's and the WMS's news arrived."""
    undelivered = order.shipments.filter(delivered_at__isnull=True)
    if not undelivered.filter(tracking_status__in=DELIVERY_PROBLEMS).exists():
        exception_services.exception_clear(
            order=order, type_code=DELIVERY_FAILED, note="No shipment of the order is failing now.",
            actor=actor,
        )  # fmt: skip
    promised = exception_services.promised_at(order)
    if not undelivered.filter(eta__gt=promised).exclude(tracking_status="delivered").exists():
        exception_services.exception_clear(
            order=order, type_code=LATE_SHIPMENT_RISK, note="No shipment of the order is expected late now.",
            actor=actor,
        )  # fmt: skip


@transaction.atomic
def delivery_confirmed(
    *, order: Order, shipment_id: str, delivered_at: datetime, signed_by: str, actor: Actor
) -> None:
    order_services.order_confirm_delivery(
        order=order, shipment_id=shipment_id, delivered_at=delivered_at, signed_by=signed_by, actor=actor
    )
    _clear_settled_carrier_risks(order, actor=actor)


@transaction.atomic
def tracking_updated(
    *, shipment: Shipment, status: str, eta: datetime | None, as_of: datetime, actor: Actor
) -> bool:
    """Take the carrier's news about a shipment not yet delivered (the WMS's proof of
    delivery settles it): a failed delivery, or an ETA past the promised date, becomes a
    customer-service exception; news that ends those risks clears them."""
    if not order_services.shipment_update_tracking(shipment=shipment, status=status, eta=eta, as_of=as_of):
        return False
    order = shipment.order
    if shipment.delivered_at is None and status in DELIVERY_PROBLEMS:
        exception_services.exception_raise(
            type_code=DELIVERY_FAILED, order=order,
            details={"shipment": shipment.external_id, "tracking": shipment.tracking, "status": status},
            actor=actor,
        )  # fmt: skip
    promised = exception_services.promised_at(order)
    if shipment.delivered_at is None and eta is not None and eta > promised and status != "delivered":
        details = {"shipment": shipment.external_id, "eta": eta.isoformat(), "promised": promised.isoformat()}
        exception_services.exception_raise(
            type_code=LATE_SHIPMENT_RISK, order=order, details=details, actor=actor
        )
    _clear_settled_carrier_risks(order, actor=actor)
    return True


@transaction.atomic
def outbox_delivered(*, message: OutboxMessage, actor: Actor) -> None:
    """What another system's answer means for the order (the ERP's invoice number)."""
    if message.topic != "erp.invoice" or not isinstance(message.response, dict):
        return
    order = Order.objects.filter(external_id=message.subject_ref, status=Status.DELIVERED).first()
    number = message.response.get("invoice_number")
    if order is not None and number:
        order_services.order_invoice(order=order, number=str(number), actor=actor)
