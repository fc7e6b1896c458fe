"""Callers of the API (token, session, anonymous) and an ERP order to push."""

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

from orders.models import Customer, Product, Warehouse
from portal.api.auth import api_token_issue
from portal.api.models import ApiToken
from tests import factories

_seq = itertools.count(1)
PROBLEM = "application/problem+json"


@dataclass
class Caller:
    client: Client
    user: User | None = None
    token: ApiToken | None = None
    key: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = dict(self.headers)
        if self.key:
            headers["Authorization"] = f"Token {self.key}"
        return {**headers, **extra}

    def get(self, path: str, params: dict[str, Any] | None = None, **headers: str) -> Any:
        return self.client.get(path, params or {}, headers=self._headers(headers))

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        raw: bytes | str | None = None,
        content_type: str = "application/json",
        **headers: str,
    ) -> Any:
        extra = dict(headers)
        if key is not None:
            extra["Idempotency-Key"] = key
        data = raw if raw is not None else json.dumps({} if body is None else body)
        return self.client.post(path, data, content_type=content_type, headers=self._headers(extra))

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        if method == "GET":
            return self.get(path, **headers)
        if method == "POST":
            return self.post(path, body, **headers)
        return self.client.generic(method, path, headers=self._headers(headers))


def token_caller(
    *roles: str, scopes: tuple[str, ...] = ("read", "write"), user: User | None = None
) -> Caller:
    user = user or factories.user(f"api{next(_seq)}", *roles)
    token, key = api_token_issue(user=user, scopes=scopes, name="test")
    return Caller(client=Client(), user=user, token=token, key=key)


def session_caller(*roles: str, csrf: bool = False) -> Caller:
    user = factories.user(f"web{next(_seq)}", *roles)
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return Caller(client=client, user=user)


@pytest.fixture
def api() -> Callable[..., Caller]:
    return token_caller


@pytest.fixture
def anonymous() -> Caller:
    return Caller(client=Client())


@pytest.fixture(autouse=True)
def _fresh_throttle_counters() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@dataclass(frozen=True)
class MasterData:
    customer: Customer
    warehouse: Warehouse
    product: Product


@pytest.fixture
def master(db: None) -> MasterData:
    wh = factories.warehouse("W1")
    prod = factories.product("SKU-1", price="12.50")
    factories.stock(wh, prod, 100)
    return MasterData(customer=factories.customer(code="C1", name="Acme"), warehouse=wh, product=prod)


def erp_order(external_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """An ERP push body for the ``master`` data."""
    body = {
        "external_id": external_id or f"ERP-{next(_seq):06d}",
        "customer": "C1",
        "warehouse": "W1",
        "promised_date": "2030-01-15",
        "currency": "EUR",
        "ship_to": {
            "name": "Receiving",
            "line1": "1 Dock Road",
            "city": "Hull",
            "postal_code": "HU1",
            "country": "GB",
        },
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": "12.50"}],
    }
    return {**body, **overrides}


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = json.loads(response.content)
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:fulfillment:problem:{code}"
    assert body["title"] and isinstance(body["detail"], str)
    return body
