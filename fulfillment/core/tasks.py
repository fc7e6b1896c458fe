"""Background entry points (django-q2): thin, safe to run twice, stable dotted names."""

from fulfillment.core import clock
from fulfillment.core.escalation import escalations_evaluate, sla_warnings_sweep


def evaluate_escalations() -> dict[str, dict[str, int]]:
    """Scheduled every minute by ``manage.py setup_portal``: warn first, so that rules on
    SLA shares see this run's warnings, then fire the escalation rules."""
    now = clock.now()
    return {"sla_warnings": sla_warnings_sweep(now=now), "escalations": escalations_evaluate(now=now)}
