"""Fault injection over real HTTP on loopback: the simulator fails, times out and loses
answers, and a relay worker is killed mid-delivery; every message still ends delivered
or dead-lettered, and the simulator applies every idempotency key exactly once."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db.models import Min
from django.utils import timezone
from pytest_django.fixtures import Settings

from exceptions.models import OrderException
from fulfillment.core import clock
from fulfillment.core.models import OutboxMessage
from fulfillment.core.outbox import outbox_put
from integrations.models import DeliveryAttempt
from integrations.relay import relay_run
from orders.models import Status
from tests import factories
from tests.integrations import simulated

State = OutboxMessage.State
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting {what}")
        time.sleep(0.01)


def relay_until_nothing_is_due() -> int:
    """Run the relay, moving the frozen clock to the next due message, until none is left."""
    for rounds in range(1, 500):
        relay_run()
        waiting = OutboxMessage.objects.filter(state__in=[State.PENDING, State.SENDING])
        due = waiting.aggregate(due=Min("next_attempt_at"))["due"]
        if due is None:
            return rounds
        clock.advance(max(due - clock.now(), timedelta(0)))
    raise AssertionError("messages still due after 500 rounds")


def test_with_a_third_of_the_calls_failing_every_message_ends_delivered_or_dead_and_is_applied_once(
    db: None, settings: Settings
) -> None:
    settings.OUTBOX_RETRY_BASE_SECONDS = 2.0
    settings.OUTBOX_RETRY_MAX_SECONDS = 600.0
    settings.CIRCUIT_FAILURE_THRESHOLD = 5
    settings.CIRCUIT_COOLDOWN_SECONDS = 30.0
    faults = {
        "error_rate": 0.3,
        "timeout_rate": 0.05,
        "lost_response_rate": 0.05,
        "booking_failure_rate": 0.05,
    }
    with clock.frozen(T0), simulated.running(**faults, timeout_seconds=0.5, seed=11) as sim:
        simulated.endpoints(sim.url, timeout=0.2)
        # Seven messages per delivered order, three per released one: 200 across all topics.
        orders = [factories.order_in(Status.DELIVERED) for _ in range(20)]
        orders += [factories.order_in(Status.RELEASED) for _ in range(20)]
        messages_before = {m.pk: m.idempotency_key for m in OutboxMessage.objects.all()}
        assert len(messages_before) == 200

        relay_until_nothing_is_due()
        stats, applied = sim.stats(), sim.applied()

    messages = list(OutboxMessage.objects.all())
    assert {m.pk: m.idempotency_key for m in messages} == messages_before  # none lost, none added
    assert {m.state for m in messages} <= {State.DELIVERED, State.DEAD}
    assert {m.topic for m in messages} == {
        "erp.status", "order.release", "carrier.booking", "customer.notify", "erp.invoice",
    }  # fmt: skip
    # The faults happened, and some answers were lost, so the same key came again.
    injected = stats["injected"]
    assert injected["errors"] > 0 and injected["timeouts"] > 0 and injected["lost_responses"] > 0
    assert stats["repeats"] > 0
    # Every call the relay made is on record, and each key was applied (or refused) once.
    assert DeliveryAttempt.objects.count() == stats["received"]
    applied_keys = [entry["key"] for entry in applied]
    assert (
        len(applied_keys)
        == len(set(applied_keys))
        == stats["applied"] + stats["rejected"]
        == len(stats["keys"])
    )
    first_answer = {entry["key"]: entry for entry in applied}
    for message in messages:
        entry = first_answer.get(message.idempotency_key)
        if message.state == State.DELIVERED:
            assert entry is not None and entry["status"] < 300 and entry["response"] == message.response
            assert message.attempts == message.delivery_attempts.count()
        elif message.topic == "carrier.booking" and entry is not None:
            assert entry["status"] == 422  # refused by the carrier: dead at once, for the planners
        else:
            assert message.attempts == 8  # out of attempts
    # Each dead letter is an open exception in its queue, one per order and type.
    dead = [m for m in messages if m.state == State.DEAD]
    expected = {
        (
            m.subject_ref,
            "carrier_booking_failed" if m.topic == "carrier.booking" else "integration_sync_failed",
        )
        for m in dead
    }
    raised = set(OrderException.objects.filter(is_open=True).values_list("order__external_id", "type__code"))
    assert raised == expected
    # The ERP's answers to the invoice triggers invoiced the orders.
    for order in orders[:20]:
        invoice = OutboxMessage.objects.get(topic="erp.invoice", subject_ref=order.external_id)
        order.refresh_from_db()
        if invoice.state == State.DELIVERED:
            assert order.status == Status.INVOICED
            assert order.invoices.get().number == invoice.response["invoice_number"]


def database_url() -> str:
    """The test database, for a process of its own."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    host, port = db["HOST"] or "localhost", db["PORT"] or 5432
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{host}:{port}/{db['NAME']}"


WORKER = "import django; django.setup(); from integrations.relay import relay_run; relay_run(batch=10)"


@pytest.mark.django_db(transaction=True)
def test_a_relay_killed_mid_delivery_loses_nothing_and_the_message_sent_again_is_applied_once() -> None:
    factories.migration_data()
    with simulated.running(latency_ms=500) as sim:
        simulated.endpoints(sim.url, timeout=2.0)
        keys = [f"status:{n}" for n in range(20)]
        for n, key in enumerate(keys):
            outbox_put(
                endpoint="erp", topic="erp.status", idempotency_key=key,
                payload={"order": f"SO-{n}", "status": "released", "at": "2026-03-02T09:00:00+00:00"},
            )  # fmt: skip
        env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "fulfillment.settings"}
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            # The third call is under way (the simulator takes 500 ms to answer): kill the worker.
            wait_until(
                lambda: sim.stats()["received"] >= 3 or worker.poll() is not None, what="for the worker"
            )
            os.kill(worker.pid, signal.SIGKILL)
            _, stderr = worker.communicate(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert worker.returncode == -signal.SIGKILL, stderr.decode()

        states = dict(OutboxMessage.objects.values_list("idempotency_key", "state"))
        assert [states[key] for key in keys] == [State.DELIVERED] * 2 + [State.SENDING] * 8 + [
            State.PENDING
        ] * 10
        wait_until(lambda: sim.stats()["applied"] == 3, what="for the simulator to apply the call in flight")
        sim.configure(latency_ms=0)

        with clock.frozen(timezone.now() + timedelta(minutes=2)):  # the dead worker's leases ran out
            assert relay_run() == 18
        stats = sim.stats()

    assert set(OutboxMessage.objects.values_list("state", flat=True)) == {State.DELIVERED}
    # Sent twice with the same key (once by the killed worker), applied once.
    assert stats["keys"] == {key: 2 if key == "status:2" else 1 for key in keys}
    assert (stats["applied"], stats["repeats"], stats["received"]) == (20, 1, 21)
    in_flight = OutboxMessage.objects.get(idempotency_key="status:2")
    assert (in_flight.attempts, in_flight.response) == (1, {"ok": True})
    assert in_flight.delivery_attempts.count() == 1  # the killed worker's call left no record
