from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q, QuerySet

from fulfillment.core import clock
from fulfillment.core.models import WorkItem


class Kind(models.TextChoices):
    CREDIT_HOLD = "credit_hold", "Credit hold release"
    HIGH_VALUE_RELEASE = "high_value_release", "High-value order release"


class ApprovalPolicy(models.Model):
    """Who must approve a request of a kind, by the order's amount.

    A band runs from ``min_amount`` to ``max_amount``, both inclusive (amounts are in
    cents, so the next band starts one cent above); no ``max_amount`` means no upper
    bound. The active bands of one kind never overlap.
    """

    class RejectAction(models.TextChoices):
        CANCEL = "cancel", "Cancel the order"
        HOLD = "hold", "Put the order on hold"

    kind = models.CharField(max_length=24, choices=Kind.choices)
    name = models.CharField(max_length=100, unique=True)
    min_amount = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal(0))
    max_amount = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, help_text="Empty: no upper bound."
    )
    approvers_required = models.PositiveSmallIntegerField(
        choices=[(1, "One approver"), (2, "Two distinct approvers")], default=1
    )
    approver_group = models.ForeignKey(
        Group, on_delete=models.PROTECT, related_name="+", help_text="Usually finance."
    )
    reject_action = models.CharField(
        max_length=16,
        choices=RejectAction.choices,
        help_text="What a final rejection does to the order. An order on credit hold stays on credit hold.",
    )
    sla_minutes = models.PositiveIntegerField(default=240, help_text="Working minutes to decide.")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind", "min_amount"]
        verbose_name_plural = "approval policies"
        constraints = [
            models.CheckConstraint(condition=Q(min_amount__gte=0), name="approvalpolicy_min_gte_0"),
            models.CheckConstraint(
                condition=Q(max_amount__isnull=True) | Q(max_amount__gte=F("min_amount")),
                name="approvalpolicy_band_ordered",
            ),
            models.CheckConstraint(
                condition=Q(approvers_required__in=[1, 2]), name="approvalpolicy_one_or_two_approvers"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def band(self) -> str:
        if self.max_amount is None:
            return f"from {self.min_amount:,.2f}"
        return f"{self.min_amount:,.2f} to {self.max_amount:,.2f}"

    def covers(self, amount: Decimal) -> bool:
        return self.min_amount <= amount and (self.max_amount is None or amount <= self.max_amount)

    def overlapping(self) -> QuerySet["ApprovalPolicy"]:
        """The other active policies of this kind whose band shares an amount with this one."""
        others = ApprovalPolicy.objects.filter(kind=self.kind, is_active=True).exclude(pk=self.pk)
        others = others.filter(Q(max_amount__isnull=True) | Q(max_amount__gte=self.min_amount))
        if self.max_amount is not None:
            others = others.filter(min_amount__lte=self.max_amount)
        return others

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.min_amount is not None and self.min_amount < 0:
            errors["min_amount"] = "The band cannot start below zero."
        if self.max_amount is not None and self.min_amount is not None and self.max_amount < self.min_amount:
            errors["max_amount"] = "The band must end at or above where it starts."
        if self.approvers_required not in (1, 2):
            errors["approvers_required"] = "A band needs one or two approvers."
        if not errors and self.is_active and self.min_amount is not None:
            clash = self.overlapping().order_by("min_amount").first()
            if clash is not None:
                errors["min_amount"] = (
                    f"The band {self.band} overlaps policy '{clash.name}' ({clash.band}) "
                    f"of the same kind; bands must not overlap."
                )
        if errors:
            raise ValidationError(errors)

    def snapshot(self) -> dict[str, Any]:
        """The policy as it applied to a decision, stored with the decision."""
        return {
            "id": self.pk,
            "name": self.name,
            "kind": self.kind,
            "band": {
                "min_amount": str(self.min_amount),
                "max_amount": None if self.max_amount is None else str(self.max_amount),
            },
            "approvers_required": self.approvers_required,
            "approver_group": self.approver_group.name,
            "reject_action": self.reject_action,
        }


class ApprovalRequest(models.Model):
    """A decision finance must take about an order; its work item sits in the approvals queue."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    work_item = models.OneToOneField(WorkItem, on_delete=models.PROTECT, related_name="approval")
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="approval_requests")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    figures = models.JSONField(
        default=dict, blank=True, help_text="For credit holds, the exposure breakdown at request time."
    )
    policy = models.ForeignKey(ApprovalPolicy, on_delete=models.PROTECT, related_name="requests")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    requested_by_system = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=clock.now)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "kind"],
                condition=Q(status="pending"),
                name="approvalrequest_one_pending_per_order_kind",
            ),
            models.CheckConstraint(
                condition=Q(requested_by__isnull=False) | ~Q(requested_by_system=""),
                name="approvalrequest_has_requester",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for order {self.order_id}"

    @property
    def requested_by_label(self) -> str:
        return self.requested_by.get_username() if self.requested_by_id else self.requested_by_system


class ApprovalDecision(models.Model):
    class Decision(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"

    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="decisions")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    on_behalf_of = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The approver this person stood in for as a delegate.",
    )
    decision = models.CharField(max_length=8, choices=Decision.choices)
    comment = models.TextField(blank=True)
    policy = models.JSONField(help_text="The policy that applied: name, band, approvers, reject action.")
    at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["request", "at", "id"]
        constraints = [
            # Separation of duties, also in the database: one decision per person per request.
            models.UniqueConstraint(
                fields=["request", "approver"], name="approvaldecision_once_per_approver"
            ),
            models.UniqueConstraint(
                fields=["request", "on_behalf_of"],
                condition=Q(on_behalf_of__isnull=False),
                name="approvaldecision_once_per_delegator",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.decision} by {self.approver_id} on request {self.request_id}"


class DelegationQuerySet(QuerySet["Delegation"]):
    def in_force(self, day: date) -> "DelegationQuerySet":
        """The delegations whose days include ``day`` and that nobody has ended early."""
        return self.filter(starts_on__lte=day, ends_on__gte=day, ended_at__isnull=True)


class Delegation(models.Model):
    """An approver's stand-in for a range of days (both inclusive), unless ended early."""

    delegator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="delegations_given"
    )
    delegate = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="delegations_received"
    )
    starts_on = models.DateField()
    ends_on = models.DateField()
    reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_by_system = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    ended_by_system = models.CharField(max_length=32, blank=True)

    objects = DelegationQuerySet.as_manager()

    class Meta:
        ordering = ["-starts_on", "-id"]
        indexes = [
            models.Index(fields=["delegate", "starts_on", "ends_on"], name="delegation_delegate_window")
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_on__gte=F("starts_on")), name="delegation_window_ordered"
            ),
            models.CheckConstraint(condition=~Q(delegate=F("delegator")), name="delegation_not_to_self"),
        ]

    def __str__(self) -> str:
        return f"{self.delegator} → {self.delegate}, {self.starts_on} to {self.ends_on}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.starts_on and self.ends_on and self.ends_on < self.starts_on:
            errors["ends_on"] = "The delegation must end on or after the day it starts."
        if self.delegator_id is not None and self.delegator_id == self.delegate_id:
            errors["delegate"] = "Name someone other than yourself as delegate."
        if errors:
            raise ValidationError(errors)
