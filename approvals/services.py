"""Approval requests, decisions, policies and delegations: the only writers of approvals.

A request opens a work item in the finance approvals queue. A decision is checked
against the policy's approver group, delegations and separation of duties, recorded
with the policy that applied, and resolves the work item when it is final. What a final
decision does to the order is the business of ``flows.approvals``.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Min, Q
from django.utils import timezone

from approvals.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest, Delegation, Kind
from fulfillment.core import clock, roles, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.errors import InvalidInput, NotFound, PermissionDenied, TransitionNotAllowed
from fulfillment.core.models import WorkItem
from orders.models import Order, Status
from orders.services import credit_exposure

QUEUE_SLUG = "finance-approvals"
REASON_CODES = ("approved", "rejected")
CENT = Decimal("0.01")
# The order state a request of each kind is about: the decision moves the order out of it.
ORDER_STATE_FOR = {Kind.CREDIT_HOLD: Status.CREDIT_HOLD, Kind.HIGH_VALUE_RELEASE: Status.AWAITING_RELEASE}

Pending = ApprovalRequest.Status.PENDING


def today() -> date:
    return timezone.localdate(clock.now())


# --- policies --------------------------------------------------------------------------


def high_value_threshold() -> Decimal | None:
    """Orders at or above this total need release approval; None when no policy asks for it."""
    threshold = ApprovalPolicy.objects.filter(kind=Kind.HIGH_VALUE_RELEASE, is_active=True).aggregate(
        threshold=Min("min_amount")
    )["threshold"]
    return None if threshold is None else Decimal(threshold).quantize(CENT)


def approval_policy_for(*, kind: str, amount: Decimal) -> ApprovalPolicy:
    policy = (
        ApprovalPolicy.objects.select_related("approver_group")
        .filter(kind=kind, is_active=True, min_amount__lte=amount)
        .filter(Q(max_amount__isnull=True) | Q(max_amount__gte=amount))
        .first()
    )
    if policy is None:
        raise InvalidInput(
            f"No active {Kind(kind).label.lower()} policy covers {amount:,.2f}; an admin must add a band.",
            fields={"policy": ["No policy for this amount."]},
        )
    return policy


@transaction.atomic
def approval_policy_save(*, policy: ApprovalPolicy) -> ApprovalPolicy:
    """Create or change a policy; its band must not overlap another active band of its kind.

    The existing bands of the kind are locked first, so two admins saving at once cannot
    each miss the other's overlap.
    """
    list(ApprovalPolicy.objects.select_for_update().filter(kind=policy.kind).values_list("pk", flat=True))
    if policy.approver_group_id is None:
        policy.approver_group = Group.objects.filter(name=roles.FINANCE).first()
    try:
        policy.full_clean()
    except ValidationError as exc:
        raise InvalidInput("The approval policy is not valid.", fields=exc.message_dict) from exc
    policy.save()
    return policy


# --- requests --------------------------------------------------------------------------


def _end_of_day(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=zone)


def _subject(order: Order) -> workqueue.Subject:
    warehouse = order.warehouse
    zone = ZoneInfo(warehouse.time_zone) if warehouse is not None else timezone.get_default_timezone()
    return workqueue.Subject(
        ref=order.external_id,
        customer_code=order.customer.code,
        customer_tier=order.customer.tier,
        warehouse_code=warehouse.code if warehouse is not None else "",
        revenue_at_risk=order.total,
        promised_at=_end_of_day(order.promised_date, zone),
    )


def _title(order: Order, kind: str, figures: dict[str, Any]) -> str:
    if kind == Kind.HIGH_VALUE_RELEASE:
        return f"High-value release: {order.external_id} — {order.total:,.2f} {order.currency}"
    exposure = Decimal(figures.get("exposure", order.total))
    if figures.get("credit_blocked"):
        return f"Credit hold: {order.external_id} — customer credit-blocked, exposure {exposure:,.2f}"
    limit = Decimal(figures.get("credit_limit", 0))
    return f"Credit hold: {order.external_id} — exposure {exposure:,.2f} over limit {limit:,.2f}"


@transaction.atomic
def approval_request(
    *,
    order: Order,
    kind: str,
    actor: Actor,
    figures: dict[str, Any] | None = None,
    requested_by: AbstractBaseUser | None = None,
) -> ApprovalRequest:
    """Ask finance to decide about an order that waits in the state of ``kind``.

    The requester is ``requested_by``, else the acting user; a request raised by a system
    (``actor`` a named system and no ``requested_by``) has no requesting person. The policy
    is the active band of ``kind`` that covers the order total. Credit holds carry the
    exposure breakdown (computed now unless ``figures`` are given).
    """
    if kind not in Kind.values:
        raise InvalidInput(f"Unknown approval kind '{kind}'.", fields={"kind": ["Unknown kind."]})
    expected = ORDER_STATE_FOR[Kind(kind)]
    if order.status != expected:
        raise InvalidInput(
            f"Order {order.external_id} is {order.get_status_display().lower()}; "
            f"a {Kind(kind).label.lower()} request is for orders that are {expected.label.lower()}."
        )
    if ApprovalRequest.objects.filter(order=order, kind=kind, status=Pending).exists():
        raise InvalidInput(
            f"Order {order.external_id} has a pending {Kind(kind).label.lower()} request already."
        )
    policy = approval_policy_for(kind=kind, amount=order.total)
    if figures is None:
        if kind == Kind.CREDIT_HOLD:
            figures = credit_exposure(order=order).as_data()
        else:
            figures = {"this_order": str(order.total), "threshold": str(high_value_threshold())}
    requester = requested_by or actor.user
    item = workqueue.work_item_open(
        queue=workqueue.queue_get(slug=QUEUE_SLUG),
        kind=WorkItem.Kind.APPROVAL,
        type=kind,
        title=_title(order, kind, figures),
        subject=_subject(order),
        actor=actor,
        severity=3 if policy.approvers_required == 2 else 2,
        sla_minutes=policy.sla_minutes,
        raised_by=requester,
        note=(
            f"Policy '{policy.name}' ({policy.band}): {policy.approvers_required} approver(s) "
            f"from {policy.approver_group.name}."
        ),
    )
    try:
        with transaction.atomic():
            return ApprovalRequest.objects.create(
                work_item=item,
                order=order,
                kind=kind,
                amount=order.total,
                figures=figures,
                policy=policy,
                requested_by=requester,
                requested_by_system="" if requester is not None else actor.system,
                created_at=item.created_at,
            )
    except IntegrityError as exc:  # another request for the order and kind won the race
        raise InvalidInput(
            f"Order {order.external_id} has a pending {Kind(kind).label.lower()} request already."
        ) from exc


# --- decisions -------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalOutcome:
    request: ApprovalRequest
    decision: ApprovalDecision
    final: bool
    approved: bool | None  # None while more approvals are needed


def _in_group(user: AbstractBaseUser, group_id: int) -> bool:
    return user.groups.filter(pk=group_id).exists()


def access_approval_decision(*, request: ApprovalRequest, user: AbstractBaseUser) -> AbstractBaseUser | None:
    """May ``user`` decide ``request`` now? Returns the approver they stand in for as a
    delegate, or None when they decide in their own right; raises PermissionDenied.

    Separation of duties: never whoever raised the request, never a person who has taken
    part in a decision on it already (as approver, or as the approver a delegate stood in
    for), and a delegate never stands in for such a person.
    """
    if not user.is_active:
        raise PermissionDenied(f"{user.get_username()} is not an active user.")
    raised_by = {request.requested_by_id, request.work_item.raised_by_id} - {None}
    if user.pk in raised_by:
        raise PermissionDenied("You raised this request; someone else must decide it.")
    involved = set()
    for approver_id, on_behalf_of_id in request.decisions.values_list("approver_id", "on_behalf_of_id"):
        involved |= {approver_id, on_behalf_of_id} - {None}
    if user.pk in involved:
        raise PermissionDenied(
            "You have taken part in a decision on this request already; the next approver must be "
            "someone else."
        )
    group = request.policy.approver_group
    if _in_group(user, group.pk):
        return None
    day = today()
    delegations = (
        Delegation.objects.in_force(day)
        .filter(delegate=user, delegator__groups=group, delegator__is_active=True)
        .select_related("delegator")
        .order_by("delegator__username", "id")
    )
    delegators = list(dict.fromkeys(d.delegator for d in delegations))
    if not delegators:
        raise PermissionDenied(
            f"Only members of {group.name}, or their delegates, may decide this request; "
            f"{user.get_username()} is neither today."
        )
    eligible = [d for d in delegators if d.pk not in raised_by and d.pk not in involved]
    if not eligible:
        names = ", ".join(d.get_username() for d in delegators)
        raise PermissionDenied(
            f"You stand in for {names}, who raised or already decided this request; "
            f"someone else must decide it."
        )
    return eligible[0]


def _locked(request: ApprovalRequest) -> ApprovalRequest:
    locked = (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .select_related("policy__approver_group", "order")
        .filter(pk=request.pk)
        .first()
    )
    if locked is None:
        raise NotFound(f"Approval request {request.pk} does not exist.")
    locked.work_item = WorkItem.objects.select_for_update().get(pk=locked.work_item_id)
    return locked


def _require_pending(request: ApprovalRequest) -> None:
    if request.status == Pending:
        return
    last = request.decisions.select_related("approver").order_by("-at", "-id").first()
    by = f" by {last.approver.get_username()}" if last is not None else ""
    raise InvalidInput(
        f"The {request.get_kind_display().lower()} request for order {request.order.external_id} "
        f"was {request.get_status_display().lower()}{by} already; there is nothing left to decide."
    )


@transaction.atomic
def approval_decide(
    *, request: ApprovalRequest, user: AbstractBaseUser, approve: bool, comment: str
) -> ApprovalOutcome:
    """Record one approver's decision; final when it is a rejection or the last approval
    the policy needs, and then the work item is resolved. Nothing is written on error."""
    request = _locked(request)
    _require_pending(request)
    comment = comment.strip()
    if not approve and not comment:
        raise InvalidInput("Say why you reject the request.", fields={"comment": ["Required to reject."]})
    on_behalf_of = access_approval_decision(request=request, user=user)
    item = request.work_item
    if item.assignee_id not in (None, user.pk) and not roles.has_role(user, roles.ADMIN):
        raise PermissionDenied(
            f"{item.assignee.get_username()} has claimed this request; they must release it first."
        )
    policy = request.policy
    now = clock.now()
    decision = ApprovalDecision.objects.create(
        request=request,
        approver=user,
        on_behalf_of=on_behalf_of,
        decision=ApprovalDecision.Decision.APPROVE if approve else ApprovalDecision.Decision.REJECT,
        comment=comment,
        policy=policy.snapshot(),
        at=now,
    )
    actor = Actor.of(user)
    approvals = request.decisions.filter(decision=ApprovalDecision.Decision.APPROVE).count()
    if approve and approvals < policy.approvers_required:
        if item.assignee_id is not None:
            workqueue.work_item_release(item=item, user=user)
        who = user.get_username() + (f" for {on_behalf_of.get_username()}" if on_behalf_of else "")
        workqueue.record(
            item,
            "approved",
            actor=actor,
            note=f"First approval by {who}, waiting for a second approver.",
            comment=comment,
            approvals=approvals,
            approvers_required=policy.approvers_required,
        )
        return ApprovalOutcome(request=request, decision=decision, final=False, approved=None)

    request.status = ApprovalRequest.Status.APPROVED if approve else ApprovalRequest.Status.REJECTED
    request.decided_at = now
    request.save(update_fields=["status", "decided_at"])
    workqueue.work_item_resolve(
        item=item,
        reason_code=request.status,
        note=comment,
        actor=actor,
        allowed_codes=REASON_CODES,
        authorised=True,
    )
    return ApprovalOutcome(request=request, decision=decision, final=True, approved=approve)


# --- delegations -----------------------------------------------------------------------


def delegation_check(
    *,
    delegator: AbstractBaseUser,
    delegate: AbstractBaseUser,
    starts_on: date,
    ends_on: date,
    actor: Actor,
) -> None:
    """Raise the error ``delegation_create`` would raise for this delegation, if any."""
    if (
        actor.user is not None
        and actor.user.pk != delegator.pk
        and not roles.has_role(actor.user, roles.ADMIN)
    ):
        raise PermissionDenied("Only approvers themselves, or an admin, may name their delegate.")
    errors: dict[str, list[str]] = {}
    if delegator.pk == delegate.pk:
        errors["delegate"] = ["Name someone other than the delegator as delegate."]
    elif not delegate.is_active:
        errors["delegate"] = [f"{delegate.get_username()} is not an active user."]
    if ends_on < starts_on:
        errors["ends_on"] = ["The delegation must end on or after the day it starts."]
    elif ends_on < today():
        errors["ends_on"] = ["The delegation would end in the past."]
    approves = ApprovalPolicy.objects.filter(is_active=True, approver_group__user=delegator).exists()
    if not approves:
        errors["delegator"] = [
            f"{delegator.get_username()} approves no active policy; there is nothing to delegate."
        ]
    if errors:
        raise InvalidInput("The delegation is not valid.", fields=errors)


@transaction.atomic
def delegation_create(
    *,
    delegator: AbstractBaseUser,
    delegate: AbstractBaseUser,
    starts_on: date,
    ends_on: date,
    reason: str,
    actor: Actor,
) -> Delegation:
    """An approver names someone to decide in their place from ``starts_on`` to ``ends_on``."""
    delegation_check(
        delegator=delegator, delegate=delegate, starts_on=starts_on, ends_on=ends_on, actor=actor
    )
    return Delegation.objects.create(
        delegator=delegator,
        delegate=delegate,
        starts_on=starts_on,
        ends_on=ends_on,
        reason=reason.strip(),
        created_by=actor.user,
        created_by_system=actor.system,
        created_at=clock.now(),
    )


@transaction.atomic
def delegation_end(*, delegation: Delegation, actor: Actor) -> Delegation:
    """End a delegation now, before its last day (an upcoming one never starts): from this
    moment the delegate decides nothing more in the approver's place."""
    if (
        actor.user is not None
        and actor.user.pk != delegation.delegator_id
        and not roles.has_role(actor.user, roles.ADMIN)
    ):
        raise PermissionDenied("Only the approver themselves, or an admin, may end their delegation.")
    delegation = Delegation.objects.select_for_update().get(pk=delegation.pk)
    if delegation.ended_at is not None:
        ended = timezone.localtime(delegation.ended_at)
        raise TransitionNotAllowed(f"This delegation was ended already, at {ended:%Y-%m-%d %H:%M}.")
    if delegation.ends_on < today():
        raise TransitionNotAllowed(f"This delegation is over already: its last day was {delegation.ends_on}.")
    delegation.ended_at = clock.now()
    delegation.ended_by = actor.user
    delegation.ended_by_system = actor.system
    delegation.save(update_fields=["ended_at", "ended_by", "ended_by_system"])
    return delegation
