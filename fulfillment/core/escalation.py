"""Escalation rules (admin-edited data) and the SLA warning sweep, evaluated set-based.

A rule matches open items by queue, kind, type, customer tier and revenue band
(``min_revenue <= revenue at risk <= max_revenue``), and triggers on one condition:

- ``unclaimed_for`` N: nobody holds the item and it has been unclaimed for N wall-clock
  minutes, counted from its creation or its last release, whichever is later. An item
  snoozed into the future is left alone until the snooze ends.
- ``past_sla``: its SLA due time has passed.
- ``sla_share`` N: the warning sweep has recorded an SLA warning of at least N % (the
  sweep runs first in every evaluation). Warnings happen at the queue's warning shares,
  so N should be one of them: with shares 50/75/100 a rule for 60 % fires at 75 %.
- ``promised_within`` N: the promised time is at most N hours away (or already past).

Fire once: a rule fires at most once per item and escalation level, so a rule that only
moves or notifies fires again after the item's level was raised (by another rule), and a
rule that raises the level fires at most once per item at all: its own raise must not
re-arm it, or a trigger that stays true would raise the level on every run without end.
Layered escalation is therefore several rules (e.g. unclaimed 60 min → level 1,
unclaimed 240 min → level 2).

Actions: raise the level (and so the priority key), move to another queue (a claim by
someone outside the new queue's team is released; the SLA due time stays), notify the
assignee (held items only), the team of the queue the item ends up in, or a named user.

Query counts depend on the number of rules and queues, never on the number of items.
"""

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import NON_FIELD_ERRORS
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from fulfillment.core import clock, notify, roles
from fulfillment.core.actors import Actor
from fulfillment.core.calendars import WorkingTime
from fulfillment.core.errors import InvalidInput, PermissionDenied
from fulfillment.core.models import (
    BusinessCalendar,
    EscalationRule,
    Queue,
    RuleFiring,
    WorkItem,
    WorkItemEvent,
)
from fulfillment.core.workqueue import next_warning_at, rank

logger = logging.getLogger(__name__)

SCHEDULER = Actor.named("scheduler")
Trigger = EscalationRule.Trigger
Notify = EscalationRule.Notify

# At most this many items per rule (and warnings per sweep) in one run, oldest first;
# bounds the memory and the length of the transaction; the rest follow a minute later.
BATCH_SIZE = 1000
MAX_REVENUE = Decimal(10) ** 12  # the revenue fields hold 14 digits, 2 after the point
# Longer time windows mean nothing, and far enough they leave the calendar (a 500).
MAX_WINDOW_DAYS = 3650

RULE_FIELDS = (
    "name", "is_active", "queue", "kind", "type", "customer_tier", "min_revenue", "max_revenue",
    "trigger", "trigger_value", "raise_level", "move_to", "notify", "notify_user",
)  # fmt: skip


# --- Rule definitions ----------------------------------------------------------------


def rule_build(*, data: Mapping[str, Any], rule: EscalationRule | None = None) -> EscalationRule:
    """An unsaved rule from form data (model field names; foreign keys as objects)."""
    unknown = sorted(set(data) - set(RULE_FIELDS))
    if unknown:
        raise InvalidInput(
            f"Unknown rule fields: {', '.join(unknown)}.", fields={f: ["Unknown field."] for f in unknown}
        )
    rule = rule if rule is not None else EscalationRule()
    for name, value in data.items():
        setattr(rule, name, value)
    return rule


def _match_errors(rule: EscalationRule) -> dict[str, list[str]]:
    """What is wrong with the rule's matching part; turns valid amounts into Decimals."""
    errors: dict[str, list[str]] = defaultdict(list)
    if rule.trigger not in Trigger.values:
        errors["trigger"].append(f"Choose one of: {', '.join(Trigger.values)}.")
    if rule.kind and rule.kind not in WorkItem.Kind.values:
        errors["kind"].append(f"Choose one of: {', '.join(WorkItem.Kind.values)}, or leave it empty.")
    value = rule.trigger_value
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        errors["trigger_value"].append("Give a whole number of 0 or more.")
    elif rule.trigger in (Trigger.UNCLAIMED_FOR, Trigger.PROMISED_WITHIN):
        unit, per_day = ("minutes", 24 * 60) if rule.trigger == Trigger.UNCLAIMED_FOR else ("hours", 24)
        if value <= 0:
            errors["trigger_value"].append(f"Give the number of {unit}, more than 0.")
        elif value > MAX_WINDOW_DAYS * per_day:
            errors["trigger_value"].append(f"Give at most {MAX_WINDOW_DAYS * per_day:,} {unit} (ten years).")
    elif rule.trigger == Trigger.SLA_SHARE and not 1 <= value <= 100:
        errors["trigger_value"].append("Give a share of the SLA between 1 and 100 %.")
    for name in ("min_revenue", "max_revenue"):
        raw = getattr(rule, name)
        try:
            amount = None if raw is None or raw == "" else Decimal(str(raw))
        except InvalidOperation:
            amount = Decimal("NaN")
        if amount is not None and not (amount.is_finite() and 0 <= amount < MAX_REVENUE):
            errors[name].append("Give an amount from 0 to 999,999,999,999.99.")
        else:
            setattr(rule, name, amount)
    low, high = rule.min_revenue, rule.max_revenue
    if isinstance(low, Decimal) and isinstance(high, Decimal) and low > high:
        errors["max_revenue"].append("The band's maximum is below its minimum.")
    return dict(errors)


def rule_validate(rule: EscalationRule) -> None:
    """Raise ``InvalidInput`` with every problem of the definition, field by field."""
    errors = defaultdict(list, _match_errors(rule))
    name = (rule.name or "").strip()
    if not name:
        errors["name"].append("Give the rule a name.")
    elif EscalationRule.objects.filter(name=name).exclude(pk=rule.pk).exists():
        errors["name"].append(f"A rule named '{name}' exists already.")
    if rule.notify not in Notify.values:
        errors["notify"].append("Notify the assignee, the team, a named user or nobody.")
    elif rule.notify == Notify.USER and rule.notify_user_id is None:
        errors["notify_user"].append("Name the user to notify.")
    elif rule.notify != Notify.USER and rule.notify_user_id is not None:
        errors["notify_user"].append("Only a rule that notifies a named user names one.")
    if not (rule.raise_level or rule.move_to_id or rule.notify):
        errors[NON_FIELD_ERRORS].append("Give the rule an action: raise the level, move or notify.")
    if rule.move_to_id is not None and rule.move_to_id == rule.queue_id:
        errors["move_to"].append("Move to a queue other than the one the rule watches.")
    if errors:
        raise InvalidInput("The escalation rule is not valid.", fields=dict(errors))
    rule.name = name


def _require_admin(actor: Actor) -> None:
    if actor.user is not None and not roles.has_role(actor.user, roles.ADMIN):
        raise PermissionDenied("Only admins configure escalation rules.")


@transaction.atomic
def rule_save(*, data: Mapping[str, Any], actor: Actor, rule: EscalationRule | None = None) -> EscalationRule:
    """Create a rule, or change ``rule``; an invalid definition saves nothing."""
    _require_admin(actor)
    if rule is not None and rule.pk is not None:
        rule = EscalationRule.objects.select_for_update().get(pk=rule.pk)
    rule = rule_build(data=data, rule=rule)
    rule_validate(rule)
    rule.save()
    logger.info("escalation rule %s (%s) saved by %s", rule.pk, rule.name, actor.label)
    return rule


@transaction.atomic
def rule_delete(*, rule: EscalationRule, actor: Actor) -> None:
    """Delete a rule and its firings; the items' history keeps the escalations."""
    _require_admin(actor)
    logger.info("escalation rule %s (%s) deleted by %s", rule.pk, rule.name, actor.label)
    rule.delete()


# --- Matching and preview ------------------------------------------------------------


def rule_matches(rule: EscalationRule, now: datetime) -> QuerySet[WorkItem]:
    """The open items the rule would fire on at ``now``: one query, whatever their number."""
    items = WorkItem.objects.filter(state=WorkItem.State.OPEN)
    filters = {
        "queue_id": rule.queue_id,
        "kind": rule.kind or None,
        "type": rule.type or None,
        "customer_tier": rule.customer_tier or None,
        "revenue_at_risk__gte": rule.min_revenue,
        "revenue_at_risk__lte": rule.max_revenue,
    }
    items = items.filter(**{k: v for k, v in filters.items() if v is not None})
    items = items.filter(_trigger(rule, now))
    if rule.pk is not None:
        fired = RuleFiring.objects.filter(rule_id=rule.pk, item=OuterRef("pk"))
        if not rule.raise_level:
            fired = fired.filter(level=OuterRef("escalation_level"))
        items = items.exclude(Exists(fired))
    return items


def _trigger(rule: EscalationRule, now: datetime) -> Q:
    value = rule.trigger_value
    if rule.trigger == Trigger.UNCLAIMED_FOR:
        since = now - timedelta(minutes=value)
        released_since = WorkItemEvent.objects.filter(item=OuterRef("pk"), action="released", at__gt=since)
        return (
            Q(assignee__isnull=True, created_at__lte=since)
            & (Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now))
            & ~Q(Exists(released_since))
        )
    if rule.trigger == Trigger.PAST_SLA:
        return Q(sla_due_at__lt=now)
    if rule.trigger == Trigger.SLA_SHARE:
        return Q(sla_warned_share__gte=value)
    if rule.trigger == Trigger.PROMISED_WITHIN:
        return Q(promised_at__lte=now + timedelta(hours=value))
    raise InvalidInput(f"Unknown trigger '{rule.trigger}'.", fields={"trigger": ["Unknown trigger."]})


@dataclass(frozen=True)
class Preview:
    count: int
    items: list[WorkItem]


def rule_preview(rule: EscalationRule, *, now: datetime | None = None, limit: int = 50) -> Preview:
    """What a rule, saved or not, would fire on right now: the count and the top items
    in queue order. Reads only."""
    errors = _match_errors(rule)
    if errors:
        raise InvalidInput("The rule cannot be previewed.", fields=errors)
    matches = rule_matches(rule, now or clock.now())
    top = matches.select_related("queue", "assignee").order_by("-priority_key", "created_at", "id")
    return Preview(count=matches.count(), items=list(top[:limit]))


# --- Evaluation ----------------------------------------------------------------------


def escalations_evaluate(*, now: datetime | None = None) -> dict[str, int]:
    """Fire every active rule (in id order) on the items it matches now.

    Each rule is one transaction that locks the rule row first, so two evaluations
    running at once take turns and cannot fire a rule twice on an item.
    """
    now = now or clock.now()
    summary = {"rules": 0, "firings": 0, "notifications": 0}
    for rule_id in EscalationRule.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True):
        fired, notified = _evaluate_rule(rule_id, now)
        summary["rules"] += 1
        summary["firings"] += fired
        summary["notifications"] += notified
    return summary


@transaction.atomic
def _evaluate_rule(rule_id: int, now: datetime) -> tuple[int, int]:
    rule = (
        EscalationRule.objects.select_for_update(of=("self",))
        .select_related("notify_user")
        .filter(pk=rule_id, is_active=True)
        .first()
    )
    if rule is None:
        return 0, 0
    # Oldest first, in the order of the index of unclaimed items (and one lock order for all).
    items = list(rule_matches(rule, now).select_for_update().order_by("created_at", "pk")[:BATCH_SIZE])
    if not items:
        return 0, 0
    queues = {q.pk: q for q in Queue.objects.all()}
    before = {item.pk: (item.escalation_level, item.queue_id, item.assignee_id) for item in items}
    RuleFiring.objects.bulk_create(
        [RuleFiring(rule=rule, item=item, level=item.escalation_level, at=now) for item in items]
    )
    released = _apply_actions(rule, items, queues)
    events = [_escalated_event(rule, item, before[item.pk], queues, now) for item in items]
    events += [
        WorkItemEvent(
            item=item, action="released", actor_system=SCHEDULER.system, at=now,
            note=f"Moved to {queues[item.queue_id].name} by rule '{rule.name}'.",
        )
        for item in released
    ]  # fmt: skip
    WorkItemEvent.objects.bulk_create(events)
    notes = _rule_notes(rule, items, before, queues)
    return len(items), notify.deliver(notes)


def _apply_actions(rule: EscalationRule, items: list[WorkItem], queues: dict[int, Queue]) -> list[WorkItem]:
    """Raise and move in one bulk statement; return the items whose claim was released."""
    fields, released = [], []
    if rule.raise_level:
        fields += ["escalation_level", "priority_key"]
        for item in items:
            item.escalation_level += 1
            rank(item)
    if rule.move_to_id is not None:
        fields.append("queue")
        moving = [item for item in items if item.queue_id != rule.move_to_id]
        held = [item for item in moving if item.assignee_id is not None]
        if held:
            members = set(
                get_user_model()
                .groups.through.objects.filter(group_id=queues[rule.move_to_id].team_id)
                .values_list("user_id", flat=True)
            )
            released = [item for item in held if item.assignee_id not in members]
            if released:
                fields += ["assignee", "claimed_at"]
            for item in released:
                item.assignee, item.claimed_at = None, None
        for item in moving:
            item.queue_id = rule.move_to_id
    if fields:
        WorkItem.objects.bulk_update(items, fields)
    return released


def _escalated_event(
    rule: EscalationRule,
    item: WorkItem,
    before: tuple[int, int, int | None],
    queues: dict[int, Queue],
    now: datetime,
) -> WorkItemEvent:
    level, queue_id, _ = before
    return WorkItemEvent(
        item=item,
        action="escalated",
        actor_system=SCHEDULER.system,
        note=f"Rule '{rule.name}' fired ({rule.get_trigger_display()}).",
        data={
            "rule_id": rule.pk,
            "rule": rule.name,
            "trigger": rule.trigger,
            "from_level": level,
            "to_level": item.escalation_level,
            "from_queue": queues[queue_id].slug,
            "to_queue": queues[item.queue_id].slug,
        },
        at=now,
    )


def _rule_notes(
    rule: EscalationRule,
    items: list[WorkItem],
    before: dict[int, tuple[int, int, int | None]],
    queues: dict[int, Queue],
) -> list[notify.Note]:
    if not rule.notify:
        return []
    User = get_user_model()

    def text(item: WorkItem) -> str:
        return f"Escalated by rule '{rule.name}': {item.title} (level {item.escalation_level})"

    if rule.notify == Notify.USER:
        return [notify.Note(user=rule.notify_user, text=text(item), item=item) for item in items]
    if rule.notify == Notify.ASSIGNEE:
        holders = {b[2] for b in before.values() if b[2] is not None}
        users = User.objects.in_bulk(holders) if holders else {}
        return [
            notify.Note(user=users[before[item.pk][2]], text=text(item), item=item)
            for item in items
            if before[item.pk][2] is not None
        ]
    members = notify.members_by_team(queues[item.queue_id].team_id for item in items)
    return [
        notify.Note(user=user, text=text(item), item=item)
        for item in items
        for user in members.get(queues[item.queue_id].team_id, [])
    ]


# --- SLA warnings --------------------------------------------------------------------


def sla_warnings_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Warn about every open item whose next SLA warning is due.

    The item records the highest of its queue's warning shares it has reached (a sweep
    that ran late warns once, at the highest share reached, not once per share passed)
    and gets its next warning time. The assignee is told, or the team when nobody
    holds the item. Queries: a few per queue with due warnings, none per item.
    """
    now = now or clock.now()
    with transaction.atomic():
        items = list(
            WorkItem.objects.filter(
                state=WorkItem.State.OPEN, next_sla_warning_at__lte=now, sla_minutes__isnull=False
            )
            .select_related("queue", "assignee")
            .select_for_update(of=("self",))
            .order_by("next_sla_warning_at", "pk")[:BATCH_SIZE]
        )
        if not items:
            return {"warnings": 0, "notifications": 0}
        clocks = _working_times({item.queue.team_id for item in items})
        warned, events = [], []
        for item in items:
            share = _reached_share(item, clocks[item.queue.team_id], now)
            if share is not None:
                item.sla_warned_share = share
                warned.append(item)
                events.append(
                    WorkItemEvent(
                        item=item, action="sla_warning", actor_system=SCHEDULER.system, at=now,
                        note=f"{share} % of the SLA used.", data={"share": share},
                    )
                )  # fmt: skip
            item.next_sla_warning_at = next_warning_at(item, clocks[item.queue.team_id])
        WorkItem.objects.bulk_update(items, ["sla_warned_share", "next_sla_warning_at"])
        WorkItemEvent.objects.bulk_create(events)
        notified = notify.deliver(_warning_notes(warned))
    return {"warnings": len(warned), "notifications": notified}


def _working_times(team_ids: set[int]) -> dict[int, WorkingTime]:
    calendars = {c.team_id: c for c in BusinessCalendar.objects.filter(team_id__in=team_ids)}
    return {team_id: WorkingTime(calendars.get(team_id)) for team_id in team_ids}


def _reached_share(item: WorkItem, clock_: WorkingTime, now: datetime) -> int | None:
    """The highest warning share past due that was not warned yet; computed with the same
    calendar arithmetic that scheduled the warning, so a due warning always counts."""
    pending = sorted((s for s in item.queue.warning_shares if s > item.sla_warned_share), reverse=True)
    for share in pending:
        if clock_.add(item.created_at, item.sla_minutes * share / 100) <= now:
            return share
    return None


def _warning_notes(items: list[WorkItem]) -> list[notify.Note]:
    unheld = [item for item in items if item.assignee_id is None]
    members = notify.members_by_team(item.queue.team_id for item in unheld) if unheld else {}
    notes = []
    for item in items:
        text = f"SLA warning: {item.sla_warned_share} % used on {item.title}"
        users = [item.assignee] if item.assignee_id else members.get(item.queue.team_id, [])
        notes += [notify.Note(user=user, text=text, item=item) for user in users]
    return notes
