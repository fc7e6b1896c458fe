"""Writing messages to other systems: one row in the caller's transaction, delivered
by the relay after commit, so a message exists if and only if its cause committed."""

from datetime import timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django_q.tasks import async_task

from fulfillment.core import clock
from fulfillment.core.models import OutboxMessage

RELAY_TASK = "integrations.tasks.relay_outbox"
# A new message rides on the kick of an earlier one still waiting that was written this
# recently; an older waiting message (its relay may have stopped short) does not count.
KICK_COALESCE = timedelta(seconds=2)


def outbox_put(
    *, endpoint: str, topic: str, payload: dict[str, Any], idempotency_key: str, subject_ref: str = ""
) -> OutboxMessage:
    """Queue a message; the same idempotency key is queued once, whatever the retries."""
    message, created = OutboxMessage.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={"endpoint": endpoint, "topic": topic, "payload": payload, "subject_ref": subject_ref},
    )
    if created:
        transaction.on_commit(partial(kick_relay_for, message.pk))
    return message


def kick_relay_for(message_id: int) -> None:
    """Wake the relay for a committed message, unless an earlier new message is still
    waiting: the relay run woken for that one takes this one too, as a run claims until
    nothing is due. So a burst of messages costs one relay task, not one per message.

    Earlier by id, so that of several messages committed together the first one kicks.
    """
    now = clock.now()
    earlier_waiting = OutboxMessage.objects.filter(
        pk__lt=message_id,
        state=OutboxMessage.State.PENDING,
        attempts=0,
        next_attempt_at__lte=now,
        created_at__gte=now - KICK_COALESCE,
    ).exists()
    if not earlier_waiting:
        kick_relay()


def kick_relay() -> None:
    """Wake the relay now instead of at its next scheduled run."""
    async_task(RELAY_TASK, task_name="relay-outbox")
