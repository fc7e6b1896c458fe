import itertools
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import F
from django.test import override_settings
from django_fsm import GET_STATE
from pytest_django import DjangoDbBlocker

from fulfillment.core import clock, roles
from fulfillment.core.actors import Actor
from orders import services
from orders.models import (
    OPEN_FOR_CREDIT,
    Allocation,
    Carrier,
    Customer,
    Inventory,
    Invoice,
    Order,
    OrderLine,
    OrderTransition,
    Product,
    Shipment,
    Status,
    Warehouse,
)
from orders.services import CreditDecision
from portal.demo import DEMO_USERS

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
ORDERS = 300
SEED = 7
HOLDS_NO_STOCK = {
    Status.RECEIVED, Status.CREDIT_CHECK, Status.CREDIT_HOLD, Status.ALLOCATING, Status.BACKORDERED,
    Status.CANCELLED, Status.SHIPPED, Status.DELIVERED, Status.INVOICED, Status.CLOSED,
}  # fmt: skip
NEAR_LIMIT = Decimal("0.85")
SHIPPED_IN_FULL = {Status.SHIPPED, Status.DELIVERED, Status.INVOICED, Status.CLOSED}


def build(**options: object) -> str:
    out = StringIO()
    with clock.frozen(NOW):
        call_command("demo_data", orders=ORDERS, seed=SEED, verbosity=0, stdout=out, **options)
    return out.getvalue()


@pytest.fixture(scope="module")
def demo(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> Iterator[str]:
    """One demo run shared by the module, rolled back at its end; passwords hashed the
    fast way tests/conftest.py sets for each test, so that they check there."""
    with (
        django_db_blocker.unblock(),
        override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]),
        transaction.atomic(),
    ):
        yield build()
        transaction.set_rollback(True)


pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("demo")]


def machine_edges() -> set[tuple[str, str, str]]:
    """(transition, from, to) for every move of the order state machine."""
    edges = set()
    for t in Order().get_all_status_transitions():
        targets = t.target.allowed_states if isinstance(t.target, GET_STATE) else [t.target]
        edges |= {(t.name, t.source, target) for target in targets}
    return edges


def timelines() -> dict[int, list[OrderTransition]]:
    rows = defaultdict(list)
    for row in OrderTransition.objects.order_by("order_id", "at", "id"):
        rows[row.order_id].append(row)
    return rows


def test_every_state_has_orders() -> None:
    counts = Counter(Order.objects.values_list("status", flat=True))
    assert sum(counts.values()) == ORDERS
    assert set(counts) == set(Status.values)


def test_every_timeline_is_a_walk_through_the_state_machine() -> None:
    edges = machine_edges()
    statuses = dict(Order.objects.values_list("id", "status"))
    rows_by_order = timelines()
    assert set(rows_by_order) == set(statuses)
    for order_id, rows in rows_by_order.items():
        first = rows[0]
        assert (first.transition, first.from_state, first.to_state) == ("receive", "", Status.RECEIVED)
        for before, row in itertools.pairwise(rows):
            assert row.from_state == before.to_state
            assert (row.transition, row.from_state, row.to_state) in edges
            assert row.at >= before.at
            if row.transition == "release_hold":
                assert row.to_state == before.from_state, "a released hold returns where it was"
        assert rows[-1].to_state == statuses[order_id]


def test_timeline_rows_name_their_actor() -> None:
    systems = set(OrderTransition.objects.exclude(actor_system="").values_list("actor_system", flat=True))
    users = set(
        OrderTransition.objects.filter(actor_user__isnull=False).values_list(
            "actor_user__username", flat=True
        )
    )
    assert {"erp", "portal", "wms", "carrier"} <= systems
    assert {"cs", "finance"} <= users
    assert not OrderTransition.objects.filter(actor_user__isnull=False).exclude(actor_system="").exists()


def test_credit_checks_carry_the_exposure_figures() -> None:
    keys = set(CreditDecision(True, *[Decimal(0)] * 4, blocked=False).as_data())
    checks = OrderTransition.objects.filter(transition__in=["pass_credit_check", "fail_credit_check"])
    assert checks.filter(transition="fail_credit_check").exists()
    for row in checks:
        data = row.data
        assert set(data) == keys
        exposure = (
            Decimal(data["open_receivables"])
            + Decimal(data["other_open_orders"])
            + Decimal(data["this_order"])
        )
        assert Decimal(data["exposure"]) == exposure
        passed = not data["credit_blocked"] and exposure <= Decimal(data["credit_limit"])
        assert data["passed"] is passed is (row.transition == "pass_credit_check")
        assert Decimal(data["this_order"]) == row.order.total


def test_allocated_stock_is_what_open_orders_hold() -> None:
    held = Counter()
    for wh, product, quantity in Allocation.objects.values_list("warehouse", "line__product", "quantity"):
        held[(wh, product)] += quantity
    stock = {(i.warehouse_id, i.product_id): i for i in Inventory.objects.all()}
    assert all(held[key] == inv.allocated <= inv.on_hand for key, inv in stock.items())
    assert set(held) <= set(stock)
    by_line = Counter()
    for line, quantity in Allocation.objects.values_list("line", "quantity"):
        by_line[line] += quantity
    lines = OrderLine.objects.values_list("id", "quantity", "allocated_quantity", "shipped_quantity")
    for line, quantity, allocated, shipped in lines:
        assert allocated == by_line[line] and allocated + shipped <= quantity
    assert not OrderLine.objects.filter(order__status__in=HOLDS_NO_STOCK, allocated_quantity__gt=0).exists()
    assert OrderLine.objects.filter(order__status=Status.ON_HOLD, allocated_quantity__gt=0).exists()


def test_some_stock_is_short() -> None:
    assert Inventory.objects.filter(on_hand=0).exists()
    backordered = OrderLine.objects.filter(order__status=Status.BACKORDERED)
    assert backordered.exists()
    for line in backordered:
        assert not Inventory.objects.filter(product=line.product, on_hand__gt=0).exists()


def test_orders_add_up() -> None:
    """Totals, shipped quantities and invoices as the order's state says; an order closed
    short counts as shipped with some lines not (or not all) sent."""
    histories = timelines()
    for order in Order.objects.prefetch_related("lines", "shipments", "invoices"):
        lines, moves = list(order.lines.all()), [row.transition for row in histories[order.pk]]
        assert order.total == sum(line.quantity * line.unit_price for line in lines)
        assert order.status_changed_at == histories[order.pk][-1].at
        shipped, ordered = sum(line.shipped_quantity for line in lines), sum(line.quantity for line in lines)
        if order.status == Status.PARTIALLY_SHIPPED or "close_short" in moves:
            assert 0 < shipped < ordered
        elif order.status in SHIPPED_IN_FULL:
            assert shipped == ordered
        else:
            assert shipped == 0 and not order.shipments.all()
        invoices = list(order.invoices.all())
        if order.status in (Status.INVOICED, Status.CLOSED):
            assert [i.amount for i in invoices] == [order.total]
            assert (invoices[0].status == Invoice.InvoiceStatus.PAID) == (order.status == Status.CLOSED)
        else:
            assert not invoices


def test_release_and_pick_rows_carry_what_the_services_record() -> None:
    releases = OrderTransition.objects.filter(transition="release")
    assert releases.exists()
    for row in releases.select_related("order"):
        reserved_at = set(
            Allocation.objects.filter(line__order=row.order).values_list("warehouse__code", flat=True)
        )
        assert len(row.data["warehouses"]) == 1
        assert reserved_at <= set(row.data["warehouses"])
    picks = OrderTransition.objects.filter(transition="start_picking").exclude(data={})
    assert picks.exists()
    assert all(set(row.data) == {"warehouse", "picked", "short"} for row in picks)
    approvals = OrderTransition.objects.filter(transition="request_release_approval")
    assert all(row.reason.startswith(f"Order value {row.order.total} is at or above") for row in approvals)


def test_shipments_are_tracked_and_delivered_orders_signed_for() -> None:
    shipments = Shipment.objects.all()
    assert shipments.exists()
    assert not shipments.filter(tracking="").exists() and not shipments.filter(carrier=None).exists()
    delivered = shipments.filter(order__status__in=[Status.DELIVERED, Status.INVOICED, Status.CLOSED])
    assert not delivered.filter(delivered_at=None).exists()
    assert not delivered.filter(signed_by="").exists()
    for order in Order.objects.filter(status=Status.SHIPPED):
        assert order.shipments.filter(delivered_at=None).exists(), "a shipped order waits for a delivery"


def test_dates_spread_around_today() -> None:
    active = Order.objects.exclude(status__in=[Status.CLOSED, Status.CANCELLED, Status.INVOICED])
    assert active.filter(promised_date__lt=NOW.date()).exists()
    assert active.filter(promised_date__gte=NOW.date()).exists()
    assert all((NOW - o.created_at).days <= 60 for o in active)
    closed = Order.objects.filter(status=Status.CLOSED)
    assert all((NOW - o.created_at).days >= 45 for o in closed)
    assert OrderTransition.objects.filter(at__gt=NOW).count() == 0


def test_master_data() -> None:
    warehouses = Warehouse.objects.all()
    assert warehouses.count() >= 3
    assert len({w.region for w in warehouses}) == len({w.time_zone for w in warehouses}) == warehouses.count()
    assert Carrier.objects.count() >= 2
    assert Customer.objects.count() >= 100
    assert Customer.objects.values("tier").distinct().count() >= 3
    assert Customer.objects.filter(credit_blocked=True).count() >= 3
    assert Customer.objects.filter(open_receivables__gt=0, credit_limit__gt=0).count() >= 100
    assert Product.objects.count() >= 500
    assert not Product.objects.filter(cost__gt=F("price")).exists()


def test_credit_limits_carry_the_open_orders_of_customers_in_good_standing() -> None:
    open_value = Counter()
    for customer_id, total in Order.objects.filter(status__in=OPEN_FOR_CREDIT).values_list(
        "customer", "total"
    ):
        open_value[customer_id] += total
    customers = Customer.objects.all()
    good = [c for c in customers if not c.credit_blocked and c.open_receivables < c.credit_limit * NEAR_LIMIT]
    assert len(good) > len(customers) / 2
    assert all(c.open_receivables + open_value[c.pk] <= c.credit_limit for c in good)
    failed = Order.objects.filter(transitions__transition="fail_credit_check").values_list(
        "customer", flat=True
    )
    assert {c.pk for c in good}.isdisjoint(failed)


def test_the_services_carry_on_from_the_demo_data() -> None:
    """New rows get ids after the demo's (whose ids were handed out by the command)."""
    stock = (
        Inventory.objects.filter(on_hand__gt=F("allocated")).select_related("product", "warehouse").first()
    )
    customer = Customer.objects.filter(credit_blocked=False).order_by("-credit_limit").first()
    actor = Actor.named("test")
    with clock.frozen(NOW):
        order = services.order_create(
            external_id="SO-NEXT",
            customer_code=customer.code,
            promised_date=NOW.date(),
            ship_to=services.ShipTo("Goods In", "1 Dock Road", "Hull", "HU1 1AA", "GB"),
            lines=[services.LineInput(stock.product.sku, 1, stock.product.price)],
            actor=actor,
            warehouse_code=stock.warehouse.code,
        )
        assert services.order_credit_check(order=order, actor=actor).passed
        services.order_allocate(order=order, actor=actor)
    assert order.status == Status.ALLOCATED
    assert order.transitions.count() == 4


def test_demo_users_one_per_role() -> None:
    for demo in DEMO_USERS:
        user = User.objects.get(username=demo.username)
        assert user.check_password("demo")
        assert list(user.groups.values_list("name", flat=True)) == [demo.role]
        assert user.first_name and user.last_name and user.email
        assert user.is_superuser == user.is_staff == (demo.role == roles.ADMIN)
    assert {d.role for d in DEMO_USERS} == set(roles.ROLES)


def test_logins_are_printed(demo: str) -> None:
    assert "Demo data built in" in demo
    for demo_user in DEMO_USERS:
        assert f"{demo_user.username}" in demo and demo_user.role in demo


def test_if_empty_does_nothing_once_there_are_orders() -> None:
    before = Order.objects.count(), OrderTransition.objects.count(), User.objects.count()
    out = build(if_empty=True)
    assert "demo data not loaded" in out
    assert (Order.objects.count(), OrderTransition.objects.count(), User.objects.count()) == before


def test_refuses_a_database_with_orders() -> None:
    with pytest.raises(CommandError, match="fresh database"):
        build()


def fingerprint() -> list[tuple]:
    rows = OrderTransition.objects.order_by("order__external_id", "at", "id")
    return [
        *Order.objects.order_by("external_id").values_list(
            "external_id", "customer__code", "status", "total"
        ),
        *rows.values_list("order__external_id", "transition", "at", "actor_system", "data"),
        *Inventory.objects.order_by("warehouse__code", "product__sku").values_list("on_hand", "allocated"),
    ]


def test_the_same_seed_gives_the_same_data() -> None:
    first = fingerprint()
    Order.objects.all().delete()
    Inventory.objects.all().delete()
    Product.objects.all().delete()
    Customer.objects.all().delete()
    build()
    assert fingerprint() == first
