"""Inbound webhooks from the WMS and carriers: verify, validate, store, acknowledge.

Applying the event is a background task (``integrations.tasks.apply_inbound_event``);
this endpoint only makes sure the event is authentic, well-formed and stored once. The
event's data is stored as validated (normalized, unknown keys dropped), and the task
reads it back through the same schema.
"""

import json
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils.dateparse import parse_datetime
from django_q.tasks import async_task
from rest_framework import serializers

from fulfillment.core import clock
from fulfillment.core.errors import InvalidInput
from fulfillment.core.problems import problem_response
from integrations.models import InboundEvent, Partner
from integrations.signatures import SignatureError, verify
from orders.models import Shipment

log = logging.getLogger(__name__)

APPLY_TASK = "integrations.tasks.apply_inbound_event"
MAX_QUANTITY = 2_147_483_647  # what the stock and order columns hold on every database
MAX_LINES = 500


class Text(serializers.CharField):
    """A JSON string; a number or a boolean is not silently turned into one."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class Count(serializers.IntegerField):
    """A JSON whole number: not a string, a boolean or a float."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_value=MAX_QUANTITY, **kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class Moment(serializers.DateTimeField):
    """ISO 8601 with a UTC offset: a time without one is ambiguous, and events are ordered by it."""

    default_error_messages = {
        "invalid": "Give an ISO 8601 date and time with a UTC offset, e.g. 2026-03-02T09:00:00Z.",
        "naive": "Give a UTC offset (Z or +hh:mm): without one the time is ambiguous.",
    }

    def to_internal_value(self, value: Any) -> Any:
        if not isinstance(value, str):
            self.fail("invalid")
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
        if parsed is None:
            self.fail("invalid")
        if parsed.tzinfo is None:
            self.fail("naive")
        return super().to_internal_value(value)


def _one_line_per_sku(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    skus = [line["sku"] for line in lines]
    if len(set(skus)) != len(skus):
        raise serializers.ValidationError("Give each SKU on one line.")
    return lines


class SkuQuantity(serializers.Serializer):
    sku = Text(max_length=64)
    quantity = Count(min_value=1)


class SkuPicked(serializers.Serializer):
    sku = Text(max_length=64)
    picked = Count(min_value=0)


class InventoryAdjusted(serializers.Serializer):
    warehouse = Text(max_length=16)
    sku = Text(max_length=64)
    on_hand = Count(min_value=0)


class PickCompleted(serializers.Serializer):
    order = Text(max_length=64)
    warehouse = Text(max_length=16)
    lines = SkuPicked(many=True, allow_empty=False, max_length=MAX_LINES)

    def validate_lines(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _one_line_per_sku(lines)


class ShipmentConfirmed(serializers.Serializer):
    order = Text(max_length=64)
    shipment_id = Text(max_length=64)
    warehouse = Text(max_length=16)
    carrier = Text(max_length=16)
    tracking = Text(max_length=64)
    lines = SkuQuantity(many=True, allow_empty=False, max_length=MAX_LINES)

    def validate_lines(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _one_line_per_sku(lines)


class DeliveryConfirmed(serializers.Serializer):
    order = Text(max_length=64)
    shipment_id = Text(max_length=64)
    delivered_at = Moment()
    signed_by = Text(max_length=200, allow_blank=True)


class ReturnInitiated(serializers.Serializer):
    order = Text(max_length=64)
    lines = SkuQuantity(many=True, allow_empty=False, max_length=MAX_LINES)
    reason = Text(max_length=500, allow_blank=True)

    def validate_lines(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _one_line_per_sku(lines)


class TrackingUpdated(serializers.Serializer):
    tracking = Text(max_length=64)
    status = serializers.ChoiceField(
        choices=["booked", "picked_up", "in_transit", "out_for_delivery", "delivered", "exception", "failed"]
    )
    eta = Moment(required=False, allow_null=True)


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
    id = Text(max_length=100)
    type = Text(max_length=40)
    occurred_at = Moment()
    data = serializers.DictField()


def _flatten(errors: Any, path: str) -> dict[str, list[str]]:
    """DRF's nested errors as ``{"data.lines.0.quantity": ["…"]}``."""
    if isinstance(errors, dict):
        flat: dict[str, list[str]] = {}
        for key, value in errors.items():
            inner = path if key == serializers.api_settings.NON_FIELD_ERRORS_KEY else f"{path}.{key}"
            flat.update(_flatten(value, inner.lstrip(".")))
        return flat
    if isinstance(errors, list) and all(isinstance(error, str) for error in errors):
        return {path: [str(error) for error in errors]} if errors else {}
    if isinstance(errors, list):  # one entry per item of a list
        flat = {}
        for index, value in enumerate(errors):
            flat.update(_flatten(value, f"{path}.{index}"))
        return flat
    return {path: [str(errors)]}


def event_data(partner: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The event's data checked against its type's schema, with typed values (datetimes);
    raises ``InvalidInput`` with per-field errors."""
    schema = EVENT_TYPES[partner][event_type](data=data)
    if not schema.is_valid():
        raise InvalidInput(
            f"The data of '{event_type}' is not valid.", fields=_flatten(schema.errors, "data")
        )
    return dict(schema.validated_data)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(body: bytes) -> Any:
    """Strict JSON: no NaN or Infinity, and only text that the database can store."""
    document = json.loads(body, parse_constant=_no_constant)
    json.dumps(document, ensure_ascii=False).encode()  # lone surrogates cannot be stored
    return document


def _subject_ref(event_type: str, data: dict[str, Any]) -> str:
    """What the event is about, for finding the events of an order: its order, else (for
    tracking) the order of the shipment when it is known, else the tracking number or SKU."""
    if "order" in data:
        return data["order"]
    if event_type == "tracking.updated":
        shipments = Shipment.objects.filter(tracking=data["tracking"])
        order_ref = shipments.values_list("order__external_id", flat=True).first()
        return order_ref or data["tracking"]
    return data["sku"]


def receive(request: HttpRequest, partner_name: str) -> JsonResponse:
    """Authenticate, validate and store one webhook; 202 once it is durable."""
    try:
        body = request.body
    except RequestDataTooBig:
        return problem_response(
            status=413, code="body_too_large", title="Body too large",
            detail=f"An event body may have at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
        )  # fmt: skip
    partner = Partner.objects.filter(name=partner_name).first()
    secrets = list(partner.secrets.filter(is_active=True).values_list("secret", flat=True)) if partner else []
    try:
        verify(request.headers.get("X-Signature"), body, secrets, now=clock.now().timestamp())
    except SignatureError as exc:
        return problem_response(status=401, code=exc.code, title="Signature rejected", detail=exc.message)
    try:
        document = _parse_json(body)
    except (ValueError, RecursionError) as exc:
        return problem_response(
            status=400, code="malformed_json", title="Malformed JSON", detail=f"The body is not JSON: {exc}"
        )
    envelope = Envelope(data=document) if isinstance(document, dict) else None
    if envelope is None or not envelope.is_valid():
        return problem_response(
            status=422, code="invalid_envelope", title="Invalid event",
            detail='An event is a JSON object {"id", "type", "occurred_at", "data": {...}}.',
            fields=_flatten(envelope.errors, "") if envelope else None,
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
            detail=f"The data of '{event_type}' is not valid.", fields=_flatten(data.errors, "data"),
        )  # fmt: skip
    event_id = envelope.validated_data["id"]
    try:
        with transaction.atomic():
            event = InboundEvent.objects.create(
                partner=partner,
                event_id=event_id,
                type=event_type,
                occurred_at=envelope.validated_data["occurred_at"],
                data=data.data,
                subject_ref=_subject_ref(event_type, data.validated_data),
                received_at=clock.now(),
            )
            transaction.on_commit(lambda: _enqueue(event.pk))
    except IntegrityError:
        return JsonResponse({"id": event_id, "status": "duplicate"}, status=202)
    return JsonResponse({"id": event_id, "status": "accepted"}, status=202)


def _enqueue(event_pk: int) -> None:
    """Hand the stored event to a worker. The event is durable already: if the broker is
    down, the periodic sweep (``retry_deferred``) applies it later, so the partner still
    gets its 202 instead of retrying an event we have."""
    try:
        async_task(APPLY_TASK, event_pk, task_name=f"inbound-{event_pk}")
    except Exception:
        log.exception("Could not enqueue inbound event %s; the sweep will apply it.", event_pk)
