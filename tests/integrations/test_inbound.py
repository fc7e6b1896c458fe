"""Applying webhooks to the domain: each event type's effect on orders, stock and
exceptions through the real flows, events arriving out of order, and a realistic stream
giving the same final state in whatever order it arrives."""

import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from exceptions.models import AUTO_CLEARED, OrderException
from flows import fulfilment as flows
from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.errors import ConcurrentUpdate
from fulfillment.core.models import OutboxMessage
from integrations import inbound, tasks
from integrations.models import InboundEvent, Partner
from orders import services
from orders.models import (
    Allocation,
    Carrier,
    Inventory,
    Order,
    OrderLine,
    OrderTransition,
    Return,
    Shipment,
    Status,
)
from tests import factories
from tests.integrations.webhook_support import NOW, deliver, envelope, post, stored

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("webhook_now")]
S = Status
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def send(client: Client, partners: dict[str, Partner]) -> Callable[..., InboundEvent]:
    """POST one signed event and run its task, as partner and worker do; returns the event."""
    serial = iter(range(1, 10_000))

    def send_(
        event_type: str, data: dict[str, Any], at: str = "2026-03-02T08:30:00Z", **kw: str
    ) -> InboundEvent:
        partner = "carrier" if event_type == "tracking.updated" else "wms"
        event_id = kw.get("event_id") or f"evt_{next(serial)}"
        assert deliver(client, partner, envelope(event_type, data, event_id, at)) == "accepted"
        return stored(partner, event_id)

    return send_


@pytest.fixture
def dhl() -> Carrier:
    return Carrier.objects.create(code="DHL", name="DHL Freight")


def at(minute: int, second: int = 0) -> str:
    return f"2026-03-02T08:{minute:02d}:{second:02d}Z"


def when(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 3, 2, 8, minute, second, tzinfo=UTC)


def the_line(order: Order) -> OrderLine:
    return order.lines.select_related("product").get()


def stock_of(order: Order) -> tuple[int, int]:
    inv = Inventory.objects.get(warehouse=order.warehouse, product=the_line(order).product)
    return inv.on_hand, inv.allocated


def open_exceptions(order: Order | None = None) -> list[str]:
    found = OrderException.objects.filter(is_open=True)
    if order is not None:
        found = found.filter(order=order)
    return sorted(found.values_list("type__code", flat=True))


def pick_data(order: Order, picked: int | None = None) -> dict[str, Any]:
    line = the_line(order)
    return {
        "order": order.external_id,
        "warehouse": order.warehouse.code,
        "lines": [{"sku": line.product.sku, "picked": line.quantity if picked is None else picked}],
    }


def ship_data(order: Order, quantity: int | None = None, **kw: str) -> dict[str, Any]:
    line = the_line(order)
    return {
        "order": order.external_id,
        "shipment_id": kw.get("shipment_id", f"SHP-{order.external_id}"),
        "warehouse": order.warehouse.code,
        "carrier": kw.get("carrier", "DHL"),
        "tracking": kw.get("tracking", f"JJD-{order.external_id}"),
        "lines": [{"sku": line.product.sku, "quantity": line.quantity if quantity is None else quantity}],
    }


def delivery_data(order: Order, signed_by: str = "Grace Hopper") -> dict[str, Any]:
    return {
        "order": order.external_id,
        "shipment_id": f"SHP-{order.external_id}",
        "delivered_at": "2026-03-02T08:50:00+01:00",
        "signed_by": signed_by,
    }


def transitions(order: Order) -> list[tuple[str, str, str, str]]:
    return list(
        order.transitions.order_by("id").values_list("transition", "from_state", "to_state", "actor_system")
    )


# --- inventory.adjusted -------------------------------------------------------------------------


def test_inventory_takes_the_absolute_figure_and_never_an_older_one(
    send: Callable[..., InboundEvent],
) -> None:
    wh, prod = factories.warehouse("WH1"), factories.product("SKU-1")
    factories.stock(wh, prod, 5)
    count = {"warehouse": "WH1", "sku": "SKU-1"}

    states = [
        send("inventory.adjusted", {**count, "on_hand": 12}, at(0)).state,
        send("inventory.adjusted", {**count, "on_hand": 7}, at(10)).state,
        send("inventory.adjusted", {**count, "on_hand": 30}, at(5)).state,  # older: superseded
        send("inventory.adjusted", {**count, "on_hand": 31}, at(10)).state,  # same moment: first wins
    ]
    assert states == ["applied", "applied", "skipped", "skipped"]
    inv = Inventory.objects.get(warehouse=wh, product=prod)
    assert (inv.on_hand, inv.allocated, inv.counted_at) == (7, 0, when(10))


def test_inventory_of_a_new_warehouse_product_pair_is_created(send: Callable[..., InboundEvent]) -> None:
    factories.warehouse("WH9"), factories.product("SKU-9")
    send("inventory.adjusted", {"warehouse": "WH9", "sku": "SKU-9", "on_hand": 3}, at(1))
    inv = Inventory.objects.get(warehouse__code="WH9", product__sku="SKU-9")
    assert (inv.on_hand, inv.allocated, inv.counted_at) == (3, 0, when(1))


def test_inventory_for_an_unknown_sku_fails_into_the_integration_queue(
    send: Callable[..., InboundEvent],
) -> None:
    factories.warehouse("WH1")
    event = send("inventory.adjusted", {"warehouse": "WH1", "sku": "NOPE", "on_hand": 3}, at(1))
    assert (event.state, event.last_error, event.attempts) == ("failed", "Unknown SKU 'NOPE'.", 1)
    exc = OrderException.objects.select_related("work_item__queue").get()
    assert (exc.type.code, exc.order, exc.work_item.queue.slug, exc.is_open) == (
        "integration_sync_failed", None, "integration", True,
    )  # fmt: skip
    assert exc.details == {
        "direction": "inbound", "partner": "wms", "event_id": event.event_id,
        "type": "inventory.adjusted", "error": "Unknown SKU 'NOPE'.",
    }  # fmt: skip
    assert not Inventory.objects.exists()


def test_stock_arrival_reallocates_a_backordered_order_and_closes_its_shortfall(
    send: Callable[..., InboundEvent],
) -> None:
    wh, prod = factories.warehouse("WH1"), factories.product("SKU-1")
    order = factories.order(lines=[(prod, 6)], wh=wh)
    flows.order_intake(order=order, actor=factories.SYSTEM)
    assert (order.status, open_exceptions(order)) == (S.BACKORDERED, ["inventory_shortfall"])
    shortfall = OrderException.objects.get(type__code="inventory_shortfall")

    send("inventory.adjusted", {"warehouse": "WH1", "sku": "SKU-1", "on_hand": 4}, at(1))
    order.refresh_from_db()
    shortfall.refresh_from_db()
    assert (order.status, the_line(order).allocated_quantity, stock_of(order)) == (
        S.PARTIALLY_ALLOCATED,
        4,
        (4, 4),
    )
    assert (shortfall.is_open, shortfall.details["shortfall"], shortfall.occurrences) == (
        True,
        {"SKU-1": 2},
        2,
    )

    send("inventory.adjusted", {"warehouse": "WH1", "sku": "SKU-1", "on_hand": 10}, at(2))
    order.refresh_from_db()
    shortfall.refresh_from_db()
    assert (order.status, the_line(order).allocated_quantity, stock_of(order)) == (S.RELEASED, 6, (10, 6))
    assert (shortfall.is_open, shortfall.work_item.state, shortfall.work_item.resolution_code) == (
        False, "resolved", AUTO_CLEARED,
    )  # fmt: skip
    assert transitions(order)[-3:] == [
        ("allocate_partially", S.BACKORDERED, S.PARTIALLY_ALLOCATED, "wms"),
        ("allocate_in_full", S.PARTIALLY_ALLOCATED, S.ALLOCATED, "wms"),
        ("release", S.ALLOCATED, S.RELEASED, "wms"),
    ]
    release = OutboxMessage.objects.get(topic="order.release", subject_ref=order.external_id)
    assert release.payload["lines"] == [{"sku": "SKU-1", "quantity": 6}]
    assert open_exceptions() == []


def test_a_count_below_what_is_reserved_waits_then_fails(send: Callable[..., InboundEvent]) -> None:
    order = factories.order_in(S.RELEASED, qty=4)
    sku = the_line(order).product.sku
    event = send("inventory.adjusted", {"warehouse": order.warehouse.code, "sku": sku, "on_hand": 1}, at(10))
    assert event.state == "deferred"
    assert event.last_error.startswith(
        f"{order.warehouse.code} reports 1 of {sku} on hand at 2026-03-02 08:10:00"
    )
    assert stock_of(order) == (4, 4)

    clock.advance(timedelta(minutes=14))
    assert tasks.retry_deferred_events() == 0
    assert stored("wms", event.event_id).state == "deferred"
    clock.advance(timedelta(minutes=2))
    tasks.retry_deferred_events()
    event.refresh_from_db()
    assert (event.state, event.attempts) == ("failed", 3)
    assert event.last_error.startswith("Waited 0:15:00 for an earlier event: ")
    assert open_exceptions() == ["integration_sync_failed"]
    assert stock_of(order) == (4, 4)


# --- pick.completed -----------------------------------------------------------------------------


def test_full_pick_moves_a_released_order_to_packed(send: Callable[..., InboundEvent]) -> None:
    order = factories.order_in(S.RELEASED, qty=4)
    event = send("pick.completed", pick_data(order), at(5))
    order.refresh_from_db()
    assert (event.state, event.applied_at, order.status) == ("applied", NOW, S.PACKED)
    assert transitions(order)[-2:] == [
        ("start_picking", S.RELEASED, S.PICKING, "wms"),
        ("pack", S.PICKING, S.PACKED, "wms"),
    ]
    assert order.transitions.get(transition="start_picking").data == {
        "warehouse": order.warehouse.code,
        "picked": {the_line(order).product.sku: 4},
        "short": {},
        "picked_at": "2026-03-02T08:05:00+00:00",
    }
    assert stock_of(order) == (4, 4)
    assert open_exceptions() == []


def test_short_pick_raises_pick_short_and_takes_the_missing_units_off(
    send: Callable[..., InboundEvent],
) -> None:
    order = factories.order_in(S.RELEASED, qty=4)
    line = the_line(order)
    send("pick.completed", pick_data(order, picked=1), at(5))
    order.refresh_from_db()
    line.refresh_from_db()
    assert order.status == S.PACKED
    assert (line.allocated_quantity, stock_of(order)) == (1, (1, 1))
    assert list(Allocation.objects.filter(line=line).values_list("quantity", flat=True)) == [1]
    short = OrderException.objects.get(order=order)
    assert (short.type.code, short.is_open) == ("pick_short", True)
    assert short.details == {"shortfall": {line.product.sku: 3}, "warehouse": order.warehouse.code}
    assert short.work_item.revenue_at_risk == 3 * line.unit_price


def test_pick_before_release_waits_for_it(send: Callable[..., InboundEvent]) -> None:
    order = factories.order_in(S.ALLOCATED, qty=2)
    event = send("pick.completed", pick_data(order), at(5))
    assert (event.state, event.last_error) == (
        "deferred",
        f"Order {order.external_id} is allocated, not released yet.",
    )
    services.order_release(order=order, actor=factories.SYSTEM)
    assert tasks.retry_deferred_events() == 1
    order.refresh_from_db()
    assert (stored("wms", event.event_id).state, order.status) == ("applied", S.PACKED)


def test_pick_of_an_unknown_order_waits(send: Callable[..., InboundEvent]) -> None:
    event = send(
        "pick.completed", {"order": "SO-NEW", "warehouse": "WH1", "lines": [{"sku": "X", "picked": 1}]}
    )
    assert (event.state, event.last_error) == ("deferred", "Order SO-NEW is not known yet.")


def test_a_second_pick_of_a_packed_order_is_skipped(send: Callable[..., InboundEvent]) -> None:
    order = factories.order_in(S.RELEASED, qty=4)
    send("pick.completed", pick_data(order), at(5))
    rows = OrderTransition.objects.count()
    again = send("pick.completed", pick_data(order, picked=0), at(6))  # resent under a new id
    assert again.state == "skipped"
    assert (OrderTransition.objects.count(), stock_of(order), open_exceptions()) == (rows, (4, 4), [])


def test_an_order_released_to_two_warehouses(send: Callable[..., InboundEvent]) -> None:
    """The order records the first warehouse's pick; the second one's, in full, changes
    nothing, and its short pick goes to the integration queue instead of being lost."""
    wh1, wh2, prod = factories.warehouse("WH1"), factories.warehouse("WH2"), factories.product("SKU-1")
    factories.stock(wh1, prod, 2)
    factories.stock(wh2, prod, 3)
    order = factories.order(lines=[(prod, 5)], wh=wh1)
    flows.order_intake(order=order, actor=factories.SYSTEM)
    order.refresh_from_db()
    assert order.status == S.RELEASED
    releases = OutboxMessage.objects.filter(topic="order.release").order_by("idempotency_key")
    assert [(m.payload["warehouse"], m.payload["lines"]) for m in releases] == [
        ("WH1", [{"sku": "SKU-1", "quantity": 2}]), ("WH2", [{"sku": "SKU-1", "quantity": 3}]),
    ]  # fmt: skip

    def pick(warehouse: str, picked: int) -> dict[str, Any]:
        return {
            "order": order.external_id,
            "warehouse": warehouse,
            "lines": [{"sku": "SKU-1", "picked": picked}],
        }

    assert send("pick.completed", pick("WH1", 2), at(5)).state == "applied"
    assert send("pick.completed", pick("WH1", 0), at(6)).state == "skipped"  # WH1 again
    assert send("pick.completed", pick("WH2", 3), at(6), event_id="full").state == "skipped"
    short = send("pick.completed", pick("WH2", 1), at(7))
    assert (short.state, short.last_error) == (
        "failed",
        f"Order {order.external_id} is packed after its pick elsewhere; the short pick at WH2 "
        "(SKU-1: 2 short) was not applied: adjust its reservations and stock by hand.",
    )
    assert open_exceptions(order) == ["integration_sync_failed"]
    stock = Inventory.objects.order_by("warehouse__code").values_list(
        "warehouse__code", "on_hand", "allocated"
    )
    assert list(stock) == [("WH1", 2, 2), ("WH2", 3, 3)]


def test_pick_naming_a_sku_not_on_the_order_fails_and_changes_nothing(
    send: Callable[..., InboundEvent],
) -> None:
    order = factories.order_in(S.RELEASED, qty=4)
    data = {**pick_data(order), "lines": [{"sku": "SKU-ELSEWHERE", "picked": 1}]}
    event = send("pick.completed", data, at(5))
    order.refresh_from_db()
    assert (event.state, event.last_error) == (
        "failed", f"SKU(s) SKU-ELSEWHERE are not on order {order.external_id}.",
    )  # fmt: skip
    assert (order.status, stock_of(order), open_exceptions(order)) == (
        S.RELEASED,
        (4, 4),
        ["integration_sync_failed"],
    )


# --- shipment.confirmed -------------------------------------------------------------------------


def test_shipment_records_it_ships_the_order_and_moves_stock(
    send: Callable[..., InboundEvent], dhl: Carrier
) -> None:
    order = factories.order_in(S.RELEASED, qty=4)
    send("pick.completed", pick_data(order), at(5))
    event = send("shipment.confirmed", ship_data(order, tracking="JJD0001"), at(7))
    order.refresh_from_db()
    shipment = Shipment.objects.get()
    assert (event.state, order.status) == ("applied", S.SHIPPED)
    assert (shipment.order, shipment.external_id, shipment.warehouse, shipment.carrier) == (
        order, f"SHP-{order.external_id}", order.warehouse, dhl,
    )  # fmt: skip
    assert shipment.tracking == "JJD0001"
    assert (shipment.shipped_at, shipment.delivered_at) == (when(7), None)
    assert list(shipment.lines.values_list("product__sku", "quantity")) == [(the_line(order).product.sku, 4)]
    assert stock_of(order) == (0, 0)
    assert (the_line(order).shipped_quantity, the_line(order).allocated_quantity) == (4, 0)
    notify = OutboxMessage.objects.get(topic="customer.notify")
    assert notify.payload["data"] == {
        "shipment": shipment.external_id,
        "carrier": "DHL",
        "tracking": "JJD0001",
    }
    assert OutboxMessage.objects.filter(topic="erp.status", payload__status=S.SHIPPED).count() == 1


def test_partial_shipment(send: Callable[..., InboundEvent], dhl: Carrier) -> None:
    order = factories.order_in(S.RELEASED, qty=4)
    send("pick.completed", pick_data(order), at(5))
    send("shipment.confirmed", ship_data(order, quantity=1), at(7))
    order.refresh_from_db()
    assert (order.status, stock_of(order)) == (S.PARTIALLY_SHIPPED, (3, 3))
    assert (the_line(order).shipped_quantity, the_line(order).allocated_quantity) == (1, 3)


def test_shipment_with_an_unknown_carrier_fails_and_changes_nothing(
    send: Callable[..., InboundEvent], dhl: Carrier
) -> None:
    order = factories.order_in(S.RELEASED, qty=4)
    send("pick.completed", pick_data(order), at(5))
    event = send("shipment.confirmed", ship_data(order, carrier="ZZZ"), at(7))
    order.refresh_from_db()
    assert (event.state, event.last_error) == ("failed", "Unknown carrier 'ZZZ'.")
    assert (order.status, stock_of(order), Shipment.objects.count()) == (S.PACKED, (4, 4), 0)
    assert open_exceptions(order) == ["integration_sync_failed"]


def test_a_shipment_id_seen_before_is_skipped(send: Callable[..., InboundEvent], dhl: Carrier) -> None:
    order = factories.order_in(S.RELEASED, qty=4)
    send("pick.completed", pick_data(order), at(5))
    send("shipment.confirmed", ship_data(order, quantity=1), at(7))
    again = send("shipment.confirmed", ship_data(order, quantity=1), at(8))  # new event id, same shipment
    order.refresh_from_db()
    assert (again.state, Shipment.objects.count(), order.status, stock_of(order)) == (
        "skipped", 1, S.PARTIALLY_SHIPPED, (3, 3),
    )  # fmt: skip


# --- delivery.confirmed -------------------------------------------------------------------------


def shipped(send: Callable[..., InboundEvent], qty: int = 4, ship: int | None = None) -> Order:
    order = factories.order_in(S.RELEASED, qty=qty)
    send("pick.completed", pick_data(order), at(5))
    send("shipment.confirmed", ship_data(order, quantity=ship), at(7))
    order.refresh_from_db()
    return order


def test_delivery_delivers_the_order_with_proof_and_asks_the_erp_to_invoice(
    send: Callable[..., InboundEvent], dhl: Carrier
) -> None:
    order = shipped(send)
    event = send("delivery.confirmed", delivery_data(order, "Grace Hopper"), at(51))
    order.refresh_from_db()
    shipment = order.shipments.get()
    assert (event.state, order.status) == ("applied", S.DELIVERED)
    assert (shipment.delivered_at, shipment.signed_by) == (when(50) - timedelta(hours=1), "Grace Hopper")
    assert transitions(order)[-1] == ("deliver", S.SHIPPED, S.DELIVERED, "wms")
    assert order.transitions.last().data == {"shipment": shipment.external_id, "signed_by": "Grace Hopper"}
    invoice = OutboxMessage.objects.get(topic="erp.invoice")
    assert (invoice.endpoint, invoice.idempotency_key, invoice.subject_ref) == (
        "erp", f"invoice:{order.external_id}", order.external_id,
    )  # fmt: skip
    assert invoice.payload == {"order": order.external_id, "amount": str(order.total), "currency": "EUR"}


def test_delivery_of_a_partial_shipment_does_not_deliver_the_order(
    send: Callable[..., InboundEvent], dhl: Carrier
) -> None:
    order = shipped(send, ship=1)
    send("delivery.confirmed", delivery_data(order), at(51))
    order.refresh_from_db()
    assert (order.status, order.shipments.get().signed_by) == (S.PARTIALLY_SHIPPED, "Grace Hopper")
    assert not OutboxMessage.objects.filter(topic="erp.invoice").exists()


def test_delivery_naming_another_order_fails(send: Callable[..., InboundEvent], dhl: Carrier) -> None:
    order = shipped(send)
    other = factories.order_in(S.RELEASED)
    event = send("delivery.confirmed", {**delivery_data(order), "order": other.external_id}, at(51))
    order.refresh_from_db()
    assert (event.state, event.last_error) == (
        "failed",
        f"Shipment SHP-{order.external_id} belongs to order {order.external_id}, not {other.external_id}.",
    )
    assert (order.status, order.shipments.get().delivered_at) == (S.SHIPPED, None)
    assert open_exceptions(other) == ["integration_sync_failed"]


def test_a_second_delivery_of_the_same_shipment_is_skipped(
    send: Callable[..., InboundEvent], dhl: Carrier
) -> None:
    order = shipped(send)
    send("delivery.confirmed", delivery_data(order, "Grace Hopper"), at(51))
    again = send("delivery.confirmed", delivery_data(order, "Somebody Else"), at(52))
    assert (again.state, order.shipments.get().signed_by) == ("skipped", "Grace Hopper")
    assert OutboxMessage.objects.filter(topic="erp.invoice").count() == 1


# --- return.initiated ---------------------------------------------------------------------------


def test_return_is_recorded(send: Callable[..., InboundEvent], dhl: Carrier) -> None:
    order = shipped(send)
    sku = the_line(order).product.sku
    data = {"order": order.external_id, "lines": [{"sku": sku, "quantity": 2}], "reason": "Wrong colour"}
    event = send("return.initiated", data, at(55))
    returned = Return.objects.get()
    assert (event.state, returned.order, returned.reference, returned.lines, returned.reason) == (
        "applied", order, event.event_id, {sku: 2}, "Wrong colour",
    )  # fmt: skip
    order.refresh_from_db()
    assert order.status == S.SHIPPED


def test_return_before_the_shipment_waits(send: Callable[..., InboundEvent], dhl: Carrier) -> None:
    order = factories.order_in(S.RELEASED, qty=4)
    sku = the_line(order).product.sku
    data = {"order": order.external_id, "lines": [{"sku": sku, "quantity": 1}], "reason": ""}
    event = send("return.initiated", data, at(55))
    assert (event.state, Return.objects.count()) == ("deferred", 0)
    send("pick.completed", pick_data(order), at(5))
    assert stored("wms", event.event_id).state == "deferred"
    send("shipment.confirmed", ship_data(order), at(7))
    assert (stored("wms", event.event_id).state, Return.objects.get().order) == ("applied", order)


# --- tracking.updated ---------------------------------------------------------------------------


def tracking(order: Order, status: str, eta: str | None = None) -> dict[str, Any]:
    return {"tracking": f"JJD-{order.external_id}", "status": status, "eta": eta}


def test_tracking_status_and_eta_are_stored(send: Callable[..., InboundEvent], dhl: Carrier) -> None:
    order = shipped(send)
    event = send("tracking.updated", tracking(order, "in_transit", "2026-03-03T10:00:00Z"), at(20))
    shipment = order.shipments.get()
    assert (event.state, event.subject_ref) == ("applied", order.external_id)
    assert (shipment.tracking_status, shipment.eta, shipment.tracking_updated_at) == (
        "in_transit", datetime(2026, 3, 3, 10, tzinfo=UTC), when(20),
    )  # fmt: skip
    older = send("tracking.updated", tracking(order, "picked_up"), at(15))
    shipment.refresh_from_db()
    assert (older.state, shipment.tracking_status) == ("skipped", "in_transit")
    assert open_exceptions() == []


def test_failed_delivery_raises_delivery_failed(send: Callable[..., InboundEvent], dhl: Carrier) -> None:
    order = shipped(send)
    send("tracking.updated", tracking(order, "failed"), at(20))
    failed = OrderException.objects.select_related("work_item__queue").get()
    assert (failed.type.code, failed.order, failed.work_item.queue.slug) == (
        "delivery_failed", order, "customer-service",
    )  # fmt: skip
    assert failed.details == {"shipment": f"SHP-{order.external_id}", "tracking": f"JJD-{order.external_id}",
                              "status": "failed"}  # fmt: skip
    # The carrier tries again: the failure is no longer the shipment's state.
    send("tracking.updated", tracking(order, "out_for_delivery"), at(25))
    failed.refresh_from_db()
    assert (failed.is_open, failed.work_item.resolution_code) == (False, AUTO_CLEARED)


def test_eta_after_the_promised_date_raises_late_shipment_risk(
    send: Callable[..., InboundEvent], dhl: Carrier
) -> None:
    order = shipped(send)
    promised = order.promised_date  # 5 days after NOW
    late = f"{promised + timedelta(days=1)}T09:00:00Z"
    send("tracking.updated", tracking(order, "in_transit", late), at(20))
    risk = OrderException.objects.get()
    assert (risk.type.code, risk.is_open, risk.details["eta"]) == (
        "late_shipment_risk", True, f"{promised + timedelta(days=1)}T09:00:00+00:00",
    )  # fmt: skip
    send("tracking.updated", tracking(order, "in_transit", f"{promised}T09:00:00Z"), at(21))
    risk.refresh_from_db()
    assert (risk.is_open, risk.work_item.resolution_code) == (False, AUTO_CLEARED)


def test_proof_of_delivery_settles_the_carriers_bad_news(
    send: Callable[..., InboundEvent], dhl: Carrier
) -> None:
    order = shipped(send)
    late = f"{order.promised_date + timedelta(days=3)}T09:00:00Z"
    send("tracking.updated", tracking(order, "exception", late), at(20))
    assert open_exceptions(order) == ["delivery_failed", "late_shipment_risk"]
    send("delivery.confirmed", delivery_data(order), at(51))
    assert open_exceptions(order) == []
    # News older than the proof of delivery, arriving after it, raises nothing again.
    raised = OrderException.objects.count()
    send("tracking.updated", tracking(order, "failed", late), at(49))
    assert (OrderException.objects.count(), open_exceptions(order)) == (raised, [])


def test_tracking_before_its_shipment_waits_and_is_applied_with_it(
    send: Callable[..., InboundEvent], dhl: Carrier
) -> None:
    order = factories.order_in(S.RELEASED, qty=4)
    event = send("tracking.updated", tracking(order, "picked_up"), at(8))
    assert (event.state, event.subject_ref, event.last_error) == (
        "deferred", f"JJD-{order.external_id}", f"No shipment with tracking JJD-{order.external_id} yet.",
    )  # fmt: skip
    send("pick.completed", pick_data(order), at(5))
    send("shipment.confirmed", ship_data(order), at(7))
    event.refresh_from_db()
    assert (event.state, event.subject_ref) == ("applied", order.external_id)
    assert order.shipments.get().tracking_status == "picked_up"


# --- out of order -------------------------------------------------------------------------------


def test_delivery_before_its_shipment_is_applied_once_the_shipment_arrives(
    send: Callable[..., InboundEvent], dhl: Carrier
) -> None:
    order = factories.order_in(S.RELEASED, qty=4)
    delivery = send("delivery.confirmed", delivery_data(order), at(51))
    shipment = send("shipment.confirmed", ship_data(order), at(7))
    assert (delivery.state, shipment.state) == ("deferred", "deferred")
    assert shipment.last_error == f"Order {order.external_id} is released: its pick is not confirmed yet."
    assert delivery.last_error == f"Shipment SHP-{order.external_id} is not confirmed yet."

    send("pick.completed", pick_data(order), at(5))
    order.refresh_from_db()
    assert order.status == S.DELIVERED
    assert [stored("wms", e.event_id).state for e in (shipment, delivery)] == ["applied", "applied"]
    assert [t for t, *_ in transitions(order)[-4:]] == ["start_picking", "pack", "ship_in_full", "deliver"]


def test_a_count_explained_by_a_late_shipment_is_applied_after_it(
    send: Callable[..., InboundEvent], dhl: Carrier
) -> None:
    """The WMS counts after shipping; the count arrives first and waits for the shipment."""
    order = factories.order_in(S.RELEASED, qty=4)  # 4 on hand, 4 reserved
    sku = the_line(order).product.sku
    count = send("inventory.adjusted", {"warehouse": order.warehouse.code, "sku": sku, "on_hand": 1}, at(9))
    assert count.state == "deferred"
    send("pick.completed", pick_data(order), at(5))
    send("shipment.confirmed", ship_data(order, quantity=3), at(7))
    count.refresh_from_db()
    # 4 - 3 shipped = 1, as counted: the count does not take the shipment off again.
    assert (count.state, stock_of(order)) == ("applied", (1, 1))


def test_waiting_past_the_limit_fails_into_an_integration_exception_on_the_order(
    send: Callable[..., InboundEvent], dhl: Carrier
) -> None:
    order = factories.order_in(S.RELEASED, qty=4)
    delivery = send("delivery.confirmed", delivery_data(order), at(51))
    clock.advance(timedelta(minutes=16))
    assert tasks.retry_deferred_events() == 0
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("failed", 2)
    assert delivery.last_error == (
        f"Waited 0:15:00 for an earlier event: Shipment SHP-{order.external_id} is not confirmed yet."
    )
    exc = OrderException.objects.get()
    assert (exc.type.code, exc.order, exc.details["event_id"]) == (
        "integration_sync_failed",
        order,
        delivery.event_id,
    )
    # A failed event stays failed: the task and the sweep leave it alone.
    assert inbound.inbound_event_apply(event_pk=delivery.pk) == "failed"
    send("pick.completed", pick_data(order), at(5))
    send("shipment.confirmed", ship_data(order), at(7))
    assert stored("wms", delivery.event_id).state == "failed"


def test_the_sweep_applies_a_pending_event_whose_kick_was_lost(
    client: Client, partners: dict[str, Partner]
) -> None:
    wh, prod = factories.warehouse("WH1"), factories.product("SKU-1")
    post(
        client,
        "wms",
        envelope("inventory.adjusted", {"warehouse": "WH1", "sku": "SKU-1", "on_hand": 9}, "e1", at(1)),
    )
    assert tasks.retry_deferred_events() == 0  # just received: its kick is on its way
    assert stored("wms", "e1").state == "pending"
    clock.advance(inbound.PENDING_GRACE + timedelta(seconds=1))
    assert tasks.retry_deferred_events() == 1
    assert (stored("wms", "e1").state, Inventory.objects.get(warehouse=wh, product=prod).on_hand) == (
        "applied",
        9,
    )


def test_a_concurrent_update_makes_the_event_wait_not_fail(
    send: Callable[..., InboundEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    order = factories.order_in(S.RELEASED, qty=4)

    def conflict(event: InboundEvent, data: dict[str, Any], actor: Actor) -> str:
        raise ConcurrentUpdate("Order was changed by someone else; reload it and try again.")

    monkeypatch.setitem(inbound.HANDLERS, ("wms", "pick.completed"), conflict)
    event = send("pick.completed", pick_data(order), at(5))
    assert (event.state, event.last_error) == (
        "deferred",
        "Order was changed by someone else; reload it and try again.",
    )
    assert open_exceptions() == []
    monkeypatch.undo()
    assert tasks.retry_deferred_events() == 1
    order.refresh_from_db()
    assert order.status == S.PACKED


# --- a realistic stream, in order and shuffled ----------------------------------------------------

STREAM: list[dict[str, Any]] = json.loads((FIXTURES / "stream_four_orders.json").read_text())["events"]
PROMISED = date(2026, 3, 5)


def stream_world() -> None:
    """The portal before the stream: SO-1001..SO-1003 released, SO-1004 backordered."""
    wh1 = factories.warehouse("WH1", region="north", time_zone="Europe/Berlin")
    wh2 = factories.warehouse("WH2", region="south", time_zone="Europe/Berlin")
    for code in ("DHL", "DPD", "UPS"):
        Carrier.objects.create(code=code, name=code)
    sku = {n: factories.product(f"SKU-0000{n}", price=f"{10 * n}.00") for n in range(1, 5)}
    for wh, n, on_hand in [(wh1, 1, 10), (wh1, 2, 5), (wh1, 3, 8), (wh2, 1, 6)]:
        factories.stock(wh, sku[n], on_hand)
    customer = factories.customer(code="C-STREAM")
    for external_id, wh, lines in [
        ("SO-1001", wh1, [(1, 4), (2, 2)]),
        ("SO-1002", wh1, [(3, 5)]),
        ("SO-1003", wh2, [(1, 3)]),
        ("SO-1004", wh1, [(4, 6)]),
    ]:
        order = services.order_create(
            external_id=external_id,
            customer_code=customer.code,
            warehouse_code=wh.code,
            promised_date=PROMISED,
            ship_to=factories.ship_to(),
            lines=[services.LineInput(sku=sku[n].sku, quantity=q, unit_price=sku[n].price) for n, q in lines],
            actor=factories.SYSTEM,
        )
        flows.order_intake(order=order, actor=factories.SYSTEM)


def snapshot() -> dict[str, Any]:
    """The state that must not depend on the order the events arrived in (no ids, no
    times of application)."""

    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "orders": {
            o.external_id: (o.status, [t.transition for t in o.transitions.order_by("id")])
            for o in Order.objects.prefetch_related("transitions").order_by("external_id")
        },
        "lines": sorted(
            OrderLine.objects.values_list(
                "order__external_id", "product__sku", "allocated_quantity", "shipped_quantity"
            )
        ),
        "allocations": sorted(
            Allocation.objects.values_list("line__order__external_id", "warehouse__code", "quantity")
        ),
        "shipments": {
            s.external_id: (
                s.order.external_id,
                s.warehouse.code,
                s.carrier.code,
                s.tracking,
                s.tracking_status,
                iso(s.eta),
                iso(s.tracking_updated_at),
                iso(s.shipped_at),
                iso(s.delivered_at),
                s.signed_by,
                sorted(s.lines.values_list("product__sku", "quantity")),
            )
            for s in Shipment.objects.select_related("order", "warehouse", "carrier")
        },
        "inventory": {
            (i.warehouse.code, i.product.sku): (i.on_hand, i.allocated, iso(i.counted_at))
            for i in Inventory.objects.select_related("warehouse", "product")
        },
        "open_exceptions": sorted(
            OrderException.objects.filter(is_open=True).values_list("type__code", "order__external_id")
        ),
        "returns": sorted(Return.objects.values_list("reference", "order__external_id", "reason")),
        "outbox": Counter(OutboxMessage.objects.values_list("topic", "subject_ref")),
    }


def play(client: Client, items: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Deliver the events in this order, let the sweep run, and take the snapshot; then
    undo everything so the next order starts from the same world.

    Every event ends applied or skipped (superseded): none waits, none failed, and every
    id but the four resent ones was accepted once. Returns the snapshot and the ids of
    the superseded events.
    """
    with transaction.atomic():
        acks = Counter(deliver(client, item["partner"], item["event"]) for item in items)
        while tasks.retry_deferred_events():
            pass
        assert acks == {"accepted": 25, "duplicate": 4}
        assert set(InboundEvent.objects.values_list("state", flat=True)) <= {"applied", "skipped"}
        state = snapshot()
        skipped = sorted(InboundEvent.objects.filter(state="skipped").values_list("event_id", flat=True))
        transaction.set_rollback(True)
    return state, skipped


TO_RELEASED = ["receive", "start_credit_check", "pass_credit_check", "allocate_in_full", "release"]
EXPECTED_ORDERS = {
    "SO-1001": (S.DELIVERED, [*TO_RELEASED, "start_picking", "pack", "ship_in_full", "deliver"]),
    "SO-1002": (S.PARTIALLY_SHIPPED, [*TO_RELEASED, "start_picking", "pack", "ship_partially"]),
    "SO-1003": (S.SHIPPED, [*TO_RELEASED, "start_picking", "pack", "ship_in_full"]),
    "SO-1004": (
        S.RELEASED,
        ["receive", "start_credit_check", "pass_credit_check", "backorder", "allocate_in_full", "release"],
    ),
}


def test_the_stream_in_its_original_order(client: Client, partners: dict[str, Partner]) -> None:
    stream_world()
    state, skipped = play(client, STREAM)
    assert skipped == ["evt_inv_wh1_sku3_0110"]  # the late count, older than the one before it
    assert state["orders"] == EXPECTED_ORDERS
    assert state["inventory"] == {
        ("WH1", "SKU-00001"): (6, 0, "2026-03-02T08:04:30+00:00"),
        ("WH1", "SKU-00002"): (3, 0, "2026-03-02T08:00:30+00:00"),
        ("WH1", "SKU-00003"): (3, 0, "2026-03-02T08:03:00+00:00"),
        ("WH1", "SKU-00004"): (12, 6, "2026-03-02T08:05:00+00:00"),
        ("WH2", "SKU-00001"): (3, 0, "2026-03-02T08:04:50+00:00"),
    }
    assert state["lines"] == [
        ("SO-1001", "SKU-00001", 0, 4), ("SO-1001", "SKU-00002", 0, 2), ("SO-1002", "SKU-00003", 0, 3),
        ("SO-1003", "SKU-00001", 0, 3), ("SO-1004", "SKU-00004", 6, 0),
    ]  # fmt: skip
    assert state["allocations"] == [("SO-1004", "WH1", 6)]
    assert {sid: (s[0], s[4], s[8], s[9]) for sid, s in state["shipments"].items()} == {
        "SHP-0FA99BD457": ("SO-1001", "delivered", "2026-03-02T08:04:00+00:00", "Ada Lovelace"),
        "SHP-ECCF769F63": ("SO-1002", "delivered", "2026-03-02T08:04:20+00:00", "Ada Lovelace"),
        "SHP-1CD35EBD24": ("SO-1003", "failed", None, ""),
    }
    assert state["open_exceptions"] == [
        ("delivery_failed", "SO-1003"), ("late_shipment_risk", "SO-1003"), ("pick_short", "SO-1002"),
    ]  # fmt: skip
    assert state["returns"] == [("evt_ret_so1001_0600", "SO-1001", "Damaged in transit")]
    assert state["outbox"]["erp.invoice", "SO-1001"] == 1
    assert state["outbox"]["order.release", "SO-1004"] == 1


def shuffles() -> list[list[dict[str, Any]]]:
    """Ten seeded shuffles, and the hard orders: reversed, and each kind of news first."""
    orders = []
    for seed in range(10):
        items = list(STREAM)
        random.Random(seed).shuffle(items)
        orders.append(items)
    orders.append(list(reversed(STREAM)))
    backwards = ["return.initiated", "delivery.confirmed", "tracking.updated", "inventory.adjusted",
                 "shipment.confirmed", "pick.completed"]  # fmt: skip
    orders.append(sorted(STREAM, key=lambda item: backwards.index(item["event"]["type"])))
    return orders


def test_shuffled_streams_end_in_the_same_state(client: Client, partners: dict[str, Partner]) -> None:
    stream_world()
    expected, _ = play(client, STREAM)
    assert expected["orders"] == EXPECTED_ORDERS  # the baseline is the one checked above
    for n, items in enumerate(shuffles()):
        assert [i["event"]["id"] for i in items] != [i["event"]["id"] for i in STREAM]
        state, _ = play(client, items)
        assert state == expected, f"shuffle {n} ended differently"
