"""Measure 7, the scheduled sweeps: ``fulfillment.core.tasks.evaluate_escalations`` (SLA
warnings, then every escalation rule) and ``exceptions.tasks.sweep_stalled_orders``, each
timed with its query count, with the clock frozen at the phase's moment.

The raw baseline is the reads that find the work, in hand-written SQL with the same
conditions (the SLA warnings due, each rule's matches with its fire-once check, the
stalled orders), run first in a transaction that is rolled back, so the product's sweep
then finds the same work.
"""

import time
from datetime import datetime, timedelta
from typing import Any

from bench.database import connect
from bench.report import ratio


def _rule_sql(rule: Any, now: datetime) -> tuple[str, list[Any]]:
    from fulfillment.core.models import EscalationRule

    trigger = EscalationRule.Trigger
    where, params = ["w.state = 'open'"], []
    for column, value in (
        ("w.queue_id = %s", rule.queue_id),
        ("w.kind = %s", rule.kind or None),
        ("w.type = %s", rule.type or None),
        ("w.customer_tier = %s", rule.customer_tier or None),
        ("w.revenue_at_risk >= %s", rule.min_revenue),
        ("w.revenue_at_risk <= %s", rule.max_revenue),
    ):
        if value is not None:
            where.append(column)
            params.append(value)
    if rule.trigger == trigger.UNCLAIMED_FOR:
        since = now - timedelta(minutes=rule.trigger_value)
        where.append(
            "w.assignee_id IS NULL AND w.created_at <= %s "
            "AND (w.snoozed_until IS NULL OR w.snoozed_until <= %s) "
            "AND NOT EXISTS (SELECT 1 FROM core_workitemevent e WHERE e.item_id = w.id "
            "AND e.action = 'released' AND e.at > %s)"
        )
        params += [since, now, since]
    elif rule.trigger == trigger.PAST_SLA:
        where.append("w.sla_due_at < %s")
        params.append(now)
    elif rule.trigger == trigger.SLA_SHARE:
        where.append("w.sla_warned_share >= %s")
        params.append(rule.trigger_value)
    else:
        where.append("w.promised_at <= %s")
        params.append(now + timedelta(hours=rule.trigger_value))
    level = "" if rule.raise_level else " AND f.level = w.escalation_level"
    where.append(
        f"NOT EXISTS (SELECT 1 FROM core_rulefiring f WHERE f.rule_id = %s AND f.item_id = w.id{level})"
    )
    params.append(rule.pk)
    conditions = " AND ".join(where)
    return (
        f"SELECT w.* FROM core_workitem w WHERE {conditions} "
        "ORDER BY w.created_at, w.id LIMIT 1000 FOR UPDATE",
        params,
    )


RAW_SLA = """
SELECT * FROM core_workitem WHERE state = 'open' AND next_sla_warning_at <= %s AND sla_minutes IS NOT NULL
ORDER BY next_sla_warning_at, id LIMIT 1000 FOR UPDATE
"""


def _raw_stalled_sql(now: datetime) -> tuple[str, list[Any]]:
    from exceptions.models import StateDeadline

    overdue, params = [], []
    for state, minutes in StateDeadline.objects.values_list("state", "max_minutes"):
        overdue.append("(o.status = %s AND o.status_changed_at < %s)")
        params += [state, now - timedelta(minutes=minutes)]
    sql = (
        f"SELECT o.* FROM orders_order o WHERE ({' OR '.join(overdue)}) AND NOT EXISTS "
        "(SELECT 1 FROM core_workitem w WHERE w.subject_ref = o.external_id AND w.state = 'open') "
        "ORDER BY o.status_changed_at, o.id"
    )
    return sql, params


def _raw(url: str, statements: list[tuple[str, list[Any]]]) -> tuple[float, int]:
    with connect(url, autocommit=False) as conn:
        started = time.perf_counter()
        rows = sum(len(conn.execute(sql, params).fetchall()) for sql, params in statements)
        seconds = time.perf_counter() - started
        conn.rollback()
    return seconds, rows


def measure(url: str, now: datetime) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from exceptions.tasks import sweep_stalled_orders
    from fulfillment.core import clock
    from fulfillment.core.models import EscalationRule, WorkItem
    from fulfillment.core.tasks import evaluate_escalations

    rules = list(EscalationRule.objects.filter(is_active=True).order_by("pk"))
    open_items = WorkItem.objects.filter(state="open").count()
    raw_escalation, raw_found = _raw(url, [(RAW_SLA, [now])] + [_rule_sql(rule, now) for rule in rules])
    raw_stall, raw_stalled = _raw(url, [_raw_stalled_sql(now)])
    with clock.frozen(now):
        with CaptureQueriesContext(connection) as escalation_queries:
            started = time.perf_counter()
            summary = evaluate_escalations()
            escalation_seconds = time.perf_counter() - started
        with CaptureQueriesContext(connection) as stall_queries:
            started = time.perf_counter()
            opened = sweep_stalled_orders()
            stall_seconds = time.perf_counter() - started
    return {
        "open_items": open_items,
        "rules": len(rules),
        "escalation": {
            "project": {
                "seconds": round(escalation_seconds, 3),
                "queries": len(escalation_queries),
                "sla_warnings": summary["sla_warnings"]["warnings"],
                "firings": summary["escalations"]["firings"],
                "notifications": summary["escalations"]["notifications"]
                + summary["sla_warnings"]["notifications"],
            },
            "raw": {"seconds": round(raw_escalation, 3), "queries": len(rules) + 1, "rows_found": raw_found},
            "ratio": ratio(escalation_seconds, raw_escalation),
        },
        "stall": {
            "project": {"seconds": round(stall_seconds, 3), "queries": len(stall_queries), "opened": opened},
            "raw": {"seconds": round(raw_stall, 3), "queries": 1, "rows_found": raw_stalled},
            "ratio": ratio(stall_seconds, raw_stall),
        },
    }
