"""Bad input fails with an application error and writes nothing."""

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from fulfillment.core import clock
from fulfillment.core.errors import InvalidInput, NotFound, TransitionNotAllowed
from orders import services
from orders.models import Inventory, Order, Status
from tests import factories

S = Status
pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> dict[str, Any]:
    return {
        "customer": factories.customer(code="C-OK"),
        "warehouse": factories.warehouse("W-OK"),
        "product": factories.product("SKU-OK", price="12.50"),
    }


def _create(**overrides: Any) -> Order:
    args: dict[str, Any] = {
        "external_id": "SO-BAD-1",
        "customer_code": "C-OK",
        "warehouse_code": "W-OK",
        "promised_date": date(2030, 1, 31),
        "ship_to": factories.ship_to(),
        "lines": [services.LineInput(sku="SKU-OK", quantity=2, unit_price=Decimal("12.50"))],
        "actor": factories.SYSTEM,
    }
    return services.order_create(**{**args, **overrides})


def _line(sku: str = "SKU-OK", quantity: Any = 2, unit_price: Any = Decimal("12.50")) -> services.LineInput:
    return services.LineInput(sku=sku, quantity=quantity, unit_price=unit_price)


def _ship_to(**overrides: str) -> services.ShipTo:
    base = {
        "name": "Receiving",
        "line1": "1 Dock Road",
        "city": "Hull",
        "postal_code": "HU1",
        "country": "GB",
    }
    return services.ShipTo(**{**base, **overrides})


BAD_ORDERS: list[tuple[str, dict[str, Any], dict[str, list[str]]]] = [
    ("unknown sku", {"lines": [_line("NOPE")]}, {"lines": ["Line 1: unknown SKU 'NOPE'."]}),
    ("unknown customer", {"customer_code": "NOPE"}, {"customer": ["Unknown customer 'NOPE'."]}),
    ("unknown warehouse", {"warehouse_code": "NOPE"}, {"warehouse": ["Unknown warehouse 'NOPE'."]}),
    (
        "zero quantity",
        {"lines": [_line(quantity=0)]},
        {"lines": ["Line 1: quantity must be a whole number above zero."]},
    ),
    (
        "negative quantity",
        {"lines": [_line(quantity=-3)]},
        {"lines": ["Line 1: quantity must be a whole number above zero."]},
    ),
    (
        "fractional quantity",
        {"lines": [_line(quantity=1.5)]},
        {"lines": ["Line 1: quantity must be a whole number above zero."]},
    ),
    (
        "boolean quantity",
        {"lines": [_line(quantity=True)]},
        {"lines": ["Line 1: quantity must be a whole number above zero."]},
    ),
    (
        "quantity beyond the column",
        {"lines": [_line(quantity=2**31)]},
        {"lines": ["Line 1: quantity must not exceed 2147483647."]},
    ),
    (
        "negative price",
        {"lines": [_line(unit_price=Decimal("-0.01"))]},
        {"lines": ["Line 1: unit price must not be negative."]},
    ),
    (
        "price not a number",
        {"lines": [_line(unit_price="twelve")]},
        {"lines": ["Line 1: unit price is not a number."]},
    ),
    (
        "price NaN",
        {"lines": [_line(unit_price=Decimal("NaN"))]},
        {"lines": ["Line 1: unit price is not a number."]},
    ),
    (
        "price infinite",
        {"lines": [_line(unit_price=Decimal("Infinity"))]},
        {"lines": ["Line 1: unit price is not a number."]},
    ),
    (
        "price with three decimals",
        {"lines": [_line(unit_price=Decimal("1.005"))]},
        {"lines": ["Line 1: unit price must have at most two decimals."]},
    ),
    (
        "price beyond the column",
        {"lines": [_line(unit_price=Decimal("10000000000.00"))]},
        {"lines": ["Line 1: unit price must not exceed 9999999999.99."]},
    ),
    (
        "total beyond the column",
        {"lines": [_line(quantity=200, unit_price=Decimal("9999999999.99"))]},
        {"lines": ["The order total must not exceed 999999999999.99."]},
    ),
    ("no lines", {"lines": []}, {"lines": ["An order needs at least one line."]}),
    (
        "same sku twice",
        {"lines": [_line(), _line(quantity=1)]},
        {"lines": ["Line 2: SKU 'SKU-OK' is already on line 1."]},
    ),
    (
        "empty external id",
        {"external_id": ""},
        {"external_id": ["Give an external id of 1 to 64 characters."]},
    ),
    (
        "external id too long",
        {"external_id": "X" * 65},
        {"external_id": ["Give an external id of 1 to 64 characters."]},
    ),
    ("bad currency", {"currency": "EU"}, {"currency": ["Use a three-letter ISO 4217 code."]}),
    (
        "ship-to country",
        {"ship_to": _ship_to(country="GBR")},
        {"ship_to": ["Country must be a two-letter ISO 3166 code."]},
    ),
    (
        "ship-to blanks",
        {"ship_to": _ship_to(name=" ", line1="", city="")},
        {"ship_to": ["Name is required.", "Address line is required.", "City is required."]},
    ),
    (
        "ship-to too long",
        {"ship_to": _ship_to(postal_code="9" * 21)},
        {"ship_to": ["Postal code must be at most 20 characters."]},
    ),
    (
        "everything at once",
        {
            "customer_code": "NOPE",
            "lines": [_line("NOPE", quantity=0), _line(unit_price=Decimal("-1"))],
        },
        {
            "customer": ["Unknown customer 'NOPE'."],
            "lines": [
                "Line 1: unknown SKU 'NOPE'.",
                "Line 1: quantity must be a whole number above zero.",
                "Line 2: unit price must not be negative.",
            ],
        },
    ),
]


@pytest.mark.parametrize(("overrides", "fields"), [c[1:] for c in BAD_ORDERS], ids=[c[0] for c in BAD_ORDERS])
def test_order_create_rejects_bad_input_and_writes_nothing(
    world: dict[str, Any], overrides: dict[str, Any], fields: dict[str, list[str]]
) -> None:
    before = factories.row_counts()

    with pytest.raises(InvalidInput) as caught:
        _create(**overrides)

    assert caught.value.message == "The order is not valid."
    assert caught.value.fields == fields
    assert caught.value.code == "invalid_input"
    assert factories.row_counts() == before


def test_valid_input_next_to_the_bad_cases_is_accepted(world: dict[str, Any]) -> None:
    """The control for the table above: the same call without the fault writes the order."""
    before = factories.row_counts()

    order = _create(ship_to=_ship_to(postal_code=""), currency="gbp")

    after = factories.row_counts()
    assert {k: after[k] - before[k] for k in after} == {
        "Order": 1,
        "OrderLine": 1,
        "OrderTransition": 1,
        "Allocation": 0,
        "Shipment": 0,
        "ShipmentLine": 0,
        "Invoice": 0,
    }
    saved = Order.objects.get(pk=order.pk)
    assert (saved.status, saved.total, saved.currency, saved.ship_to_postal_code) == (
        S.RECEIVED,
        Decimal("25.00"),
        "GBP",
        "",
    )


def test_duplicate_external_id_is_rejected_and_the_first_order_is_untouched(world: dict[str, Any]) -> None:
    first = _create()
    before = factories.row_counts()

    with pytest.raises(InvalidInput) as caught:
        _create(lines=[_line(quantity=7)])

    assert caught.value.message == "An order with external id 'SO-BAD-1' exists already."
    assert caught.value.fields == {"external_id": ["Already taken."]}
    assert factories.row_counts() == before
    assert list(first.lines.values_list("quantity", flat=True)) == [2]


# --- moves that are not allowed ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "call"),
    [
        (S.RECEIVED, "allocate"),
        (S.RECEIVED, "ship"),
        (S.ALLOCATED, "invoice"),
        (S.ALLOCATED, "credit_check"),
        (S.SHIPPED, "cancel"),
        (S.CLOSED, "close"),
        (S.CANCELLED, "hold"),
    ],
)
def test_a_move_not_allowed_from_the_current_state_writes_nothing(state: str, call: str) -> None:
    order = factories.order_in(state)
    sku = order.lines.get().product.sku
    factories.stock(order.warehouse, order.lines.get().product, 50)
    before = factories.row_counts()
    stock_before = list(Inventory.objects.order_by("pk").values_list("on_hand", "allocated"))
    actor = factories.SYSTEM
    calls = {
        "allocate": lambda: services.order_allocate(order=order, actor=actor),
        "ship": lambda: services.order_record_shipment(
            order=order, shipment_id="SH-X", warehouse_code=order.warehouse.code,
            lines=[services.ShippedLine(sku=sku, quantity=1)], actor=actor,
        ),
        "invoice": lambda: services.order_invoice(order=order, number="INV-X", actor=actor),
        "credit_check": lambda: services.order_credit_check(order=order, actor=actor),
        "cancel": lambda: services.order_cancel(order=order, actor=actor, reason="late"),
        "close": lambda: services.order_close(order=order, actor=actor),
        "hold": lambda: services.order_apply(order=order, transition_name="hold", actor=actor, reason="x"),
    }  # fmt: skip

    with pytest.raises(TransitionNotAllowed):
        calls[call]()

    assert factories.row_counts() == before
    assert list(Inventory.objects.order_by("pk").values_list("on_hand", "allocated")) == stock_before
    assert Order.objects.get(pk=order.pk).status == state


@pytest.mark.parametrize("reason", ["", "   \n"])
def test_cancel_without_a_reason_is_refused(reason: str) -> None:
    order = factories.order_in(S.ALLOCATED)
    before = factories.row_counts()
    stock_before = list(Inventory.objects.values_list("on_hand", "allocated"))

    with pytest.raises(InvalidInput) as caught:
        services.order_cancel(order=order, actor=factories.SYSTEM, reason=reason)
    with pytest.raises(InvalidInput):
        services.order_apply(order=order, transition_name="cancel", actor=factories.SYSTEM, reason=reason)

    assert caught.value.fields == {"reason": ["Required."]}
    assert factories.row_counts() == before
    assert list(Inventory.objects.values_list("on_hand", "allocated")) == stock_before
    assert Order.objects.get(pk=order.pk).status == S.ALLOCATED


@pytest.mark.parametrize("name", ["release", "allocate_in_full", "save", "delete", "nonsense"])
def test_only_hold_release_hold_and_cancel_can_be_applied_by_hand(name: str) -> None:
    order = factories.order_in(S.ALLOCATED)
    before = factories.row_counts()

    with pytest.raises(InvalidInput) as caught:
        services.order_apply(order=order, transition_name=name, actor=factories.SYSTEM, reason="x")

    assert caught.value.message == (
        f"'{name}' cannot be triggered by hand; choose one of cancel, hold, release_hold."
    )
    assert factories.row_counts() == before
    assert Order.objects.filter(pk=order.pk).exists()


@pytest.mark.parametrize("name", ["save", "delete", "nonsense"])
def test_transition_refuses_names_that_are_not_transitions(name: str) -> None:
    order = factories.order_in(S.RECEIVED)
    before = factories.row_counts()

    with pytest.raises(InvalidInput):
        services._transition(order, name, actor=factories.SYSTEM)

    assert factories.row_counts() == before


# --- shipments, deliveries and invoices ----------------------------------------------------------


BAD_SHIPMENTS: list[tuple[str, dict[str, Any], dict[str, list[str]]]] = [
    ("unknown warehouse", {"warehouse_code": "NOPE"}, {"warehouse": ["Unknown."]}),
    ("unknown carrier", {"carrier_code": "NOPE"}, {"carrier": ["Unknown."]}),
    (
        "sku not on order",
        {"lines": [("SKU-OTHER", 1)]},
        {"lines": ["SKU 'SKU-OTHER' is not on order SO-SHIP."]},
    ),
    (
        "more than ordered",
        {"lines": [("SKU-OK", 5)]},
        {"lines": ["Shipping 5 of 'SKU-OK' exceeds what was ordered."]},
    ),
    (
        "zero units",
        {"lines": [("SKU-OK", 0)]},
        {"lines": ["Shipping 0 of 'SKU-OK' exceeds what was ordered."]},
    ),
    ("no lines", {"lines": []}, {"lines": ["No lines."]}),
    ("already recorded", {"shipment_id": "SH-1"}, {"shipment_id": ["Already recorded."]}),
    ("no stock there", {"warehouse_code": "W-EMPTY"}, {"lines": ["Insufficient stock."]}),
]


@pytest.mark.parametrize(
    ("overrides", "fields"), [c[1:] for c in BAD_SHIPMENTS], ids=[c[0] for c in BAD_SHIPMENTS]
)
def test_record_shipment_rejects_bad_input_and_writes_nothing(
    world: dict[str, Any], overrides: dict[str, Any], fields: dict[str, list[str]]
) -> None:
    factories.warehouse("W-EMPTY")
    factories.product("SKU-OTHER")
    factories.stock(world["warehouse"], world["product"], 10)
    order = _create(external_id="SO-SHIP", lines=[_line(quantity=4)])
    services.order_credit_check(order=order, actor=factories.SYSTEM)
    services.order_allocate(order=order, actor=factories.SYSTEM)
    services.order_release(order=order, actor=factories.SYSTEM)
    services.order_start_picking(order=order, actor=factories.SYSTEM)
    services.order_record_shipment(
        order=order, shipment_id="SH-1", warehouse_code="W-OK",
        lines=[services.ShippedLine(sku="SKU-OK", quantity=1)], actor=factories.SYSTEM,
    )  # fmt: skip
    before = factories.row_counts()
    stock_before = list(Inventory.objects.order_by("pk").values_list("on_hand", "allocated"))
    args: dict[str, Any] = {"shipment_id": "SH-2", "warehouse_code": "W-OK", "lines": [("SKU-OK", 1)]}
    args.update(overrides)

    with pytest.raises(InvalidInput) as caught:
        services.order_record_shipment(
            order=order,
            shipment_id=args["shipment_id"],
            warehouse_code=args["warehouse_code"],
            carrier_code=args.get("carrier_code", ""),
            lines=[services.ShippedLine(sku=sku, quantity=q) for sku, q in args["lines"]],
            actor=factories.SYSTEM,
        )

    assert caught.value.fields == fields
    assert factories.row_counts() == before
    assert list(Inventory.objects.order_by("pk").values_list("on_hand", "allocated")) == stock_before
    saved = Order.objects.get(pk=order.pk)
    assert saved.status == S.PARTIALLY_SHIPPED
    assert list(saved.lines.values_list("shipped_quantity", "allocated_quantity")) == [(1, 3)]


def test_confirm_delivery_of_an_unknown_shipment_is_not_found_and_writes_nothing() -> None:
    order = factories.order_in(S.SHIPPED)
    before = factories.row_counts()

    with pytest.raises(NotFound):
        services.order_confirm_delivery(
            order=order, shipment_id="SH-NOPE", delivered_at=clock.now(), signed_by="x",
            actor=factories.SYSTEM,
        )  # fmt: skip

    assert factories.row_counts() == before
    assert Order.objects.get(pk=order.pk).status == S.SHIPPED
    assert order.shipments.get().delivered_at is None


def test_a_taken_invoice_number_is_refused_and_writes_nothing() -> None:
    first = factories.order_in(S.INVOICED)
    taken = first.invoices.get().number
    order = factories.order_in(S.DELIVERED)
    before = factories.row_counts()

    with pytest.raises(InvalidInput) as caught:
        services.order_invoice(order=order, number=taken, actor=factories.SYSTEM)

    assert caught.value.fields == {"number": ["Taken."]}
    assert factories.row_counts() == before
    assert Order.objects.get(pk=order.pk).status == S.DELIVERED
