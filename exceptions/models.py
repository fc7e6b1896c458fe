from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from fulfillment.core import clock
from fulfillment.core.models import Queue, WorkItem
from orders.models import TERMINAL, Order, Status

# The resolution a person never picks: the system closes an exception when its cause clears.
AUTO_CLEARED = "auto_cleared"


class ExceptionType(models.Model):
    """A kind of problem, with the queue that owns it and its SLA (admin-edited data)."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    default_queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="+")
    sla_minutes = models.PositiveIntegerField(help_text="Working minutes to resolve it.")
    severity = models.PositiveSmallIntegerField(default=2, help_text="1 (low) to 3 (high).")
    reason_codes = models.JSONField(
        default=list, help_text='Resolution codes a person may choose, e.g. ["stock_arrived", "cancelled"].'
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(severity__gte=1) & Q(severity__lte=3), name="exceptiontype_severity_1_3"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        codes = self.reason_codes
        if (
            not isinstance(codes, list)
            or not codes
            or any(not isinstance(c, str) or not c or not c.replace("_", "").isalnum() for c in codes)
        ):
            raise ValidationError(
                {"reason_codes": "Give a list of codes made of letters, digits and underscores."}
            )
        if len(set(codes)) != len(codes):
            raise ValidationError({"reason_codes": "Each code once."})
        if AUTO_CLEARED in codes:
            raise ValidationError({"reason_codes": f"'{AUTO_CLEARED}' is reserved for the system."})


class OrderException(models.Model):
    """An exception about an order (or, for a dead letter, about nothing in particular).

    ``is_open`` mirrors the work item's state so that the database itself keeps at most
    one open exception per order and type.
    """

    work_item = models.OneToOneField(WorkItem, on_delete=models.PROTECT, related_name="exception")
    type = models.ForeignKey(ExceptionType, on_delete=models.PROTECT, related_name="exceptions")
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, null=True, blank=True, related_name="exceptions"
    )
    details = models.JSONField(default=dict, blank=True)
    occurrences = models.PositiveIntegerField(default=1, help_text="Signals received.")
    last_signal_at = models.DateTimeField(default=clock.now)
    is_open = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["order", "type"], condition=Q(is_open=True), name="orderexception_one_open"
            ),
        ]

    def __str__(self) -> str:
        return self.work_item.title


class StateDeadline(models.Model):
    """How long an order may sit in a state before the stall sweep gives it an owner."""

    state = models.CharField(max_length=32, choices=Status.choices, unique=True)
    max_minutes = models.PositiveIntegerField(help_text="Wall-clock minutes in this state.")
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["state"]
        constraints = [
            models.CheckConstraint(condition=Q(max_minutes__gt=0), name="statedeadline_minutes_gt_0"),
        ]

    def __str__(self) -> str:
        return f"{self.get_state_display()}: {self.max_minutes} min"

    def clean(self) -> None:
        if self.state in TERMINAL:
            raise ValidationError({"state": "A closed or cancelled order cannot stall."})
