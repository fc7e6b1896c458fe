"""The operator's actions on integration messages: replay, mark handled, retry an event."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib import import_module
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import User

from exceptions import services as exception_services
from exceptions.models import AUTO_CLEARED, OrderException
from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.errors import InvalidInput, PermissionDenied
from fulfillment.core.models import OutboxMessage, WorkItem, WorkItemEvent
from fulfillment.core.outbox import RELAY_TASK, kick_relay
from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, FINANCE, PLANNER
from integrations import services
from integrations.inbound import inbound_event_apply
from integrations.models import DeliveryAttempt, InboundEvent, OutboxAction, Partner
from orders.models import Carrier, Order, Status
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RELAY = Actor.named("relay")
State = OutboxMessage.State
_keys = iter(range(1, 10**6))


@pytest.fixture(autouse=True)
def _default_data(db: None) -> None:
    """Teams, queues and exception types as the data migrations create them (a transactional
    test elsewhere may have flushed them; the migrations' functions are idempotent)."""
    for module in (
        "fulfillment.core.migrations.0002_default_teams_and_queues",
        "exceptions.migrations.0002_default_types_and_deadlines",
    ):
        import_module(module).create(apps, None)


@pytest.fixture(autouse=True)
def now() -> Iterator[datetime]:
    with clock.frozen(NOW):
        yield NOW


@pytest.fixture
def planner() -> User:
    return factories.user("pia", PLANNER)


def message(
    state: str = State.DEAD,
    *,
    order: Order | None = None,
    topic: str = "erp.status",
    endpoint: str = "erp",
    attempts: int = 8,
) -> OutboxMessage:
    n = next(_keys)
    return OutboxMessage.objects.create(
        endpoint=endpoint,
        topic=topic,
        payload={"n": n},
        idempotency_key=f"key-{n}",
        subject_ref=order.external_id if order else "",
        state=state,
        attempts=attempts,
        next_attempt_at=NOW - timedelta(hours=1),
        lease_until=NOW + timedelta(minutes=1) if state == State.SENDING else None,
        last_error="HTTP 503: down" if state == State.DEAD else "",
        created_at=NOW - timedelta(hours=2),
    )


def dead_letter(order: Order, topic: str = "erp.status", endpoint: str = "erp") -> OutboxMessage:
    """A dead letter and the exception it opens, as the relay leaves them."""
    dead = message(order=order, topic=topic, endpoint=endpoint)
    booking = topic == "carrier.booking"
    exception_services.exception_raise(
        type_code="carrier_booking_failed" if booking else "integration_sync_failed",
        order=order,
        details={"direction": "outbound", "message": dead.pk, "topic": topic},
        actor=RELAY,
        note="failed after 8 attempts",
    )
    return dead


def snapshot(m: OutboxMessage) -> dict[str, Any]:
    row = OutboxMessage.objects.filter(pk=m.pk).values().get()
    return row


def open_exception(order: Order, type_code: str = "integration_sync_failed") -> OrderException | None:
    return OrderException.objects.filter(order=order, type__code=type_code, is_open=True).first()


# --- replay ----------------------------------------------------------------------------------


def test_replay_sends_a_dead_letter_again_from_scratch_and_wakes_the_relay(
    planner: User, django_capture_on_commit_callbacks: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr("fulfillment.core.outbox.async_task", lambda *a, **kw: queued.append(a))
    dead = message(State.DEAD)
    DeliveryAttempt.objects.create(message=dead, at=NOW - timedelta(hours=1), status_code=503, error="down")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        replayed = services.outbox_message_replay(message=dead, user=planner, note="ERP is back")

    row = snapshot(dead)
    assert (row["state"], row["attempts"], row["next_attempt_at"], row["lease_until"], row["last_error"]) == (
        State.PENDING,
        0,
        NOW,
        None,
        "",
    )
    assert replayed.state == State.PENDING
    assert list(OutboxAction.objects.values_list("message_id", "action", "actor_id", "note", "at")) == [
        (dead.pk, "replay", planner.pk, "ERP is back", NOW)
    ]
    assert callbacks == [kick_relay]
    assert queued == [(RELAY_TASK,)]
    assert DeliveryAttempt.objects.filter(message=dead).count() == 1  # the history stays


@pytest.mark.parametrize(
    ("state", "why"),
    [
        (State.DELIVERED, "it was delivered already"),
        (State.HANDLED, "it was handled by hand already"),
        (State.PENDING, "it is still waiting for delivery"),
        (State.SENDING, "it is being sent right now; wait for the attempt to finish"),
    ],
)
def test_only_dead_letters_are_replayed(
    planner: User, django_capture_on_commit_callbacks: Callable[..., Any], state: str, why: str
) -> None:
    other = message(state)
    before = snapshot(other)

    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(InvalidInput) as refused:
        services.outbox_message_replay(message=other, user=planner)

    assert refused.value.message == f"Message {other.pk} (erp.status to erp) cannot be replayed: {why}."
    assert "state" in refused.value.fields
    assert snapshot(other) == before
    assert not OutboxAction.objects.exists()
    assert callbacks == []


def test_bulk_replay_of_a_mixed_batch_replays_the_dead_and_reports_the_others(
    planner: User, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    first, second = message(State.DEAD), message(State.DEAD)
    delivered, handled = message(State.DELIVERED), message(State.HANDLED)
    untouched = {m.pk: snapshot(m) for m in (delivered, handled)}

    with django_capture_on_commit_callbacks() as callbacks:
        outcome = services.outbox_replay(
            messages=[first, delivered, second, handled], user=planner, note="fixed the token"
        )

    assert outcome.done == [first.pk, second.pk]
    assert outcome.failed == {
        delivered.pk: f"Message {delivered.pk} (erp.status to erp) cannot be replayed: "
        "it was delivered already.",
        handled.pk: f"Message {handled.pk} (erp.status to erp) cannot be replayed: "
        "it was handled by hand already.",
    }
    assert set(OutboxMessage.objects.filter(state=State.PENDING).values_list("pk", flat=True)) == {
        first.pk,
        second.pk,
    }
    assert {m.pk: snapshot(m) for m in (delivered, handled)} == untouched
    assert sorted(OutboxAction.objects.values_list("message_id", "note")) == [
        (first.pk, "fixed the token"),
        (second.pk, "fixed the token"),
    ]
    assert callbacks == [kick_relay]  # woken once for the batch


def test_bulk_replay_of_nothing_replayable_does_not_wake_the_relay(
    planner: User, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    delivered = message(State.DELIVERED)
    with django_capture_on_commit_callbacks() as callbacks:
        outcome = services.outbox_replay(messages=[delivered], user=planner)
    assert (outcome.done, list(outcome.failed)) == ([], [delivered.pk])
    assert callbacks == []


@pytest.mark.parametrize("roles", [(CUSTOMER_SERVICE,), (FINANCE,), ()])
def test_only_planners_and_admins_replay(roles: tuple[str, ...]) -> None:
    dead = message(State.DEAD)
    before = snapshot(dead)
    outsider = factories.user(None, *roles)

    with pytest.raises(PermissionDenied):
        services.outbox_replay(messages=[dead], user=outsider)
    with pytest.raises(PermissionDenied):
        services.outbox_message_replay(message=dead, user=outsider)

    assert snapshot(dead) == before
    assert not OutboxAction.objects.exists()


def test_admins_replay_too() -> None:
    dead = message(State.DEAD)
    outcome = services.outbox_replay(messages=[dead], user=factories.user(None, ADMIN))
    assert outcome.done == [dead.pk]


def test_a_replay_note_is_bounded(planner: User) -> None:
    dead = message(State.DEAD)
    with pytest.raises(InvalidInput) as refused:
        services.outbox_replay(messages=[dead], user=planner, note="x" * 2001)
    assert refused.value.fields == {"note": ["The note is too long."]}
    assert snapshot(dead)["state"] == State.DEAD


# --- mark handled ----------------------------------------------------------------------------


@pytest.mark.parametrize("note", ["", "   \n "])
def test_marking_handled_needs_a_note(planner: User, note: str) -> None:
    dead = message(State.DEAD)
    before = snapshot(dead)
    with pytest.raises(InvalidInput) as refused:
        services.outbox_mark_handled(message=dead, user=planner, note=note)
    assert refused.value.fields == {"note": ["A note is required."]}
    assert snapshot(dead) == before
    assert not OutboxAction.objects.exists()


@pytest.mark.parametrize("state", [State.DEAD, State.PENDING])
def test_dead_and_waiting_messages_can_be_marked_handled(planner: User, state: str) -> None:
    m = message(state)
    handled = services.outbox_mark_handled(message=m, user=planner, note="  keyed into the ERP by hand ")
    assert handled.state == State.HANDLED
    assert snapshot(m)["state"] == State.HANDLED
    assert list(OutboxAction.objects.values_list("message_id", "action", "actor_id", "note", "at")) == [
        (m.pk, "handled", planner.pk, "keyed into the ERP by hand", NOW)
    ]


@pytest.mark.parametrize("state", [State.SENDING, State.DELIVERED, State.HANDLED])
def test_sent_or_settled_messages_cannot_be_marked_handled(planner: User, state: str) -> None:
    m = message(state)
    before = snapshot(m)
    with pytest.raises(InvalidInput) as refused:
        services.outbox_mark_handled(message=m, user=planner, note="done")
    assert "cannot be marked handled" in refused.value.message
    assert snapshot(m) == before
    assert not OutboxAction.objects.exists()


def test_marking_handled_is_for_planners_and_admins(planner: User) -> None:
    m = message(State.DEAD)
    with pytest.raises(PermissionDenied):
        services.outbox_mark_handled(message=m, user=factories.user(None, FINANCE), note="done")
    assert snapshot(m)["state"] == State.DEAD
    assert services.outbox_mark_handled(message=m, user=factories.user(None, ADMIN), note="ok").state == (
        State.HANDLED
    )


def test_handling_the_orders_last_dead_letter_clears_its_integration_exception(planner: User) -> None:
    order = factories.order()
    status_update, invoice = dead_letter(order, "erp.status"), dead_letter(order, "erp.invoice")
    exception = open_exception(order)
    assert exception is not None and exception.occurrences == 2

    services.outbox_mark_handled(message=status_update, user=planner, note="status keyed in by hand")
    assert open_exception(order) == exception  # the invoice is still undelivered

    services.outbox_mark_handled(message=invoice, user=planner, note="invoice 4711 raised by hand")
    assert open_exception(order) is None
    item = WorkItem.objects.get(pk=exception.work_item_id)
    assert (item.state, item.resolution_code, item.resolved_by) == (
        WorkItem.State.RESOLVED,
        AUTO_CLEARED,
        None,
    )
    assert item.resolution_note == (
        "erp.invoice to erp was done by hand: invoice 4711 raised by hand (after an action by pia)"
    )
    resolved = WorkItemEvent.objects.get(item=item, action="resolved")
    assert (resolved.actor_system, resolved.actor_user) == ("system", None)


def test_a_failed_inbound_event_of_the_order_keeps_its_exception_open(planner: User) -> None:
    order = factories.order()
    dead = dead_letter(order)
    InboundEvent.objects.create(
        partner=Partner.objects.get_or_create(name="wms")[0],
        event_id="ev-1",
        type="pick.completed",
        occurred_at=NOW,
        data={},
        subject_ref=order.external_id,
        state=InboundEvent.State.FAILED,
    )
    services.outbox_mark_handled(message=dead, user=planner, note="done by hand")
    assert open_exception(order) is not None


def test_a_carrier_booking_handled_by_hand_clears_the_booking_exception_only(planner: User) -> None:
    order = factories.order()
    booking = dead_letter(order, "carrier.booking", "carrier")
    dead_letter(order, "erp.status")

    services.outbox_mark_handled(message=booking, user=planner, note="booked by phone, ref 88")

    assert open_exception(order, "carrier_booking_failed") is None
    assert open_exception(order, "integration_sync_failed") is not None


def test_handling_a_message_about_no_known_order_changes_no_exception(planner: User) -> None:
    order = factories.order()
    dead_letter(order)
    stray = message(State.DEAD)
    services.outbox_mark_handled(message=stray, user=planner, note="not needed")
    assert open_exception(order) is not None


# --- retry an inbound event ------------------------------------------------------------------


def failed_shipment(order: Order, carrier_code: str = "NEWCO") -> InboundEvent:
    """A shipment confirmation naming a carrier the portal does not know: it fails."""
    line = order.lines.select_related("product").get()
    event = InboundEvent.objects.create(
        partner=Partner.objects.get_or_create(name="wms")[0],
        event_id=f"ship-{order.external_id}",
        type="shipment.confirmed",
        occurred_at=NOW - timedelta(minutes=5),
        data={
            "order": order.external_id,
            "shipment_id": f"SH-{order.external_id}",
            "warehouse": order.warehouse.code,
            "carrier": carrier_code,
            "tracking": "TRK-1",
            "lines": [{"sku": line.product.sku, "quantity": line.quantity}],
        },
        subject_ref=order.external_id,
        received_at=NOW - timedelta(minutes=4),
    )
    assert inbound_event_apply(event_pk=event.pk) == InboundEvent.State.FAILED
    event.refresh_from_db()
    return event


def test_retrying_a_failed_event_after_fixing_its_cause_applies_it_and_clears_the_exception(
    planner: User,
) -> None:
    order = factories.order_in(Status.PACKED)
    event = failed_shipment(order)
    assert event.last_error == "Unknown carrier 'NEWCO'."
    assert open_exception(order) is not None
    Carrier.objects.create(code="NEWCO", name="New Carrier")

    retried = services.inbound_event_retry(event=event, user=planner)

    assert (retried.state, retried.attempts, retried.last_error) == (InboundEvent.State.APPLIED, 2, "")
    order.refresh_from_db()
    assert order.status == Status.SHIPPED
    assert open_exception(order) is None


def test_a_retry_that_fails_again_keeps_the_event_failed_and_the_exception_open(planner: User) -> None:
    order = factories.order_in(Status.PACKED)
    event = failed_shipment(order)
    exception = open_exception(order)

    retried = services.inbound_event_retry(event=event, user=planner)

    assert (retried.state, retried.attempts) == (InboundEvent.State.FAILED, 2)
    assert open_exception(order) == exception
    order.refresh_from_db()
    assert order.status == Status.PACKED


@pytest.mark.parametrize("state", [InboundEvent.State.APPLIED, InboundEvent.State.PENDING])
def test_only_failed_events_are_retried(planner: User, state: str) -> None:
    event = InboundEvent.objects.create(
        partner=Partner.objects.get_or_create(name="wms")[0],
        event_id="ev-9",
        type="inventory.adjusted",
        occurred_at=NOW,
        data={"warehouse": "W1", "sku": "S", "on_hand": 1},
        state=state,
    )
    with pytest.raises(InvalidInput):
        services.inbound_event_retry(event=event, user=planner)
    event.refresh_from_db()
    assert (event.state, event.attempts) == (state, 0)


def test_retrying_events_is_for_planners_and_admins() -> None:
    order = factories.order_in(Status.PACKED)
    event = failed_shipment(order)
    with pytest.raises(PermissionDenied):
        services.inbound_event_retry(event=event, user=factories.user(None, CUSTOMER_SERVICE))
    event.refresh_from_db()
    assert (event.state, event.attempts) == (InboundEvent.State.FAILED, 1)
