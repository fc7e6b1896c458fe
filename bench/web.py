"""Measures 3-5 over HTTP: the portal under gunicorn (2 workers, as in production) on
loopback, a client in this process (``requests``), and raw SQL for the same reads and
writes on a psycopg connection.

Server time comes from the ``Server-Timing`` header that ``bench.middleware`` adds
(outermost middleware, so it covers the whole Django request); the client's wall time
per request (loopback, HTTP parsing) is reported beside it.
"""

import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import requests

from bench.database import connect
from bench.report import ms, percentile, ratio
from integrations.signatures import sign

BASE_DIR = Path(__file__).resolve().parent.parent
WEB_WORKERS = 2
WEB_THREADS = 4
PAGE_FILTER = {"tier": "strategic"}


def web_env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DATABASE_URL": url,
        "DJANGO_DEBUG": "0",
        "BENCH_SERVER_TIMING": "1",
        # The API's rate limits would answer most of the measured requests with 429.
        "API_THROTTLE_TOKEN": "1000000/min",
        "API_THROTTLE_USER": "1000000/min",
        "LOG_LEVEL": "WARNING",
    }


class Server:
    """gunicorn serving the portal, as the Procfile runs it."""

    def __init__(self, url: str, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "fulfillment.wsgi", "--bind", f"127.0.0.1:{port}",
                "--workers", str(WEB_WORKERS), "--threads", str(WEB_THREADS), "--log-level", "warning",
            ],
            cwd=BASE_DIR, env=web_env(url),
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                # Each worker loads the application on its first request: a few seconds.
                if requests.get(f"{self.base}/login/", timeout=30).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("gunicorn did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def login(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/login/", timeout=10)
    response = session.post(
        f"{base}/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/login/"},
        timeout=30,
    )
    if "sessionid" not in session.cookies:
        raise RuntimeError(f"{username} could not log in (HTTP {response.status_code})")
    return session


@dataclass(frozen=True)
class Sample:
    wall: float
    server_ms: float
    queries: int
    status: int


def _timed(call: Any) -> tuple[requests.Response, Sample]:
    started = time.perf_counter()
    response = call()
    wall = time.perf_counter() - started
    timing = dict(
        part.strip().split(";dur=") for part in response.headers.get("Server-Timing", "app;dur=0").split(",")
    )
    return response, Sample(
        wall=wall,
        server_ms=float(timing.get("app", 0)),
        queries=int(response.headers.get("X-Bench-Queries", -1)),
        status=response.status_code,
    )


def _summary(samples: list[Sample]) -> dict[str, Any]:
    server = [s.server_ms for s in samples]
    walls = [s.wall for s in samples]
    queries = sorted({s.queries for s in samples})
    return {
        "requests": len(samples),
        "p50_ms": round(percentile(server, 50), 2),
        "p95_ms": round(percentile(server, 95), 2),
        "client_p50_ms": ms(percentile(walls, 50)),
        "client_p95_ms": ms(percentile(walls, 95)),
        "queries_per_request": queries[0] if len(queries) == 1 else queries,
    }


Statements = list[tuple[str, Any]]


def _paired(
    session: requests.Session, url: str, work: list[tuple[str, Statements]], warmup: int = 10, **kwargs: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """GET each URL, and right after it run its raw statements (fetching every row) on one
    connection: project and baseline take turns, so that other work on the machine weighs
    on both alike. Returns the project's and the baseline's figures."""
    for target, _ in work[:warmup]:
        session.get(target, timeout=30, **kwargs)
    samples, times = [], []
    with connect(url) as conn:
        for target, statements in work:
            response, sample = _timed(lambda t=target: session.get(t, timeout=30, **kwargs))
            if response.status_code != 200:
                raise RuntimeError(f"GET {target}: HTTP {response.status_code}: {response.text[:300]}")
            samples.append(sample)
            started = time.perf_counter()
            for sql, params in statements:
                conn.execute(sql, params).fetchall()
            times.append(time.perf_counter() - started)
    raw = {
        "runs": len(times),
        "p50_ms": ms(percentile(times, 50)),
        "p95_ms": ms(percentile(times, 95)),
        "queries": len(work[0][1]),
    }
    return _summary(samples), raw


# --- 3. the queue page ------------------------------------------------------------------

RAW_QUEUE_PAGE = """
SELECT * FROM core_workitem
WHERE queue_id = %s AND state = 'open' AND customer_tier = %s
ORDER BY priority_key DESC, created_at, id LIMIT 51
"""


def queue_page(server: Server, session: requests.Session, url: str, requests_count: int) -> dict[str, Any]:
    from fulfillment.core.models import Queue, WorkItem

    queue = Queue.objects.get(slug="planning")
    target = f"{server.base}/queues/planning/?{'&'.join(f'{k}={v}' for k, v in PAGE_FILTER.items())}"
    statements = [(RAW_QUEUE_PAGE, (queue.pk, PAGE_FILTER["tier"]))]
    project, raw = _paired(session, url, [(target, statements)] * requests_count)
    return {
        "open_items": WorkItem.objects.filter(state="open").count(),
        "queue_open_items": WorkItem.objects.filter(state="open", queue=queue).count(),
        "filter": PAGE_FILTER,
        "project": project,
        "raw": raw,
        "ratio": ratio(project["p95_ms"], raw["p95_ms"]),
    }


# --- 4. the order API -----------------------------------------------------------------

RAW_ORDER_LIST = """
SELECT o.*, c.code, c.name, w.code FROM orders_order o
JOIN orders_customer c ON c.id = o.customer_id LEFT JOIN orders_warehouse w ON w.id = o.warehouse_id
ORDER BY o.created_at DESC, o.id DESC LIMIT 51
"""
RAW_ORDER_DETAIL = [
    "SELECT o.*, c.*, w.* FROM orders_order o JOIN orders_customer c ON c.id = o.customer_id "
    "LEFT JOIN orders_warehouse w ON w.id = o.warehouse_id WHERE o.id = %(id)s",
    "SELECT l.*, p.sku FROM orders_orderline l JOIN orders_product p ON p.id = l.product_id "
    "WHERE l.order_id = %(id)s ORDER BY l.line_no",
    "SELECT * FROM orders_ordertransition WHERE order_id = %(id)s ORDER BY at, id",
    "SELECT * FROM core_workitem WHERE state = 'open' AND subject_ref = "
    "(SELECT external_id FROM orders_order WHERE id = %(id)s)",
    "SELECT sum(total) FROM orders_order WHERE customer_id = (SELECT customer_id FROM orders_order "
    "WHERE id = %(id)s) AND status NOT IN ('invoiced', 'closed', 'cancelled') AND id <> %(id)s",
]


def issue_token(username: str) -> str:
    from django.core.management import call_command

    out = _Capture()
    call_command("issue_token", username, "--scope", "read", "--name", "bench", stdout=out)
    return out.lines[-1].strip()


class _Capture:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines += [line for line in text.splitlines() if line.strip()]

    def flush(self) -> None: ...


def order_api(server: Server, url: str, username: str, requests_count: int) -> dict[str, Any]:
    from orders.models import Order

    token = issue_token(username)
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    session = requests.Session()
    top = Order.objects.order_by("-pk").values_list("pk", flat=True).first()
    rng = random.Random(6)
    ids = [rng.randint(1, top) for _ in range(requests_count)]
    listing = [(f"{server.base}/api/v1/orders/", [(RAW_ORDER_LIST, None)])] * requests_count
    project_list, raw_list = _paired(session, url, listing, headers=headers)
    details = [
        (f"{server.base}/api/v1/orders/{pk}/", [(sql, {"id": pk}) for sql in RAW_ORDER_DETAIL]) for pk in ids
    ]
    project_detail, raw_detail = _paired(session, url, details, headers=headers)
    return {
        "orders": Order.objects.count(),
        "list": {
            "project": project_list,
            "raw": raw_list,
            "ratio": ratio(project_list["p95_ms"], raw_list["p95_ms"]),
        },
        "detail": {
            "project": project_detail,
            "raw": raw_detail,
            "ratio": ratio(project_detail["p95_ms"], raw_detail["p95_ms"]),
        },
    }


# --- 5. webhook accept ----------------------------------------------------------------

RAW_INBOUND = """
INSERT INTO integrations_inboundevent
    (partner_id, event_id, type, occurred_at, data, subject_ref, state, attempts, last_error, received_at)
VALUES (%s, %s, 'inventory.adjusted', %s, %s, %s, 'pending', 0, '', now())
"""


def _events(prefix: str, count: int, skus: list[str]) -> list[tuple[str, bytes]]:
    occurred = datetime.now(UTC).isoformat()
    events = []
    for n in range(count):
        event_id = f"{prefix}-{n:07d}"
        data = {"warehouse": "WH1", "sku": skus[n % len(skus)], "on_hand": 100 + n}
        body = {"id": event_id, "type": "inventory.adjusted", "occurred_at": occurred, "data": data}
        events.append((event_id, json.dumps(body).encode()))
    return events


def _in_threads(senders: int, work: list[Any], send: Any, setup: Any) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(senders + 1)
    errors: list[str] = []

    def run(part: list[Any]) -> None:
        try:
            state = setup()
            barrier.wait()
            mine = []
            for item in part:
                started = time.perf_counter()
                send(state, item)
                mine.append(time.perf_counter() - started)
            with lock:
                latencies.extend(mine)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            barrier.abort()

    threads = [threading.Thread(target=run, args=(work[i::senders],)) for i in range(senders)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(errors[0])
    return latencies, time.perf_counter() - started


def webhooks(server: Server, url: str, secret: str, count: int, senders: int) -> dict[str, Any]:
    from integrations.models import InboundEvent, Partner
    from orders.models import Product

    skus = list(Product.objects.order_by("sku").values_list("sku", flat=True)[:500])
    target = f"{server.base}/api/v1/webhooks/wms/"
    server_ms: list[float] = []

    def post(session: requests.Session, event: tuple[str, bytes]) -> None:
        body = event[1]
        headers = {"Content-Type": "application/json", "X-Signature": sign(secret, body, int(time.time()))}
        response, sample = _timed(lambda: session.post(target, data=body, headers=headers, timeout=30))
        if response.status_code != 202 or response.json().get("status") != "accepted":
            raise RuntimeError(f"webhook: HTTP {response.status_code}: {response.text[:300]}")
        server_ms.append(sample.server_ms)

    warm = _events("warm", 20, skus)
    warm_session = requests.Session()
    for event in warm:
        post(warm_session, event)
    server_ms.clear()
    latencies, wall = _in_threads(senders, _events("bench", count, skus), post, requests.Session)
    stored = InboundEvent.objects.filter(event_id__startswith="bench-").count()

    partner_id = Partner.objects.get(name="wms").pk

    def insert(conn: psycopg.Connection, event: tuple[str, bytes]) -> None:
        event_id, body = event
        data = json.loads(body)
        conn.execute(
            RAW_INBOUND,
            (
                partner_id,
                event_id,
                data["occurred_at"],
                psycopg.types.json.Jsonb(data["data"]),
                data["data"]["sku"],
            ),
        )

    raw_latencies, raw_wall = _in_threads(senders, _events("raw", count, skus), insert, lambda: connect(url))
    project = {
        "accepted": stored,
        "accepted_per_s": round(stored / wall, 1),
        "p50_ms": ms(percentile(latencies, 50)),
        "p95_ms": ms(percentile(latencies, 95)),
        "server_p95_ms": round(percentile(server_ms, 95), 2),
    }
    raw = {
        "inserted": count,
        "inserted_per_s": round(count / raw_wall, 1),
        "p50_ms": ms(percentile(raw_latencies, 50)),
        "p95_ms": ms(percentile(raw_latencies, 95)),
    }
    with connect(url) as conn:  # the baseline's rows and the apply tasks nobody runs here
        conn.execute("DELETE FROM integrations_inboundevent WHERE event_id LIKE 'raw-%%'")
    return {
        "senders": senders,
        "project": project,
        "raw": raw,
        "ratio": ratio(project["accepted_per_s"], raw["inserted_per_s"]),
    }
