from collections.abc import Iterator

import pytest
from pytest_django.fixtures import Settings

from fulfillment.core.roles import CUSTOMER_SERVICE
from portal.api import throttling
from tests.api.conftest import assert_problem, session_caller, token_caller

pytestmark = pytest.mark.django_db
now = [1_000_000.0]


@pytest.fixture(autouse=True)
def low_rates(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """3 a minute per token, 2 a minute per session user, on a clock the test moves."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"token": "3/min", "user": "2/min"},
    }
    now[0] = 1_000_000.0
    monkeypatch.setattr(throttling._LiveRateThrottle, "timer", staticmethod(lambda: now[0]))
    yield


def test_a_token_over_its_rate_gets_429_with_retry_after() -> None:
    caller = token_caller(CUSTOMER_SERVICE)
    for _ in range(3):
        assert caller.get("/api/v1/carriers/").status_code == 200
    now[0] += 15
    response = caller.get("/api/v1/carriers/")
    problem = assert_problem(response, 429, "throttled")
    assert response["Retry-After"] == "45"
    assert problem["detail"] == "Request was throttled. Expected available in 45 seconds."
    now[0] += 45
    assert caller.get("/api/v1/carriers/").status_code == 200


def test_each_token_has_its_own_budget_and_posts_count_too() -> None:
    one = token_caller(CUSTOMER_SERVICE)
    two = token_caller(CUSTOMER_SERVICE, user=one.user)
    for _ in range(3):
        one.get("/api/v1/carriers/")
    assert_problem(one.post("/api/v1/orders/", {}), 429, "throttled")
    assert two.get("/api/v1/carriers/").status_code == 200


def test_a_session_user_has_the_user_rate() -> None:
    person = session_caller(CUSTOMER_SERVICE)
    assert [person.get("/api/v1/carriers/").status_code for _ in range(3)] == [200, 200, 429]
    assert session_caller(CUSTOMER_SERVICE).get("/api/v1/carriers/").status_code == 200


def test_a_changed_rate_applies_at_once(settings: Settings) -> None:
    caller = token_caller(CUSTOMER_SERVICE)
    for _ in range(3):
        caller.get("/api/v1/carriers/")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token": "10/min"}}
    assert caller.get("/api/v1/carriers/").status_code == 200
