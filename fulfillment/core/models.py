from datetime import time
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from fulfillment.core import clock


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(default=clock.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class BusinessCalendar(models.Model):
    """When a team works: SLA clocks count only these hours."""

    team = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="calendar")
    time_zone = models.CharField(max_length=64, default="UTC")
    working_days = models.JSONField(
        default=list, help_text="ISO weekdays the team works, 1 = Monday … 7 = Sunday."
    )
    day_starts = models.TimeField(default=time(8))
    day_ends = models.TimeField(default=time(17))

    def __str__(self) -> str:
        return f"{self.team.name} calendar"

    def clean(self) -> None:
        if not self.working_days or any(d not in range(1, 8) for d in self.working_days):
            raise ValidationError({"working_days": "Give weekdays as numbers 1 (Monday) to 7 (Sunday)."})
        if self.day_starts >= self.day_ends:
            raise ValidationError({"day_ends": "The working day must end after it starts."})
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValidationError({"time_zone": f"Unknown time zone '{self.time_zone}'."}) from exc


class Holiday(models.Model):
    calendar = models.ForeignKey(BusinessCalendar, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["calendar", "date"], name="holiday_unique_day")]

    def __str__(self) -> str:
        return f"{self.date} {self.name}"


def default_warning_shares() -> list[int]:
    return [50, 75, 100]


class Queue(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    team = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="queues")
    description = models.TextField(blank=True)
    warning_shares = models.JSONField(
        default=default_warning_shares, help_text="SLA shares (in %) at which to warn, e.g. [50, 75, 100]."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        shares = self.warning_shares
        if not isinstance(shares, list) or any(not isinstance(s, int) or not 0 < s <= 100 for s in shares):
            raise ValidationError({"warning_shares": "Give whole percentages between 1 and 100."})


class WorkItem(models.Model):
    """One thing a person must do: an exception to resolve or a request to decide.

    The ranking inputs (revenue, tier, severity, escalation, promised time) are copied
    here so that a queue page is one index read; ``priority_key`` is derived from them
    by ``fulfillment.core.priority`` whenever one changes.
    """

    class Kind(models.TextChoices):
        EXCEPTION = "exception", "Exception"
        APPROVAL = "approval", "Approval"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="items")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    type = models.CharField(max_length=40)
    title = models.CharField(max_length=200)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    # What the item is about, copied for display, filters and ranking.
    subject_ref = models.CharField(max_length=64, blank=True, help_text="Order external id.")
    customer_code = models.CharField(max_length=32, blank=True)
    customer_tier = models.CharField(max_length=16, blank=True)
    warehouse_code = models.CharField(max_length=16, blank=True)
    revenue_at_risk = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal(0))
    severity = models.PositiveSmallIntegerField(default=1)
    promised_at = models.DateTimeField(null=True, blank=True)
    escalation_level = models.PositiveSmallIntegerField(default=0)
    priority_key = models.BigIntegerField(default=0)

    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="work_items"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    sla_minutes = models.PositiveIntegerField(null=True, blank=True, help_text="Working minutes.")
    sla_due_at = models.DateTimeField(null=True, blank=True)
    sla_warned_share = models.PositiveSmallIntegerField(default=0, help_text="Last SLA warning, in %.")
    next_sla_warning_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    resolution_code = models.CharField(max_length=40, blank=True)
    resolution_note = models.TextField(blank=True)

    class Meta:
        indexes = [
            # "next item" and "top 50" of a queue: an index read in rank order.
            models.Index(
                F("queue"), F("priority_key").desc(), F("created_at"), F("id"),
                name="workitem_queue_rank_open", condition=Q(state="open"),
            ),
            models.Index(
                F("queue"), F("priority_key").desc(), F("created_at"), F("id"),
                name="workitem_queue_rank_unclaimed", condition=Q(state="open", assignee__isnull=True),
            ),
            models.Index(
                F("assignee"), F("priority_key").desc(), F("id"),
                name="workitem_assignee_rank", condition=Q(state="open"),
            ),
            models.Index(fields=["sla_due_at"], name="workitem_sla_due", condition=Q(state="open")),
            models.Index(fields=["subject_ref"], name="workitem_subject_open", condition=Q(state="open")),
            models.Index(
                fields=["next_sla_warning_at"], name="workitem_sla_warning", condition=Q(state="open")
            ),
            # The escalation rules' triggers, so that a sweep reads only the items that are due
            # however many are open: unclaimed since, promised by, SLA share warned.
            models.Index(
                fields=["created_at", "id"], name="workitem_unclaimed_since",
                condition=Q(state="open", assignee__isnull=True),
            ),
            models.Index(fields=["promised_at"], name="workitem_promised", condition=Q(state="open")),
            models.Index(
                fields=["sla_warned_share"], name="workitem_sla_warned",
                condition=Q(state="open", sla_warned_share__gt=0),
            ),
        ]  # fmt: skip
        constraints = [
            models.CheckConstraint(
                condition=Q(assignee__isnull=True) | Q(claimed_at__isnull=False), name="workitem_claim_time"
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_open(self) -> bool:
        return self.state == self.State.OPEN


class WorkItemEvent(models.Model):
    """The item's history: every action, comment, warning and rule firing."""

    item = models.ForeignKey(WorkItem, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=24)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_system = models.CharField(max_length=32, blank=True)
    note = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["item", "at", "id"]
        indexes = [
            models.Index(fields=["item", "at"], name="workitemevent_item_at"),
            # Recent releases, for the "unclaimed for N minutes" escalation trigger.
            models.Index(fields=["at"], name="workitemevent_released", condition=Q(action="released")),
        ]

    def __str__(self) -> str:
        return f"{self.action} on {self.item_id}"

    @property
    def actor_label(self) -> str:
        return self.actor_user.get_username() if self.actor_user_id else self.actor_system


class Notification(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    item = models.ForeignKey(WorkItem, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    text = models.CharField(max_length=300)
    created_at = models.DateTimeField(default=clock.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="notification_user_recent")]

    def __str__(self) -> str:
        return self.text


class EscalationRule(models.Model):
    """An admin-edited rule: which open items it matches, when it triggers, what it does."""

    class Trigger(models.TextChoices):
        UNCLAIMED_FOR = "unclaimed_for", "Unclaimed for N minutes"
        PAST_SLA = "past_sla", "Unresolved past the SLA"
        SLA_SHARE = "sla_share", "SLA share reached (N %)"
        PROMISED_WITHIN = "promised_within", "Promised date within N hours"

    class Notify(models.TextChoices):
        NOBODY = "", "Nobody"
        ASSIGNEE = "assignee", "The assignee"
        TEAM = "team", "The queue's team"
        USER = "user", "A named user"

    name = models.CharField(max_length=100, unique=True)
    is_active = models.BooleanField(default=True)
    queue = models.ForeignKey(
        Queue, on_delete=models.CASCADE, null=True, blank=True, related_name="rules",
        help_text="Empty: every queue.",
    )  # fmt: skip
    kind = models.CharField(max_length=16, choices=WorkItem.Kind.choices, blank=True)
    type = models.CharField(max_length=40, blank=True, help_text="Work-item type; empty: every type.")
    customer_tier = models.CharField(max_length=16, blank=True)
    min_revenue = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    max_revenue = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    trigger_value = models.PositiveIntegerField(
        default=0, help_text="Minutes (unclaimed), % (SLA share) or hours (promised date)."
    )
    raise_level = models.BooleanField(default=True, help_text="Raise the escalation level by one.")
    move_to = models.ForeignKey(
        Queue, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="Move the item to this queue.",
    )  # fmt: skip
    notify = models.CharField(max_length=16, choices=Notify.choices, blank=True)
    notify_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=clock.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RuleFiring(models.Model):
    """A rule fired on an item at an escalation level: it never fires there again."""

    rule = models.ForeignKey(EscalationRule, on_delete=models.CASCADE, related_name="firings")
    item = models.ForeignKey(WorkItem, on_delete=models.CASCADE, related_name="firings")
    level = models.PositiveSmallIntegerField()
    at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "item", "level"], name="rulefiring_once_per_level")
        ]

    def __str__(self) -> str:
        return f"{self.rule_id} on {self.item_id} at level {self.level}"


class OutboxMessage(models.Model):
    """A message to another system, written in the same transaction as the change that
    causes it and delivered later by the relay (``integrations.relay``)."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        DEAD = "dead", "Dead letter"
        HANDLED = "handled", "Handled by hand"

    endpoint = models.CharField(max_length=32, help_text="erp, wms, carrier or notify.")
    topic = models.CharField(max_length=64, help_text="What the message says, e.g. order.release.")
    payload = models.JSONField()
    idempotency_key = models.CharField(max_length=100, unique=True)
    subject_ref = models.CharField(max_length=64, blank=True, db_index=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=clock.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=clock.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at", "id"], name="outbox_due",
                condition=Q(state__in=["pending", "sending"]),
            ),
            models.Index(fields=["endpoint", "state", "-created_at"], name="outbox_endpoint_state"),
            # The outbox screen and API list newest first; dead letters are few among millions.
            models.Index(fields=["-created_at", "-id"], name="outbox_recent"),
            models.Index(fields=["-created_at", "-id"], name="outbox_dead", condition=Q(state="dead")),
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.topic} → {self.endpoint} ({self.idempotency_key})"
