"""The project's setup step, run by ``make demo`` and on every deployment: role groups
and the background schedules. Idempotent: a second run changes nothing."""

from typing import Any

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django_q.models import Schedule

from fulfillment.core import roles

SCHEDULES = (
    {"name": "evaluate-escalations", "func": "fulfillment.core.tasks.evaluate_escalations", "minutes": 1},
    {"name": "sweep-stalled-orders", "func": "exceptions.tasks.sweep_stalled_orders", "minutes": 5},
    # The outbox is also kicked when a message commits; this run catches retries and misses.
    {"name": "relay-outbox", "func": "integrations.tasks.relay_outbox", "minutes": 1},
    {"name": "retry-deferred-events", "func": "integrations.tasks.retry_deferred_events", "minutes": 1},
    {"name": "pull-erp-orders", "func": "integrations.tasks.pull_erp_orders", "minutes": 1},
)


class Command(BaseCommand):
    help = "Create the role groups and the background schedules (safe to run again)."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        for role in roles.ROLES:
            _, created = Group.objects.get_or_create(name=role)
            self.stdout.write(f"group {role}: {'created' if created else 'exists'}")
        for spec in SCHEDULES:
            self.stdout.write(f"schedule {spec['name']}: {self._schedule(**spec)}")

    def _schedule(self, *, name: str, func: str, minutes: int) -> str:
        wanted = {"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1}
        schedule = Schedule.objects.filter(name=name).order_by("pk").first()
        if schedule is None:
            Schedule.objects.create(name=name, **wanted)
            return f"created ({func} every {minutes} min)"
        changed = [field for field, value in wanted.items() if getattr(schedule, field) != value]
        if not changed:
            return "unchanged"
        for field in changed:
            setattr(schedule, field, wanted[field])
        schedule.save(update_fields=changed)
        return f"updated {', '.join(changed)}"
