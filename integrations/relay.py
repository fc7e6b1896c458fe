"""The outbox relay: claims due messages, sends them, records every attempt.

A claim is a short lease (``state=sending``, ``lease_until``) taken with SKIP LOCKED on
PostgreSQL, so two relays never send the same message at once, and a relay that dies
mid-delivery only delays the message until the lease ends. Receivers de-duplicate by
the idempotency key, so a message resent after such a crash is applied once.

The lease's end is also its owner's token: a relay sends a message only while what is
left of its lease outlasts the send (renewing it first when it would not), and settles it
only while that lease is still the message's. A relay that took too long over its batch
finds its lease taken over and leaves the message to the relay that holds it now.

A run claims a batch together with its rows (one statement on PostgreSQL) and reads the
batch's endpoints once: a change to an endpoint by hand or by another relay is seen from
the next batch on, the relay's own findings at once. The quick successes of a batch are
settled together, in one transaction: each waits at most SETTLE_WITHIN for the next
ones, and never over a send that its lease might not outlast.
"""

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet

from exceptions import services as exception_services
from flows import fulfilment as flows
from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.errors import ApplicationError
from fulfillment.core.models import OutboxMessage
from fulfillment.core.outbox import kick_relay
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
# A quick success waits at most this long (seconds) to share its settling transaction.
SETTLE_WITHIN = 0.1
SETTLED = (State.DELIVERED, State.DEAD)


@dataclass(frozen=True)
class Lease:
    message_id: int
    until: datetime


@dataclass(frozen=True)
class Answer:
    """A call made under ``lease`` at ``started``, answered at ``at``: to be settled."""

    lease: Lease
    message: OutboxMessage
    endpoint: Endpoint
    reply: Reply
    started: datetime
    at: datetime


def backoff(attempts: int) -> timedelta:
    """Exponential and capped, with jitter: between half and all of
    ``base * 2^(attempts-1)``, never above OUTBOX_RETRY_MAX_SECONDS."""
    ceiling = min(
        settings.OUTBOX_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), settings.OUTBOX_RETRY_MAX_SECONDS
    )
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def relay_claim(*, limit: int = 50) -> list[Lease]:
    return [lease for lease, _ in _claim(limit=limit)]


def _claim(*, limit: int) -> list[tuple[Lease, OutboxMessage]]:
    """Lease up to ``limit`` due messages, oldest due first; returns them as leased."""
    now = clock.now()
    until = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    if connection.vendor == "postgresql":
        # One statement, the rows coming back with their lease; SKIP LOCKED passes over
        # another relay's claim in progress instead of waiting for it.
        table = connection.ops.quote_name(OutboxMessage._meta.db_table)
        claimed = list(
            OutboxMessage.objects.raw(
                f"""UPDATE {table} SET state = %s, lease_until = %s WHERE id IN (
                    SELECT id FROM {table}
                    WHERE state IN (%s, %s) AND next_attempt_at <= %s
                      AND (lease_until IS NULL OR lease_until < %s)
                    ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED
                ) RETURNING *""",
                [State.SENDING, until, State.PENDING, State.SENDING, now, now, limit],
            )
        )
        claimed.sort(key=lambda message: (message.next_attempt_at, message.pk))
    else:
        due = (
            OutboxMessage.objects.filter(state__in=[State.PENDING, State.SENDING], next_attempt_at__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .order_by("next_attempt_at", "id")
        )
        with transaction.atomic():
            ids = list(due.values_list("id", flat=True)[:limit])
            OutboxMessage.objects.filter(id__in=ids).update(state=State.SENDING, lease_until=until)
            claimed = list(OutboxMessage.objects.filter(id__in=ids).order_by("next_attempt_at", "id"))
    return [(Lease(message.pk, until), message) for message in claimed]


def _held(lease: Lease) -> QuerySet[OutboxMessage]:
    return OutboxMessage.objects.filter(pk=lease.message_id, state=State.SENDING, lease_until=lease.until)


def _state_of(lease: Lease) -> str:
    return OutboxMessage.objects.values_list("state", flat=True).get(pk=lease.message_id)


def _release(leases: list[Lease], *, after: timedelta = timedelta(0), why: str = "") -> None:
    """Give messages back unsent, due again ``after`` from now (no attempt counted)."""
    held = Q()
    for lease in leases:
        held |= Q(pk=lease.message_id, lease_until=lease.until)
    changes = {"state": State.PENDING, "lease_until": None, "next_attempt_at": clock.now() + after}
    OutboxMessage.objects.filter(held, state=State.SENDING).update(
        **changes, **({"last_error": why} if why else {})
    )


def _send_time(endpoint: Endpoint) -> timedelta:
    """What a send may take at worst, with a margin."""
    return timedelta(seconds=SEND_LEASE_TIMEOUTS * endpoint.timeout_seconds)


def _renew(lease: Lease, endpoint: Endpoint) -> Lease | None:
    """The lease to send under; None when another relay holds the message now.

    A lease that outlasts the send as it is needs no write: until it ends no other relay
    claims the message, and nobody else changes a message being sent. A shorter one is
    extended over the send, on condition that it is still the message's.
    """
    now = clock.now()
    if lease.until - now >= _send_time(endpoint):
        return lease
    seconds = max(settings.OUTBOX_LEASE_SECONDS, _send_time(endpoint).total_seconds())
    renewed = Lease(lease.message_id, now + timedelta(seconds=seconds))
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
    probing = Endpoint.objects.filter(
        pk=endpoint.pk, circuit=endpoint.circuit, circuit_opened_at=endpoint.circuit_opened_at
    ).update(circuit=Endpoint.Circuit.HALF_OPEN, circuit_opened_at=now)
    if probing:
        endpoint.circuit, endpoint.circuit_opened_at = Endpoint.Circuit.HALF_OPEN, now
    return bool(probing)


def _cooled_down_at(endpoint: Endpoint) -> datetime:
    opened = endpoint.circuit_opened_at or clock.now()
    return opened + timedelta(seconds=settings.CIRCUIT_COOLDOWN_SECONDS)


def relay_deliver(*, lease: Lease) -> str:
    """Send one claimed message; returns its state afterwards."""
    message = OutboxMessage.objects.get(pk=lease.message_id)
    if message.state != State.SENDING or message.lease_until != lease.until:
        return message.state  # settled meanwhile, or taken over after the lease ran out
    outcome = _send(lease, message, Endpoint.objects.filter(name=message.endpoint).first())
    return _settle([outcome])[0] if isinstance(outcome, Answer) else outcome


def _send(lease: Lease, message: OutboxMessage, endpoint: Endpoint | None) -> Answer | str:
    """Send a message claimed under ``lease`` to its endpoint (as last read): the answer to
    settle, or the message's state when no call was made."""
    if endpoint is None or not endpoint.enabled:
        cooldown = timedelta(seconds=settings.CIRCUIT_COOLDOWN_SECONDS)
        _release([lease], after=cooldown, why=f"Endpoint '{message.endpoint}' is not configured or disabled.")
        return State.PENDING
    send = SENDERS.get(message.topic)
    if send is None:
        return _refuse(lease, f"There is no sender for topic '{message.topic}'.")
    renewed = _renew(lease, endpoint)
    if renewed is None:
        return _state_of(lease)
    if not _may_send(endpoint):
        endpoint.refresh_from_db(fields=["circuit", "circuit_opened_at"])
        wait = timedelta(0)
        if endpoint.circuit != Endpoint.Circuit.CLOSED:
            wait = max(_cooled_down_at(endpoint) - clock.now(), wait)
        _release([renewed], after=wait, why=f"Circuit of '{endpoint.name}' is open.")
        return State.PENDING
    started = clock.now()
    reply = send(endpoint)(message.payload, message.idempotency_key)
    return Answer(renewed, message, endpoint, reply, started=started, at=clock.now())


def _settle(answers: list[Answer]) -> list[str]:
    """Settle each message unless it is no longer its lease's (settled by hand, or taken
    over: what was decided stands), record every attempt, then the endpoints' health;
    returns the messages' states. The answers from one endpoint are all successes, or one."""
    with transaction.atomic():
        states = [_settle_message(answer) for answer in answers]
        DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(
                message_id=answer.lease.message_id,
                at=answer.started,
                status_code=answer.reply.status,
                latency_ms=answer.reply.latency_ms,
                error=answer.reply.error,
                succeeded=answer.reply.ok,
            )
            for answer in answers
        )
        for last in {answer.endpoint.pk: answer for answer in answers}.values():
            _record_health(last.endpoint, last.reply)
    return states


def _settle_message(answer: Answer) -> str:
    message, reply = answer.message, answer.reply
    attempts = message.attempts + 1  # only the lease's holder counts attempts
    changes: dict[str, Any] = {"attempts": attempts, "lease_until": None, "last_error": reply.error}
    if reply.ok:
        changes |= {"state": State.DELIVERED, "delivered_at": answer.at, "response": reply.body}
    elif not reply.retryable or attempts >= answer.endpoint.max_attempts:
        changes |= {"state": State.DEAD}
    else:
        changes |= {"state": State.PENDING, "next_attempt_at": answer.at + backoff(attempts)}
    if not _held(answer.lease).update(**changes):
        return _state_of(answer.lease)
    for field, value in changes.items():
        setattr(message, field, value)
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
    (a 2xx, or a 4xx refusing this one message) shows that it works and closes the circuit.
    ``endpoint`` is left as written, for the rest of the batch."""
    endpoints = Endpoint.objects.filter(pk=endpoint.pk)
    now = clock.now()
    if not reply.retryable:
        # Written only when it changes (last_success_at to the second): every delivery
        # writing the one endpoint row made concurrent relays wait for each other's commit.
        changed = ~Q(circuit=Endpoint.Circuit.CLOSED) | ~Q(consecutive_failures=0)
        success = {}
        if reply.ok:
            success = {"last_success_at": now}
            changed |= Q(last_success_at__isnull=True) | Q(last_success_at__lte=now - HEALTH_RESOLUTION)
        if endpoints.filter(changed).update(
            circuit=Endpoint.Circuit.CLOSED, consecutive_failures=0, **success
        ):
            endpoint.last_success_at = success.get("last_success_at", endpoint.last_success_at)
        endpoint.circuit, endpoint.consecutive_failures = Endpoint.Circuit.CLOSED, 0
        return
    endpoints.update(consecutive_failures=F("consecutive_failures") + 1)
    endpoint.refresh_from_db(fields=["consecutive_failures", "circuit", "circuit_opened_at"])
    if (
        endpoint.circuit == Endpoint.Circuit.HALF_OPEN
        or endpoint.consecutive_failures >= settings.CIRCUIT_FAILURE_THRESHOLD
    ):
        endpoints.update(circuit=Endpoint.Circuit.OPEN, circuit_opened_at=now)
        endpoint.circuit, endpoint.circuit_opened_at = Endpoint.Circuit.OPEN, now


def _apply_answer(message: OutboxMessage) -> None:
    """What the answer means for the order; an answer that cannot be applied becomes an
    exception instead of undoing the delivery (which would send the message again). The
    flow runs in a transaction of its own (a savepoint here), so a refused answer leaves
    nothing behind."""
    try:
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


class _Waiting:
    """Successful quick deliveries of a batch, waiting to be settled together."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.since = 0.0

    @staticmethod
    def may_wait(answer: Answer) -> bool:
        """A success that came quickly, from a closed circuit (a probe's is settled at once)."""
        quick = answer.reply.latency_ms < SETTLE_WITHIN * 1000
        return answer.reply.ok and quick and answer.endpoint.circuit == Endpoint.Circuit.CLOSED

    def add(self, answer: Answer) -> int:
        if not self.answers:
            self.since = time.monotonic()
        self.answers.append(answer)
        return self.settle() if time.monotonic() - self.since >= SETTLE_WITHIN else 0

    def settle_unless_outlasting(self, send_time: timedelta) -> int:
        """Settle now unless every lease outlasts a send taking ``send_time``."""
        now = clock.now()
        return self.settle() if any(a.lease.until - now < send_time for a in self.answers) else 0

    def settle(self) -> int:
        answers, self.answers = self.answers, []
        return sum(state in SETTLED for state in _settle(answers)) if answers else 0


def relay_run(*, batch: int = 50, max_batches: int = 100, budget_seconds: float = RUN_BUDGET_SECONDS) -> int:
    """Deliver what is due, batch by batch, for at most ``budget_seconds`` (what is left of
    a batch then goes back unsent); returns how many messages ended delivered or dead.

    A run that stops short (out of time, or of batches) wakes another for the rest, and for
    the new messages that rode on it (``kick_relay_for``)."""
    deadline = time.monotonic() + budget_seconds
    settled = 0
    for _ in range(max_batches):
        claimed = _claim(limit=batch)
        if not claimed:
            break
        endpoints = {e.name: e for e in Endpoint.objects.filter(name__in={m.endpoint for _, m in claimed})}
        waiting = _Waiting()
        for n, (lease, message) in enumerate(claimed):
            if time.monotonic() >= deadline:
                settled += waiting.settle()
                _release([unsent for unsent, _ in claimed[n:]])
                kick_relay()
                return settled
            endpoint = endpoints.get(message.endpoint)
            if endpoint is not None:
                settled += waiting.settle_unless_outlasting(_send_time(endpoint))
            outcome = _send(lease, message, endpoint)
            if isinstance(outcome, str):
                settled += outcome in SETTLED
            elif waiting.may_wait(outcome):
                settled += waiting.add(outcome)
            else:
                settled += waiting.settle()  # first, so that the endpoint's health is written in order
                settled += _settle([outcome])[0] in SETTLED
        settled += waiting.settle()
    else:
        kick_relay()  # out of batches
    return settled
