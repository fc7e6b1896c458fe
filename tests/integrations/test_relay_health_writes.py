"""The relay writes an endpoint's health only when it changes, so that concurrent relays
do not queue up on the endpoint's row after every delivery."""

from datetime import UTC, datetime, timedelta

import pytest

from fulfillment.core import clock
from integrations.adapters import Reply
from integrations.models import Endpoint
from integrations.relay import HEALTH_RESOLUTION, _record_health

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OK = Reply(200, {"ok": True}, 3)
REFUSED = Reply(422, {"error": "bad"}, 3, "HTTP 422")
DOWN = Reply(503, None, 3, "HTTP 503")


def health(endpoint: Endpoint) -> tuple[str, int, datetime | None]:
    endpoint.refresh_from_db()
    return endpoint.circuit, endpoint.consecutive_failures, endpoint.last_success_at


def test_successes_update_the_last_success_to_the_second() -> None:
    endpoint = Endpoint.objects.create(name="erp", base_url="http://erp.test")
    with clock.frozen(T0):
        _record_health(endpoint, OK)
        assert health(endpoint) == ("closed", 0, T0)
        clock.advance(HEALTH_RESOLUTION / 2)
        _record_health(endpoint, OK)
        assert health(endpoint) == ("closed", 0, T0)
        clock.advance(HEALTH_RESOLUTION / 2)
        _record_health(endpoint, OK)
        assert health(endpoint) == ("closed", 0, T0 + HEALTH_RESOLUTION)


def test_an_answer_after_failures_closes_the_circuit_at_once() -> None:
    endpoint = Endpoint.objects.create(name="erp", base_url="http://erp.test", last_success_at=T0)
    with clock.frozen(T0 + timedelta(milliseconds=100)):
        _record_health(endpoint, DOWN)
        assert health(endpoint) == ("closed", 1, T0)
        _record_health(endpoint, REFUSED)  # a refusal of one message: the endpoint works
        assert health(endpoint) == ("closed", 0, T0)
        _record_health(endpoint, DOWN)
        _record_health(endpoint, OK)  # resets the failures, so the last success is written too
        assert health(endpoint) == ("closed", 0, T0 + timedelta(milliseconds=100))

    Endpoint.objects.filter(pk=endpoint.pk).update(circuit=Endpoint.Circuit.HALF_OPEN)
    with clock.frozen(T0 + timedelta(milliseconds=200)):
        _record_health(endpoint, OK)
    assert health(endpoint) == ("closed", 0, T0 + timedelta(milliseconds=200))
