from django.conf import settings
from django.db import models
from django.db.models import Q

from fulfillment.core import clock
from fulfillment.core.models import OutboxMessage


class Partner(models.Model):
    """A system that sends us signed webhooks (the WMS, a carrier)."""

    name = models.SlugField(max_length=32, unique=True)

    def __str__(self) -> str:
        return self.name


class PartnerSecret(models.Model):
    """A signing secret; several may be active at once so that partners can rotate."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="secrets")
    secret = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=clock.now)

    def __str__(self) -> str:
        return f"{self.partner} secret {self.pk}"


class InboundEvent(models.Model):
    """A webhook as received: stored before it is acknowledged, applied by a task."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DEFERRED = "deferred", "Waiting for an earlier event"
        APPLIED = "applied", "Applied"
        SKIPPED = "skipped", "Skipped (superseded)"
        FAILED = "failed", "Failed"

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="events")
    event_id = models.CharField(max_length=100)
    type = models.CharField(max_length=40)
    occurred_at = models.DateTimeField()
    data = models.JSONField()
    subject_ref = models.CharField(max_length=64, blank=True, db_index=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=clock.now)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner", "event_id"], name="inboundevent_unique_per_partner")
        ]
        indexes = [
            models.Index(
                fields=["received_at", "id"], name="inboundevent_waiting",
                condition=Q(state__in=["pending", "deferred"]),
            ),
            models.Index(fields=["-received_at", "-id"], name="inboundevent_recent"),
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.partner_id}:{self.event_id} {self.type}"


class Endpoint(models.Model):
    """Where outbox messages of one system go, and that system's circuit breaker."""

    class Circuit(models.TextChoices):
        CLOSED = "closed", "Closed"
        OPEN = "open", "Open"
        HALF_OPEN = "half_open", "Half-open"

    name = models.SlugField(max_length=32, unique=True, help_text="erp, wms, carrier or notify.")
    base_url = models.URLField()
    token = models.CharField(max_length=200, blank=True, help_text="Sent as a bearer token.")
    enabled = models.BooleanField(default=True)
    timeout_seconds = models.FloatField(default=5.0)
    max_attempts = models.PositiveSmallIntegerField(default=8)
    circuit = models.CharField(max_length=16, choices=Circuit.choices, default=Circuit.CLOSED)
    consecutive_failures = models.PositiveIntegerField(default=0)
    circuit_opened_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class DeliveryAttempt(models.Model):
    message = models.ForeignKey(OutboxMessage, on_delete=models.CASCADE, related_name="delivery_attempts")
    at = models.DateTimeField(default=clock.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["message", "at", "id"]
        indexes = [models.Index(fields=["-at"], name="deliveryattempt_recent")]

    def __str__(self) -> str:
        return f"attempt on {self.message_id} at {self.at:%H:%M:%S}"


class SyncCursor(models.Model):
    """How far a scheduled pull (e.g. ERP orders) has read."""

    name = models.SlugField(max_length=32, unique=True)
    value = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class OutboxAction(models.Model):
    """An operator's hand on a message: replayed after fixing the cause, or marked handled."""

    class Action(models.TextChoices):
        REPLAY = "replay", "Replayed"
        HANDLED = "handled", "Marked handled by hand"

    message = models.ForeignKey(OutboxMessage, on_delete=models.CASCADE, related_name="actions")
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    note = models.TextField(blank=True)
    at = models.DateTimeField(default=clock.now)

    def __str__(self) -> str:
        return f"{self.action} of {self.message_id}"
