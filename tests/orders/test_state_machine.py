"""The order state machine, transition by transition.

The table below is the machine: if a transition is added, removed or re-pointed in
``orders.models.Order`` the first test fails until this table is changed with it.
"""

from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Sum
from django_fsm import GET_STATE

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.errors import TransitionNotAllowed
from orders import services
from orders.models import HOLDABLE, Allocation, Inventory, Order, OrderTransition, Status
from tests import factories

S = Status

# (transition, source, target) — every allowed move of an order, nothing else.
EXPECTED_TRANSITIONS: set[tuple[str, str, str]] = {
    ("start_credit_check", S.RECEIVED, S.CREDIT_CHECK),
    ("pass_credit_check", S.CREDIT_CHECK, S.ALLOCATING),
    ("fail_credit_check", S.CREDIT_CHECK, S.CREDIT_HOLD),
    ("release_credit_hold", S.CREDIT_HOLD, S.ALLOCATING),
    ("allocate_in_full", S.ALLOCATING, S.ALLOCATED),
    ("allocate_in_full", S.BACKORDERED, S.ALLOCATED),
    ("allocate_in_full", S.PARTIALLY_ALLOCATED, S.ALLOCATED),
    ("allocate_partially", S.ALLOCATING, S.PARTIALLY_ALLOCATED),
    ("allocate_partially", S.BACKORDERED, S.PARTIALLY_ALLOCATED),
    ("allocate_partially", S.PARTIALLY_ALLOCATED, S.PARTIALLY_ALLOCATED),
    ("backorder", S.ALLOCATING, S.BACKORDERED),
    ("request_release_approval", S.ALLOCATED, S.AWAITING_RELEASE),
    ("release", S.ALLOCATED, S.RELEASED),
    ("release", S.AWAITING_RELEASE, S.RELEASED),
    ("release", S.PARTIALLY_ALLOCATED, S.RELEASED),
    ("start_picking", S.RELEASED, S.PICKING),
    ("pack", S.PICKING, S.PACKED),
    ("ship_partially", S.PICKING, S.PARTIALLY_SHIPPED),
    ("ship_partially", S.PACKED, S.PARTIALLY_SHIPPED),
    ("ship_partially", S.PARTIALLY_SHIPPED, S.PARTIALLY_SHIPPED),
    ("ship_in_full", S.PICKING, S.SHIPPED),
    ("ship_in_full", S.PACKED, S.SHIPPED),
    ("ship_in_full", S.PARTIALLY_SHIPPED, S.SHIPPED),
    ("close_short", S.PARTIALLY_SHIPPED, S.SHIPPED),
    ("deliver", S.SHIPPED, S.DELIVERED),
    ("invoice", S.DELIVERED, S.INVOICED),
    ("close", S.INVOICED, S.CLOSED),
    ("hold", S.RECEIVED, S.ON_HOLD),
    ("hold", S.CREDIT_CHECK, S.ON_HOLD),
    ("hold", S.ALLOCATING, S.ON_HOLD),
    ("hold", S.BACKORDERED, S.ON_HOLD),
    ("hold", S.PARTIALLY_ALLOCATED, S.ON_HOLD),
    ("hold", S.ALLOCATED, S.ON_HOLD),
    ("hold", S.AWAITING_RELEASE, S.ON_HOLD),
    # release_hold goes back to wherever the order was held from.
    ("release_hold", S.ON_HOLD, S.RECEIVED),
    ("release_hold", S.ON_HOLD, S.CREDIT_CHECK),
    ("release_hold", S.ON_HOLD, S.ALLOCATING),
    ("release_hold", S.ON_HOLD, S.BACKORDERED),
    ("release_hold", S.ON_HOLD, S.PARTIALLY_ALLOCATED),
    ("release_hold", S.ON_HOLD, S.ALLOCATED),
    ("release_hold", S.ON_HOLD, S.AWAITING_RELEASE),
    ("cancel", S.RECEIVED, S.CANCELLED),
    ("cancel", S.CREDIT_CHECK, S.CANCELLED),
    ("cancel", S.CREDIT_HOLD, S.CANCELLED),
    ("cancel", S.ALLOCATING, S.CANCELLED),
    ("cancel", S.BACKORDERED, S.CANCELLED),
    ("cancel", S.PARTIALLY_ALLOCATED, S.CANCELLED),
    ("cancel", S.ALLOCATED, S.CANCELLED),
    ("cancel", S.AWAITING_RELEASE, S.CANCELLED),
    ("cancel", S.ON_HOLD, S.CANCELLED),
}
TRANSITION_NAMES = sorted({name for name, _, _ in EXPECTED_TRANSITIONS})
ALLOWED_FROM: dict[str, set[str]] = {
    state: {name for name, source, _ in EXPECTED_TRANSITIONS if source == state} for state in Status
}
REASON = "checked by the state machine test"


def machine_transitions() -> set[tuple[str, str, str]]:
    """The transitions as the model declares them, GET_STATE targets expanded."""
    found: set[tuple[str, str, str]] = set()
    for t in Order._meta.get_field("status").get_all_transitions(Order):
        if isinstance(t.target, GET_STATE):
            found.update((t.name, str(t.source), str(target)) for target in t.target.allowed_states)
        else:
            found.add((t.name, str(t.source), str(t.target)))
    return found


def test_the_machine_is_exactly_the_expected_table() -> None:
    assert machine_transitions() == {(n, str(s), str(t)) for n, s, t in EXPECTED_TRANSITIONS}
    assert len(EXPECTED_TRANSITIONS) == 50


def test_every_state_is_reachable_and_only_terminal_states_have_no_way_out() -> None:
    sources = {source for _, source, _ in EXPECTED_TRANSITIONS}
    targets = {target for _, _, target in EXPECTED_TRANSITIONS}
    assert targets | {S.RECEIVED} == set(Status)
    assert set(Status) - sources == {S.CLOSED, S.CANCELLED}


# --- every allowed transition, through the service that makes it -------------------------


# Allocation from a source: stock to set at the preferred warehouse (the order wants 4, a
# partially allocated one holds 2 already), what gets allocated now, what stays short.
ALLOCATION_SETUP: dict[tuple[str, str], tuple[int, int, int]] = {
    ("allocate_in_full", S.ALLOCATING): (4, 4, 0),
    ("allocate_in_full", S.BACKORDERED): (4, 4, 0),
    ("allocate_in_full", S.PARTIALLY_ALLOCATED): (4, 2, 0),
    ("allocate_partially", S.ALLOCATING): (3, 3, 1),
    ("allocate_partially", S.BACKORDERED): (1, 1, 3),
    ("allocate_partially", S.PARTIALLY_ALLOCATED): (3, 1, 1),
    ("backorder", S.ALLOCATING): (0, 0, 4),
}


def _apply(name: str, source: str, order: Order, actor: Actor) -> tuple[str, dict[str, Any]]:
    """Make the move through its service; return the reason and data the row must carry."""
    sku = order.lines.get().product.sku
    if name in ("start_credit_check", "pass_credit_check", "fail_credit_check"):
        # No service makes just this move (order_credit_check makes two; tested on its own).
        with transaction.atomic():
            services._transition(order, name, actor=actor, reason=REASON)
        return REASON, {}
    if name in ("allocate_in_full", "allocate_partially", "backorder"):
        on_hand, now, short = ALLOCATION_SETUP[(name, source)]
        factories.stock(order.warehouse, order.lines.get().product, on_hand)
        services.order_allocate(order=order, actor=actor)
        return "", {"allocated": {sku: now} if now else {}, "shortfall": {sku: short} if short else {}}
    if name in ("hold", "release_hold"):
        services.order_apply(order=order, transition_name=name, actor=actor, reason=REASON)
        return REASON, {}
    if name == "cancel":
        reserved = Allocation.objects.filter(line__order=order).aggregate(n=Sum("quantity"))["n"]
        services.order_apply(order=order, transition_name="cancel", actor=actor, reason=REASON)
        return REASON, ({"released_stock": {sku: reserved}} if reserved else {})
    if name in ("ship_partially", "ship_in_full"):
        line = order.lines.get()
        units = 1 if name == "ship_partially" else line.quantity - line.shipped_quantity
        services.order_record_shipment(
            order=order,
            shipment_id=f"SH-{order.pk}-{source}",
            warehouse_code=order.warehouse.code,
            lines=[services.ShippedLine(sku=sku, quantity=units)],
            actor=actor,
        )
        return "", {"shipment": f"SH-{order.pk}-{source}", "lines": {sku: units}}
    if name == "deliver":
        shipment_id = order.shipments.get().external_id
        services.order_confirm_delivery(
            order=order, shipment_id=shipment_id, delivered_at=clock.now(), signed_by="A. Porter", actor=actor
        )
        return "", {"shipment": shipment_id, "signed_by": "A. Porter"}
    if name == "invoice":
        services.order_invoice(order=order, number=f"INV-T-{order.pk}", actor=actor)
        return "", {"invoice": f"INV-T-{order.pk}"}
    if name == "release":
        services.order_release(order=order, actor=actor, reason=REASON)
        return REASON, {"warehouses": [order.warehouse.code]}
    if name == "close_short":
        services.order_close_short(order=order, actor=actor, reason=REASON)
        return REASON, {}
    with_reason: dict[str, Callable[..., Order]] = {
        "release_credit_hold": services.order_release_credit_hold,
        "request_release_approval": services.order_request_release_approval,
        "close": services.order_close,
    }
    if name in with_reason:
        with_reason[name](order=order, actor=actor, reason=REASON)
        return REASON, {}
    without_reason: dict[str, Callable[..., Order]] = {
        "start_picking": services.order_start_picking,
        "pack": services.order_pack,
    }
    without_reason[name](order=order, actor=actor)
    return "", {}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "source", "target"),
    sorted(EXPECTED_TRANSITIONS),
    ids=[f"{n}:{s}->{t}" for n, s, t in sorted(EXPECTED_TRANSITIONS)],
)
def test_each_allowed_transition_writes_exactly_one_timeline_row(name: str, source: str, target: str) -> None:
    if name == "release_hold":
        order = factories.order_in(target)
        services.order_apply(order=order, transition_name="hold", actor=factories.SYSTEM, reason="hold")
    else:
        order = factories.order_in(source)
    assert order.status == source
    person = factories.user("planner")
    before = set(OrderTransition.objects.filter(order=order).values_list("pk", flat=True))

    reason, data = _apply(name, source, order, Actor.of(person))

    new_rows = list(OrderTransition.objects.filter(order=order).exclude(pk__in=before))
    assert len(new_rows) == 1
    row = new_rows[0]
    assert (row.transition, row.from_state, row.to_state) == (name, source, target)
    assert (row.actor_user_id, row.actor_system, row.actor_label) == (person.pk, "", "planner")
    assert row.reason == reason
    assert row.data == data
    saved = Order.objects.get(pk=order.pk)
    assert saved.status == target
    assert saved.status_changed_at == row.at
    assert order.status == target


# --- forbidden transitions ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("state", list(Status), ids=[str(s) for s in Status])
def test_every_forbidden_transition_raises_and_writes_nothing(state: str) -> None:
    order = factories.order_in(state)
    forbidden = [name for name in TRANSITION_NAMES if name not in ALLOWED_FROM[state]]
    assert forbidden  # from every state most moves are forbidden
    rows_before = factories.row_counts()
    changed_at = Order.objects.get(pk=order.pk).status_changed_at

    for name in forbidden:
        with pytest.raises(TransitionNotAllowed) as caught, transaction.atomic():
            services._transition(order, name, actor=factories.SYSTEM, reason="must not happen")
        assert caught.value.message == (
            f"Order {order.external_id} is {order.get_status_display().lower()}; "
            f"'{name.replace('_', ' ')}' is not allowed from there."
        )
        assert order.status == state

    saved = Order.objects.get(pk=order.pk)
    assert (saved.status, saved.status_changed_at) == (state, changed_at)
    assert factories.row_counts() == rows_before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("state", "call"),
    [
        (S.RECEIVED, lambda o: services.order_release(order=o, actor=factories.SYSTEM)),
        (S.ALLOCATED, lambda o: services.order_close(order=o, actor=factories.SYSTEM)),
        (S.SHIPPED, lambda o: services.order_apply(
            order=o, transition_name="hold", actor=factories.SYSTEM, reason="x")),
        (S.SHIPPED, lambda o: services.order_cancel(order=o, actor=factories.SYSTEM, reason="too late")),
        (S.CLOSED, lambda o: services.order_apply(
            order=o, transition_name="release_hold", actor=factories.SYSTEM, reason="x")),
        (S.CANCELLED, lambda o: services.order_release_credit_hold(
            order=o, actor=factories.SYSTEM, reason="x")),
        (S.DELIVERED, lambda o: services.order_pack(order=o, actor=factories.SYSTEM)),
    ],
    ids=["release-received", "close-allocated", "hold-shipped", "cancel-shipped",
         "release_hold-closed", "release_credit_hold-cancelled", "pack-delivered"],
)  # fmt: skip
def test_a_forbidden_move_through_a_service_raises_and_writes_nothing(
    state: str, call: Callable[[Order], object]
) -> None:
    order = factories.order_in(state)
    rows_before = factories.row_counts()
    stock_before = list(Inventory.objects.order_by("pk").values_list("pk", "on_hand", "allocated"))

    with pytest.raises(TransitionNotAllowed):
        call(order)

    assert Order.objects.get(pk=order.pk).status == state
    assert order.status == state
    assert factories.row_counts() == rows_before
    assert list(Inventory.objects.order_by("pk").values_list("pk", "on_hand", "allocated")) == stock_before


# --- hold and release -------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("state", HOLDABLE, ids=[str(s) for s in HOLDABLE])
def test_hold_then_release_returns_to_the_state_it_was_held_from(state: str) -> None:
    order = factories.order_in(state)
    reserved = list(Allocation.objects.filter(line__order=order).values_list("warehouse_id", "quantity"))
    actor = factories.SYSTEM

    services.order_apply(order=order, transition_name="hold", actor=actor, reason="customer called")
    assert (order.status, order.held_from) == (S.ON_HOLD, state)
    assert Order.objects.get(pk=order.pk).held_from == state
    services.order_apply(order=order, transition_name="release_hold", actor=actor, reason="resolved")

    assert Order.objects.get(pk=order.pk).status == state
    assert list(
        OrderTransition.objects.filter(order=order, transition__in=["hold", "release_hold"])
        .order_by("id")
        .values_list("transition", "from_state", "to_state", "reason")
    ) == [
        ("hold", state, S.ON_HOLD, "customer called"),
        ("release_hold", S.ON_HOLD, state, "resolved"),
    ]
    # Holding neither takes nor gives back stock.
    assert (
        list(Allocation.objects.filter(line__order=order).values_list("warehouse_id", "quantity")) == reserved
    )


@pytest.mark.django_db
def test_held_order_cannot_be_held_again_nor_moved_on() -> None:
    order = factories.order_in(S.ALLOCATED)
    services.order_apply(order=order, transition_name="hold", actor=factories.SYSTEM, reason="check")
    rows_before = factories.row_counts()
    with pytest.raises(TransitionNotAllowed):
        services.order_apply(order=order, transition_name="hold", actor=factories.SYSTEM, reason="again")
    with pytest.raises(TransitionNotAllowed):
        services.order_release(order=order, actor=factories.SYSTEM)
    assert factories.row_counts() == rows_before
    assert Order.objects.get(pk=order.pk).status == S.ON_HOLD


# --- protection --------------------------------------------------------------------------


@pytest.mark.django_db
def test_status_is_protected_against_assignment() -> None:
    order = factories.order_in(S.ALLOCATED)
    with pytest.raises(AttributeError):
        order.status = S.SHIPPED
    assert order.status == S.ALLOCATED
    fresh = Order.objects.get(pk=order.pk)
    with pytest.raises(AttributeError):
        fresh.status = S.CLOSED
    assert Order.objects.get(pk=order.pk).status == S.ALLOCATED


# --- cancel gives stock back --------------------------------------------------------------


@pytest.mark.django_db
def test_cancel_releases_exactly_the_orders_own_allocations() -> None:
    north = factories.warehouse("N1", region="north")
    south = factories.warehouse("S1", region="south")
    prod = factories.product("SKU-CANCEL")
    factories.stock(north, prod, 3)
    factories.stock(south, prod, 5)
    # Another order reserves one unit of the same SKU in the south: it must stay reserved.
    other = factories.order(lines=[(prod, 1)], wh=south)
    services.order_credit_check(order=other, actor=factories.SYSTEM)
    services.order_allocate(order=other, actor=factories.SYSTEM)

    order = factories.order(lines=[(prod, 6)], wh=north)
    services.order_credit_check(order=order, actor=factories.SYSTEM)
    services.order_allocate(order=order, actor=factories.SYSTEM)
    assert order.status == S.ALLOCATED
    assert sorted(
        Allocation.objects.filter(line__order=order).values_list("warehouse__code", "quantity")
    ) == [
        ("N1", 3),
        ("S1", 3),
    ]

    services.order_cancel(order=order, actor=Actor.named("erp"), reason="customer withdrew")

    assert Order.objects.get(pk=order.pk).status == S.CANCELLED
    assert not Allocation.objects.filter(line__order=order).exists()
    assert list(order.lines.values_list("allocated_quantity", flat=True)) == [0]
    assert Inventory.objects.get(warehouse=north, product=prod).allocated == 0
    assert Inventory.objects.get(warehouse=south, product=prod).allocated == 1  # the other order's unit
    assert Inventory.objects.get(warehouse=north, product=prod).on_hand == 3
    assert Inventory.objects.get(warehouse=south, product=prod).on_hand == 5
    assert list(Allocation.objects.filter(line__order=other).values_list("warehouse__code", "quantity")) == [
        ("S1", 1)
    ]
    row = OrderTransition.objects.get(order=order, transition="cancel")
    assert (row.from_state, row.to_state, row.actor_system, row.reason, row.data) == (
        S.ALLOCATED,
        S.CANCELLED,
        "erp",
        "customer withdrew",
        {"released_stock": {"SKU-CANCEL": 6}},
    )


@pytest.mark.django_db
def test_cancel_of_a_held_partially_allocated_order_releases_its_stock() -> None:
    order = factories.order_in(S.PARTIALLY_ALLOCATED)  # 2 of 4 reserved
    line = order.lines.get()
    services.order_apply(order=order, transition_name="hold", actor=factories.SYSTEM, reason="check")

    services.order_apply(order=order, transition_name="cancel", actor=factories.SYSTEM, reason="no longer")

    inv = Inventory.objects.get(warehouse=order.warehouse, product=line.product)
    assert (inv.on_hand, inv.allocated) == (2, 0)
    assert not Allocation.objects.filter(line=line).exists()
    assert OrderTransition.objects.get(order=order, transition="cancel").data == {
        "released_stock": {line.product.sku: 2}
    }
