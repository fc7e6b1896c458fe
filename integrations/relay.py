"""The outbox relay: claims due messages, sends them, records every attempt.

A claim is a short lease (``state=sending``, ``lease_until``) taken with SKIP LOCKED on
PostgreSQL, so two relays never send the same message at once, and a relay that dies
mid-delivery only delays the message until the lease ends. Receivers de-duplicate by
the idempotency key, so a message resent after such a crash is applied once.

The lease's end is also its owner's token: a relay sends a message only after renewing
the lease it claimed, and settles it only while that lease is still the message's. A
relay that took too long over its batch finds its lease taken over and leaves the
message to the relay that holds it now.
"""

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet

from exceptions import services as exception_services
from flows import fulfilment as flows
from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.errors import ApplicationError
from fulfillment.core.models import OutboxMessage
from integrations.adapters import SENDERS, Reply
from integrations.models import DeliveryAttempt, Endpoint
from orders.models import Order

State = OutboxMessage.State
RELAY = Actor.named("relay")
# Connect and read timeouts apply one after the other, so a send can take twice the
# endpoint's timeout; a send lease of three times it outlasts any send.
SEND_LEASE_TIMEOUTS = 3
# A run stops taking messages after this long, well inside the task timeout (Q_CLUSTER).
RUN_BUDGET_SECONDS = 40.0
HEALTH_RESOLUTION = timedelta(seconds=1)


@dataclass(frozen=True)
class Lease:
    message_id: int
    until: datetime


def backoff(attempts: int) -> timedelta:
    """Exponential and capped, with jitter: between half and all of
    ``base * 2^(attempts-1)``, never above OUTBOX_RETRY_MAX_SECONDS."""
    ceiling = min(
        settings.OUTBOX_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), settings.OUTBOX_RETRY_MAX_SECONDS
    )
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def relay_claim(*, limit: int = 50) -> list[Lease]:
    now = clock.now()
    until = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    due = (
        OutboxMessage.objects.filter(state__in=[State.PENDING, State.SENDING], next_attempt_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_attempt_at", "id")
    )
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("id", flat=True)[:limit])
        OutboxMessage.objects.filter(id__in=ids).update(state=State.SENDING, lease_until=until)
    return [Lease(message_id, until) for message_id in ids]


def _held(lease: Lease) -> QuerySet[OutboxMessage]:
    return OutboxMessage.objects.filter(pk=lease.message_id, state=State.SENDING, lease_until=lease.until)


def _release(lease: Lease, *, after: timedelta = timedelta(0), why: str = "") -> None:
    """Give the message back unsent, due again ``after`` from now (no attempt counted)."""
    changes = {"state": State.PENDING, "lease_until": None, "next_attempt_at": clock.now() + after}
    _held(lease).update(**changes, **({"last_error": why} if why else {}))


def _renew(lease: Lease, endpoint: Endpoint) -> Lease | None:
    """Extend the lease over the send; None when another relay holds the message now."""
    seconds = max(settings.OUTBOX_LEASE_SECONDS, SEND_LEASE_TIMEOUTS * endpoint.timeout_seconds)
    renewed = Lease(lease.message_id, clock.now() + timedelta(seconds=seconds))
    return renewed if _held(lease).update(lease_until=renewed.until) else None


def _may_send(endpoint: Endpoint) -> bool:
    """The circuit breaker: closed sends; open (or half-open with a probe that never
    reported back) waits out its cool-down, then lets one probe through (half-open);
    the probe's result closes or re-opens it."""
    if endpoint.circuit == Endpoint.Circuit.CLOSED:
        return True
    now = clock.now()
    if endpoint.circuit_opened_at is not None and now < _cooled_down_at(endpoint):
        return False
    return bool(
        Endpoint.objects.filter(
            pk=endpoint.pk, circuit=endpoint.circuit, circuit_opened_at=endpoint.circuit_opened_at
        ).update(circuit=Endpoint.Circuit.HALF_OPEN, circuit_opened_at=now)
    )


def _cooled_down_at(endpoint: Endpoint) -> datetime:
    opened = endpoint.circuit_opened_at or clock.now()
    return opened + timedelta(seconds=settings.CIRCUIT_COOLDOWN_SECONDS)


def relay_deliver(*, lease: Lease) -> str:
    """Send one claimed message; returns its state afterwards."""
    message = OutboxMessage.objects.get(pk=lease.message_id)
    if message.state != State.SENDING or message.lease_until != lease.until:
        return message.state  # settled meanwhile, or taken over after the lease ran out
    endpoint = Endpoint.objects.filter(name=message.endpoint).first()
    if endpoint is None or not endpoint.enabled:
        cooldown = timedelta(seconds=settings.CIRCUIT_COOLDOWN_SECONDS)
        _release(lease, after=cooldown, why=f"Endpoint '{message.endpoint}' is not configured or disabled.")
        return State.PENDING
    send = SENDERS.get(message.topic)
    if send is None:
        return _refuse(lease, f"There is no sender for topic '{message.topic}'.")
    renewed = _renew(lease, endpoint)
    if renewed is None:
        return OutboxMessage.objects.values_list("state", flat=True).get(pk=lease.message_id)
    if not _may_send(endpoint):
        endpoint.refresh_from_db(fields=["circuit", "circuit_opened_at"])
        wait = timedelta(0)
        if endpoint.circuit != Endpoint.Circuit.CLOSED:
            wait = max(_cooled_down_at(endpoint) - clock.now(), wait)
        _release(renewed, after=wait, why=f"Circuit of '{endpoint.name}' is open.")
        return State.PENDING
    started = clock.now()
    reply = send(endpoint)(message.payload, message.idempotency_key)
    return _settle(renewed, endpoint, reply, started=started)


@transaction.atomic
def _settle(lease: Lease, endpoint: Endpoint, reply: Reply, *, started: datetime) -> str:
    message = OutboxMessage.objects.select_for_update().get(pk=lease.message_id)
    DeliveryAttempt.objects.create(
        message=message,
        at=started,
        status_code=reply.status,
        latency_ms=reply.latency_ms,
        error=reply.error,
        succeeded=reply.ok,
    )
    _record_health(endpoint, reply)
    if message.state != State.SENDING or message.lease_until != lease.until:
        return message.state  # settled meanwhile (by hand): keep what was decided
    message.attempts += 1
    message.lease_until = None
    message.last_error = reply.error
    if reply.ok:
        message.state, message.delivered_at, message.response = State.DELIVERED, clock.now(), reply.body
    elif not reply.retryable or message.attempts >= endpoint.max_attempts:
        message.state = State.DEAD
    else:
        message.state = State.PENDING
        message.next_attempt_at = clock.now() + backoff(message.attempts)
    message.save()
    if message.state == State.DELIVERED:
        _apply_answer(message)
    elif message.state == State.DEAD:
        _dead_letter(message)
    return message.state


@transaction.atomic
def _refuse(lease: Lease, why: str) -> str:
    """A message that no sender can send: dead at once, without an attempt."""
    message = OutboxMessage.objects.select_for_update().get(pk=lease.message_id)
    if message.state != State.SENDING or message.lease_until != lease.until:
        return message.state
    message.state, message.lease_until, message.last_error = State.DEAD, None, why
    message.save(update_fields=["state", "lease_until", "last_error"])
    _dead_letter(message)
    return message.state


def _record_health(endpoint: Endpoint, reply: Reply) -> None:
    """A timeout, a connection error or a 5xx counts against the endpoint; any other answer
    (a 2xx, or a 4xx refusing this one message) shows that it works and closes the circuit."""
    endpoints = Endpoint.objects.filter(pk=endpoint.pk)
    if not reply.retryable:
        # Written only when it changes (last_success_at to the second): every delivery
        # writing the one endpoint row made concurrent relays wait for each other's commit.
        now = clock.now()
        changed = ~Q(circuit=Endpoint.Circuit.CLOSED) | ~Q(consecutive_failures=0)
        success = {}
        if reply.ok:
            success = {"last_success_at": now}
            changed |= Q(last_success_at__isnull=True) | Q(last_success_at__lte=now - HEALTH_RESOLUTION)
        endpoints.filter(changed).update(circuit=Endpoint.Circuit.CLOSED, consecutive_failures=0, **success)
        return
    endpoints.update(consecutive_failures=F("consecutive_failures") + 1)
    endpoint.refresh_from_db(fields=["consecutive_failures", "circuit"])
    if (
        endpoint.circuit == Endpoint.Circuit.HALF_OPEN
        or endpoint.consecutive_failures >= settings.CIRCUIT_FAILURE_THRESHOLD
    ):
        endpoints.update(circuit=Endpoint.Circuit.OPEN, circuit_opened_at=clock.now())


def _apply_answer(message: OutboxMessage) -> None:
    """What the answer means for the order; an answer that cannot be applied becomes an
    exception instead of undoing the delivery (which would send the message again)."""
    try:
        with transaction.atomic():
            flows.outbox_delivered(message=message, actor=RELAY)
    except ApplicationError as exc:
        _raise_exception(
            message,
            type_code="integration_sync_failed",
            error=exc.message,
            note=f"Delivered, but the answer could not be applied: {exc.message}",
        )


def _dead_letter(message: OutboxMessage) -> None:
    booking = message.topic == "carrier.booking"
    _raise_exception(
        message,
        type_code="carrier_booking_failed" if booking else "integration_sync_failed",
        error=message.last_error,
        note=f"{message.topic} to {message.endpoint} failed after {message.attempts} attempt(s): "
        f"{message.last_error}",
    )


def _raise_exception(message: OutboxMessage, *, type_code: str, error: str, note: str) -> None:
    order = Order.objects.filter(external_id=message.subject_ref).first() if message.subject_ref else None
    if order is None:
        type_code = "integration_sync_failed"  # a carrier booking of no known order: the integration desk
    exception_services.exception_raise(
        type_code=type_code,
        order=order,
        details={
            "direction": "outbound",
            "message": message.pk,
            "topic": message.topic,
            "endpoint": message.endpoint,
            "idempotency_key": message.idempotency_key,
            "attempts": message.attempts,
            "error": error,
        },
        actor=RELAY,
        note=note,
    )


def relay_run(*, batch: int = 50, max_batches: int = 100, budget_seconds: float = RUN_BUDGET_SECONDS) -> int:
    """Deliver what is due, batch by batch, for at most ``budget_seconds`` (what is left of
    a batch then goes back unsent); returns how many messages ended delivered or dead."""
    deadline = time.monotonic() + budget_seconds
    settled = 0
    for _ in range(max_batches):
        leases = relay_claim(limit=batch)
        if not leases:
            break
        for n, lease in enumerate(leases):
            if time.monotonic() >= deadline:
                for unsent in leases[n:]:
                    _release(unsent)
                return settled
            settled += relay_deliver(lease=lease) in (State.DELIVERED, State.DEAD)
    return settled
