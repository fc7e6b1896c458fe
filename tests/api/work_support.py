"""Work items, approvals and integration messages for the API tests, made through the
real services (the outbox and inbound rows as the relay and the webhooks leave them)."""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User

from approvals import services as approval_services
from approvals.models import ApprovalRequest, Kind
from exceptions import services as exception_services
from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.models import OutboxMessage, WorkItem
from integrations.inbound import inbound_event_apply
from integrations.models import DeliveryAttempt, InboundEvent, Partner
from orders import services as order_services
from orders.models import Order, Status, Tier
from tests import factories

MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # inside every team's working hours
SYSTEM = Actor.named("test")
# An exception type of each team's queue (DESIGN.md §2) and the type's first reason code.
CS_TYPE, CS_QUEUE, CS_REASON = "late_shipment_risk", "customer-service", "expedited"
PLANNING_TYPE, PLANNING_QUEUE, PLANNING_REASON = "carrier_booking_failed", "planning", "rebooked"
FINANCE_TYPE, FINANCE_QUEUE, FINANCE_REASON = "invoice_blocked", "invoicing", "invoice_corrected"
_seq = itertools.count(1)


def exception_item(
    type_code: str = PLANNING_TYPE,
    *,
    total: str = "100.00",
    tier: str = Tier.STANDARD,
    promised_in_days: int = 5,
    order: Order | None = None,
) -> WorkItem:
    """An open exception about a new order worth ``total`` (or about ``order``)."""
    if order is None:
        cust = factories.customer(tier=tier)
        order = factories.order(
            cust, [(factories.product(price=total), 1)], promised_in_days=promised_in_days
        )
    exception = exception_services.exception_raise(type_code=type_code, order=order, details={}, actor=SYSTEM)
    return exception.work_item


def approval_request(
    *, total: str = "12000.00", requested_by: User | None = None, two_approvers: bool = False
) -> ApprovalRequest:
    """A credit-hold release request about an order over its customer's credit limit (the
    default policies: one approver up to 50,000, two above)."""
    amount = "60000.00" if two_approvers else total
    cust = factories.customer(credit_limit=Decimal("1000.00"))
    wh = factories.warehouse()
    prod = factories.product(price=amount)
    factories.stock(wh, prod, 1)
    order = factories.order(cust, [(prod, 1)], wh=wh)
    assert not order_services.order_credit_check(order=order, actor=SYSTEM).passed
    assert order.status == Status.CREDIT_HOLD
    return approval_services.approval_request(
        order=order, kind=Kind.CREDIT_HOLD, actor=SYSTEM, requested_by=requested_by
    )


def outbox_message(
    state: str = OutboxMessage.State.DEAD,
    *,
    order: Order | None = None,
    topic: str = "erp.status",
    endpoint: str = "erp",
    attempts: list[tuple[int | None, str]] = (),
) -> OutboxMessage:
    """A message as the relay leaves it, with a delivery attempt per (status code, error)."""
    n = next(_seq)
    now = clock.now()
    message = OutboxMessage.objects.create(
        endpoint=endpoint,
        topic=topic,
        payload={"order": order.external_id if order else "", "n": n},
        idempotency_key=f"api-test-{n}",
        subject_ref=order.external_id if order else "",
        state=state,
        attempts=len(attempts),
        next_attempt_at=now - timedelta(hours=1),
        last_error=attempts[-1][1] if attempts and state == OutboxMessage.State.DEAD else "",
        created_at=now - timedelta(hours=2) + timedelta(seconds=n),
    )
    for k, (code, error) in enumerate(attempts):
        DeliveryAttempt.objects.create(
            message=message,
            at=now - timedelta(hours=1) + timedelta(minutes=k),
            status_code=code,
            latency_ms=40 + k,
            error=error,
            succeeded=code is not None and code < 300,
        )
    return message


def inbound_event(
    state: str = InboundEvent.State.APPLIED, *, order: Order | None = None, **fields: Any
) -> InboundEvent:
    n = next(_seq)
    now = clock.now()
    values = {
        "partner": Partner.objects.get_or_create(name="wms")[0],
        "event_id": f"ev-{n}",
        "type": "inventory.adjusted",
        "occurred_at": now - timedelta(minutes=10),
        "data": {"warehouse": "W1", "sku": "S", "on_hand": 1},
        "subject_ref": order.external_id if order else "",
        "state": state,
        "received_at": now - timedelta(minutes=9) + timedelta(seconds=n),
    }
    return InboundEvent.objects.create(**{**values, **fields})


def failed_shipment(order: Order, carrier_code: str = "NEWCO") -> InboundEvent:
    """A shipment confirmation naming a carrier the portal does not know: it fails (and opens
    an integration exception about the order)."""
    line = order.lines.select_related("product").get()
    event = inbound_event(
        InboundEvent.State.PENDING,
        order=order,
        type="shipment.confirmed",
        data={
            "order": order.external_id,
            "shipment_id": f"SH-{order.external_id}",
            "warehouse": order.warehouse.code,
            "carrier": carrier_code,
            "tracking": "TRK-1",
            "lines": [{"sku": line.product.sku, "quantity": line.quantity}],
        },
    )
    assert inbound_event_apply(event_pk=event.pk) == InboundEvent.State.FAILED
    event.refresh_from_db()
    return event
