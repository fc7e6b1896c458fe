"""Reads of work items for the queue screens. Nothing here writes.

Every function runs a fixed number of queries whatever the number of rows. Queue pages
read open items in the order of the partial index ``workitem_queue_rank_open``
(``-priority_key, created_at, id``) and page with a keyset cursor over those three
columns, never with OFFSET.
"""

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from approvals.models import ApprovalRequest
from approvals.models import Kind as ApprovalKind
from exceptions.models import ExceptionType, OrderException
from fulfillment.core import roles
from fulfillment.core.errors import InvalidInput
from fulfillment.core.models import Notification, Queue, WorkItem, WorkItemEvent
from fulfillment.core.priority import RankFactor, rank_factors
from orders.models import Customer, Order, OrderTransition, Tier
from portal.models import SavedView

Open = WorkItem.State.OPEN
ORDER_ROWS = ("-priority_key", "created_at", "id")
TIMELINE_ROWS = 20


# --- filters and the keyset cursor ------------------------------------------------------


@dataclass(frozen=True)
class WorkFilters:
    type: str = ""
    kind: str = ""
    warehouse: str = ""  # warehouse code
    customer: str = ""  # code or name, contains
    tier: str = ""
    breached: bool = False
    assignee: str = ""  # "", ASSIGNEE_ME or ASSIGNEE_NONE


ASSIGNEE_ME = "me"
ASSIGNEE_NONE = "unassigned"


@dataclass(frozen=True)
class RankCursor:
    """Where a page ended: the last row's (priority_key, created_at, id)."""

    priority_key: int
    created_at: datetime
    id: int

    def encode(self) -> str:
        raw = f"{self.priority_key}|{self.created_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def after(cls, item: WorkItem) -> "RankCursor":
        return cls(priority_key=item.priority_key, created_at=item.created_at, id=item.pk)


def cursor_decode(token: str) -> RankCursor:
    """The inverse of ``RankCursor.encode``; anything else raises ``InvalidInput``."""
    invalid = InvalidInput("This page link is not valid (it may have been cut or edited).")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        key_text, at_text, id_text = raw.split("|")
        key, created_at, pk = int(key_text), datetime.fromisoformat(at_text), int(id_text)
        if created_at.tzinfo is None or not 0 < pk < 2**63 or not -(2**63) <= key < 2**63:
            raise invalid
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise invalid from exc
    return RankCursor(priority_key=key, created_at=created_at.astimezone(UTC), id=pk)


@dataclass(frozen=True)
class TypeCatalogue:
    labels: dict[str, str]  # work-item type code → name: exception types and approval kinds
    reason_codes: dict[str, list[str]]  # exception type code → the codes a person may choose

    def reason_groups(self, types: set[str]) -> list[tuple[str, list[str]]]:
        """(type name, reason codes) for the exception types among ``types``, by name."""
        return sorted((self.labels[t], self.reason_codes[t]) for t in types if t in self.reason_codes)


def type_catalogue() -> TypeCatalogue:
    """One query."""
    types = list(ExceptionType.objects.order_by("name").values_list("code", "name", "reason_codes"))
    labels = {code: name for code, name, _ in types}
    labels.update(ApprovalKind.choices)
    return TypeCatalogue(labels=labels, reason_codes={code: codes for code, _, codes in types})


def _filtered(
    qs: QuerySet[WorkItem], filters: WorkFilters, *, user: AbstractBaseUser, now: datetime
) -> QuerySet[WorkItem]:
    if filters.type:
        qs = qs.filter(type=filters.type)
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.warehouse:
        qs = qs.filter(warehouse_code=filters.warehouse)
    if filters.customer:
        term = filters.customer
        customers = Customer.objects.filter(Q(code__icontains=term) | Q(name__icontains=term))
        qs = qs.filter(customer_code__in=customers.values("code"))
    if filters.tier:
        qs = qs.filter(customer_tier=filters.tier)
    if filters.breached:
        qs = qs.filter(sla_due_at__lt=now)
    if filters.assignee == ASSIGNEE_ME:
        qs = qs.filter(assignee=user)
    elif filters.assignee == ASSIGNEE_NONE:
        qs = qs.filter(assignee__isnull=True)
    return qs


def _after(qs: QuerySet[WorkItem], cursor: RankCursor) -> QuerySet[WorkItem]:
    # Rows after the cursor in (-priority_key, created_at, id) order, with a plain range on
    # priority_key that the index can seek on.
    return qs.filter(
        Q(priority_key__lte=cursor.priority_key),
        Q(priority_key__lt=cursor.priority_key)
        | Q(created_at__gt=cursor.created_at)
        | Q(created_at=cursor.created_at, id__gt=cursor.id),
    )


@dataclass(frozen=True)
class QueuePage:
    items: list[WorkItem]
    next_cursor: RankCursor | None


def queue_items(
    *,
    queue: Queue,
    filters: WorkFilters,
    user: AbstractBaseUser,
    now: datetime,
    after: RankCursor | None = None,
    limit: int = 50,
) -> QueuePage:
    """Open items of the queue in rank order, ``limit`` at a time after ``after``."""
    qs = _filtered(WorkItem.objects.filter(queue=queue, state=Open), filters, user=user, now=now)
    if after is not None:
        qs = _after(qs, after)
    items = list(qs.select_related("assignee").order_by(*ORDER_ROWS)[: limit + 1])
    if len(items) <= limit:
        return QueuePage(items=items, next_cursor=None)
    items = items[:limit]
    return QueuePage(items=items, next_cursor=RankCursor.after(items[-1]))


def queue_items_all(
    *, queue: Queue, filters: WorkFilters, user: AbstractBaseUser, now: datetime, batch: int = 500
) -> Iterator[WorkItem]:
    """Every matching open item in rank order, read in keyset batches of ``batch`` rows so
    that memory stays flat however many there are."""
    after = None
    while True:
        page = queue_items(queue=queue, filters=filters, user=user, now=now, after=after, limit=batch)
        yield from page.items
        if page.next_cursor is None:
            return
        after = page.next_cursor


# --- the queues list --------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFigures:
    queue: Queue
    open: int
    unclaimed: int
    breached: int
    mine: int


def queues_with_figures(*, user: AbstractBaseUser, now: datetime) -> QuerySet[Queue]:
    """The queues ``user`` may work (admins: all), each annotated with its counts
    ``n_open``, ``n_unclaimed``, ``n_breached`` and ``n_mine``: one grouped query.

    Unclaimed counts what claim-next could hand out: open, nobody holds it, not snoozed.
    """
    qs = Queue.objects.select_related("team")
    if not roles.has_role(user, roles.ADMIN):
        qs = qs.filter(team__in=user.groups.values("pk"))
    is_open = Q(items__state=Open)
    return qs.annotate(
        n_open=Count("items", filter=is_open),
        n_unclaimed=Count(
            "items",
            filter=is_open
            & Q(items__assignee__isnull=True)
            & (Q(items__snoozed_until__isnull=True) | Q(items__snoozed_until__lte=now)),
        ),
        n_breached=Count("items", filter=is_open & Q(items__sla_due_at__lt=now)),
        n_mine=Count("items", filter=is_open & Q(items__assignee=user)),
    )


def queues_overview(*, user: AbstractBaseUser, now: datetime) -> list[QueueFigures]:
    """The queues ``user`` may work with their counts (``queues_with_figures``), by name."""
    qs = queues_with_figures(user=user, now=now).order_by("name")
    return [
        QueueFigures(queue=q, open=q.n_open, unclaimed=q.n_unclaimed, breached=q.n_breached, mine=q.n_mine)
        for q in qs
    ]


# --- rows: why an item ranks where it does ---------------------------------------------


def span(delta: timedelta) -> str:
    """A duration as a person reads it at a glance: 25 min, 5 h, 3 d."""
    minutes = int(abs(delta).total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


def relative(moment: datetime | None, *, now: datetime) -> str:
    if moment is None:
        return ""
    return f"in {span(moment - now)}" if moment >= now else f"{span(now - moment)} ago"


def is_snoozed(item: WorkItem, *, now: datetime) -> bool:
    return item.snoozed_until is not None and item.snoozed_until > now


@dataclass(frozen=True)
class Pill:
    text: str
    tone: str = ""  # "", "danger", "warn", "strong"


@dataclass(frozen=True)
class Explanation:
    factors: list[RankFactor]
    promised_at: datetime | None
    anchor: datetime  # the promised time, or the creation time without a promise
    due: str  # "due in 5 h", "overdue 2 d", or "" without a promise
    overdue: bool
    pills: list[Pill]

    @property
    def weight_hours(self) -> float:
        return sum(f.hours for f in self.factors)

    @property
    def ranks_like(self) -> datetime:
        """The promise of an item worth nothing that would rank the same."""
        return self.anchor - timedelta(hours=self.weight_hours)

    @property
    def summary(self) -> str:
        """Every factor in one line (the rows' tooltip)."""
        parts = [f"{f.label} {f.value}: {f.hours:+.1f} h" for f in self.factors]
        if self.promised_at is not None:
            parts.append(f"Promised {self.promised_at:%Y-%m-%d %H:%M} UTC ({self.due})")
        else:
            parts.append(f"No promised time: ranked from its creation at {self.anchor:%Y-%m-%d %H:%M} UTC")
        return "; ".join(parts)


def explain(item: WorkItem, *, now: datetime) -> Explanation:
    factors = rank_factors(
        revenue_at_risk=item.revenue_at_risk,
        customer_tier=item.customer_tier,
        severity=item.severity,
        escalation_level=item.escalation_level,
    )
    pills = [Pill(f"{item.revenue_at_risk:,.0f} at risk", "strong" if item.revenue_at_risk >= 10000 else "")]
    if item.customer_tier and item.customer_tier != Tier.STANDARD:
        label = Tier(item.customer_tier).label if item.customer_tier in Tier.values else item.customer_tier
        pills.append(Pill(label, "strong" if factors[1].hours > 0 else ""))
    due, overdue = "", False
    if item.promised_at is not None:
        overdue = item.promised_at < now
        due = (
            f"overdue {span(now - item.promised_at)}" if overdue else f"due in {span(item.promised_at - now)}"
        )
        pills.append(Pill(due, "danger" if overdue else ""))
    pills.append(Pill(f"sev {item.severity}", "warn" if item.severity >= 3 else ""))
    if item.escalation_level:
        pills.append(Pill(f"esc {item.escalation_level}", "danger"))
    return Explanation(
        factors=factors,
        promised_at=item.promised_at,
        anchor=item.promised_at or item.created_at,
        due=due,
        overdue=overdue,
        pills=pills,
    )


def sla_state(item: WorkItem, *, now: datetime) -> str:
    """ "breached" past the due time, "warned" once a warning share was reached, else ""."""
    if item.sla_due_at is not None and item.sla_due_at < now:
        return "breached"
    return "warned" if item.sla_warned_share else ""


@dataclass(frozen=True)
class Row:
    item: WorkItem
    why: Explanation
    type_label: str
    order_id: int | None
    customer_name: str
    sla: str  # "breached", "warned" or ""
    sla_due: str  # "in 3 h", "2 h ago", or "" without an SLA
    snoozed: str  # "for 3 h" while snoozed, else ""
    age: str
    url: str
    order_url: str
    opened: str  # "2026-03-02 09:00", local time
    sla_title: str  # "Due 2026-03-02 17:00 · 50 % warning sent", or "" without an SLA


def _minute(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def _sla_title(item: WorkItem) -> str:
    if item.sla_due_at is None:
        return ""
    warned = f" · {item.sla_warned_share} % warning sent" if item.sla_warned_share else ""
    return f"Due {_minute(item.sla_due_at)}{warned}"


def rows(items: list[WorkItem], *, now: datetime, labels: dict[str, str]) -> list[Row]:
    """The items with their explanation, order id and customer name (one query for all),
    and what their table rows show, formatted here: a page shows 50 rows, and the template
    engine's url tag and date filter made up half of the page's rendering time."""
    refs = {item.subject_ref for item in items if item.subject_ref}
    orders = {
        ref: (pk, name)
        for ref, pk, name in Order.objects.filter(external_id__in=refs).values_list(
            "external_id", "pk", "customer__name"
        )
    }
    return [
        Row(
            item=item,
            why=explain(item, now=now),
            type_label=labels.get(item.type, item.type),
            order_id=order_id,
            customer_name=orders.get(item.subject_ref, (None, ""))[1],
            sla=sla_state(item, now=now),
            sla_due=relative(item.sla_due_at, now=now),
            snoozed=f"for {span(item.snoozed_until - now)}" if is_snoozed(item, now=now) else "",
            age=span(now - item.created_at),
            url=reverse("work-item", args=[item.pk]),
            order_url=reverse("order-detail", args=[order_id]) if order_id else "",
            opened=_minute(item.created_at),
            sla_title=_sla_title(item),
        )
        for item in items
        for order_id in [orders.get(item.subject_ref, (None, ""))[0]]
    ]


# --- my work ------------------------------------------------------------------------------


def my_items(*, user: AbstractBaseUser, limit: int = 100) -> list[WorkItem]:
    """The open items ``user`` holds, across queues, in rank order (``limit`` + 1 read, so
    the caller can tell there are more)."""
    qs = WorkItem.objects.filter(assignee=user, state=Open).select_related("queue")
    return list(qs.order_by("-priority_key", "id")[: limit + 1])


@dataclass(frozen=True)
class Inbox:
    unread: int
    notifications: list[Notification]


def unread_notifications(*, user: AbstractBaseUser, limit: int = 30) -> Inbox:
    qs = Notification.objects.filter(user=user, read_at__isnull=True)
    return Inbox(unread=qs.count(), notifications=list(qs.select_related("item")[:limit]))


# --- saved views --------------------------------------------------------------------------


def saved_views(*, queue: Queue, user: AbstractBaseUser) -> list[SavedView]:
    """The user's own views of the queue and those their teammates shared."""
    qs = SavedView.objects.filter(queue=queue).filter(Q(owner=user) | Q(shared=True))
    return list(qs.select_related("owner").order_by("name", "id"))


# --- the item page ----------------------------------------------------------------------


@dataclass(frozen=True)
class ItemDetail:
    item: WorkItem
    exception: OrderException | None
    approval: ApprovalRequest | None
    order: Order | None
    timeline: list[OrderTransition]
    events: list[WorkItemEvent]


def work_item_get(*, pk: int) -> WorkItem | None:
    return (
        WorkItem.objects.select_related(
            "queue__team",
            "assignee",
            "raised_by",
            "resolved_by",
            "exception__type",
            "approval__policy",
            "approval__requested_by",
        )
        .filter(pk=pk)
        .first()
    )


def work_item_detail(*, item: WorkItem) -> ItemDetail:
    """Everything the item page shows besides the item: five queries."""
    order = None
    timeline: list[OrderTransition] = []
    if item.subject_ref:
        order = (
            Order.objects.select_related("customer", "warehouse").filter(external_id=item.subject_ref).first()
        )
    if order is not None:
        latest = (
            OrderTransition.objects.filter(order=order).select_related("actor_user").order_by("-at", "-id")
        )
        timeline = list(latest[:TIMELINE_ROWS])[::-1]
    events = list(item.events.select_related("actor_user").order_by("at", "id"))
    return ItemDetail(
        item=item,
        exception=getattr(item, "exception", None),
        approval=getattr(item, "approval", None),
        order=order,
        timeline=timeline,
        events=events,
    )
