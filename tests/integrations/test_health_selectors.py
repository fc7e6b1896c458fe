"""Endpoint health figures on constructed traffic: exact rates, p95, backlog and dead letters."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fulfillment.core import clock
from fulfillment.core.models import OutboxMessage
from integrations import selectors
from integrations.models import DeliveryAttempt, Endpoint

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
State = OutboxMessage.State
_keys = iter(range(1, 10**6))


@pytest.fixture(autouse=True)
def now() -> Iterator[datetime]:
    with clock.frozen(NOW):
        yield NOW


def message(
    endpoint: str, state: str = State.DELIVERED, created_ago: timedelta = timedelta(0)
) -> OutboxMessage:
    n = next(_keys)
    return OutboxMessage.objects.create(
        endpoint=endpoint,
        topic="erp.status",
        payload={},
        idempotency_key=f"k-{n}",
        state=state,
        created_at=NOW - created_ago,
    )


def attempts(endpoint: str, latencies: list[int], *, failed: int = 0, ago: timedelta = timedelta(0)) -> None:
    """One message with an attempt per latency; the first ``failed`` of them failed."""
    m = message(endpoint)
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            message=m,
            at=NOW - ago - timedelta(seconds=i),
            latency_ms=latency,
            status_code=503 if i < failed else 200,
            succeeded=i >= failed,
        )
        for i, latency in enumerate(latencies)
    )


def cards() -> dict[str, selectors.EndpointHealth]:
    return {card.name: card for card in selectors.endpoint_health()}


def test_percentile_interpolates_between_the_closest_ranks_like_percentile_cont() -> None:
    assert selectors.percentile([], 0.95) is None
    assert selectors.percentile([7], 0.95) == 7
    assert selectors.percentile([40, 10, 30, 20], 0.95) == pytest.approx(38.5)
    assert selectors.percentile(list(range(10, 210, 10)), 0.95) == pytest.approx(190.5)
    assert selectors.percentile([1, 2, 3, 4, 5], 0.5) == 3


def test_success_rate_and_p95_over_the_window() -> None:
    Endpoint.objects.create(
        name="wms", base_url="http://wms.test", last_success_at=NOW - timedelta(minutes=3)
    )
    attempts("wms", list(range(10, 210, 10)), failed=5)  # 20 attempts, 15 succeeded
    attempts("wms", [5000, 5000, 5000], failed=3, ago=timedelta(hours=25))  # before the window

    wms = cards()["wms"]

    assert (wms.attempts, wms.succeeded, wms.success_rate) == (20, 15, 75.0)
    assert wms.latency_p95_ms == pytest.approx(190.5)
    assert wms.last_success_at == NOW - timedelta(minutes=3)
    assert wms.circuit == Endpoint.Circuit.CLOSED
    assert wms.tone == "ok"


def test_an_endpoint_without_attempts_has_no_rate_and_no_latency() -> None:
    Endpoint.objects.create(name="erp", base_url="http://erp.test")
    erp = cards()["erp"]
    assert (erp.attempts, erp.success_rate, erp.latency_p95_ms, erp.last_success_at) == (0, None, None, None)


def test_backlog_counts_pending_and_sending_and_dead_letters_apart() -> None:
    Endpoint.objects.create(name="carrier", base_url="http://carrier.test")
    message("carrier", State.PENDING, created_ago=timedelta(minutes=30))
    oldest = message("carrier", State.PENDING, created_ago=timedelta(hours=3))
    message("carrier", State.SENDING, created_ago=timedelta(minutes=1))
    message("carrier", State.DEAD, created_ago=timedelta(days=3))
    message("carrier", State.DEAD)
    message("carrier", State.DELIVERED)
    message("carrier", State.HANDLED)
    message("erp", State.PENDING)

    carrier = cards()["carrier"]

    assert (carrier.backlog, carrier.dead) == (3, 2)
    assert carrier.oldest_waiting_at == oldest.created_at
    assert carrier.tone == "warn"  # dead letters wait for someone


def test_every_system_has_a_card_and_unconfigured_or_open_ones_show_as_danger() -> None:
    Endpoint.objects.create(
        name="wms", base_url="http://wms.test", circuit=Endpoint.Circuit.OPEN, circuit_opened_at=NOW
    )
    Endpoint.objects.create(name="erp", base_url="http://erp.test", circuit=Endpoint.Circuit.HALF_OPEN)
    Endpoint.objects.create(name="notify", base_url="http://notify.test", enabled=False)
    message("legacy", State.PENDING)  # a system nobody configured

    found = cards()

    assert list(found) == ["carrier", "erp", "legacy", "notify", "wms"]
    assert {name: card.tone for name, card in found.items()} == {
        "carrier": "danger",
        "erp": "warn",
        "legacy": "danger",
        "notify": "danger",
        "wms": "danger",
    }
    assert (found["legacy"].endpoint, found["legacy"].circuit, found["legacy"].backlog) == (None, "", 1)


def test_health_runs_a_fixed_number_of_queries_whatever_the_traffic() -> None:
    for name in ("erp", "wms", "carrier", "notify"):
        Endpoint.objects.create(name=name, base_url=f"http://{name}.test")
    attempts("wms", [10, 20])

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            selectors.endpoint_health()
        return len(queries)

    few = count()
    for name in ("erp", "wms", "carrier", "notify", "other"):
        attempts(name, list(range(1, 40)), failed=3)
        message(name, State.DEAD)
        message(name, State.PENDING)
    assert count() == few == (3 if connection.vendor == "postgresql" else 4)


def test_the_latency_sample_takes_the_most_recent_attempts_per_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(selectors, "LATENCY_SAMPLE", 3)
    # Attempt i is i seconds old: the three newest have latencies 1, 2, 3.
    attempts("wms", [1, 2, 3, 400, 500])
    attempts("erp", [9])
    assert {k: sorted(v) for k, v in selectors._latency_samples(NOW - timedelta(hours=1)).items()} == {
        "wms": [1, 2, 3],
        "erp": [9],
    }
