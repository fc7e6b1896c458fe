"""Writing messages to other systems: one row in the caller's transaction, delivered
by the relay after commit, so a message exists if and only if its cause committed."""

from typing import Any

from fulfillment.core.models import OutboxMessage


def outbox_put(
    *, endpoint: str, topic: str, payload: dict[str, Any], idempotency_key: str, subject_ref: str = ""
) -> OutboxMessage:
    """Queue a message; the same idempotency key is queued once, whatever the retries."""
    message, _ = OutboxMessage.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={"endpoint": endpoint, "topic": topic, "payload": payload, "subject_ref": subject_ref},
    )
    return message
