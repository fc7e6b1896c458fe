"""The outbox relay against the simulator, over real HTTP on loopback: attempts, backoff,
dead letters and their exceptions, the circuit breaker, leases, and racing relays."""

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import connections
from pytest_django.fixtures import Settings

from exceptions.models import OrderException
from flows import fulfilment
from fulfillment.core import clock
from fulfillment.core.errors import InvalidInput
from fulfillment.core.models import OutboxMessage
from fulfillment.core.outbox import outbox_put
from integrations import relay
from integrations.models import DeliveryAttempt, Endpoint
from integrations.relay import backoff, relay_claim, relay_deliver, relay_run
from orders.models import Order, Status
from tests import factories
from tests.integrations import simulated
from tests.integrations.simulated import Sim

State = OutboxMessage.State
Circuit = Endpoint.Circuit
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
INJECTED_503 = "HTTP 503: {'error': 'injected'}"
SHIP_TO = {"name": "Receiving", "line1": "1 Dock Road", "city": "Hull", "postal_code": "HU1", "country": "GB"}


@pytest.fixture
def relay_settings(settings: Settings) -> Settings:
    settings.OUTBOX_RETRY_BASE_SECONDS = 2.0
    settings.OUTBOX_RETRY_MAX_SECONDS = 600.0
    settings.OUTBOX_LEASE_SECONDS = 60.0
    settings.CIRCUIT_FAILURE_THRESHOLD = 3
    settings.CIRCUIT_COOLDOWN_SECONDS = 30.0
    return settings


@pytest.fixture
def now(relay_settings: Settings) -> Iterator[datetime]:
    with clock.frozen(T0):
        yield T0


@pytest.fixture
def sim() -> Iterator[Sim]:
    with simulated.running() as running:
        yield running


@pytest.fixture
def endpoints(db: None, sim: Sim) -> dict[str, Endpoint]:
    return simulated.endpoints(sim.url)


def status_message(key: str, order: Order | None = None) -> OutboxMessage:
    ref = order.external_id if order else ""
    return outbox_put(
        endpoint="erp",
        topic="erp.status",
        payload={"order": ref or "SO-ELSEWHERE", "status": "released", "at": T0.isoformat()},
        idempotency_key=key,
        subject_ref=ref,
    )


def attempts_of(message: OutboxMessage) -> list[tuple[datetime, int | None, bool, str]]:
    return list(message.delivery_attempts.values_list("at", "status_code", "succeeded", "error"))


def fresh(endpoint: Endpoint) -> tuple[str, int, datetime | None, datetime | None]:
    endpoint.refresh_from_db()
    return (
        endpoint.circuit,
        endpoint.consecutive_failures,
        endpoint.circuit_opened_at,
        endpoint.last_success_at,
    )


def test_a_message_is_delivered_on_the_first_try_with_its_idempotency_key(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint]
) -> None:
    message = status_message("status:1")

    assert relay_run() == 1

    message.refresh_from_db()
    assert (message.state, message.attempts, message.delivered_at, message.lease_until) == (
        State.DELIVERED, 1, now, None,
    )  # fmt: skip
    assert (message.last_error, message.response) == ("", {"ok": True})
    assert attempts_of(message) == [(now, 200, True, "")]
    assert message.delivery_attempts.get().latency_ms < 500
    assert sim.stats()["keys"] == {"status:1": 1}
    assert [(e["key"], e["path"], e["request"]) for e in sim.applied()] == [
        ("status:1", "/erp/order-status", message.payload)
    ]
    assert fresh(endpoints["erp"]) == (Circuit.CLOSED, 0, None, now)


def test_a_503_is_retried_after_a_backoff_and_every_attempt_is_kept(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint]
) -> None:
    sim.configure(error_rate=1.0, latency_ms=60)
    message = status_message("status:1")

    assert relay_run() == 0
    message.refresh_from_db()
    assert (message.state, message.attempts, message.lease_until, message.last_error) == (
        State.PENDING, 1, None, INJECTED_503,
    )  # fmt: skip
    delay = message.next_attempt_at - now
    assert timedelta(seconds=1) <= delay <= timedelta(seconds=2)  # base 2 s, jittered down to half
    assert fresh(endpoints["erp"])[:2] == (Circuit.CLOSED, 1)
    assert relay_run() == 0  # not due yet: no call
    assert sim.received("/erp/order-status") == 1

    sim.configure(error_rate=0.0)
    clock.advance(delay)
    assert relay_run() == 1

    message.refresh_from_db()
    assert (message.state, message.attempts, message.delivered_at, message.last_error) == (
        State.DELIVERED, 2, now + delay, "",
    )  # fmt: skip
    assert attempts_of(message) == [(now, 503, False, INJECTED_503), (now + delay, 200, True, "")]
    assert all(
        60 <= latency < 1000 for latency in message.delivery_attempts.values_list("latency_ms", flat=True)
    )
    stats = sim.stats()
    assert (stats["received"], stats["injected"]["errors"], stats["applied"], stats["keys"]) == (
        2, 1, 1, {"status:1": 1},
    )  # fmt: skip
    assert fresh(endpoints["erp"]) == (Circuit.CLOSED, 0, None, now + delay)


def test_the_backoff_doubles_up_to_the_cap_with_jitter(relay_settings: Settings) -> None:
    relay_settings.OUTBOX_RETRY_MAX_SECONDS = 60.0
    ceilings = {1: 2, 2: 4, 3: 8, 4: 16, 5: 32, 6: 60, 7: 60, 12: 60}
    for attempts, ceiling in ceilings.items():
        waits = [backoff(attempts).total_seconds() for _ in range(300)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits), attempts
        assert max(waits) - min(waits) > ceiling / 4, attempts  # spread out, not one instant


def test_a_refused_carrier_booking_is_dead_at_once_and_planners_get_an_exception(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint]
) -> None:
    sim.configure(booking_failure_rate=1.0)
    order = factories.order_in(Status.RELEASED)

    assert relay_run() == 3

    by_topic = {m.topic: m for m in OutboxMessage.objects.filter(subject_ref=order.external_id)}
    assert {topic: (m.state, m.attempts) for topic, m in by_topic.items()} == {
        "erp.status": (State.DELIVERED, 1),
        "order.release": (State.DELIVERED, 1),
        "carrier.booking": (State.DEAD, 1),
    }
    booking = by_topic["carrier.booking"]
    detail = "The carrier has no capacity left for this lane today."
    refusal = f"HTTP 422: {{'error': 'no_capacity', 'detail': '{detail}'}}"
    assert booking.last_error == refusal
    assert attempts_of(booking) == [(now, 422, False, refusal)]
    exception = OrderException.objects.select_related("type", "work_item__queue").get()
    assert (exception.order, exception.type.code, exception.work_item.queue.slug) == (
        order, "carrier_booking_failed", "planning",
    )  # fmt: skip
    assert exception.details == {
        "direction": "outbound",
        "message": booking.pk,
        "topic": "carrier.booking",
        "endpoint": "carrier",
        "idempotency_key": booking.idempotency_key,
        "attempts": 1,
        "error": refusal,
    }
    assert (
        exception.work_item.events.get().note
        == f"carrier.booking to carrier failed after 1 attempt(s): {refusal}"
    )
    assert fresh(endpoints["carrier"])[:2] == (Circuit.CLOSED, 0)  # the carrier answered: not a failure
    assert sim.stats()["by_path"]["/carrier/bookings"] == {"received": 1, "rejected": 1}


def test_after_the_last_attempt_the_message_is_a_dead_letter_in_the_integration_queue(
    db: None, now: datetime, sim: Sim, relay_settings: Settings
) -> None:
    relay_settings.CIRCUIT_FAILURE_THRESHOLD = 100
    simulated.endpoints(sim.url, max_attempts=3)
    sim.configure(error_rate=1.0)
    order = factories.order()
    message = status_message("status:1", order)

    seen = []
    for _ in range(3):
        relay_run()
        message.refresh_from_db()
        seen.append((message.state, message.attempts, OrderException.objects.count()))
        clock.advance(timedelta(minutes=10))
    assert seen == [(State.PENDING, 1, 0), (State.PENDING, 2, 0), (State.DEAD, 3, 1)]
    assert relay_run() == 0
    assert sim.received("/erp/order-status") == 3

    assert [(code, ok) for _, code, ok, _ in attempts_of(message)] == [(503, False)] * 3
    exception = OrderException.objects.select_related("type", "work_item__queue").get()
    assert (exception.order, exception.type.code, exception.work_item.queue.slug) == (
        order, "integration_sync_failed", "integration",
    )  # fmt: skip
    assert exception.work_item.state == "open"
    assert exception.work_item.title == f"Integration sync failed on {order.external_id}"
    assert exception.details["attempts"] == 3 and exception.details["error"] == INJECTED_503


def test_a_message_the_receiver_refuses_as_malformed_is_dead_at_once(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint]
) -> None:
    message = outbox_put(
        endpoint="erp", topic="erp.status", payload={"order": "SO-1"}, idempotency_key="status:bad"
    )

    assert relay_run() == 1

    message.refresh_from_db()
    assert (message.state, message.attempts) == (State.DEAD, 1)
    assert (
        message.last_error
        == "HTTP 400: {'error': 'invalid', 'detail': \"'status' must be a non-empty string\"}"
    )
    exception = OrderException.objects.select_related("type", "work_item__queue").get()
    assert (exception.order, exception.type.code, exception.work_item.queue.slug) == (
        None, "integration_sync_failed", "integration",
    )  # fmt: skip


def test_the_circuit_opens_after_repeated_failures_probes_after_the_cool_down_and_closes_on_success(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint]
) -> None:
    sim.configure(error_rate=1.0)
    messages = [status_message(f"status:{n}") for n in range(6)]
    erp = endpoints["erp"]

    relay_run()  # three failures open the circuit; the other three are not sent
    assert sim.received("/erp/order-status") == 3
    assert fresh(erp) == (Circuit.OPEN, 3, now, None)
    waiting = OutboxMessage.objects.filter(pk__in=[m.pk for m in messages[3:]])
    assert list(waiting.values_list("state", "attempts", "next_attempt_at", "last_error").distinct()) == [
        (State.PENDING, 0, now + timedelta(seconds=30), "Circuit of 'erp' is open.")
    ]
    assert DeliveryAttempt.objects.count() == 3

    clock.advance(timedelta(seconds=10))  # the failed ones are due again, the circuit is still open
    relay_run()
    assert sim.received("/erp/order-status") == 3
    assert fresh(erp)[0] == Circuit.OPEN

    clock.advance(timedelta(seconds=20))  # cooled down: one probe, which fails and re-opens it
    relay_run()
    assert sim.received("/erp/order-status") == 4
    assert fresh(erp) == (Circuit.OPEN, 4, now + timedelta(seconds=30), None)

    sim.configure(error_rate=0.0)
    clock.advance(timedelta(seconds=30))  # the next probe succeeds and closes it; the rest follow
    assert relay_run() == 6
    assert fresh(erp) == (Circuit.CLOSED, 0, now + timedelta(seconds=60), now + timedelta(seconds=60))
    assert set(OutboxMessage.objects.values_list("state", flat=True)) == {State.DELIVERED}
    stats = sim.stats()
    assert (stats["received"], stats["applied"], len(stats["keys"])) == (10, 6, 6)


def test_a_half_open_circuit_whose_probe_never_reported_back_probes_again_after_the_cool_down(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint]
) -> None:
    # The relay sending the probe died: the circuit stayed half-open.
    Endpoint.objects.filter(name="erp").update(
        circuit=Circuit.HALF_OPEN, circuit_opened_at=now - timedelta(seconds=10)
    )
    message = status_message("status:1")

    relay_run()
    message.refresh_from_db()
    assert (message.state, message.attempts, message.next_attempt_at) == (
        State.PENDING, 0, now + timedelta(seconds=20),
    )  # fmt: skip
    assert sim.stats()["received"] == 0

    clock.advance(timedelta(seconds=20))
    assert relay_run() == 1
    assert fresh(endpoints["erp"])[:2] == (Circuit.CLOSED, 0)


def test_a_disabled_or_unknown_endpoint_postpones_without_counting_an_attempt(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint]
) -> None:
    Endpoint.objects.filter(name="wms").update(enabled=False)
    Endpoint.objects.filter(name="notify").delete()
    release = outbox_put(
        endpoint="wms",
        topic="order.release",
        payload={
            "order": "SO-1", "warehouse": "W1", "ship_to": SHIP_TO, "promised_date": "2026-03-09",
            "lines": [{"sku": "SKU-1", "quantity": 2}],
        },
        idempotency_key="release:SO-1:W1",
    )  # fmt: skip
    notify = outbox_put(
        endpoint="notify",
        topic="customer.notify",
        payload={"order": "SO-1", "customer": "C1", "template": "shipment_dispatched", "data": {}},
        idempotency_key="notify:1",
    )

    assert relay_run() == 0

    for message, name in ((release, "wms"), (notify, "notify")):
        message.refresh_from_db()
        assert (message.state, message.attempts, message.lease_until, message.next_attempt_at) == (
            State.PENDING, 0, None, now + timedelta(seconds=30),
        )  # fmt: skip
        assert message.last_error == f"Endpoint '{name}' is not configured or disabled."
    assert DeliveryAttempt.objects.count() == 0
    assert sim.stats()["received"] == 0

    Endpoint.objects.filter(name="wms").update(enabled=True)
    Endpoint.objects.create(name="notify", base_url=sim.url, timeout_seconds=simulated.CLIENT_TIMEOUT)
    clock.advance(timedelta(seconds=30))
    assert relay_run() == 2
    assert sorted(sim.stats()["keys"]) == ["notify:1", "release:SO-1:W1"]


def test_a_redirect_is_not_followed_and_the_message_is_dead(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint]
) -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(307)
            self.send_header("Location", sim.url + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    moved = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=moved.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        Endpoint.objects.filter(name="erp").update(base_url=f"http://127.0.0.1:{moved.server_address[1]}")
        message = status_message("status:1")
        assert relay_run() == 1
    finally:
        moved.shutdown()
        moved.server_close()

    message.refresh_from_db()
    assert (message.state, message.attempts, message.last_error) == (State.DEAD, 1, "HTTP 307: ")
    assert sim.stats()["received"] == 0  # not re-sent elsewhere (as a GET, without a word)


def test_a_message_of_a_topic_without_a_sender_is_dead_at_once_without_a_call(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint]
) -> None:
    message = outbox_put(endpoint="erp", topic="erp.unheard_of", payload={}, idempotency_key="odd:1")

    assert relay_run() == 1

    message.refresh_from_db()
    assert (message.state, message.attempts, message.last_error) == (
        State.DEAD, 0, "There is no sender for topic 'erp.unheard_of'.",
    )  # fmt: skip
    assert DeliveryAttempt.objects.count() == 0 and sim.stats()["received"] == 0
    assert OrderException.objects.get().type.code == "integration_sync_failed"


def test_a_relay_that_died_after_claiming_delays_the_message_only_until_its_lease_ends(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint]
) -> None:
    message = status_message("status:1")
    [lease] = relay_claim()  # ... and the relay dies
    assert lease.until == now + timedelta(seconds=60)

    assert relay_run() == 0  # still leased
    clock.advance(timedelta(seconds=61))
    assert relay_run() == 1

    message.refresh_from_db()
    assert (message.state, message.attempts) == (State.DELIVERED, 1)
    assert sim.stats()["keys"] == {"status:1": 1}


def test_a_relay_whose_lease_ran_out_leaves_the_message_to_the_relay_that_took_it_over(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint]
) -> None:
    first, second = status_message("status:1"), status_message("status:2")
    slow = relay_claim()  # a relay busy elsewhere until its leases ran out
    clock.advance(timedelta(seconds=61))
    [taken_over] = relay_claim(limit=1)
    assert taken_over.message_id == first.pk and taken_over.until > slow[0].until

    assert relay_deliver(lease=slow[0]) == State.SENDING  # not sent: the other relay holds it
    assert sim.stats()["received"] == 0
    assert relay_deliver(lease=slow[1]) == State.DELIVERED  # nobody took this one: still its own
    assert relay_deliver(lease=taken_over) == State.DELIVERED
    assert relay_deliver(lease=slow[0]) == State.DELIVERED  # settled: nothing to do

    assert sim.stats()["keys"] == {"status:1": 1, "status:2": 1}
    assert list(OutboxMessage.objects.order_by("pk").values_list("pk", "attempts")) == [
        (first.pk, 1), (second.pk, 1),
    ]  # fmt: skip


def test_a_run_out_of_time_gives_the_rest_of_its_batch_back_unsent(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint]
) -> None:
    for n in range(3):
        status_message(f"status:{n}")

    assert relay_run(budget_seconds=0) == 0

    assert list(
        OutboxMessage.objects.values_list("state", "attempts", "lease_until", "next_attempt_at").distinct()
    ) == [(State.PENDING, 0, None, now)]
    assert sim.stats()["received"] == 0


def test_a_run_that_stops_short_wakes_another_for_the_rest(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    kicks: list[str] = []
    monkeypatch.setattr(relay, "kick_relay", lambda: kicks.append("kick"))
    for n in range(3):
        status_message(f"status:{n}")

    assert relay_run(budget_seconds=0) == 0  # out of time
    assert relay_run(batch=1, max_batches=2) == 2  # out of batches
    assert kicks == ["kick", "kick"]
    assert relay_run() == 1  # done: nothing to wake another for
    assert kicks == ["kick", "kick"]


def test_the_erp_invoice_number_in_the_answer_invoices_the_order(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint]
) -> None:
    order = factories.order_in(Status.DELIVERED)

    assert relay_run() == 7

    invoice_message = OutboxMessage.objects.get(topic="erp.invoice")
    number = invoice_message.response["invoice_number"]
    [applied] = [e for e in sim.applied() if e["key"] == invoice_message.idempotency_key]
    assert applied["response"] == {"invoice_number": number}
    order.refresh_from_db()
    assert order.status == Status.INVOICED
    assert list(order.invoices.values_list("number", "amount")) == [(number, order.total)]
    assert order.transitions.latest("at", "id").actor_label == "relay"


def test_an_answer_that_cannot_be_applied_becomes_an_exception_and_the_message_stays_delivered(
    now: datetime, sim: Sim, endpoints: dict[str, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*, message: OutboxMessage, **kwargs: Any) -> None:
        if message.topic == "erp.invoice":
            raise InvalidInput("Invoice number 'INV-1' is taken.")

    monkeypatch.setattr(fulfilment, "outbox_delivered", refuse)
    order = factories.order_in(Status.DELIVERED)

    assert relay_run() == 7

    invoice_message = OutboxMessage.objects.get(topic="erp.invoice")
    assert (invoice_message.state, invoice_message.attempts) == (State.DELIVERED, 1)
    order.refresh_from_db()
    assert order.status == Status.DELIVERED
    exception = OrderException.objects.select_related("type").get()
    assert (exception.order, exception.type.code, exception.details["topic"], exception.details["error"]) == (
        order, "integration_sync_failed", "erp.invoice", "Invoice number 'INV-1' is taken.",
    )  # fmt: skip
    assert exception.work_item.events.get().note == (
        "Delivered, but the answer could not be applied: Invoice number 'INV-1' is taken."
    )


# --- racing relays (PostgreSQL: real row locks) --------------------------------------------

TOPICS = [
    ("erp", "erp.status", {"order": "SO-R", "status": "shipped", "at": "2026-03-02T09:00:00+00:00"}),
    ("notify", "customer.notify", {"order": "SO-R", "customer": "C1", "template": "shipped", "data": {}}),
    ("erp", "erp.invoice", {"order": "SO-R", "amount": "10.00", "currency": "EUR"}),
    ("carrier", "carrier.booking", {"order": "SO-R", "warehouse": "W1", "ship_to": SHIP_TO, "parcels": 1}),
]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("relays", [2, 4])
def test_racing_relays_never_send_the_same_message_at_the_same_time(relays: int, settings: Settings) -> None:
    factories.migration_data()
    settings.OUTBOX_LEASE_SECONDS = 0.05  # claims run out mid-batch, so relays take messages over
    settings.OUTBOX_RETRY_BASE_SECONDS = 0.001
    settings.OUTBOX_RETRY_MAX_SECONDS = 0.01
    settings.CIRCUIT_FAILURE_THRESHOLD = 10_000
    with simulated.running(error_rate=0.2, latency_ms=2) as sim:
        simulated.endpoints(sim.url, max_attempts=30)
        OutboxMessage.objects.bulk_create(
            OutboxMessage(endpoint=endpoint, topic=topic, payload=payload, idempotency_key=f"race:{n}")
            for n in range(300)
            for endpoint, topic, payload in [TOPICS[n % len(TOPICS)]]
        )
        start = threading.Barrier(relays)
        errors: list[BaseException] = []

        def relay() -> None:
            try:
                start.wait()
                deadline = time.monotonic() + 60
                while (
                    time.monotonic() < deadline
                    and OutboxMessage.objects.filter(state__in=[State.PENDING, State.SENDING]).exists()
                ):
                    relay_run(batch=10)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=relay) for _ in range(relays)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        stats = sim.stats()

    assert errors == [] and not any(thread.is_alive() for thread in threads)
    assert list(OutboxMessage.objects.values_list("state").distinct()) == [(State.DELIVERED,)]
    # Each key got past the injected faults and was applied once: never sent twice at once.
    assert stats["keys"] == {f"race:{n}": 1 for n in range(300)}
    assert stats["injected"]["errors"] > 0  # ... although many were sent more than once
    attempts: dict[int, list[DeliveryAttempt]] = {}
    for attempt in DeliveryAttempt.objects.order_by("at", "id"):
        attempts.setdefault(attempt.message_id, []).append(attempt)
    assert sum(map(len, attempts.values())) == stats["received"]  # every call is on record
    rounding = timedelta(milliseconds=1)
    for tries in attempts.values():
        assert [a.succeeded for a in tries] == [False] * (len(tries) - 1) + [True]
        for before, after in itertools.pairwise(tries):
            assert after.at >= before.at + timedelta(milliseconds=before.latency_ms) - rounding
