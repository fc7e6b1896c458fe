"""The bundled simulator, started in-process on a free loopback port, and the portal's
endpoints pointing at it: the relay and the ERP pull talk real HTTP to it."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from integrations.models import Endpoint
from integrations.simulator import Config, make_server

# A short client timeout; the simulator's timeouts and lost responses hang longer.
CLIENT_TIMEOUT = 0.5
SIM_TIMEOUT = 1.0
NOWHERE = "http://127.0.0.1:9"  # webhooks of the simulated WMS go nowhere in these tests


class Sim:
    def __init__(self, url: str) -> None:
        self.url = url

    def configure(self, **values: Any) -> None:
        response = requests.post(self.url + "/_config", json=values, timeout=5)
        assert response.status_code == 200, response.text

    def stats(self) -> dict[str, Any]:
        return requests.get(self.url + "/_stats", timeout=5).json()

    def received(self, path: str) -> int:
        return self.stats()["by_path"].get(path, {}).get("received", 0)

    def applied(self) -> list[dict[str, Any]]:
        return requests.get(self.url + "/_applied", timeout=5).json()["applied"]

    def add_erp_orders(self, orders: list[dict[str, Any]]) -> None:
        response = requests.post(self.url + "/_erp/orders", json={"orders": orders}, timeout=5)
        assert response.status_code == 201, response.text

    def erp_orders(self, cursor: str, limit: int = 200) -> dict[str, Any]:
        params: dict[str, str | int] = {"cursor": cursor, "limit": limit}
        return requests.get(self.url + "/erp/orders", params=params, timeout=5).json()


@contextmanager
def running(**overrides: Any) -> Iterator[Sim]:
    """A simulator without faults unless asked; releases would be picked only after
    hours (``time_scale``), so no webhook comes back during a test."""
    config = {
        "port": 0,
        "portal_url": NOWHERE,
        "timeout_seconds": SIM_TIMEOUT,
        "booking_failure_rate": 0.0,
        "short_pick_rate": 0.0,
        "time_scale": 10_000.0,
        "callback_attempts": 1,
        "seed": 7,
    }
    server = make_server(Config(**{**config, **overrides}))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Sim(server.url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def endpoints(url: str, *, timeout: float = CLIENT_TIMEOUT, max_attempts: int = 8) -> dict[str, Endpoint]:
    """The four endpoints, all at the simulator."""
    return {
        name: Endpoint.objects.create(
            name=name, base_url=url, token=f"{name}-token", timeout_seconds=timeout, max_attempts=max_attempts
        )
        for name in ("erp", "wms", "carrier", "notify")
    }
