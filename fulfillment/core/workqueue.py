"""The work-queue mechanism shared by exceptions and approvals: the only writer of
work items. Every action checks who may do it, changes the item in one transaction and
records it in the item's history."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Q, QuerySet

from fulfillment.core import clock, roles
from fulfillment.core.actors import Actor
from fulfillment.core.calendars import WorkingTime
from fulfillment.core.errors import ApplicationError, InvalidInput, NotFound, PermissionDenied
from fulfillment.core.models import BusinessCalendar, Queue, WorkItem, WorkItemEvent
from fulfillment.core.priority import priority_key

Open = WorkItem.State.OPEN


@dataclass(frozen=True)
class Subject:
    """What a work item is about, as copied onto the item for ranking and filters."""

    ref: str = ""
    customer_code: str = ""
    customer_tier: str = ""
    warehouse_code: str = ""
    revenue_at_risk: Decimal = Decimal(0)
    promised_at: datetime | None = None


def record(item: WorkItem, action: str, *, actor: Actor, note: str = "", **data: Any) -> WorkItemEvent:
    return WorkItemEvent.objects.create(
        item=item,
        action=action,
        actor_user=actor.user,
        actor_system=actor.system,
        note=note,
        data=data,
        at=clock.now(),
    )


def rank(item: WorkItem) -> None:
    item.priority_key = priority_key(
        revenue_at_risk=item.revenue_at_risk,
        customer_tier=item.customer_tier,
        severity=item.severity,
        escalation_level=item.escalation_level,
        anchor=item.promised_at or item.created_at,
    )


def working_time(queue: Queue) -> WorkingTime:
    return WorkingTime(BusinessCalendar.objects.filter(team_id=queue.team_id).first())


def schedule_sla(item: WorkItem, clock_: WorkingTime) -> None:
    """Set the due time and the first warning from the item's SLA minutes."""
    if item.sla_minutes is None:
        item.sla_due_at = item.next_sla_warning_at = None
        return
    item.sla_due_at = clock_.add(item.created_at, item.sla_minutes)
    item.next_sla_warning_at = next_warning_at(item, clock_)


def next_warning_at(item: WorkItem, clock_: WorkingTime) -> datetime | None:
    shares = sorted(s for s in item.queue.warning_shares if s > item.sla_warned_share)
    if not shares or item.sla_minutes is None:
        return None
    return clock_.add(item.created_at, item.sla_minutes * shares[0] / 100)


def queue_get(*, slug: str) -> Queue:
    queue = Queue.objects.select_related("team").filter(slug=slug).first()
    if queue is None:
        raise NotFound(f"There is no queue '{slug}'.")
    return queue


def may_work(user: AbstractBaseUser, queue: Queue) -> bool:
    if roles.has_role(user, roles.ADMIN):
        return True
    return any(group_id == queue.team_id for group_id in _group_ids(user))


def _group_ids(user: AbstractBaseUser) -> set[int]:
    cached = getattr(user, "_portal_group_ids", None)
    if cached is None:
        cached = set(user.groups.values_list("id", flat=True))
        user._portal_group_ids = cached
    return cached


def access_queue(user: AbstractBaseUser, queue: Queue) -> None:
    if not may_work(user, queue):
        raise PermissionDenied(f"Queue '{queue.name}' belongs to team {queue.team.name}.")


@transaction.atomic
def work_item_open(
    *,
    queue: Queue,
    kind: str,
    type: str,
    title: str,
    subject: Subject,
    actor: Actor,
    severity: int = 1,
    sla_minutes: int | None = None,
    raised_by: AbstractBaseUser | None = None,
    note: str = "",
) -> WorkItem:
    """Open an item; call inside the transaction of the change that caused it."""
    item = WorkItem(
        queue=queue,
        kind=kind,
        type=type,
        title=title[:200],
        subject_ref=subject.ref,
        customer_code=subject.customer_code,
        customer_tier=subject.customer_tier,
        warehouse_code=subject.warehouse_code,
        revenue_at_risk=subject.revenue_at_risk,
        promised_at=subject.promised_at,
        severity=severity,
        sla_minutes=sla_minutes,
        raised_by=raised_by,
        created_at=clock.now(),
    )
    rank(item)
    schedule_sla(item, working_time(queue))
    item.save()
    record(item, "opened", actor=actor, note=note)
    return item


@transaction.atomic
def work_item_update(
    *,
    item: WorkItem,
    actor: Actor,
    note: str = "",
    subject: Subject | None = None,
    severity: int | None = None,
    title: str | None = None,
) -> WorkItem:
    """A repeat signal about an open item: refresh its inputs and rank, never duplicate it."""
    changes: dict[str, Any] = {}
    if subject is not None:
        changes.update(
            revenue_at_risk=subject.revenue_at_risk,
            promised_at=subject.promised_at,
            customer_tier=subject.customer_tier,
            warehouse_code=subject.warehouse_code,
        )
    if severity is not None:
        changes["severity"] = severity
    if title is not None:
        changes["title"] = title[:200]
    for name, value in changes.items():
        setattr(item, name, value)
    rank(item)
    item.save(update_fields=[*changes, "priority_key"])
    record(item, "updated", actor=actor, note=note, **{k: str(v) for k, v in changes.items()})
    return item


def _lock(item: WorkItem) -> WorkItem:
    # of=("self",): lock the item only, not its queue and team rows (which would make
    # every action in a queue wait for every other).
    locked = (
        WorkItem.objects.select_for_update(of=("self",))
        .select_related("queue__team")
        .filter(pk=item.pk)
        .first()
    )
    if locked is None:
        raise NotFound(f"Work item {item.pk} does not exist.")
    return locked


def _require_open(item: WorkItem) -> None:
    if item.state != Open:
        raise InvalidInput(f"Work item {item.pk} is resolved already.")


def _claim(item: WorkItem, user: AbstractBaseUser, actor: Actor) -> WorkItem:
    now = clock.now()
    claimed = WorkItem.objects.filter(pk=item.pk, state=Open, assignee__isnull=True).update(
        assignee=user, claimed_at=now
    )
    if not claimed:  # only when row locks are unavailable and someone was faster
        raise InvalidInput(f"Work item {item.pk} was claimed by someone else.")
    item.assignee, item.claimed_at = user, now
    record(item, "claimed", actor=actor)
    return item


def unclaimed(queue: Queue) -> QuerySet[WorkItem]:
    now = clock.now()
    return WorkItem.objects.filter(queue=queue, state=Open, assignee__isnull=True).filter(
        Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now)
    )


# Claim next in one statement (PostgreSQL): pick the top unclaimed item with SKIP LOCKED,
# claim it and write its "claimed" history row. The conditions and the order are those of
# ``unclaimed()`` and the partial index ``workitem_queue_rank_unclaimed``.
_CLAIM_NEXT_SQL = """
WITH next AS (
    SELECT id FROM {items}
    WHERE queue_id = %(queue)s AND state = 'open' AND assignee_id IS NULL
      AND (snoozed_until IS NULL OR snoozed_until <= %(now)s)
    ORDER BY priority_key DESC, created_at, id
    LIMIT 1 FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE {items} SET assignee_id = %(user)s, claimed_at = %(now)s
    FROM next WHERE {items}.id = next.id
    RETURNING {columns}
), recorded AS (
    INSERT INTO {events} (item_id, action, actor_user_id, actor_system, note, data, at)
    SELECT id, 'claimed', %(user)s, '', '', '{{}}', %(now)s FROM claimed
)
SELECT * FROM claimed
"""
_FIELDS = WorkItem._meta.concrete_fields
_CLAIM_NEXT = _CLAIM_NEXT_SQL.format(
    items=WorkItem._meta.db_table,
    events=WorkItemEvent._meta.db_table,
    columns=", ".join(f"{WorkItem._meta.db_table}.{field.column}" for field in _FIELDS),
)


def work_item_claim_next(*, queue: Queue, user: AbstractBaseUser) -> WorkItem | None:
    """Hand the highest-ranked unclaimed item of the queue to ``user``.

    PostgreSQL: one statement (so one transaction, or part of the caller's) with ``FOR
    UPDATE SKIP LOCKED``, so that many claimers take different items at once and each
    claim is one round trip. It is a prepared statement, planned once per connection
    instead of on every claim, which halves a claim's cost: a psycopg cursor on the
    connection Django holds, because Django's own cursors bind on the client and cannot
    prepare (so Django's query log does not list it). SQLite: the transaction starts
    IMMEDIATE, so claimers are serialised.
    """
    access_queue(user, queue)
    if connection.features.has_select_for_update_skip_locked:
        params = {"queue": queue.pk, "user": user.pk, "now": clock.now()}
        connection.ensure_connection()
        connection.validate_no_broken_transaction()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            row = cursor.execute(_CLAIM_NEXT, params, prepare=True).fetchone()
        if row is None:
            return None
        item = WorkItem.from_db(connection.alias, [field.attname for field in _FIELDS], row)
        item.queue, item.assignee = queue, user
        return item
    with transaction.atomic():
        item = unclaimed(queue).order_by("-priority_key", "created_at", "id").first()
        return None if item is None else _claim(item, user, Actor.of(user))


@transaction.atomic
def work_item_claim(*, item: WorkItem, user: AbstractBaseUser) -> WorkItem:
    item = _lock(item)
    access_queue(user, item.queue)
    _require_open(item)
    if item.assignee_id == user.pk:
        return item
    if item.assignee_id is not None:
        raise InvalidInput(f"Work item {item.pk} is claimed by {item.assignee.get_username()}.")
    return _claim(item, user, Actor.of(user))


def _require_assignee_or_admin(item: WorkItem, user: AbstractBaseUser, what: str) -> None:
    if item.assignee_id == user.pk or roles.has_role(user, roles.ADMIN):
        return
    holder = item.assignee.get_username() if item.assignee_id else "nobody"
    raise PermissionDenied(f"Only the assignee may {what} work item {item.pk}; it is claimed by {holder}.")


@transaction.atomic
def work_item_release(*, item: WorkItem, user: AbstractBaseUser) -> WorkItem:
    item = _lock(item)
    _require_open(item)
    if item.assignee_id is None:
        return item
    _require_assignee_or_admin(item, user, "release")
    item.assignee, item.claimed_at = None, None
    item.save(update_fields=["assignee", "claimed_at"])
    record(item, "released", actor=Actor.of(user))
    return item


@transaction.atomic
def work_item_reassign(*, item: WorkItem, to: AbstractBaseUser, actor: AbstractBaseUser) -> WorkItem:
    item = _lock(item)
    access_queue(actor, item.queue)
    _require_open(item)
    if item.assignee_id is not None:
        _require_assignee_or_admin(item, actor, "reassign")
    if not may_work(to, item.queue):
        raise InvalidInput(f"{to.get_username()} is not in team {item.queue.team.name}.")
    previous = item.assignee.get_username() if item.assignee_id else ""
    item.assignee, item.claimed_at = to, clock.now()
    item.save(update_fields=["assignee", "claimed_at"])
    record(item, "reassigned", actor=Actor.of(actor), to=to.get_username(), previous=previous)
    return item


@transaction.atomic
def work_item_snooze(*, item: WorkItem, until: datetime, user: AbstractBaseUser, note: str = "") -> WorkItem:
    item = _lock(item)
    access_queue(user, item.queue)
    _require_open(item)
    if until <= clock.now():
        raise InvalidInput("Snooze until a time in the future.", fields={"until": ["Must be in the future."]})
    item.snoozed_until = until
    item.save(update_fields=["snoozed_until"])
    record(item, "snoozed", actor=Actor.of(user), note=note, until=until.isoformat())
    return item


@transaction.atomic
def work_item_comment(*, item: WorkItem, text: str, user: AbstractBaseUser) -> WorkItemEvent:
    item = _lock(item)
    access_queue(user, item.queue)
    if not text.strip():
        raise InvalidInput("A comment needs text.", fields={"text": ["Required."]})
    return record(item, "comment", actor=Actor.of(user), note=text.strip())


@transaction.atomic
def work_item_resolve(
    *,
    item: WorkItem,
    reason_code: str,
    note: str,
    actor: Actor,
    allowed_codes: Iterable[str] | None = None,
    authorised: bool = False,
) -> WorkItem:
    """Close an item; the kind's service validates its own reason codes and effects.

    A person must hold the item: resolving an unclaimed item claims it in the same
    action (one "resolved" event, marked ``claimed``); someone else's needs the admin
    role. A system closes an item when its cause clears. ``authorised``: the kind's
    service has established the person's right to act by its own rules (an approval
    policy's approver, or their delegate from outside the queue's team), so queue
    membership is not required.
    """
    item = _lock(item)
    _require_open(item)
    if actor.user is not None:
        if not authorised:
            access_queue(actor.user, item.queue)
        if item.assignee_id is not None:
            _require_assignee_or_admin(item, actor.user, "resolve")
    codes = list(allowed_codes or [])
    if not reason_code or (codes and reason_code not in codes):
        raise InvalidInput(
            f"Choose a reason code{': ' + ', '.join(codes) if codes else ''}.",
            fields={"reason_code": ["Unknown reason code."]},
        )
    now = clock.now()
    claimed = actor.user is not None and item.assignee_id is None
    if claimed:
        item.assignee, item.claimed_at = actor.user, now
    item.state = WorkItem.State.RESOLVED
    item.resolved_at = now
    item.resolved_by = actor.user
    item.resolution_code = reason_code
    item.resolution_note = note
    item.next_sla_warning_at = None
    item.save(
        update_fields=[
            "state", "resolved_at", "resolved_by", "resolution_code", "resolution_note",
            "next_sla_warning_at", "assignee", "claimed_at",
        ]
    )  # fmt: skip
    extra = {"claimed": True} if claimed else {}
    record(item, "resolved", actor=actor, note=note, reason_code=reason_code, **extra)
    return item


@dataclass(frozen=True)
class BulkOutcome:
    done: list[int]
    failed: dict[int, str]


def bulk(items: Iterable[WorkItem], action: Callable[[WorkItem], object]) -> BulkOutcome:
    """Apply a single-item action to many: each one under the same rules, in its own
    transaction, so one refusal does not undo the others."""
    done, failed = [], {}
    for item in items:
        try:
            with transaction.atomic():
                action(item)
            done.append(item.pk)
        except ApplicationError as exc:
            failed[item.pk] = exc.message
    return BulkOutcome(done=done, failed=failed)
