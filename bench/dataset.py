"""The benchmark's data, made through the project's own bulk paths.

- Master data (customers, warehouses, products, planners, partners, endpoints): bulk
  inserts, as the demo scenario makes them; there is no service for master data.
- Orders: ``orders.services.orders_import`` in batches, the ERP's bulk path. The rows are
  generated deterministically, so the raw baseline inserts exactly the same rows.
- Open work items with their exceptions: built with the work queue's own ranking and SLA
  helpers (``workqueue.rank``, ``workqueue.schedule_sla``) and bulk-inserted, as the
  stall sweep does it.

Time: everything is made with the clock frozen relative to ``anchor`` (the start of the
run), so that the sweeps, which run with the clock frozen at their phase's moment, see the
same data whenever and however fast the run goes: orders were received 20 minutes
before, fresh items are 1 to 50 minutes old (no rule threshold, SLA warning or state
deadline is reached), and a fixed number of aged items and stalled orders is due.
"""

import random
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, User
from django.db import transaction

from bench.config import Catalogue
from exceptions.models import ExceptionType, OrderException
from fulfillment.core import clock, roles, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.models import EscalationRule, Queue, WorkItem, WorkItemEvent
from integrations.models import Endpoint, Partner, PartnerSecret
from orders.models import Customer, Order, Product, Tier, Warehouse
from orders.services import LineInput, OrderImport, ShipTo, orders_import

ERP = Actor.named("erp")
BENCH = Actor.named("bench")
SEED = 20261126
PASSWORD = "bench-password-1"
WMS_SECRET = "bench-wms-secret"
WAREHOUSES = [
    ("WH1", "Hamburg", "north", "Europe/Berlin"),
    ("WH2", "Munich", "south", "Europe/Berlin"),
    ("WH3", "Rotterdam", "west", "Europe/Amsterdam"),
    ("WH4", "Lyon", "south", "Europe/Paris"),
    ("WH5", "Leeds", "west", "Europe/London"),
]
TIERS = [Tier.STRATEGIC] * 1 + [Tier.KEY] * 2 + [Tier.STANDARD] * 5 + [Tier.SMALL] * 2
CITIES = [
    ("Hamburg", "20095", "DE"),
    ("Lyon", "69001", "FR"),
    ("Leeds", "LS1", "GB"),
    ("Delft", "2611", "NL"),
]
# Queue slug -> the exception types raised there, for the open items.
ITEM_TYPES = {
    "planning": ["inventory_shortfall", "pick_short", "carrier_booking_failed"],
    "customer-service": ["late_shipment_risk", "invalid_address"],
    "integration": ["integration_sync_failed"],
}
QUEUE_SHARES = [("planning", 85), ("customer-service", 10), ("integration", 5)]
ITEM_EVERY = 5  # one open item for every fifth order

# Moments relative to the sweep moment of each phase (see the module docstring).
RECEIVED_BEFORE = timedelta(minutes=20)
FRESH_ITEMS = (timedelta(minutes=50), timedelta(minutes=1))
AGED_BEFORE = timedelta(days=3)
PHASE_GAP = timedelta(minutes=5)


def sweep_moment(anchor: datetime, phase: int) -> datetime:
    return anchor + phase * PHASE_GAP


def master_data(*, customers: int, products: int, planners: int) -> Catalogue:
    rng = random.Random(SEED)
    with transaction.atomic():
        Warehouse.objects.bulk_create(
            Warehouse(code=code, name=name, region=region, time_zone=zone, cutoff_time=time(16))
            for code, name, region, zone in WAREHOUSES
        )
        Customer.objects.bulk_create(
            (
                Customer(
                    code=f"C{n:05d}",
                    name=f"Customer {n}",
                    tier=rng.choice(TIERS),
                    credit_limit=Decimal(rng.choice([50_000, 250_000, 1_000_000])),
                )
                for n in range(1, customers + 1)
            ),
            batch_size=1000,
        )
        Product.objects.bulk_create(
            (
                Product(
                    sku=f"SKU-{n:06d}",
                    description=f"Product {n}",
                    price=Decimal(rng.randint(100, 50_000)) / 100,
                    cost=Decimal(rng.randint(50, 20_000)) / 100,
                )
                for n in range(1, products + 1)
            ),
            batch_size=1000,
        )
        names = [f"planner{n:02d}" for n in range(1, planners + 1)]
        hashed = make_password(PASSWORD)  # once: hashing is slow on purpose
        users = User.objects.bulk_create(User(username=name, password=hashed) for name in names)
        planner_group = Group.objects.get(name=roles.PLANNER)
        User.groups.through.objects.bulk_create(
            User.groups.through(user_id=user.pk, group_id=planner_group.pk) for user in users
        )
        wms, _ = Partner.objects.get_or_create(name="wms")
        PartnerSecret.objects.create(partner=wms, secret=WMS_SECRET)
    return Catalogue(
        customers=[f"C{n:05d}" for n in range(1, customers + 1)],
        warehouses=[code for code, *_ in WAREHOUSES],
        prices=list(Product.objects.order_by("sku").values_list("sku", "price")),
        planners=names,
    )


def endpoints(base_url: str) -> None:
    """Every outbound endpoint pointing at the simulator."""
    for name in ("erp", "wms", "carrier", "notify"):
        Endpoint.objects.update_or_create(
            name=name, defaults={"base_url": base_url, "enabled": True, "timeout_seconds": 5.0}
        )


# --- orders --------------------------------------------------------------------------


def order_rows(catalogue: Catalogue, first: int, count: int, anchor: datetime) -> list[OrderImport]:
    """Orders ``first`` .. ``first + count - 1``: the same rows for the same numbers, every run."""
    rng = random.Random(SEED * 7919 + first)
    today = anchor.date()
    rows = []
    for n in range(first, first + count):
        lines = rng.sample(catalogue.prices, k=rng.choice((1, 2, 3, 3, 4, 5)))
        city, postal_code, country = rng.choice(CITIES)
        rows.append(
            OrderImport(
                external_id=f"ERP-{n:08d}",
                customer_code=rng.choice(catalogue.customers),
                promised_date=today + timedelta(days=rng.randint(3, 30)),
                ship_to=ShipTo(f"Receiving {n}", f"{n % 997 + 1} Dock Road", city, postal_code, country),
                lines=[
                    LineInput(sku=sku, quantity=rng.randint(1, 20), unit_price=price) for sku, price in lines
                ],
                warehouse_code=rng.choice(catalogue.warehouses) if rng.random() < 0.8 else None,
            )
        )
    return rows


def order_batches(
    catalogue: Catalogue, first: int, count: int, batch: int, anchor: datetime
) -> Iterator[list[OrderImport]]:
    for start in range(first, first + count, batch):
        yield order_rows(catalogue, start, min(batch, first + count - start), anchor)


def import_orders(batches: Iterator[list[OrderImport]], received_at: datetime) -> tuple[int, int]:
    """Through the ERP's bulk path with the clock at ``received_at``; returns (orders, rows
    written: orders + lines + timeline rows)."""
    orders = rows = 0
    with clock.frozen(received_at):
        for batch in batches:
            created = orders_import(rows=batch, actor=ERP)
            orders += created
            rows += 2 * created + sum(len(row.lines) for row in batch)
    return orders, rows


# --- open work items -----------------------------------------------------------------


def _promised_at(promised: date, zone_name: str | None) -> datetime:
    """As ``exceptions.services.promised_at``: the end of the promised day at the warehouse."""
    return datetime.combine(promised, time.max, tzinfo=ZoneInfo(zone_name or "UTC"))


def open_items(
    *,
    orders: list[int],
    created_between: tuple[datetime, datetime],
    seed: int,
    promised_shift: timedelta | None = None,
) -> int:
    """One open exception (work item, 'opened' event, OrderException) about each order.

    ``promised_shift`` moves the promised time (aged items: promised in the past)."""
    rng = random.Random(seed)
    queues = {q.slug: q for q in Queue.objects.filter(slug__in=ITEM_TYPES)}
    types = {
        t.code: t
        for t in ExceptionType.objects.filter(code__in=[t for ts in ITEM_TYPES.values() for t in ts])
    }
    clocks = {slug: workqueue.working_time(queue) for slug, queue in queues.items()}
    slugs = [slug for slug, share in QUEUE_SHARES for _ in range(share)]
    first, last = created_between
    span = (last - first).total_seconds()
    total = 0
    for start in range(0, len(orders), 5000):
        chunk = orders[start : start + 5000]
        found = Order.objects.filter(pk__in=chunk).values_list(
            "pk", "external_id", "customer__code", "customer__tier", "warehouse__code",
            "warehouse__time_zone", "total", "promised_date",
        )  # fmt: skip
        items, exceptions = [], []
        for pk, ref, customer_code, tier, wh_code, zone, total_value, promised in found:
            slug = rng.choice(slugs)
            ex_type = types[rng.choice(ITEM_TYPES[slug])]
            promised_at = _promised_at(promised, zone)
            if promised_shift is not None:
                promised_at += promised_shift
            item = WorkItem(
                queue=queues[slug],
                kind=WorkItem.Kind.EXCEPTION,
                type=ex_type.code,
                title=f"{ex_type.name} on {ref}",
                subject_ref=ref,
                customer_code=customer_code,
                customer_tier=tier,
                warehouse_code=wh_code or "",
                revenue_at_risk=total_value,
                promised_at=promised_at,
                severity=ex_type.severity,
                sla_minutes=ex_type.sla_minutes,
                created_at=first + timedelta(seconds=rng.uniform(0, span)),
            )
            workqueue.rank(item)
            workqueue.schedule_sla(item, clocks[slug])
            items.append(item)
            exceptions.append((pk, ex_type))
        with transaction.atomic():
            WorkItem.objects.bulk_create(items)
            WorkItemEvent.objects.bulk_create(
                WorkItemEvent(item=item, action="opened", actor_system=BENCH.system, at=item.created_at)
                for item in items
            )
            OrderException.objects.bulk_create(
                OrderException(work_item=item, type=ex_type, order_id=pk, last_signal_at=item.created_at)
                for item, (pk, ex_type) in zip(items, exceptions, strict=True)
            )
        total += len(items)
    return total


def order_ids(first_external: int, count: int, every: int = ITEM_EVERY) -> list[int]:
    """Database ids of every ``every``-th order among ERP-<first> .. ERP-<first + count - 1>."""
    refs = [f"ERP-{n:08d}" for n in range(first_external, first_external + count, every)]
    ids: list[int] = []
    for start in range(0, len(refs), 10_000):
        ids += Order.objects.filter(external_id__in=refs[start : start + 10_000]).values_list("pk", flat=True)
    return sorted(ids)


# --- escalation rules ------------------------------------------------------------------


def escalation_rules(count: int) -> int:
    """``count`` rules of every trigger and action, saved through the rule service."""
    from fulfillment.core.escalation import rule_save

    queues = {q.slug: q for q in Queue.objects.all()}
    T = EscalationRule.Trigger
    N = EscalationRule.Notify
    kinds = [
        {"trigger": T.UNCLAIMED_FOR, "trigger_value": 60},
        {"trigger": T.UNCLAIMED_FOR, "trigger_value": 240, "customer_tier": Tier.STRATEGIC},
        {"trigger": T.PAST_SLA, "trigger_value": 0},
        {"trigger": T.SLA_SHARE, "trigger_value": 75},
        {"trigger": T.PROMISED_WITHIN, "trigger_value": 24},
    ]
    scopes = ["planning", "customer-service", "integration", None]
    saved = 0
    for n in range(count):
        scope = scopes[n % len(scopes)]
        data = {
            **kinds[n % len(kinds)],
            "name": f"bench rule {n + 1:02d}",
            "queue": queues[scope] if scope else None,
            "raise_level": n % 3 != 2,
            "notify": [N.NOBODY, N.TEAM, N.ASSIGNEE][n % 3],
        }
        if n % 4 == 1:
            data["min_revenue"] = Decimal(1000)
        if n % 10 == 9 and scope == "customer-service":
            data["move_to"] = queues["planning"]
        rule_save(data=data, actor=BENCH)
        saved += 1
    return saved
