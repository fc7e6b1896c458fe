"""django-q2 entry points (stable dotted names; the schedule is set up elsewhere)."""

from exceptions import services
from fulfillment.core.actors import Actor


def sweep_stalled_orders() -> int:
    return services.stall_sweep(actor=Actor.named("scheduler"))
