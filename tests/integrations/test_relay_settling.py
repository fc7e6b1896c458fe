"""What a delivery costs the relay: a lease that outlasts the send is not renewed, and the
quick successes of a batch are settled together, a few statements a message, but never
over a send that their leases might not outlast."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pytest_django.fixtures import Settings

from fulfillment.core import clock
from fulfillment.core.models import OutboxMessage
from fulfillment.core.outbox import outbox_put
from integrations import relay
from integrations.adapters import Reply
from integrations.models import DeliveryAttempt, Endpoint
from integrations.relay import SETTLE_WITHIN, relay_claim, relay_deliver, relay_run

pytestmark = pytest.mark.django_db
State = OutboxMessage.State
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TIMEOUT = 0.5  # the endpoint's: a send may take 1.5 s at worst (SEND_LEASE_TIMEOUTS)


@pytest.fixture(autouse=True)
def now(settings: Settings) -> Iterator[datetime]:
    settings.OUTBOX_LEASE_SECONDS = 60.0
    Endpoint.objects.create(name="erp", base_url="http://erp.test", timeout_seconds=TIMEOUT)
    with clock.frozen(T0):
        yield T0


class Erp:
    """The ERP's status sender, stood in for: it answers 200 ``latency_ms`` later (on the
    frozen clock and on the relay's monotonic one) and notes, for each call, the message's
    lease and every message's state as the database has them during the call."""

    def __init__(self) -> None:
        self.latency_ms = 2
        self.watching = True
        self.seconds = 0.0
        self.calls: list[tuple[datetime | None, dict[str, str]]] = []

    def sender(self, endpoint: Endpoint) -> Callable[[dict[str, Any], str], Reply]:
        return self.send

    def send(self, payload: dict[str, Any], key: str) -> Reply:
        if self.watching:
            lease = OutboxMessage.objects.values_list("lease_until", flat=True).get(idempotency_key=key)
            self.calls.append((lease, dict(OutboxMessage.objects.values_list("idempotency_key", "state"))))
        clock.advance(timedelta(milliseconds=self.latency_ms))
        self.seconds += self.latency_ms / 1000
        return Reply(200, {"ok": True}, self.latency_ms)

    def monotonic(self) -> float:
        return self.seconds

    def states_during_calls(self) -> list[dict[str, str]]:
        return [states for _, states in self.calls]


@pytest.fixture
def erp(monkeypatch: pytest.MonkeyPatch) -> Erp:
    erp = Erp()
    monkeypatch.setitem(relay.SENDERS, "erp.status", erp.sender)
    monkeypatch.setattr(relay, "time", SimpleNamespace(monotonic=erp.monotonic))
    return erp


def put(n: int) -> OutboxMessage:
    return outbox_put(endpoint="erp", topic="erp.status", payload={"n": n}, idempotency_key=f"s:{n}")


def sending(*keys: int, delivered: tuple[int, ...] = ()) -> dict[str, str]:
    return {f"s:{n}": State.SENDING for n in keys} | {f"s:{n}": State.DELIVERED for n in delivered}


def test_a_lease_that_outlasts_the_send_is_sent_under_as_claimed(now: datetime, erp: Erp) -> None:
    put(1)
    [lease] = relay_claim()
    clock.advance(timedelta(seconds=58.5))  # 1.5 s left: just enough

    assert relay_deliver(lease=lease) == State.DELIVERED
    assert erp.calls[0][0] == lease.until == now + timedelta(seconds=60)


def test_a_lease_shorter_than_the_send_is_extended_over_it_first(
    now: datetime, erp: Erp, settings: Settings
) -> None:
    put(1)
    [lease] = relay_claim()
    clock.advance(timedelta(seconds=58.6))  # 1.4 s left: renewed for the lease's time
    sent_at = clock.now()

    assert relay_deliver(lease=lease) == State.DELIVERED
    assert erp.calls[0][0] == sent_at + timedelta(seconds=60)

    settings.OUTBOX_LEASE_SECONDS = 1.0  # shorter than the send: renewed for the send's time
    put(2)
    [lease] = relay_claim()
    sent_at = clock.now()
    assert relay_deliver(lease=lease) == State.DELIVERED
    assert erp.calls[1][0] == sent_at + timedelta(seconds=3 * TIMEOUT)


def test_quick_deliveries_are_settled_together_at_the_end_of_the_batch(erp: Erp) -> None:
    for n in range(3):
        put(n)

    assert relay_run() == 3

    assert erp.states_during_calls() == [sending(0, 1, 2)] * 3
    ms = timedelta(milliseconds=1)
    assert list(
        OutboxMessage.objects.order_by("pk").values_list("state", "attempts", "lease_until", "delivered_at")
    ) == [(State.DELIVERED, 1, None, T0 + n * ms) for n in (2, 4, 6)]  # when each answer came
    assert list(
        DeliveryAttempt.objects.order_by("pk").values_list("message__idempotency_key", "status_code", "at")
    ) == [("s:0", 200, T0), ("s:1", 200, T0 + 2 * ms), ("s:2", 200, T0 + 4 * ms)]


def test_a_delivery_waits_at_most_settle_within_for_the_next_ones(erp: Erp) -> None:
    erp.latency_ms = round(SETTLE_WITHIN * 1000 * 0.4)
    for n in range(5):
        put(n)

    assert relay_run() == 5

    # The fourth answer came 1.2 x SETTLE_WITHIN after the first: those four were settled.
    assert erp.states_during_calls() == [sending(0, 1, 2, 3, 4)] * 4 + [sending(4, delivered=(0, 1, 2, 3))]


def test_a_delivery_is_settled_at_once_after_a_send_that_took_settle_within_or_longer(erp: Erp) -> None:
    erp.latency_ms = round(SETTLE_WITHIN * 1000)
    for n in range(3):
        put(n)

    assert relay_run() == 3

    assert erp.states_during_calls() == [
        sending(0, 1, 2),
        sending(1, 2, delivered=(0,)),
        sending(2, delivered=(0, 1)),
    ]


def test_deliveries_are_settled_before_a_send_their_leases_might_not_outlast(
    erp: Erp, settings: Settings
) -> None:
    settings.OUTBOX_LEASE_SECONDS = 1.0  # each send extends its lease by 1.5 s, no more
    for n in range(3):
        put(n)

    assert relay_run() == 3

    assert erp.states_during_calls() == [
        sending(0, 1, 2),
        sending(1, 2, delivered=(0,)),
        sending(2, delivered=(0, 1)),
    ]


def test_a_batch_of_quick_deliveries_costs_three_statements_a_message(erp: Erp) -> None:
    erp.watching = False
    for n in range(20):
        put(n)

    with CaptureQueriesContext(connection) as queries:
        assert relay_run(batch=20) == 20

    # Three a message (its update, the savepoint around applying its answer and its
    # release); the rest are the batch's: the claims, its endpoints, one transaction.
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) <= 3 * 20 + 15, "\n".join(statements)
    assert sum(sql.startswith('INSERT INTO "integrations_deliveryattempt"') for sql in statements) == 1
