"""The outbox relay: claims due messages, sends them, records every attempt.

A claim is a short lease (``state=sending``, ``lease_until``) taken with SKIP LOCKED on
PostgreSQL, so two relays never send the same message at once, and a relay that dies
mid-delivery only delays the message until the lease ends. Receivers de-duplicate by
the idempotency key, so a message resent after such a crash is applied once.
"""

import random
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q

from exceptions import services as exception_services
from flows import fulfilment as flows
from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.models import OutboxMessage
from integrations.adapters import SENDERS, Reply
from integrations.models import DeliveryAttempt, Endpoint
from orders.models import Order

State = OutboxMessage.State
RELAY = Actor.named("relay")


def backoff(attempts: int) -> timedelta:
    """Exponential, capped, with full jitter between half and one and a half times."""
    base = min(
        settings.OUTBOX_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), settings.OUTBOX_RETRY_MAX_SECONDS
    )
    return timedelta(seconds=base * random.uniform(0.5, 1.5))


def relay_claim(*, limit: int = 50) -> list[int]:
    now = clock.now()
    due = (
        OutboxMessage.objects.filter(state__in=[State.PENDING, State.SENDING], next_attempt_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_attempt_at", "id")
    )
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("id", flat=True)[:limit])
        OutboxMessage.objects.filter(id__in=ids).update(
            state=State.SENDING, lease_until=now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
        )
    return ids


def _postpone(message_id: int, until: timedelta, why: str) -> None:
    OutboxMessage.objects.filter(pk=message_id, state=State.SENDING).update(
        state=State.PENDING, lease_until=None, next_attempt_at=clock.now() + until, last_error=why
    )


def _may_send(endpoint: Endpoint) -> bool:
    """The circuit breaker: closed sends; open waits out its cool-down, then lets one
    probe through (half-open); the probe's result closes or re-opens it."""
    if endpoint.circuit == Endpoint.Circuit.CLOSED:
        return True
    cooldown = timedelta(seconds=settings.CIRCUIT_COOLDOWN_SECONDS)
    if endpoint.circuit == Endpoint.Circuit.OPEN and clock.now() >= endpoint.circuit_opened_at + cooldown:
        return bool(
            Endpoint.objects.filter(pk=endpoint.pk, circuit=Endpoint.Circuit.OPEN).update(
                circuit=Endpoint.Circuit.HALF_OPEN
            )
        )
    return False


def relay_deliver(*, message_id: int) -> str:
    """Send one claimed message; returns its state afterwards."""
    message = OutboxMessage.objects.get(pk=message_id)
    if message.state != State.SENDING:
        return message.state
    endpoint = Endpoint.objects.filter(name=message.endpoint).first()
    cooldown = timedelta(seconds=settings.CIRCUIT_COOLDOWN_SECONDS)
    if endpoint is None or not endpoint.enabled:
        _postpone(message_id, cooldown, f"Endpoint '{message.endpoint}' is not configured or disabled.")
        return State.PENDING
    if not _may_send(endpoint):
        _postpone(message_id, cooldown, f"Circuit of '{endpoint.name}' is open.")
        return State.PENDING
    reply = SENDERS[message.topic](endpoint)(message.payload, message.idempotency_key)
    return _settle(message_id, endpoint, reply)


@transaction.atomic
def _settle(message_id: int, endpoint: Endpoint, reply: Reply) -> str:
    message = OutboxMessage.objects.select_for_update().get(pk=message_id)
    now = clock.now()
    DeliveryAttempt.objects.create(
        message=message,
        at=now,
        status_code=reply.status,
        latency_ms=reply.latency_ms,
        error=reply.error,
        succeeded=reply.ok,
    )
    if message.state != State.SENDING:  # settled meanwhile (by hand): keep what was decided
        return message.state
    message.attempts += 1
    message.lease_until = None
    message.last_error = reply.error
    if reply.ok:
        message.state, message.delivered_at, message.response = State.DELIVERED, now, reply.body
        Endpoint.objects.filter(pk=endpoint.pk).update(
            circuit=Endpoint.Circuit.CLOSED, consecutive_failures=0, last_success_at=now
        )
    else:
        _record_failure(endpoint)
        if not reply.retryable or message.attempts >= endpoint.max_attempts:
            message.state = State.DEAD
        else:
            message.state = State.PENDING
            message.next_attempt_at = now + backoff(message.attempts)
    message.save()
    if message.state == State.DELIVERED:
        flows.outbox_delivered(message=message, actor=RELAY)
    elif message.state == State.DEAD:
        _dead_letter(message)
    return message.state


def _record_failure(endpoint: Endpoint) -> None:
    Endpoint.objects.filter(pk=endpoint.pk).update(consecutive_failures=F("consecutive_failures") + 1)
    endpoint.refresh_from_db(fields=["consecutive_failures", "circuit"])
    if (
        endpoint.circuit == Endpoint.Circuit.HALF_OPEN
        or endpoint.consecutive_failures >= settings.CIRCUIT_FAILURE_THRESHOLD
    ):
        Endpoint.objects.filter(pk=endpoint.pk).update(
            circuit=Endpoint.Circuit.OPEN, circuit_opened_at=clock.now()
        )


def _dead_letter(message: OutboxMessage) -> None:
    order = Order.objects.filter(external_id=message.subject_ref).first() if message.subject_ref else None
    booking = message.topic == "carrier.booking" and order is not None
    exception_services.exception_raise(
        type_code="carrier_booking_failed" if booking else "integration_sync_failed",
        order=order,
        details={
            "direction": "outbound",
            "message": message.pk,
            "topic": message.topic,
            "endpoint": message.endpoint,
            "attempts": message.attempts,
            "error": message.last_error,
        },
        actor=RELAY,
        note=f"{message.topic} to {message.endpoint} failed after {message.attempts} attempt(s): "
        f"{message.last_error}",
    )


def relay_run(*, batch: int = 50, max_batches: int = 100) -> int:
    """Deliver what is due, batch by batch; returns how many messages were settled."""
    settled = 0
    for _ in range(max_batches):
        ids = relay_claim(limit=batch)
        if not ids:
            break
        for message_id in ids:
            relay_deliver(message_id=message_id)
        settled += len(ids)
    return settled
