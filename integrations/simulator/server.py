"""The simulator's HTTP server: the ERP, WMS and carrier endpoints the portal calls, fault
injection, idempotency-key bookkeeping, and the ``/_…`` control endpoints for tests and demos.

Thread-safe: every request runs in its own thread; shared state is guarded by one lock,
held only for in-memory work (never while sleeping or calling the portal).
"""

import datetime as dt
import json
import logging
import random
import signal
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from integrations.simulator.config import Catalog, Config, ConfigError, load_catalog
from integrations.simulator.erp import MAX_PAGE, CursorError, ErpFeed, random_order
from integrations.simulator.webhooks import WebhookSender, make_event
from integrations.simulator.wms import Release, Shipping, new_id, plan_release, tracking_number

log = logging.getLogger("simulator")

APPLIED_LOG_SIZE = 10_000
TICK_SECONDS = 0.05


@dataclass
class Reply:
    status: int
    payload: dict[str, Any]
    note: str = ""


@dataclass
class Recorded:
    """The first response to an idempotency key, returned again for every repeat."""

    path: str
    fingerprint: str
    reply: Reply
    count: int = 1


class Invalid(Exception):
    """A request body that breaks the contract: 400, nothing applied."""


def _text(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise Invalid(f"'{name}' must be a non-empty string")
    return value


def _object(payload: dict[str, Any], name: str) -> dict[str, Any]:
    value = payload.get(name)
    if not isinstance(value, dict):
        raise Invalid(f"'{name}' must be an object")
    return value


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise Invalid(f"'{name}' must be a positive integer")
    return value


class Simulator:
    """The state of the simulated ERP, WMS and carrier, and what they do."""

    def __init__(self, config: Config, catalog: Catalog) -> None:
        self.catalog = catalog
        self.stop = threading.Event()
        self.feed = ErpFeed()
        self.webhooks = WebhookSender(lambda: self.config, self.stop)
        self._initial = config
        self._config = config
        self._lock = threading.RLock()
        self._rng = random.Random(config.seed)
        self._generation = 0  # bumped by /_reset: abandons the releases in flight
        self._threads: set[threading.Thread] = set()
        # The WMS's stock figures for restocks; kept by /_reset: they only ever go up.
        self._stock = {(wh, sku.sku): n for sku in catalog.skus for wh, n in sku.on_hand.items()}
        self._clear()

    @property
    def config(self) -> Config:
        return self._config

    def _clear(self) -> None:
        self._keys: dict[str, Recorded] = {}
        self._totals: Counter[str] = Counter()
        self._by_path: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._applied: deque[dict[str, Any]] = deque(maxlen=APPLIED_LOG_SIZE)
        self._bookings: dict[str, tuple[str, str]] = {}
        self._next_order_at: float | None = None
        self._next_restock_at: float | None = None

    # -- threads ---------------------------------------------------------------------------

    def start(self) -> None:
        self._check_restock()
        self._spawn(self._tick, "sim-ticker")

    def _check_restock(self) -> None:
        if self.config.restock_interval > 0 and not self._stock:
            log.warning("restock_interval is set but no catalog SKU has on_hand figures: no restocks")

    def close(self) -> None:
        self.stop.set()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=2)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        def run() -> None:
            try:
                target()
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _still_wanted(self, generation: int) -> Callable[[], bool]:
        return lambda: not self.stop.is_set() and self._generation == generation

    def _tick(self) -> None:
        """New ERP orders at ``order_rate`` per minute; a restock every ``restock_interval`` s."""
        while not self.stop.wait(TICK_SECONDS):
            now = time.monotonic()
            config = self.config
            restock = None
            with self._lock:
                if config.order_rate > 0:
                    interval = 60.0 / config.order_rate
                    self._next_order_at = self._next_order_at or now + interval
                    while now >= self._next_order_at:
                        today = dt.datetime.now(dt.UTC).date()
                        self.feed.add(random_order(self.catalog, self._rng, today))
                        self._next_order_at += interval
                if config.restock_interval > 0 and self._stock:
                    self._next_restock_at = self._next_restock_at or now + config.restock_interval
                    if now >= self._next_restock_at:
                        restock, generation = self._restock(), self._generation
                        self._next_restock_at = now + config.restock_interval
            if restock is not None:
                self._spawn(lambda e=restock, g=generation: self._send("wms", e, g), "sim-restock")

    def _restock(self) -> dict[str, Any]:
        """An absolute on_hand above every figure sent before for a random SKU and warehouse
        (the catalog's ``on_hand`` is the baseline; the simulator only ever adds stock)."""
        warehouse, sku = self._rng.choice(sorted(self._stock))
        self._stock[warehouse, sku] += self._rng.randint(10, 50)
        data = {"warehouse": warehouse, "sku": sku, "on_hand": self._stock[warehouse, sku]}
        return make_event("inventory.adjusted", data, time.time())

    def _send(self, partner: str, event: dict[str, Any], generation: int) -> None:
        """Deliver with retries; with ``duplicate_rate`` send it a second time (same id)."""
        wanted = self._still_wanted(generation)
        self.webhooks.deliver(partner, event, wanted)
        if self._chance(self.config.duplicate_rate):
            self.webhooks.count("duplicates")
            self.webhooks.deliver(partner, event, wanted)

    def _chance(self, probability: float) -> bool:
        with self._lock:
            return self._rng.random() < probability

    # -- requests --------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, idempotency_key: str | None, body: bytes) -> Reply:
        path = path.rstrip("/") or "/"
        business = {
            ("POST", "/wms/releases"): self._release,
            ("POST", "/carrier/bookings"): self._book,
            ("POST", "/erp/invoices"): self._invoice,
            ("POST", "/erp/order-status"): self._order_status,
            ("POST", "/notifications"): self._notify,
        }
        control: dict[tuple[str, str], Callable[[], Reply]] = {
            ("GET", "/healthz"): lambda: Reply(200, {"ok": True}),
            ("GET", "/_stats"): lambda: Reply(200, self.stats()),
            ("GET", "/_config"): lambda: Reply(200, self.config.as_dict()),
            ("GET", "/_applied"): lambda: self._applied_log(query),
            ("POST", "/_config"): lambda: self._reconfigure(body),
            ("POST", "/_reset"): self._reset,
            ("POST", "/_wms/emit"): lambda: self._emit("wms", body),
            ("POST", "/_carrier/emit"): lambda: self._emit("carrier", body),
            ("POST", "/_erp/orders"): lambda: self._add_erp_orders(body),
        }
        if (method, path) in business:
            apply = business[method, path]
            return self._business(path, lambda: self._apply_once(path, apply, idempotency_key, body))
        if (method, path) == ("GET", "/erp/orders"):
            return self._business(path, lambda: self._erp_orders(query))
        if (method, path) in control:
            return control[method, path]()
        known = {p for _, p in (*business, *control)} | {"/erp/orders"}
        if path in known:
            return Reply(405, {"error": "method_not_allowed"})
        return Reply(404, {"error": "not_found", "detail": f"no {method} {path}"})

    def _business(self, path: str, respond: Callable[[], Reply]) -> Reply:
        """Latency, then fault injection (before anything is recorded or applied), then ``respond``."""
        config = self.config
        with self._lock:
            self._totals["received"] += 1
            self._by_path[path]["received"] += 1
            roll = self._rng.random()
        if config.latency_ms:
            self.stop.wait(config.latency_ms / 1000)
        if roll < config.error_rate:
            self._count_fault(path, "errors")
            return Reply(503, {"error": "injected"}, "injected error")
        if roll < config.error_rate + config.timeout_rate:
            self._count_fault(path, "timeouts")
            self.stop.wait(config.timeout_seconds)
            return Reply(504, {"error": "injected_timeout"}, "injected timeout")
        lost = roll < config.error_rate + config.timeout_rate + config.lost_response_rate
        reply = respond()
        if lost:
            self._count_fault(path, "lost_responses")
            self.stop.wait(config.timeout_seconds)
            reply.note += " (response lost)"
        return reply

    def _apply_once(
        self, path: str, apply: Callable[[dict[str, Any]], Reply], key: str | None, body: bytes
    ) -> Reply:
        if not key:
            return Reply(400, {"error": "missing_idempotency_key", "detail": "POST needs Idempotency-Key"})
        try:
            payload = json.loads(body)
            fingerprint = json.dumps(payload, sort_keys=True)
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload, fingerprint = None, body.decode(errors="replace")
        with self._lock:
            recorded = self._keys.get(key)
            if recorded is not None:
                recorded.count += 1
                if recorded.fingerprint != fingerprint or recorded.path != path:
                    self._totals["conflicts"] += 1
                    refusal = {"error": "idempotency_key_reused", "detail": "first used with another request"}
                    return Reply(422, refusal, f"key={key} reused")
                self._totals["repeats"] += 1
                self._by_path[path]["repeats"] += 1
                first = recorded.reply
                return Reply(first.status, first.payload, f"key={key} repeat #{recorded.count - 1}")
            try:
                if not isinstance(payload, dict):
                    raise Invalid("the body must be a JSON object")
                reply = apply(payload)
            except Invalid as exc:
                reply = Reply(400, {"error": "invalid", "detail": str(exc)})
            outcome = "applied" if reply.status < 400 else "rejected"
            self._keys[key] = Recorded(path, fingerprint, reply)
            self._totals[outcome] += 1
            self._by_path[path][outcome] += 1
            entry = {"key": key, "path": path, "request": payload, "status": reply.status}
            self._applied.append({**entry, "response": reply.payload})
        return Reply(reply.status, reply.payload, f"key={key} {outcome}")

    def _count_fault(self, path: str, kind: str) -> None:
        with self._lock:
            self._totals[kind] += 1
            self._by_path[path][kind] += 1

    # -- the simulated systems (called under the lock) -------------------------------------

    def _release(self, payload: dict[str, Any]) -> Reply:
        order, warehouse = _text(payload, "order"), _text(payload, "warehouse")
        _object(payload, "ship_to")
        _text(payload, "promised_date")
        lines = payload.get("lines")
        if not isinstance(lines, list) or not lines or not all(isinstance(line, dict) for line in lines):
            raise Invalid("'lines' must be a non-empty list of {sku, quantity}")
        lines = [
            {"sku": _text(line, "sku"), "quantity": _positive_int(line.get("quantity"), "quantity")}
            for line in lines
        ]
        release = Release(new_id("REL"), order, warehouse, lines)
        config = self.config
        steps, swapped = plan_release(
            release,
            started_at=time.time(),
            time_scale=config.time_scale,
            short_pick_rate=config.short_pick_rate,
            reorder_rate=config.reorder_rate,
            rng=self._rng,
            shipping=Shipping(lambda: self._shipping(order)),
        )
        self.webhooks.count("reordered", swapped)
        generation, started = self._generation, time.monotonic()

        def run() -> None:
            for step in steps:
                if self.stop.wait(max(0.0, started + step.due - time.monotonic())):
                    return
                if not self._still_wanted(generation)():
                    return
                self._send(step.partner, step.event(), generation)

        self._spawn(run, f"sim-{release.release_id}")
        return Reply(202, {"release_id": release.release_id})

    def _shipping(self, order: str) -> tuple[str, str]:
        """The carrier and tracking number the portal booked for the order, else the WMS's own."""
        with self._lock:
            if order in self._bookings:
                return self._bookings[order]
            carrier = self._rng.choice(self.catalog.carriers)
        return carrier, tracking_number(carrier)

    def _book(self, payload: dict[str, Any]) -> Reply:
        order = _text(payload, "order")
        _text(payload, "warehouse")
        _object(payload, "ship_to")
        _positive_int(payload.get("parcels"), "parcels")
        if self._rng.random() < self.config.booking_failure_rate:
            detail = "The carrier has no capacity left for this lane today."
            return Reply(422, {"error": "no_capacity", "detail": detail})
        carrier = self._rng.choice(self.catalog.carriers)
        self._bookings[order] = (carrier, tracking_number(carrier))
        return Reply(
            201, {"booking_id": new_id("BKG"), "carrier": carrier, "tracking": self._bookings[order][1]}
        )

    def _invoice(self, payload: dict[str, Any]) -> Reply:
        _text(payload, "order")
        _text(payload, "currency")
        amount = payload.get("amount")
        try:
            if isinstance(amount, bool) or not isinstance(amount, str | int | float):
                raise InvalidOperation
            Decimal(str(amount))
        except InvalidOperation:
            raise Invalid("'amount' must be a decimal number") from None
        return Reply(201, {"invoice_number": new_id("INV")})

    def _order_status(self, payload: dict[str, Any]) -> Reply:
        for name in ("order", "status", "at"):
            _text(payload, name)
        return Reply(200, {"ok": True})

    def _notify(self, payload: dict[str, Any]) -> Reply:
        for name in ("order", "customer", "template"):
            _text(payload, name)
        _object(payload, "data")
        return Reply(202, {"ok": True})

    def _erp_orders(self, query: str) -> Reply:
        params = parse_qs(query)
        try:
            limit = int(params.get("limit", ["100"])[0])
            if not 1 <= limit <= MAX_PAGE:
                raise ValueError
        except ValueError:
            return Reply(400, {"error": "invalid", "detail": f"limit must be 1..{MAX_PAGE}"})
        try:
            orders, next_cursor = self.feed.page(params.get("cursor", [""])[0], limit)
        except CursorError as exc:
            return Reply(400, {"error": "invalid_cursor", "detail": str(exc)})
        return Reply(200, {"orders": orders, "next_cursor": next_cursor}, f"{len(orders)} orders")

    # -- control endpoints -----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            totals = self._totals
            counts = ("received", "applied", "rejected", "repeats", "conflicts")
            return {
                **{name: totals[name] for name in counts},
                "keys": {key: recorded.count for key, recorded in self._keys.items()},
                "by_path": {path: dict(counts) for path, counts in self._by_path.items()},
                "injected": {name: totals[name] for name in ("errors", "timeouts", "lost_responses")},
                "callbacks": self.webhooks.counts(),
                "erp_orders": len(self.feed),
            }

    def _applied_log(self, query: str) -> Reply:
        path = parse_qs(query).get("path", [""])[0].rstrip("/")
        with self._lock:
            entries = [entry for entry in self._applied if not path or entry["path"] == path]
        return Reply(200, {"applied": entries})

    def _reconfigure(self, body: bytes) -> Reply:
        try:
            values = json.loads(body or b"{}")
            if not isinstance(values, dict):
                raise ConfigError("the body must be a JSON object of settings")
            with self._lock:
                self._config = self._config.updated(values)
                if "seed" in values:
                    self._rng.seed(self._config.seed)
                self._next_order_at = self._next_restock_at = None
        except (ConfigError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            return Reply(400, {"error": "invalid_config", "detail": str(exc)})
        log.info("config changed: %s", values)
        self._check_restock()
        return Reply(200, self.config.as_dict())

    def _reset(self) -> Reply:
        """Back to the start-up settings; forget keys, stats and bookings; abandon the webhooks
        in flight. The ERP feed is kept, so that the portal's stored cursor stays valid."""
        with self._lock:
            self._generation += 1
            self._config = self._initial
            self._rng.seed(self._initial.seed)
            self._clear()
        return Reply(200, {"ok": True})

    def _emit(self, partner: str, body: bytes) -> Reply:
        """Send one signed event now (one attempt) and report the portal's answer. Body:
        ``{"type", "data", "id"?, "occurred_at"? (ISO, sent as is), "secret"?, "timestamp"?}``
        (a wrong secret or an old timestamp exercises the portal's signature checks)."""
        try:
            spec = json.loads(body)
            if not isinstance(spec, dict) or not isinstance(spec.get("data"), dict):
                raise Invalid("the body must be {type, data, id?, occurred_at?, secret?, timestamp?}")
            timestamp = spec.get("timestamp")
            if timestamp is not None and (not isinstance(timestamp, int) or isinstance(timestamp, bool)):
                raise Invalid("'timestamp' must be unix seconds")
            event = make_event(_text(spec, "type"), spec["data"], time.time(), spec.get("id"))
            if spec.get("occurred_at"):
                event["occurred_at"] = spec["occurred_at"]
            response = self.webhooks.send_once(partner, event, secret=spec.get("secret"), timestamp=timestamp)
        except (Invalid, json.JSONDecodeError, UnicodeDecodeError) as exc:
            return Reply(400, {"error": "invalid", "detail": str(exc)})
        except requests.RequestException as exc:
            return Reply(502, {"error": "portal_unreachable", "detail": str(exc)})
        try:
            answer: Any = response.json()
        except ValueError:
            answer = response.text
        return Reply(200, {"id": event["id"], "event": event, "status": response.status_code, "body": answer})

    def _add_erp_orders(self, body: bytes) -> Reply:
        """``{"orders": [...]}`` appended to the feed as given (``external_id`` generated when absent)."""
        try:
            orders = json.loads(body).get("orders")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            orders = None
        if not isinstance(orders, list) or not all(isinstance(order, dict) for order in orders):
            return Reply(400, {"error": "invalid", "detail": 'the body must be {"orders": [{...}, ...]}'})
        return Reply(201, {"orders": [self.feed.add(order) for order in orders]})


class Handler(BaseHTTPRequestHandler):
    server: "SimulatorServer"
    protocol_version = "HTTP/1.1"
    server_version = "FulfillmentSimulator/1.0"
    # Headers and body go out in separate writes: with Nagle's algorithm on, a kept-alive
    # connection waits for the client's delayed ACK (about 40 ms) before sending the body.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        except ValueError:
            body, reply = b"", Reply(400, {"error": "invalid", "detail": "bad Content-Length"})
        else:
            try:
                key = self.headers.get("Idempotency-Key")
                reply = self.server.simulator.handle(method, url.path, url.query, key, body)
            except Exception:
                log.exception("error handling %s %s", method, self.path)
                reply = Reply(500, {"error": "simulator_error"})
        data = json.dumps(reply.payload).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            reply.note += " (client gone)"
        elapsed = (time.monotonic() - started) * 1000
        client = self.client_address[0]
        log.info('%s "%s %s" %d %.0fms %s', client, method, self.path, reply.status, elapsed, reply.note)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: ``_dispatch`` logs one line per request instead."""


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config: Config, catalog: Catalog) -> None:
        self.simulator = Simulator(config, catalog)
        super().__init__((config.host, config.port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def server_close(self) -> None:
        self.simulator.close()
        super().server_close()


def make_server(config: Config) -> SimulatorServer:
    """A listening server with its background threads running; call ``serve_forever()``."""
    server = SimulatorServer(config, load_catalog(config.catalog))
    server.simulator.start()
    return server


def serve(config: Config) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s simulator %(message)s")
    server = make_server(config)

    def stop(signum: int, frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    log.info("listening on %s, webhooks to %s", server.url, config.portal_url)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
