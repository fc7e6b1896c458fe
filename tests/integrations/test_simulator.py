"""The bundled simulator of the ERP, the WMS and a carrier, driven over real HTTP on loopback.

No database: the simulator runs in-process on a free port, and a tiny stdlib HTTP server
stands in for the portal's webhook endpoints (it checks every signature itself).
"""

import base64
import datetime as dt
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from integrations.simulator import Config, SimulatorServer, make_server, parse_args

WMS_SECRET = "test-wms-secret"
CARRIER_SECRET = "test-carrier-secret"
REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.01)
    raise AssertionError("timed out waiting")


class Portal:
    """Records the webhooks it receives and verifies their signatures, like the portal does."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []  # every request, retries and duplicates included
        self.fail_next = 0
        self.lock = threading.Lock()
        portal = self

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                partner = self.path.rstrip("/").rsplit("/", 1)[-1]
                secret = {"wms": WMS_SECRET, "carrier": CARRIER_SECRET}[partner]
                valid = signature_valid(self.headers.get("X-Signature", ""), body, secret)
                with portal.lock:
                    failing = portal.fail_next > 0
                    portal.fail_next -= failing
                    if not failing and valid:
                        portal.received.append({"partner": partner, **json.loads(body)})
                status = 500 if failing else 202 if valid else 401
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def events(self, partner: str | None = None, event_type: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                event
                for event in self.received
                if partner in (None, event["partner"]) and event_type in (None, event["type"])
            ]


def signature_valid(header: str, body: bytes, secret: str) -> bool:
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(time.time() - int(parts["t"])) <= 300 and hmac.compare_digest(expected, parts["v1"])


class Sim:
    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self.url = server.url

    def post(self, path: str, body: Any, key: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        return requests.post(self.url + path, json=body, headers=headers, **kwargs)

    def get(self, url_path: str, **params: Any) -> requests.Response:
        return requests.get(self.url + url_path, params=params)

    def configure(self, **values: Any) -> dict[str, Any]:
        response = requests.post(self.url + "/_config", json=values)
        assert response.status_code == 200, response.text
        return response.json()

    def stats(self) -> dict[str, Any]:
        return requests.get(self.url + "/_stats").json()


@pytest.fixture
def portal() -> Iterator[Portal]:
    receiver = Portal()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def start_sim(portal: Portal) -> Iterator[Callable[..., Sim]]:
    servers: list[SimulatorServer] = []

    def start(**overrides: Any) -> Sim:
        settings: dict[str, Any] = {
            "port": 0,
            "portal_url": portal.url,
            "wms_secret": WMS_SECRET,
            "carrier_secret": CARRIER_SECRET,
            "booking_failure_rate": 0.0,
            "short_pick_rate": 0.0,
            "time_scale": 0.01,
            "callback_backoff": 0.01,
            "seed": 7,
        }
        server = make_server(Config(**{**settings, **overrides}))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return Sim(server)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def sim(start_sim: Callable[..., Sim]) -> Sim:
    return start_sim()


RELEASE = {
    "order": "ERP-1",
    "warehouse": "WH1",
    "lines": [{"sku": "SKU-00001", "quantity": 3}, {"sku": "SKU-00002", "quantity": 5}],
    "ship_to": {
        "name": "Ada",
        "line1": "1 Mill Lane",
        "city": "Lyon",
        "postal_code": "69001",
        "country": "FR",
    },
    "promised_date": "2030-01-15",
}
BOOKING = {"order": "ERP-1", "warehouse": "WH1", "ship_to": RELEASE["ship_to"], "parcels": 2}


def release(sim: Sim, portal: Portal, order: str = "ERP-1", key: str | None = None) -> list[dict[str, Any]]:
    """Release an order and wait for its last webhook; returns the WMS events of the order."""
    response = sim.post("/wms/releases", {**RELEASE, "order": order}, key)
    assert response.status_code == 202, response.text
    assert response.json()["release_id"].startswith("REL-")
    wait_until(lambda: len(portal.events("carrier")) >= 3 and portal.events("wms", "delivery.confirmed"))
    return [event for event in portal.events("wms") if event["data"].get("order") == order]


def test_a_repeated_key_returns_the_first_response_and_applies_nothing_again(
    sim: Sim, portal: Portal
) -> None:
    invoice = {"order": "ERP-1", "amount": "125.50", "currency": "EUR"}
    first = sim.post("/erp/invoices", invoice, "inv-1")
    again = sim.post("/erp/invoices", invoice, "inv-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and first.json()["invoice_number"].startswith("INV-")

    release(sim, portal, key="rel-1")
    assert sim.post("/wms/releases", RELEASE, "rel-1").status_code == 202
    time.sleep(0.15)  # a second release would have been picked by now
    assert len(portal.events("wms", "pick.completed")) == 1

    stats = sim.stats()
    assert stats["keys"] == {"inv-1": 2, "rel-1": 2}
    assert (stats["received"], stats["applied"], stats["repeats"]) == (4, 2, 2)
    assert stats["by_path"]["/erp/invoices"] == {"received": 2, "applied": 1, "repeats": 1}
    assert [entry["key"] for entry in sim.get("/_applied").json()["applied"]] == ["inv-1", "rel-1"]

    reused = sim.post("/erp/invoices", {**invoice, "amount": "1.00"}, "inv-1")
    assert reused.status_code == 422 and reused.json()["error"] == "idempotency_key_reused"
    assert sim.stats()["conflicts"] == 1


def test_requests_that_break_the_contract_are_refused(sim: Sim) -> None:
    no_key = requests.post(sim.url + "/erp/order-status", json={"order": "ERP-1", "status": "shipped"})
    assert no_key.status_code == 400 and no_key.json()["error"] == "missing_idempotency_key"
    bad = sim.post("/erp/order-status", {"order": "ERP-1", "status": "shipped"}, "st-1")
    assert bad.status_code == 400 and "'at'" in bad.json()["detail"]
    assert sim.post("/wms/releases", {**RELEASE, "lines": []}).status_code == 400
    assert sim.post("/notifications", {"order": "ERP-1"}).status_code == 400
    assert sim.get("/nowhere").status_code == 404
    assert sim.get("/wms/releases").status_code == 405
    ok = sim.post("/erp/order-status", {"order": "ERP-1", "status": "shipped", "at": "2030-01-01T10:00:00Z"})
    assert ok.status_code == 200 and ok.json() == {"ok": True}
    notified = sim.post("/notifications", {"order": "ERP-1", "customer": "C1", "template": "x", "data": {}})
    assert notified.status_code == 202
    stats = sim.stats()
    assert (stats["applied"], stats["rejected"]) == (2, 3)  # the request without a key is not recorded


def test_injected_errors_apply_nothing_and_the_retry_is_applied(sim: Sim, portal: Portal) -> None:
    sim.configure(error_rate=1.0)
    for path, body in [("/wms/releases", RELEASE), ("/carrier/bookings", BOOKING)]:
        response = sim.post(path, body, f"key-{path}")
        assert response.status_code == 503 and response.json() == {"error": "injected"}
    assert sim.get("/erp/orders").status_code == 503
    stats = sim.stats()
    assert (stats["applied"], stats["keys"], stats["injected"]["errors"]) == (0, {}, 3)
    time.sleep(0.1)
    assert portal.events() == []

    sim.configure(error_rate=0.0)
    assert sim.post("/carrier/bookings", BOOKING, "key-/carrier/bookings").status_code == 201
    assert sim.stats()["keys"] == {"key-/carrier/bookings": 1}


def test_a_timeout_applies_nothing(sim: Sim) -> None:
    sim.configure(timeout_rate=1.0, timeout_seconds=0.4)
    with pytest.raises(requests.Timeout):
        sim.post("/erp/invoices", {"order": "ERP-1", "amount": 10, "currency": "EUR"}, "inv-t", timeout=0.1)
    stats = sim.stats()
    assert (stats["applied"], stats["keys"], stats["injected"]["timeouts"]) == (0, {}, 1)
    sim.configure(timeout_rate=0.0)
    assert sim.post("/erp/invoices", {"order": "ERP-1", "amount": 10, "currency": "EUR"}, "inv-t").ok
    assert sim.stats()["applied"] == 1


def test_a_lost_response_was_applied_once_and_the_retry_gets_the_stored_answer(
    sim: Sim, portal: Portal
) -> None:
    sim.configure(lost_response_rate=1.0, timeout_seconds=0.4)
    with pytest.raises(requests.Timeout):
        sim.post("/wms/releases", RELEASE, "rel-lost", timeout=0.1)
    stats = sim.stats()
    assert (stats["applied"], stats["keys"], stats["injected"]["lost_responses"]) == (1, {"rel-lost": 1}, 1)
    sim.configure(lost_response_rate=0.0)
    retry = sim.post("/wms/releases", RELEASE, "rel-lost")
    assert retry.status_code == 202
    assert retry.json() == sim.get("/_applied", path="/wms/releases").json()["applied"][0]["response"]
    wait_until(lambda: portal.events("wms", "delivery.confirmed"))
    time.sleep(0.1)
    assert len(portal.events("wms", "pick.completed")) == 1
    assert (sim.stats()["applied"], sim.stats()["repeats"]) == (1, 1)


def test_a_release_comes_back_as_signed_webhooks_in_order_with_consistent_quantities(
    sim: Sim, portal: Portal
) -> None:
    booking = sim.post("/carrier/bookings", BOOKING).json()
    wms = release(sim, portal)

    assert [event["type"] for event in wms] == ["pick.completed", "shipment.confirmed", "delivery.confirmed"]
    pick, shipment, delivery = (event["data"] for event in wms)
    assert pick == {
        "order": "ERP-1",
        "warehouse": "WH1",
        "lines": [{"sku": "SKU-00001", "picked": 3}, {"sku": "SKU-00002", "picked": 5}],
    }
    assert shipment["lines"] == [{"sku": "SKU-00001", "quantity": 3}, {"sku": "SKU-00002", "quantity": 5}]
    assert (shipment["carrier"], shipment["tracking"]) == (booking["carrier"], booking["tracking"])
    assert delivery["shipment_id"] == shipment["shipment_id"] and delivery["signed_by"]
    assert dt.datetime.fromisoformat(delivery["delivered_at"]).tzinfo == dt.UTC

    carrier = portal.events("carrier")
    assert [event["data"]["status"] for event in carrier] == ["in_transit", "out_for_delivery", "delivered"]
    assert {event["data"]["tracking"] for event in carrier} == {booking["tracking"]}
    occurred = [dt.datetime.fromisoformat(event["occurred_at"]) for event in wms]
    assert occurred == sorted(occurred) and all(moment.tzinfo == dt.UTC for moment in occurred)
    assert len({event["id"] for event in portal.events()}) == 6
    assert sim.stats()["callbacks"]["sent"] == 6


def test_a_short_pick_ships_what_was_picked(start_sim: Callable[..., Sim], portal: Portal) -> None:
    sim = start_sim(short_pick_rate=1.0)
    pick, shipment, _ = release(sim, portal)
    picked = {line["sku"]: line["picked"] for line in pick["data"]["lines"]}
    ordered = {line["sku"]: line["quantity"] for line in RELEASE["lines"]}
    short = [sku for sku in ordered if picked[sku] < ordered[sku]]
    assert len(short) == 1
    assert shipment["data"]["lines"] == [{"sku": sku, "quantity": n} for sku, n in picked.items() if n]


def test_duplicates_repeat_the_same_event_id(start_sim: Callable[..., Sim], portal: Portal) -> None:
    sim = start_sim(duplicate_rate=1.0)
    release(sim, portal)
    wait_until(lambda: len(portal.events()) == 12)
    ids = [event["id"] for event in portal.events()]
    assert len(set(ids)) == 6 and all(ids.count(event_id) == 2 for event_id in ids)
    assert sim.stats()["callbacks"]["duplicates"] == 6


def test_reordering_swaps_consecutive_events(start_sim: Callable[..., Sim], portal: Portal) -> None:
    sim = start_sim(reorder_rate=1.0)
    wms = release(sim, portal)
    assert [event["type"] for event in wms] == ["shipment.confirmed", "pick.completed", "delivery.confirmed"]
    shipped, picked = (dt.datetime.fromisoformat(event["occurred_at"]) for event in wms[:2])
    assert picked < shipped  # sent out of order, stamped with when each happened
    statuses = [event["data"]["status"] for event in portal.events("carrier")]
    assert statuses == ["out_for_delivery", "in_transit", "delivered"]
    assert sim.stats()["callbacks"]["reordered"] == 2


def test_webhooks_are_retried_until_the_portal_answers_then_given_up(
    start_sim: Callable[..., Sim], portal: Portal
) -> None:
    sim = start_sim()
    portal.fail_next = 2
    wms = release(sim, portal)
    assert [event["type"] for event in wms] == ["pick.completed", "shipment.confirmed", "delivery.confirmed"]
    assert sim.stats()["callbacks"]["attempts"] == 8

    down = start_sim(portal_url="http://127.0.0.1:9", callback_attempts=2)
    down.post("/wms/releases", RELEASE)
    wait_until(lambda: down.stats()["callbacks"]["failed"] == 6)
    assert down.stats()["callbacks"]["attempts"] == 12


def test_carrier_bookings_succeed_or_are_refused(sim: Sim) -> None:
    booked = sim.post("/carrier/bookings", BOOKING)
    assert booked.status_code == 201
    assert booked.json()["carrier"] == "DHL" and booked.json()["tracking"] and booked.json()["booking_id"]

    sim.configure(booking_failure_rate=1.0)
    refused = sim.post("/carrier/bookings", BOOKING, "book-2")
    assert refused.status_code == 422 and refused.json()["error"] == "no_capacity"
    sim.configure(booking_failure_rate=0.0)
    assert sim.post("/carrier/bookings", BOOKING, "book-2").status_code == 422  # the first answer stands
    assert sim.post("/carrier/bookings", {**BOOKING, "parcels": 0}).status_code == 400


def test_the_erp_feed_never_skips_or_repeats_while_orders_arrive(sim: Sim) -> None:
    added: list[str] = []

    def add() -> None:
        for batch in range(30):
            orders = [{"customer": "C0001", "lines": []} for _ in range(4)] + [{"external_id": f"X-{batch}"}]
            response = requests.post(sim.url + "/_erp/orders", json={"orders": orders})
            added.extend(order["external_id"] for order in response.json()["orders"])

    adder = threading.Thread(target=add)
    adder.start()
    seen: list[str] = []
    cursor = ""
    while True:
        page = sim.get("/erp/orders", cursor=cursor, limit=7).json()
        seen.extend(order["external_id"] for order in page["orders"])
        cursor = page["next_cursor"]
        if not page["orders"] and not adder.is_alive():
            break
    adder.join()
    assert seen == added and len(set(seen)) == 150
    assert seen[0].startswith("ERP-") and seen[4] == "X-0"
    assert sim.get("/erp/orders", cursor=cursor).json() == {"orders": [], "next_cursor": cursor}

    older_run = base64.urlsafe_b64encode(b"OLDRUN:120").decode().rstrip("=")
    assert len(sim.get("/erp/orders", cursor=older_run, limit=200).json()["orders"]) == 150
    assert sim.get("/erp/orders", cursor="not-a-cursor").status_code == 400
    assert sim.get("/erp/orders", limit=201).status_code == 400


def test_the_erp_creates_orders_from_the_catalog(
    start_sim: Callable[..., Sim], portal: Portal, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps(
            {
                "customers": ["K1", "K2"],
                "skus": [{"sku": "A", "price": "12.5"}, {"sku": "B", "price": 3, "on_hand": {"W1": 40}}],
                "warehouses": ["W1", "W2"],
                "carriers": ["UPS"],
            }
        )
    )
    sim = start_sim(catalog=str(catalog))
    sim.configure(order_rate=6000)
    orders = wait_until(lambda: sim.get("/erp/orders").json()["orders"][:5])
    sim.configure(order_rate=0)
    for order in orders:
        assert set(order) == {
            "external_id", "customer", "warehouse", "promised_date", "currency", "ship_to", "lines"
        }  # fmt: skip
        assert order["customer"] in {"K1", "K2"} and order["warehouse"] in {"W1", "W2", None}
        assert dt.date.fromisoformat(order["promised_date"]) > dt.datetime.now(dt.UTC).date()
        assert set(order["ship_to"]) == {"name", "line1", "city", "postal_code", "country"}
        assert {line["sku"] for line in order["lines"]} <= {"A", "B"}
        assert all(
            line["unit_price"] in {"12.50", "3.00"} and line["quantity"] >= 1 for line in order["lines"]
        )
    count = sim.stats()["erp_orders"]
    time.sleep(0.1)
    assert sim.stats()["erp_orders"] == count

    assert sim.post("/carrier/bookings", BOOKING).json()["carrier"] == "UPS"
    sim.configure(restock_interval=0.02)
    wait_until(lambda: len(portal.events("wms", "inventory.adjusted")) >= 3)
    sim.configure(restock_interval=0)
    restocks = sorted(portal.events("wms", "inventory.adjusted"), key=lambda event: event["occurred_at"])
    figures = [event["data"]["on_hand"] for event in restocks]
    assert figures == sorted(set(figures)) and figures[0] > 40
    assert {(e["data"]["warehouse"], e["data"]["sku"]) for e in restocks} == {("W1", "B")}


def test_settings_change_at_runtime_and_reset_restores_them(sim: Sim) -> None:
    assert sim.get("/healthz").json() == {"ok": True}
    changed = sim.configure(**{"error_rate": 0.5, "latency-ms": 30})
    assert (changed["error_rate"], changed["latency_ms"]) == (0.5, 30)
    assert sim.get("/_config").json()["error_rate"] == 0.5
    for bad in ({"error_rate": 2}, {"port": 1}, {"nonsense": 1}, {"latency_ms": "x"}):
        assert requests.post(sim.url + "/_config", json=bad).status_code == 400

    sim.configure(error_rate=0.0)
    started = time.monotonic()
    sim.post("/erp/invoices", {"order": "ERP-1", "amount": "1", "currency": "EUR"})
    assert time.monotonic() - started >= 0.03
    requests.post(sim.url + "/_erp/orders", json={"orders": [{"external_id": "E-1"}]})

    assert requests.post(sim.url + "/_reset").json() == {"ok": True}
    assert sim.get("/_config").json()["latency_ms"] == 0
    stats = sim.stats()
    assert (stats["received"], stats["keys"], stats["erp_orders"]) == (0, {}, 1)


def test_the_wms_emits_any_signed_event_on_request(sim: Sim, portal: Portal) -> None:
    event = {"type": "inventory.adjusted", "data": {"warehouse": "WH1", "sku": "SKU-00001", "on_hand": 7}}
    sent = requests.post(sim.url + "/_wms/emit", json={**event, "id": "evt-fixed"}).json()
    assert (sent["id"], sent["status"]) == ("evt-fixed", 202)
    assert portal.events("wms") == [{"partner": "wms", **sent["event"]}]
    forged = requests.post(sim.url + "/_carrier/emit", json={**event, "secret": "wrong"}).json()
    assert forged["status"] == 401


def test_settings_come_from_flags_then_environment() -> None:
    config = parse_args(
        ["--port", "9000", "--error-rate", "0.2", "--seed", "3"],
        {"SIM_ERROR_RATE": "0.9", "SIM_LATENCY_MS": "15", "SIM_PORTAL_URL": "http://portal:8000"},
    )
    assert (config.port, config.error_rate, config.latency_ms, config.seed) == (9000, 0.2, 15, 3)
    assert config.portal_url == "http://portal:8000" and config.booking_failure_rate == 0.05
    with pytest.raises(SystemExit):
        parse_args(["--error-rate", "1.5"], {})


def test_the_process_imports_no_django_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "integrations.simulator", "--port", "0", "--order-rate", "60"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        url = line.split("listening on ")[1].split(",")[0]
        assert requests.get(url + "/healthz", timeout=2).json() == {"ok": True}
        process.terminate()
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
    apps = ["django", "rest_framework", "fulfillment", "orders", "exceptions", "approvals", "flows", "portal"]
    check = (
        f"import sys, integrations.simulator; print([m for m in sys.modules if m.split('.')[0] in {apps}])"
    )
    loaded = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True)
    assert loaded.stdout.strip() == "[]", loaded.stderr
