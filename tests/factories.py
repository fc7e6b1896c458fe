"""Test data made through the real services where a service exists."""

import itertools
from datetime import time, timedelta
from decimal import Decimal

from django.contrib.auth.models import Group, User

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from orders import services
from orders.models import Customer, Inventory, Order, Product, Tier, Warehouse

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
