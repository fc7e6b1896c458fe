"""Approvals through the API: approval work items decided with /approve/ and /reject/."""

from collections.abc import Iterator
from typing import Any

import pytest

from approvals.models import ApprovalDecision, ApprovalRequest
from fulfillment.core import clock, workqueue
from fulfillment.core.models import WorkItem, WorkItemEvent
from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, FINANCE, PLANNER
from orders.models import Order, OrderTransition, Status
from tests import factories
from tests.api.conftest import Caller, assert_problem, token_caller
from tests.api.work_support import MONDAY_9, approval_request, exception_item

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _setup() -> Iterator[None]:
    factories.migration_data()
    with clock.frozen(MONDAY_9):
        yield


@pytest.fixture
def fiona() -> Caller:
    return token_caller(user=factories.user("fiona", FINANCE))


def written() -> dict[str, Any]:
    """Everything a decision could write: compare before and after a refused one."""
    return {
        "decisions": ApprovalDecision.objects.count(),
        "events": WorkItemEvent.objects.count(),
        "transitions": OrderTransition.objects.count(),
        "requests": list(ApprovalRequest.objects.order_by("id").values_list("status", "decided_at")),
        "items": list(WorkItem.objects.order_by("id").values_list("state", "assignee_id", "resolution_code")),
        "orders": list(Order.objects.order_by("id").values_list("status", "status_changed_at")),
    }


def path(request: ApprovalRequest, action: str) -> str:
    return f"/api/v1/work-items/{request.work_item_id}/{action}/"


def test_an_approved_credit_hold_releases_the_order(fiona: Caller) -> None:
    request = approval_request()

    response = fiona.post(path(request, "approve"), {"comment": "Paid by wire."})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["kind"], body["type"], body["state"], body["resolution_code"], body["resolved_by"]) == (
        "approval", "credit_hold", "resolved", "approved", "fiona"
    )  # fmt: skip
    approval = body["approval"]
    assert (approval["id"], approval["status"], approval["amount"], approval["requested_by"]) == (
        request.pk, "approved", "12000.00", "test"
    )  # fmt: skip
    assert approval["policy"] == {
        "name": "Credit hold up to 50,000", "band": "0.00 to 50,000.00", "approvers_required": 1,
        "approver_group": "finance", "reject_action": "cancel",
    }  # fmt: skip
    assert approval["decisions"] == [
        {"approver": "fiona", "on_behalf_of": None, "decision": "approve", "comment": "Paid by wire.",
         "at": "2026-03-02T09:00:00Z"}
    ]  # fmt: skip
    order = Order.objects.get(pk=request.order_id)
    assert approval["order_status"] == order.status == Status.RELEASED
    assert OrderTransition.objects.filter(order=order, transition="release_credit_hold").get().reason == (
        "Paid by wire."
    )


def test_a_rejection_ends_the_order_as_the_policy_says(fiona: Caller) -> None:
    request = approval_request()
    response = fiona.post(path(request, "reject"), {"comment": "Customer in arrears."})
    assert response.status_code == 200
    assert response.json()["approval"]["status"] == "rejected"
    assert response.json()["approval"]["order_status"] == Status.CANCELLED
    assert response.json()["resolution_code"] == "rejected"


@pytest.mark.parametrize("body", [{}, {"comment": ""}, {"comment": "  "}])
def test_a_rejection_needs_a_comment(fiona: Caller, body: dict[str, str]) -> None:
    request = approval_request()
    before = written()
    problem = assert_problem(fiona.post(path(request, "reject"), body), 422, "invalid_input")
    assert problem["errors"] == {"comment": ["Required to reject."]}
    assert written() == before


def test_a_comment_too_long_is_refused(fiona: Caller) -> None:
    request = approval_request()
    before = written()
    problem = assert_problem(
        fiona.post(path(request, "approve"), {"comment": "x" * 2001}), 422, "invalid_input"
    )
    assert problem["errors"] == {"comment": ["Ensure this field has no more than 2000 characters."]}
    assert written() == before


def test_whoever_raised_the_request_cannot_decide_it(fiona: Caller) -> None:
    request = approval_request(requested_by=fiona.user)
    before = written()
    for action in ("approve", "reject"):
        problem = assert_problem(
            fiona.post(path(request, action), {"comment": "mine"}), 403, "permission_denied"
        )
        assert problem["detail"] == "You raised this request; someone else must decide it."
    assert written() == before


@pytest.mark.parametrize("role", [CUSTOMER_SERVICE, PLANNER, ADMIN])
def test_only_the_policys_approvers_decide(role: str) -> None:
    request = approval_request()
    caller = token_caller(role)
    before = written()
    problem = assert_problem(caller.post(path(request, "approve")), 403, "permission_denied")
    assert problem["detail"] == (
        f"Only members of finance, or their delegates, may decide this request; "
        f"{caller.user.username} is neither today."
    )
    assert written() == before


def test_a_decided_request_is_not_decided_again(fiona: Caller) -> None:
    request = approval_request()
    fiona.post(path(request, "approve"))
    before = written()
    problem = assert_problem(
        token_caller(FINANCE).post(path(request, "reject"), {"comment": "too late"}), 422, "invalid_input"
    )
    assert problem["detail"] == (
        f"The credit hold release request for order {request.order.external_id} was approved by fiona "
        "already; there is nothing left to decide."
    )
    assert written() == before


def test_a_two_approver_band_needs_a_second_approver(fiona: Caller) -> None:
    request = approval_request(two_approvers=True)

    first = fiona.post(path(request, "approve"), {"comment": "ok"})

    assert first.status_code == 200
    assert (first.json()["state"], first.json()["approval"]["status"]) == ("open", "pending")
    assert first.json()["history"][-1]["note"] == "First approval by fiona, waiting for a second approver."
    assert_problem(fiona.post(path(request, "approve")), 403, "permission_denied")
    second = token_caller(FINANCE).post(path(request, "approve"), {"comment": "agreed"})
    assert (second.json()["state"], second.json()["approval"]["status"]) == ("resolved", "approved")
    assert [d["comment"] for d in second.json()["approval"]["decisions"]] == ["ok", "agreed"]


def test_an_item_claimed_by_another_approver_is_theirs(fiona: Caller) -> None:
    request = approval_request()
    workqueue.work_item_claim(item=request.work_item, user=factories.user("frank", FINANCE))
    before = written()
    problem = assert_problem(fiona.post(path(request, "approve")), 403, "permission_denied")
    assert problem["detail"] == "frank has claimed this request; they must release it first."
    assert written() == before


def test_an_exception_is_resolved_not_decided(fiona: Caller) -> None:
    item = exception_item("invoice_blocked")
    problem = assert_problem(fiona.post(f"/api/v1/work-items/{item.pk}/approve/"), 409, "wrong_kind")
    assert problem["detail"] == (
        f"Work item {item.pk} is an exception, not an approval: resolve it with "
        f"POST /api/v1/work-items/{item.pk}/resolve/."
    )
    assert_problem(fiona.post("/api/v1/work-items/999999/approve/"), 404, "not_found")


def test_a_retried_approval_with_its_idempotency_key_is_not_decided_twice(fiona: Caller) -> None:
    request = approval_request()
    first = fiona.post(path(request, "approve"), {"comment": "ok"}, key="decide-1")
    again = fiona.post(path(request, "approve"), {"comment": "ok"}, key="decide-1")
    assert first.status_code == again.status_code == 200 and again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert ApprovalDecision.objects.filter(request=request).count() == 1


def test_finance_lists_its_approvals(fiona: Caller) -> None:
    request = approval_request()
    exception_item("invoice_blocked")
    listed = fiona.get("/api/v1/work-items/", {"kind": "approval"}).json()["results"]
    assert [(row["id"], row["queue"], row["type_label"]) for row in listed] == [
        (request.work_item_id, "finance-approvals", "Credit hold release")
    ]
