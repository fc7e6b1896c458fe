"""Bodies of the admin endpoints: escalation rules and approval policies.

The request serializers check types and sizes; whether a definition makes sense (an
action, a band that overlaps no other, a unique name, …) is decided by
``fulfillment.core.escalation.rule_validate`` and ``approvals.services.approval_policy_save``,
whose field errors come back as 422 like these.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework import serializers

from approvals.models import ApprovalPolicy, Kind
from fulfillment.core.models import EscalationRule, Queue, WorkItem
from orders.models import Tier
from portal.api.work_serializers import LookupField, WorkItemSerializer

MONEY = {"max_digits": 14, "decimal_places": 2, "min_value": 0}
MAX_INT = 2**31 - 1


# --- escalation rules ----------------------------------------------------------------------


class EscalationRuleSerializer(serializers.ModelSerializer):
    queue = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True, help_text="null: every queue."
    )
    move_to = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    notify_user = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    kind = serializers.ChoiceField(
        choices=WorkItem.Kind.choices, allow_blank=True, read_only=True, help_text="Empty: every kind."
    )

    class Meta:
        model = EscalationRule
        fields = [
            "id", "name", "is_active", "queue", "kind", "type", "customer_tier", "min_revenue", "max_revenue",
            "trigger", "trigger_value", "raise_level", "move_to", "notify", "notify_user", "created_at",
            "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class RuleDefinitionSerializer(serializers.Serializer):
    """What a rule matches, when it triggers and what it does (``escalation.RULE_FIELDS``)."""

    name = serializers.CharField(max_length=100)
    is_active = serializers.BooleanField(default=True)
    queue = LookupField(
        max_length=50,
        slug_field="slug",
        queryset=Queue.objects.all(),
        allow_null=True,
        default=None,
        help_text="Queue slug; null: every queue.",
    )
    kind = serializers.ChoiceField(
        choices=WorkItem.Kind.choices, allow_blank=True, default="", help_text="Empty: every kind."
    )
    type = serializers.CharField(max_length=40, allow_blank=True, default="", help_text="Empty: every type.")
    customer_tier = serializers.ChoiceField(
        choices=Tier.choices, allow_blank=True, default="", help_text="Empty: every tier."
    )
    min_revenue = serializers.DecimalField(**MONEY, allow_null=True, default=None)
    max_revenue = serializers.DecimalField(**MONEY, allow_null=True, default=None)
    trigger = serializers.ChoiceField(choices=EscalationRule.Trigger.choices)
    trigger_value = serializers.IntegerField(
        min_value=0,
        max_value=MAX_INT,
        default=0,
        help_text="Minutes (unclaimed_for), % (sla_share) or hours (promised_within).",
    )
    raise_level = serializers.BooleanField(default=True)
    move_to = LookupField(
        max_length=50, slug_field="slug", queryset=Queue.objects.all(), allow_null=True, default=None
    )
    notify = serializers.ChoiceField(choices=EscalationRule.Notify.choices, allow_blank=True, default="")
    notify_user = LookupField(
        max_length=150,
        slug_field="username",
        queryset=get_user_model().objects.filter(is_active=True),
        allow_null=True,
        default=None,
        help_text="Username, when notify is 'user'.",
    )


class RulePreviewInputSerializer(RuleDefinitionSerializer):
    name = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)


class RulePreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Open items the rule would fire on now.")
    items = WorkItemSerializer(many=True, help_text="The first of them in queue order.")


# --- approval policies ---------------------------------------------------------------------


class ApprovalPolicySerializer(serializers.ModelSerializer):
    approver_group = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = ApprovalPolicy
        fields = [
            "id", "kind", "name", "min_amount", "max_amount", "band", "approvers_required", "approver_group",
            "reject_action", "sla_minutes", "is_active",
        ]  # fmt: skip
        read_only_fields = fields


class ApprovalPolicyWriteSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Kind.choices)
    name = serializers.CharField(max_length=100)
    min_amount = serializers.DecimalField(**MONEY, default="0.00", help_text="The band from (inclusive).")
    max_amount = serializers.DecimalField(
        **MONEY, allow_null=True, default=None, help_text="The band to (inclusive); null: no upper bound."
    )
    approvers_required = serializers.ChoiceField(choices=[1, 2], default=1)
    approver_group = LookupField(
        max_length=150,
        slug_field="name",
        queryset=Group.objects.all(),
        required=False,
        help_text="The group whose members decide; finance when not given.",
    )
    reject_action = serializers.ChoiceField(choices=ApprovalPolicy.RejectAction.choices)
    sla_minutes = serializers.IntegerField(min_value=1, max_value=MAX_INT, default=240)
    is_active = serializers.BooleanField(default=True)
