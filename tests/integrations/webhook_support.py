"""Signed webhook requests through the real test client, and the counts that prove a
refused request wrote nothing."""

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import connections
from django.http import HttpResponse
from django.test import Client

from exceptions.models import OrderException
from fulfillment.core import clock
from fulfillment.core.models import OutboxMessage, WorkItem
from integrations import inbound
from integrations.models import InboundEvent, Partner, PartnerSecret
from integrations.signatures import sign
from orders.models import Inventory, Return
from tests import factories

# Monday 2 March 2026, 09:00 UTC: the frozen "now" of these tests; events happen before it.
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECRETS = {"wms": "demo-wms-secret", "carrier": "demo-carrier-secret"}
PATHS = {"wms": "/api/v1/webhooks/wms/", "carrier": "/api/v1/webhooks/carrier/"}
PROBLEM = "application/problem+json"


def make_partners() -> dict[str, Partner]:
    """The partners as the demo data configures them."""
    partners = {}
    for name, secret in SECRETS.items():
        partners[name] = Partner.objects.create(name=name)
        PartnerSecret.objects.create(partner=partners[name], secret=secret)
    return partners


def envelope(event_type: str, data: dict[str, Any], event_id: str, occurred_at: str) -> dict[str, Any]:
    return {"id": event_id, "type": event_type, "occurred_at": occurred_at, "data": data}


def body_of(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def post_raw(client: Client, partner: str, body: bytes, signature: str | None) -> HttpResponse:
    headers = {} if signature is None else {"X-Signature": signature}
    return client.post(PATHS[partner], data=body, content_type="application/json", headers=headers)


def post(
    client: Client,
    partner: str,
    document: Any,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
) -> HttpResponse:
    """POST ``document`` signed the way a partner signs it (with its demo secret, now)."""
    body = document if isinstance(document, bytes) else body_of(document)
    stamp = int(clock.now().timestamp()) if timestamp is None else timestamp
    return post_raw(client, partner, body, sign(secret or SECRETS[partner], body, stamp))


def stored(partner: str, event_id: str) -> InboundEvent:
    return InboundEvent.objects.get(partner__name=partner, event_id=event_id)


def deliver(client: Client, partner: str, document: dict[str, Any]) -> str:
    """What a partner and a worker do: POST the event, then run the apply its commit kicks
    (a duplicate kicks nothing; no other event is on its way, so the run does not linger).
    Returns the acknowledged status."""
    response = post(client, partner, document)
    assert response.status_code == 202, response.content
    status = response.json()["status"]
    if status == "accepted":
        inbound.apply_pending(linger_seconds=0)
    return status


def counts() -> dict[str, int]:
    """Rows any webhook could write: compare before and after a refused request."""
    models = [InboundEvent, OutboxMessage, WorkItem, OrderException, Inventory, Return]
    return {**factories.row_counts(), **{m.__name__: m.objects.count() for m in models}}


def assert_problem(response: HttpResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["type"] == f"urn:fulfillment:problem:{code}"
    assert body["status"] == status
    assert body["code"] == code
    assert body["title"]
    assert body["detail"]
    return body


def collide(*actions: Callable[[threading.Barrier], Any]) -> list[Any]:
    """Run each action in its own thread (so on its own database connection); each waits at
    the barrier before its write, so the writes really meet. Returns each result or the
    exception raised, in order."""
    barrier = threading.Barrier(len(actions), timeout=30)
    results: list[Any] = [None] * len(actions)

    def run(i: int, action: Callable[[threading.Barrier], Any]) -> None:
        try:
            results[i] = action(barrier)
        except Exception as exc:  # handed back to the test, which asserts on it
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, a), daemon=True) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a racer hung"
    return results
