from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django_fsm import GET_STATE, ConcurrentTransitionMixin, FSMField, transition

from fulfillment.core import clock
from fulfillment.core.models import TimeStampedModel


class Tier(models.TextChoices):
    STRATEGIC = "strategic", "Strategic"
    KEY = "key", "Key account"
    STANDARD = "standard", "Standard"
    SMALL = "small", "Small business"


class Customer(TimeStampedModel):
    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.STANDARD)
    email = models.EmailField(blank=True)
    credit_limit = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal(0))
    open_receivables = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal(0))
    credit_blocked = models.BooleanField(default=False)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(credit_limit__gte=0), name="customer_credit_limit_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class Warehouse(TimeStampedModel):
    code = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=200)
    region = models.CharField(max_length=64)
    time_zone = models.CharField(max_length=64, default="UTC")
    cutoff_time = models.TimeField(help_text="Daily cut-off for same-day dispatch, local time.")

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class Carrier(TimeStampedModel):
    code = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Product(TimeStampedModel):
    sku = models.CharField(max_length=64, unique=True)
    description = models.CharField(max_length=300)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    cost = models.DecimalField(max_digits=12, decimal_places=2)
    lead_time_days = models.PositiveIntegerField(default=7, help_text="Supplier lead time.")

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0) & Q(cost__gte=0), name="product_money_gte_0"),
        ]

    def __str__(self) -> str:
        return self.sku


class Inventory(models.Model):
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="inventory")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="inventory")
    on_hand = models.IntegerField(default=0)
    allocated = models.IntegerField(default=0)
    # occurred_at of the last absolute on-hand figure applied, so older reports never win.
    counted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "inventory"
        constraints = [
            models.UniqueConstraint(fields=["warehouse", "product"], name="inventory_unique_wh_product"),
            models.CheckConstraint(condition=Q(on_hand__gte=0), name="inventory_on_hand_gte_0"),
            models.CheckConstraint(
                condition=Q(allocated__gte=0) & Q(allocated__lte=F("on_hand")),
                name="inventory_allocated_within_on_hand",
            ),
        ]
        indexes = [models.Index(fields=["product", "warehouse"], name="inventory_product_wh")]

    def __str__(self) -> str:
        return f"{self.product_id}@{self.warehouse_id}"

    @property
    def available(self) -> int:
        return self.on_hand - self.allocated


class Status(models.TextChoices):
    RECEIVED = "received", "Received"
    CREDIT_CHECK = "credit_check", "Credit check"
    CREDIT_HOLD = "credit_hold", "Credit hold"
    ALLOCATING = "allocating", "Allocating"
    BACKORDERED = "backordered", "Backordered"
    PARTIALLY_ALLOCATED = "partially_allocated", "Partially allocated"
    ALLOCATED = "allocated", "Allocated"
    AWAITING_RELEASE = "awaiting_release", "Awaiting release approval"
    RELEASED = "released", "Released to warehouse"
    PICKING = "picking", "Picking"
    PACKED = "packed", "Packed"
    PARTIALLY_SHIPPED = "partially_shipped", "Partially shipped"
    SHIPPED = "shipped", "Shipped"
    DELIVERED = "delivered", "Delivered"
    INVOICED = "invoiced", "Invoiced"
    CLOSED = "closed", "Closed"
    ON_HOLD = "on_hold", "On hold"
    CANCELLED = "cancelled", "Cancelled"


S = Status
# Orders not yet handed to the warehouse can be held or cancelled.
PRE_RELEASE = [
    S.RECEIVED, S.CREDIT_CHECK, S.CREDIT_HOLD, S.ALLOCATING, S.BACKORDERED,
    S.PARTIALLY_ALLOCATED, S.ALLOCATED, S.AWAITING_RELEASE,
]  # fmt: skip
HOLDABLE = [s for s in PRE_RELEASE if s != S.CREDIT_HOLD]
TERMINAL = [S.CLOSED, S.CANCELLED]
# Orders whose value still counts towards the customer's credit exposure (after invoicing
# the amount is part of open receivables, kept by the ERP).
OPEN_FOR_CREDIT = [s for s in Status if s not in (S.INVOICED, S.CLOSED, S.CANCELLED)]


def _state_before_hold(order: "Order") -> str:
    return order.held_from


class Order(ConcurrentTransitionMixin, TimeStampedModel):
    """A customer order and its lifecycle.

    The transition methods only move the state; services in ``orders.services`` call
    them inside a transaction that also writes the transition log and side effects.
    """

    external_id = models.CharField(max_length=64, unique=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    warehouse = models.ForeignKey(
        Warehouse, on_delete=models.PROTECT, null=True, blank=True, related_name="orders",
        help_text="Preferred warehouse; allocation starts there.",
    )  # fmt: skip
    status = FSMField(max_length=32, choices=Status.choices, default=S.RECEIVED, protected=True)
    held_from = models.CharField(max_length=32, choices=Status.choices, blank=True)
    status_changed_at = models.DateTimeField(default=clock.now)
    promised_date = models.DateField()
    currency = models.CharField(max_length=3, default="EUR")
    total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal(0))
    ship_to_name = models.CharField(max_length=200)
    ship_to_line1 = models.CharField(max_length=200)
    ship_to_city = models.CharField(max_length=100)
    ship_to_postal_code = models.CharField(max_length=20)
    ship_to_country = models.CharField(max_length=2)

    class Meta:
        indexes = [
            models.Index(fields=["status", "-created_at", "-id"], name="order_status_created"),
            models.Index(fields=["customer", "-created_at", "-id"], name="order_customer_created"),
            models.Index(fields=["warehouse", "-created_at", "-id"], name="order_wh_created"),
            models.Index(fields=["-created_at", "-id"], name="order_created"),
            models.Index(fields=["status", "status_changed_at"], name="order_status_since"),
        ]

    def __str__(self) -> str:
        return self.external_id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    # --- the state machine: every allowed move, nothing else -------------------------

    @transition(field=status, source=S.RECEIVED, target=S.CREDIT_CHECK)
    def start_credit_check(self) -> None: ...

    @transition(field=status, source=S.CREDIT_CHECK, target=S.ALLOCATING)
    def pass_credit_check(self) -> None: ...

    @transition(field=status, source=S.CREDIT_CHECK, target=S.CREDIT_HOLD)
    def fail_credit_check(self) -> None: ...

    @transition(field=status, source=S.CREDIT_HOLD, target=S.ALLOCATING)
    def release_credit_hold(self) -> None: ...

    @transition(
        field=status,
        source=[S.ALLOCATING, S.BACKORDERED, S.PARTIALLY_ALLOCATED],
        target=S.ALLOCATED,
    )
    def allocate_in_full(self) -> None: ...

    @transition(
        field=status,
        source=[S.ALLOCATING, S.BACKORDERED, S.PARTIALLY_ALLOCATED],
        target=S.PARTIALLY_ALLOCATED,
    )
    def allocate_partially(self) -> None: ...

    @transition(field=status, source=S.ALLOCATING, target=S.BACKORDERED)
    def backorder(self) -> None: ...

    @transition(field=status, source=S.ALLOCATED, target=S.AWAITING_RELEASE)
    def request_release_approval(self) -> None: ...

    @transition(
        field=status,
        source=[S.ALLOCATED, S.AWAITING_RELEASE, S.PARTIALLY_ALLOCATED],
        target=S.RELEASED,
    )
    def release(self) -> None: ...

    @transition(field=status, source=S.RELEASED, target=S.PICKING)
    def start_picking(self) -> None: ...

    @transition(field=status, source=S.PICKING, target=S.PACKED)
    def pack(self) -> None: ...

    @transition(field=status, source=[S.PICKING, S.PACKED, S.PARTIALLY_SHIPPED], target=S.PARTIALLY_SHIPPED)
    def ship_partially(self) -> None: ...

    @transition(field=status, source=[S.PICKING, S.PACKED, S.PARTIALLY_SHIPPED], target=S.SHIPPED)
    def ship_in_full(self) -> None: ...

    @transition(field=status, source=S.PARTIALLY_SHIPPED, target=S.SHIPPED)
    def close_short(self) -> None:
        """What did not ship will not ship: the order counts as shipped from now on."""

    @transition(field=status, source=S.SHIPPED, target=S.DELIVERED)
    def deliver(self) -> None: ...

    @transition(field=status, source=S.DELIVERED, target=S.INVOICED)
    def invoice(self) -> None: ...

    @transition(field=status, source=S.INVOICED, target=S.CLOSED)
    def close(self) -> None: ...

    @transition(field=status, source=HOLDABLE, target=S.ON_HOLD)
    def hold(self) -> None:
        self.held_from = self.status

    @transition(field=status, source=S.ON_HOLD, target=GET_STATE(_state_before_hold, states=HOLDABLE))
    def release_hold(self) -> None: ...

    @transition(field=status, source=[*PRE_RELEASE, S.ON_HOLD], target=S.CANCELLED)
    def cancel(self) -> None: ...


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    line_no = models.PositiveIntegerField()
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)
    allocated_quantity = models.PositiveIntegerField(default=0)
    shipped_quantity = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "line_no"]
        constraints = [
            models.UniqueConstraint(fields=["order", "line_no"], name="orderline_unique_no"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="orderline_quantity_gt_0"),
            models.CheckConstraint(
                condition=Q(allocated_quantity__lte=F("quantity")), name="orderline_alloc_lte_qty"
            ),
        ]

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.unit_price

    @property
    def open_quantity(self) -> int:
        return self.quantity - self.allocated_quantity


class Allocation(models.Model):
    line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="allocations")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="allocation_quantity_gt_0"),
        ]


class Shipment(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="shipments")
    external_id = models.CharField(max_length=64, unique=True)
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="+")
    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, null=True, related_name="+")
    tracking = models.CharField(max_length=64, blank=True, db_index=True)
    tracking_status = models.CharField(max_length=32, blank=True)
    eta = models.DateTimeField(null=True, blank=True)
    tracking_updated_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    signed_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["shipped_at"]


class ShipmentLine(models.Model):
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()


class Invoice(models.Model):
    class InvoiceStatus(models.TextChoices):
        ISSUED = "issued", "Issued"
        PAID = "paid", "Paid"
        DISPUTED = "disputed", "Disputed"
        BLOCKED = "blocked", "Blocked"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="invoices")
    number = models.CharField(max_length=32, unique=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.ISSUED)
    issued_at = models.DateTimeField(default=clock.now)


class OrderTransition(models.Model):
    """The order's timeline: one row per state change, written by the service that made it."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="transitions")
    transition = models.CharField(max_length=40)
    from_state = models.CharField(max_length=32, choices=Status.choices, blank=True)
    to_state = models.CharField(max_length=32, choices=Status.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_system = models.CharField(max_length=32, blank=True)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["order", "at", "id"]
        indexes = [models.Index(fields=["order", "at"], name="ordertransition_order_at")]
        constraints = [
            models.CheckConstraint(
                condition=Q(actor_user__isnull=False) | ~Q(actor_system=""),
                name="ordertransition_has_actor",
            ),
        ]

    @property
    def actor_label(self) -> str:
        return self.actor_user.get_username() if self.actor_user_id else self.actor_system


class Return(models.Model):
    """Goods a customer sends back, as announced by the WMS."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="returns")
    reference = models.CharField(max_length=100, unique=True)
    lines = models.JSONField(help_text="SKU -> units returned.")
    reason = models.TextField(blank=True)
    initiated_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["initiated_at"]

    def __str__(self) -> str:
        return f"return {self.reference} of {self.order_id}"
