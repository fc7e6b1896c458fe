"""Stored webhooks are applied by one run per burst, woken after commit: a new event rides
on the kick of an earlier one still pending, or on a run at work, which applies until
nothing has been pending for a moment. What lost its kick (the broker was down) is left
to the sweep."""

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from integrations import inbound, tasks, webhooks
from integrations.models import InboundEvent, Partner
from integrations.webhooks import APPLY_LINGER, APPLY_TASK, KICK_COALESCE
from tests import factories
from tests.integrations.webhook_support import envelope, post, stored

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("webhook_now")]
APPLIED = InboundEvent.State.APPLIED


@pytest.fixture
def kicks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(webhooks, "async_task", lambda *args, **kwargs: queued.append(args))
    return queued


@pytest.fixture
def accept(
    client: Client, partners: dict[str, Partner], django_capture_on_commit_callbacks: Callable[..., Any]
) -> Callable[..., InboundEvent]:
    """POST a stock count as the WMS does and commit it (its kick runs); returns the event."""

    def accept_(event_id: str, at: str = "2026-03-02T08:30:00Z") -> InboundEvent:
        data = {"warehouse": "WH1", "sku": "SKU-1", "on_hand": 5}
        with django_capture_on_commit_callbacks(execute=True):
            response = post(client, "wms", envelope("inventory.adjusted", data, event_id, at))
        assert (response.status_code, response.json()["status"]) == (202, "accepted")
        return stored("wms", event_id)

    return accept_


def run() -> int:
    """An apply run that does not wait for more events (nothing else is on its way)."""
    return inbound.apply_pending(linger_seconds=0)


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the stock counts as a run applies them (they change nothing)."""
    order: list[str] = []

    def record(event: InboundEvent, data: dict[str, Any], actor: Actor) -> str:
        order.append(event.event_id)
        return APPLIED

    monkeypatch.setitem(inbound.HANDLERS, ("wms", "inventory.adjusted"), record)
    return order


# --- the kick -----------------------------------------------------------------------------------


def test_a_burst_of_events_kicks_one_run(
    kicks: list[tuple[Any, ...]], accept: Callable[..., InboundEvent]
) -> None:
    for n in range(5):
        accept(f"e{n}")
        clock.advance(KICK_COALESCE / 10)

    assert kicks == [(APPLY_TASK,)]


def test_an_accepted_event_costs_two_statements(
    kicks: list[tuple[Any, ...]],
    client: Client,
    partners: dict[str, Partner],
    django_capture_on_commit_callbacks: Callable[..., Any],
    django_assert_num_queries: Callable[..., Any],
) -> None:
    """The insert, and after commit the look for an earlier pending event: the partner's
    secrets are read again only when a signature matches none of them."""
    data = {"warehouse": "WH1", "sku": "SKU-1", "on_hand": 5}
    with django_capture_on_commit_callbacks(execute=True):
        post(client, "wms", envelope("inventory.adjusted", data, "first", "2026-03-02T08:30:00Z"))
    for n in range(3):
        document = envelope("inventory.adjusted", data, f"e{n}", "2026-03-02T08:30:00Z")
        with django_assert_num_queries(2), django_capture_on_commit_callbacks(execute=True):
            assert post(client, "wms", document).status_code == 202
    assert kicks == [(APPLY_TASK,)]


def test_an_event_committed_while_a_run_is_at_work_rides_on_it(
    kicks: list[tuple[Any, ...]], accept: Callable[..., InboundEvent], applied: list[str]
) -> None:
    """The run has just applied an event: it reads again before it stops."""
    accept("e1")
    assert run() == 1
    clock.advance(APPLY_LINGER / 2 - timedelta(milliseconds=1))
    accept("e2")

    assert kicks == [(APPLY_TASK,)]


def test_once_a_run_has_stopped_a_new_event_kicks_again(
    kicks: list[tuple[Any, ...]], accept: Callable[..., InboundEvent], applied: list[str]
) -> None:
    accept("e1")
    accept("e2")
    assert run() == 2
    clock.advance(APPLY_LINGER / 2 + timedelta(milliseconds=1))
    accept("e3")

    assert kicks == [(APPLY_TASK,), (APPLY_TASK,)]
    assert run() == 1
    assert applied == ["e1", "e2", "e3"]


def test_an_event_retried_just_now_does_not_hold_back_a_kick(
    kicks: list[tuple[Any, ...]], accept: Callable[..., InboundEvent], applied: list[str]
) -> None:
    """A retry (the sweep's, an operator's) is no run that reads again."""
    retried = accept("retried")
    InboundEvent.objects.filter(pk=retried.pk).update(state=APPLIED, attempts=2, applied_at=clock.now())
    clock.advance(KICK_COALESCE)  # its kick's window is over
    accept("new")

    assert kicks == [(APPLY_TASK,), (APPLY_TASK,)]


def test_an_event_pending_longer_than_the_window_does_not_hold_back_a_kick(
    kicks: list[tuple[Any, ...]], accept: Callable[..., InboundEvent]
) -> None:
    """Its kick may have been lost: the new event wakes a run, which takes both."""
    accept("stuck")
    clock.advance(KICK_COALESCE + timedelta(milliseconds=1))
    accept("new")

    assert kicks == [(APPLY_TASK,), (APPLY_TASK,)]


def test_a_deferred_event_does_not_hold_back_a_kick(
    kicks: list[tuple[Any, ...]], accept: Callable[..., InboundEvent]
) -> None:
    waiting = accept("waiting")
    InboundEvent.objects.filter(pk=waiting.pk).update(state=InboundEvent.State.DEFERRED)
    accept("new")

    assert kicks == [(APPLY_TASK,), (APPLY_TASK,)]


def test_with_the_broker_down_the_sweep_applies_the_events(
    monkeypatch: pytest.MonkeyPatch, accept: Callable[..., InboundEvent], applied: list[str]
) -> None:
    def broker_down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(webhooks, "async_task", broker_down)
    events = [accept(f"e{n}") for n in range(3)]  # still 202: the events are stored
    assert {stored("wms", e.event_id).state for e in events} == {"pending"}

    assert tasks.retry_deferred_events() == 0  # their kicks may still be on their way
    clock.advance(inbound.PENDING_GRACE + timedelta(seconds=1))
    assert tasks.retry_deferred_events() == 3
    assert applied == ["e0", "e1", "e2"]


# --- the run ------------------------------------------------------------------------------------


def test_a_run_applies_the_pending_events_earliest_occurrence_first(
    kicks: list[tuple[Any, ...]], accept: Callable[..., InboundEvent], applied: list[str]
) -> None:
    accept("late", at="2026-03-02T08:40:00Z")
    accept("early", at="2026-03-02T08:10:00Z")
    accept("middle", at="2026-03-02T08:20:00Z")
    accept("middle-too", at="2026-03-02T08:20:00Z")

    assert run() == 4
    assert applied == ["early", "middle", "middle-too", "late"]
    assert run() == 0


def stored_like(event: InboundEvent, event_id: str) -> None:
    """Another request stores the same event under ``event_id``."""
    InboundEvent.objects.create(
        partner=event.partner, event_id=event_id, type=event.type, occurred_at=event.occurred_at,
        data=event.data, subject_ref=event.subject_ref,
    )  # fmt: skip


def test_a_run_takes_an_event_committed_while_it_runs(
    kicks: list[tuple[Any, ...]],
    accept: Callable[..., InboundEvent],
    applied: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = accept("first")
    record = inbound.HANDLERS[("wms", "inventory.adjusted")]

    def meanwhile(event: InboundEvent, data: dict[str, Any], actor: Actor) -> str:
        if event.event_id == "first":  # another request stores an event now
            stored_like(first, "meanwhile")
        return record(event, data, actor)

    monkeypatch.setitem(inbound.HANDLERS, ("wms", "inventory.adjusted"), meanwhile)
    assert run() == 2
    assert applied == ["first", "meanwhile"]


def test_a_run_leaves_deferred_events_to_their_retry(
    kicks: list[tuple[Any, ...]], accept: Callable[..., InboundEvent], applied: list[str]
) -> None:
    waiting = accept("waiting")
    InboundEvent.objects.filter(pk=waiting.pk).update(state=InboundEvent.State.DEFERRED, attempts=1)

    assert run() == 0
    waiting.refresh_from_db()
    assert (waiting.state, waiting.attempts, applied) == ("deferred", 1, [])


def test_an_event_that_breaks_stays_pending_and_the_run_goes_on(
    kicks: list[tuple[Any, ...]],
    accept: Callable[..., InboundEvent],
    applied: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = inbound.HANDLERS[("wms", "inventory.adjusted")]

    def breaks(event: InboundEvent, data: dict[str, Any], actor: Actor) -> str:
        if event.event_id == "broken":
            raise RuntimeError("a bug")
        return record(event, data, actor)

    monkeypatch.setitem(inbound.HANDLERS, ("wms", "inventory.adjusted"), breaks)
    accept("before", at="2026-03-02T08:10:00Z")
    broken = accept("broken", at="2026-03-02T08:20:00Z")
    accept("after", at="2026-03-02T08:30:00Z")

    assert run() == 2
    assert applied == ["before", "after"]
    broken.refresh_from_db()
    assert (broken.state, broken.attempts) == ("pending", 0)  # for the sweep
    assert f"Applying inbound event {broken.pk} failed" in caplog.text


def test_a_run_reads_again_until_it_has_tried_nothing_for_a_moment(
    kicks: list[tuple[Any, ...]],
    accept: Callable[..., InboundEvent],
    applied: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An event committed after the run found nothing pending, while it lingers."""
    first = accept("first")
    waits: list[float] = []
    sleep = time.sleep

    def wait(seconds: float) -> None:
        if not waits:  # another request stores an event now
            stored_like(first, "straggler")
        waits.append(seconds)
        sleep(seconds)

    monkeypatch.setattr(time, "sleep", wait)
    assert inbound.apply_pending(linger_seconds=0.2) == 2
    assert applied == ["first", "straggler"]
    assert waits  # and it stopped once nothing more came


def test_a_run_out_of_time_kicks_the_next(
    kicks: list[tuple[Any, ...]], accept: Callable[..., InboundEvent], applied: list[str]
) -> None:
    accept("e1")
    kicks.clear()

    assert inbound.apply_pending(budget_seconds=0) == 0
    assert kicks == [(APPLY_TASK,)]
    assert stored("wms", "e1").state == "pending"


def test_an_applied_stock_count_is_the_real_thing(
    kicks: list[tuple[Any, ...]], accept: Callable[..., InboundEvent]
) -> None:
    """Without the recording handler: the run applies through the real flows."""
    wh, product = factories.warehouse("WH1"), factories.product("SKU-1")
    accept("count")

    assert run() == 1
    assert stored("wms", "count").state == "applied"
    assert wh.inventory.get(product=product).on_hand == 5
