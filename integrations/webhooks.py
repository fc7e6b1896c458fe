"""Inbound webhooks from the WMS and carriers: verify, validate, store, acknowledge.

Applying the event is a background task (``integrations.tasks.apply_inbound_event``);
this endpoint only makes sure the event is authentic, well-formed and stored once.
"""

import json
import time

from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django_q.tasks import async_task
from rest_framework import serializers

from fulfillment.core import clock
from fulfillment.core.problems import problem_response
from integrations.models import InboundEvent, Partner
from integrations.signatures import SignatureError, verify


class SkuQuantity(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1)


class SkuPicked(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    picked = serializers.IntegerField(min_value=0)


class InventoryAdjusted(serializers.Serializer):
    warehouse = serializers.CharField(max_length=16)
    sku = serializers.CharField(max_length=64)
    on_hand = serializers.IntegerField(min_value=0)


class PickCompleted(serializers.Serializer):
    order = serializers.CharField(max_length=64)
    warehouse = serializers.CharField(max_length=16)
    lines = SkuPicked(many=True, allow_empty=False)


class ShipmentConfirmed(serializers.Serializer):
    order = serializers.CharField(max_length=64)
    shipment_id = serializers.CharField(max_length=64)
    warehouse = serializers.CharField(max_length=16)
    carrier = serializers.CharField(max_length=16)
    tracking = serializers.CharField(max_length=64)
    lines = SkuQuantity(many=True, allow_empty=False)


class DeliveryConfirmed(serializers.Serializer):
    order = serializers.CharField(max_length=64)
    shipment_id = serializers.CharField(max_length=64)
    delivered_at = serializers.DateTimeField()
    signed_by = serializers.CharField(max_length=200, allow_blank=True)


class ReturnInitiated(serializers.Serializer):
    order = serializers.CharField(max_length=64)
    lines = SkuQuantity(many=True, allow_empty=False)
    reason = serializers.CharField(max_length=500, allow_blank=True)


class TrackingUpdated(serializers.Serializer):
    tracking = serializers.CharField(max_length=64)
    status = serializers.ChoiceField(
        choices=["booked", "picked_up", "in_transit", "out_for_delivery", "delivered", "exception", "failed"]
    )
    eta = serializers.DateTimeField(required=False, allow_null=True)


EVENT_TYPES: dict[str, dict[str, type[serializers.Serializer]]] = {
    "wms": {
        "inventory.adjusted": InventoryAdjusted,
        "pick.completed": PickCompleted,
        "shipment.confirmed": ShipmentConfirmed,
        "delivery.confirmed": DeliveryConfirmed,
        "return.initiated": ReturnInitiated,
    },
    "carrier": {"tracking.updated": TrackingUpdated},
}


class Envelope(serializers.Serializer):
    id = serializers.CharField(max_length=100)
    type = serializers.CharField(max_length=40)
    occurred_at = serializers.DateTimeField()
    data = serializers.DictField()


def receive(request: HttpRequest, partner_name: str) -> JsonResponse:
    """Authenticate, validate and store one webhook; 202 once it is durable."""
    partner = Partner.objects.filter(name=partner_name).first()
    secrets = list(partner.secrets.filter(is_active=True).values_list("secret", flat=True)) if partner else []
    body = request.body
    try:
        verify(request.headers.get("X-Signature"), body, secrets, now=time.time())
    except SignatureError as exc:
        return problem_response(status=401, code=exc.code, title="Signature rejected", detail=exc.message)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return problem_response(
            status=400, code="malformed_json", title="Malformed JSON", detail=f"The body is not JSON: {exc}"
        )
    envelope = Envelope(data=document) if isinstance(document, dict) else None
    if envelope is None or not envelope.is_valid():
        return problem_response(
            status=422, code="invalid_envelope", title="Invalid event",
            detail='An event is {"id", "type", "occurred_at", "data": {...}}.',
            fields=envelope.errors if envelope else None,
        )  # fmt: skip
    event_type = envelope.validated_data["type"]
    schema = EVENT_TYPES[partner_name].get(event_type)
    if schema is None:
        known = ", ".join(sorted(EVENT_TYPES[partner_name]))
        return problem_response(
            status=422, code="unknown_event_type", title="Unknown event type",
            detail=f"'{event_type}' is not an event type of {partner_name}; known types: {known}.",
        )  # fmt: skip
    data = schema(data=envelope.validated_data["data"])
    if not data.is_valid():
        return problem_response(
            status=422, code="invalid_event_data", title="Invalid event data",
            detail=f"The data of '{event_type}' is not valid.", fields=data.errors,
        )  # fmt: skip
    event_id = envelope.validated_data["id"]
    raw = envelope.validated_data["data"]
    try:
        with transaction.atomic():
            event = InboundEvent.objects.create(
                partner=partner,
                event_id=event_id,
                type=event_type,
                occurred_at=envelope.validated_data["occurred_at"],
                data=raw,
                subject_ref=str(raw.get("order") or raw.get("tracking") or raw.get("sku") or ""),
                received_at=clock.now(),
            )
            transaction.on_commit(lambda: _enqueue(event.pk))
    except IntegrityError:
        return JsonResponse({"id": event_id, "status": "duplicate"}, status=202)
    return JsonResponse({"id": event_id, "status": "accepted"}, status=202)


def _enqueue(event_pk: int) -> None:
    async_task("integrations.tasks.apply_inbound_event", event_pk, task_name=f"inbound-{event_pk}")
