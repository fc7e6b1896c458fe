"""Operations endpoints: ``/healthz`` for load balancers, ``/metrics`` for Prometheus.

``/healthz`` needs no login: 200 ``{"database": "ok", "broker": "ok"}`` when the
database answers and django-q2's broker is reachable (ORM broker: its queue table;
Redis broker: a ping and the queue length), else 503 with ``"unavailable"`` for the
part that failed.

``/metrics`` (Prometheus text format) answers a scraper with
``Authorization: Bearer <METRICS_TOKEN>`` (env ``METRICS_TOKEN``; without it this way
is closed), an API token (``Authorization: Token <key>``) with the ``admin`` scope of a
user with the admin role, or an admin's session; anyone else gets 401 (no or bad
credentials) or 403. Besides the request metrics of ``portal.observability``, it
computes at scrape time, in a few grouped queries:

- ``portal_queue_open_items``, ``portal_queue_unclaimed_items``,
  ``portal_queue_breached_items`` (SLA due time passed) per ``queue`` slug;
- ``portal_outbox_messages`` per ``endpoint`` and ``state`` (pending, sending, dead);
- ``portal_outbox_dead_letters`` per ``endpoint``;
- ``portal_inbound_events`` per ``partner`` and ``state`` (pending, deferred, failed).

With several gunicorn workers set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory,
before the workers start) so that the request metrics are summed over the workers.
"""

import hmac
import logging
import os
from collections.abc import Iterator

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from django_q.brokers import get_broker
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from rest_framework import exceptions

from fulfillment.core import clock
from fulfillment.core.models import OutboxMessage, Queue, WorkItem
from fulfillment.core.problems import problem_response
from fulfillment.core.roles import ADMIN, has_role
from integrations.models import InboundEvent
from portal.api.auth import TokenAuthentication
from portal.api.models import Scope

log = logging.getLogger(__name__)

OUTBOX_BACKLOG_STATES = (OutboxMessage.State.PENDING, OutboxMessage.State.SENDING, OutboxMessage.State.DEAD)
INBOUND_BACKLOG_STATES = (
    InboundEvent.State.PENDING,
    InboundEvent.State.DEFERRED,
    InboundEvent.State.FAILED,
)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        log.exception("health check: the database does not answer")
        return False


def _broker_ok() -> bool:
    try:
        broker = get_broker()
        broker.ping()
        broker.queue_size()
    except Exception:
        log.exception("health check: the task broker is not reachable")
        return False
    return True


@login_not_required
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    body = {name: "ok" if ok else "unavailable" for name, ok in checks.items()}
    return JsonResponse(body, status=200 if all(checks.values()) else 503)


# --- /metrics --------------------------------------------------------------------------


class BusinessGauges:
    """A Prometheus collector that reads the queues and the integration backlog."""

    def collect(self) -> Iterator[Metric]:
        now = clock.now()
        is_open = Q(items__state=WorkItem.State.OPEN)
        queues = Queue.objects.annotate(
            n_open=Count("items", filter=is_open),
            n_unclaimed=Count(
                "items",
                filter=is_open
                & Q(items__assignee__isnull=True)
                & (Q(items__snoozed_until__isnull=True) | Q(items__snoozed_until__lte=now)),
            ),
            n_breached=Count("items", filter=is_open & Q(items__sla_due_at__lt=now)),
        ).order_by("slug")
        families = {
            name: GaugeMetricFamily(f"portal_queue_{name}_items", help_, labels=["queue"])
            for name, help_ in (
                ("open", "Open work items."),
                ("unclaimed", "Open work items nobody holds (not snoozed)."),
                ("breached", "Open work items past their SLA due time."),
            )
        }
        for queue in queues:
            families["open"].add_metric([queue.slug], queue.n_open)
            families["unclaimed"].add_metric([queue.slug], queue.n_unclaimed)
            families["breached"].add_metric([queue.slug], queue.n_breached)
        yield from families.values()

        outbox = GaugeMetricFamily(
            "portal_outbox_messages", "Outbox messages not delivered yet.", labels=["endpoint", "state"]
        )
        dead = GaugeMetricFamily(
            "portal_outbox_dead_letters", "Dead-lettered outbox messages.", labels=["endpoint"]
        )
        rows = (
            OutboxMessage.objects.filter(state__in=OUTBOX_BACKLOG_STATES)
            .values_list("endpoint", "state")
            .annotate(n=Count("id"))
            .order_by("endpoint", "state")
        )
        for endpoint, state, n in rows:
            outbox.add_metric([endpoint, state], n)
            if state == OutboxMessage.State.DEAD:
                dead.add_metric([endpoint], n)
        yield outbox
        yield dead

        inbound = GaugeMetricFamily(
            "portal_inbound_events", "Inbound events waiting or failed.", labels=["partner", "state"]
        )
        rows = (
            InboundEvent.objects.filter(state__in=INBOUND_BACKLOG_STATES)
            .values_list("partner__name", "state")
            .annotate(n=Count("id"))
            .order_by("partner__name", "state")
        )
        for partner, state, n in rows:
            inbound.add_metric([partner, state], n)
        yield inbound


class _Exposition:
    """The request metrics (this process, or all workers in multiprocess mode) and the gauges."""

    def collect(self) -> Iterator[Metric]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            yield from registry.collect()
        else:
            yield from REGISTRY.collect()
        yield from BusinessGauges().collect()


def _scrape_denied(request: HttpRequest) -> HttpResponse | None:
    """None when the caller may scrape; else the 401/403 problem to answer."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    expected = settings.METRICS_TOKEN
    if scheme.lower() == "bearer":
        if expected and hmac.compare_digest(credential.strip().encode(), expected.encode()):
            return None
        return problem_response(
            status=401,
            code="authentication_failed",
            title="Authentication failed",
            detail="Wrong bearer token.",
        )
    user, scopes = request.user, set(Scope.values)
    if scheme.lower() == "token":
        try:
            user, token = TokenAuthentication().authenticate(request)
        except exceptions.AuthenticationFailed as exc:
            return problem_response(
                status=401,
                code="authentication_failed",
                title="Authentication failed",
                detail=str(exc.detail),
            )
        scopes = set(token.scopes)
    if not user.is_authenticated:
        return problem_response(
            status=401, code="not_authenticated", title="Not authenticated",
            detail="Send the metrics bearer token, an admin API token or an admin session.",
        )  # fmt: skip
    if Scope.ADMIN not in scopes or not has_role(user, ADMIN):
        return problem_response(
            status=403, code="permission_denied", title="Permission denied",
            detail="Metrics are for the admin role (and tokens with the admin scope).",
        )  # fmt: skip
    return None


@login_not_required
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    denied = _scrape_denied(request)
    if denied is not None:
        return denied
    return HttpResponse(generate_latest(_Exposition()), content_type=CONTENT_TYPE_LATEST)
