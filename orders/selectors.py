"""Reads of orders for the screens and the API. Nothing here writes.

Every function runs a fixed number of queries whatever the number of rows: lists are
limited and fetch their related rows with ``select_related`` / ``prefetch_related``,
figures are aggregates.
"""

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import (
    Case,
    Count,
    DecimalField,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.utils import timezone

from fulfillment.core.errors import InvalidInput, NotFound
from orders.models import (
    OPEN_FOR_CREDIT,
    Allocation,
    Customer,
    Invoice,
    Order,
    OrderLine,
    OrderTransition,
    Shipment,
    ShipmentLine,
    Status,
    Warehouse,
)

# Orders that have not (fully) left the warehouse and are still alive.
NOT_SHIPPED = [
    s
    for s in Status
    if s not in (Status.SHIPPED, Status.DELIVERED, Status.INVOICED, Status.CLOSED, Status.CANCELLED)
]
# Shipped in full or closed short: nothing more will leave the warehouse for these.
SHIPPING_DONE = [Status.SHIPPED, Status.DELIVERED]
MONEY = DecimalField(max_digits=14, decimal_places=2)
# A released order the warehouse has not started picking after this long is stalled.
RELEASED_STALE_AFTER = timedelta(hours=4)


def _list_rows(qs: QuerySet[Order]) -> QuerySet[Order]:
    return qs.select_related("customer", "warehouse")


# --- order search with keyset pagination ----------------------------------------------


@dataclass(frozen=True)
class OrderFilters:
    external_id: str = ""
    external_id_exact: bool = False
    customer: str = ""  # code or name, contains
    status: str = ""
    warehouse: Warehouse | None = None
    created_from: date | None = None
    created_to: date | None = None


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last row's (created_at, id), in the search's sort order."""

    created_at: datetime
    id: int

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(token: str) -> Cursor:
    """The inverse of ``Cursor.encode``; anything else raises ``InvalidInput``."""
    invalid = InvalidInput("This page link is not valid (it may have been cut or edited).")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        at_text, id_text = raw.split("|")
        created_at = datetime.fromisoformat(at_text)
        pk = int(id_text)
        if created_at.tzinfo is None or not 0 < pk < 2**63:
            raise invalid
        created_at = created_at.astimezone(UTC)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise invalid from exc
    return Cursor(created_at=created_at, id=pk)


@dataclass(frozen=True)
class OrderPage:
    rows: list[Order]
    next_cursor: Cursor | None


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def order_search(*, filters: OrderFilters, after: Cursor | None = None, limit: int = 50) -> OrderPage:
    """Orders matching ``filters``, newest first, ``limit`` at a time after ``after``.

    Keyset pagination on (created_at, id): a page is an index range read, and rows
    inserted between two page loads neither repeat nor shift later pages.
    """
    qs = Order.objects.all()
    if filters.external_id:
        if filters.external_id_exact:
            qs = qs.filter(external_id=filters.external_id)
        else:
            qs = qs.filter(external_id__startswith=filters.external_id)
    if filters.customer:
        term = filters.customer
        customers = Customer.objects.filter(Q(code__icontains=term) | Q(name__icontains=term))
        qs = qs.filter(customer__in=customers.values("pk"))
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.warehouse is not None:
        qs = qs.filter(warehouse=filters.warehouse)
    if filters.created_from is not None:
        qs = qs.filter(created_at__gte=_day_start(filters.created_from))
    if filters.created_to is not None:
        qs = qs.filter(created_at__lt=_day_start(filters.created_to + timedelta(days=1)))
    if after is not None:
        # (created_at, id) < cursor, with a plain range on created_at that the index can seek on.
        qs = qs.filter(
            Q(created_at__lte=after.created_at),
            Q(created_at__lt=after.created_at) | Q(id__lt=after.id),
        )
    rows = list(_list_rows(qs).order_by("-created_at", "-id")[: limit + 1])
    if len(rows) <= limit:
        return OrderPage(rows=rows, next_cursor=None)
    rows = rows[:limit]
    return OrderPage(rows=rows, next_cursor=Cursor(created_at=rows[-1].created_at, id=rows[-1].pk))


# --- credit ------------------------------------------------------------------------------


def open_orders_value(*, customer_id: int, excluding: int | None = None) -> Decimal:
    """What the customer's open orders add to its credit exposure (one query): an order's
    total until its shipping is done, then what it will be invoiced for, its shipped units
    at their prices (as ``services.invoice_amount``; less than the total if closed short)."""
    shipped = (
        OrderLine.objects.filter(order=OuterRef("pk"))
        .values("order")
        .annotate(value=Sum(F("shipped_quantity") * F("unit_price"), output_field=MONEY))
        .values("value")
    )
    value = Case(
        When(status__in=SHIPPING_DONE, then=Subquery(shipped)), default=F("total"), output_field=MONEY
    )
    orders = Order.objects.filter(customer_id=customer_id, status__in=OPEN_FOR_CREDIT)
    if excluding is not None:
        orders = orders.exclude(pk=excluding)
    return orders.aggregate(value=Sum(value))["value"] or Decimal(0)


# --- order detail -----------------------------------------------------------------------


@dataclass(frozen=True)
class CreditFigures:
    credit_limit: Decimal
    open_receivables: Decimal
    open_orders: Decimal  # the customer's orders that still count towards exposure
    blocked: bool

    @property
    def exposure(self) -> Decimal:
        return self.open_receivables + self.open_orders

    @property
    def headroom(self) -> Decimal:
        return self.credit_limit - self.exposure


@dataclass(frozen=True)
class WarehouseAllocation:
    warehouse: Warehouse
    lines: list[tuple[str, int]]  # (sku, units)

    @property
    def units(self) -> int:
        return sum(units for _, units in self.lines)


@dataclass(frozen=True)
class OrderDetail:
    order: Order
    credit: CreditFigures
    lines: list[OrderLine]
    allocations: list[WarehouseAllocation]
    shipments: list[Shipment]
    invoices: list[Invoice]
    transitions: list[OrderTransition]
    at_risk: bool


def is_at_risk(order: Order, *, today: date) -> bool:
    """Promised for today or earlier and not (fully) shipped: the order may disappoint."""
    return order.status in NOT_SHIPPED and order.promised_date <= today


def order_detail(*, order_id: int, today: date) -> OrderDetail:
    """Everything the order page shows, in eight queries whatever the order's size."""
    order = (
        Order.objects.select_related("customer", "warehouse")
        .prefetch_related(
            Prefetch(
                "lines",
                queryset=OrderLine.objects.select_related("product")
                .prefetch_related(
                    Prefetch("allocations", queryset=Allocation.objects.select_related("warehouse"))
                )
                .order_by("line_no"),
            ),
            Prefetch(
                "shipments",
                queryset=Shipment.objects.select_related("carrier", "warehouse").prefetch_related(
                    Prefetch("lines", queryset=ShipmentLine.objects.select_related("product"))
                ),
            ),
            Prefetch("invoices", queryset=Invoice.objects.order_by("issued_at", "id")),
            Prefetch("transitions", queryset=OrderTransition.objects.select_related("actor_user")),
        )
        .filter(pk=order_id)
        .first()
    )
    if order is None:
        raise NotFound(f"Order {order_id} does not exist.")
    customer = order.customer
    open_orders = open_orders_value(customer_id=customer.pk)

    lines = list(order.lines.all())
    by_warehouse: dict[int, WarehouseAllocation] = {}
    for line in lines:
        for alloc in line.allocations.all():
            entry = by_warehouse.setdefault(
                alloc.warehouse_id, WarehouseAllocation(warehouse=alloc.warehouse, lines=[])
            )
            entry.lines.append((line.product.sku, alloc.quantity))
    return OrderDetail(
        order=order,
        credit=CreditFigures(
            credit_limit=customer.credit_limit,
            open_receivables=customer.open_receivables,
            open_orders=open_orders,
            blocked=customer.credit_blocked,
        ),
        lines=lines,
        allocations=sorted(by_warehouse.values(), key=lambda a: a.warehouse.code),
        shipments=list(order.shipments.all()),
        invoices=list(order.invoices.all()),
        transitions=list(order.transitions.all()),
        at_risk=is_at_risk(order, today=today),
    )


# --- home page figures ------------------------------------------------------------------


@dataclass(frozen=True)
class StatusFigure:
    status: str
    label: str
    count: int = 0
    totals: dict[str, Decimal] = field(default_factory=dict)  # currency -> value


def status_figures(*, statuses: list[str] | None = None) -> dict[str, StatusFigure]:
    """Count and value (per currency) of orders by status, in one grouped query.

    Without ``statuses``, every status appears, those with no orders at zero.
    """
    wanted = statuses if statuses is not None else [s.value for s in Status]
    qs = Order.objects.all()
    if statuses is not None:
        qs = qs.filter(status__in=statuses)
    figures = {s: StatusFigure(status=s, label=Status(s).label) for s in wanted}
    grouped = qs.values("status", "currency").annotate(n=Count("id"), value=Sum("total")).order_by()
    for row in grouped:
        previous = figures[row["status"]]
        figures[row["status"]] = StatusFigure(
            status=previous.status,
            label=previous.label,
            count=previous.count + row["n"],
            totals={**previous.totals, row["currency"]: row["value"] or Decimal(0)},
        )
    return figures


@dataclass(frozen=True)
class OrderList:
    count: int
    rows: list[Order]


def orders_at_risk(*, today: date, limit: int = 10) -> OrderList:
    """Open orders promised for today or earlier that have not shipped, most overdue first."""
    qs = Order.objects.filter(status__in=NOT_SHIPPED, promised_date__lte=today)
    rows = list(_list_rows(qs).order_by("promised_date", "-total", "id")[:limit])
    return OrderList(count=qs.count(), rows=rows)


def orders_in_status(*, status: str, limit: int = 10, largest_first: bool = False) -> list[Order]:
    """Orders in a status: longest there first, or largest value first."""
    order_by = ("-total", "status_changed_at", "id") if largest_first else ("status_changed_at", "id")
    return list(_list_rows(Order.objects.filter(status=status)).order_by(*order_by)[:limit])


def orders_released_not_picked(*, now: datetime, limit: int = 10) -> OrderList:
    """Orders released to the warehouse more than ``RELEASED_STALE_AFTER`` ago, oldest first."""
    qs = Order.objects.filter(status=Status.RELEASED, status_changed_at__lt=now - RELEASED_STALE_AFTER)
    rows = list(_list_rows(qs).order_by("status_changed_at", "id")[:limit])
    return OrderList(count=qs.count(), rows=rows)


def orders_recent(*, limit: int = 10) -> list[Order]:
    return list(_list_rows(Order.objects.all()).order_by("-created_at", "-id")[:limit])
