"""Invoicing: the ERP is asked for, and the invoice holds, the value of what shipped."""

from decimal import Decimal

import pytest

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.models import OutboxMessage
from orders import services
from orders.models import Inventory, Invoice, Order, Product, Status, Warehouse
from tests import factories

S = Status
pytestmark = pytest.mark.django_db
ACTOR = Actor.named("wms")
TOTAL = Decimal("120.95")  # 5 x 19.99 + 4 x 5.25


@pytest.fixture
def goods() -> tuple[Product, Product]:
    return factories.product("SKU-A", "19.99"), factories.product("SKU-B", "5.25")


def _packed(goods: tuple[Product, Product], stock: dict[Warehouse, dict[Product, int]]) -> Order:
    """5 of SKU-A and 4 of SKU-B, preferring the first warehouse, allocated from ``stock``
    and packed."""
    for wh, units in stock.items():
        for prod, on_hand in units.items():
            factories.stock(wh, prod, on_hand)
    a, b = goods
    order = factories.order(lines=[(a, 5), (b, 4)], wh=next(iter(stock)))
    assert order.total == TOTAL
    assert services.order_credit_check(order=order, actor=ACTOR).passed
    services.order_allocate(order=order, actor=ACTOR)
    services.order_release(order=order, actor=ACTOR)
    services.order_start_picking(order=order, actor=ACTOR)
    services.order_pack(order=order, actor=ACTOR)
    return order


def _ship(order: Order, wh: Warehouse, units: dict[Product, int]) -> str:
    shipment_id = f"SH-{order.external_id}-{order.shipments.count() + 1}"
    services.order_record_shipment(
        order=order,
        shipment_id=shipment_id,
        warehouse_code=wh.code,
        lines=[services.ShippedLine(sku=prod.sku, quantity=n) for prod, n in units.items()],
        actor=ACTOR,
    )
    return shipment_id


def _deliver(order: Order, shipment_id: str) -> None:
    services.order_confirm_delivery(
        order=order, shipment_id=shipment_id, delivered_at=clock.now(), signed_by="J. Doe", actor=ACTOR
    )


def _close_short(order: Order) -> None:
    services.order_close_short(order=order, actor=Actor.named("planner"), reason="The rest is discontinued.")


def _invoice_requests(order: Order) -> list[dict[str, str]]:
    messages = OutboxMessage.objects.filter(topic="erp.invoice", subject_ref=order.external_id)
    return [message.payload for message in messages]


def _invoice(order: Order) -> Invoice:
    invoice = services.order_invoice(order=order, number=f"INV-{order.external_id}", actor=ACTOR)
    assert Invoice.objects.get(order=order).amount == invoice.amount
    return invoice


def test_an_order_shipped_in_full_is_invoiced_at_its_total(goods: tuple[Product, Product]) -> None:
    a, b = goods
    wh = factories.warehouse("W1")
    order = _packed(goods, {wh: {a: 5, b: 4}})
    first = _ship(order, wh, {a: 2})
    second = _ship(order, wh, {a: 3, b: 4})
    _deliver(order, first)
    assert _invoice_requests(order) == []
    _deliver(order, second)

    assert order.status == S.DELIVERED
    assert _invoice_requests(order) == [{"order": order.external_id, "amount": "120.95", "currency": "EUR"}]
    assert services.invoice_amount(order) == order.total == TOTAL
    assert _invoice(order).amount == order.total


@pytest.mark.parametrize("delivered_first", [True, False], ids=["delivered-first", "closed-first"])
def test_an_order_closed_short_is_invoiced_at_what_shipped(
    goods: tuple[Product, Product], delivered_first: bool
) -> None:
    a, b = goods
    wh = factories.warehouse("W1")
    order = _packed(goods, {wh: {a: 5, b: 4}})
    shipment = _ship(order, wh, {a: 3})
    if delivered_first:
        _deliver(order, shipment)
        assert order.status == S.PARTIALLY_SHIPPED and _invoice_requests(order) == []
        _close_short(order)
    else:
        _close_short(order)
        assert order.status == S.SHIPPED and _invoice_requests(order) == []
        _deliver(order, shipment)

    assert order.status == S.DELIVERED
    # 3 x 19.99 of SKU-A; nothing of SKU-B left the warehouse.
    assert _invoice_requests(order) == [{"order": order.external_id, "amount": "59.97", "currency": "EUR"}]
    invoice = _invoice(order)
    assert invoice.amount == Decimal("59.97")
    order.refresh_from_db()
    assert (order.status, order.total) == (S.INVOICED, TOTAL)


def test_every_line_shipped_in_part_is_invoiced_at_its_shipped_units(goods: tuple[Product, Product]) -> None:
    a, b = goods
    wh = factories.warehouse("W1")
    order = _packed(goods, {wh: {a: 5, b: 4}})
    _deliver(order, _ship(order, wh, {a: 4, b: 1}))
    _close_short(order)

    # 4 x 19.99 + 1 x 5.25
    assert [m["amount"] for m in _invoice_requests(order)] == ["85.21"]
    assert _invoice(order).amount == Decimal("85.21")


def _split(goods: tuple[Product, Product]) -> tuple[Order, Warehouse, Warehouse]:
    """SKU-A: 3 from W1 (preferred) and 2 from W2; SKU-B: all 4 from W2."""
    a, b = goods
    w1, w2 = factories.warehouse("W1"), factories.warehouse("W2")
    order = _packed(goods, {w1: {a: 3}, w2: {a: 2, b: 4}})
    allocated = order.lines.values_list(
        "product__sku", "allocations__warehouse__code", "allocations__quantity"
    )
    assert sorted(allocated) == [("SKU-A", "W1", 3), ("SKU-A", "W2", 2), ("SKU-B", "W2", 4)]
    return order, w1, w2


def test_a_split_order_shipped_from_two_warehouses_is_invoiced_at_its_total(
    goods: tuple[Product, Product],
) -> None:
    a, b = goods
    order, w1, w2 = _split(goods)
    from_w1 = _ship(order, w1, {a: 3})
    from_w2 = _ship(order, w2, {a: 2, b: 4})
    _deliver(order, from_w2)
    _deliver(order, from_w1)

    assert order.status == S.DELIVERED
    assert [m["amount"] for m in _invoice_requests(order)] == ["120.95"]
    assert _invoice(order).amount == order.total


def test_a_split_order_closed_short_after_one_warehouse_shipped_is_invoiced_at_that_part(
    goods: tuple[Product, Product],
) -> None:
    a, _ = goods
    order, w1, w2 = _split(goods)
    _deliver(order, _ship(order, w1, {a: 3}))
    _close_short(order)

    assert order.status == S.DELIVERED
    assert [m["amount"] for m in _invoice_requests(order)] == ["59.97"]
    assert _invoice(order).amount == Decimal("59.97")
    assert list(Inventory.objects.filter(warehouse=w2).values_list("allocated", flat=True)) == [0, 0]
