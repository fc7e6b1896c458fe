"""The ERP's answer to the invoice request invoices the order at the amount it was asked for."""

from decimal import Decimal

import pytest

from flows import fulfilment
from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.models import OutboxMessage
from orders import services
from orders.models import Order, Status
from tests import factories

pytestmark = pytest.mark.django_db
RELAY = Actor.named("relay")


def _answered(order: Order, number: str) -> OutboxMessage:
    message = OutboxMessage.objects.get(topic="erp.invoice", subject_ref=order.external_id)
    message.response = {"invoice_number": number}
    fulfilment.outbox_delivered(message=message, actor=RELAY)
    order.refresh_from_db()
    return message


def test_an_order_closed_short_is_invoiced_at_the_value_that_shipped() -> None:
    order = factories.order_in(Status.PARTIALLY_SHIPPED, qty=4)  # 1 of 4 units at 10.00 shipped
    services.order_close_short(order=order, actor=Actor.named("planner"), reason="The rest is discontinued.")
    services.order_confirm_delivery(
        order=order,
        shipment_id=order.shipments.get().external_id,
        delivered_at=clock.now(),
        signed_by="J. Doe",
        actor=Actor.named("wms"),
    )

    message = _answered(order, "INV-77")

    assert message.payload["amount"] == "10.00"
    assert order.status == Status.INVOICED
    assert list(order.invoices.values_list("number", "amount")) == [("INV-77", Decimal("10.00"))]
    assert order.total == Decimal("40.00")


def test_an_order_shipped_in_full_is_invoiced_at_its_total() -> None:
    order = factories.order_in(Status.DELIVERED, qty=4)

    message = _answered(order, "INV-78")

    assert message.payload["amount"] == "40.00" == str(order.total)
    assert list(order.invoices.values_list("number", "amount")) == [("INV-78", order.total)]
