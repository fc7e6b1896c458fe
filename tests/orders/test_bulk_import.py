"""The ERP's bulk path: ``orders_import`` checks a batch as ``order_create`` checks one
order, inserts it in one transaction with a fixed number of queries, and skips what it
has seen before."""

import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.errors import InvalidInput
from orders.models import Order, OrderLine, OrderTransition, Status
from orders.services import LineInput, OrderImport, orders_import
from tests import factories

pytestmark = pytest.mark.django_db

ERP = Actor.named("erp")
AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def row(external_id: str, customer_code: str, *lines: tuple[str, int, str], **kw: object) -> OrderImport:
    return OrderImport(
        external_id=external_id,
        customer_code=customer_code,
        promised_date=date(2026, 3, 9),
        ship_to=factories.ship_to(),
        lines=[LineInput(sku=sku, quantity=qty, unit_price=Decimal(price)) for sku, qty, price in lines],
        **kw,
    )


@pytest.fixture
def catalog() -> dict[str, str]:
    factories.customer(code="C1")
    factories.customer(code="C2")
    factories.warehouse(code="WH1")
    for sku in ("A", "B", "C"):
        factories.product(sku=sku)
    return {"customer": "C1"}


def test_a_batch_becomes_received_orders_with_their_lines_and_timeline(catalog: dict[str, str]) -> None:
    rows = [
        row("ERP-1", "C1", ("A", 2, "10.50"), ("B", 1, "3.00"), warehouse_code="WH1", currency="usd"),
        row("ERP-2", "C2", ("C", 5, "1.25")),
    ]
    with clock.frozen(AT):
        assert orders_import(rows=rows, actor=ERP) == 2

    first, second = Order.objects.order_by("external_id")
    assert (first.external_id, first.customer.code, first.warehouse.code) == ("ERP-1", "C1", "WH1")
    assert (first.status, first.total, first.currency) == (Status.RECEIVED, Decimal("24.00"), "USD")
    assert (first.created_at, first.status_changed_at, first.promised_date) == (AT, AT, date(2026, 3, 9))
    assert (first.ship_to_name, first.ship_to_city, first.ship_to_country) == ("Receiving", "Hull", "GB")
    assert (second.warehouse, second.total, second.currency) == (None, Decimal("6.25"), "EUR")
    lines = OrderLine.objects.order_by("order__external_id", "line_no")
    assert [
        (ln.order.external_id, ln.line_no, ln.product.sku, ln.quantity, ln.unit_price) for ln in lines
    ] == [
        ("ERP-1", 1, "A", 2, Decimal("10.50")),
        ("ERP-1", 2, "B", 1, Decimal("3.00")),
        ("ERP-2", 1, "C", 5, Decimal("1.25")),
    ]
    timeline = OrderTransition.objects.order_by("order__external_id")
    assert [
        (t.order.external_id, t.transition, t.from_state, t.to_state, t.actor_system, t.actor_user, t.at)
        for t in timeline
    ] == [
        ("ERP-1", "receive", "", Status.RECEIVED, "erp", None, AT),
        ("ERP-2", "receive", "", Status.RECEIVED, "erp", None, AT),
    ]


def test_a_batch_sent_again_changes_nothing_and_known_orders_are_skipped(catalog: dict[str, str]) -> None:
    assert orders_import(rows=[row("ERP-1", "C1", ("A", 1, "2.00"))], actor=ERP) == 1
    before = factories.row_counts()

    assert orders_import(rows=[row("ERP-1", "C1", ("A", 1, "2.00"))], actor=ERP) == 0
    assert factories.row_counts() == before

    # A known order is skipped as it is, even when the ERP sends it changed.
    batch = [row("ERP-1", "C2", ("B", 9, "9.00")), row("ERP-3", "C1", ("C", 3, "1.00"))]
    assert orders_import(rows=batch, actor=ERP) == 1
    assert {o.external_id: (o.customer.code, o.total) for o in Order.objects.all()} == {
        "ERP-1": ("C1", Decimal("2.00")),
        "ERP-3": ("C1", Decimal("3.00")),
    }
    assert OrderTransition.objects.filter(order__external_id="ERP-1").count() == 1


def test_one_bad_row_refuses_the_batch_and_writes_nothing(catalog: dict[str, str]) -> None:
    before = factories.row_counts()
    rows = [
        row("ERP-1", "C1", ("A", 1, "2.00")),
        row("ERP-2", "NOPE", ("A", 1, "2.00")),
        row("ERP-3", "C1", ("ZZZ", 1, "2.00"), ("B", 0, "2.00")),
        row("ERP-1", "C1", ("A", 1, "2.00"), warehouse_code="WH9"),
        row("", "C1", currency="EURO"),
    ]
    with pytest.raises(InvalidInput) as caught:
        orders_import(rows=rows, actor=ERP)

    assert caught.value.message == "The batch is not valid: 4 bad row(s)."
    assert caught.value.fields == {
        "rows.2.customer": ["Unknown customer 'NOPE'."],
        "rows.3.lines": ["Line 1: unknown SKU 'ZZZ'.", "Line 2: quantity must be a whole number above zero."],
        "rows.4.external_id": ["'ERP-1' is on row 1 too."],
        "rows.4.warehouse": ["Unknown warehouse 'WH9'."],
        "rows.5.external_id": ["Give an external id of 1 to 64 characters."],
        "rows.5.currency": ["Use a three-letter ISO 4217 code."],
        "rows.5.lines": ["An order needs at least one line."],
    }
    assert factories.row_counts() == before


def test_prices_and_totals_are_checked_as_for_one_order(catalog: dict[str, str]) -> None:
    rows = [
        row("ERP-1", "C1", ("A", 1, "-1.00")),
        row("ERP-2", "C1", ("A", 1, "0.001")),
        row("ERP-3", "C1", ("A", 2_000_000_000, "9999999999.99")),
    ]
    with pytest.raises(InvalidInput) as caught:
        orders_import(rows=rows, actor=ERP)

    assert caught.value.fields == {
        "rows.1.lines": ["Line 1: unit price must not be negative."],
        "rows.2.lines": ["Line 1: unit price must have at most two decimals."],
        "rows.3.lines": ["The order total must not exceed 999999999999.99."],
    }
    assert Order.objects.count() == 0


@pytest.mark.postgres
def test_queries_do_not_grow_with_the_batch(
    catalog: dict[str, str], django_assert_num_queries: object
) -> None:
    def batch(prefix: str, size: int) -> list[OrderImport]:
        return [
            row(
                f"{prefix}-{n}",
                "C1" if n % 2 else "C2",
                ("A", 1, "1.00"),
                ("B", 2, "2.00"),
                warehouse_code="WH1",
            )
            for n in range(size)
        ]

    with django_assert_num_queries(9) as small:  # type: ignore[operator]
        assert orders_import(rows=batch("S", 1), actor=ERP) == 1
    with django_assert_num_queries(len(small.captured_queries)):  # type: ignore[operator]
        assert orders_import(rows=batch("L", 1000), actor=ERP) == 1000
    assert OrderLine.objects.filter(order__external_id__startswith="L-").count() == 2000


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_order_taken_by_a_concurrent_import_is_skipped_not_duplicated(catalog: dict[str, str]) -> None:
    """The first import holds ERP-1 uncommitted; the second, which did not see it, blocks on
    the unique external id, fails when the first commits, and then skips ERP-1."""
    second_result: list[object] = []

    def second() -> None:
        try:
            second_result.append(
                orders_import(
                    rows=[row("ERP-1", "C2", ("B", 1, "1.00")), row("ERP-2", "C2", ("C", 1, "1.00"))],
                    actor=ERP,
                )
            )
        except Exception as exc:  # handed back to the test
            second_result.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=second, daemon=True)
    with transaction.atomic():
        assert orders_import(rows=[row("ERP-1", "C1", ("A", 1, "1.00"))], actor=ERP) == 1
        thread.start()
        _wait_until_blocked_on_a_lock()
    thread.join(timeout=30)

    assert second_result == [1]
    assert {o.external_id: o.customer.code for o in Order.objects.all()} == {"ERP-1": "C1", "ERP-2": "C2"}
    assert OrderLine.objects.count() == 2
    assert OrderTransition.objects.count() == 2


def _wait_until_blocked_on_a_lock(timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            # pg_locks, not pg_stat_activity: the latter is a snapshot for the whole transaction.
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the second import never waited for the first")
