"""Test data made through the real services where a service exists."""

import itertools
from datetime import time, timedelta
from decimal import Decimal
from importlib import import_module

from django.apps import apps
from django.contrib.auth.models import Group, User
from django.db import transaction

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from orders import services
from orders.models import (
    Allocation,
    Customer,
    Inventory,
    Invoice,
    Order,
    OrderLine,
    OrderTransition,
    Product,
    Shipment,
    ShipmentLine,
    Status,
    Tier,
    Warehouse,
)

_seq = itertools.count(1)
SYSTEM = Actor.named("test")


def user(username: str | None = None, *roles: str) -> User:
    u = User.objects.create_user(username or f"user{next(_seq)}", password="pw")
    for role in roles:
        u.groups.add(Group.objects.get_or_create(name=role)[0])
    return u


def customer(**kw: object) -> Customer:
    n = next(_seq)
    defaults = {
        "code": f"C{n:05d}",
        "name": f"Customer {n}",
        "tier": Tier.STANDARD,
        "credit_limit": Decimal("100000"),
    }
    return Customer.objects.create(**{**defaults, **kw})


def warehouse(code: str | None = None, region: str = "north", **kw: object) -> Warehouse:
    n = next(_seq)
    return Warehouse.objects.create(
        code=code or f"W{n}", name=f"Warehouse {n}", region=region, cutoff_time=time(16), **kw
    )


def product(sku: str | None = None, price: str = "10.00", **kw: object) -> Product:
    n = next(_seq)
    return Product.objects.create(
        sku=sku or f"SKU-{n:05d}", description=f"Product {n}", price=Decimal(price),
        cost=Decimal(price) / 2, **kw,
    )  # fmt: skip


def stock(wh: Warehouse, prod: Product, on_hand: int) -> Inventory:
    inv, _ = Inventory.objects.update_or_create(warehouse=wh, product=prod, defaults={"on_hand": on_hand})
    return inv


def ship_to() -> services.ShipTo:
    return services.ShipTo(
        name="Receiving", line1="1 Dock Road", city="Hull", postal_code="HU1", country="GB"
    )


def order(
    cust: Customer | None = None,
    lines: list[tuple[Product, int]] | None = None,
    wh: Warehouse | None = None,
    promised_in_days: int = 5,
    actor: Actor = SYSTEM,
) -> Order:
    cust = cust or customer()
    lines = lines or [(product(), 1)]
    return services.order_create(
        external_id=f"SO-{next(_seq):07d}",
        customer_code=cust.code,
        warehouse_code=wh.code if wh else None,
        promised_date=clock.now().date() + timedelta(days=promised_in_days),
        ship_to=ship_to(),
        lines=[services.LineInput(sku=p.sku, quantity=q, unit_price=p.price) for p, q in lines],
        actor=actor,
    )


def row_counts() -> dict[str, int]:
    """How many order-side rows exist: compare before and after to prove nothing was written."""
    models = [Order, OrderLine, OrderTransition, Allocation, Shipment, ShipmentLine, Invoice]
    return {m.__name__: m.objects.count() for m in models}


def order_in(status: str, cust: Customer | None = None, qty: int = 4, actor: Actor = SYSTEM) -> Order:
    """An order of one line (``qty`` units of a new product at its preferred warehouse)
    driven to ``status`` through the services, the way a real order gets there.

    Stock at the warehouse: none for backordered, ``qty // 2`` for partially allocated,
    ``qty`` otherwise. Partially shipped means one unit shipped.
    """
    s = Status
    wh = warehouse()
    prod = product()
    on_hand = {s.BACKORDERED: 0, s.PARTIALLY_ALLOCATED: qty // 2}.get(status, qty)
    if on_hand:
        stock(wh, prod, on_hand)
    o = order(cust, [(prod, qty)], wh=wh, actor=actor)

    if status == s.ON_HOLD:
        services.order_apply(order=o, transition_name="hold", actor=actor, reason="factory hold")
    elif status == s.CANCELLED:
        services.order_cancel(order=o, actor=actor, reason="factory cancel")
    elif status == s.CREDIT_CHECK:
        with transaction.atomic():
            services._transition(o, "start_credit_check", actor=actor)
    elif status == s.CREDIT_HOLD:
        blocked = o.customer.credit_blocked
        Customer.objects.filter(pk=o.customer_id).update(credit_blocked=True)
        o.customer.refresh_from_db()
        services.order_credit_check(order=o, actor=actor)
        Customer.objects.filter(pk=o.customer_id).update(credit_blocked=blocked)
        o.customer.refresh_from_db()
    elif status != s.RECEIVED:
        assert services.order_credit_check(order=o, actor=actor).passed
        if status != s.ALLOCATING:
            services.order_allocate(order=o, actor=actor)
        if status == s.AWAITING_RELEASE:
            services.order_request_release_approval(order=o, actor=actor)
        elif status not in (s.ALLOCATING, s.BACKORDERED, s.PARTIALLY_ALLOCATED, s.ALLOCATED):
            _drive_from_allocated(o, status, prod, wh, qty, actor)
    assert o.status == status, f"factory reached {o.status}, not {status}"
    return o


def _drive_from_allocated(
    o: Order, status: str, prod: Product, wh: Warehouse, qty: int, actor: Actor
) -> None:
    s = Status
    services.order_release(order=o, actor=actor)
    if status == s.RELEASED:
        return
    services.order_start_picking(order=o, actor=actor)
    if status == s.PICKING:
        return
    services.order_pack(order=o, actor=actor)
    if status == s.PACKED:
        return
    shipped = 1 if status == s.PARTIALLY_SHIPPED else qty
    services.order_record_shipment(
        order=o,
        shipment_id=f"SH-{next(_seq):07d}",
        warehouse_code=wh.code,
        lines=[services.ShippedLine(sku=prod.sku, quantity=shipped)],
        actor=actor,
    )
    if status in (s.PARTIALLY_SHIPPED, s.SHIPPED):
        return
    services.order_confirm_delivery(
        order=o,
        shipment_id=o.shipments.get().external_id,
        delivered_at=clock.now(),
        signed_by="J. Doe",
        actor=actor,
    )
    if status == s.DELIVERED:
        return
    services.order_invoice(order=o, number=f"INV-{next(_seq):07d}", actor=actor)
    if status == s.INVOICED:
        return
    services.order_close(order=o, actor=actor)


def migration_data() -> None:
    """Teams, queues, exception types and approval policies as the data migrations create
    them: a transactional test may start from a database an earlier one flushed."""
    for module in (
        "fulfillment.core.migrations.0002_default_teams_and_queues",
        "exceptions.migrations.0002_default_types_and_deadlines",
        "approvals.migrations.0002_default_policies",
    ):
        import_module(module).create(apps, None)
