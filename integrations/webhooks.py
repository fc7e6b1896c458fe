"""Inbound webhooks from the WMS and carriers: verify, validate, store, acknowledge.

Applying events is background work (``integrations.inbound.apply_pending``, woken by
``kick_apply_for`` once an event commits); this endpoint only makes sure the event is
authentic, well-formed and stored once. The event's data is stored as validated
(normalized, unknown keys dropped), and the apply reads it back through the same schema.
"""

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.utils.dateparse import parse_datetime
from django_q.tasks import async_task
from rest_framework import serializers

from fulfillment.core import clock
from fulfillment.core.errors import InvalidInput
from fulfillment.core.problems import problem_response
from integrations.models import InboundEvent, Partner, PartnerSecret
from integrations.signatures import SignatureError, verify
from orders.models import Shipment

log = logging.getLogger(__name__)

APPLY_TASK = "integrations.tasks.apply_pending_events"
# A new event rides on the kick of an earlier one still pending that was received this
# recently; an older pending event (its kick may have been lost) does not count.
KICK_COALESCE = timedelta(seconds=2)
# An apply run reads again until it has tried no event for this long, so a new event also
# rides on a run that applied one within half of it (the other half for the clocks of the
# web and worker machines to differ).
APPLY_LINGER = timedelta(seconds=1)
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


class Invalid(Exception):
    def __init__(self, errors: Any) -> None:
        super().__init__(errors)
        self.errors = errors


# One instance of each schema, shared by every request: a serializer builds its fields
# (deep copies of the declared ones) per instance, which cost more than validating an
# event. ``run_validation`` and ``to_representation`` keep no state on the instance.
_ENVELOPE = Envelope()
_SCHEMAS = {
    (partner, event_type): schema()
    for partner, types in EVENT_TYPES.items()
    for event_type, schema in types.items()
}


def _validated(schema: serializers.Serializer, data: Any) -> dict[str, Any]:
    """``data`` through ``schema``: its typed values, or ``Invalid`` with DRF's errors."""
    try:
        return schema.run_validation(data)
    except serializers.ValidationError as exc:
        raise Invalid(exc.detail) from exc


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
    try:
        return dict(_validated(_SCHEMAS[(partner, event_type)], data))
    except Invalid as invalid:
        raise InvalidInput(
            f"The data of '{event_type}' is not valid.", fields=_flatten(invalid.errors, "data")
        ) from invalid


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


@dataclass(frozen=True)
class _Event:
    """An event as it will be stored: validated, its data normalized."""

    event_id: str
    type: str
    occurred_at: datetime
    data: dict[str, Any]
    subject_ref: str


class _Refused(Exception):
    """A body that is not an event we take, and the problem to answer it with."""

    def __init__(self, **problem: Any) -> None:
        super().__init__(problem["code"])
        self.problem = problem


def receive(request: HttpRequest, partner_name: str) -> JsonResponse:
    """Authenticate, validate and store one webhook; 202 once it is durable."""
    try:
        body = request.body
    except RequestDataTooBig:
        return problem_response(
            status=413, code="body_too_large", title="Body too large",
            detail=f"An event body may have at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
        )  # fmt: skip
    now = clock.now()
    header = request.headers.get("X-Signature")
    signed_with = partial(_signed_with, partner_name, header, body, now.timestamp())
    try:
        secret = signed_with()
        try:
            event = _read_event(partner_name, body)
        except _Refused as refused:
            if not _is_active(partner_name, secret):
                signed_with(fresh=True)  # deactivated since it was read: refused unless another one signed
            return problem_response(**refused.problem)
        while (event_pk := _store(partner_name, secret, event, received_at=now)) is None:
            if _is_active(partner_name, secret):
                return JsonResponse({"id": event.event_id, "status": "duplicate"}, status=202)
            secret = signed_with(fresh=True)
    except SignatureError as exc:
        return problem_response(status=401, code=exc.code, title="Signature rejected", detail=exc.message)
    transaction.on_commit(partial(kick_apply_for, event_pk))
    return JsonResponse({"id": event.event_id, "status": "accepted"}, status=202)


def _read_event(partner_name: str, body: bytes) -> _Event:
    """The event in ``body``; ``_Refused`` with what is wrong with it."""
    try:
        document = _parse_json(body)
    except (ValueError, RecursionError) as exc:
        raise _Refused(
            status=400, code="malformed_json", title="Malformed JSON", detail=f"The body is not JSON: {exc}"
        ) from exc
    try:
        if not isinstance(document, dict):
            raise Invalid(None)
        envelope = _validated(_ENVELOPE, document)
    except Invalid as invalid:
        raise _Refused(
            status=422, code="invalid_envelope", title="Invalid event",
            detail='An event is a JSON object {"id", "type", "occurred_at", "data": {...}}.',
            fields=_flatten(invalid.errors, "") if invalid.errors else None,
        ) from invalid  # fmt: skip
    event_type = envelope["type"]
    schema = _SCHEMAS.get((partner_name, event_type))
    if schema is None:
        known = ", ".join(sorted(EVENT_TYPES[partner_name]))
        raise _Refused(
            status=422, code="unknown_event_type", title="Unknown event type",
            detail=f"'{event_type}' is not an event type of {partner_name}; known types: {known}.",
        )  # fmt: skip
    try:
        data = _validated(schema, envelope["data"])
    except Invalid as invalid:
        raise _Refused(
            status=422, code="invalid_event_data", title="Invalid event data",
            detail=f"The data of '{event_type}' is not valid.", fields=_flatten(invalid.errors, "data"),
        ) from invalid  # fmt: skip
    return _Event(
        event_id=envelope["id"],
        type=event_type,
        occurred_at=envelope["occurred_at"],
        data=schema.to_representation(data),
        subject_ref=_subject_ref(event_type, data),
    )


# Each process keeps the partners' active secrets as it last read them, and reads them
# again when a signature matches none of them (a secret added since). A secret
# deactivated since counts no more: the insert takes an event only while the secret that
# signed it is active, and a refusal looks before it answers.
_secrets: dict[str, list[str]] = {}


def _signed_with(
    partner_name: str, header: str | None, body: bytes, now: float, *, fresh: bool = False
) -> str:
    """The partner's active secret that signed ``body``; ``SignatureError`` when none did."""
    known = None if fresh else _secrets.get(partner_name)
    if known is not None:
        try:
            return verify(header, body, known, now)
        except SignatureError as exc:
            if exc.code != "signature_invalid":
                raise
    _secrets[partner_name] = current = _active_secrets(partner_name)
    return verify(header, body, current, now)


# The intake's statements in SQL: the ORM took longer to build each of them than the
# database took to run it, and it has no insert that takes a row only while a condition
# holds and skips a duplicate, all in one statement.
_TABLE = InboundEvent._meta.db_table
_PARTNER_SECRETS = f"""
    {PartnerSecret._meta.db_table} s JOIN {Partner._meta.db_table} p ON p.id = s.partner_id
    WHERE p.name = %s AND s.is_active
"""
_SECRETS_SQL = f"SELECT s.secret FROM {_PARTNER_SECRETS}"
_IS_ACTIVE_SQL = f"SELECT 1 FROM {_PARTNER_SECRETS} AND s.secret = %s"
_STORE_SQL = f"""
    INSERT INTO {_TABLE}
        (partner_id, event_id, type, occurred_at, data, subject_ref, state, attempts, last_error, received_at)
    SELECT s.partner_id, %s, %s, %s, %s, %s, %s, 0, '', %s
    FROM {_PARTNER_SECRETS} AND s.secret = %s
    LIMIT 1
    ON CONFLICT (partner_id, event_id) DO NOTHING
    RETURNING id
"""
# The second look walks the newest events (ORDER BY the index's order, so that stale
# statistics cannot turn it into a scan of the table).
_RIDE_SQL = f"""
    SELECT EXISTS (SELECT 1 FROM {_TABLE} WHERE id < %s AND state = %s AND received_at >= %s)
        OR (SELECT 1 FROM {_TABLE} WHERE received_at >= %s AND attempts = 1 AND applied_at >= %s
            ORDER BY received_at DESC, id DESC LIMIT 1) IS NOT NULL
"""


def _active_secrets(partner_name: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(_SECRETS_SQL, [partner_name])
        return [secret for (secret,) in cursor.fetchall()]


def _is_active(partner_name: str, secret: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(_IS_ACTIVE_SQL, [partner_name, secret])
        return cursor.fetchone() is not None


def _store(partner_name: str, secret: str, event: _Event, *, received_at: datetime) -> int | None:
    """Insert the event, once per partner and event id, if ``secret`` is still an active
    secret of the partner: the new row's id, else None (an event stored before, or the
    secret deactivated)."""
    field = InboundEvent._meta.get_field
    values = [
        event.event_id,
        event.type,
        field("occurred_at").get_db_prep_save(event.occurred_at, connection),
        field("data").get_db_prep_save(event.data, connection),
        event.subject_ref,
        InboundEvent.State.PENDING,
        field("received_at").get_db_prep_save(received_at, connection),
        partner_name,
        secret,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_STORE_SQL, values)
        row = cursor.fetchone()
    return row[0] if row else None


def kick_apply_for(event_pk: int) -> None:
    """Wake the apply for a committed event, unless a run is bound to take it: the run
    woken for an earlier new event still pending, or a run at work, which applied a new
    event just now (a run reads again until it has tried none for ``APPLY_LINGER``). So
    a burst or a steady stream of events costs a task now and then, not one per event.

    Earlier by id, so that of several events committed together the first one kicks.
    """
    now = clock.now()
    moment = InboundEvent._meta.get_field("received_at").get_db_prep_save
    received = moment(now - KICK_COALESCE, connection)
    tried = moment(now - APPLY_LINGER / 2, connection)
    with connection.cursor() as cursor:
        cursor.execute(_RIDE_SQL, [event_pk, InboundEvent.State.PENDING, received, received, tried])
        (rides,) = cursor.fetchone()
    if not rides:
        kick_apply()


def kick_apply() -> None:
    """Wake the apply now. The events are durable already: if the broker is down, the
    periodic sweep (``retry_deferred``) applies them later, so the partner still gets
    its 202 instead of retrying an event we have."""
    try:
        async_task(APPLY_TASK, task_name="inbound-apply")
    except Exception:
        log.exception("Could not enqueue the apply of inbound events; the sweep will apply them.")
