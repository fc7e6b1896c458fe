"""Real races: threads with their own database connections, released together by a barrier.

PostgreSQL only: SQLite serialises every write transaction, so it cannot show a race.
"""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections
from django.db.models import Sum

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.errors import ConcurrentUpdate
from orders import services
from orders.models import (
    Allocation,
    Inventory,
    Order,
    OrderLine,
    OrderTransition,
    Product,
    Shipment,
    Status,
    Warehouse,
)
from tests import factories

S = Status
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROUNDS = 4  # each race is run this many times over, on fresh rows

Action = Callable[[threading.Barrier], Any]


def collide(*actions: Action) -> list[Any]:
    """Run each action in its own thread (so on its own connection); each loads what it
    needs, then waits at the barrier, so the writes really meet. Returns each action's
    result or the exception it raised, in order."""
    barrier = threading.Barrier(len(actions), timeout=30)
    results: list[Any] = [None] * len(actions)

    def run(i: int, action: Action) -> None:
        try:
            results[i] = action(barrier)
        except Exception as exc:  # handed back to the test, which asserts on it
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, a), daemon=True) for i, a in enumerate(actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racer hung"
    return results


def apply(order_id: int, name: str, who: str, reason: str = "race") -> Action:
    def action(barrier: threading.Barrier) -> Order:
        order = Order.objects.get(pk=order_id)  # both read before either writes
        barrier.wait()
        return services.order_apply(order=order, transition_name=name, actor=Actor.named(who), reason=reason)

    return action


def allocate(order_id: int, who: str) -> Action:
    def action(barrier: threading.Barrier) -> services.AllocationResult:
        order = Order.objects.get(pk=order_id)
        barrier.wait()
        return services.order_allocate(order=order, actor=Actor.named(who))

    return action


def rows(order: Order, *names: str) -> list[tuple[str, str, str, str]]:
    return list(
        OrderTransition.objects.filter(order=order, transition__in=names)
        .order_by("id")
        .values_list("transition", "from_state", "to_state", "actor_system")
    )


def assert_stock_conserved() -> None:
    """Never negative, never over-reserved, and every reserved unit has its Allocation row."""
    for inv in Inventory.objects.all():
        assert 0 <= inv.allocated <= inv.on_hand, inv
        reserved = Allocation.objects.filter(warehouse=inv.warehouse, line__product=inv.product)
        assert inv.allocated == (reserved.aggregate(n=Sum("quantity"))["n"] or 0), inv
    for line in OrderLine.objects.all():
        assert line.allocated_quantity == (line.allocations.aggregate(n=Sum("quantity"))["n"] or 0), line
        assert line.allocated_quantity + line.shipped_quantity <= line.quantity, line


# --- two actors, one order ---------------------------------------------------------------------


def test_two_actors_holding_the_same_order_exactly_one_wins() -> None:
    for _ in range(ROUNDS):
        order = factories.order_in(S.ALLOCATED)

        results = collide(apply(order.pk, "hold", "alice"), apply(order.pk, "hold", "bob"))

        winners = [r for r in results if isinstance(r, Order)]
        losers = [r for r in results if isinstance(r, ConcurrentUpdate)]
        assert (len(winners), len(losers)) == (1, 1), results
        winner = "alice" if isinstance(results[0], Order) else "bob"
        assert rows(order, "hold") == [("hold", S.ALLOCATED, S.ON_HOLD, winner)]
        saved = Order.objects.get(pk=order.pk)
        assert (saved.status, saved.held_from) == (S.ON_HOLD, S.ALLOCATED)
    assert_stock_conserved()


def test_hold_against_cancel_exactly_one_wins_and_stock_follows_the_winner() -> None:
    for _ in range(ROUNDS):
        order = factories.order_in(S.ALLOCATED)  # 4 units reserved
        line = order.lines.get()

        results = collide(apply(order.pk, "hold", "alice"), apply(order.pk, "cancel", "bob", "withdrawn"))

        assert sum(isinstance(r, Order) for r in results) == 1, results
        assert sum(isinstance(r, ConcurrentUpdate) for r in results) == 1, results
        inv = Inventory.objects.get(warehouse=order.warehouse, product=line.product)
        if isinstance(results[0], Order):
            assert rows(order, "hold", "cancel") == [("hold", S.ALLOCATED, S.ON_HOLD, "alice")]
            assert Order.objects.get(pk=order.pk).status == S.ON_HOLD
            assert (inv.on_hand, inv.allocated) == (4, 4)
            assert line.allocations.count() == 1
        else:
            assert rows(order, "hold", "cancel") == [("cancel", S.ALLOCATED, S.CANCELLED, "bob")]
            assert Order.objects.get(pk=order.pk).status == S.CANCELLED
            assert (inv.on_hand, inv.allocated) == (4, 0)
            assert not line.allocations.exists()
    assert_stock_conserved()


def ship(order_id: int, shipment_id: str, sku: str, units: int) -> Action:
    def action(barrier: threading.Barrier) -> Shipment:
        order = Order.objects.select_related("warehouse").get(pk=order_id)
        barrier.wait()
        return services.order_record_shipment(
            order=order,
            shipment_id=shipment_id,
            warehouse_code=order.warehouse.code,
            lines=[services.ShippedLine(sku=sku, quantity=units)],
            actor=Actor.named("wms"),
        )

    return action


def confirm(order_id: int, shipment_id: str) -> Action:
    def action(barrier: threading.Barrier) -> Shipment:
        order = Order.objects.get(pk=order_id)
        barrier.wait()
        return services.order_confirm_delivery(
            order=order,
            shipment_id=shipment_id,
            delivered_at=clock.now(),
            signed_by="Dock",
            actor=Actor.named("carrier"),
        )

    return action


def test_two_allocation_runs_on_the_same_order_reserve_its_stock_once() -> None:
    for _ in range(ROUNDS):
        order = factories.order_in(S.ALLOCATING)  # wants 4
        line = order.lines.get()
        factories.stock(order.warehouse, line.product, 10)

        results = collide(allocate(order.pk, "alice"), allocate(order.pk, "bob"))

        assert sum(isinstance(r, services.AllocationResult) for r in results) == 1, results
        assert sum(isinstance(r, ConcurrentUpdate) for r in results) == 1, results
        inv = Inventory.objects.get(product=line.product)
        assert (inv.on_hand, inv.allocated) == (10, 4)
        assert list(line.allocations.values_list("quantity", flat=True)) == [4]
        assert len(rows(order, "allocate_in_full")) == 1
    assert_stock_conserved()


def test_two_allocation_runs_that_leave_the_order_partially_allocated_do_not_reserve_twice() -> None:
    """Both runs move partially_allocated -> partially_allocated, so the state field alone
    cannot tell that the other run happened; the order's row lock must."""
    for _ in range(ROUNDS):
        wh = factories.warehouse()
        x, y = factories.product(), factories.product()
        factories.stock(wh, x, 2)
        order = factories.order(lines=[(x, 4), (y, 4)], wh=wh)
        services.order_credit_check(order=order, actor=factories.SYSTEM)
        services.order_allocate(order=order, actor=factories.SYSTEM)
        assert order.status == S.PARTIALLY_ALLOCATED
        factories.stock(wh, x, 12)  # the rest of x arrives; y stays short

        results = collide(allocate(order.pk, "alice"), allocate(order.pk, "bob"))

        assert all(isinstance(r, services.AllocationResult) for r in results), results
        assert sorted(r.allocated.get(x.sku, 0) for r in results) == [0, 2]
        assert Inventory.objects.get(product=x).allocated == 4
        assert list(order.lines.order_by("line_no").values_list("allocated_quantity", flat=True)) == [4, 0]
        assert len(rows(order, "allocate_partially")) == 2  # the first run and one of the racers
        assert Order.objects.get(pk=order.pk).status == S.PARTIALLY_ALLOCATED
    assert_stock_conserved()


def test_two_shipments_of_one_order_recorded_at_once_are_both_counted() -> None:
    for n in range(ROUNDS):
        order = factories.order_in(S.PARTIALLY_SHIPPED, qty=4)  # 1 shipped, 3 reserved
        line = order.lines.get()
        sku = line.product.sku

        results = collide(ship(order.pk, f"SH-{n}-A", sku, 1), ship(order.pk, f"SH-{n}-B", sku, 1))

        assert all(isinstance(r, Shipment) for r in results), results
        line.refresh_from_db()
        assert (line.shipped_quantity, line.allocated_quantity) == (3, 1)
        inv = Inventory.objects.get(product=line.product)
        assert (inv.on_hand, inv.allocated) == (1, 1)
        assert Order.objects.get(pk=order.pk).status == S.PARTIALLY_SHIPPED
        assert len(rows(order, "ship_partially")) == 3
    assert_stock_conserved()


def test_two_shipments_of_the_rest_at_once_one_is_refused() -> None:
    for n in range(ROUNDS):
        order = factories.order_in(S.PARTIALLY_SHIPPED, qty=4)  # 3 still to ship
        line = order.lines.get()
        sku = line.product.sku
        factories.stock(order.warehouse, line.product, 10)

        results = collide(ship(order.pk, f"SH-{n}-A", sku, 3), ship(order.pk, f"SH-{n}-B", sku, 3))

        # The second to get the lock finds the order shipped in full meanwhile.
        assert sum(isinstance(r, Shipment) for r in results) == 1, results
        assert sum(isinstance(r, ConcurrentUpdate) for r in results) == 1, results
        line.refresh_from_db()
        assert (line.shipped_quantity, line.allocated_quantity) == (4, 0)
        assert Inventory.objects.get(product=line.product).on_hand == 7
        assert Order.objects.get(pk=order.pk).status == S.SHIPPED
        assert order.shipments.count() == 2  # the factory's first one and one racer's
    assert_stock_conserved()


def test_the_last_two_deliveries_confirmed_at_once_deliver_the_order() -> None:
    for n in range(ROUNDS):
        order = factories.order_in(S.PARTIALLY_SHIPPED, qty=4)
        line = order.lines.get()
        services.order_record_shipment(
            order=order,
            shipment_id=f"SH-{n}-LAST",
            warehouse_code=order.warehouse.code,
            lines=[services.ShippedLine(sku=line.product.sku, quantity=3)],
            actor=factories.SYSTEM,
        )
        assert order.status == S.SHIPPED
        first, last = order.shipments.order_by("id").values_list("external_id", flat=True)

        results = collide(confirm(order.pk, first), confirm(order.pk, last))

        assert all(isinstance(r, Shipment) for r in results), results
        assert not order.shipments.filter(delivered_at__isnull=True).exists()
        assert Order.objects.get(pk=order.pk).status == S.DELIVERED
        assert len(rows(order, "deliver")) == 1


# --- many orders, the last units of one SKU --------------------------------------------------------


def _race_for_stock(stock: dict[Warehouse, int], demands: list[int], prod: Product) -> None:
    for wh, units in stock.items():
        factories.stock(wh, prod, units)
    warehouses = list(stock)
    orders = []
    for i, qty in enumerate(demands):
        o = factories.order(lines=[(prod, qty)], wh=warehouses[i % len(warehouses)])
        assert services.order_credit_check(order=o, actor=factories.SYSTEM).passed
        orders.append(o)

    results = collide(*(allocate(o.pk, f"racer{i}") for i, o in enumerate(orders)))

    assert all(isinstance(r, services.AllocationResult) for r in results), results
    total_stock = sum(stock.values())
    reserved = Inventory.objects.filter(product=prod).aggregate(n=Sum("allocated"))["n"]
    assert reserved == min(sum(demands), total_stock)
    assert sum(sum(r.allocated.values()) for r in results) == reserved
    allocations = Allocation.objects.filter(line__product=prod).aggregate(n=Sum("quantity"))["n"]
    assert (allocations or 0) == reserved
    for wh, units in stock.items():
        assert Inventory.objects.get(warehouse=wh, product=prod).on_hand == units
    for o, result in zip(orders, results, strict=True):
        line = o.lines.get()
        expected = (
            S.ALLOCATED
            if line.allocated_quantity == line.quantity
            else S.PARTIALLY_ALLOCATED
            if line.allocated_quantity
            else S.BACKORDERED
        )
        assert Order.objects.get(pk=o.pk).status == expected == result.status
        assert result.allocated.get(prod.sku, 0) == line.allocated_quantity
    assert_stock_conserved()


def test_two_orders_race_for_the_last_units() -> None:
    for _ in range(ROUNDS):
        prod = factories.product()
        _race_for_stock({factories.warehouse(): 3}, [2, 2], prod)
        lines = OrderLine.objects.filter(product=prod)
        assert sorted(lines.values_list("allocated_quantity", flat=True)) == [1, 2]


@pytest.mark.parametrize(
    ("w1", "w2", "demands"),
    [
        (4, 3, [2, 1, 3, 1, 2, 2, 1, 3]),  # 15 wanted, 7 in stock
        (1, 0, [1, 1, 1, 1, 1, 1, 1, 1]),  # one unit for eight orders
        (9, 9, [2, 1, 3, 1, 2, 2, 1, 3]),  # enough for everyone
        (5, 5, [3, 3, 3, 3, 3, 3, 3, 3]),
    ],
)
def test_eight_orders_race_for_one_sku_across_two_warehouses(w1: int, w2: int, demands: list[int]) -> None:
    for _ in range(3):
        north = factories.warehouse(region="north")
        south = factories.warehouse(region="south")
        _race_for_stock({north: w1, south: w2}, demands, factories.product())
