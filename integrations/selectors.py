"""Reads for the integration screens: endpoint health, outbox messages, inbound events.

Nothing here writes. Every function runs a fixed number of queries whatever the number
of rows: health is a handful of aggregates over all endpoints at once, lists are limited
keyset pages (newest first) with their related rows joined in.
"""

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Min, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from fulfillment.core import clock
from fulfillment.core.errors import NotFound
from fulfillment.core.models import OutboxMessage
from integrations.adapters import SENDERS
from integrations.inbound import HANDLERS
from integrations.models import DeliveryAttempt, Endpoint, InboundEvent, OutboxAction, Partner
from orders.models import Order
from orders.selectors import Cursor

# The systems the portal writes to (orders.services): shown even before they are configured.
SYSTEMS = ("erp", "wms", "carrier", "notify")
TOPICS = tuple(sorted(SENDERS))
EVENT_TYPES = tuple(sorted({event_type for _, event_type in HANDLERS}))
HEALTH_WINDOW = timedelta(hours=24)
# Latency p95 without percentile_cont (SQLite): over the most recent attempts per endpoint.
LATENCY_SAMPLE = 1000
WAITING = (OutboxMessage.State.PENDING, OutboxMessage.State.SENDING)

T = TypeVar("T")


# --- endpoint health ------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointHealth:
    name: str
    endpoint: Endpoint | None  # None: messages go to a system that is not configured
    attempts: int = 0  # in the window
    succeeded: int = 0
    latency_p95_ms: float | None = None
    backlog: int = 0  # pending + sending, whatever their age
    dead: int = 0
    oldest_waiting_at: datetime | None = None

    @property
    def success_rate(self) -> float | None:
        """Share of the window's attempts that succeeded, in percent (None without attempts)."""
        return 100 * self.succeeded / self.attempts if self.attempts else None

    @property
    def circuit(self) -> str:
        return self.endpoint.circuit if self.endpoint is not None else ""

    @property
    def last_success_at(self) -> datetime | None:
        return self.endpoint.last_success_at if self.endpoint is not None else None

    @property
    def tone(self) -> str:
        """How the card looks: danger (open circuit, not sending), warn, or ok."""
        if self.endpoint is None or not self.endpoint.enabled or self.circuit == Endpoint.Circuit.OPEN:
            return "danger"
        if self.circuit == Endpoint.Circuit.HALF_OPEN or self.dead:
            return "warn"
        return "ok"


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate: the continuous percentile of the expression."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(share)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, share: float, **extra: Any) -> None:
        super().__init__(expression, share=float(share), **extra)


def percentile(values: Sequence[float], share: float) -> float | None:
    """The same figure as percentile_cont: linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = share * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _latency_samples(since: datetime) -> dict[str, list[int]]:
    ranked = (
        DeliveryAttempt.objects.filter(at__gte=since)
        .annotate(
            system=F("message__endpoint"),
            recent=Window(
                RowNumber(), partition_by=[F("message__endpoint")], order_by=[F("at").desc(), F("id").desc()]
            ),
        )
        .filter(recent__lte=LATENCY_SAMPLE)
        .values_list("system", "latency_ms")
    )
    samples: dict[str, list[int]] = defaultdict(list)
    for system, latency in ranked:
        samples[system].append(latency)
    return samples


def endpoint_health(
    *, window: timedelta = HEALTH_WINDOW, now: datetime | None = None
) -> list[EndpointHealth]:
    """Per system: attempts, success rate and latency p95 over the window; backlog, dead
    letters, circuit and last success as they are now. Three queries (four on SQLite)."""
    since = (now or clock.now()) - window
    on_postgres = connection.vendor == "postgresql"
    endpoints = {e.name: e for e in Endpoint.objects.order_by("name")}
    queued = {
        row["endpoint"]: row
        for row in OutboxMessage.objects.filter(state__in=[*WAITING, OutboxMessage.State.DEAD])
        .values("endpoint")
        .annotate(
            backlog=Count("id", filter=Q(state__in=WAITING)),
            dead=Count("id", filter=Q(state=OutboxMessage.State.DEAD)),
            oldest=Min("created_at", filter=Q(state__in=WAITING)),
        )
        .order_by()
    }
    figures: dict[str, Any] = {
        "total": Count("id"),
        "succeeded": Count("id", filter=Q(succeeded=True)),
    }
    if on_postgres:
        figures["p95"] = PercentileCont("latency_ms", 0.95)
    attempted = {
        row["message__endpoint"]: row
        for row in DeliveryAttempt.objects.filter(at__gte=since)
        .values("message__endpoint")
        .annotate(**figures)
        .order_by()
    }
    samples = {} if on_postgres else _latency_samples(since)

    cards = []
    for name in sorted({*SYSTEMS, *endpoints, *queued, *attempted}):
        counts, tried = queued.get(name, {}), attempted.get(name, {})
        p95 = tried.get("p95") if on_postgres else percentile(samples.get(name, []), 0.95)
        cards.append(
            EndpointHealth(
                name=name,
                endpoint=endpoints.get(name),
                attempts=tried.get("total", 0),
                succeeded=tried.get("succeeded", 0),
                latency_p95_ms=p95,
                backlog=counts.get("backlog", 0),
                dead=counts.get("dead", 0),
                oldest_waiting_at=counts.get("oldest"),
            )
        )
    return cards


# --- lists with keyset pagination -----------------------------------------------------------


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    next_cursor: Cursor | None
    order_ids: dict[str, int] = field(default_factory=dict)  # order ref → order id, for links


def _keyset(
    qs: QuerySet[Any], stamp: str, after: Cursor | None, limit: int
) -> tuple[list[Any], Cursor | None]:
    """A page newest first on (stamp, id), after the cursor; the next cursor if more follow."""
    if after is not None:
        qs = qs.filter(
            Q(**{f"{stamp}__lte": after.created_at}),
            Q(**{f"{stamp}__lt": after.created_at}) | Q(id__lt=after.id),
        )
    rows = list(qs.order_by(f"-{stamp}", "-id")[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, Cursor(created_at=getattr(rows[-1], stamp), id=rows[-1].pk)


def _order_ids(refs: set[str]) -> dict[str, int]:
    refs.discard("")
    if not refs:
        return {}
    return dict(Order.objects.filter(external_id__in=refs).values_list("external_id", "pk"))


@dataclass(frozen=True)
class OutboxFilters:
    endpoint: str = ""
    topic: str = ""
    state: str = ""
    order_ref: str = ""


def outbox_messages(
    *, filters: OutboxFilters, after: Cursor | None = None, limit: int = 50
) -> Page[OutboxMessage]:
    """Outbox messages matching ``filters``, newest first (created_at, id), a page at a time."""
    qs = OutboxMessage.objects.defer("payload", "response")
    if filters.endpoint:
        qs = qs.filter(endpoint=filters.endpoint)
    if filters.topic:
        qs = qs.filter(topic=filters.topic)
    if filters.state:
        qs = qs.filter(state=filters.state)
    if filters.order_ref:
        qs = qs.filter(subject_ref=filters.order_ref)
    rows, cursor = _keyset(qs, "created_at", after, limit)
    return Page(rows=rows, next_cursor=cursor, order_ids=_order_ids({m.subject_ref for m in rows}))


def dead_letters(*, limit: int = 50) -> Page[OutboxMessage]:
    """The newest dead letters, for the health screen's panel."""
    return outbox_messages(filters=OutboxFilters(state=OutboxMessage.State.DEAD), limit=limit)


@dataclass(frozen=True)
class InboundFilters:
    partner: Partner | None = None
    type: str = ""
    state: str = ""
    order_ref: str = ""


def inbound_events(
    *, filters: InboundFilters, after: Cursor | None = None, limit: int = 50
) -> Page[InboundEvent]:
    """Inbound events matching ``filters``, newest first (received_at, id), a page at a time."""
    qs = InboundEvent.objects.select_related("partner").defer("data")
    if filters.partner is not None:
        qs = qs.filter(partner=filters.partner)
    if filters.type:
        qs = qs.filter(type=filters.type)
    if filters.state:
        qs = qs.filter(state=filters.state)
    if filters.order_ref:
        qs = qs.filter(subject_ref=filters.order_ref)
    rows, cursor = _keyset(qs, "received_at", after, limit)
    return Page(rows=rows, next_cursor=cursor, order_ids=_order_ids({e.subject_ref for e in rows}))


# --- detail ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageDetail:
    message: OutboxMessage
    attempts: list[DeliveryAttempt]  # oldest first
    actions: list[OutboxAction]  # oldest first
    order_id: int | None


def outbox_message_detail(*, message_id: int) -> MessageDetail:
    message = OutboxMessage.objects.filter(pk=message_id).first()
    if message is None:
        raise NotFound(f"There is no outbox message {message_id}.")
    return MessageDetail(
        message=message,
        attempts=list(DeliveryAttempt.objects.filter(message=message).order_by("at", "id")),
        actions=list(
            OutboxAction.objects.filter(message=message).select_related("actor").order_by("at", "id")
        ),
        order_id=_order_ids({message.subject_ref}).get(message.subject_ref),
    )


@dataclass(frozen=True)
class EventDetail:
    event: InboundEvent
    order_id: int | None


def inbound_event_detail(*, event_id: int) -> EventDetail:
    event = InboundEvent.objects.select_related("partner").filter(pk=event_id).first()
    if event is None:
        raise NotFound(f"There is no inbound event {event_id}.")
    return EventDetail(event=event, order_id=_order_ids({event.subject_ref}).get(event.subject_ref))
