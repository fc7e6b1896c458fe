"""Bodies of the work-queue endpoints: queues, work items with their rank explanation,
history and comments, and the approval behind an approval item.

Response serializers render the selectors' rows (``portal.work_selectors.Row``: the item
with its explanation, order id and customer name) and the views' dataclasses; request
serializers check shapes only, the services decide the rest.
"""

from typing import Any

from django.contrib.auth.models import Group
from rest_framework import serializers

from approvals.models import ApprovalDecision, ApprovalRequest, Kind
from fulfillment.core.models import WorkItem

MAX_ID = 2**63 - 1
SLA_STATES = [("breached", "Past the SLA due time"), ("warned", "An SLA warning was given"), ("", "Neither")]


class LookupField(serializers.SlugRelatedField):
    """A related object named by a text key (slug, name, username). Text the key could
    never be (not a string, too long, a NUL character) is refused before any query."""

    def __init__(self, *, max_length: int, **kwargs: Any) -> None:
        self.max_length = max_length
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) or not data or len(data) > self.max_length or "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=str(data)[: self.max_length])
        return super().to_internal_value(data)


# --- queues ------------------------------------------------------------------------------


class QueueSerializer(serializers.Serializer):
    """A queue (annotated by ``work_selectors.queues_with_figures``) with its counts now."""

    slug = serializers.SlugField()
    name = serializers.CharField()
    team = serializers.CharField(source="team.name", help_text="The team (group) that works the queue.")
    description = serializers.CharField()
    warning_shares = serializers.ListField(
        child=serializers.IntegerField(), help_text="SLA shares (in %) at which to warn."
    )
    open = serializers.IntegerField(source="n_open", help_text="Open items.")
    unclaimed = serializers.IntegerField(
        source="n_unclaimed", help_text="Open items nobody holds and not snoozed: what claim-next hands out."
    )
    breached = serializers.IntegerField(source="n_breached", help_text="Open items past their SLA due time.")
    mine = serializers.IntegerField(source="n_mine", help_text="Open items you hold.")


class QueueWriteSerializer(serializers.Serializer):
    slug = serializers.SlugField(max_length=50, help_text="Fixed once created.")
    name = serializers.CharField(max_length=100)
    team = LookupField(
        max_length=150, slug_field="name", queryset=Group.objects.all(), help_text="The team (group) name."
    )
    description = serializers.CharField(allow_blank=True, required=False, max_length=4000)
    warning_shares = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=100),
        max_length=20,
        required=False,
        help_text="SLA shares (in %) at which to warn, e.g. [50, 75, 100].",
    )

    def validate_warning_shares(self, value: list[int]) -> list[int]:
        return sorted(set(value))


# --- work items ----------------------------------------------------------------------------


class RankFactorSerializer(serializers.Serializer):
    label = serializers.CharField()
    value = serializers.CharField()
    hours = serializers.FloatField(help_text="How many hours later a promise may be and still rank equal.")


class RankSerializer(serializers.Serializer):
    """Why the item ranks where it does (``work_selectors.Explanation``)."""

    factors = RankFactorSerializer(many=True)
    weight_hours = serializers.FloatField(help_text="The factors' hours added up.")
    promised_at = serializers.DateTimeField(allow_null=True)
    anchor = serializers.DateTimeField(help_text="The promised time, or the creation time without a promise.")
    ranks_like = serializers.DateTimeField(
        help_text="The promise of an item worth nothing that would rank the same (anchor minus weight)."
    )
    due = serializers.CharField(help_text="'due in 5 h', 'overdue 2 d', or empty without a promise.")
    overdue = serializers.BooleanField()
    summary = serializers.CharField(help_text="Every factor in one line.")


class WorkItemSerializer(serializers.Serializer):
    """A work item as the queue lists it (``work_selectors.Row``)."""

    id = serializers.IntegerField(source="item.pk")
    queue = serializers.CharField(source="item.queue.slug")
    kind = serializers.ChoiceField(source="item.kind", choices=WorkItem.Kind.choices)
    type = serializers.CharField(source="item.type")
    type_label = serializers.CharField()
    title = serializers.CharField(source="item.title")
    state = serializers.ChoiceField(source="item.state", choices=WorkItem.State.choices)
    order_id = serializers.IntegerField(allow_null=True, help_text="The order it is about, if any.")
    order = serializers.CharField(source="item.subject_ref", help_text="The order's external id, or empty.")
    customer_code = serializers.CharField(source="item.customer_code")
    customer_name = serializers.CharField()
    customer_tier = serializers.CharField(source="item.customer_tier")
    warehouse = serializers.CharField(source="item.warehouse_code")
    revenue_at_risk = serializers.DecimalField(source="item.revenue_at_risk", max_digits=14, decimal_places=2)
    severity = serializers.IntegerField(source="item.severity")
    escalation_level = serializers.IntegerField(source="item.escalation_level")
    priority_key = serializers.IntegerField(
        source="item.priority_key", help_text="The stored rank: higher comes first, ties by age."
    )
    rank = RankSerializer(source="why")
    assignee = serializers.CharField(source="item.assignee.username", allow_null=True)
    claimed_at = serializers.DateTimeField(source="item.claimed_at", allow_null=True)
    snoozed_until = serializers.DateTimeField(source="item.snoozed_until", allow_null=True)
    sla_minutes = serializers.IntegerField(source="item.sla_minutes", allow_null=True)
    sla_due_at = serializers.DateTimeField(source="item.sla_due_at", allow_null=True)
    sla_state = serializers.ChoiceField(source="sla", choices=SLA_STATES)
    created_at = serializers.DateTimeField(source="item.created_at")
    resolved_at = serializers.DateTimeField(source="item.resolved_at", allow_null=True)
    resolved_by = serializers.CharField(source="item.resolved_by.username", allow_null=True)
    resolution_code = serializers.CharField(source="item.resolution_code")
    resolution_note = serializers.CharField(source="item.resolution_note")


class EventSerializer(serializers.Serializer):
    """One entry of an item's history."""

    id = serializers.IntegerField()
    action = serializers.CharField(help_text="opened, claimed, released, comment, escalated, resolved, …")
    actor = serializers.SerializerMethodField(help_text="User name, or the system that did it.")
    note = serializers.CharField()
    data = serializers.JSONField()
    at = serializers.DateTimeField()

    def get_actor(self, event: Any) -> str:
        return event.actor_user.get_username() if event.actor_user_id else event.actor_system


class ExceptionSerializer(serializers.Serializer):
    type = serializers.CharField(source="type.code")
    type_name = serializers.CharField(source="type.name")
    reason_codes = serializers.ListField(
        source="type.reason_codes", child=serializers.CharField(), help_text="What /resolve/ accepts."
    )
    details = serializers.JSONField()
    occurrences = serializers.IntegerField(help_text="Signals received about the same problem.")
    last_signal_at = serializers.DateTimeField()


class PolicyRefSerializer(serializers.Serializer):
    name = serializers.CharField()
    band = serializers.CharField()
    approvers_required = serializers.IntegerField()
    approver_group = serializers.CharField(source="approver_group.name")
    reject_action = serializers.CharField()


class DecisionSerializer(serializers.Serializer):
    approver = serializers.CharField(source="approver.username")
    on_behalf_of = serializers.CharField(
        source="on_behalf_of.username", allow_null=True, help_text="The approver a delegate stood in for."
    )
    decision = serializers.ChoiceField(choices=ApprovalDecision.Decision.choices)
    comment = serializers.CharField()
    at = serializers.DateTimeField()


class ApprovalSerializer(serializers.Serializer):
    """The approval request behind an approval item (``workqueues.ApprovalView``)."""

    id = serializers.IntegerField(source="request.pk")
    kind = serializers.ChoiceField(source="request.kind", choices=Kind.choices)
    amount = serializers.DecimalField(source="request.amount", max_digits=14, decimal_places=2)
    status = serializers.ChoiceField(source="request.status", choices=ApprovalRequest.Status.choices)
    requested_by = serializers.CharField(source="request.requested_by_label")
    figures = serializers.JSONField(source="request.figures")
    policy = PolicyRefSerializer(source="request.policy")
    decisions = DecisionSerializer(many=True)
    order_status = serializers.CharField(help_text="The order's status now.")


class WorkItemDetailSerializer(WorkItemSerializer):
    """A work item with its history and what it is about (``workqueues.ItemView``)."""

    exception = ExceptionSerializer(allow_null=True, help_text="For exceptions.")
    approval = ApprovalSerializer(
        allow_null=True, help_text="For approvals: decide with /approve/ or /reject/."
    )
    history = EventSerializer(many=True, help_text="Oldest first.")


class ResolveSerializer(serializers.Serializer):
    reason_code = serializers.CharField(max_length=40, help_text="One of the exception type's reason codes.")
    note = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class CommentInputSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=4000)


class DecisionInputSerializer(serializers.Serializer):
    comment = serializers.CharField(
        max_length=2000, required=False, default="", allow_blank=True, help_text="Required to reject."
    )
