"""The HTTP clients honour the environment's proxy settings, which they read once per
session rather than on every call."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from integrations.adapters import ErpAdapter
from integrations.models import Endpoint

STATUS = {"order": "SO-1", "status": "released", "at": "2026-03-02T09:00:00+00:00"}


class Recorder(ThreadingHTTPServer):
    """Answers every POST with 200, noting its request line (a proxy is sent the whole URL)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append(f"{self.command} {self.path}")
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    """An HTTP proxy and the system behind it."""
    pair = (Recorder(), Recorder())
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}) for s in pair]
    for thread in threads:
        thread.start()
    try:
        yield pair
    finally:
        for server in pair:
            server.shutdown()
            server.server_close()


def erp(name: str, base_url: str) -> ErpAdapter:
    return ErpAdapter(Endpoint(name=name, base_url=base_url, timeout_seconds=2.0))


def test_calls_go_through_the_proxy_the_environment_names(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, system = servers
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    assert erp("erp-proxied", system.url).order_status(STATUS, "k1").ok
    assert erp("erp-proxied", system.url).order_status(STATUS, "k2").ok

    assert proxy.seen == [f"POST {system.url}/erp/order-status"] * 2
    assert system.seen == []


def test_hosts_the_environment_exempts_are_called_directly(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, system = servers
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    assert erp("erp-direct", system.url).order_status(STATUS, "k1").ok

    assert (proxy.seen, system.seen) == ([], ["POST /erp/order-status"])
