"""How big a run is: ``small`` is the CI smoke run, ``full`` the one the targets are about."""

from dataclasses import dataclass
from decimal import Decimal

MEASURES = ("ingest", "sweeps", "queue_page", "api", "claim", "webhook", "relay", "memory")


@dataclass(frozen=True)
class Scale:
    name: str
    # Two sizes of the same data set: orders and open work items at each.
    orders: tuple[int, int]
    items: tuple[int, int]
    batch: int  # orders per orders_import call
    customers: int
    products: int
    planners: int  # planners in the team; the claimers are the first of them
    claimers: tuple[int, ...]
    claim_seconds: float
    page_requests: int
    api_requests: int
    webhooks: int
    webhook_senders: int
    relay_rate: int  # messages per second offered to the relay
    relay_seconds: float
    relay_drain: int  # backlog delivered as fast as possible
    rules: int
    # Items the escalation rules fire on, the same at both sizes: about the work of one
    # minute in a steady state (items crossing a rule's threshold), not a first run.
    aged_items: int
    stalled_orders: int  # orders the stall sweep finds, the same at both sizes


SCALES = {
    "small": Scale(
        name="small",
        orders=(2_000, 20_000),
        items=(1_000, 10_000),
        batch=1_000,
        customers=200,
        products=500,
        planners=6,
        claimers=(1, 2, 4),
        claim_seconds=1.5,
        page_requests=40,
        api_requests=40,
        webhooks=400,
        webhook_senders=4,
        relay_rate=200,
        relay_seconds=4,
        relay_drain=400,
        rules=20,
        aged_items=100,
        stalled_orders=100,
    ),
    "full": Scale(
        name="full",
        orders=(10_000, 1_000_000),
        items=(2_000, 200_000),
        batch=1_000,
        customers=2_000,
        products=5_000,
        planners=10,
        claimers=(1, 2, 4, 8),
        claim_seconds=6,
        page_requests=300,
        api_requests=300,
        webhooks=4_000,
        webhook_senders=4,
        relay_rate=200,
        relay_seconds=30,
        relay_drain=3_000,
        rules=20,
        aged_items=100,
        stalled_orders=500,
    ),
}


@dataclass(frozen=True)
class Catalogue:
    customers: list[str]
    warehouses: list[str]
    prices: list[tuple[str, Decimal]]  # (sku, price)
    planners: list[str]
