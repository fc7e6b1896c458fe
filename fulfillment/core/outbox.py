"""Writing messages to other systems: one row in the caller's transaction, delivered
by the relay after commit, so a message exists if and only if its cause committed."""

from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django_q.tasks import async_task

from fulfillment.core import clock
from fulfillment.core.models import OutboxMessage

RELAY_TASK = "integrations.tasks.relay_outbox"
State = OutboxMessage.State
# A new message rides on a relay run that claimed messages this recently, or on the kick
# of an earlier one still waiting that was written this recently; an older claim or
# waiting message (its relay may have died) does not count.
KICK_COALESCE = timedelta(seconds=2)


def outbox_put(
    *, endpoint: str, topic: str, payload: dict[str, Any], idempotency_key: str, subject_ref: str = ""
) -> OutboxMessage:
    """Queue a message; the same idempotency key is queued once, whatever the retries."""
    try:
        with transaction.atomic():
            message = OutboxMessage.objects.create(
                endpoint=endpoint,
                topic=topic,
                payload=payload,
                idempotency_key=idempotency_key,
                subject_ref=subject_ref,
            )
    except IntegrityError:  # queued before: new keys are the rule, so the insert comes first
        queued = OutboxMessage.objects.filter(idempotency_key=idempotency_key).first()
        if queued is None:
            raise
        return queued
    transaction.on_commit(partial(kick_relay_for, message.pk))
    return message


def kick_relay_for(message_id: int) -> None:
    """Wake the relay for a committed message, unless a relay run is bound to take it: a
    run that claimed messages just now and is sending them (a run claims again after each
    batch until nothing is due, and wakes another when it stops short), or the run woken
    for an earlier new message still waiting. So a burst or a steady stream of messages
    costs a relay task now and then, not one per message.

    Earlier by id, so that of several messages committed together the first one kicks.
    """
    now = clock.now()
    # A claim leases for OUTBOX_LEASE_SECONDS: a lease ending after this began in the window.
    leased_in_window = now - KICK_COALESCE + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    run_sending = Q(state=State.SENDING, lease_until__gt=leased_in_window)
    earlier_waiting = Q(
        pk__lt=message_id,
        state=State.PENDING,
        attempts=0,
        next_attempt_at__lte=now,
        created_at__gte=now - KICK_COALESCE,
    )
    if not OutboxMessage.objects.filter(run_sending | earlier_waiting).exists():
        kick_relay()


def kick_relay() -> None:
    """Wake the relay now instead of at its next scheduled run."""
    async_task(RELAY_TASK, task_name="relay-outbox")
