"""What a finance decision does to the order, in one visible place.

An approved credit hold is released and the order goes on to allocation; an approved
high-value order is released to the warehouse; a rejection ends the order the way the
policy that applied says (cancelled, or put on hold). The approver is the actor and
the comment the reason on the order's timeline.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from approvals import services as approval_services
from approvals.models import ApprovalPolicy, ApprovalRequest, Kind
from flows import fulfilment
from fulfillment.core.actors import Actor
from orders import services as order_services
from orders.models import Status


@transaction.atomic
def approval_decide(
    *, request: ApprovalRequest, user: AbstractBaseUser, approve: bool, comment: str
) -> approval_services.ApprovalOutcome:
    outcome = approval_services.approval_decide(request=request, user=user, approve=approve, comment=comment)
    if not outcome.final:
        return outcome
    decided = outcome.request
    order = order_services.order_get(order_id=decided.order_id)
    actor = Actor.of(user)
    reason = outcome.decision.comment
    if outcome.approved:
        reason = reason or f"{decided.get_kind_display()} approved."
        if decided.kind == Kind.CREDIT_HOLD:
            order_services.order_release_credit_hold(order=order, actor=actor, reason=reason)
            fulfilment.order_allocate(order=order, actor=actor)
        else:
            order_services.order_release(order=order, actor=actor, reason=reason)
    elif outcome.decision.policy["reject_action"] == ApprovalPolicy.RejectAction.CANCEL:
        order_services.order_cancel(order=order, actor=actor, reason=reason)
    elif order.status != Status.CREDIT_HOLD:  # an order on credit hold stays there
        order_services.order_apply(order=order, transition_name="hold", actor=actor, reason=reason)
    return outcome
