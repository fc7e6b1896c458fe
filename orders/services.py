"""The only writers of orders, stock and the order timeline.

Every function here runs in one transaction: it checks the move against the state
machine, makes it, and writes the timeline row; bad input raises an application error
and writes nothing.
"""

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django_fsm import ConcurrentTransition, can_proceed

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.errors import ConcurrentUpdate, InvalidInput, NotFound, TransitionNotAllowed
from fulfillment.core.outbox import outbox_put
from orders import selectors
from orders.models import (
    Allocation,
    Carrier,
    Customer,
    Inventory,
    Invoice,
    Order,
    OrderLine,
    OrderTransition,
    Product,
    Return,
    Shipment,
    ShipmentLine,
    Status,
    Warehouse,
)

# States the ERP hears about (its order status field), through the outbox.
ERP_STATUS_FEED = {
    Status.CREDIT_HOLD, Status.RELEASED, Status.PARTIALLY_SHIPPED, Status.SHIPPED,
    Status.DELIVERED, Status.CANCELLED,
}  # fmt: skip
# Transitions a person may trigger by hand from a screen or the API.
MANUAL_TRANSITIONS = {"hold", "release_hold", "cancel"}


@dataclass(frozen=True)
class LineInput:
    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class ShipTo:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str


def _transition(
    order: Order, name: str, *, actor: Actor, reason: str = "", data: dict[str, Any] | None = None
) -> None:
    """Make one state-machine move and log it; the caller holds the transaction."""
    method = getattr(order, name, None)
    if method is None or not hasattr(method, "_django_fsm"):
        raise InvalidInput(f"'{name}' is not an order transition.")
    if not can_proceed(method):
        raise TransitionNotAllowed(
            f"Order {order.external_id} is {order.get_status_display().lower()}; "
            f"'{name.replace('_', ' ')}' is not allowed from there."
        )
    from_state = order.status
    method()
    order.status_changed_at = clock.now()
    try:
        order.save(update_fields=["status", "status_changed_at", "held_from", "updated_at"])
    except ConcurrentTransition as exc:
        raise ConcurrentUpdate(
            f"Order {order.external_id} was changed by someone else; reload it and try again."
        ) from exc
    row = OrderTransition.objects.create(
        order=order,
        transition=name,
        from_state=from_state,
        to_state=order.status,
        actor_user=actor.user,
        actor_system=actor.system,
        reason=reason,
        data=data or {},
        at=order.status_changed_at,
    )
    if order.status in ERP_STATUS_FEED:
        outbox_put(
            endpoint="erp",
            topic="erp.status",
            payload={"order": order.external_id, "status": order.status, "at": row.at.isoformat()},
            idempotency_key=f"status:{order.external_id}:{row.pk}",
            subject_ref=order.external_id,
        )


def _lock_order(order: Order) -> None:
    """Hold the order's row lock for the rest of the transaction, for a service that reads
    and rewrites its lines, and refuse if someone moved the order since it was loaded.

    The state field alone (ConcurrentTransitionMixin) cannot see a move that leaves the
    state where it was, such as a second partial allocation or partial shipment.
    """
    status = Order.objects.select_for_update().values_list("status", flat=True).get(pk=order.pk)
    if status != order.status:
        raise ConcurrentUpdate(
            f"Order {order.external_id} was changed by someone else; reload it and try again."
        )


def order_get(*, order_id: int) -> Order:
    try:
        return Order.objects.select_related("customer", "warehouse").get(pk=order_id)
    except Order.DoesNotExist as exc:
        raise NotFound(f"Order {order_id} does not exist.") from exc


# What the columns hold on every supported database.
MAX_QUANTITY = 2_147_483_647  # OrderLine.quantity, a PositiveIntegerField
MAX_UNIT_PRICE = Decimal("9999999999.99")  # OrderLine.unit_price, 12 digits, 2 decimals
MAX_ORDER_TOTAL = Decimal("999999999999.99")  # Order.total, 14 digits, 2 decimals


def _price(value: object) -> Decimal:
    """A unit price as a Decimal; ``str`` first so that a float 0.1 means 0.1."""
    return Decimal(str(value))


def _line_errors(lines: list[LineInput], products: dict[str, Product]) -> list[str]:
    errors = []
    first_line_of: dict[str, int] = {}
    for n, line in enumerate(lines, start=1):
        if line.sku not in products:
            errors.append(f"Line {n}: unknown SKU '{line.sku}'.")
        elif line.sku in first_line_of:
            # Shipments report quantities by SKU, so one SKU must be on one line.
            errors.append(f"Line {n}: SKU '{line.sku}' is already on line {first_line_of[line.sku]}.")
        first_line_of.setdefault(line.sku, n)
        if isinstance(line.quantity, bool) or not isinstance(line.quantity, int) or line.quantity <= 0:
            errors.append(f"Line {n}: quantity must be a whole number above zero.")
        elif line.quantity > MAX_QUANTITY:
            errors.append(f"Line {n}: quantity must not exceed {MAX_QUANTITY}.")
        try:
            price = _price(line.unit_price)
        except (InvalidOperation, TypeError, ValueError):
            price = None
        if price is None or not price.is_finite():
            errors.append(f"Line {n}: unit price is not a number.")
        elif price < 0:
            errors.append(f"Line {n}: unit price must not be negative.")
        elif price > MAX_UNIT_PRICE:
            errors.append(f"Line {n}: unit price must not exceed {MAX_UNIT_PRICE}.")
        elif price != price.quantize(Decimal("0.01")):
            errors.append(f"Line {n}: unit price must have at most two decimals.")
    return errors


def _ship_to_errors(ship_to: ShipTo) -> list[str]:
    errors = []
    for attr, label, required in (
        ("name", "Name", True),
        ("line1", "Address line", True),
        ("city", "City", True),
        ("postal_code", "Postal code", False),  # not every country has them
    ):
        value = getattr(ship_to, attr)
        max_length = Order._meta.get_field(f"ship_to_{attr}").max_length
        if required and not value.strip():
            errors.append(f"{label} is required.")
        elif len(value) > max_length:
            errors.append(f"{label} must be at most {max_length} characters.")
    if len(ship_to.country) != 2 or not ship_to.country.isascii() or not ship_to.country.isalpha():
        errors.append("Country must be a two-letter ISO 3166 code.")
    return errors


def order_create(
    *,
    external_id: str,
    customer_code: str,
    promised_date: date,
    ship_to: ShipTo,
    lines: list[LineInput],
    actor: Actor,
    warehouse_code: str | None = None,
    currency: str = "EUR",
) -> Order:
    errors: dict[str, list[str]] = {}
    if not external_id or len(external_id) > 64:
        errors["external_id"] = ["Give an external id of 1 to 64 characters."]
    customer = Customer.objects.filter(code=customer_code).first()
    if customer is None:
        errors["customer"] = [f"Unknown customer '{customer_code}'."]
    warehouse = None
    if warehouse_code:
        warehouse = Warehouse.objects.filter(code=warehouse_code).first()
        if warehouse is None:
            errors["warehouse"] = [f"Unknown warehouse '{warehouse_code}'."]
    if len(currency) != 3 or not currency.isalpha():
        errors["currency"] = ["Use a three-letter ISO 4217 code."]
    if not lines:
        errors["lines"] = ["An order needs at least one line."]
    products = Product.objects.in_bulk([line.sku for line in lines], field_name="sku")
    if line_errors := _line_errors(lines, products):
        errors.setdefault("lines", []).extend(line_errors)
    if ship_to_errors := _ship_to_errors(ship_to):
        errors["ship_to"] = ship_to_errors
    if errors:
        raise InvalidInput("The order is not valid.", fields=errors)
    total = sum((_price(line.unit_price) * line.quantity for line in lines), Decimal(0))
    if total > MAX_ORDER_TOTAL:
        message = f"The order total must not exceed {MAX_ORDER_TOTAL}."
        raise InvalidInput("The order is not valid.", fields={"lines": [message]})

    try:
        with transaction.atomic():
            order = Order.objects.create(
                external_id=external_id,
                customer=customer,
                warehouse=warehouse,
                promised_date=promised_date,
                currency=currency.upper(),
                total=total,
                ship_to_name=ship_to.name,
                ship_to_line1=ship_to.line1,
                ship_to_city=ship_to.city,
                ship_to_postal_code=ship_to.postal_code,
                ship_to_country=ship_to.country.upper(),
            )
            OrderLine.objects.bulk_create(
                OrderLine(
                    order=order,
                    line_no=n,
                    product=products[line.sku],
                    quantity=line.quantity,
                    unit_price=_price(line.unit_price),
                )
                for n, line in enumerate(lines, start=1)
            )
            OrderTransition.objects.create(
                order=order,
                transition="receive",
                from_state="",
                to_state=order.status,
                actor_user=actor.user,
                actor_system=actor.system,
                at=order.created_at,
            )
    except IntegrityError as exc:
        if Order.objects.filter(external_id=external_id).exists():
            raise InvalidInput(
                f"An order with external id '{external_id}' exists already.",
                fields={"external_id": ["Already taken."]},
            ) from exc
        raise
    return order


@dataclass(frozen=True)
class CreditDecision:
    passed: bool
    credit_limit: Decimal
    open_receivables: Decimal
    other_open_orders: Decimal
    this_order: Decimal
    blocked: bool

    @property
    def exposure(self) -> Decimal:
        return self.open_receivables + self.other_open_orders + self.this_order

    def as_data(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "credit_limit": _money(self.credit_limit),
            "open_receivables": _money(self.open_receivables),
            "other_open_orders": _money(self.other_open_orders),
            "this_order": _money(self.this_order),
            "exposure": _money(self.exposure),
            "credit_blocked": self.blocked,
        }


def _money(value: Decimal) -> str:
    """Amounts in the timeline always with two decimals, whichever database summed them."""
    return str(Decimal(value).quantize(Decimal("0.01")))


def credit_exposure(*, order: Order) -> CreditDecision:
    customer = order.customer
    others = selectors.open_orders_value(customer_id=customer.pk, excluding=order.pk)
    decision = CreditDecision(
        passed=False,
        credit_limit=customer.credit_limit,
        open_receivables=customer.open_receivables,
        other_open_orders=others,
        this_order=order.total,
        blocked=customer.credit_blocked,
    )
    passed = not customer.credit_blocked and decision.exposure <= customer.credit_limit
    return CreditDecision(**{**decision.__dict__, "passed": passed})


@transaction.atomic
def order_credit_check(*, order: Order, actor: Actor) -> CreditDecision:
    """Move a received order through the credit check: on to allocation, or onto credit hold.

    Exposure = open receivables + the customer's other open orders + this order; it must
    not exceed the credit limit, and a credit-blocked customer always fails.
    """
    # One credit check per customer at a time, so two orders cannot both use the headroom;
    # the customer's figures are the ones read under that lock, not a copy loaded earlier.
    order.customer = Customer.objects.select_for_update().get(pk=order.customer_id)
    _transition(order, "start_credit_check", actor=actor)
    decision = credit_exposure(order=order)
    if decision.passed:
        _transition(order, "pass_credit_check", actor=actor, data=decision.as_data())
    else:
        reason = (
            "Customer is credit-blocked."
            if decision.blocked
            else f"Exposure {_money(decision.exposure)} exceeds credit limit {_money(decision.credit_limit)}."
        )
        _transition(order, "fail_credit_check", actor=actor, reason=reason, data=decision.as_data())
    return decision


@dataclass
class AllocationResult:
    status: str
    allocated: dict[str, int] = field(default_factory=dict)  # sku -> units allocated now
    shortfall: dict[str, int] = field(default_factory=dict)  # sku -> units still missing

    @property
    def short_value_lines(self) -> list[str]:
        return sorted(self.shortfall)


def _warehouse_preference(
    order: Order, warehouses: list[Warehouse], coverage: dict[int, int]
) -> list[Warehouse]:
    """Allocation order: the order's preferred warehouse, then the same region, then the
    warehouse that can cover the most of what is still open (fewer split shipments), then
    by code."""
    preferred = order.warehouse
    region = preferred.region if preferred else None
    return sorted(
        warehouses,
        key=lambda wh: (
            preferred is None or wh.pk != preferred.pk,
            region is None or wh.region != region,
            -coverage.get(wh.pk, 0),
            wh.code,
        ),
    )


@transaction.atomic
def order_allocate(*, order: Order, actor: Actor) -> AllocationResult:
    """Reserve stock for the order's open quantities across warehouses.

    Stock rows are locked (PostgreSQL) or the write transaction is serialised (SQLite),
    and each reservation is a conditional update, so stock never goes negative.
    """
    if order.status not in (Status.ALLOCATING, Status.BACKORDERED, Status.PARTIALLY_ALLOCATED):
        raise TransitionNotAllowed(
            f"Order {order.external_id} is {order.get_status_display().lower()}; it cannot be allocated."
        )
    _lock_order(order)
    lines = [line for line in order.lines.select_related("product") if line.open_quantity > 0]
    product_ids = [line.product_id for line in lines]
    stock = list(
        Inventory.objects.select_for_update()
        .filter(product_id__in=product_ids, on_hand__gt=F("allocated"))
        .order_by("id")
    )
    by_wh_product = {(inv.warehouse_id, inv.product_id): inv for inv in stock}
    coverage: dict[int, int] = {}
    for line in lines:
        for inv in stock:
            if inv.product_id == line.product_id:
                coverage[inv.warehouse_id] = coverage.get(inv.warehouse_id, 0) + min(
                    inv.available, line.open_quantity
                )
    warehouses = _warehouse_preference(
        order, list(Warehouse.objects.filter(pk__in={inv.warehouse_id for inv in stock})), coverage
    )

    result = AllocationResult(status=order.status)
    new_allocations = []
    now = clock.now()
    for line in lines:
        for wh in warehouses:
            inv = by_wh_product.get((wh.pk, line.product_id))
            take = min(inv.available, line.open_quantity) if inv else 0
            if take <= 0:
                continue
            updated = Inventory.objects.filter(pk=inv.pk, on_hand__gte=F("allocated") + take).update(
                allocated=F("allocated") + take, updated_at=now
            )
            if not updated:  # only possible if the lock was bypassed; never over-allocate
                continue
            inv.allocated += take
            line.allocated_quantity += take
            new_allocations.append(Allocation(line=line, warehouse=wh, quantity=take, created_at=now))
            result.allocated[line.product.sku] = result.allocated.get(line.product.sku, 0) + take
        if line.open_quantity:
            result.shortfall[line.product.sku] = line.open_quantity
    Allocation.objects.bulk_create(new_allocations)
    OrderLine.objects.bulk_update(lines, ["allocated_quantity"])

    data = {"allocated": result.allocated, "shortfall": result.shortfall}
    any_allocated = order.lines.filter(allocated_quantity__gt=0).exists()
    if not result.shortfall:
        _transition(order, "allocate_in_full", actor=actor, data=data)
    elif any_allocated and (result.allocated or order.status != Status.PARTIALLY_ALLOCATED):
        _transition(order, "allocate_partially", actor=actor, data=data)
    elif not any_allocated and order.status == Status.ALLOCATING:
        _transition(order, "backorder", actor=actor, data=data)
    result.status = order.status
    return result


def _release_allocations(order: Order) -> dict[str, int]:
    """Give reserved stock back; returns sku -> units released."""
    released: dict[str, int] = {}
    allocations = list(
        Allocation.objects.filter(line__order=order).select_related("line__product").order_by("id")
    )
    for alloc in allocations:
        updated = Inventory.objects.filter(
            warehouse_id=alloc.warehouse_id, product_id=alloc.line.product_id
        ).update(allocated=F("allocated") - alloc.quantity)
        assert updated == 1
        sku = alloc.line.product.sku
        released[sku] = released.get(sku, 0) + alloc.quantity
    Allocation.objects.filter(pk__in=[a.pk for a in allocations]).delete()
    order.lines.update(allocated_quantity=0)
    return released


def order_apply(*, order: Order, transition_name: str, actor: Actor, reason: str = "") -> Order:
    """A hand-made move (hold, release hold, cancel) asked for by a person."""
    if transition_name not in MANUAL_TRANSITIONS:
        raise InvalidInput(
            f"'{transition_name}' cannot be triggered by hand; "
            f"choose one of {', '.join(sorted(MANUAL_TRANSITIONS))}."
        )
    if transition_name == "cancel":
        return order_cancel(order=order, actor=actor, reason=reason)
    with transaction.atomic():
        _transition(order, transition_name, actor=actor, reason=reason)
    return order


@transaction.atomic
def order_cancel(*, order: Order, actor: Actor, reason: str) -> Order:
    if not reason.strip():
        raise InvalidInput("Say why the order is cancelled.", fields={"reason": ["Required."]})
    _transition(order, "cancel", actor=actor, reason=reason)
    released = _release_allocations(order)
    if released:
        OrderTransition.objects.filter(order=order, transition="cancel").update(
            data={"released_stock": released}
        )
    return order


@transaction.atomic
def order_release_credit_hold(*, order: Order, actor: Actor, reason: str) -> Order:
    _transition(order, "release_credit_hold", actor=actor, reason=reason)
    return order


@transaction.atomic
def order_request_release_approval(*, order: Order, actor: Actor, reason: str = "") -> Order:
    _transition(order, "request_release_approval", actor=actor, reason=reason)
    return order


@transaction.atomic
def order_release(*, order: Order, actor: Actor, reason: str = "") -> Order:
    """Hand the order to the warehouses that hold its reservations: one WMS release and one
    carrier booking per warehouse, sent by the outbox after commit."""
    _lock_order(order)
    # One line per SKU and warehouse, however many reservations (e.g. stock arriving in parts) make it up.
    by_warehouse: dict[str, dict[str, int]] = {}
    allocations = Allocation.objects.filter(line__order=order).select_related("warehouse", "line__product")
    for alloc in allocations.order_by("line__line_no", "id"):
        skus = by_warehouse.setdefault(alloc.warehouse.code, {})
        skus[alloc.line.product.sku] = skus.get(alloc.line.product.sku, 0) + alloc.quantity
    if not by_warehouse:
        raise TransitionNotAllowed(f"Order {order.external_id} has nothing allocated to release.")
    _transition(order, "release", actor=actor, reason=reason, data={"warehouses": sorted(by_warehouse)})
    ship_to = {
        "name": order.ship_to_name,
        "line1": order.ship_to_line1,
        "city": order.ship_to_city,
        "postal_code": order.ship_to_postal_code,
        "country": order.ship_to_country,
    }
    for code, skus in sorted(by_warehouse.items()):
        ref = order.external_id
        lines = [{"sku": sku, "quantity": quantity} for sku, quantity in skus.items()]
        outbox_put(
            endpoint="wms",
            topic="order.release",
            payload={
                "order": ref, "warehouse": code, "lines": lines, "ship_to": ship_to,
                "promised_date": order.promised_date.isoformat(),
            },
            idempotency_key=f"release:{ref}:{code}",
            subject_ref=ref,
        )  # fmt: skip
        outbox_put(
            endpoint="carrier",
            topic="carrier.booking",
            payload={"order": ref, "warehouse": code, "ship_to": ship_to, "parcels": len(lines)},
            idempotency_key=f"booking:{ref}:{code}",
            subject_ref=ref,
        )
    return order


@transaction.atomic
def order_start_picking(*, order: Order, actor: Actor) -> Order:
    _transition(order, "start_picking", actor=actor)
    return order


@transaction.atomic
def order_pack(*, order: Order, actor: Actor) -> Order:
    _transition(order, "pack", actor=actor)
    return order


@dataclass(frozen=True)
class ShippedLine:
    sku: str
    quantity: int


def _reduce_allocations(allocations: list[Allocation], units: int, *, give_back_stock: bool = False) -> None:
    """Take ``units`` off these reservations in turn, deleting the ones used up; with
    ``give_back_stock`` the units return to the warehouses' free stock."""
    for alloc in allocations:
        if units <= 0:
            break
        take = min(alloc.quantity, units)
        if give_back_stock:
            Inventory.objects.filter(
                warehouse_id=alloc.warehouse_id, product_id=alloc.line.product_id
            ).update(allocated=F("allocated") - take)
        if take == alloc.quantity:
            alloc.delete()
        else:
            alloc.quantity -= take
            alloc.save(update_fields=["quantity"])
        units -= take


@transaction.atomic
def order_record_shipment(
    *,
    order: Order,
    shipment_id: str,
    warehouse_code: str,
    lines: list[ShippedLine],
    actor: Actor,
    carrier_code: str = "",
    tracking: str = "",
    shipped_at: datetime | None = None,
) -> Shipment:
    """Record what left the warehouse; the order becomes shipped or partially shipped."""
    _lock_order(order)
    warehouse = Warehouse.objects.filter(code=warehouse_code).first()
    if warehouse is None:
        raise InvalidInput(f"Unknown warehouse '{warehouse_code}'.", fields={"warehouse": ["Unknown."]})
    carrier = Carrier.objects.filter(code=carrier_code).first() if carrier_code else None
    if carrier_code and carrier is None:
        raise InvalidInput(f"Unknown carrier '{carrier_code}'.", fields={"carrier": ["Unknown."]})
    order_lines = {line.product.sku: line for line in order.lines.select_related("product")}
    errors = []
    for sl in lines:
        line = order_lines.get(sl.sku)
        if line is None:
            errors.append(f"SKU '{sl.sku}' is not on order {order.external_id}.")
        elif sl.quantity <= 0 or line.shipped_quantity + sl.quantity > line.quantity:
            errors.append(f"Shipping {sl.quantity} of '{sl.sku}' exceeds what was ordered.")
    if errors or not lines:
        raise InvalidInput("The shipment is not valid.", fields={"lines": errors or ["No lines."]})
    if Shipment.objects.filter(external_id=shipment_id).exists():
        raise InvalidInput(
            f"Shipment '{shipment_id}' is recorded already.", fields={"shipment_id": ["Already recorded."]}
        )

    shipment = Shipment.objects.create(
        order=order,
        external_id=shipment_id,
        warehouse=warehouse,
        carrier=carrier,
        tracking=tracking,
        shipped_at=shipped_at or clock.now(),
    )
    ShipmentLine.objects.bulk_create(
        ShipmentLine(shipment=shipment, product=order_lines[sl.sku].product, quantity=sl.quantity)
        for sl in lines
    )
    for sl in lines:
        line = order_lines[sl.sku]
        line.shipped_quantity += sl.quantity
        # Only this line's reservations at the shipping warehouse are used up; any units
        # beyond them come out of that warehouse's free stock.
        here = list(line.allocations.filter(warehouse=warehouse).order_by("id"))
        from_allocation = min(sl.quantity, sum(alloc.quantity for alloc in here))
        stock = Inventory.objects.filter(warehouse=warehouse, product=line.product)
        moved = stock.filter(
            _counted_before(shipment.shipped_at), on_hand__gte=F("allocated") - from_allocation + sl.quantity
        ).update(on_hand=F("on_hand") - sl.quantity, allocated=F("allocated") - from_allocation)
        if not moved:  # a stock count at or after the shipment already left these units out
            moved = stock.filter(counted_at__gte=shipment.shipped_at).update(
                allocated=F("allocated") - from_allocation
            )
        if not moved:
            raise InvalidInput(
                f"Warehouse {warehouse.code} has no stock record covering {sl.quantity} of '{sl.sku}'.",
                fields={"lines": ["Insufficient stock."]},
            )
        _reduce_allocations(here, from_allocation)
        line.allocated_quantity -= from_allocation
        # Reservations elsewhere beyond what is still to ship would never be used: give them back.
        excess = line.allocated_quantity - (line.quantity - line.shipped_quantity)
        if excess > 0:
            elsewhere = list(line.allocations.exclude(warehouse=warehouse).order_by("-id"))
            _reduce_allocations(elsewhere, excess, give_back_stock=True)
            line.allocated_quantity -= excess
    OrderLine.objects.bulk_update(order_lines.values(), ["shipped_quantity", "allocated_quantity"])
    complete = all(line.shipped_quantity >= line.quantity for line in order_lines.values())
    _transition(
        order,
        "ship_in_full" if complete else "ship_partially",
        actor=actor,
        data={"shipment": shipment_id, "lines": {sl.sku: sl.quantity for sl in lines}},
    )
    outbox_put(
        endpoint="notify",
        topic="customer.notify",
        payload={
            "order": order.external_id,
            "customer": order.customer.code,
            "template": "shipment_dispatched",
            "data": {"shipment": shipment_id, "carrier": carrier_code, "tracking": tracking},
        },
        idempotency_key=f"notify:shipped:{shipment_id}",
        subject_ref=order.external_id,
    )
    return shipment


@transaction.atomic
def order_confirm_delivery(
    *, order: Order, shipment_id: str, delivered_at: datetime, signed_by: str, actor: Actor
) -> Shipment:
    _lock_order(order)  # so the last two deliveries confirmed at once see each other
    shipment = order.shipments.filter(external_id=shipment_id).first()
    if shipment is None:
        raise NotFound(f"Order {order.external_id} has no shipment '{shipment_id}'.")
    shipment.delivered_at = delivered_at
    shipment.signed_by = signed_by
    shipment.save(update_fields=["delivered_at", "signed_by"])
    _deliver_if_complete(order, actor=actor, data={"shipment": shipment_id, "signed_by": signed_by})
    return shipment


def invoice_amount(order: Order) -> Decimal:
    """What the customer is invoiced for: each line's shipped units at its unit price.

    ``Order.total`` is the lines' ordered units at their unit prices with nothing added
    (no shipping, no tax), so an order shipped in full is invoiced at its total, and one
    closed short at the value of what left the warehouse.
    """
    shipped = order.lines.values_list("shipped_quantity", "unit_price")
    return sum((quantity * unit_price for quantity, unit_price in shipped), Decimal(0))


def _deliver_if_complete(order: Order, *, actor: Actor, data: dict[str, Any]) -> None:
    """Shipped and every shipment delivered: the order is delivered and the ERP is asked
    to invoice it."""
    if order.status != Status.SHIPPED or order.shipments.filter(delivered_at__isnull=True).exists():
        return
    _transition(order, "deliver", actor=actor, data=data)
    amount = _money(invoice_amount(order))
    outbox_put(
        endpoint="erp",
        topic="erp.invoice",
        payload={"order": order.external_id, "amount": amount, "currency": order.currency},
        idempotency_key=f"invoice:{order.external_id}",
        subject_ref=order.external_id,
    )


@transaction.atomic
def order_close_short(*, order: Order, actor: Actor, reason: str) -> Order:
    """Settle a partially shipped order: the rest will not ship. Its remaining
    reservations go back to stock."""
    if not reason.strip():
        raise InvalidInput("Say why the rest will not ship.", fields={"reason": ["Required."]})
    _lock_order(order)
    _transition(order, "close_short", actor=actor, reason=reason)
    released = _release_allocations(order)
    _deliver_if_complete(order, actor=actor, data={"released_stock": released})
    return order


@transaction.atomic
def order_invoice(*, order: Order, number: str, actor: Actor) -> Invoice:
    if Invoice.objects.filter(number=number).exists():
        raise InvalidInput(f"Invoice number '{number}' is taken.", fields={"number": ["Taken."]})
    _transition(order, "invoice", actor=actor, data={"invoice": number})
    return Invoice.objects.create(order=order, number=number, amount=invoice_amount(order))


@transaction.atomic
def order_close(*, order: Order, actor: Actor, reason: str = "") -> Order:
    _transition(order, "close", actor=actor, reason=reason)
    return order


@dataclass(frozen=True)
class StockChange:
    inventory: Inventory
    applied: bool
    increased_by: int


class StockBelowReserved(InvalidInput):
    """A count below what is reserved: movements before it may still be on their way."""

    code = "stock_below_reserved"


def _counted_before(moment: datetime) -> Q:
    """Stock rows whose last count was before ``moment``, so that a movement then changes them."""
    return Q(counted_at__isnull=True) | Q(counted_at__lt=moment)


def _moved_out_after(warehouse: Warehouse, product: Product, moment: datetime) -> int:
    """Units of ``product`` that left ``warehouse`` after ``moment`` as recorded so far:
    shipped, or found missing on a short pick."""
    shipped = ShipmentLine.objects.filter(
        product=product, shipment__warehouse=warehouse, shipment__shipped_at__gt=moment
    ).aggregate(units=Sum("quantity"))["units"]
    picks = OrderTransition.objects.filter(
        transition="start_picking",
        order__lines__product=product,
        data__warehouse=warehouse.code,
        data__short__has_key=product.sku,
    ).values_list("data", "at")
    missing = sum(
        data["short"][product.sku]
        for data, at in picks
        if (datetime.fromisoformat(data["picked_at"]) if "picked_at" in data else at) > moment
    )
    return (shipped or 0) + missing


@transaction.atomic
def inventory_set_on_hand(*, warehouse_code: str, sku: str, on_hand: int, as_of: datetime) -> StockChange:
    """Take the WMS's absolute on-hand figure counted at ``as_of``.

    The figure includes every movement up to ``as_of``, whenever we hear of them: an older
    figure than the one applied last never overwrites it, movements recorded for later
    times are taken off it, and a movement at or before the count (reported late) no
    longer changes on hand (see ``order_record_shipment`` and ``order_record_pick``). So
    the stock ends the same whatever order the reports arrive in.
    """
    warehouse = Warehouse.objects.filter(code=warehouse_code).first()
    product = Product.objects.filter(sku=sku).first()
    if warehouse is None or product is None:
        unknown = f"warehouse '{warehouse_code}'" if warehouse is None else f"SKU '{sku}'"
        raise InvalidInput(f"Unknown {unknown}.")
    if on_hand < 0:
        raise InvalidInput("On hand cannot be negative.", fields={"on_hand": ["Must be 0 or more."]})
    inventory, _ = Inventory.objects.get_or_create(warehouse=warehouse, product=product)
    inventory = Inventory.objects.select_for_update().select_related("product").get(pk=inventory.pk)
    if inventory.counted_at is not None and as_of <= inventory.counted_at:
        return StockChange(inventory=inventory, applied=False, increased_by=0)
    now_on_hand = on_hand - _moved_out_after(warehouse, product, as_of)
    if now_on_hand < inventory.allocated:
        raise StockBelowReserved(
            f"{warehouse.code} reports {on_hand} of {sku} on hand at {as_of:%Y-%m-%d %H:%M:%S}, which "
            f"leaves {now_on_hand}, below the {inventory.allocated} reserved for orders: either "
            "shipments or picks before the count are still to come, or a planner must re-plan "
            "those reservations."
        )
    increased_by = now_on_hand - inventory.on_hand
    inventory.on_hand, inventory.counted_at = now_on_hand, as_of
    inventory.save(update_fields=["on_hand", "counted_at", "updated_at"])
    return StockChange(inventory=inventory, applied=True, increased_by=increased_by)


@transaction.atomic
def order_record_pick(
    *,
    order: Order,
    warehouse_code: str,
    picked: dict[str, int],
    actor: Actor,
    picked_at: datetime | None = None,
) -> dict[str, int]:
    """The warehouse picked and packed the order; returns SKU -> units short.

    Units allocated but not found were not there: they leave the order's reservations and
    the warehouse's stock (unless a stock count at or after ``picked_at`` left them out
    already), so the books match the shelf.
    """
    picked_at = picked_at or clock.now()
    _lock_order(order)
    warehouse = Warehouse.objects.filter(code=warehouse_code).first()
    if warehouse is None:
        raise InvalidInput(f"Unknown warehouse '{warehouse_code}'.", fields={"warehouse": ["Unknown."]})
    lines = {line.product.sku: line for line in order.lines.select_related("product")}
    unknown = sorted(set(picked) - set(lines))
    if unknown:
        raise InvalidInput(f"SKU(s) {', '.join(unknown)} are not on order {order.external_id}.")
    short: dict[str, int] = {}
    for sku, line in lines.items():
        here = list(line.allocations.filter(warehouse=warehouse).order_by("id"))
        reserved = sum(alloc.quantity for alloc in here)
        missing = reserved - picked.get(sku, reserved)
        if missing <= 0:
            continue
        short[sku] = missing
        stock = Inventory.objects.filter(warehouse=warehouse, product=line.product)
        if not stock.filter(_counted_before(picked_at)).update(
            on_hand=F("on_hand") - missing, allocated=F("allocated") - missing
        ):  # a stock count at or after the pick left the missing units out already
            stock.update(allocated=F("allocated") - missing)
        _reduce_allocations(here, missing)
        line.allocated_quantity -= missing
        line.save(update_fields=["allocated_quantity"])
    data = {"warehouse": warehouse.code, "picked": picked, "short": short, "picked_at": picked_at.isoformat()}
    _transition(order, "start_picking", actor=actor, data=data)
    _transition(order, "pack", actor=actor)
    return short


@transaction.atomic
def order_record_return(
    *, order: Order, reference: str, lines: dict[str, int], reason: str, actor: Actor
) -> Return:
    on_order = set(order.lines.values_list("product__sku", flat=True))
    unknown = sorted(set(lines) - on_order)
    if unknown:
        raise InvalidInput(f"SKU(s) {', '.join(unknown)} are not on order {order.external_id}.")
    if order.status not in (
        Status.SHIPPED,
        Status.PARTIALLY_SHIPPED,
        Status.DELIVERED,
        Status.INVOICED,
        Status.CLOSED,
    ):
        raise TransitionNotAllowed(f"Order {order.external_id} has not shipped; nothing can be returned.")
    returned, _ = Return.objects.get_or_create(
        reference=reference, defaults={"order": order, "lines": lines, "reason": reason}
    )
    return returned


@transaction.atomic
def shipment_update_tracking(
    *, shipment: Shipment, status: str, eta: datetime | None, as_of: datetime
) -> bool:
    """Take the carrier's latest tracking status; an older update never overwrites a newer."""
    locked = Shipment.objects.select_for_update().get(pk=shipment.pk)
    if locked.tracking_updated_at is not None and as_of <= locked.tracking_updated_at:
        return False
    locked.tracking_status, locked.eta, locked.tracking_updated_at = status, eta, as_of
    locked.save(update_fields=["tracking_status", "eta", "tracking_updated_at"])
    shipment.tracking_status, shipment.eta, shipment.tracking_updated_at = status, eta, as_of
    return True


# --- the ERP's bulk path ---------------------------------------------------------------


@dataclass(frozen=True)
class OrderImport:
    """One order of an ERP batch: the same fields ``order_create`` takes."""

    external_id: str
    customer_code: str
    promised_date: date
    ship_to: ShipTo
    lines: list[LineInput]
    warehouse_code: str | None = None
    currency: str = "EUR"


def _import_errors(
    row: OrderImport, customers: dict[str, int], warehouses: dict[str, int], products: dict[str, Product]
) -> dict[str, list[str]]:
    """What ``order_create`` would refuse in this row, checked against the batch's lookups."""
    errors: dict[str, list[str]] = {}
    if not row.external_id or len(row.external_id) > 64:
        errors["external_id"] = ["Give an external id of 1 to 64 characters."]
    if row.customer_code not in customers:
        errors["customer"] = [f"Unknown customer '{row.customer_code}'."]
    if row.warehouse_code and row.warehouse_code not in warehouses:
        errors["warehouse"] = [f"Unknown warehouse '{row.warehouse_code}'."]
    if len(row.currency) != 3 or not row.currency.isalpha():
        errors["currency"] = ["Use a three-letter ISO 4217 code."]
    if not row.lines:
        errors["lines"] = ["An order needs at least one line."]
    if line_errors := _line_errors(row.lines, products):
        errors.setdefault("lines", []).extend(line_errors)
    elif row.lines:
        total = sum((_price(line.unit_price) * line.quantity for line in row.lines), Decimal(0))
        if total > MAX_ORDER_TOTAL:
            errors["lines"] = [f"The order total must not exceed {MAX_ORDER_TOTAL}."]
    if ship_to_errors := _ship_to_errors(row.ship_to):
        errors["ship_to"] = ship_to_errors
    return errors


def orders_import(*, rows: list[OrderImport], actor: Actor) -> int:
    """Take a batch of ERP orders in one transaction; returns how many were new.

    Every row is checked as ``order_create`` checks one order; if any row is bad, the
    batch is refused (``InvalidInput`` with fields named ``rows.<n>.<field>``, n from 1)
    and nothing is written. Orders whose external id is known already are skipped, so a
    batch may be sent again. The new orders, their lines and their ``receive`` timeline
    rows are inserted with one statement each (SQLite splits them at its parameter
    limit), so the queries do not grow with the batch on PostgreSQL. The orders arrive
    received; intake (credit check, allocation) takes them from there.
    """
    errors: dict[str, list[str]] = {}
    bad_rows: set[int] = set()
    seen: dict[str, int] = {}
    for n, row in enumerate(rows, start=1):
        if row.external_id in seen:
            errors[f"rows.{n}.external_id"] = [f"'{row.external_id}' is on row {seen[row.external_id]} too."]
            bad_rows.add(n)
        seen.setdefault(row.external_id, n)
    customers = dict(
        Customer.objects.filter(code__in={row.customer_code for row in rows}).values_list("code", "pk")
    )
    warehouse_codes = {row.warehouse_code for row in rows if row.warehouse_code}
    warehouses = dict(Warehouse.objects.filter(code__in=warehouse_codes).values_list("code", "pk"))
    skus = {line.sku for row in rows for line in row.lines}
    products = Product.objects.only("pk", "sku").in_bulk(skus, field_name="sku")
    for n, row in enumerate(rows, start=1):
        for name, messages in _import_errors(row, customers, warehouses, products).items():
            errors.setdefault(f"rows.{n}.{name}", []).extend(messages)
            bad_rows.add(n)
    if errors:
        raise InvalidInput(f"The batch is not valid: {len(bad_rows)} bad row(s).", fields=errors)

    try:
        return _import_new(rows, actor, customers, warehouses, products)
    except IntegrityError:
        # Another import took some of these external ids meanwhile: skip those as well.
        return _import_new(rows, actor, customers, warehouses, products)


@transaction.atomic
def _import_new(
    rows: list[OrderImport],
    actor: Actor,
    customers: dict[str, int],
    warehouses: dict[str, int],
    products: dict[str, Product],
) -> int:
    known = set(
        Order.objects.filter(external_id__in=[row.external_id for row in rows]).values_list(
            "external_id", flat=True
        )
    )
    new = [row for row in rows if row.external_id not in known]
    if not new:
        return 0
    now = clock.now()
    orders = Order.objects.bulk_create(
        Order(
            external_id=row.external_id,
            customer_id=customers[row.customer_code],
            warehouse_id=warehouses[row.warehouse_code] if row.warehouse_code else None,
            promised_date=row.promised_date,
            currency=row.currency.upper(),
            total=sum((_price(line.unit_price) * line.quantity for line in row.lines), Decimal(0)),
            ship_to_name=row.ship_to.name,
            ship_to_line1=row.ship_to.line1,
            ship_to_city=row.ship_to.city,
            ship_to_postal_code=row.ship_to.postal_code,
            ship_to_country=row.ship_to.country.upper(),
            status_changed_at=now,
            created_at=now,
        )
        for row in new
    )
    OrderLine.objects.bulk_create(
        OrderLine(
            order_id=order.pk,
            line_no=n,
            product_id=products[line.sku].pk,
            quantity=line.quantity,
            unit_price=_price(line.unit_price),
        )
        for order, row in zip(orders, new, strict=True)
        for n, line in enumerate(row.lines, start=1)
    )
    OrderTransition.objects.bulk_create(
        OrderTransition(
            order_id=order.pk,
            transition="receive",
            from_state="",
            to_state=order.status,
            actor_user=actor.user,
            actor_system=actor.system,
            at=now,
        )
        for order in orders
    )
    return len(orders)
