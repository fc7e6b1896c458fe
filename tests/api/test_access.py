"""The role table of portal/api/permissions.py on every endpoint, for every role and for
anonymous callers; scopes; sessions with CSRF."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, FINANCE, PLANNER
from orders.models import Order, OrderTransition, Status
from tests import factories
from tests.api.conftest import Caller, MasterData, assert_problem, erp_order, session_caller, token_caller

pytestmark = pytest.mark.django_db

CS, PL, FI, AD = CUSTOMER_SERVICE, PLANNER, FINANCE, ADMIN
EVERYONE = {CS, PL, FI, AD}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {id}: an order made by ``order_status``
    allowed: set[str] | None  # None: any authenticated user, even one without a role
    ok: int = 200
    body: Callable[[], Any] | None = None
    order_status: str = Status.ALLOCATED


ENDPOINTS = [
    Endpoint("GET", "/api/v1/customers/", EVERYONE),
    Endpoint("GET", "/api/v1/products/", EVERYONE),
    Endpoint("GET", "/api/v1/warehouses/", EVERYONE),
    Endpoint("GET", "/api/v1/carriers/", EVERYONE),
    Endpoint("GET", "/api/v1/inventory/", EVERYONE),
    Endpoint("GET", "/api/v1/orders/", EVERYONE),
    Endpoint("GET", "/api/v1/orders/{id}/", EVERYONE),
    Endpoint("POST", "/api/v1/orders/", {CS, AD}, ok=201, body=erp_order),
    Endpoint("POST", "/api/v1/orders/{id}/actions/hold/", {CS, PL, AD}, body=lambda: {"reason": "check"}),
    Endpoint(
        "POST",
        "/api/v1/orders/{id}/actions/release_hold/",
        {CS, PL, AD},
        body=lambda: {"reason": "done"},
        order_status=Status.ON_HOLD,
    ),
    Endpoint(
        "POST", "/api/v1/orders/{id}/actions/cancel/", {CS, AD}, body=lambda: {"reason": "customer asked"}
    ),
    Endpoint("GET", "/api/v1/schema/", None),
]
WHO = ["anonymous", "no role", CS, PL, FI, AD, "superuser"]


def caller_for(who: str) -> Caller:
    if who == "anonymous":
        return Caller(client=Client())
    if who == "superuser":
        user = User.objects.create_superuser("root", password="pw")
        return token_caller(user=user)
    return token_caller(*([] if who == "no role" else [who]))


def role_of(who: str) -> str | None:
    return {"superuser": AD, "no role": None, "anonymous": None}.get(who, who)


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_permission_matrix(endpoint: Endpoint, who: str, master: MasterData) -> None:
    order = factories.order_in(endpoint.order_status)
    path = endpoint.path.format(id=order.pk)
    caller = caller_for(who)
    transitions_before = OrderTransition.objects.count()
    orders_before = Order.objects.count()

    response = caller.call(endpoint.method, path, endpoint.body() if endpoint.body else None)

    if who == "anonymous":
        assert_problem(response, 401, "not_authenticated")
        permitted = False
    else:
        permitted = endpoint.allowed is None or role_of(who) in endpoint.allowed
        if permitted:
            assert response.status_code == endpoint.ok, response.content
        else:
            body = assert_problem(response, 403, "permission_denied")
            assert body["detail"] == "Your account has no role that may do this."
    if endpoint.method == "POST" and not permitted:
        assert OrderTransition.objects.count() == transitions_before
        assert Order.objects.count() == orders_before
        order.refresh_from_db()
        assert order.status == endpoint.order_status


# --- scopes -----------------------------------------------------------------------------


def test_a_read_token_cannot_post(master: MasterData) -> None:
    order = factories.order_in(Status.ALLOCATED)
    reader = token_caller(CS, scopes=("read",))
    assert reader.get(f"/api/v1/orders/{order.pk}/").status_code == 200
    for path, body in [
        ("/api/v1/orders/", erp_order()),
        (f"/api/v1/orders/{order.pk}/actions/hold/", {"reason": "x"}),
    ]:
        body_ = assert_problem(reader.post(path, body), 403, "insufficient_scope")
        assert body_["detail"] == "This token lacks the 'write' scope."
    order.refresh_from_db()
    assert order.status == Status.ALLOCATED and Order.objects.count() == 1


@pytest.mark.parametrize("scopes", [("write",), ("admin",)])
def test_reading_needs_the_read_scope(scopes: tuple[str, ...], master: MasterData) -> None:
    caller = token_caller(AD, scopes=scopes)
    body = assert_problem(caller.get("/api/v1/orders/"), 403, "insufficient_scope")
    assert body["detail"] == "This token lacks the 'read' scope."


def test_a_write_only_token_can_push_orders(master: MasterData) -> None:
    assert token_caller(CS, scopes=("write",)).post("/api/v1/orders/", erp_order()).status_code == 201


def test_the_role_is_checked_as_well_as_the_scope(master: MasterData) -> None:
    order = factories.order_in(Status.ALLOCATED)
    finance = token_caller(FI, scopes=("read", "write", "admin"))
    assert_problem(
        finance.post(f"/api/v1/orders/{order.pk}/actions/cancel/", {"reason": "x"}), 403, "permission_denied"
    )


# --- sessions (the screens' login) --------------------------------------------------------


def test_a_session_has_every_scope_and_the_same_roles(master: MasterData) -> None:
    order = factories.order_in(Status.ALLOCATED)
    planner = session_caller(PL)
    assert planner.get("/api/v1/orders/").status_code == 200
    assert (
        planner.post(f"/api/v1/orders/{order.pk}/actions/hold/", {"reason": "stock"}).json()["status"]
        == "on_hold"
    )
    assert_problem(
        planner.post(f"/api/v1/orders/{order.pk}/actions/cancel/", {"reason": "x"}), 403, "permission_denied"
    )


def test_a_session_post_needs_the_csrf_token(master: MasterData) -> None:
    order = factories.order_in(Status.ALLOCATED)
    cs = session_caller(CS, csrf=True)
    path = f"/api/v1/orders/{order.pk}/actions/hold/"
    body = assert_problem(cs.post(path, {"reason": "x"}), 403, "permission_denied")
    assert body["detail"].startswith("CSRF Failed")
    order.refresh_from_db()
    assert order.status == Status.ALLOCATED

    secret = "k" * 32  # what the screens' pages put in the cookie and the form
    cs.client.cookies["csrftoken"] = secret
    assert cs.post(path, {"reason": "x"}, **{"X-CSRFToken": secret}).status_code == 200
    order.refresh_from_db()
    assert order.status == Status.ON_HOLD


def test_the_api_never_redirects_to_the_login_page(anonymous: Caller) -> None:
    response = anonymous.get("/api/v1/orders/")
    assert response.status_code == 401 and "Location" not in response
