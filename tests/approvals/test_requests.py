from datetime import UTC, datetime
from decimal import Decimal

import pytest

from approvals.models import ApprovalRequest, Kind
from fulfillment.core import clock
from fulfillment.core.errors import InvalidInput
from fulfillment.core.models import WorkItem, WorkItemEvent
from orders.services import credit_exposure
from tests import factories
from tests.approvals.support import awaiting_release_order, credit_hold_order, request_for

pytestmark = pytest.mark.django_db

MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 10:00 in Berlin, where finance works


@pytest.fixture(autouse=True)
def frozen_clock() -> None:
    with clock.frozen(MONDAY_9):
        yield


def test_a_credit_hold_opens_a_finance_work_item_with_the_exposure() -> None:
    order = credit_hold_order(total="12000.00", limit="10000.00")
    request = request_for(order)

    assert request.kind == Kind.CREDIT_HOLD
    assert request.status == ApprovalRequest.Status.PENDING
    assert request.amount == Decimal("12000.00")
    assert request.policy.name == "Credit hold up to 50,000"
    assert request.requested_by is None
    assert request.requested_by_system == "intake"
    assert request.figures == credit_exposure(order=order).as_data()
    money = {k: Decimal(v) for k, v in request.figures.items() if not isinstance(v, bool)}
    assert money == {
        "credit_limit": Decimal("10000"),
        "open_receivables": Decimal(0),
        "other_open_orders": Decimal(0),
        "this_order": Decimal("12000"),
        "exposure": Decimal("12000"),
    }
    assert (request.figures["passed"], request.figures["credit_blocked"]) == (False, False)

    item = WorkItem.objects.get(pk=request.work_item_id)
    assert item.approval == request
    assert (item.queue.slug, item.kind, item.type, item.state) == (
        "finance-approvals",
        "approval",
        "credit_hold",
        "open",
    )
    assert item.title == f"Credit hold: {order.external_id} — exposure 12,000.00 over limit 10,000.00"
    assert item.subject_ref == order.external_id
    assert item.customer_code == order.customer.code
    assert item.customer_tier == "standard"
    assert item.warehouse_code == order.warehouse.code
    assert item.revenue_at_risk == Decimal("12000.00")
    assert item.promised_at == datetime(2026, 3, 7, 23, 59, 59, tzinfo=UTC)
    assert item.severity == 2
    assert item.sla_minutes == 240
    assert item.sla_due_at == datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # 4 working hours later
    assert item.raised_by is None
    assert item.assignee is None
    assert list(WorkItemEvent.objects.filter(item=item).values_list("action", "actor_system", "note")) == [
        (
            "opened",
            "intake",
            "Policy 'Credit hold up to 50,000' (0.00 to 50,000.00): 1 approver(s) from finance.",
        )
    ]


def test_a_two_approver_band_raises_the_severity_and_takes_its_sla() -> None:
    order = credit_hold_order(total="61200.00", limit="50000.00")
    item = request_for(order).work_item
    assert item.title == f"Credit hold: {order.external_id} — exposure 61,200.00 over limit 50,000.00"
    assert (item.severity, item.sla_minutes) == (3, 480)
    assert item.approval.policy.name == "Credit hold above 50,000"


def test_a_credit_blocked_customer_says_so_in_the_title() -> None:
    order = credit_hold_order(total="500.00", limit="10000.00", blocked=True)
    request = request_for(order)
    assert request.figures["credit_blocked"] is True
    assert (
        request.work_item.title
        == f"Credit hold: {order.external_id} — customer credit-blocked, exposure 500.00"
    )


def test_a_person_who_asks_for_release_is_the_requester() -> None:
    planner = factories.user("pia", "planner")
    order = awaiting_release_order(total="30000.00")
    request = request_for(order, Kind.HIGH_VALUE_RELEASE, requested_by=planner)
    assert (request.requested_by, request.requested_by_system) == (planner, "")
    assert request.work_item.raised_by == planner
    assert request.work_item.title == f"High-value release: {order.external_id} — 30,000.00 EUR"
    assert request.figures == {"this_order": "30000.00", "threshold": "25000.00"}
    assert request.policy.name == "High-value release 25,000 to 100,000"


def test_a_second_pending_request_for_the_same_order_and_kind_is_refused() -> None:
    order = credit_hold_order()
    first = request_for(order)
    events = WorkItemEvent.objects.count()
    with pytest.raises(InvalidInput, match="has a pending credit hold release request already"):
        request_for(order)
    assert list(ApprovalRequest.objects.values_list("pk", flat=True)) == [first.pk]
    assert WorkItem.objects.count() == 1
    assert WorkItemEvent.objects.count() == events


def test_a_request_needs_the_order_in_the_state_it_decides_about() -> None:
    order = awaiting_release_order()
    with pytest.raises(
        InvalidInput, match="is awaiting release approval; a credit hold release request is for"
    ):
        request_for(order, Kind.CREDIT_HOLD)
    with pytest.raises(InvalidInput, match="Unknown approval kind 'refund'"):
        request_for(order, "refund")
    assert (ApprovalRequest.objects.count(), WorkItem.objects.count()) == (0, 0)


def test_an_amount_below_every_band_is_refused_and_opens_nothing() -> None:
    order = awaiting_release_order(total="20000.00")
    with pytest.raises(InvalidInput, match=r"No active high-value order release policy covers 20,000\.00"):
        request_for(order, Kind.HIGH_VALUE_RELEASE)
    assert (ApprovalRequest.objects.count(), WorkItem.objects.count()) == (0, 0)
