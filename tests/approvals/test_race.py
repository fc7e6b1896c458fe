import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection

from approvals.models import ApprovalDecision, ApprovalRequest
from flows import approvals as flow
from fulfillment.core.errors import ApplicationError, InvalidInput
from fulfillment.core.models import WorkItem
from orders.models import Inventory, OrderTransition, Status
from tests.approvals.support import credit_hold_order, finance, request_for


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_approvers_at_the_same_instant_move_the_order_once() -> None:
    approvers = [finance("alice"), finance("bob")]
    order = credit_hold_order(total="12000.00", limit="10000.00", on_hand=5)
    request = request_for(order)
    barrier = threading.Barrier(len(approvers))
    outcomes: dict[str, object] = {}

    def decide(user_id: int) -> None:
        try:
            user = User.objects.get(pk=user_id)
            own_request = ApprovalRequest.objects.get(pk=request.pk)
            barrier.wait(timeout=10)
            try:
                outcomes[user.username] = flow.approval_decide(
                    request=own_request, user=user, approve=True, comment=f"Approved by {user.username}."
                )
            except ApplicationError as exc:
                outcomes[user.username] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(u.pk,)) for u in approvers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sorted(outcomes) == ["alice", "bob"]
    winners = [name for name, outcome in outcomes.items() if not isinstance(outcome, Exception)]
    assert len(winners) == 1
    winner = winners[0]
    loser = "bob" if winner == "alice" else "alice"
    error = outcomes[loser]
    assert isinstance(error, InvalidInput)
    assert error.message == (
        f"The credit hold release request for order {order.external_id} was approved by {winner} already; "
        "there is nothing left to decide."
    )
    assert list(ApprovalDecision.objects.values_list("approver__username", "decision")) == [
        (winner, "approve")
    ]
    assert ApprovalRequest.objects.get(pk=request.pk).status == "approved"
    item = WorkItem.objects.get(pk=request.work_item_id)
    assert (item.state, item.resolved_by.username) == ("resolved", winner)
    moves = list(
        OrderTransition.objects.filter(
            order=order, transition__in=["release_credit_hold", "allocate_in_full"]
        )
        .order_by("id")
        .values_list("transition", "actor_user__username")
    )
    assert moves == [("release_credit_hold", winner), ("allocate_in_full", winner)]
    order.refresh_from_db()
    assert order.status == Status.RELEASED
    assert Inventory.objects.get(product=order.lines.get().product).allocated == 1
