"""One client per external system, each a thin interface over real HTTP.

Sessions (with their connection pools) are kept per endpoint and thread, as a session
is not safe to share between threads; every call has a timeout and carries the message's
idempotency key, so a retried call is applied once by the receiver.
"""

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import requests

from integrations.models import Endpoint

_local = threading.local()


@dataclass(frozen=True)
class Reply:
    status: int | None
    body: Any
    latency_ms: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Timeouts, connection errors, 5xx and 429 may succeed later; other 4xx will not."""
        return self.status is None or self.status >= 500 or self.status in (408, 425, 429)


def _session(endpoint: Endpoint) -> requests.Session:
    sessions: dict[tuple[str, str], requests.Session] = _local.__dict__.setdefault("sessions", {})
    key = (endpoint.name, endpoint.base_url)
    if key not in sessions:
        session = requests.Session()
        # The environment's proxy (HTTP_PROXY, NO_PROXY, ...) and CA bundle for this
        # endpoint, read once: left to requests, every call read the whole environment
        # again, which cost the relay about as much CPU as the call itself. The endpoint's
        # token is the credential, so ~/.netrc is not consulted.
        session.proxies = requests.utils.get_environ_proxies(endpoint.base_url)
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        session.trust_env = False
        sessions[key] = session
    return sessions[key]


class HttpAdapter:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.session = _session(endpoint)

    def _call(self, method: str, path: str, *, key: str = "", **kwargs: Any) -> Reply:
        headers = {"Accept": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                self.endpoint.base_url.rstrip("/") + path,
                headers=headers,
                timeout=self.endpoint.timeout_seconds,
                allow_redirects=False,  # a redirected POST would be re-sent as a GET
                **kwargs,
            )
        except requests.RequestException as exc:
            return Reply(None, None, _ms_since(started), f"{type(exc).__name__}: {exc}"[:500])
        try:
            body = response.json()
        except ValueError:
            body = response.text[:500]
        reply = Reply(response.status_code, body, _ms_since(started))
        return reply if reply.ok else replace(reply, error=f"HTTP {response.status_code}: {str(body)[:300]}")

    def post(self, path: str, payload: dict[str, Any], key: str) -> Reply:
        return self._call("POST", path, key=key, json=payload)


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


class WmsAdapter(HttpAdapter):
    def release(self, payload: dict[str, Any], key: str) -> Reply:
        return self.post("/wms/releases", payload, key)


class CarrierAdapter(HttpAdapter):
    def book(self, payload: dict[str, Any], key: str) -> Reply:
        return self.post("/carrier/bookings", payload, key)


class ErpAdapter(HttpAdapter):
    def invoice(self, payload: dict[str, Any], key: str) -> Reply:
        return self.post("/erp/invoices", payload, key)

    def order_status(self, payload: dict[str, Any], key: str) -> Reply:
        return self.post("/erp/order-status", payload, key)

    def new_orders(self, cursor: str, limit: int = 200) -> Reply:
        return self._call("GET", "/erp/orders", params={"cursor": cursor, "limit": limit})


class NotifyAdapter(HttpAdapter):
    def notify(self, payload: dict[str, Any], key: str) -> Reply:
        return self.post("/notifications", payload, key)


# How each outbox topic is sent, given its endpoint.
SENDERS: dict[str, Callable[[Endpoint], Callable[[dict[str, Any], str], Reply]]] = {
    "order.release": lambda ep: WmsAdapter(ep).release,
    "carrier.booking": lambda ep: CarrierAdapter(ep).book,
    "erp.invoice": lambda ep: ErpAdapter(ep).invoice,
    "erp.status": lambda ep: ErpAdapter(ep).order_status,
    "customer.notify": lambda ep: NotifyAdapter(ep).notify,
}
