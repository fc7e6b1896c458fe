"""Measure 6, the outbox relay against the simulator (its own process, no faults).

- Drain: a backlog of ``erp.status`` messages delivered by ``integrations.relay.relay_run``
  against a raw loop (claim 50 with SKIP LOCKED, POST each, mark it delivered).
- Latency: messages written through ``outbox_put`` one per transaction at a steady rate
  while a real ``manage.py qcluster`` (the background worker) relays them as the outbox's
  after-commit kick asks; commit-to-delivery = ``delivered_at`` minus the moment the
  writing transaction committed.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from bench.database import connect
from bench.report import ms, percentile, ratio

BASE_DIR = Path(__file__).resolve().parent.parent
TOPIC = "erp.status"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Simulator:
    def __init__(self, portal_url: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "integrations.simulator", "--port", str(port),
                "--portal-url", portal_url, "--booking-failure-rate", "0", "--short-pick-rate", "0",
                "--seed", "1",
            ],
            cwd=BASE_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("the simulator did not start")

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_stats", timeout=5).json()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


class Worker:
    """``manage.py qcluster``: the portal's background worker."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _put(prefix: str, n: int) -> None:
    from fulfillment.core.outbox import outbox_put

    ref = f"{prefix}-{n:06d}"
    outbox_put(
        endpoint="erp",
        topic=TOPIC,
        payload={"order": ref, "status": "released", "at": "2026-01-01T00:00:00+00:00"},
        idempotency_key=f"bench:{ref}",
        subject_ref=ref,
    )


def _backlog(prefix: str, count: int) -> None:
    from django.db import transaction

    with transaction.atomic():
        for n in range(count):
            _put(prefix, n)
    _forget_kicks()


def _forget_kicks() -> None:
    """The relay kicks queued while no worker runs: the measures run the relay themselves."""
    from django_q.models import OrmQ

    OrmQ.objects.all().delete()


def _pending(prefix: str) -> int:
    from fulfillment.core.models import OutboxMessage

    return (
        OutboxMessage.objects.filter(idempotency_key__startswith=f"bench:{prefix}-")
        .exclude(state=OutboxMessage.State.DELIVERED)
        .count()
    )


RAW_CLAIM = """
UPDATE core_outboxmessage SET state = 'sending', lease_until = now() + interval '60 seconds'
WHERE id IN (
    SELECT id FROM core_outboxmessage
    WHERE state IN ('pending', 'sending') AND next_attempt_at <= now()
      AND (lease_until IS NULL OR lease_until < now())
    ORDER BY next_attempt_at, id FOR UPDATE SKIP LOCKED LIMIT 50
)
RETURNING id, payload, idempotency_key
"""
RAW_DONE = """
UPDATE core_outboxmessage SET state = 'delivered', delivered_at = now(), attempts = attempts + 1,
    lease_until = NULL, response = %s
WHERE id = %s
"""


def _raw_relay(url: str, simulator: str) -> int:
    delivered = 0
    session = requests.Session()
    with connect(url) as conn:
        while True:
            claimed = conn.execute(RAW_CLAIM).fetchall()
            if not claimed:
                return delivered
            for pk, payload, key in claimed:
                response = session.post(
                    f"{simulator}/erp/order-status", json=payload, headers={"Idempotency-Key": key}, timeout=5
                )
                response.raise_for_status()
                conn.execute(RAW_DONE, (response.text, pk))
                delivered += 1


def drain(url: str, simulator: Simulator, count: int) -> dict[str, Any]:
    from integrations.relay import relay_run

    _backlog("drain", count)
    started = time.perf_counter()
    settled = 0
    while _pending("drain"):
        settled += relay_run()
    seconds = time.perf_counter() - started

    _backlog("rawdrain", count)
    raw_started = time.perf_counter()
    raw_delivered = _raw_relay(url, simulator.url)
    raw_seconds = time.perf_counter() - raw_started
    project = {"delivered": settled, "delivered_per_s": round(settled / seconds, 1)}
    raw = {"delivered": raw_delivered, "delivered_per_s": round(raw_delivered / raw_seconds, 1)}
    return {
        "project": project,
        "raw": raw,
        "ratio": ratio(project["delivered_per_s"], raw["delivered_per_s"]),
    }


def steady(env: dict[str, str], rate: int, seconds: float, on_worker: Any) -> dict[str, Any]:
    """Offer ``rate`` messages a second for ``seconds`` to the real background worker."""
    from django.db import transaction

    from fulfillment.core.models import OutboxMessage

    _forget_kicks()
    worker = Worker(env)
    try:
        on_worker(worker.process.pid)
        time.sleep(3)  # the cluster's processes start
        committed: dict[str, float] = {}
        total = int(rate * seconds)
        started = time.time()
        for n in range(total):
            due = started + n / rate
            if (wait := due - time.time()) > 0:
                time.sleep(wait)
            with transaction.atomic():
                _put("steady", n)
            committed[f"bench:steady-{n:06d}"] = time.time()
        offered_for = time.time() - started
        deadline = time.monotonic() + 120
        while _pending("steady") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        worker.stop()
    rows = OutboxMessage.objects.filter(idempotency_key__in=committed).values_list(
        "idempotency_key", "state", "delivered_at"
    )
    latencies = [
        at.timestamp() - committed[key] for key, state, at in rows if state == OutboxMessage.State.DELIVERED
    ]
    last = max((at for _, _, at in rows if at is not None), default=None)
    return {
        "offered": total,
        "offered_per_s": round(total / offered_for, 1),
        "delivered": len(latencies),
        "delivered_per_s": round(len(latencies) / (last.timestamp() - started), 1) if last else 0,
        "commit_to_delivery_p50_ms": ms(percentile(latencies, 50)) if latencies else None,
        "commit_to_delivery_p95_ms": ms(percentile(latencies, 95)) if latencies else None,
        "commit_to_delivery_max_ms": ms(max(latencies)) if latencies else None,
    }


def worker_env(base: dict[str, str]) -> dict[str, str]:
    return {**base, **{k: v for k, v in os.environ.items() if k.startswith("Q_")}}
