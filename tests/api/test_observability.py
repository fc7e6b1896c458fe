"""Request ids, logs, /healthz and /metrics."""

import json
import logging
import re
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError
from django.test import Client
from django_q.conf import Conf
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings

from fulfillment.core import clock, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.models import OutboxMessage, Queue, WorkItem
from fulfillment.core.outbox import outbox_put
from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE
from integrations.models import InboundEvent, Partner
from portal import ops
from portal.observability import JsonFormatter, RequestIdFilter
from tests import factories
from tests.api.conftest import Caller, assert_problem, session_caller, token_caller

pytestmark = pytest.mark.django_db
HEX32 = re.compile(r"[0-9a-f]{32}")


# --- request ids --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/orders/", "/api/v1/nowhere/", "/login/", "/healthz"])
def test_every_response_carries_a_request_id(path: str) -> None:
    client = Client()
    assert HEX32.fullmatch(client.get(path)["X-Request-ID"])
    assert client.get(path, headers={"X-Request-ID": "erp-7f3a:push/2"})["X-Request-ID"] == "erp-7f3a:push/2"


@pytest.mark.parametrize("given", ["", "x" * 201, "has space", "semi;colon", "<script>", "ünicode"])
def test_an_unsafe_request_id_is_replaced(given: str) -> None:
    sent = Client().get("/healthz", headers={"X-Request-ID": given})["X-Request-ID"]
    assert HEX32.fullmatch(sent)
    assert Client().get("/healthz", headers={"X-Request-ID": "y" * 200})["X-Request-ID"] == "y" * 200


def test_log_records_made_during_a_request_carry_its_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.INFO, logger="portal.access")
    caller = token_caller(CUSTOMER_SERVICE)
    caller.get("/api/v1/orders/999/", **{"X-Request-ID": "req-1"})
    caller.get("/api/v1/carriers/", **{"X-Request-ID": "req-2"})
    logging.getLogger("portal.test").warning("between requests")

    access = [(r.getMessage(), r.request_id, r.route) for r in caplog.records if r.name == "portal.access"]
    assert access == [
        ("GET /api/v1/orders/999/ 404", "req-1", "/api/v1/orders/(?P<pk>[0-9]{1,18})/"),
        ("GET /api/v1/carriers/ 200", "req-2", "/api/v1/carriers/"),
    ]
    not_found = next(r for r in caplog.records if r.name == "django.request")
    assert not_found.request_id == "req-1"
    assert next(r for r in caplog.records if r.name == "portal.test").request_id == "-"


def test_the_json_formatter_writes_one_object_per_record() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.LogRecord(
            "portal.x", logging.ERROR, __file__, 1, "%s failed", ("push",), sys.exc_info()
        )
    record.order = "ERP-1"
    record.amount = Decimal("1.50")
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "portal.x" and entry["message"] == "push failed"
    assert entry["request_id"] == "-" and entry["order"] == "ERP-1" and entry["amount"] == "1.50"
    assert entry["exception"].startswith("Traceback") and "ValueError: bad" in entry["exception"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])


# --- /healthz -----------------------------------------------------------------------------


def test_healthz_needs_no_login_and_says_ok() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"database": "ok", "broker": "ok"}
    assert Client().post("/healthz").status_code == 405


def test_healthz_is_503_when_the_redis_broker_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    response = Client().get("/healthz")
    assert response.status_code == 503 and response.json() == {"database": "ok", "broker": "unavailable"}


def test_healthz_is_503_when_the_database_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    class Down:
        def cursor(self) -> None:
            raise OperationalError("connection refused")

    monkeypatch.setattr(ops, "connection", Down())
    response = Client().get("/healthz")
    assert response.status_code == 503 and response.json() == {"database": "unavailable", "broker": "ok"}


# --- /metrics -----------------------------------------------------------------------------


def scrape(caller: Caller, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = caller.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_metrics_show_queue_depths_outbox_backlog_and_dead_letters(settings: Settings) -> None:
    settings.METRICS_TOKEN = "scrape-secret"
    planning = Queue.objects.get(slug="planning")
    subject = workqueue.Subject(ref="SO-1", revenue_at_risk=Decimal("10"))
    args = {"queue": planning, "kind": "exception", "type": "inventory_shortfall", "subject": subject}
    actor = Actor.named("test")
    claimed = workqueue.work_item_open(title="a", actor=actor, **args)
    workqueue.work_item_open(title="b", actor=actor, **args)
    late = workqueue.work_item_open(title="c", actor=actor, **args)
    WorkItem.objects.filter(pk=claimed.pk).update(assignee=factories.user("p1"), claimed_at=clock.now())
    WorkItem.objects.filter(pk=late.pk).update(sla_due_at=clock.now() - timedelta(minutes=1))
    WorkItem.objects.create(queue=planning, kind="exception", type="x", title="done", state="resolved")
    for n, state in enumerate(["pending", "pending", "dead", "delivered", "sending"]):
        message = outbox_put(endpoint="erp", topic="erp.status", payload={}, idempotency_key=f"k{n}")
        OutboxMessage.objects.filter(pk=message.pk).update(state=state)
    outbox_put(endpoint="wms", topic="order.release", payload={}, idempotency_key="w1")
    wms = Partner.objects.get_or_create(name="wms")[0]
    for n, state in enumerate(["failed", "applied", "pending"]):
        InboundEvent.objects.create(
            partner=wms, event_id=f"e{n}", type="x", occurred_at=clock.now(), data={}, state=state
        )
    Client().get("/api/v1/carriers/")  # one request to count

    samples = scrape(Caller(client=Client()), Authorization="Bearer scrape-secret")

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    assert value("portal_queue_open_items", queue="planning") == 3
    assert value("portal_queue_unclaimed_items", queue="planning") == 2
    assert value("portal_queue_breached_items", queue="planning") == 1
    assert value("portal_queue_open_items", queue="finance-approvals") == 0
    assert value("portal_outbox_messages", endpoint="erp", state="pending") == 2
    assert value("portal_outbox_messages", endpoint="erp", state="sending") == 1
    assert value("portal_outbox_messages", endpoint="erp", state="dead") == 1
    assert value("portal_outbox_messages", endpoint="erp", state="delivered") is None
    assert value("portal_outbox_messages", endpoint="wms", state="pending") == 1
    assert value("portal_outbox_dead_letters", endpoint="erp") == 1
    assert value("portal_outbox_dead_letters", endpoint="wms") is None
    assert value("portal_inbound_events", partner="wms", state="failed") == 1
    assert value("portal_inbound_events", partner="wms", state="pending") == 1
    assert value("portal_inbound_events", partner="wms", state="applied") is None
    assert value("portal_http_requests_total", method="GET", route="/api/v1/carriers/", status="401") >= 1
    bucket = value("portal_http_request_duration_seconds_count", method="GET", route="/api/v1/carriers/")
    assert bucket is not None and bucket >= 1


def test_the_request_counter_counts_each_request() -> None:
    labels = {"method": "GET", "route": "/api/v1/orders/", "status": "401"}
    before = REGISTRY.get_sample_value("portal_http_requests_total", labels) or 0
    Client().get("/api/v1/orders/")
    Client().get("/api/v1/orders/?status=x")
    assert REGISTRY.get_sample_value("portal_http_requests_total", labels) == before + 2


def test_who_may_scrape(settings: Settings) -> None:
    settings.METRICS_TOKEN = "scrape-secret"
    assert scrape(session_caller(ADMIN))
    assert scrape(token_caller(ADMIN, scopes=("admin",)))
    superuser = token_caller(user=User.objects.create_superuser("root", password="pw"), scopes=("admin",))
    assert scrape(superuser)

    anonymous = Caller(client=Client())
    assert_problem(anonymous.get("/metrics"), 401, "not_authenticated")
    assert_problem(anonymous.get("/metrics", Authorization="Bearer wrong"), 401, "authentication_failed")
    assert_problem(anonymous.get("/metrics", Authorization="Token wrong"), 401, "authentication_failed")
    assert_problem(session_caller(CUSTOMER_SERVICE).get("/metrics"), 403, "permission_denied")
    assert_problem(token_caller(ADMIN, scopes=("read", "write")).get("/metrics"), 403, "permission_denied")
    assert_problem(
        token_caller(CUSTOMER_SERVICE, scopes=("admin",)).get("/metrics"), 403, "permission_denied"
    )


def test_without_a_metrics_token_bearer_scraping_is_closed(settings: Settings) -> None:
    settings.METRICS_TOKEN = ""
    response = Caller(client=Client()).get("/metrics", Authorization="Bearer ")
    assert_problem(response, 401, "authentication_failed")
