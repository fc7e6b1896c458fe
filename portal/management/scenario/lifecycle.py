"""Order histories as walks through the order state machine.

A history is the list of moves the real transition methods of ``Order`` make on an
unsaved instance, so it cannot drift from the machine. The tables here only say how
often the business takes each move, how long it takes, who makes it and why; they are
checked against the machine before use.
"""

import itertools
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.management.base import CommandError

from orders.models import Order, Status

S = Status
HOUR = 60.0
DAY = 24 * HOUR
DEFAULT_HIGH_VALUE = Decimal("25000")  # when no approval policy sets the release threshold

# The moves the scenario gives a meaning to.
ALLOCATE_IN_FULL = "allocate_in_full"
ALLOCATE_PARTIALLY = "allocate_partially"
BACKORDER = "backorder"
PASS_CREDIT = "pass_credit_check"
FAIL_CREDIT = "fail_credit_check"
REQUEST_APPROVAL = "request_release_approval"
RELEASE = "release"
START_PICKING = "start_picking"
PACK = "pack"
SHIP_IN_FULL = "ship_in_full"
SHIP_PARTIALLY = "ship_partially"
CLOSE_SHORT = "close_short"
DELIVER = "deliver"
INVOICE = "invoice"
CLOSE = "close"
HOLD = "hold"
CANCEL = "cancel"
NAMED_MOVES = {
    ALLOCATE_IN_FULL, ALLOCATE_PARTIALLY, BACKORDER, PASS_CREDIT, FAIL_CREDIT, REQUEST_APPROVAL, RELEASE,
    START_PICKING, PACK, SHIP_IN_FULL, SHIP_PARTIALLY, CLOSE_SHORT, DELIVER, INVOICE, CLOSE, HOLD, CANCEL,
}  # fmt: skip

# How often the business takes a move when several are open, keyed by move or by
# (move, from state). A move missing here is taken rarely (weight 1).
WEIGHTS: dict[str | tuple[str, str], float] = {
    "start_credit_check": 100, PASS_CREDIT: 90, FAIL_CREDIT: 10, "release_credit_hold": 75,
    ALLOCATE_IN_FULL: 80, ALLOCATE_PARTIALLY: 10, BACKORDER: 10,
    (ALLOCATE_IN_FULL, S.BACKORDERED): 60, (ALLOCATE_PARTIALLY, S.BACKORDERED): 40,
    (ALLOCATE_PARTIALLY, S.PARTIALLY_ALLOCATED): 20, (RELEASE, S.PARTIALLY_ALLOCATED): 15,
    REQUEST_APPROVAL: 10, RELEASE: 90, START_PICKING: 100, PACK: 90,
    SHIP_IN_FULL: 90, SHIP_PARTIALLY: 10, (SHIP_IN_FULL, S.PICKING): 8, (SHIP_PARTIALLY, S.PICKING): 2,
    CLOSE_SHORT: 5,
    DELIVER: 100, INVOICE: 100, CLOSE: 100,
    HOLD: 2, "release_hold": 80, CANCEL: 1, (CANCEL, S.CREDIT_HOLD): 25, (CANCEL, S.ON_HOLD): 20,
}  # fmt: skip
# At most this many of a move per order.
MOVE_LIMITS = {HOLD: 1, ALLOCATE_PARTIALLY: 2, SHIP_PARTIALLY: 2, REQUEST_APPROVAL: 1}

# Minutes a move comes after the previous one (log-uniform between the bounds).
GAP_MINUTES: dict[str | tuple[str, str], tuple[float, float]] = {
    "start_credit_check": (0.05, 2), PASS_CREDIT: (0.01, 0.2), FAIL_CREDIT: (0.01, 0.2),
    "release_credit_hold": (90, 2 * DAY),
    ALLOCATE_IN_FULL: (0.1, 3), ALLOCATE_PARTIALLY: (0.1, 3), BACKORDER: (0.1, 3),
    (ALLOCATE_IN_FULL, S.BACKORDERED): (DAY, 12 * DAY), (ALLOCATE_PARTIALLY, S.BACKORDERED): (DAY, 10 * DAY),
    (ALLOCATE_IN_FULL, S.PARTIALLY_ALLOCATED): (12 * HOUR, 8 * DAY),
    (ALLOCATE_PARTIALLY, S.PARTIALLY_ALLOCATED): (12 * HOUR, 6 * DAY),
    REQUEST_APPROVAL: (0.01, 0.1), RELEASE: (0.01, 30),
    (RELEASE, S.AWAITING_RELEASE): (HOUR, 2 * DAY), (RELEASE, S.PARTIALLY_ALLOCATED): (4 * HOUR, 2 * DAY),
    START_PICKING: (30, 10 * HOUR), PACK: (0.01, 0.1),  # the WMS reports a pick when it is packed
    SHIP_IN_FULL: (30, 8 * HOUR), SHIP_PARTIALLY: (30, 8 * HOUR), CLOSE_SHORT: (DAY, 10 * DAY),
    (SHIP_IN_FULL, S.PARTIALLY_SHIPPED): (DAY, 6 * DAY),
    (SHIP_PARTIALLY, S.PARTIALLY_SHIPPED): (DAY, 5 * DAY),
    DELIVER: (18 * HOUR, 4 * DAY), INVOICE: (10, 12 * HOUR), CLOSE: (14 * DAY, 60 * DAY),
    HOLD: (10, 2 * DAY), "release_hold": (2 * HOUR, 4 * DAY),
    CANCEL: (HOUR, 3 * DAY), (CANCEL, S.ON_HOLD): (DAY, 10 * DAY), (CANCEL, S.CREDIT_HOLD): (DAY, 7 * DAY),
}  # fmt: skip
DEFAULT_GAP = (10.0, 4 * HOUR)

# Who makes a move: a named system, or a demo user (by username).
ACTORS: dict[str | tuple[str, str], tuple[str, ...]] = {
    "receive": ("erp",) * 9 + ("cs",), "release_credit_hold": ("finance",),
    (RELEASE, S.AWAITING_RELEASE): ("finance",), START_PICKING: ("wms",), PACK: ("wms",),
    SHIP_IN_FULL: ("wms",), SHIP_PARTIALLY: ("wms",), CLOSE_SHORT: ("planner", "cs"),
    DELIVER: ("carrier",), INVOICE: ("erp",), CLOSE: ("erp",),
    HOLD: ("cs", "planner"), "release_hold": ("cs", "planner"), CANCEL: ("cs", "cs", "erp"),
}  # fmt: skip
DEFAULT_ACTOR = ("portal",)

REASONS: dict[str | tuple[str, str], tuple[str, ...]] = {
    "release_credit_hold": (
        "Payment received for the overdue invoices.",
        "Temporary limit increase approved by the CFO.",
        "Customer provided a bank guarantee.",
    ),
    (RELEASE, S.AWAITING_RELEASE): (
        "Approved: good payment history.",
        "Approved within the customer's framework agreement.",
    ),
    HOLD: (
        "Customer asked to hold delivery until the site is ready.",
        "Delivery address to be confirmed with the customer.",
        "Pricing query raised by the customer.",
    ),
    "release_hold": ("Customer confirmed; go ahead.", "Address confirmed.", "Pricing agreed."),
    CLOSE_SHORT: (
        "Supplier cannot deliver the rest; the customer accepts the partial delivery.",
        "Customer cancelled the lines still open.",
    ),
    CANCEL: (
        "Customer cancelled: ordered in error.",
        "Customer cancelled: lead time too long.",
        "Duplicate of another order.",
    ),
    (CANCEL, S.CREDIT_HOLD): (
        "Credit hold not resolved within 7 days.",
        "Customer withdrew the order after the credit hold.",
    ),
}

# Share of orders per current state; a state missing here gets 1.
STATE_SHARES = {
    S.RECEIVED: 4, S.CREDIT_CHECK: 1, S.CREDIT_HOLD: 3, S.ALLOCATING: 1, S.BACKORDERED: 4,
    S.PARTIALLY_ALLOCATED: 3, S.ALLOCATED: 4, S.AWAITING_RELEASE: 2, S.RELEASED: 3, S.PICKING: 4,
    S.PACKED: 3, S.PARTIALLY_SHIPPED: 2, S.SHIPPED: 6, S.DELIVERED: 5, S.INVOICED: 7, S.CLOSED: 30,
    S.ON_HOLD: 2, S.CANCELLED: 5,
}  # fmt: skip
# Typical hours an active order has sat in its current state; some are stuck far longer.
DWELL_HOURS = {
    S.RECEIVED: 2, S.CREDIT_CHECK: 1, S.CREDIT_HOLD: 48, S.ALLOCATING: 1, S.BACKORDERED: 144,
    S.PARTIALLY_ALLOCATED: 96, S.ALLOCATED: 10, S.AWAITING_RELEASE: 20, S.RELEASED: 6, S.PICKING: 5,
    S.PACKED: 4, S.PARTIALLY_SHIPPED: 72, S.SHIPPED: 40, S.DELIVERED: 18, S.INVOICED: 480, S.ON_HOLD: 72,
}  # fmt: skip
STUCK_SHARE = 0.25
ACTIVE_WINDOW = 60 * DAY
CLOSED_AGE = (45 * DAY, 240 * DAY)
CANCELLED_MAX_AGE = 150 * DAY


def lookup(table: dict, name: str, source: str, default: Any) -> Any:
    return table.get((name, source), table.get(name, default))


@dataclass(frozen=True)
class Move:
    name: str
    source: str
    target: str


Path = tuple[Move, ...]
RECEIVE = Move("receive", "", S.RECEIVED)


def machine_moves() -> set[tuple[str, str]]:
    """Every (transition, from state) pair the order state machine allows."""
    return {(t.name, t.source) for t in Order().get_all_status_transitions()}


def check_tables(moves: set[tuple[str, str]]) -> None:
    """Fail loudly if a table names a move the machine does not have."""
    names = {name for name, _ in moves} | {RECEIVE.name}
    keys = [*WEIGHTS, *MOVE_LIMITS, *GAP_MINUTES, *ACTORS, *REASONS, *NAMED_MOVES]
    unknown = sorted({str(k) for k in keys if k not in (moves if isinstance(k, tuple) else names)})
    if unknown:
        raise CommandError(f"The demo tables name moves the order state machine lacks: {', '.join(unknown)}.")


def _walk(rng: random.Random) -> Path:
    """One order's life: the unsaved order takes moves the machine offers until none is left."""
    order = Order(status=S.RECEIVED)
    path, done = [RECEIVE], Counter[str]()
    while options := [t for t in order.get_available_status_transitions() if _sensible(t.name, done)]:
        chosen = rng.choices(options, [lookup(WEIGHTS, t.name, t.source, 1) for t in options])[0]
        source = order.status
        getattr(order, chosen.name)()
        path.append(Move(chosen.name, source, order.status))
        done[chosen.name] += 1
    return tuple(path)


def _sensible(name: str, done: Counter[str]) -> bool:
    """Rules the machine leaves to the services: only what was allocated in full ships in
    full, and a partly allocated order ships what it has once."""
    if done[name] >= MOVE_LIMITS.get(name, math.inf):
        return False
    if name == SHIP_IN_FULL:
        return done[ALLOCATE_IN_FULL] > 0
    if name == SHIP_PARTIALLY and not done[ALLOCATE_IN_FULL]:
        return done[SHIP_PARTIALLY] == 0
    return True


def path_pools(rng: random.Random, walks: int = 3000) -> dict[str, list[Path]]:
    """Paths to every state, as prefixes of whole lives, so frequent paths come up often."""
    pools: dict[str, list[Path]] = defaultdict(list)
    for _ in range(walks):
        path = _walk(rng)
        for end in range(1, len(path) + 1):
            pools[path[end - 1].target].append(path[:end])
    missing = [s for s in S if s not in pools]
    if missing:
        raise CommandError(f"No demo path reaches {', '.join(missing)}: adjust WEIGHTS.")
    return pools


@dataclass(frozen=True)
class Facts:
    """What a path implies for the order's lines, stock, shipments and invoice."""

    path: Path
    names: frozenset[str]
    allocations: tuple[int, ...]  # indexes of the moves that allocated stock
    shipments: tuple[int, ...]  # indexes of the moves that shipped

    @classmethod
    def of(cls, path: Path) -> "Facts":
        names = [m.name for m in path]
        return cls(
            path=path,
            names=frozenset(names),
            allocations=tuple(i for i, n in enumerate(names) if n in (ALLOCATE_IN_FULL, ALLOCATE_PARTIALLY)),
            shipments=tuple(i for i, n in enumerate(names) if n in (SHIP_IN_FULL, SHIP_PARTIALLY)),
        )

    def index(self, name: str) -> int:
        return next(i for i, m in enumerate(self.path) if m.name == name)

    @property
    def state(self) -> str:
        return self.path[-1].target

    @property
    def cancelled(self) -> bool:
        return self.path[-1].name == CANCEL

    @property
    def short_at_end(self) -> bool:
        """Some lines are still unallocated (backordered or partly allocated)."""
        return ALLOCATE_IN_FULL not in self.names and (bool(self.allocations) or BACKORDER in self.names)

    @property
    def keep_unshipped(self) -> bool:
        """Fully allocated, but the last shipment was partial: some allocated lines never left."""
        return (
            ALLOCATE_IN_FULL in self.names
            and bool(self.shipments)
            and self.path[self.shipments[-1]].name == SHIP_PARTIALLY
        )

    @property
    def credit(self) -> str:
        return "fail" if FAIL_CREDIT in self.names else "pass" if PASS_CREDIT in self.names else ""

    @property
    def held_from(self) -> str:
        """As ``Order.hold`` leaves it: the state of the last hold, kept after the release."""
        return next((m.source for m in reversed(self.path) if m.name == HOLD), "")


@dataclass(frozen=True)
class Plan:
    facts: Facts
    times: tuple[datetime, ...]  # one per move; the first is the order's creation


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return lo * (hi / lo) ** rng.random()


def _age(rng: random.Random, state: str, busy: float) -> float:
    """Minutes since the order was created, given the minutes its moves took."""
    if state == S.CLOSED:
        return rng.uniform(max(busy + DAY, CLOSED_AGE[0]), CLOSED_AGE[1])
    if state == S.CANCELLED:
        return rng.uniform(busy + HOUR, max(busy + HOUR, CANCELLED_MAX_AGE))
    if rng.random() < STUCK_SHARE:  # what the exception queues are for
        return rng.uniform(min(busy, ACTIVE_WINDOW), ACTIVE_WINDOW)
    return min(busy + rng.expovariate(1 / (DWELL_HOURS.get(state, 24) * HOUR)), ACTIVE_WINDOW)


def _times(rng: random.Random, path: Path, now: datetime) -> tuple[datetime, ...]:
    gaps = [_log_uniform(rng, *lookup(GAP_MINUTES, m.name, m.source, DEFAULT_GAP)) for m in path[1:]]
    busy = sum(gaps)
    age = _age(rng, path[-1].target, busy)
    if busy > age:
        gaps = [g * 0.95 * age / busy for g in gaps]
    created = now - timedelta(minutes=age)
    return tuple(created + timedelta(minutes=m) for m in itertools.accumulate(gaps, initial=0.0))


def plans(rng: random.Random, count: int, now: datetime) -> list[Plan]:
    """Every state at least once, the rest in STATE_SHARES; oldest first."""
    pools = path_pools(rng)
    states = list(S)
    targets = states[:count] + rng.choices(
        states, [STATE_SHARES.get(s, 1) for s in states], k=max(count - len(states), 0)
    )
    result = []
    for state in targets:
        path = rng.choice(pools[state])
        result.append(Plan(Facts.of(path), _times(rng, path, now)))
    result.sort(key=lambda plan: plan.times[0])
    return result
