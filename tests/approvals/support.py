"""Orders waiting for finance, made through the real services."""

from decimal import Decimal

from django.contrib.auth.models import User

from approvals import services
from approvals.models import ApprovalDecision, ApprovalRequest, Kind
from fulfillment.core import roles
from fulfillment.core.actors import Actor
from fulfillment.core.models import WorkItem, WorkItemEvent
from orders import services as order_services
from orders.models import Allocation, Order, OrderTransition
from tests import factories

INTAKE = Actor.named("intake")


def finance(name: str) -> User:
    return factories.user(name, roles.FINANCE)


def credit_hold_order(
    total: str = "12000.00", limit: str = "10000.00", on_hand: int = 1, blocked: bool = False
) -> Order:
    """One unit of a product priced ``total``; the credit check fails against ``limit``
    (or because the customer is ``blocked``)."""
    cust = factories.customer(credit_limit=Decimal(limit), credit_blocked=blocked)
    wh = factories.warehouse()
    prod = factories.product(price=total)
    factories.stock(wh, prod, on_hand)
    order = factories.order(cust, [(prod, 1)], wh=wh, actor=INTAKE)
    assert not order_services.order_credit_check(order=order, actor=INTAKE).passed
    return order


def awaiting_release_order(total: str = "30000.00") -> Order:
    cust = factories.customer(credit_limit=Decimal("10000000"))
    wh = factories.warehouse()
    prod = factories.product(price=total)
    factories.stock(wh, prod, 1)
    order = factories.order(cust, [(prod, 1)], wh=wh, actor=INTAKE)
    assert order_services.order_credit_check(order=order, actor=INTAKE).passed
    order_services.order_allocate(order=order, actor=INTAKE)
    order_services.order_request_release_approval(order=order, actor=INTAKE)
    return order


def request_for(
    order: Order, kind: str = Kind.CREDIT_HOLD, requested_by: User | None = None
) -> ApprovalRequest:
    return services.approval_request(order=order, kind=kind, actor=INTAKE, requested_by=requested_by)


def transitions(order: Order) -> list[tuple[str, str, str]]:
    """The order's timeline as (transition, actor, reason)."""
    return [
        (t.transition, t.actor_label, t.reason)
        for t in OrderTransition.objects.filter(order=order).select_related("actor_user").order_by("at", "id")
    ]


def written() -> dict[str, object]:
    """Everything a decision could write: compare before and after a refused one."""
    return {
        "decisions": ApprovalDecision.objects.count(),
        "events": WorkItemEvent.objects.count(),
        "transitions": OrderTransition.objects.count(),
        "allocations": Allocation.objects.count(),
        "requests": list(ApprovalRequest.objects.order_by("id").values_list("status", "decided_at")),
        "items": list(WorkItem.objects.order_by("id").values_list("state", "assignee_id", "resolution_code")),
        "orders": list(Order.objects.order_by("id").values_list("status", "status_changed_at")),
    }
