"""Orders made from planned histories, with the rows the services would have left behind."""

import itertools
import math
import operator
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.contrib.auth.models import User
from django.core.management.color import no_style
from django.db import connection, models
from django.db.models import Max

from orders.models import (
    OPEN_FOR_CREDIT,
    Allocation,
    Carrier,
    Customer,
    Invoice,
    Order,
    OrderLine,
    OrderTransition,
    Shipment,
    ShipmentLine,
    Status,
    Tier,
    Warehouse,
)
from orders.services import CreditDecision
from portal.management.scenario.lifecycle import (
    ACTORS,
    ALLOCATE_IN_FULL,
    ALLOCATE_PARTIALLY,
    BACKORDER,
    CLOSE,
    CLOSE_SHORT,
    DEFAULT_ACTOR,
    DELIVER,
    FAIL_CREDIT,
    INVOICE,
    PACK,
    PASS_CREDIT,
    REASONS,
    RELEASE,
    REQUEST_APPROVAL,
    START_PICKING,
    Facts,
    Move,
    Plan,
    lookup,
)
from portal.management.scenario.master_data import (
    CARRIERS,
    COUNTRIES,
    Catalogue,
    CustomerBook,
    money,
)

WRITE_BATCH = 5000
TIER_SHARE_OF_ORDERS = {Tier.STRATEGIC: 25, Tier.KEY: 30, Tier.STANDARD: 33, Tier.SMALL: 12}
TIER_DISCOUNT = {Tier.STRATEGIC: 0.12, Tier.KEY: 0.08, Tier.STANDARD: 0.03, Tier.SMALL: 0.0}
LINE_COUNTS, LINE_COUNT_WEIGHTS = (1, 2, 3, 4, 5, 6), (25, 25, 20, 15, 10, 5)
QUANTITIES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
QUANTITY_WEIGHTS = (14, 14, 10, 10, 9, 6, 6, 7, 4, 4, 5, 3, 3, 2, 3)
DISPUTED_SHARE = 0.06
SIGNERS_FIRST = ("A.", "B.", "C.", "D.", "E.", "F.", "G.", "H.", "J.", "K.", "L.", "M.")
SIGNERS_LAST = ("Meyer", "Rossi", "Smith", "Nowak", "Jensen", "García", "Popescu", "Murphy", "Weber")


def _adapter(model_field: models.Field) -> Callable[[Any], Any] | None:
    """The backend's own conversion of a Python value for this column, if it needs one."""
    ops = connection.ops
    if isinstance(model_field, models.DateTimeField):
        return ops.adapt_datetimefield_value
    if isinstance(model_field, models.DateField):
        return ops.adapt_datefield_value
    if isinstance(model_field, models.DecimalField):
        return partial(
            ops.adapt_decimalfield_value,
            max_digits=model_field.max_digits,
            decimal_places=model_field.decimal_places,
        )
    if isinstance(model_field, models.JSONField):
        return partial(ops.adapt_json_value, encoder=model_field.encoder)
    return None


class Table:
    """Rows of one model, inserted with ``executemany``.

    100,000 orders make about 1.5 million rows in these tables; a model instance per row
    and a compiled ``bulk_create`` made that take several minutes. The values here are
    converted by the backend's adapters, ids are handed out in order and the sequences
    reset afterwards (``OrderTables.finish``).
    """

    def __init__(self, model: type[models.Model], now: datetime) -> None:
        fields = model._meta.concrete_fields
        self.model = model
        self.values_of = operator.itemgetter(*(f.attname for f in fields))
        self.adapters = [(i, adapt) for i, f in enumerate(fields) if (adapt := _adapter(f))]
        self.defaults = {f.attname: now if getattr(f, "auto_now", False) else f.get_default() for f in fields}
        self.pk_name = model._meta.pk.attname
        self.next_id = (model.objects.aggregate(top=Max("pk"))["top"] or 0) + 1
        self.rows: list[tuple] = []
        quote = connection.ops.quote_name
        self.sql = "INSERT INTO {} ({}) VALUES ({})".format(
            quote(model._meta.db_table),
            ", ".join(quote(f.column) for f in fields),
            ", ".join(["%s"] * len(fields)),
        )

    def add(self, **values: Any) -> int:
        if not values.keys() <= self.defaults.keys():
            raise TypeError(f"{self.model.__name__} has no {set(values) - set(self.defaults)}")
        pk, self.next_id = self.next_id, self.next_id + 1
        self.rows.append(self.values_of({**self.defaults, **values, self.pk_name: pk}))
        return pk

    def write(self) -> int:
        with connection.cursor() as cursor:
            for start in range(0, len(self.rows), WRITE_BATCH):
                cursor.executemany(self.sql, self._adapted(self.rows[start : start + WRITE_BATCH]))
        written, self.rows = len(self.rows), []
        return written

    def _adapted(self, rows: list[tuple]) -> list[tuple]:
        """Convert column by column: one adapter call per value, no per-row branching."""
        if not rows:
            return rows
        columns = list(zip(*rows, strict=True))
        for i, adapt in self.adapters:
            columns[i] = tuple(map(adapt, columns[i]))
        return list(zip(*columns, strict=True))


class OrderTables:
    """The order tables, written in foreign-key order."""

    def __init__(self, now: datetime) -> None:
        self.orders = Table(Order, now)
        self.lines = Table(OrderLine, now)
        self.transitions = Table(OrderTransition, now)
        self.allocations = Table(Allocation, now)
        self.shipments = Table(Shipment, now)
        self.shipment_lines = Table(ShipmentLine, now)
        self.invoices = Table(Invoice, now)
        self.all = (
            self.orders, self.lines, self.transitions, self.allocations, self.shipments,
            self.shipment_lines, self.invoices,
        )  # fmt: skip

    def write(self) -> Counter[str]:
        return Counter({str(t.model._meta.verbose_name_plural): t.write() for t in self.all})

    def finish(self) -> None:
        """Move the id sequences past the ids given here (PostgreSQL; SQLite keeps up itself)."""
        statements = connection.ops.sequence_reset_sql(no_style(), [t.model for t in self.all])
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)


def _cuts(rng: random.Random, items: Sequence, parts: int) -> list[list]:
    """Split items into ``parts`` non-empty runs."""
    bounds = [0, *sorted(rng.sample(range(1, len(items)), parts - 1)), len(items)]
    return [list(items[a:b]) for a, b in itertools.pairwise(bounds)]


@dataclass(slots=True)
class LinePlan:
    product: int  # catalogue index
    quantity: int
    allocated_by: int | None = None  # index of the move that allocated it
    shipped_by: int | None = None  # index of the move that shipped it
    line_id: int = 0


@dataclass(slots=True)
class Draft:
    """One order: drafted first for all orders, written later."""

    plan: Plan
    seq: int
    warehouse: Warehouse  # where its stock is allocated and shipped from
    tier: str
    lines: list[LinePlan]
    customer: Customer
    total: Decimal
    order_id: int = 0
    data: dict[int, dict[str, Any]] = field(default_factory=dict)  # timeline data by move index

    @property
    def facts(self) -> Facts:
        return self.plan.facts

    def time_of(self, name: str) -> datetime:
        return self.plan.times[self.facts.index(name)]


class OrderMaker:
    """Turns planned histories into consistent rows: lines, timeline, allocations,
    shipments, invoices, and the stock the open orders hold.

    Each order is drafted first (customer, lines, value), so that the customers' credit
    limits can carry their orders (``credit_needs``) before anything is written.
    """

    def __init__(
        self,
        rng: random.Random,
        now: datetime,
        catalogue: Catalogue,
        book: CustomerBook,
        warehouses: list[Warehouse],
        carriers: dict[str, Carrier],
        users: dict[str, User],
        high_value: Decimal,
    ) -> None:
        self.rng, self.now, self.catalogue, self.book, self.users = rng, now, catalogue, book, users
        self.high_value = high_value  # orders at or above it wait for a release approval
        self.tables = OrderTables(now)
        self.warehouses = warehouses
        self.home = {wh.region: wh for wh in warehouses}
        self.region_share = [sum(c.share for c in COUNTRIES if c.region == wh.region) for wh in warehouses]
        self.carriers = [(spec, carriers[spec.code]) for spec in CARRIERS]
        self.reserved: Counter[tuple[int, int]] = Counter()  # (warehouse id, product index) -> units
        self.open_value: Counter[str] = Counter()  # customer code -> value of its open orders
        self.largest: dict[str, Decimal] = {}  # customer code -> its largest order
        self.tier_prices = {
            tier: [money(float(p.price) * (1 - discount)) for p in catalogue.products]
            for tier, discount in TIER_DISCOUNT.items()
        }

    def draft(self, plan: Plan, seq: int) -> Draft:
        rng, facts = self.rng, plan.facts
        tiers = [Tier.STRATEGIC, Tier.KEY] if REQUEST_APPROVAL in facts.names else list(TIER_SHARE_OF_ORDERS)
        tier = rng.choices(tiers, [TIER_SHARE_OF_ORDERS[t] for t in tiers])[0]
        wh = rng.choices(self.warehouses, self.region_share)[0]
        lines = self._lines(facts, wh)
        total = self._price(lines, tier, high_value=REQUEST_APPROVAL in facts.names)
        customer = self.book.choose(rng, facts.credit, tier, wh.region)
        if facts.state in OPEN_FOR_CREDIT:
            self.open_value[customer.code] += total
        self.largest[customer.code] = max(total, self.largest.get(customer.code, total))
        return Draft(plan, seq, wh, tier, lines, customer, total)

    def credit_needs(self) -> dict[str, Decimal]:
        """What each customer's orders take from its credit: the open ones, or the largest one."""
        return {code: max(self.open_value[code], largest) for code, largest in self.largest.items()}

    def write(self, draft: Draft) -> None:
        """Add the order's rows to the tables; the customers must be saved by now."""
        facts = draft.facts
        self._order(draft)
        self._order_lines(draft)
        self._move_data(draft)
        self._shipments(draft)
        if INVOICE in facts.names:
            self._invoice(draft)
        self._timeline(draft)

    # lines and value

    def _lines(self, facts: Facts, wh: Warehouse) -> list[LinePlan]:
        """Allocated lines come from the warehouse's stock, short ones from SKUs out everywhere."""
        rng, catalogue = self.rng, self.catalogue
        count = rng.choices(LINE_COUNTS, LINE_COUNT_WEIGHTS)[0]
        if not facts.allocations:
            backordered = BACKORDER in facts.names
            picked = catalogue.pick_missing(rng, count) if backordered else catalogue.pick(rng, None, count)
            return [LinePlan(p, self._quantity(p)) for p in picked]
        shipping_runs = len(facts.shipments) + facts.keep_unshipped
        short = rng.choice((1, 1, 1, 2)) if facts.short_at_end else 0
        allocated = max(len(facts.allocations), shipping_runs, count - short, 1)
        lines = [LinePlan(p, self._quantity(p)) for p in catalogue.pick(rng, wh.pk, allocated)]
        for move, run in zip(facts.allocations, _cuts(rng, lines, len(facts.allocations)), strict=True):
            for line in run:
                line.allocated_by = move
        if shipping_runs:  # with keep_unshipped the last run stays in the warehouse
            for move, run in zip(facts.shipments, _cuts(rng, lines, shipping_runs), strict=False):
                for line in run:
                    line.shipped_by = move
        return lines + [LinePlan(p, self._quantity(p)) for p in catalogue.pick_missing(rng, short)]

    def _quantity(self, product: int) -> int:
        quantity = self.rng.choices(QUANTITIES, QUANTITY_WEIGHTS)[0]
        return quantity * 5 if self.catalogue.products[product].price < 10 else quantity

    def _price(self, lines: list[LinePlan], tier: str, *, high_value: bool) -> Decimal:
        """High-value orders reach the release-approval threshold; the others stay below it."""
        prices = self.tier_prices[tier]

        def total() -> Decimal:
            return sum((prices[line.product] * line.quantity for line in lines), Decimal(0))

        if high_value and total() < self.high_value:
            factor = math.ceil(float(self.high_value) * self.rng.uniform(1.05, 2.5) / float(total()))
            for line in lines:
                line.quantity *= factor
        while not high_value and total() >= self.high_value:
            biggest = max(lines, key=lambda line: prices[line.product] * line.quantity)
            if biggest.quantity == 1:
                break
            biggest.quantity //= 2
        return total()

    # rows

    def _order(self, draft: Draft) -> None:
        facts, times, customer = draft.facts, draft.plan.times, draft.customer
        site = self.rng.choice(self.book.sites[customer.code])
        draft.order_id = self.tables.orders.add(
            external_id=f"SO-{draft.seq:07d}", customer_id=customer.pk,
            warehouse_id=self.home[self.book.region[customer.code]].pk, status=facts.state,
            held_from=facts.held_from, status_changed_at=times[-1],
            promised_date=(times[0] + timedelta(days=self.rng.randint(2, 10))).date(), total=draft.total,
            ship_to_name=site.name, ship_to_line1=site.line1, ship_to_city=site.city,
            ship_to_postal_code=site.postal_code, ship_to_country=site.country,
            created_at=times[0], updated_at=times[-1],
        )  # fmt: skip

    def _order_lines(self, draft: Draft) -> None:
        """Lines and reservations as the services leave them: shipping uses a line's
        reservation up, cancelling or closing short gives it back; only what waits to ship
        holds stock."""
        wh, given_back = draft.warehouse, draft.facts.cancelled or CLOSE_SHORT in draft.facts.names
        for n, line in enumerate(draft.lines, start=1):
            holds = line.allocated_by is not None and line.shipped_by is None and not given_back
            line.line_id = self.tables.lines.add(
                order_id=draft.order_id, line_no=n, product_id=self.catalogue.products[line.product].pk,
                quantity=line.quantity, unit_price=self.tier_prices[draft.tier][line.product],
                allocated_quantity=line.quantity if holds else 0,
                shipped_quantity=0 if line.shipped_by is None else line.quantity,
            )  # fmt: skip
            if holds:
                self.tables.allocations.add(
                    line_id=line.line_id, warehouse_id=wh.pk, quantity=line.quantity,
                    created_at=draft.plan.times[line.allocated_by],
                )  # fmt: skip
                self.reserved[(wh.pk, line.product)] += line.quantity

    def _sku(self, line: LinePlan) -> str:
        return self.catalogue.products[line.product].sku

    def _move_data(self, draft: Draft) -> None:
        """The figures the services put on the timeline for credit, stock and release moves."""
        path, wh = draft.facts.path, draft.warehouse
        for i, move in enumerate(path):
            if move.name in (PASS_CREDIT, FAIL_CREDIT):
                decision = self._credit(draft.customer, draft.total, passed=move.name == PASS_CREDIT)
                draft.data[i] = decision.as_data()
            elif move.name in (ALLOCATE_IN_FULL, ALLOCATE_PARTIALLY, BACKORDER):
                draft.data[i] = self._allocation_data(draft, i)
            elif move.name == RELEASE:
                draft.data[i] = {"warehouses": [wh.code]}
            elif move.name == START_PICKING and i + 1 < len(path) and path[i + 1].name == PACK:
                picked = {
                    self._sku(line): line.quantity for line in draft.lines if line.allocated_by is not None
                }
                draft.data[i] = {
                    "warehouse": wh.code, "picked": picked, "short": {},
                    "picked_at": draft.plan.times[i].isoformat(),
                }  # fmt: skip
        if draft.facts.cancelled and draft.facts.allocations:
            released = {
                self._sku(line): line.quantity for line in draft.lines if line.allocated_by is not None
            }
            draft.data[len(path) - 1] = {"released_stock": released}

    def _credit(self, customer: Customer, total: Decimal, *, passed: bool) -> CreditDecision:
        """Figures that give the decision taken: exposure within the limit, or beyond it."""
        limit = float(customer.credit_limit)
        headroom = limit - float(customer.open_receivables) - float(total)
        if passed:
            others = max(headroom, 0) * self.rng.uniform(0, 0.9)
        elif customer.credit_blocked:
            others = limit * self.rng.uniform(0, 0.2)
        else:
            others = max(headroom, 0) + limit * self.rng.uniform(0.01, 0.15)
        return CreditDecision(
            passed=passed, credit_limit=customer.credit_limit, open_receivables=customer.open_receivables,
            other_open_orders=money(others), this_order=total, blocked=customer.credit_blocked,
        )  # fmt: skip

    def _allocation_data(self, draft: Draft, move: int) -> dict[str, Any]:
        allocated, shortfall = {}, {}
        for line in draft.lines:
            if line.allocated_by == move:
                allocated[self._sku(line)] = line.quantity
            elif line.allocated_by is None or line.allocated_by > move:
                shortfall[self._sku(line)] = line.quantity
        return {"allocated": allocated, "shortfall": shortfall}

    def _shipments(self, draft: Draft) -> None:
        facts = draft.facts
        delivered_at = draft.time_of(DELIVER) if DELIVER in facts.names else None
        for k, move in enumerate(facts.shipments):
            last = k == len(facts.shipments) - 1
            awaited = last and facts.state == Status.SHIPPED  # the shipment the order waits for
            external_id = f"SHP-{draft.seq:07d}-{k + 1}"
            shipment_id, signed_by = self._shipment(
                draft, move, external_id, delivered_at, last=last, awaited=awaited
            )
            sent = [line for line in draft.lines if line.shipped_by == move]
            for line in sent:
                self.tables.shipment_lines.add(
                    shipment_id=shipment_id,
                    product_id=self.catalogue.products[line.product].pk,
                    quantity=line.quantity,
                )
            draft.data[move] = {
                "shipment": external_id,
                "lines": {self._sku(line): line.quantity for line in sent},
            }
            if delivered_at and last:
                draft.data[facts.index(DELIVER)] = {"shipment": external_id, "signed_by": signed_by}

    def _shipment(
        self,
        draft: Draft,
        move: int,
        external_id: str,
        delivered_at: datetime | None,
        *,
        last: bool,
        awaited: bool,
    ) -> tuple[int, str]:
        """A shipment, delivered if the order was or if it has had time to arrive; returns
        its id and who signed for it."""
        rng = self.rng
        spec, carrier = rng.choices(self.carriers, [spec.share for spec, _ in self.carriers])[0]
        shipped_at = draft.plan.times[move]
        arrival = shipped_at + timedelta(hours=rng.uniform(18, 72))
        if delivered_at:
            arrival = delivered_at if last else min(arrival, delivered_at)
        delivered = delivered_at is not None or (arrival < self.now and not awaited)
        signed_by = f"{rng.choice(SIGNERS_FIRST)} {rng.choice(SIGNERS_LAST)}" if delivered else ""
        shipment_id = self.tables.shipments.add(
            order_id=draft.order_id, external_id=external_id, warehouse_id=draft.warehouse.pk,
            carrier_id=carrier.pk, tracking=spec.tracking(rng),
            tracking_status="delivered" if delivered else "in_transit",
            tracking_updated_at=arrival if delivered else min(self.now, shipped_at + timedelta(hours=6)),
            eta=shipped_at + timedelta(days=rng.choice((1, 2, 2, 3))), shipped_at=shipped_at,
            delivered_at=arrival if delivered else None, signed_by=signed_by,
        )  # fmt: skip
        return shipment_id, signed_by

    def _invoice(self, draft: Draft) -> None:
        issued_at, statuses = draft.time_of(INVOICE), Invoice.InvoiceStatus
        status = statuses.PAID if CLOSE in draft.facts.names else statuses.ISSUED
        if status == statuses.ISSUED and self.rng.random() < DISPUTED_SHARE:
            status = self.rng.choice((statuses.DISPUTED, statuses.BLOCKED))
        number = f"INV-{issued_at.year}-{draft.seq:07d}"
        prices = self.tier_prices[draft.tier]
        # What shipped, as orders.services.invoice_amount has it: less than the total if closed short.
        shipped = [line for line in draft.lines if line.shipped_by is not None]
        amount = sum((prices[line.product] * line.quantity for line in shipped), Decimal(0))
        self.tables.invoices.add(
            order_id=draft.order_id, number=number, amount=amount, status=status, issued_at=issued_at
        )
        draft.data[draft.facts.index(INVOICE)] = {"invoice": number}

    def _timeline(self, draft: Draft) -> None:
        for i, (move, at) in enumerate(zip(draft.facts.path, draft.plan.times, strict=True)):
            actor = self.rng.choice(lookup(ACTORS, move.name, move.source, DEFAULT_ACTOR))
            user = self.users.get(actor)
            data = draft.data.get(i, {})
            self.tables.transitions.add(
                order_id=draft.order_id, transition=move.name, from_state=move.source, to_state=move.target,
                actor_user_id=user.pk if user else None, actor_system="" if user else actor,
                reason=self._reason(move, data, draft.total), data=data, at=at,
            )  # fmt: skip

    def _reason(self, move: Move, data: dict[str, Any], total: Decimal) -> str:
        """The reasons the services and the people write."""
        if move.name == REQUEST_APPROVAL:
            return f"Order value {total} is at or above {self.high_value}."
        if move.name == FAIL_CREDIT:
            if data["credit_blocked"]:
                return "Customer is credit-blocked."
            return f"Exposure {data['exposure']} exceeds credit limit {data['credit_limit']}."
        return self.rng.choice(lookup(REASONS, move.name, move.source, ("",)))
