"""What an operator does about messages that did not get through (DESIGN.md §5).

Replay sends a dead letter again once its cause is fixed; "mark handled" records that a
person did by hand what the message would have done (degraded mode), so the relay never
sends it; retry applies a failed inbound event again. Only planners and admins may act.
When nothing about an order is left undelivered, its integration exception clears itself.
"""

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from exceptions import services as exception_services
from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.errors import ApplicationError, InvalidInput, NotFound, PermissionDenied
from fulfillment.core.models import OutboxMessage
from fulfillment.core.outbox import kick_relay
from fulfillment.core.roles import ADMIN, PLANNER, has_role
from fulfillment.core.workqueue import BulkOutcome
from integrations.inbound import inbound_event_apply
from integrations.models import InboundEvent, OutboxAction
from orders.models import Order

State = OutboxMessage.State
INTEGRATION_SYNC_FAILED = "integration_sync_failed"
CARRIER_BOOKING_FAILED = "carrier_booking_failed"
CARRIER_BOOKING = "carrier.booking"
NOTE_MAX = 2000


def access_integration_actions(user: AbstractBaseUser) -> None:
    """Planners and admins act on integration messages; everyone else is refused."""
    if not has_role(user, PLANNER, ADMIN):
        raise PermissionDenied("Only planners and admins may act on integration messages.")


def _clean_note(note: str, *, required: bool) -> str:
    note = (note or "").strip()
    if required and not note:
        raise InvalidInput(
            "Say what was done by hand, so that others can follow it.",
            fields={"note": ["A note is required."]},
        )
    if len(note) > NOTE_MAX:
        raise InvalidInput(
            f"Keep the note to {NOTE_MAX} characters or fewer.", fields={"note": ["The note is too long."]}
        )
    return note


def _lock(message: OutboxMessage) -> OutboxMessage:
    locked = OutboxMessage.objects.select_for_update().filter(pk=message.pk).first()
    if locked is None:
        raise NotFound(f"Message {message.pk} does not exist.")
    return locked


def _refusal(message: OutboxMessage, action: str) -> InvalidInput:
    why = {
        State.DELIVERED: "it was delivered already",
        State.HANDLED: "it was handled by hand already",
        State.SENDING: "it is being sent right now; wait for the attempt to finish",
        State.PENDING: "it is still waiting for delivery",
    }[State(message.state)]
    return InvalidInput(
        f"Message {message.pk} ({message.topic} to {message.endpoint}) cannot be {action}: {why}.",
        fields={"state": [f"The message is {State(message.state).label.lower()}."]},
    )


def _replay(message: OutboxMessage, *, user: AbstractBaseUser, note: str) -> OutboxMessage:
    locked = _lock(message)
    if locked.state != State.DEAD:
        raise _refusal(locked, "replayed")
    now = clock.now()
    locked.state = State.PENDING
    locked.attempts = 0
    locked.next_attempt_at = now
    locked.lease_until = None
    locked.last_error = ""
    locked.save(update_fields=["state", "attempts", "next_attempt_at", "lease_until", "last_error"])
    OutboxAction.objects.create(
        message=locked, action=OutboxAction.Action.REPLAY, actor=user, note=note, at=now
    )
    return locked


def outbox_message_replay(*, message: OutboxMessage, user: AbstractBaseUser, note: str = "") -> OutboxMessage:
    """Send a dead letter again from scratch (attempts reset, due now) once its cause is
    fixed; the relay is woken after commit. Any other state is refused and nothing changes."""
    access_integration_actions(user)
    note = _clean_note(note, required=False)
    with transaction.atomic():
        replayed = _replay(message, user=user, note=note)
        transaction.on_commit(kick_relay)
    return replayed


def outbox_replay(
    *, messages: Iterable[OutboxMessage], user: AbstractBaseUser, note: str = ""
) -> BulkOutcome:
    """Replay many dead letters, each in its own transaction, so that one refusal (a
    message delivered meanwhile) does not undo the others; the relay is woken once."""
    access_integration_actions(user)
    note = _clean_note(note, required=False)
    done: list[int] = []
    failed: dict[int, str] = {}
    for message in messages:
        try:
            with transaction.atomic():
                _replay(message, user=user, note=note)
            done.append(message.pk)
        except ApplicationError as exc:
            failed[message.pk] = exc.message
    if done:
        transaction.on_commit(kick_relay)
    return BulkOutcome(done=done, failed=failed)


def exception_type_of(message: OutboxMessage) -> str:
    """The exception a dead letter of this message opens (see ``integrations.relay``)."""
    return CARRIER_BOOKING_FAILED if message.topic == CARRIER_BOOKING else INTEGRATION_SYNC_FAILED


def _undelivered(order: Order, type_code: str) -> bool:
    """Whether anything about the order still stands behind an open exception of this type."""
    dead = OutboxMessage.objects.filter(subject_ref=order.external_id, state=State.DEAD)
    if type_code == CARRIER_BOOKING_FAILED:
        return dead.filter(topic=CARRIER_BOOKING).exists()
    failed_inbound = InboundEvent.objects.filter(
        subject_ref=order.external_id, state=InboundEvent.State.FAILED
    )
    return dead.exclude(topic=CARRIER_BOOKING).exists() or failed_inbound.exists()


def _clear_when_settled(*, order_ref: str, type_code: str, note: str, user: AbstractBaseUser) -> None:
    order = Order.objects.filter(external_id=order_ref).first() if order_ref else None
    if order is None or _undelivered(order, type_code):
        return
    exception_services.exception_clear(order=order, type_code=type_code, note=note, actor=Actor.of(user))


@transaction.atomic
def outbox_mark_handled(*, message: OutboxMessage, user: AbstractBaseUser, note: str) -> OutboxMessage:
    """A person did by hand what the message would have done: the relay never sends it.

    Dead letters and messages still waiting may be marked; one being sent right now may
    not (it could arrive twice). When it was the order's last undelivered message, the
    order's integration exception closes itself, its note naming the person.
    """
    access_integration_actions(user)
    note = _clean_note(note, required=True)
    locked = _lock(message)
    if locked.state not in (State.DEAD, State.PENDING):
        raise _refusal(locked, "marked handled")
    locked.state = State.HANDLED
    locked.lease_until = None
    locked.save(update_fields=["state", "lease_until"])
    OutboxAction.objects.create(message=locked, action=OutboxAction.Action.HANDLED, actor=user, note=note)
    _clear_when_settled(
        order_ref=locked.subject_ref,
        type_code=exception_type_of(locked),
        note=f"{locked.topic} to {locked.endpoint} was done by hand: {note}",
        user=user,
    )
    return locked


def inbound_event_retry(*, event: InboundEvent, user: AbstractBaseUser) -> InboundEvent:
    """Apply a failed event again (after fixing what made it fail); returns it as it ends.

    When it applies and nothing else about its order is undelivered, the order's
    integration exception closes itself.
    """
    access_integration_actions(user)
    with transaction.atomic():
        locked = InboundEvent.objects.select_for_update().filter(pk=event.pk).first()
        if locked is None:
            raise NotFound(f"Event {event.pk} does not exist.")
        if locked.state != InboundEvent.State.FAILED:
            raise InvalidInput(
                f"Event {locked.event_id} is {InboundEvent.State(locked.state).label.lower()}: "
                "only failed events can be retried.",
                fields={"state": ["The event has not failed."]},
            )
        locked.state = InboundEvent.State.PENDING
        locked.save(update_fields=["state"])
    state = inbound_event_apply(event_pk=locked.pk)
    if state in (InboundEvent.State.APPLIED, InboundEvent.State.SKIPPED):
        _clear_when_settled(
            order_ref=locked.subject_ref,
            type_code=INTEGRATION_SYNC_FAILED,
            note=f"Event {locked.event_id} ({locked.type}) applied on retry.",
            user=user,
        )
    locked.refresh_from_db()
    return locked
