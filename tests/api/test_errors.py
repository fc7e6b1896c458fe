"""Every error path answers application/problem+json (RFC 9457) with a stable code."""

from typing import Any

import pytest
from django.test import Client

from fulfillment.core.roles import CUSTOMER_SERVICE, FINANCE
from orders.models import Status
from portal.api import orders as api_orders
from tests import factories
from tests.api.conftest import Caller, MasterData, assert_problem, erp_order, token_caller

pytestmark = pytest.mark.django_db


@pytest.fixture
def cs() -> Caller:
    return token_caller(CUSTOMER_SERVICE)


def test_every_client_error_is_a_problem(cs: Caller, anonymous: Caller, master: MasterData) -> None:
    order = factories.order_in(Status.RELEASED)
    one = f"/api/v1/orders/{order.pk}/"
    cases: list[tuple[Any, int, str]] = [
        (cs.post("/api/v1/orders/", raw=b"{,}"), 400, "parse_error"),
        (cs.post("/api/v1/orders/", erp_order(), key="\u00e9"), 400, "invalid_idempotency_key"),
        (anonymous.get(one), 401, "not_authenticated"),
        (anonymous.get(one, Authorization="Token nope"), 401, "authentication_failed"),
        (
            token_caller(CUSTOMER_SERVICE, scopes=("read",)).post("/api/v1/orders/", erp_order()),
            403,
            "insufficient_scope",
        ),
        (token_caller(FINANCE).post(f"{one}actions/hold/", {"reason": "x"}), 403, "permission_denied"),
        (cs.get("/api/v1/nowhere/"), 404, "not_found"),
        (anonymous.get("/api/v1/nowhere/"), 404, "not_found"),
        (cs.get("/api/v1/orders/424242/"), 404, "not_found"),
        (cs.call("DELETE", one), 405, "method_not_allowed"),
        (cs.call("PUT", "/api/v1/orders/"), 405, "method_not_allowed"),
        (cs.call("OPTIONS", "/api/v1/orders/"), 405, "method_not_allowed"),
        (cs.get(f"{one}actions/hold/"), 405, "method_not_allowed"),
        (cs.get("/api/v1/orders/", Accept="text/html"), 406, "not_acceptable"),
        (cs.post(f"{one}actions/hold/", {"reason": "x"}), 409, "transition_not_allowed"),
        (cs.post("/api/v1/orders/", raw="a=1", content_type="text/plain"), 415, "unsupported_media_type"),
        (cs.post("/api/v1/orders/", {}), 422, "invalid_input"),
        (cs.get("/api/v1/orders/", {"nope": "1"}), 422, "invalid_input"),
    ]
    for response, status, code in cases:
        assert_problem(response, status, code)
    assert cs.call("DELETE", one)["Allow"] == "GET, HEAD"


def test_validation_errors_name_every_field_with_dotted_paths(cs: Caller, master: MasterData) -> None:
    body = erp_order(ship_to={"name": "", "line1": "x", "city": "y", "country": "GBR"})
    body["lines"] = [{"sku": "SKU-1", "quantity": 1, "unit_price": "1"}, {"sku": "SKU-1", "quantity": "x"}]
    del body["customer"]
    problem = assert_problem(cs.post("/api/v1/orders/", body), 422, "invalid_input")
    assert problem["errors"] == {
        "customer": ["This field is required."],
        "ship_to.name": ["This field may not be blank."],
        "ship_to.country": ["Ensure this field has no more than 2 characters."],
        "lines.1.quantity": ["A valid integer is required."],
        "lines.1.unit_price": ["This field is required."],
    }
    assert problem["detail"] == "The request is not valid; see errors."
    assert problem["title"] == "Invalid input"


def test_a_server_error_under_api_is_a_problem_with_the_request_id(
    cs: Caller, master: MasterData, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = factories.order_in(Status.ALLOCATED)

    def broken(order_id: int) -> None:
        raise RuntimeError("the database fell over")

    monkeypatch.setattr(api_orders, "order_view", broken)
    cs.client.raise_request_exception = False
    response = cs.get(f"/api/v1/orders/{order.pk}/", **{"X-Request-ID": "trace-500"})
    problem = assert_problem(response, 500, "server_error")
    assert (
        problem["detail"] == "Something went wrong on our side; quote request id trace-500 when reporting it."
    )
    assert "fell over" not in response.content.decode()


def test_screens_keep_their_html_error_pages() -> None:
    client = Client()
    client.force_login(factories.user("someone", CUSTOMER_SERVICE))
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
