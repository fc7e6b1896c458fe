"""Orders from the ERP: one way in for the API push and the scheduled pull.

The ERP's order (``external_id``, ``customer`` code, optional ``warehouse`` code,
``promised_date``, ``currency``, ``ship_to {name, line1, city, postal_code, country}``,
``lines [{sku, quantity, unit_price}]``) is upserted by its external id: a new one is
created and goes through intake in the same transaction; a known one is returned as it
is, so that the ERP may send an order as often as it likes.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction

from flows import fulfilment
from fulfillment.core.actors import Actor
from fulfillment.core.errors import InvalidInput
from orders import services as order_services
from orders.models import Order

SHIP_TO_FIELDS = ("name", "line1", "city", "postal_code", "country")


@dataclass(frozen=True)
class UpsertOutcome:
    order: Order
    created: bool


@dataclass(frozen=True)
class _ErpOrder:
    external_id: str
    customer_code: str
    warehouse_code: str | None
    promised_date: date
    currency: str
    ship_to: order_services.ShipTo
    lines: list[order_services.LineInput]


Errors = dict[str, list[str]]


def _text(payload: Mapping[str, Any], name: str, errors: Errors, *, required: bool = True) -> str:
    value = payload.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        errors[name] = ["Give a non-empty text." if required else "Give a text."]
        return ""
    return value.strip()


def _promised_date(value: object, errors: Errors) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    errors["promised_date"] = ["Give a date as YYYY-MM-DD."]
    return date.min


def _ship_to(value: object, errors: Errors) -> order_services.ShipTo:
    if not isinstance(value, Mapping):
        errors["ship_to"] = ["Give the address as {name, line1, city, postal_code, country}."]
        return order_services.ShipTo("", "", "", "", "")
    fields = {}
    for name in SHIP_TO_FIELDS:
        part = value.get(name, "" if name == "postal_code" else None)
        if not isinstance(part, str):
            errors.setdefault("ship_to", []).append(f"'{name}' must be a text.")
            part = ""
        fields[name] = part.strip()
    return order_services.ShipTo(**fields)


def _lines(value: object, errors: Errors) -> list[order_services.LineInput]:
    if not isinstance(value, list):
        errors["lines"] = ["Give the lines as a list of {sku, quantity, unit_price}."]
        return []
    lines, problems = [], []
    for n, line in enumerate(value, start=1):
        if not isinstance(line, Mapping):
            problems.append(f"Line {n}: give {{sku, quantity, unit_price}}.")
            continue
        sku, quantity, price = line.get("sku"), line.get("quantity"), line.get("unit_price")
        if not isinstance(sku, str) or not sku:
            problems.append(f"Line {n}: give the SKU.")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            problems.append(f"Line {n}: quantity must be a whole number.")
        try:
            if isinstance(price, bool) or not isinstance(price, str | int | float | Decimal):
                raise InvalidOperation
            unit_price = Decimal(str(price))
        except InvalidOperation:
            problems.append(f"Line {n}: unit price is not a number.")
            continue
        if isinstance(sku, str) and isinstance(quantity, int):
            lines.append(order_services.LineInput(sku=sku, quantity=quantity, unit_price=unit_price))
    if problems:
        errors["lines"] = problems
    return lines


def _parse(payload: object) -> _ErpOrder:
    """The order's shape; the rules (known customer and SKUs, quantities, prices, address)
    are checked by ``order_create``."""
    if not isinstance(payload, Mapping):
        raise InvalidInput("The order must be a JSON object.", fields={"order": ["Not an object."]})
    errors: Errors = {}
    parsed = _ErpOrder(
        external_id=_text(payload, "external_id", errors),
        customer_code=_text(payload, "customer", errors),
        warehouse_code=_text(payload, "warehouse", errors, required=False) or None,
        promised_date=_promised_date(payload.get("promised_date"), errors),
        currency=_text(payload, "currency", errors, required=False) or "EUR",
        ship_to=_ship_to(payload.get("ship_to"), errors),
        lines=_lines(payload.get("lines"), errors),
    )
    if errors:
        raise InvalidInput("The order is not valid.", fields=errors)
    return parsed


def _existing(external_id: str) -> Order | None:
    return Order.objects.select_related("customer", "warehouse").filter(external_id=external_id).first()


@transaction.atomic
def erp_order_upsert(*, payload: Mapping[str, Any], actor: Actor) -> UpsertOutcome:
    """Create the order and run its intake, or return the order of that external id as it is.

    Bad input raises ``InvalidInput`` with field errors and writes nothing. When the same
    order arrives twice at once, the second insert waits for the first and returns its order.
    """
    erp_order = _parse(payload)
    if (known := _existing(erp_order.external_id)) is not None:
        return UpsertOutcome(order=known, created=False)
    try:
        order = order_services.order_create(
            external_id=erp_order.external_id,
            customer_code=erp_order.customer_code,
            warehouse_code=erp_order.warehouse_code,
            promised_date=erp_order.promised_date,
            currency=erp_order.currency,
            ship_to=erp_order.ship_to,
            lines=erp_order.lines,
            actor=actor,
        )
    except InvalidInput as exc:
        if "external_id" in exc.fields and (known := _existing(erp_order.external_id)) is not None:
            return UpsertOutcome(order=known, created=False)
        raise
    fulfilment.order_intake(order=order, actor=actor)
    return UpsertOutcome(order=order, created=True)
