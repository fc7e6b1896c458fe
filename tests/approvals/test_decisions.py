from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from approvals import services
from approvals.models import ApprovalDecision, ApprovalRequest, Delegation, Kind
from flows import approvals as flow
from fulfillment.core import clock, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.errors import InvalidInput, PermissionDenied, TransitionNotAllowed
from fulfillment.core.models import WorkItem, WorkItemEvent
from orders import services as order_services
from orders.models import Order, Status
from tests import factories
from tests.approvals.support import (
    awaiting_release_order,
    credit_hold_order,
    finance,
    request_for,
    transitions,
    written,
)

pytestmark = pytest.mark.django_db

MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOLD_TIMELINE = [
    ("receive", "intake", ""),
    ("start_credit_check", "intake", ""),
    ("fail_credit_check", "intake"),
]

ONE_APPROVER_CREDIT = {
    "name": "Credit hold up to 50,000",
    "kind": "credit_hold",
    "band": {"min_amount": "0.00", "max_amount": "50000.00"},
    "approvers_required": 1,
    "approver_group": "finance",
    "reject_action": "cancel",
}
TWO_APPROVER_CREDIT = {
    "name": "Credit hold above 50,000",
    "kind": "credit_hold",
    "band": {"min_amount": "50000.01", "max_amount": None},
    "approvers_required": 2,
    "approver_group": "finance",
    "reject_action": "cancel",
}


@pytest.fixture(autouse=True)
def frozen_clock() -> None:
    with clock.frozen(MONDAY_9):
        yield


def item_of(request: ApprovalRequest) -> WorkItem:
    return WorkItem.objects.get(pk=request.work_item_id)


def events(request: ApprovalRequest) -> list[tuple[str, str, str]]:
    return [
        (e.action, e.actor_label, e.note) for e in WorkItemEvent.objects.filter(item_id=request.work_item_id)
    ]


def decisions(request: ApprovalRequest) -> list[tuple[str, str | None, str, str]]:
    return [
        (d.approver.username, d.on_behalf_of.username if d.on_behalf_of else None, d.decision, d.comment)
        for d in ApprovalDecision.objects.filter(request=request).select_related("approver", "on_behalf_of")
    ]


def refused(error: type[Exception], match: str, **decide: object) -> None:
    """The decision is refused with ``error`` and nothing at all is written."""
    before = written()
    with pytest.raises(error, match=match):
        flow.approval_decide(**decide)
    assert written() == before


def assert_timeline_after_hold(order: Order, expected: list[tuple[str, str, str]]) -> None:
    timeline = transitions(order)
    assert [t[:2] for t in timeline[:3]] == [t[:2] for t in HOLD_TIMELINE]
    assert timeline[3:] == expected


# --- one approver -------------------------------------------------------------------


def test_an_approved_credit_hold_moves_the_order_on_to_allocation() -> None:
    fiona = finance("fiona")
    order = credit_hold_order(total="12000.00", limit="10000.00")
    request = request_for(order)

    outcome = flow.approval_decide(
        request=request, user=fiona, approve=True, comment="Customer paid by wire."
    )

    assert (outcome.final, outcome.approved) == (True, True)
    request.refresh_from_db()
    assert (request.status, request.decided_at) == ("approved", MONDAY_9)
    decision = ApprovalDecision.objects.get(request=request)
    assert (decision.approver, decision.on_behalf_of, decision.decision, decision.comment, decision.at) == (
        fiona,
        None,
        "approve",
        "Customer paid by wire.",
        MONDAY_9,
    )
    assert decision.policy == {**ONE_APPROVER_CREDIT, "id": request.policy_id}
    item = item_of(request)
    assert (item.state, item.resolution_code, item.resolution_note, item.resolved_by, item.assignee) == (
        "resolved",
        "approved",
        "Customer paid by wire.",
        fiona,
        fiona,
    )
    order.refresh_from_db()
    assert order.status == Status.RELEASED
    assert_timeline_after_hold(
        order,
        [
            ("release_credit_hold", "fiona", "Customer paid by wire."),
            ("allocate_in_full", "fiona", ""),
            ("release", "fiona", ""),
        ],
    )
    assert order.lines.get().allocated_quantity == 1


def test_an_approval_without_a_comment_says_so_on_the_timeline() -> None:
    order = credit_hold_order()
    flow.approval_decide(request=request_for(order), user=finance("fiona"), approve=True, comment="  ")
    assert transitions(order)[3] == ("release_credit_hold", "fiona", "Credit hold release approved.")


def test_a_rejected_credit_hold_cancels_the_order_as_the_policy_says() -> None:
    order = credit_hold_order()
    request = request_for(order)

    outcome = flow.approval_decide(
        request=request, user=finance("fiona"), approve=False, comment="Overdue twice."
    )

    assert (outcome.final, outcome.approved) == (True, False)
    request.refresh_from_db()
    assert request.status == "rejected"
    assert decisions(request) == [("fiona", None, "reject", "Overdue twice.")]
    item = item_of(request)
    assert (item.state, item.resolution_code, item.resolution_note) == (
        "resolved",
        "rejected",
        "Overdue twice.",
    )
    order.refresh_from_db()
    assert order.status == Status.CANCELLED
    assert_timeline_after_hold(order, [("cancel", "fiona", "Overdue twice.")])


def test_an_approved_high_value_order_is_released() -> None:
    order = awaiting_release_order(total="30000.00")
    request = request_for(order, Kind.HIGH_VALUE_RELEASE, requested_by=factories.user("pia", "planner"))

    flow.approval_decide(request=request, user=finance("fiona"), approve=True, comment="Known customer.")

    order.refresh_from_db()
    assert order.status == Status.RELEASED
    assert transitions(order)[-1] == ("release", "fiona", "Known customer.")
    assert item_of(request).resolution_code == "approved"


def test_a_rejected_high_value_order_goes_on_hold_as_the_policy_says() -> None:
    order = awaiting_release_order(total="30000.00")
    request = request_for(order, Kind.HIGH_VALUE_RELEASE)

    flow.approval_decide(request=request, user=finance("fiona"), approve=False, comment="Check the address.")

    order.refresh_from_db()
    assert (order.status, order.held_from) == (Status.ON_HOLD, Status.AWAITING_RELEASE)
    assert transitions(order)[-1] == ("hold", "fiona", "Check the address.")
    snapshot = ApprovalDecision.objects.get(request=request).policy
    assert (snapshot["name"], snapshot["reject_action"]) == ("High-value release 25,000 to 100,000", "hold")


def test_a_credit_hold_policy_that_holds_on_rejection_leaves_the_order_on_credit_hold() -> None:
    order = credit_hold_order()
    request = request_for(order)
    request.policy.reject_action = "hold"
    services.approval_policy_save(policy=request.policy)

    flow.approval_decide(request=request, user=finance("fiona"), approve=False, comment="Wait for payment.")

    order.refresh_from_db()
    assert order.status == Status.CREDIT_HOLD
    assert len(transitions(order)) == 3
    assert ApprovalDecision.objects.get(request=request).policy["reject_action"] == "hold"


# --- two approvers ------------------------------------------------------------------


def test_a_two_approver_band_needs_two_distinct_approvers() -> None:
    alice, bob = finance("alice"), finance("bob")
    order = credit_hold_order(total="61200.00", limit="50000.00")
    request = request_for(order)
    workqueue.work_item_claim(item=request.work_item, user=alice)

    first = flow.approval_decide(request=request, user=alice, approve=True, comment="Fine by me.")

    assert (first.final, first.approved) == (False, None)
    request.refresh_from_db()
    assert (request.status, request.decided_at) == ("pending", None)
    item = item_of(request)
    assert (item.state, item.assignee, item.claimed_at) == ("open", None, None)
    assert events(request)[1:] == [
        ("claimed", "alice", ""),
        ("released", "alice", ""),
        ("approved", "alice", "First approval by alice, waiting for a second approver."),
    ]
    order.refresh_from_db()
    assert order.status == Status.CREDIT_HOLD

    refused(
        PermissionDenied,
        "You have taken part in a decision on this request already",
        request=request,
        user=alice,
        approve=True,
        comment="Again.",
    )

    clock.advance(timedelta(hours=1))
    second = flow.approval_decide(request=request, user=bob, approve=True, comment="Agreed.")

    assert (second.final, second.approved) == (True, True)
    assert decisions(request) == [
        ("alice", None, "approve", "Fine by me."),
        ("bob", None, "approve", "Agreed."),
    ]
    snapshots = list(ApprovalDecision.objects.filter(request=request).values_list("policy", flat=True))
    assert snapshots == [{**TWO_APPROVER_CREDIT, "id": request.policy_id}] * 2
    request.refresh_from_db()
    assert (request.status, request.decided_at) == ("approved", MONDAY_9 + timedelta(hours=1))
    item = item_of(request)
    assert (item.state, item.resolution_code, item.resolved_by) == ("resolved", "approved", bob)
    # 61,200 is at or above the high-value threshold (25,000): allocated, it waits for a
    # release approval instead of going straight to the warehouse.
    assert_timeline_after_hold(
        order,
        [
            ("release_credit_hold", "bob", "Agreed."),
            ("allocate_in_full", "bob", ""),
            ("request_release_approval", "bob", "Order value 61200.00 is at or above 25000.00."),
        ],
    )
    release = ApprovalRequest.objects.get(order=order, kind="high_value_release")
    assert (release.status, release.amount) == ("pending", order.total)
    # The release request was raised by the policy, not by bob: he may decide it too.
    assert (release.requested_by, release.work_item.raised_by) == (None, None)
    final = flow.approval_decide(request=release, user=bob, approve=True, comment="Release it.")
    assert (final.final, final.approved) == (True, True)  # 25,000-100,000: one approver
    order.refresh_from_db()
    assert order.status == Status.RELEASED


def test_a_rejection_after_the_first_approval_is_final() -> None:
    order = credit_hold_order(total="61200.00", limit="50000.00")
    request = request_for(order)
    flow.approval_decide(request=request, user=finance("alice"), approve=True, comment="")

    outcome = flow.approval_decide(request=request, user=finance("bob"), approve=False, comment="Too risky.")

    assert (outcome.final, outcome.approved) == (True, False)
    order.refresh_from_db()
    assert order.status == Status.CANCELLED
    assert transitions(order)[-1] == ("cancel", "bob", "Too risky.")


def test_the_policy_as_it_was_is_stored_with_each_decision() -> None:
    request = request_for(credit_hold_order(total="61200.00", limit="50000.00"))
    flow.approval_decide(request=request, user=finance("alice"), approve=True, comment="")
    policy = request.policy
    policy.name, policy.approvers_required = "Credit hold above 50,000 (relaxed)", 1
    services.approval_policy_save(policy=policy)

    outcome = flow.approval_decide(request=request, user=finance("bob"), approve=True, comment="")

    assert outcome.final
    names = list(ApprovalDecision.objects.filter(request=request).values_list("policy__name", flat=True))
    assert names == ["Credit hold above 50,000", "Credit hold above 50,000 (relaxed)"]


# --- separation of duties -------------------------------------------------------------


def test_the_requester_cannot_decide_their_own_request() -> None:
    fred = finance("fred")
    request = request_for(credit_hold_order(), requested_by=fred)
    refused(
        PermissionDenied, "You raised this request", request=request, user=fred, approve=True, comment="Mine."
    )
    refused(
        PermissionDenied,
        "You raised this request",
        request=request,
        user=fred,
        approve=False,
        comment="Mine.",
    )


def test_the_requester_cannot_decide_it_as_a_delegate_either() -> None:
    fiona, pia = finance("fiona"), factories.user("pia", "planner")
    services.delegation_create(
        delegator=fiona,
        delegate=pia,
        starts_on=date(2026, 3, 1),
        ends_on=date(2026, 3, 31),
        reason="Holiday",
        actor=Actor.of(fiona),
    )
    request = request_for(awaiting_release_order(), Kind.HIGH_VALUE_RELEASE, requested_by=pia)
    refused(PermissionDenied, "You raised this request", request=request, user=pia, approve=True, comment="")


def test_no_one_decides_for_the_requester_as_their_delegate() -> None:
    fred, dan = finance("fred"), factories.user("dan")
    services.delegation_create(
        delegator=fred,
        delegate=dan,
        starts_on=date(2026, 3, 2),
        ends_on=date(2026, 3, 2),
        reason="",
        actor=Actor.of(fred),
    )
    request = request_for(credit_hold_order(), requested_by=fred)
    refused(
        PermissionDenied,
        "You stand in for fred, who raised or already decided",
        request=request,
        user=dan,
        approve=True,
        comment="",
    )


def test_a_delegate_does_not_stand_in_for_someone_who_has_decided() -> None:
    alice, dan = finance("alice"), factories.user("dan")
    services.delegation_create(
        delegator=alice,
        delegate=dan,
        starts_on=date(2026, 3, 2),
        ends_on=date(2026, 3, 6),
        reason="",
        actor=Actor.of(alice),
    )
    request = request_for(credit_hold_order(total="61200.00", limit="50000.00"))
    flow.approval_decide(request=request, user=alice, approve=True, comment="")
    refused(
        PermissionDenied,
        "You stand in for alice, who raised or already decided",
        request=request,
        user=dan,
        approve=True,
        comment="",
    )


def test_the_delegator_cannot_add_a_second_approval_to_their_delegates() -> None:
    alice, dan = finance("alice"), factories.user("dan")
    services.delegation_create(
        delegator=alice,
        delegate=dan,
        starts_on=date(2026, 3, 2),
        ends_on=date(2026, 3, 6),
        reason="",
        actor=Actor.of(alice),
    )
    request = request_for(credit_hold_order(total="61200.00", limit="50000.00"))
    flow.approval_decide(request=request, user=dan, approve=True, comment="For Alice.")
    refused(
        PermissionDenied,
        "You have taken part in a decision",
        request=request,
        user=alice,
        approve=True,
        comment="",
    )
    assert decisions(request) == [("dan", "alice", "approve", "For Alice.")]
    assert events(request)[-1] == (
        "approved",
        "dan",
        "First approval by dan for alice, waiting for a second approver.",
    )


def test_a_delegate_standing_in_for_two_approvers_picks_one_who_has_not_decided() -> None:
    alice, bob, dan = finance("alice"), finance("bob"), factories.user("dan")
    for delegator in (alice, bob):
        services.delegation_create(
            delegator=delegator,
            delegate=dan,
            starts_on=date(2026, 3, 2),
            ends_on=date(2026, 3, 2),
            reason="",
            actor=Actor.of(delegator),
        )
    request = request_for(credit_hold_order(total="61200.00", limit="50000.00"))
    flow.approval_decide(request=request, user=alice, approve=True, comment="")
    outcome = flow.approval_decide(request=request, user=dan, approve=True, comment="")
    assert outcome.final
    assert decisions(request) == [("alice", None, "approve", ""), ("dan", "bob", "approve", "")]


def test_someone_outside_the_approver_group_is_refused() -> None:
    request = request_for(credit_hold_order())
    for outsider in (factories.user("pia", "planner"), factories.user("carl", "customer_service")):
        refused(
            PermissionDenied,
            "Only members of finance, or their delegates",
            request=request,
            user=outsider,
            approve=True,
            comment="",
        )


def test_an_inactive_approver_is_refused() -> None:
    fiona = finance("fiona")
    User.objects.filter(pk=fiona.pk).update(is_active=False)
    fiona.refresh_from_db()
    refused(
        PermissionDenied,
        "not an active user",
        request=request_for(credit_hold_order()),
        user=fiona,
        approve=True,
        comment="",
    )


# --- delegation windows ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("on", "allowed"),
    [
        (date(2026, 3, 9), False),  # the day before
        (date(2026, 3, 10), True),  # the first day
        (date(2026, 3, 12), True),  # the last day
        (date(2026, 3, 13), False),  # the day after
    ],
)
def test_a_delegate_may_decide_within_the_window_only(on: date, allowed: bool) -> None:
    fiona, dan = finance("fiona"), factories.user("dan")
    services.delegation_create(
        delegator=fiona,
        delegate=dan,
        starts_on=date(2026, 3, 10),
        ends_on=date(2026, 3, 12),
        reason="Holiday",
        actor=Actor.of(fiona),
    )
    request = request_for(credit_hold_order())

    with clock.frozen(datetime.combine(on, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)):
        if not allowed:
            refused(
                PermissionDenied, "dan is neither today", request=request, user=dan, approve=True, comment=""
            )
            return
        outcome = flow.approval_decide(request=request, user=dan, approve=True, comment="For Fiona.")

    assert outcome.final
    assert decisions(request) == [("dan", "fiona", "approve", "For Fiona.")]
    item = item_of(request)  # dan is not in the finance team: the policy gives him the right
    assert (item.state, item.resolved_by, item.resolution_code) == ("resolved", dan, "approved")
    assert transitions(request.order)[3] == ("release_credit_hold", "dan", "For Fiona.")


def test_a_delegation_from_someone_outside_the_approver_group_gives_no_right() -> None:
    fiona, dan = finance("fiona"), factories.user("dan")
    services.delegation_create(
        delegator=fiona,
        delegate=dan,
        starts_on=date(2026, 3, 2),
        ends_on=date(2026, 3, 2),
        reason="",
        actor=Actor.of(fiona),
    )
    fiona.groups.clear()
    refused(
        PermissionDenied,
        "Only members of finance",
        request=request_for(credit_hold_order()),
        user=dan,
        approve=True,
        comment="",
    )


# --- bad input ------------------------------------------------------------------------


def test_a_rejection_needs_a_comment() -> None:
    request = request_for(credit_hold_order())
    fiona = finance("fiona")
    for comment in ("", "   "):
        refused(
            InvalidInput, "Say why you reject", request=request, user=fiona, approve=False, comment=comment
        )


def test_a_decided_request_cannot_be_decided_again() -> None:
    request = request_for(credit_hold_order())
    flow.approval_decide(request=request, user=finance("fiona"), approve=True, comment="")
    refused(
        InvalidInput,
        "was approved by fiona already; there is nothing left to decide",
        request=request,
        user=finance("bob"),
        approve=False,
        comment="No.",
    )


def test_an_item_claimed_by_someone_else_is_theirs_to_decide() -> None:
    alice, bob = finance("alice"), finance("bob")
    request = request_for(credit_hold_order())
    workqueue.work_item_claim(item=request.work_item, user=alice)
    refused(
        PermissionDenied,
        "alice has claimed this request",
        request=request,
        user=bob,
        approve=True,
        comment="",
    )


def test_when_the_order_cannot_move_the_decision_is_not_recorded_either() -> None:
    order = credit_hold_order()
    request = request_for(order)
    order_services.order_cancel(order=order, actor=Actor.named("erp"), reason="Cancelled in the ERP.")
    refused(
        TransitionNotAllowed, "is cancelled", request=request, user=finance("fiona"), approve=True, comment=""
    )
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"


# --- delegations ----------------------------------------------------------------------


def test_an_approver_names_a_delegate() -> None:
    fiona, dan = finance("fiona"), factories.user("dan")
    delegation = services.delegation_create(
        delegator=fiona,
        delegate=dan,
        starts_on=date(2026, 3, 2),
        ends_on=date(2026, 3, 6),
        reason=" Holiday ",
        actor=Actor.of(fiona),
    )
    saved = Delegation.objects.get()
    assert saved == delegation
    assert (saved.delegator, saved.delegate, saved.starts_on, saved.ends_on, saved.reason) == (
        fiona,
        dan,
        date(2026, 3, 2),
        date(2026, 3, 6),
        "Holiday",
    )
    assert (saved.created_by, saved.created_at) == (fiona, MONDAY_9)


@pytest.mark.parametrize(
    ("starts_on", "ends_on", "delegate_name", "fields"),
    [
        (date(2026, 3, 6), date(2026, 3, 5), "dan", {"ends_on"}),
        (date(2026, 2, 20), date(2026, 3, 1), "dan", {"ends_on"}),  # over before today
        (date(2026, 3, 2), date(2026, 3, 6), "fiona", {"delegate"}),
    ],
)
def test_an_invalid_delegation_is_refused(
    starts_on: date, ends_on: date, delegate_name: str, fields: set[str]
) -> None:
    fiona = finance("fiona")
    delegate = fiona if delegate_name == "fiona" else factories.user(delegate_name)
    with pytest.raises(InvalidInput) as caught:
        services.delegation_create(
            delegator=fiona,
            delegate=delegate,
            starts_on=starts_on,
            ends_on=ends_on,
            reason="",
            actor=Actor.of(fiona),
        )
    assert set(caught.value.fields) == fields
    assert not Delegation.objects.exists()


def test_only_approvers_have_something_to_delegate() -> None:
    pia, dan = factories.user("pia", "planner"), factories.user("dan")
    with pytest.raises(InvalidInput) as caught:
        services.delegation_create(
            delegator=pia,
            delegate=dan,
            starts_on=date(2026, 3, 2),
            ends_on=date(2026, 3, 2),
            reason="",
            actor=Actor.of(pia),
        )
    assert caught.value.fields == {
        "delegator": ["pia approves no active policy; there is nothing to delegate."]
    }
    assert not Delegation.objects.exists()


def test_only_the_approver_or_an_admin_names_the_delegate() -> None:
    fiona, bob, dan = finance("fiona"), finance("bob"), factories.user("dan")
    window = {"starts_on": date(2026, 3, 2), "ends_on": date(2026, 3, 2), "reason": ""}
    with pytest.raises(PermissionDenied):
        services.delegation_create(delegator=fiona, delegate=dan, actor=Actor.of(bob), **window)
    assert not Delegation.objects.exists()
    services.delegation_create(
        delegator=fiona, delegate=dan, actor=Actor.of(factories.user("ada", "admin")), **window
    )
    assert Delegation.objects.count() == 1


def test_the_model_refuses_a_backwards_window_or_a_self_delegation() -> None:
    fiona = finance("fiona")
    delegation = Delegation(
        delegator=fiona, delegate=fiona, starts_on=date(2026, 3, 5), ends_on=date(2026, 3, 4)
    )
    with pytest.raises(ValidationError) as caught:
        delegation.full_clean()
    assert set(caught.value.message_dict) == {"ends_on", "delegate"}


def test_whoever_raised_the_work_item_cannot_decide_it() -> None:
    fred = finance("fred")
    request = request_for(credit_hold_order())
    WorkItem.objects.filter(pk=request.work_item_id).update(raised_by=fred)
    refused(PermissionDenied, "You raised this request", request=request, user=fred, approve=True, comment="")


# --- ending a delegation early ------------------------------------------------------------


def _week_off(fiona: User, dan: User) -> Delegation:
    return services.delegation_create(
        delegator=fiona,
        delegate=dan,
        starts_on=date(2026, 3, 2),
        ends_on=date(2026, 3, 6),
        reason="Holiday",
        actor=Actor.of(fiona),
    )


def test_an_approver_back_early_ends_the_delegation_and_the_delegate_decides_no_more() -> None:
    fiona, dan = finance("fiona"), factories.user("dan")
    delegation = _week_off(fiona, dan)
    request = request_for(credit_hold_order())
    assert services.access_approval_decision(request=request, user=dan) == fiona

    ended = services.delegation_end(delegation=delegation, actor=Actor.of(fiona))

    saved = Delegation.objects.get()
    assert saved == ended
    assert (saved.ended_at, saved.ended_by, saved.ends_on) == (MONDAY_9, fiona, date(2026, 3, 6))
    refused(PermissionDenied, "dan is neither today", request=request, user=dan, approve=True, comment="")
    with clock.frozen(MONDAY_9 + timedelta(days=2)):  # later in the week the window had
        refused(PermissionDenied, "dan is neither today", request=request, user=dan, approve=True, comment="")


def test_an_upcoming_delegation_ended_never_starts() -> None:
    fiona, dan = finance("fiona"), factories.user("dan")
    delegation = services.delegation_create(
        delegator=fiona,
        delegate=dan,
        starts_on=date(2026, 3, 9),
        ends_on=date(2026, 3, 13),
        reason="",
        actor=Actor.of(fiona),
    )
    services.delegation_end(delegation=delegation, actor=Actor.of(fiona))

    request = request_for(credit_hold_order())
    with clock.frozen(datetime(2026, 3, 10, 9, 0, tzinfo=UTC)):
        refused(PermissionDenied, "dan is neither today", request=request, user=dan, approve=True, comment="")


def test_an_admin_may_end_anyones_delegation_and_others_may_not() -> None:
    fiona, frank, dan = finance("fiona"), finance("frank"), factories.user("dan")
    delegation = _week_off(fiona, dan)

    for outsider in (frank, dan):
        with pytest.raises(PermissionDenied, match="Only the approver themselves, or an admin"):
            services.delegation_end(delegation=delegation, actor=Actor.of(outsider))
        assert Delegation.objects.get().ended_at is None

    admin = factories.user("ada", "admin")
    services.delegation_end(delegation=delegation, actor=Actor.of(admin))
    assert Delegation.objects.get().ended_by == admin


def test_a_delegation_ended_or_over_cannot_be_ended_again() -> None:
    fiona, dan = finance("fiona"), factories.user("dan")
    delegation = _week_off(fiona, dan)
    services.delegation_end(delegation=delegation, actor=Actor.of(fiona))

    later = clock.frozen(MONDAY_9 + timedelta(hours=1))
    with later, pytest.raises(TransitionNotAllowed, match="ended already, at 2026-03-02 09:00"):
        services.delegation_end(delegation=delegation, actor=Actor.of(fiona))
    assert Delegation.objects.get().ended_at == MONDAY_9

    over = _week_off(fiona, factories.user("dora"))
    saturday = clock.frozen(datetime(2026, 3, 7, 9, 0, tzinfo=UTC))
    with saturday, pytest.raises(TransitionNotAllowed, match="its last day was 2026-03-06"):
        services.delegation_end(delegation=over, actor=Actor.of(fiona))
    assert Delegation.objects.get(pk=over.pk).ended_at is None
