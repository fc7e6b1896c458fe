"""The relay is woken once per burst or stream of new outbox messages, never left asleep."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from pytest_django.fixtures import Settings

from fulfillment.core import clock, outbox
from fulfillment.core.models import OutboxMessage
from fulfillment.core.outbox import KICK_COALESCE, RELAY_TASK, outbox_put

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def kicks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(outbox, "async_task", lambda *args, **kwargs: queued.append(args))
    return queued


def put(key: str) -> OutboxMessage:
    return outbox_put(endpoint="erp", topic="erp.status", payload={"n": key}, idempotency_key=key)


def test_messages_committed_together_wake_the_relay_once(
    kicks: list[tuple[Any, ...]], django_capture_on_commit_callbacks: Any
) -> None:
    with clock.frozen(T0), django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        put("a"), put("b"), put("c")

    assert kicks == [(RELAY_TASK,)]


def test_a_message_behind_a_waiting_one_rides_on_its_kick(
    kicks: list[tuple[Any, ...]], django_capture_on_commit_callbacks: Any
) -> None:
    with clock.frozen(T0):
        with django_capture_on_commit_callbacks(execute=True):
            put("first")
        clock.advance(KICK_COALESCE / 2)
        with django_capture_on_commit_callbacks(execute=True):
            put("second")

    assert kicks == [(RELAY_TASK,)]


def test_once_the_earlier_message_is_delivered_a_new_one_kicks_again(
    kicks: list[tuple[Any, ...]], django_capture_on_commit_callbacks: Any
) -> None:
    with clock.frozen(T0):
        with django_capture_on_commit_callbacks(execute=True):
            first = put("first")
        OutboxMessage.objects.filter(pk=first.pk).update(state=OutboxMessage.State.DELIVERED)
        with django_capture_on_commit_callbacks(execute=True):
            put("second")

    assert kicks == [(RELAY_TASK,), (RELAY_TASK,)]


def claim(message: OutboxMessage, settings: Settings) -> None:
    """As a relay run claims a message: leased for OUTBOX_LEASE_SECONDS from now."""
    lease_until = clock.now() + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    OutboxMessage.objects.filter(pk=message.pk).update(
        state=OutboxMessage.State.SENDING, lease_until=lease_until
    )


def test_a_message_written_while_a_run_sends_rides_on_that_run(
    kicks: list[tuple[Any, ...]], django_capture_on_commit_callbacks: Any, settings: Settings
) -> None:
    """The run claims again once it has settled what it sends, and then takes this one."""
    with clock.frozen(T0):
        with django_capture_on_commit_callbacks(execute=True):
            first = put("first")
        clock.advance(KICK_COALESCE / 2)
        claim(first, settings)
        clock.advance(KICK_COALESCE - timedelta(milliseconds=1))
        with django_capture_on_commit_callbacks(execute=True):
            put("second")

    assert kicks == [(RELAY_TASK,)]


def test_a_run_that_claimed_longer_ago_than_the_window_does_not_hold_back_a_kick(
    kicks: list[tuple[Any, ...]], django_capture_on_commit_callbacks: Any, settings: Settings
) -> None:
    """It may have died: its messages wait for their leases to end, new ones do not."""
    with clock.frozen(T0):
        with django_capture_on_commit_callbacks(execute=True):
            first = put("first")
        claim(first, settings)
        clock.advance(KICK_COALESCE)
        with django_capture_on_commit_callbacks(execute=True):
            put("second")

    assert kicks == [(RELAY_TASK,), (RELAY_TASK,)]


def test_a_message_waiting_longer_than_the_window_does_not_hold_back_a_kick(
    kicks: list[tuple[Any, ...]], django_capture_on_commit_callbacks: Any
) -> None:
    """Its relay run may have stopped short (out of time): the new message wakes another."""
    with clock.frozen(T0):
        with django_capture_on_commit_callbacks(execute=True):
            put("stuck")
        clock.advance(KICK_COALESCE + timedelta(milliseconds=1))
        with django_capture_on_commit_callbacks(execute=True):
            put("new")

    assert kicks == [(RELAY_TASK,), (RELAY_TASK,)]


def test_a_retry_waiting_for_its_time_does_not_hold_back_a_kick(
    kicks: list[tuple[Any, ...]], django_capture_on_commit_callbacks: Any
) -> None:
    with clock.frozen(T0):
        with django_capture_on_commit_callbacks(execute=True):
            retried = put("retried")
        OutboxMessage.objects.filter(pk=retried.pk).update(attempts=1)
        with django_capture_on_commit_callbacks(execute=True):
            put("new")

    assert kicks == [(RELAY_TASK,), (RELAY_TASK,)]


def test_a_key_is_queued_once_and_wakes_the_relay_once_whatever_the_retries(
    kicks: list[tuple[Any, ...]], django_capture_on_commit_callbacks: Any
) -> None:
    with clock.frozen(T0), django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        first = put("a")
        again = outbox_put(endpoint="wms", topic="order.release", payload={"n": "other"}, idempotency_key="a")
        put("b")  # the transaction goes on

    assert again.pk == first.pk
    assert list(OutboxMessage.objects.order_by("pk").values_list("idempotency_key", "topic", "payload")) == [
        ("a", "erp.status", {"n": "a"}), ("b", "erp.status", {"n": "b"}),
    ]  # fmt: skip
    assert kicks == [(RELAY_TASK,)]
