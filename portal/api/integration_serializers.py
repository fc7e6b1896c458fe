"""Bodies of the integration endpoints: outbox messages with their delivery attempts and
operator actions, inbound events, and the operator's requests."""

from rest_framework import serializers

from fulfillment.core.models import OutboxMessage
from integrations.models import InboundEvent, OutboxAction
from integrations.services import NOTE_MAX
from portal.api.work_serializers import MAX_ID

BULK_MAX = 200


class OutboxMessageSerializer(serializers.ModelSerializer):
    """A message as listed (its payload and the answer are in the detail)."""

    order = serializers.CharField(source="subject_ref", help_text="The order's external id, or empty.")
    order_id = serializers.IntegerField(
        allow_null=True, help_text="The order's id, when the portal knows it."
    )

    class Meta:
        model = OutboxMessage
        fields = [
            "id", "endpoint", "topic", "state", "order", "order_id", "idempotency_key", "attempts",
            "next_attempt_at", "last_error", "created_at", "delivered_at",
        ]  # fmt: skip
        read_only_fields = fields


class DeliveryAttemptSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True, help_text="None: no answer (timeout, refused).")
    latency_ms = serializers.IntegerField()
    succeeded = serializers.BooleanField()
    error = serializers.CharField()


class OutboxActionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=OutboxAction.Action.choices)
    actor = serializers.CharField(source="actor.username")
    note = serializers.CharField()
    at = serializers.DateTimeField()


class OutboxMessageDetailSerializer(serializers.Serializer):
    """A message with what was sent, every attempt and the operators' actions
    (``integrations.selectors.MessageDetail``)."""

    id = serializers.IntegerField(source="message.pk")
    endpoint = serializers.CharField(source="message.endpoint")
    topic = serializers.CharField(source="message.topic")
    state = serializers.ChoiceField(source="message.state", choices=OutboxMessage.State.choices)
    order = serializers.CharField(source="message.subject_ref")
    order_id = serializers.IntegerField(allow_null=True)
    idempotency_key = serializers.CharField(source="message.idempotency_key")
    payload = serializers.JSONField(source="message.payload")
    response = serializers.JSONField(source="message.response", allow_null=True)
    attempts = serializers.IntegerField(source="message.attempts")
    next_attempt_at = serializers.DateTimeField(source="message.next_attempt_at")
    lease_until = serializers.DateTimeField(source="message.lease_until", allow_null=True)
    last_error = serializers.CharField(source="message.last_error")
    created_at = serializers.DateTimeField(source="message.created_at")
    delivered_at = serializers.DateTimeField(source="message.delivered_at", allow_null=True)
    delivery_attempts = DeliveryAttemptSerializer(source="attempts", many=True, help_text="Oldest first.")
    actions = OutboxActionSerializer(many=True, help_text="Replays and hand-handling, oldest first.")


class InboundEventSerializer(serializers.ModelSerializer):
    partner = serializers.CharField(source="partner.name")
    order = serializers.CharField(source="subject_ref", help_text="The order's external id, or empty.")
    order_id = serializers.IntegerField(
        allow_null=True, help_text="The order's id, when the portal knows it."
    )

    class Meta:
        model = InboundEvent
        fields = [
            "id", "partner", "event_id", "type", "state", "order", "order_id", "occurred_at", "attempts",
            "last_error", "received_at", "applied_at",
        ]  # fmt: skip
        read_only_fields = fields


class InboundEventDetailSerializer(serializers.Serializer):
    """An event with its data (``integrations.selectors.EventDetail``)."""

    id = serializers.IntegerField(source="event.pk")
    partner = serializers.CharField(source="event.partner.name")
    event_id = serializers.CharField(source="event.event_id")
    type = serializers.CharField(source="event.type")
    state = serializers.ChoiceField(source="event.state", choices=InboundEvent.State.choices)
    order = serializers.CharField(source="event.subject_ref")
    order_id = serializers.IntegerField(allow_null=True)
    occurred_at = serializers.DateTimeField(source="event.occurred_at")
    data = serializers.JSONField(source="event.data")
    attempts = serializers.IntegerField(source="event.attempts")
    last_error = serializers.CharField(source="event.last_error")
    received_at = serializers.DateTimeField(source="event.received_at")
    applied_at = serializers.DateTimeField(source="event.applied_at", allow_null=True)


class NoteSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=NOTE_MAX, required=False, default="", allow_blank=True)


class HandledSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=NOTE_MAX, help_text="What was done by hand.")


class ReplayManySerializer(serializers.Serializer):
    messages = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        min_length=1,
        max_length=BULK_MAX,
        help_text="Ids of dead letters.",
    )
    note = serializers.CharField(max_length=NOTE_MAX, required=False, default="", allow_blank=True)


class RefusalSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    detail = serializers.CharField()


class ReplayReportSerializer(serializers.Serializer):
    replayed = serializers.ListField(child=serializers.IntegerField(), help_text="Pending again, due now.")
    refused = RefusalSerializer(many=True, help_text="Unknown, or not dead letters; unchanged.")
