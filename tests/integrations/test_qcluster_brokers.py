"""Background work proven on both django-q2 brokers, end to end.

A real ``manage.py qcluster`` subprocess runs against the test database, once with the
ORM broker and once with Redis (``Q_BROKER=redis://…``). The bundled simulator stands
in for the WMS, the carrier and the ERP (in-process, real HTTP on loopback) and sends
its signed webhooks to the portal served by ``live_server``. An order released through
the real flow leaves an outbox kick that the cluster runs: the simulator receives the
release and the carrier booking, then reports pick, shipment and delivery; the cluster
applies each stored webhook, and the ERP invoice message it then relays brings the
invoice number back. The order ends invoiced with every step on its timeline.

The test process enqueues too (the outbox kick after commit, the webhook intake's
apply kick), so for the Redis run its django-q configuration points at the same Redis
database as the cluster's, as a web process started with that ``Q_BROKER`` would.

The Redis case is collected only when Redis answers (it always runs on this project's
machines and in CI).
"""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
import requests
from django.conf import settings
from django.db import connection
from django_q.conf import Conf
from django_q.models import OrmQ, Task
from pytest_django import DjangoDbBlocker
from pytest_django.live_server_helper import LiveServer

from flows import fulfilment
from fulfillment.core.actors import Actor
from fulfillment.core.models import OutboxMessage
from integrations.models import Endpoint, InboundEvent
from integrations.simulator import Config, make_server
from orders.models import Carrier, Invoice, Order, Status
from portal.management.scenario.integrations import integrations_configure
from tests import factories

# A Redis database of its own, flushed before and after: no other test uses number 13.
REDIS_URL = "redis://127.0.0.1:6379/13"
WAIT_SECONDS = 60
STOP_SECONDS = 30
# The simulated WMS picks 0.4 s after a release, ships at 0.8 s, delivers at 1.6 s.
TIME_SCALE = 0.2


def _redis_answers() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


BROKERS = ["orm", *(["redis"] if _redis_answers() else [])]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module", autouse=True)
def _migration_data_after_the_last_flush(
    django_db_setup: None, django_db_blocker: DjangoDbBlocker
) -> Iterator[None]:
    """Each test ends with a flush of the database; put back the rows the data migrations
    made, for the tests that run after this module."""
    yield
    with django_db_blocker.unblock():
        factories.migration_data()


def database_url() -> str:
    """The test database as a URL for the cluster's settings."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Cluster:
    """``manage.py qcluster`` in a subprocess, its output in a log file."""

    def __init__(self, broker: str, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in {"Q_SYNC", "Q_BROKER"}}
        env.update(DATABASE_URL=database_url(), Q_WORKERS="2", PYTHONUNBUFFERED="1", LOG_LEVEL="INFO")
        if broker == "redis":
            env["Q_BROKER"] = REDIS_URL
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def wait_for(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not done():
            assert self.process.poll() is None, (
                f"the cluster exited ({self.process.returncode}) before {what}"
            )
            assert time.monotonic() < deadline, f"no {what} within {WAIT_SECONDS} s"
            time.sleep(0.25)

    def stop(self) -> int:
        """SIGINT, as Ctrl-C would; killed if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_SECONDS)
            return -signal.SIGKILL

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def broker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The broker of this run, for the test process too (django-q reads it at import)."""
    name: str = request.param
    if name == "redis":
        connection_ = redis.Redis.from_url(REDIS_URL)
        connection_.flushdb()
        monkeypatch.setattr(Conf, "ORM", None)
        monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
        yield name
        connection_.flushdb()
    else:
        assert Conf.ORM == "default" and not Conf.SYNC
        yield name


@pytest.fixture
def simulator(live_server: LiveServer) -> Iterator[str]:
    """The simulated ERP, WMS and carrier, sending webhooks to the live portal."""
    config = Config(
        port=0, portal_url=live_server.url, time_scale=TIME_SCALE, booking_failure_rate=0.0,
        short_pick_rate=0.0, callback_attempts=3, callback_backoff=0.5, seed=11,
    )  # fmt: skip
    server = make_server(config)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def stats(sim: str) -> dict[str, Any]:
    return requests.get(sim + "/_stats", timeout=5).json()


@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_the_cluster_relays_the_outbox_and_applies_webhooks(
    broker: str, simulator: str, tmp_path: Path
) -> None:
    factories.migration_data()
    integrations_configure()  # the partners' secrets are the simulator's
    Endpoint.objects.update(base_url=simulator)
    warehouse = factories.warehouse("WH1")  # the simulator's built-in catalog: WH1, DHL
    Carrier.objects.create(code="DHL", name="DHL Freight")
    shelf = [factories.product(price="12.50"), factories.product(price="40.00")]
    for product in shelf:
        factories.stock(warehouse, product, on_hand=50)

    cluster = Cluster(broker, tmp_path / "qcluster.log")
    try:
        order = factories.order(lines=[(shelf[0], 4), (shelf[1], 2)], wh=warehouse, actor=Actor.named("erp"))
        outcome = fulfilment.order_intake(order=order, actor=Actor.named("erp"))
        assert outcome.order.status == Status.RELEASED
        ref = order.external_id

        cluster.wait_for(
            "release at the simulator",
            lambda: stats(simulator)["by_path"].get("/wms/releases", {}).get("applied") == 1,
        )
        cluster.wait_for(
            "invoice",
            lambda: Order.objects.filter(pk=order.pk, status=Status.INVOICED).exists(),
        )
        cluster.wait_for(
            "every message delivered",
            lambda: not OutboxMessage.objects.exclude(state=OutboxMessage.State.DELIVERED).exists(),
        )
    finally:
        exit_code = cluster.stop()
        print(cluster.output())  # shown when the test fails

    moves = list(Order.objects.get(pk=order.pk).transitions.values_list("transition", "actor_system"))
    assert moves == [
        ("receive", "erp"), ("start_credit_check", "erp"), ("pass_credit_check", "erp"),
        ("allocate_in_full", "erp"), ("release", "erp"), ("start_picking", "wms"), ("pack", "wms"),
        ("ship_in_full", "wms"), ("deliver", "wms"), ("invoice", "relay"),
    ]  # fmt: skip
    invoice = Invoice.objects.get(order=order)
    messages = OutboxMessage.objects.filter(subject_ref=ref)
    assert invoice.number == messages.get(topic="erp.invoice").response["invoice_number"]
    assert sorted(messages.values_list("topic", flat=True)) == sorted(
        ["order.release", "carrier.booking", "customer.notify", "erp.invoice"]
        + ["erp.status"] * 3  # released, shipped, delivered
    )
    sim = stats(simulator)
    assert sim["applied"] + sim["rejected"] == len(sim["keys"]) == messages.count()
    assert set(sim["keys"]) == set(messages.values_list("idempotency_key", flat=True))
    events = InboundEvent.objects.all()
    assert sorted(events.values_list("type", flat=True)) == sorted(
        ["pick.completed", "shipment.confirmed", "delivery.confirmed"] + ["tracking.updated"] * 3
    )
    assert set(events.values_list("state", flat=True)) <= {"applied", "skipped"}
    assert Task.objects.filter(func="integrations.tasks.apply_pending_events", success=True).exists()
    assert Task.objects.filter(func="integrations.tasks.relay_outbox", success=True).exists()
    assert not OrmQ.objects.exists()
    queue = "django_q:fulfillment:q" if broker == "redis" else "fulfillment"
    assert f"[{queue}] running." in cluster.output(), "the cluster used the broker of this run"
    assert exit_code == 0
