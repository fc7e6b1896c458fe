"""Writing messages to other systems: one row in the caller's transaction, delivered
by the relay after commit, so a message exists if and only if its cause committed."""

from typing import Any

from django.db import transaction
from django_q.tasks import async_task

from fulfillment.core.models import OutboxMessage

RELAY_TASK = "integrations.tasks.relay_outbox"


def outbox_put(
    *, endpoint: str, topic: str, payload: dict[str, Any], idempotency_key: str, subject_ref: str = ""
) -> OutboxMessage:
    """Queue a message; the same idempotency key is queued once, whatever the retries."""
    message, created = OutboxMessage.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={"endpoint": endpoint, "topic": topic, "payload": payload, "subject_ref": subject_ref},
    )
    if created:
        transaction.on_commit(kick_relay)
    return message


def kick_relay() -> None:
    """Wake the relay now instead of at its next scheduled run."""
    async_task(RELAY_TASK, task_name="relay-outbox")
