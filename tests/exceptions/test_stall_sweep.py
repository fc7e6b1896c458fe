import math
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext

from exceptions import services, tasks
from exceptions.models import OrderException, StateDeadline
from fulfillment.core import clock, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.models import Queue, WorkItem, WorkItemEvent
from fulfillment.core.priority import priority_key
from orders import services as order_services
from orders.models import TERMINAL, Order, Status
from tests import factories as f

pytestmark = pytest.mark.django_db
SCHEDULER = Actor.named("scheduler")
S = Status


def stalls(order: Order) -> list[OrderException]:
    return list(OrderException.objects.filter(order=order, type__code="stalled_order").order_by("id"))


def counts() -> tuple[int, int, int]:
    return WorkItem.objects.count(), WorkItemEvent.objects.count(), OrderException.objects.count()


def test_the_default_deadlines_cover_every_non_terminal_state():
    assert sorted(StateDeadline.objects.values_list("state", flat=True)) == sorted(
        s.value for s in Status if s not in TERMINAL
    )
    assert StateDeadline.objects.get(state=S.PICKING).max_minutes == 8 * 60
    assert StateDeadline.objects.get(state=S.AWAITING_RELEASE).queue.slug == "finance-approvals"


def test_every_stalled_order_gets_one_stalled_order_item_in_the_queue_its_state_names(now):
    picking, released, awaiting = (
        f.order_in(S.PICKING),
        f.order_in(S.RELEASED),
        f.order_in(S.AWAITING_RELEASE),
    )
    fresh = f.order_in(S.SHIPPED)  # 7 days allowed
    closed, cancelled = f.order_in(S.CLOSED), f.order_in(S.CANCELLED)
    with_exception = f.order_in(S.PICKING)
    services.exception_raise(
        type_code="late_shipment_risk", order=with_exception, details={}, actor=SCHEDULER
    )
    with_approval = f.order_in(S.AWAITING_RELEASE)
    workqueue.work_item_open(
        queue=Queue.objects.get(slug="finance-approvals"),
        kind="approval",
        type="release_approval",
        title="Release approval",
        subject=workqueue.Subject(ref=with_approval.external_id),
        actor=SCHEDULER,
    )
    clock.advance(timedelta(days=2))  # Wednesday 09:00 UTC

    assert services.stall_sweep(actor=SCHEDULER) == 3

    for order, queue, state, minutes, allowed in [
        (picking, "planning", "picking", 480, "8 h"),
        (released, "planning", "released to warehouse", 240, "4 h"),
        (awaiting, "finance-approvals", "awaiting release approval", 1440, "24 h"),
    ]:
        [ex] = stalls(order)
        item = ex.work_item
        assert (ex.is_open, ex.occurrences, ex.last_signal_at) == (True, 1, now + timedelta(days=2))
        assert ex.details == {"state": order.status, "since": now.isoformat(), "deadline_minutes": minutes}
        assert item.queue.slug == queue
        assert (item.kind, item.type, item.state) == ("exception", "stalled_order", "open")
        assert item.title == f"Stalled order on {order.external_id} ({state} for 2 days)"
        assert (item.subject_ref, item.customer_code, item.customer_tier, item.warehouse_code) == (
            order.external_id,
            order.customer.code,
            "standard",
            order.warehouse.code,
        )
        assert item.revenue_at_risk == order.total
        assert item.promised_at == services.promised_at(order)
        assert (item.severity, item.sla_minutes) == (2, 240)
        assert item.sla_due_at == datetime(2026, 3, 4, 13, 0, tzinfo=UTC)
        assert item.next_sla_warning_at == datetime(2026, 3, 4, 11, 0, tzinfo=UTC)
        assert item.priority_key == priority_key(
            revenue_at_risk=order.total,
            customer_tier="standard",
            severity=2,
            escalation_level=0,
            anchor=services.promised_at(order),
        )
        assert [(e.action, e.actor_label, e.note) for e in item.events.all()] == [
            ("opened", "scheduler", f"In {state} longer than {allowed}.")
        ]
    for skipped in [fresh, closed, cancelled, with_exception, with_approval]:
        assert stalls(skipped) == []


def test_a_second_sweep_creates_nothing(now):
    stalled = [f.order_in(S.PICKING), f.order_in(S.RECEIVED)]
    clock.advance(timedelta(hours=9))
    assert services.stall_sweep(actor=SCHEDULER) == 2
    after_first = counts()

    assert services.stall_sweep(actor=SCHEDULER) == 0
    clock.advance(timedelta(days=1))
    assert services.stall_sweep(actor=SCHEDULER) == 0

    assert counts() == after_first
    assert [len(stalls(o)) for o in stalled] == [1, 1]


def test_orders_within_their_deadline_are_not_stalled(now):
    order = f.order_in(S.PICKING)
    clock.advance(timedelta(hours=8))  # exactly the deadline: not past it

    assert services.stall_sweep(actor=SCHEDULER) == 0
    assert counts() == (0, 0, 0)
    clock.advance(timedelta(seconds=1))
    assert services.stall_sweep(actor=SCHEDULER) == 1
    assert len(stalls(order)) == 1


def test_deadlines_are_data_an_admin_can_change(now):
    order = f.order_in(S.PICKING)
    StateDeadline.objects.filter(state=S.PICKING).update(
        max_minutes=3 * 24 * 60, queue=Queue.objects.get(slug="customer-service")
    )
    clock.advance(timedelta(days=2))
    assert services.stall_sweep(actor=SCHEDULER) == 0

    clock.advance(timedelta(days=1, minutes=1))
    assert services.stall_sweep(actor=SCHEDULER) == 1
    assert stalls(order)[0].work_item.queue.slug == "customer-service"


def test_a_stall_closes_itself_when_the_order_moves_on(now):
    order = f.order_in(S.PICKING)
    clock.advance(timedelta(hours=9))
    services.stall_sweep(actor=SCHEDULER)
    order_services.order_pack(order=order, actor=f.SYSTEM)
    clock.advance(timedelta(minutes=5))

    assert services.stall_sweep(actor=SCHEDULER) == 0  # packed 5 minutes ago: not stalled

    [ex] = stalls(order)
    item = ex.work_item
    assert ex.is_open is False
    assert (item.state, item.resolution_code, item.resolved_by, item.resolved_at) == (
        "resolved",
        "auto_cleared",
        None,
        now + timedelta(hours=9, minutes=5),
    )
    assert item.next_sla_warning_at is None
    last = item.events.order_by("-id").first()
    assert (last.action, last.actor_label, last.note, last.data) == (
        "resolved",
        "scheduler",
        "The order moved on. It is packed now.",
        {"reason_code": "auto_cleared"},
    )
    clock.advance(timedelta(hours=4))
    assert services.stall_sweep(actor=SCHEDULER) == 1  # now stalled in packed
    assert [(e.is_open, e.details["state"]) for e in stalls(order)] == [(False, "picking"), (True, "packed")]


def test_resolving_a_stall_restarts_its_clock(now):
    order = f.order_in(S.PICKING)
    planner = f.user("pia", "planner")
    clock.advance(timedelta(hours=9))
    services.stall_sweep(actor=SCHEDULER)
    [ex] = stalls(order)
    services.exception_resolve(
        exception=ex, reason_code="chased", note="WMS says today.", actor=Actor.of(planner)
    )

    clock.advance(timedelta(hours=8))  # another full deadline since the resolution: not yet past it
    assert services.stall_sweep(actor=SCHEDULER) == 0
    clock.advance(timedelta(minutes=1))
    assert services.stall_sweep(actor=SCHEDULER) == 1

    assert [e.is_open for e in stalls(order)] == [False, True]


def insert_batches(model: type[Model], rows: int) -> int:
    """How many INSERTs bulk_create needs for ``rows`` rows on this database (SQLite
    allows 999 parameters per statement; PostgreSQL takes any number in one)."""
    fields = [fld for fld in model._meta.concrete_fields if not fld.primary_key]
    return math.ceil(rows / max(connection.ops.bulk_batch_size(fields, [None] * rows), 1))


def sweep_counting_queries() -> tuple[int, int]:
    with CaptureQueriesContext(connection) as ctx:
        raised = services.stall_sweep(actor=SCHEDULER)
    return raised, len(ctx.captured_queries)


def test_the_sweep_runs_the_same_queries_for_5_and_for_50_stalled_orders(now):
    for _ in range(5):
        f.order()
    clock.advance(timedelta(hours=1))
    few = sweep_counting_queries()
    for _ in range(50):
        f.order()
    clock.advance(timedelta(hours=1))
    many = sweep_counting_queries()

    assert (few[0], many[0]) == (5, 50)
    driver_batches = sum(
        insert_batches(m, 50) - insert_batches(m, 5) for m in (WorkItem, WorkItemEvent, OrderException)
    )
    assert many[1] == few[1] + driver_batches
    assert OrderException.objects.filter(type__code="stalled_order", is_open=True).count() == 55


def test_the_scheduled_task_sweeps_as_the_scheduler(now):
    order = f.order()
    clock.advance(timedelta(hours=1))

    assert tasks.sweep_stalled_orders() == 1

    [ex] = stalls(order)
    assert ex.work_item.events.get().actor_system == "scheduler"
    assert tasks.sweep_stalled_orders() == 0
