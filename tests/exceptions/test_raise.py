import threading
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import IntegrityError, connection, transaction

from exceptions import services
from exceptions.models import ExceptionType, OrderException
from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.errors import InvalidInput, NotFound
from fulfillment.core.models import Queue, WorkItem, WorkItemEvent
from fulfillment.core.priority import priority_key
from orders.models import Order, Tier
from tests import factories as f

pytestmark = pytest.mark.django_db
WMS = Actor.named("wms")


def shortfall_order(**order_kw: object) -> tuple[Order, list]:
    """An order of three lines: 3 x 100.00, 10 x 7.50 and 1 x 1.00."""
    products = [f.product(price="100.00"), f.product(price="7.50"), f.product(price="1.00")]
    order = f.order(lines=list(zip(products, [3, 10, 1], strict=True)), **order_kw)
    return order, products


def events(item: WorkItem) -> list[tuple[str, str, str]]:
    return [(e.action, e.actor_label, e.note) for e in item.events.select_related("actor_user")]


def test_raise_opens_an_item_in_the_type_queue_with_sla_and_rank_inputs_from_the_order(now):
    wh = f.warehouse(time_zone="America/New_York")
    order, (a, b, _) = shortfall_order(cust=f.customer(tier=Tier.KEY), wh=wh, promised_in_days=5)

    ex = services.exception_raise(
        type_code="inventory_shortfall",
        order=order,
        details={"shortfall": {a.sku: 2, b.sku: 4}},
        actor=WMS,
        note="Allocation came up short.",
    )

    ex.refresh_from_db()
    item = WorkItem.objects.get()
    assert ex.work_item == item
    assert (ex.type.code, ex.order, ex.occurrences, ex.is_open) == ("inventory_shortfall", order, 1, True)
    assert ex.details == {"shortfall": {a.sku: 2, b.sku: 4}}
    assert ex.last_signal_at == now
    assert item.queue.slug == "planning"
    assert (item.kind, item.type, item.state) == ("exception", "inventory_shortfall", "open")
    assert item.title == f"Inventory shortfall on {order.external_id} (2 SKUs)"
    # The short lines only: 2 x 100.00 + 4 x 7.50.
    assert item.revenue_at_risk == Decimal("230.00")
    assert (item.subject_ref, item.customer_code, item.customer_tier, item.warehouse_code) == (
        order.external_id,
        order.customer.code,
        "key",
        wh.code,
    )
    promised = datetime(2026, 3, 7, 23, 59, 59, 999999, tzinfo=ZoneInfo("America/New_York"))
    assert item.promised_at == promised
    assert (item.severity, item.sla_minutes, item.escalation_level) == (2, 240, 0)
    # 10:00 in Berlin + 240 working minutes of the planners' calendar = 14:00 Berlin.
    assert item.sla_due_at == datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    assert item.next_sla_warning_at == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    assert item.priority_key == priority_key(
        revenue_at_risk=Decimal("230.00"),
        customer_tier="key",
        severity=2,
        escalation_level=0,
        anchor=promised,
    )
    assert (item.raised_by, item.assignee) == (None, None)
    assert events(item) == [("opened", "wms", "Allocation came up short.")]


def test_a_type_without_short_lines_puts_the_order_total_at_risk(now):
    order, _ = shortfall_order()  # no preferred warehouse: the promise ends at midnight UTC
    person = f.user("cs1", "customer_service")

    ex = services.exception_raise(
        type_code="late_shipment_risk",
        order=order,
        details={"reason": "carrier delay"},
        actor=Actor.of(person),
    )

    item = WorkItem.objects.get(pk=ex.work_item_id)
    assert item.queue.slug == "customer-service"
    assert item.title == f"Late-shipment risk on {order.external_id}"
    assert item.revenue_at_risk == order.total == Decimal("376.00")
    assert item.warehouse_code == ""
    assert item.promised_at == datetime.combine(now.date() + timedelta(days=5), time.max, tzinfo=UTC)
    assert item.raised_by == person
    assert events(item) == [("opened", "cs1", "")]


def test_exceptions_about_no_order_are_each_their_own(now):
    first = services.exception_raise(
        type_code="integration_sync_failed", order=None, details={"message": 1}, actor=WMS
    )
    second = services.exception_raise(
        type_code="integration_sync_failed", order=None, details={"message": 2}, actor=WMS
    )

    assert first.pk != second.pk
    assert OrderException.objects.filter(is_open=True, order=None).count() == 2
    items = WorkItem.objects.order_by("id")
    assert [(i.queue.slug, i.title, i.subject_ref, i.revenue_at_risk) for i in items] == [
        ("integration", "Integration sync failed", "", Decimal("0.00")),
        ("integration", "Integration sync failed", "", Decimal("0.00")),
    ]


def test_a_repeat_signal_updates_the_open_exception_and_never_duplicates_it(now):
    order, (a, b, c) = shortfall_order()
    first = services.exception_raise(
        type_code="inventory_shortfall", order=order, details={"shortfall": {c.sku: 1}}, actor=WMS
    )
    key_before = WorkItem.objects.get().priority_key

    clock.advance(timedelta(hours=1))
    again = services.exception_raise(
        type_code="inventory_shortfall",
        order=order,
        details={"shortfall": {a.sku: 3, b.sku: 2, c.sku: 1}},
        actor=WMS,
    )

    assert again.pk == first.pk
    assert OrderException.objects.count() == 1
    assert WorkItem.objects.count() == 1
    again.refresh_from_db()
    assert again.occurrences == 2
    assert again.details == {"shortfall": {a.sku: 3, b.sku: 2, c.sku: 1}}
    assert again.last_signal_at == now + timedelta(hours=1)
    item = again.work_item
    assert item.title == f"Inventory shortfall on {order.external_id} (3 SKUs)"
    assert item.revenue_at_risk == Decimal("316.00")  # 300.00 + 15.00 + 1.00
    assert item.priority_key == priority_key(
        revenue_at_risk=Decimal("316.00"),
        customer_tier="standard",
        severity=2,
        escalation_level=0,
        anchor=item.promised_at,
    )
    assert item.priority_key > key_before
    # The SLA runs from the first signal.
    assert (item.created_at, item.sla_due_at) == (now, datetime(2026, 3, 2, 13, 0, tzinfo=UTC))
    assert [e[0] for e in events(item)] == ["opened", "updated"]
    assert events(item)[1] == ("updated", "wms", "Signal 2 about the same problem.")


def test_the_database_refuses_a_second_open_exception_of_a_type_for_an_order(now):
    order, _ = shortfall_order()
    ex = services.exception_raise(type_code="late_shipment_risk", order=order, details={}, actor=WMS)
    other_item = WorkItem.objects.create(
        queue=Queue.objects.get(slug="customer-service"),
        kind="exception",
        type="late_shipment_risk",
        title="x",
    )

    with pytest.raises(IntegrityError), transaction.atomic():
        OrderException.objects.create(work_item=other_item, type=ex.type, order=order)

    assert OrderException.objects.filter(order=order).count() == 1
    # Closed ones do not count: once resolved, a new signal opens a new exception.
    services.exception_clear(order=order, type_code="late_shipment_risk", note="Shipped.", actor=WMS)
    fresh = services.exception_raise(type_code="late_shipment_risk", order=order, details={}, actor=WMS)
    assert fresh.pk != ex.pk
    assert list(
        OrderException.objects.filter(order=order).values_list("is_open", flat=True).order_by("id")
    ) == [
        False,
        True,
    ]


def test_an_item_resolved_through_the_work_queue_directly_does_not_swallow_the_next_signal(now):
    """Bulk actions in the work queue close the item without the exception service."""
    from fulfillment.core import workqueue

    order, _ = shortfall_order()
    ex = services.exception_raise(type_code="late_shipment_risk", order=order, details={}, actor=WMS)
    workqueue.work_item_resolve(item=ex.work_item, reason_code="expedited", note="", actor=WMS)

    fresh = services.exception_raise(type_code="late_shipment_risk", order=order, details={}, actor=WMS)

    assert fresh.pk != ex.pk and fresh.occurrences == 1
    ex.refresh_from_db()
    assert ex.is_open is False
    assert WorkItem.objects.filter(state="open").get() == fresh.work_item


@pytest.mark.parametrize(
    ("type_code", "details", "error"),
    [
        ("no_such_type", lambda sku: {}, NotFound),
        ("inventory_shortfall", lambda sku: {}, InvalidInput),
        ("inventory_shortfall", lambda sku: {"shortfall": {"NOT-ON-ORDER": 1}}, InvalidInput),
        ("inventory_shortfall", lambda sku: {"shortfall": {sku: 0}}, InvalidInput),
        ("inventory_shortfall", lambda sku: {"shortfall": {sku: "2"}}, InvalidInput),
        ("late_shipment_risk", lambda sku: [sku], InvalidInput),
    ],
    ids=[
        "unknown type",
        "no shortfall",
        "sku not on order",
        "zero units",
        "units not a number",
        "not a dict",
    ],
)
def test_a_bad_signal_is_refused_and_writes_nothing(now, type_code, details, error):
    order, (a, _, _) = shortfall_order()

    with pytest.raises(error):
        services.exception_raise(type_code=type_code, order=order, details=details(a.sku), actor=WMS)

    assert (WorkItem.objects.count(), WorkItemEvent.objects.count(), OrderException.objects.count()) == (
        0,
        0,
        0,
    )


def test_types_follow_their_admin_edited_queue_sla_and_severity(now):
    order, _ = shortfall_order()
    ExceptionType.objects.filter(code="invalid_address").update(
        default_queue=Queue.objects.get(slug="planning"), sla_minutes=60, severity=3
    )

    ex = services.exception_raise(type_code="invalid_address", order=order, details={}, actor=WMS)

    item = ex.work_item
    assert (item.queue.slug, item.sla_minutes, item.severity) == ("planning", 60, 3)
    assert item.sla_due_at == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_signals_for_one_order_and_type_open_exactly_one_exception(default_data):
    order, (a, _, _) = shortfall_order()
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def signal(n: int) -> None:
        try:
            mine = Order.objects.select_related("customer", "warehouse").get(pk=order.pk)
            barrier.wait(timeout=30)
            services.exception_raise(
                type_code="inventory_shortfall", order=mine, details={"shortfall": {a.sku: n}}, actor=WMS
            )
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=signal, args=(n,)) for n in range(1, threads_n + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    ex = OrderException.objects.get(order=order)
    assert (ex.is_open, ex.occurrences) == (True, threads_n)
    assert ex.details["shortfall"][a.sku] in range(1, threads_n + 1)
    assert WorkItem.objects.filter(subject_ref=order.external_id).get() == ex.work_item
    actions = list(ex.work_item.events.values_list("action", flat=True))
    assert sorted(actions) == ["opened"] + ["updated"] * (threads_n - 1)
    # The item shows the last signal that was applied.
    assert ex.work_item.revenue_at_risk == Decimal(100) * ex.details["shortfall"][a.sku]
