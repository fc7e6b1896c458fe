"""ERP orders in: upsert by external id, intake on creation, nothing written for bad input."""

import threading
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections

from approvals.models import ApprovalRequest
from flows.intake import UpsertOutcome, erp_order_upsert
from fulfillment.core.actors import Actor
from fulfillment.core.errors import InvalidInput
from fulfillment.core.models import OutboxMessage, WorkItem
from orders.models import Order, OrderTransition, Status
from tests import factories

ERP = Actor.named("erp")
SHIP_TO = {
    "name": "Ada Lovelace",
    "line1": "3 Mill Lane",
    "city": "Lyon",
    "postal_code": "69001",
    "country": "FR",
}


@pytest.fixture
def catalog(db: None) -> None:
    factories.customer(code="C-ERP")
    wh = factories.warehouse("WH-ERP")
    for sku, price in (("SKU-A", "12.50"), ("SKU-B", "3.00")):
        factories.stock(wh, factories.product(sku, price), 100)


def erp_order(**changes: Any) -> dict[str, Any]:
    order = {
        "external_id": "ERP-1",
        "customer": "C-ERP",
        "warehouse": "WH-ERP",
        "promised_date": "2026-03-09",
        "currency": "EUR",
        "ship_to": SHIP_TO,
        "lines": [
            {"sku": "SKU-A", "quantity": 2, "unit_price": "12.50"},
            {"sku": "SKU-B", "quantity": 1, "unit_price": 3},
        ],
    }
    return {**order, **changes}


def written() -> dict[str, int]:
    return {
        **factories.row_counts(),
        "OutboxMessage": OutboxMessage.objects.count(),
        "WorkItem": WorkItem.objects.count(),
        "ApprovalRequest": ApprovalRequest.objects.count(),
    }


def test_a_new_order_is_created_and_goes_through_intake(catalog: None) -> None:
    outcome = erp_order_upsert(payload=erp_order(), actor=ERP)

    assert outcome.created
    order = Order.objects.get()
    assert outcome.order == order
    assert (order.external_id, order.customer.code, order.warehouse.code, order.promised_date) == (
        "ERP-1", "C-ERP", "WH-ERP", date(2026, 3, 9),
    )  # fmt: skip
    assert (order.currency, order.total, order.status) == ("EUR", Decimal("28.00"), Status.RELEASED)
    assert (order.ship_to_name, order.ship_to_line1, order.ship_to_city, order.ship_to_postal_code) == (
        "Ada Lovelace", "3 Mill Lane", "Lyon", "69001",
    )  # fmt: skip
    assert order.ship_to_country == "FR"
    assert list(order.lines.values_list("product__sku", "quantity", "unit_price", "allocated_quantity")) == [
        ("SKU-A", 2, Decimal("12.50"), 2),
        ("SKU-B", 1, Decimal("3.00"), 1),
    ]
    timeline = OrderTransition.objects.filter(order=order).order_by("id")
    assert [(t.transition, t.actor_label) for t in timeline] == [
        ("receive", "erp"),
        ("start_credit_check", "erp"),
        ("pass_credit_check", "erp"),
        ("allocate_in_full", "erp"),
        ("release", "erp"),
    ]
    assert sorted(OutboxMessage.objects.values_list("topic", flat=True)) == [
        "carrier.booking", "erp.status", "order.release",
    ]  # fmt: skip


def test_a_known_external_id_returns_the_order_unchanged(catalog: None) -> None:
    first = erp_order_upsert(payload=erp_order(), actor=ERP)
    before = written()

    again = erp_order_upsert(payload=erp_order(), actor=ERP)
    changed = erp_order_upsert(
        payload=erp_order(
            promised_date="2026-04-01", lines=[{"sku": "SKU-B", "quantity": 9, "unit_price": "3"}]
        ),
        actor=ERP,
    )

    assert again == changed == UpsertOutcome(order=first.order, created=False)
    assert written() == before
    order = Order.objects.get()
    assert (order.promised_date, order.total, order.lines.count()) == (date(2026, 3, 9), Decimal("28.00"), 2)


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        (["ERP-1"], {"order": ["Not an object."]}),
        (
            erp_order(external_id="", customer=None),
            {"external_id": ["Give a non-empty text."], "customer": ["Give a non-empty text."]},
        ),
        (erp_order(promised_date="next tuesday"), {"promised_date": ["Give a date as YYYY-MM-DD."]}),
        (
            erp_order(warehouse=7, currency=["EUR"]),
            {"warehouse": ["Give a text."], "currency": ["Give a text."]},
        ),
        (
            erp_order(ship_to="Lyon"),
            {"ship_to": ["Give the address as {name, line1, city, postal_code, country}."]},
        ),
        (erp_order(ship_to={**SHIP_TO, "city": 69}), {"ship_to": ["'city' must be a text."]}),
        (
            erp_order(lines="2 x SKU-A"),
            {"lines": ["Give the lines as a list of {sku, quantity, unit_price}."]},
        ),
        (
            erp_order(lines=[{"sku": "SKU-A", "quantity": "2", "unit_price": "a lot"}, "SKU-B"]),
            {
                "lines": [
                    "Line 1: quantity must be a whole number.",
                    "Line 1: unit price is not a number.",
                    "Line 2: give {sku, quantity, unit_price}.",
                ]
            },
        ),
        # The rules of order_create: known customer and SKUs, quantities, address.
        (
            erp_order(customer="C-NOPE", lines=[{"sku": "SKU-NOPE", "quantity": 0, "unit_price": "1"}]),
            {
                "customer": ["Unknown customer 'C-NOPE'."],
                "lines": [
                    "Line 1: unknown SKU 'SKU-NOPE'.",
                    "Line 1: quantity must be a whole number above zero.",
                ],
            },
        ),
        (
            erp_order(ship_to={**SHIP_TO, "country": "France"}),
            {"ship_to": ["Country must be a two-letter ISO 3166 code."]},
        ),
        (erp_order(lines=[]), {"lines": ["An order needs at least one line."]}),
    ],
)
def test_bad_input_is_refused_with_field_errors_and_writes_nothing(
    catalog: None, payload: Any, fields: dict[str, list[str]]
) -> None:
    before = written()

    with pytest.raises(InvalidInput) as refused:
        erp_order_upsert(payload=payload, actor=ERP)

    assert refused.value.fields == fields
    assert written() == before


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_new_order_arriving_twice_at_once_is_created_once() -> None:
    factories.migration_data()
    factories.customer(code="C-ERP")
    wh = factories.warehouse("WH-ERP")
    for sku, price in (("SKU-A", "12.50"), ("SKU-B", "3.00")):
        factories.stock(wh, factories.product(sku, price), 100)
    start = threading.Barrier(2)
    outcomes: list[UpsertOutcome] = []
    errors: list[BaseException] = []

    def push() -> None:
        try:
            start.wait()
            outcomes.append(erp_order_upsert(payload=erp_order(), actor=ERP))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=push) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    order = Order.objects.get()
    assert sorted(outcome.created for outcome in outcomes) == [False, True]
    assert {outcome.order.pk for outcome in outcomes} == {order.pk}
    assert order.status == Status.RELEASED
    assert OrderTransition.objects.filter(transition="receive").count() == 1
    assert OutboxMessage.objects.count() == 3
