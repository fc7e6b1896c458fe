"""Allocation: reserving stock for open quantities across warehouses."""

from decimal import Decimal

import pytest

from flows import fulfilment
from fulfillment.core.actors import Actor
from fulfillment.core.errors import ConcurrentUpdate, InvalidInput, TransitionNotAllowed
from orders import services
from orders.models import Allocation, Inventory, Order, OrderLine, OrderTransition, Product, Status, Warehouse
from tests import factories

S = Status
pytestmark = pytest.mark.django_db
ACTOR = Actor.named("allocator")


def _allocating_order(lines: list[tuple[Product, int]], wh: Warehouse | None = None) -> Order:
    order = factories.order(lines=lines, wh=wh)
    assert services.order_credit_check(order=order, actor=ACTOR).passed
    return order


def _stock(wh: Warehouse, prod: Product) -> tuple[int, int]:
    inv = Inventory.objects.get(warehouse=wh, product=prod)
    return inv.on_hand, inv.allocated


def _allocations(order: Order) -> list[tuple[str, str, int]]:
    return sorted(
        Allocation.objects.filter(line__order=order).values_list(
            "line__product__sku", "warehouse__code", "quantity"
        )
    )


def _line_allocated(order: Order) -> list[int]:
    return list(order.lines.order_by("line_no").values_list("allocated_quantity", flat=True))


def _last_row(order: Order) -> OrderTransition:
    return OrderTransition.objects.filter(order=order).latest("id")


def test_full_allocation() -> None:
    wh = factories.warehouse("W1")
    prod = factories.product("SKU-A")
    factories.stock(wh, prod, 10)
    order = _allocating_order([(prod, 4)], wh=wh)

    result = services.order_allocate(order=order, actor=ACTOR)

    assert (result.status, result.allocated, result.shortfall) == (S.ALLOCATED, {"SKU-A": 4}, {})
    assert Order.objects.get(pk=order.pk).status == S.ALLOCATED
    assert _stock(wh, prod) == (10, 4)
    assert _allocations(order) == [("SKU-A", "W1", 4)]
    assert _line_allocated(order) == [4]
    row = _last_row(order)
    assert (row.transition, row.from_state, row.to_state, row.actor_system) == (
        "allocate_in_full",
        S.ALLOCATING,
        S.ALLOCATED,
        "allocator",
    )
    assert row.data == {"allocated": {"SKU-A": 4}, "shortfall": {}}


def test_partial_allocation() -> None:
    wh = factories.warehouse("W1")
    prod = factories.product("SKU-A")
    factories.stock(wh, prod, 3)
    order = _allocating_order([(prod, 5)], wh=wh)

    result = services.order_allocate(order=order, actor=ACTOR)

    assert (result.status, result.allocated, result.shortfall) == (
        S.PARTIALLY_ALLOCATED,
        {"SKU-A": 3},
        {"SKU-A": 2},
    )
    assert Order.objects.get(pk=order.pk).status == S.PARTIALLY_ALLOCATED
    assert _stock(wh, prod) == (3, 3)
    assert _allocations(order) == [("SKU-A", "W1", 3)]
    assert _line_allocated(order) == [3]
    row = _last_row(order)
    assert (row.transition, row.to_state) == ("allocate_partially", S.PARTIALLY_ALLOCATED)
    assert row.data == {"allocated": {"SKU-A": 3}, "shortfall": {"SKU-A": 2}}


def test_multi_line_one_full_one_short_is_partial() -> None:
    wh = factories.warehouse("W1")
    a, b = factories.product("SKU-A"), factories.product("SKU-B")
    factories.stock(wh, a, 10)
    factories.stock(wh, b, 1)
    order = _allocating_order([(a, 2), (b, 3)], wh=wh)

    result = services.order_allocate(order=order, actor=ACTOR)

    assert (result.status, result.allocated, result.shortfall) == (
        S.PARTIALLY_ALLOCATED,
        {"SKU-A": 2, "SKU-B": 1},
        {"SKU-B": 2},
    )
    assert _line_allocated(order) == [2, 1]
    assert (_stock(wh, a), _stock(wh, b)) == ((10, 2), (1, 1))


@pytest.mark.parametrize("stock_row", ["none", "all_reserved"])
def test_no_stock_backorders_and_reserves_nothing(stock_row: str) -> None:
    wh = factories.warehouse("W1")
    prod = factories.product("SKU-A")
    if stock_row == "all_reserved":
        factories.stock(wh, prod, 2)
        services.order_allocate(order=_allocating_order([(prod, 2)], wh=wh), actor=ACTOR)
    order = _allocating_order([(prod, 5)], wh=wh)
    reservations_before = Allocation.objects.count()

    result = services.order_allocate(order=order, actor=ACTOR)

    assert (result.status, result.allocated, result.shortfall) == (S.BACKORDERED, {}, {"SKU-A": 5})
    assert Order.objects.get(pk=order.pk).status == S.BACKORDERED
    assert _allocations(order) == []
    assert Allocation.objects.count() == reservations_before
    assert _line_allocated(order) == [0]
    if stock_row == "all_reserved":
        assert _stock(wh, prod) == (2, 2)
    else:
        assert not Inventory.objects.filter(product=prod).exists()
    row = _last_row(order)
    assert (row.transition, row.from_state, row.to_state) == ("backorder", S.ALLOCATING, S.BACKORDERED)
    assert row.data == {"allocated": {}, "shortfall": {"SKU-A": 5}}


# --- where the stock comes from ----------------------------------------------------------


def test_preferred_warehouse_first_then_same_region_then_coverage() -> None:
    preferred = factories.warehouse("P", region="north")
    near = factories.warehouse("N", region="north")
    far_small = factories.warehouse("A", region="south")  # first by code, but covers less
    far_big = factories.warehouse("B", region="south")
    prod = factories.product("SKU-A")
    factories.stock(preferred, prod, 2)
    factories.stock(near, prod, 1)
    factories.stock(far_small, prod, 4)
    factories.stock(far_big, prod, 10)
    order = _allocating_order([(prod, 8)], wh=preferred)

    result = services.order_allocate(order=order, actor=ACTOR)

    assert result.status == S.ALLOCATED
    assert _allocations(order) == [("SKU-A", "B", 5), ("SKU-A", "N", 1), ("SKU-A", "P", 2)]
    assert [_stock(w, prod) for w in (preferred, near, far_small, far_big)] == [
        (2, 2),
        (1, 1),
        (4, 0),
        (10, 5),
    ]


def test_same_region_beats_a_warehouse_that_could_cover_everything() -> None:
    preferred = factories.warehouse("P", region="north")  # no stock at all
    near = factories.warehouse("Z", region="north")
    far = factories.warehouse("A", region="south")
    prod = factories.product("SKU-A")
    factories.stock(near, prod, 1)
    factories.stock(far, prod, 50)
    order = _allocating_order([(prod, 3)], wh=preferred)

    services.order_allocate(order=order, actor=ACTOR)

    assert _allocations(order) == [("SKU-A", "A", 2), ("SKU-A", "Z", 1)]


def test_without_a_preference_the_warehouse_covering_most_of_the_order_goes_first() -> None:
    covers_less = factories.warehouse("A", region="north")  # first by code
    covers_more = factories.warehouse("B", region="north")
    a, b = factories.product("SKU-A"), factories.product("SKU-B")
    # Of the 5 + 3 open units, B covers 5 + 1 = 6 and A covers 2 + 3 = 5: B goes first for
    # every line, although A alone could cover SKU-B.
    factories.stock(covers_more, a, 5)
    factories.stock(covers_more, b, 1)
    factories.stock(covers_less, a, 2)
    factories.stock(covers_less, b, 3)
    order = _allocating_order([(a, 5), (b, 3)])

    services.order_allocate(order=order, actor=ACTOR)

    assert _allocations(order) == [("SKU-A", "B", 5), ("SKU-B", "A", 2), ("SKU-B", "B", 1)]
    assert (_stock(covers_less, a), _stock(covers_less, b)) == ((2, 0), (3, 2))


def test_equal_coverage_goes_by_warehouse_code() -> None:
    second = factories.warehouse("WB")
    first = factories.warehouse("WA")
    prod = factories.product("SKU-A")
    factories.stock(second, prod, 5)
    factories.stock(first, prod, 5)
    order = _allocating_order([(prod, 3)])

    services.order_allocate(order=order, actor=ACTOR)

    assert _allocations(order) == [("SKU-A", "WA", 3)]
    assert (_stock(first, prod), _stock(second, prod)) == ((5, 3), (5, 0))


def test_allocation_moves_exactly_the_reserved_units_and_nothing_else() -> None:
    wh, other_wh = factories.warehouse("W1"), factories.warehouse("W2")
    prod, other_prod = factories.product("SKU-A"), factories.product("SKU-B")
    factories.stock(wh, prod, 7)
    factories.stock(other_wh, other_prod, 9)
    factories.stock(wh, other_prod, 4)
    order = _allocating_order([(prod, 6)], wh=wh)
    untouched = list(
        Inventory.objects.exclude(warehouse=wh, product=prod)
        .order_by("pk")
        .values_list("pk", "on_hand", "allocated", "updated_at")
    )

    services.order_allocate(order=order, actor=ACTOR)

    assert _stock(wh, prod) == (7, 6)
    assert (
        list(
            Inventory.objects.exclude(warehouse=wh, product=prod)
            .order_by("pk")
            .values_list("pk", "on_hand", "allocated", "updated_at")
        )
        == untouched
    )


# --- again, when stock arrives -------------------------------------------------------------


def test_backordered_order_is_allocated_when_stock_arrives() -> None:
    wh = factories.warehouse("W1")
    prod = factories.product("SKU-A")
    order = _allocating_order([(prod, 4)], wh=wh)
    services.order_allocate(order=order, actor=ACTOR)
    assert order.status == S.BACKORDERED

    factories.stock(wh, prod, 6)
    result = services.order_allocate(order=order, actor=ACTOR)

    assert (result.status, result.allocated, result.shortfall) == (S.ALLOCATED, {"SKU-A": 4}, {})
    assert _stock(wh, prod) == (6, 4)
    assert _allocations(order) == [("SKU-A", "W1", 4)]
    row = _last_row(order)
    assert (row.transition, row.from_state, row.to_state) == ("allocate_in_full", S.BACKORDERED, S.ALLOCATED)


def test_partially_allocated_order_tops_up_and_keeps_both_reservations() -> None:
    wh = factories.warehouse("W1")
    prod = factories.product("SKU-A")
    factories.stock(wh, prod, 1)
    order = _allocating_order([(prod, 4)], wh=wh)
    services.order_allocate(order=order, actor=ACTOR)

    factories.stock(wh, prod, 3)  # two more arrive
    second = services.order_allocate(order=order, actor=ACTOR)
    assert (second.status, second.allocated, second.shortfall) == (
        S.PARTIALLY_ALLOCATED,
        {"SKU-A": 2},
        {"SKU-A": 1},
    )
    factories.stock(wh, prod, 10)
    third = services.order_allocate(order=order, actor=ACTOR)

    assert (third.status, third.allocated, third.shortfall) == (S.ALLOCATED, {"SKU-A": 1}, {})
    assert _stock(wh, prod) == (10, 4)
    assert _allocations(order) == [("SKU-A", "W1", 1), ("SKU-A", "W1", 1), ("SKU-A", "W1", 2)]
    assert _line_allocated(order) == [4]
    assert list(
        OrderTransition.objects.filter(order=order, transition__startswith="allocate").values_list(
            "from_state", "to_state"
        )
    ) == [
        (S.ALLOCATING, S.PARTIALLY_ALLOCATED),
        (S.PARTIALLY_ALLOCATED, S.PARTIALLY_ALLOCATED),
        (S.PARTIALLY_ALLOCATED, S.ALLOCATED),
    ]


@pytest.mark.parametrize("state", [S.BACKORDERED, S.PARTIALLY_ALLOCATED])
def test_reallocating_without_new_stock_changes_nothing(state: str) -> None:
    order = factories.order_in(state)
    before = factories.row_counts()
    stock_before = list(Inventory.objects.values_list("pk", "on_hand", "allocated"))

    result = services.order_allocate(order=order, actor=ACTOR)

    assert result.status == state
    assert result.allocated == {}
    assert Order.objects.get(pk=order.pk).status == state
    assert factories.row_counts() == before  # no timeline row for a move that did not happen
    assert list(Inventory.objects.values_list("pk", "on_hand", "allocated")) == stock_before


@pytest.mark.parametrize(
    "state", [S.RECEIVED, S.CREDIT_HOLD, S.ALLOCATED, S.ON_HOLD, S.RELEASED, S.CANCELLED]
)
def test_allocating_an_order_in_another_state_is_refused(state: str) -> None:
    order = factories.order_in(state)
    factories.stock(order.warehouse, order.lines.get().product, 100)
    before = factories.row_counts()

    with pytest.raises(TransitionNotAllowed):
        services.order_allocate(order=order, actor=ACTOR)

    assert factories.row_counts() == before
    assert Order.objects.get(pk=order.pk).status == state


def test_allocating_a_stale_copy_of_the_order_is_refused_and_writes_nothing() -> None:
    order = factories.order_in(S.ALLOCATING)
    stale = Order.objects.get(pk=order.pk)
    services.order_apply(order=order, transition_name="hold", actor=ACTOR, reason="check first")
    before = factories.row_counts()

    with pytest.raises(ConcurrentUpdate):
        services.order_allocate(order=stale, actor=ACTOR)

    assert factories.row_counts() == before
    assert Inventory.objects.get(product=order.lines.get().product).allocated == 0
    assert Order.objects.get(pk=order.pk).status == S.ON_HOLD


# --- the intake flow -------------------------------------------------------------------------


def _path(order: Order) -> list[tuple[str, str, str]]:
    return list(
        OrderTransition.objects.filter(order=order)
        .order_by("id")
        .values_list("transition", "from_state", "to_state")
    )


def test_order_intake_end_to_end_to_released() -> None:
    wh = factories.warehouse("W1")
    prod = factories.product("SKU-A", price="25.00")
    factories.stock(wh, prod, 10)
    order = factories.order(factories.customer(credit_limit=Decimal("1000")), [(prod, 4)], wh=wh)

    outcome = fulfilment.order_intake(order=order, actor=ACTOR)

    assert outcome.credit_passed is True
    assert outcome.allocation is not None
    assert (outcome.allocation.allocated, outcome.allocation.shortfall) == ({"SKU-A": 4}, {})
    assert Order.objects.get(pk=order.pk).status == S.RELEASED
    assert _path(order) == [
        ("receive", "", S.RECEIVED),
        ("start_credit_check", S.RECEIVED, S.CREDIT_CHECK),
        ("pass_credit_check", S.CREDIT_CHECK, S.ALLOCATING),
        ("allocate_in_full", S.ALLOCATING, S.ALLOCATED),
        ("release", S.ALLOCATED, S.RELEASED),
    ]
    assert _stock(wh, prod) == (10, 4)
    assert set(OrderTransition.objects.filter(order=order).values_list("actor_system", flat=True)) == {
        "test",
        "allocator",
    }


def test_order_intake_stops_at_credit_hold_without_touching_stock() -> None:
    wh = factories.warehouse("W1")
    prod = factories.product("SKU-A", price="25.00")
    factories.stock(wh, prod, 10)
    order = factories.order(factories.customer(credit_limit=Decimal("99.99")), [(prod, 4)], wh=wh)

    outcome = fulfilment.order_intake(order=order, actor=ACTOR)

    assert (outcome.credit_passed, outcome.allocation) == (False, None)
    assert Order.objects.get(pk=order.pk).status == S.CREDIT_HOLD
    assert _path(order)[-1] == ("fail_credit_check", S.CREDIT_CHECK, S.CREDIT_HOLD)
    assert _stock(wh, prod) == (10, 0)
    assert not Allocation.objects.exists()


@pytest.mark.parametrize(("on_hand", "status"), [(2, S.PARTIALLY_ALLOCATED), (0, S.BACKORDERED)])
def test_order_intake_does_not_release_an_order_that_is_short(on_hand: int, status: str) -> None:
    wh = factories.warehouse("W1")
    prod = factories.product("SKU-A")
    factories.stock(wh, prod, on_hand)
    order = factories.order(lines=[(prod, 4)], wh=wh)

    outcome = fulfilment.order_intake(order=order, actor=ACTOR)

    assert outcome.credit_passed is True
    assert outcome.allocation is not None
    assert outcome.allocation.status == status
    assert Order.objects.get(pk=order.pk).status == status
    assert not OrderTransition.objects.filter(order=order, transition="release").exists()


# --- shipping uses up the reservations at the shipping warehouse only ------------------------


def _assert_reservations_add_up() -> None:
    """Inventory.allocated is the sum of the reservations, per warehouse and SKU, and every
    line's allocated_quantity is the sum of its own."""
    for inv in Inventory.objects.all():
        reserved = Allocation.objects.filter(warehouse=inv.warehouse, line__product=inv.product)
        assert inv.allocated == sum(reserved.values_list("quantity", flat=True)), inv
    for line in OrderLine.objects.all():
        assert line.allocated_quantity == sum(line.allocations.values_list("quantity", flat=True)), line


def _two_warehouse_order(w2_on_hand: int = 10) -> tuple[Order, Order, Warehouse, Warehouse, Product]:
    """Order A wants 5: 3 reserved at W1 (preferred), 2 at W2. Order B holds 4 at W2."""
    w1 = factories.warehouse("W1", region="north")
    w2 = factories.warehouse("W2", region="north")
    prod = factories.product("SKU-A")
    factories.stock(w1, prod, 3)
    factories.stock(w2, prod, w2_on_hand)
    b = _allocating_order([(prod, 4)], wh=w2)
    services.order_allocate(order=b, actor=ACTOR)
    a = _allocating_order([(prod, 5)], wh=w1)
    services.order_allocate(order=a, actor=ACTOR)
    assert _allocations(a) == [("SKU-A", "W1", 3), ("SKU-A", "W2", 2)]
    services.order_release(order=a, actor=ACTOR)
    services.order_start_picking(order=a, actor=ACTOR)
    return a, b, w1, w2, prod


def _ship(order: Order, shipment_id: str, wh: Warehouse, units: int) -> None:
    services.order_record_shipment(
        order=order,
        shipment_id=shipment_id,
        warehouse_code=wh.code,
        lines=[services.ShippedLine(sku="SKU-A", quantity=units)],
        actor=ACTOR,
    )


def test_a_shipment_uses_up_only_the_reservations_at_its_warehouse() -> None:
    a, b, w1, w2, prod = _two_warehouse_order()
    assert (_stock(w1, prod), _stock(w2, prod)) == ((3, 3), (10, 6))

    _ship(a, "SH-W2", w2, 2)

    assert Order.objects.get(pk=a.pk).status == S.PARTIALLY_SHIPPED
    assert (_stock(w1, prod), _stock(w2, prod)) == ((3, 3), (8, 4))
    assert _allocations(a) == [("SKU-A", "W1", 3)]
    assert _allocations(b) == [("SKU-A", "W2", 4)]
    assert list(a.lines.values_list("shipped_quantity", "allocated_quantity")) == [(2, 3)]
    _assert_reservations_add_up()

    _ship(a, "SH-W1", w1, 3)

    assert Order.objects.get(pk=a.pk).status == S.SHIPPED
    assert (_stock(w1, prod), _stock(w2, prod)) == ((0, 0), (8, 4))
    assert _allocations(a) == []
    assert _allocations(b) == [("SKU-A", "W2", 4)]
    assert list(a.lines.values_list("shipped_quantity", "allocated_quantity")) == [(5, 0)]
    _assert_reservations_add_up()


def test_shipping_more_than_reserved_there_takes_free_stock_and_frees_the_surplus_elsewhere() -> None:
    a, b, w1, w2, prod = _two_warehouse_order()

    _ship(a, "SH-W2", w2, 3)  # 2 reserved there + 1 from free stock

    assert (_stock(w1, prod), _stock(w2, prod)) == ((3, 2), (7, 4))  # B keeps its 4 at W2
    assert _allocations(a) == [("SKU-A", "W1", 2)]  # 2 still to ship, 2 reserved
    assert _allocations(b) == [("SKU-A", "W2", 4)]
    assert list(a.lines.values_list("shipped_quantity", "allocated_quantity")) == [(3, 2)]
    _assert_reservations_add_up()

    _ship(a, "SH-W1", w1, 2)

    assert Order.objects.get(pk=a.pk).status == S.SHIPPED
    assert (_stock(w1, prod), _stock(w2, prod)) == ((1, 0), (7, 4))
    assert _allocations(a) == []
    _assert_reservations_add_up()


def test_a_shipment_that_would_eat_another_orders_reservation_is_refused() -> None:
    a, b, w1, w2, prod = _two_warehouse_order(w2_on_hand=7)  # W2: B 4 + A 2 reserved, 1 free
    before = factories.row_counts()

    with pytest.raises(InvalidInput) as caught:
        _ship(a, "SH-W2", w2, 5)  # A's 2 + the free 1 is only 3

    assert caught.value.fields == {"lines": ["Insufficient stock."]}
    assert factories.row_counts() == before
    assert (_stock(w1, prod), _stock(w2, prod)) == ((3, 3), (7, 6))
    assert _allocations(b) == [("SKU-A", "W2", 4)]
    assert Order.objects.get(pk=a.pk).status == S.PICKING
    _assert_reservations_add_up()
