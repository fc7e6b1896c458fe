import itertools
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import F, QuerySet
from django.test import override_settings
from django_fsm import GET_STATE
from pytest_django import DjangoDbBlocker

from approvals.models import ApprovalRequest
from exceptions.models import OrderException
from exceptions.services import promised_at, stall_sweep
from flows.intake import erp_order_upsert
from fulfillment.core import clock, roles
from fulfillment.core.actors import Actor
from fulfillment.core.models import EscalationRule, WorkItem
from integrations.models import Endpoint, InboundEvent, PartnerSecret
from integrations.simulator import Config as SimulatorConfig
from integrations.simulator.config import load_catalog
from integrations.simulator.erp import random_order
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
from portal.management.scenario import work

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
ORDERS = 300
SEED = 7
HOLDS_NO_STOCK = {
    Status.RECEIVED, Status.CREDIT_CHECK, Status.CREDIT_HOLD, Status.ALLOCATING, Status.BACKORDERED,
    Status.CANCELLED, Status.SHIPPED, Status.DELIVERED, Status.INVOICED, Status.CLOSED,
}  # fmt: skip
NEAR_LIMIT = Decimal("0.85")
SHIPPED_IN_FULL = {Status.SHIPPED, Status.DELIVERED, Status.INVOICED, Status.CLOSED}


def build(catalog: Path, **options: object) -> str:
    out = StringIO()
    with clock.frozen(NOW):
        call_command(
            "demo_data", orders=ORDERS, seed=SEED, catalog=catalog, verbosity=0, stdout=out, **options
        )
    return out.getvalue()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the simulator's catalog goes: not the checkout's var/, which a demo may be using."""
    return tmp_path_factory.mktemp("demo") / "simulator-catalog.json"


@pytest.fixture(scope="module")
def demo(django_db_setup: None, django_db_blocker: DjangoDbBlocker, catalog: Path) -> Iterator[str]:
    """One demo run shared by the module, rolled back at its end; passwords hashed the
    fast way tests/conftest.py sets for each test, so that they check there."""
    with (
        django_db_blocker.unblock(),
        override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]),
        transaction.atomic(),
    ):
        yield build(catalog)
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
            shipped_value = sum(line.shipped_quantity * line.unit_price for line in lines)
            assert [i.amount for i in invoices] == [shipped_value]
            assert shipped_value == order.total or "close_short" in moves
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
    assert all(set(row.data) == {"warehouse", "picked", "short", "picked_at"} for row in picks)
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


def test_if_empty_does_nothing_once_there_are_orders(catalog: Path) -> None:
    before = Order.objects.count(), OrderTransition.objects.count(), User.objects.count()
    out = build(catalog, if_empty=True)
    assert "demo data not loaded" in out
    assert (Order.objects.count(), OrderTransition.objects.count(), User.objects.count()) == before


def test_refuses_a_database_with_orders(catalog: Path) -> None:
    with pytest.raises(CommandError, match="fresh database"):
        build(catalog)


def fingerprint() -> list[tuple]:
    rows = OrderTransition.objects.order_by("order__external_id", "at", "id")
    return [
        *Order.objects.order_by("external_id").values_list(
            "external_id", "customer__code", "status", "total"
        ),
        *rows.values_list("order__external_id", "transition", "at", "actor_system", "data"),
        *Inventory.objects.order_by("warehouse__code", "product__sku").values_list("on_hand", "allocated"),
    ]


def test_the_same_seed_gives_the_same_data(catalog: Path) -> None:
    first = fingerprint()
    ApprovalRequest.objects.all().delete()
    OrderException.objects.all().delete()
    WorkItem.objects.all().delete()
    Order.objects.all().delete()
    Inventory.objects.all().delete()
    Product.objects.all().delete()
    Customer.objects.all().delete()
    build(catalog)
    assert fingerprint() == first


# --- the integrations for the demo and the work items it opens ------------------------------


def test_the_integrations_point_at_the_simulator() -> None:
    secrets = PartnerSecret.objects.order_by("partner__name").values_list(
        "partner__name", "secret", "is_active"
    )
    assert list(secrets) == [("carrier", "demo-carrier-secret", True), ("wms", "demo-wms-secret", True)]
    endpoints = Endpoint.objects.order_by("name").values_list(
        "name", "base_url", "enabled", "timeout_seconds"
    )
    assert list(endpoints) == [
        (name, "http://127.0.0.1:8100", True, 2.0) for name in ("carrier", "erp", "notify", "wms")
    ]
    assert SimulatorConfig().timeout_seconds > 2.0, "the portal gives up before the simulator's timeouts end"


def test_the_catalog_is_what_the_database_holds(catalog: Path) -> None:
    document = json.loads(catalog.read_text())
    loaded = load_catalog(str(catalog))  # the simulator's own reader takes it
    assert (
        loaded.warehouses
        == document["warehouses"]
        == sorted(Warehouse.objects.values_list("code", flat=True))
    )
    assert loaded.carriers == sorted(Carrier.objects.values_list("code", flat=True))
    customers = Customer.objects.in_bulk(document["customers"], field_name="code")
    assert len(customers) == len(document["customers"]) == 41
    assert [c.credit_blocked for c in customers.values()].count(True) == 1
    assert len(loaded.skus) == len(document["skus"]) == 62
    stock = {
        (i.product.sku, i.warehouse.code): i for i in Inventory.objects.select_related("product", "warehouse")
    }
    out_of_stock = []
    for sku in loaded.skus:
        product = Product.objects.get(sku=sku.sku)
        assert Decimal(sku.price) == product.price
        assert sku.on_hand == {wh: stock[(sku.sku, wh)].on_hand for wh in loaded.warehouses}
        if not any(sku.on_hand.values()):
            out_of_stock.append(sku.sku)
            continue
        assert product.price <= 500
        assert all(stock[(sku.sku, wh)].available >= 40 for wh in loaded.warehouses)
    assert len(out_of_stock) == 2


def test_the_simulators_orders_from_the_catalog_go_through(catalog: Path) -> None:
    """An order the simulator makes of the catalog passes the credit check, is allocated in
    full and released; the blocked customer's waits for finance; an out-of-stock SKU is short."""
    loaded = load_catalog(str(catalog))
    stocked = replace(loaded, skus=[s for s in loaded.skus if any(s.on_hand.values())])
    blocked = set(Customer.objects.filter(credit_blocked=True).values_list("code", flat=True))
    rng = random.Random(3)
    statuses = Counter()
    with clock.frozen(NOW):
        for n, code in enumerate(loaded.customers):
            payload = {**random_order(stocked, rng, NOW.date()), "customer": code, "external_id": f"ERP-T{n}"}
            order = erp_order_upsert(payload=payload, actor=Actor.named("erp")).order
            assert order.status == (Status.CREDIT_HOLD if code in blocked else Status.RELEASED), payload
            statuses[order.status] += 1
        missing = next(s for s in loaded.skus if not any(s.on_hand.values()))
        payload = {
            **random_order(stocked, rng, NOW.date()),
            "customer": loaded.customers[0],
            "external_id": "ERP-S",
        }
        payload["lines"] = [
            *payload["lines"],
            {"sku": missing.sku, "quantity": 2, "unit_price": missing.price},
        ]
        short = erp_order_upsert(payload=payload, actor=Actor.named("erp")).order
    assert statuses == {Status.RELEASED: 40, Status.CREDIT_HOLD: 1}
    assert short.status == Status.PARTIALLY_ALLOCATED
    assert OrderException.objects.get(order=short, is_open=True).details["shortfall"] == {missing.sku: 2}


def test_if_empty_on_a_database_with_data_sets_up_the_integrations_again(catalog: Path) -> None:
    PartnerSecret.objects.filter(partner__name="carrier").delete()
    Endpoint.objects.filter(name="erp").delete()
    Endpoint.objects.filter(name="wms").update(base_url="https://wms.example.com", timeout_seconds=9)
    catalog.unlink()

    out = build(catalog, if_empty=True)

    assert "demo data not loaded" in out
    assert "partners wms, carrier are set up now; simulator catalog" in out
    assert "Demo logins (password for all: demo):" in out and "finance  / demo / finance" in out
    assert PartnerSecret.objects.get(partner__name="carrier").secret == "demo-carrier-secret"
    assert Endpoint.objects.get(name="erp").base_url == "http://127.0.0.1:8100"
    wms = Endpoint.objects.get(name="wms")
    assert (wms.base_url, wms.timeout_seconds) == ("https://wms.example.com", 9), "an admin's change stays"
    assert len(json.loads(catalog.read_text())["skus"]) == 62

    before = sorted(PartnerSecret.objects.values_list("pk", "secret")), Endpoint.objects.count()
    again = build(catalog, if_empty=True)
    assert "are set up; simulator catalog" in again and "Demo logins" in again
    assert (sorted(PartnerSecret.objects.values_list("pk", "secret")), Endpoint.objects.count()) == before


def open_items(type_code: str) -> QuerySet[WorkItem]:
    return WorkItem.objects.filter(type=type_code, state=WorkItem.State.OPEN)


def test_credit_holds_and_high_value_orders_wait_for_finance() -> None:
    holds = Order.objects.filter(status=Status.CREDIT_HOLD)
    requests = ApprovalRequest.objects.filter(kind="credit_hold").select_related("order", "work_item")
    assert sorted(r.order_id for r in requests) == sorted(holds.values_list("pk", flat=True))
    assert len(requests) > 3
    for request in requests:
        check = request.order.transitions.filter(transition="fail_credit_check").latest("at", "id")
        assert request.figures == check.data and request.figures["passed"] is False
        assert request.work_item.created_at == request.order.status_changed_at
        assert request.work_item.queue.slug == "finance-approvals"
        assert (request.requested_by, request.requested_by_system) == (None, "portal")
        assert request.work_item.title.startswith(f"Credit hold: {request.order.external_id} — ")
    releases = ApprovalRequest.objects.filter(kind="high_value_release")
    awaiting = Order.objects.filter(status=Status.AWAITING_RELEASE).values_list("pk", flat=True)
    assert sorted(releases.values_list("order", flat=True)) == sorted(awaiting)
    assert not ApprovalRequest.objects.exclude(status=ApprovalRequest.Status.PENDING).exists()


def test_orders_short_of_stock_have_a_shortfall_exception_with_their_open_units() -> None:
    short = Order.objects.filter(status__in=[Status.BACKORDERED, Status.PARTIALLY_ALLOCATED])
    exceptions = OrderException.objects.filter(type__code="inventory_shortfall").select_related("order")
    assert sorted(e.order_id for e in exceptions) == sorted(short.values_list("pk", flat=True))
    for exception in exceptions:
        lines = exception.order.lines.select_related("product")
        assert exception.details["shortfall"] == {
            line.product.sku: line.quantity - line.allocated_quantity
            for line in lines
            if line.allocated_quantity < line.quantity
        }
        assert exception.is_open and exception.work_item.queue.slug == "planning"


def test_a_few_picks_came_up_short_and_a_few_deliveries_are_in_trouble() -> None:
    picks = OrderException.objects.filter(type__code="pick_short").select_related("order")
    assert len(picks) == 4
    for exception in picks:
        assert exception.order.status == Status.PACKED
        moves = exception.order.transitions.order_by("at", "id").values_list(
            "transition", "actor_system", "at"
        )
        assert list(moves)[-2:] == [("start_picking", "wms", NOW), ("pack", "wms", NOW)]
        assert len(exception.details["shortfall"]) == 1
    failed = OrderException.objects.filter(type__code="delivery_failed", is_open=True)
    late = OrderException.objects.filter(type__code="late_shipment_risk", is_open=True)
    assert (failed.count(), late.count()) == (3, 5)
    assert {e.order.status for e in [*failed, *late]} == {Status.SHIPPED}
    for exception in late:
        shipment = exception.order.shipments.get(delivered_at=None)
        assert shipment.eta > promised_at(exception.order)


def test_wms_reports_the_portal_cannot_apply_became_integration_exceptions() -> None:
    events = list(InboundEvent.objects.order_by("id"))
    assert [(e.type, e.state, e.partner.name) for e in events] == [
        ("pick.completed", "failed", "wms"), ("pick.completed", "failed", "wms"),
        ("delivery.confirmed", "failed", "wms"),
    ]  # fmt: skip
    exceptions = OrderException.objects.filter(type__code="integration_sync_failed").order_by("id")
    assert [(e.details["event_id"], e.order.external_id) for e in exceptions] == [
        (e.event_id, e.data["order"]) for e in events
    ]
    assert "BRG-99999 are not on order" in events[0].last_error
    theirs = Shipment.objects.get(external_id=events[2].data["shipment_id"])
    assert (
        f"belongs to order {theirs.order.external_id}, not {events[2].data['order']}" in events[2].last_error
    )
    assert [e.order.status for e in exceptions] == [Status.RELEASED, Status.RELEASED, Status.SHIPPED]
    assert theirs.delivered_at is None and theirs.order.status == Status.SHIPPED


def test_example_escalation_rules_and_a_stall_sweep_that_left_nothing_out() -> None:
    rules = EscalationRule.objects.order_by("name")
    assert [(r.name, r.trigger, r.notify, r.notify_user) for r in rules] == [
        ("Finance approvals past their SLA", "past_sla", "user", User.objects.get(username="finance")),
        ("Strategic customers: unclaimed for 2 hours", "unclaimed_for", "", None),
    ]
    stalls = open_items("stalled_order")
    assert stalls.count() > 20
    with clock.frozen(NOW):
        assert stall_sweep(actor=Actor.named("test")) == 0, "the demo's sweep ran after everything else"
    orders_with_items = set(
        WorkItem.objects.filter(state=WorkItem.State.OPEN).values_list("subject_ref", flat=True)
    )
    assert orders_with_items <= set(Order.objects.values_list("external_id", flat=True)) | set(
        InboundEvent.objects.values_list("subject_ref", flat=True)
    )


def test_the_per_order_calls_are_capped_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    ApprovalRequest.objects.all().delete()
    monkeypatch.setattr(work, "CREDIT_HOLD_REQUESTS", 2)
    with clock.frozen(NOW):
        assert work._credit_hold_requests() == 2
    newest = Order.objects.filter(status=Status.CREDIT_HOLD).order_by("-status_changed_at", "-id")[:2]
    assert sorted(ApprovalRequest.objects.values_list("order", flat=True)) == sorted(o.pk for o in newest)
