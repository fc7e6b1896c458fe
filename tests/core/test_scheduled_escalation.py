"""End to end: a rule an admin saves fires through the real schedule and a real qcluster.

The setup step creates the schedule; a ``manage.py qcluster`` subprocess (ORM broker)
runs against the test database, picks the schedule up (its scheduler looks about every
30 s), runs ``fulfillment.core.tasks.evaluate_escalations`` and the rule fires.
"""

import io
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule, Task

from fulfillment.core import clock, escalation, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.models import Queue, RuleFiring, WorkItem

WAIT_FOR_FIRING = 120  # seconds; the scheduler's first look comes after about 30
WAIT_FOR_STOP = 30


def database_url() -> str:
    """The test database as a URL for the subprocess's settings."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_cluster(log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in {"Q_SYNC", "Q_BROKER"}}
    env.update(DATABASE_URL=database_url(), Q_WORKERS="1", PYTHONUNBUFFERED="1", LOG_LEVEL="INFO")
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def stop_cluster(cluster: subprocess.Popen[bytes]) -> int:
    cluster.send_signal(signal.SIGTERM)
    try:
        return cluster.wait(WAIT_FOR_STOP)
    except subprocess.TimeoutExpired:
        os.killpg(cluster.pid, signal.SIGKILL)
        cluster.wait(WAIT_FOR_STOP)
        raise AssertionError("the qcluster did not stop on SIGTERM") from None


@pytest.mark.django_db(transaction=True)
def test_a_rule_saved_by_an_admin_fires_through_the_scheduled_task(tmp_path: Path) -> None:
    call_command("setup_portal", stdout=io.StringIO())
    Schedule.objects.filter(name="evaluate-escalations").update(
        next_run=timezone.now() - timedelta(minutes=1)
    )
    Schedule.objects.filter(name="sweep-stalled-orders").update(next_run=timezone.now() + timedelta(days=1))

    team = Group.objects.create(name="scheduled-desk")
    queue = Queue.objects.create(slug="scheduled-desk", name="Scheduled desk", team=team)
    admin = User.objects.create(username="root")
    admin.groups.add(Group.objects.get(name="admin"))
    with clock.frozen(timezone.now() - timedelta(hours=2)):
        item = workqueue.work_item_open(
            queue=queue, kind="exception", type="pick_short", title="forgotten", actor=Actor.named("test"),
            subject=workqueue.Subject(ref="SO-1", revenue_at_risk=Decimal(500)),
        )  # fmt: skip
    rule = escalation.rule_save(
        data={
            "name": "unclaimed for an hour",
            "queue": queue,
            "trigger": "unclaimed_for",
            "trigger_value": 60,
        },
        actor=Actor.of(admin),
    )
    assert not RuleFiring.objects.exists()

    log = tmp_path / "qcluster.log"
    cluster = start_cluster(log)
    try:
        deadline = time.monotonic() + WAIT_FOR_FIRING
        while not RuleFiring.objects.filter(rule=rule, item=item).exists():
            if time.monotonic() > deadline or cluster.poll() is not None:
                break
            time.sleep(1)
    finally:
        exit_code = stop_cluster(cluster)
    output = log.read_text(errors="replace")
    print(output)  # shown by pytest when the test fails

    assert list(RuleFiring.objects.values_list("rule__name", "item__title", "level")) == [
        ("unclaimed for an hour", "forgotten", 0)
    ]
    item = WorkItem.objects.get(pk=item.pk)
    assert item.escalation_level == 1
    assert list(item.events.values_list("action", "actor_system")) == [
        ("opened", "test"),
        ("escalated", "scheduler"),
    ]
    assert "created task" in output and "[evaluate-escalations]" in output
    run = Task.objects.get(func="fulfillment.core.tasks.evaluate_escalations")
    assert (run.success, run.group) == (True, "evaluate-escalations")
    assert run.result == {
        "sla_warnings": {"warnings": 0, "notifications": 0},
        "escalations": {"rules": 1, "firings": 1, "notifications": 0},
    }
    assert exit_code == 0


@pytest.mark.django_db
def test_the_setup_step_is_idempotent() -> None:
    Schedule.objects.create(name="sweep-stalled-orders", func="old.place", schedule_type=Schedule.DAILY)
    first, second = io.StringIO(), io.StringIO()
    call_command("setup_portal", stdout=first)
    rows = list(
        Schedule.objects.order_by("name").values_list("name", "func", "schedule_type", "minutes", "repeats")
    )
    next_runs = list(Schedule.objects.order_by("name").values_list("next_run", flat=True))
    call_command("setup_portal", stdout=second)

    assert rows == [
        ("evaluate-escalations", "fulfillment.core.tasks.evaluate_escalations", Schedule.MINUTES, 1, -1),
        ("pull-erp-orders", "integrations.tasks.pull_erp_orders", Schedule.MINUTES, 1, -1),
        ("relay-outbox", "integrations.tasks.relay_outbox", Schedule.MINUTES, 1, -1),
        ("retry-deferred-events", "integrations.tasks.retry_deferred_events", Schedule.MINUTES, 1, -1),
        ("sweep-stalled-orders", "exceptions.tasks.sweep_stalled_orders", Schedule.MINUTES, 5, -1),
    ]
    assert first.getvalue().splitlines()[-5:] == [
        "schedule evaluate-escalations: created (fulfillment.core.tasks.evaluate_escalations every 1 min)",
        "schedule sweep-stalled-orders: updated func, schedule_type, minutes",
        "schedule relay-outbox: created (integrations.tasks.relay_outbox every 1 min)",
        "schedule retry-deferred-events: created (integrations.tasks.retry_deferred_events every 1 min)",
        "schedule pull-erp-orders: created (integrations.tasks.pull_erp_orders every 1 min)",
    ]
    assert second.getvalue().splitlines() == [
        "group customer_service: exists",
        "group planner: exists",
        "group finance: exists",
        "group admin: exists",
        "schedule evaluate-escalations: unchanged",
        "schedule sweep-stalled-orders: unchanged",
        "schedule relay-outbox: unchanged",
        "schedule retry-deferred-events: unchanged",
        "schedule pull-erp-orders: unchanged",
    ]
    assert list(Schedule.objects.order_by("name").values_list("next_run", flat=True)) == next_runs
    assert set(Group.objects.values_list("name", flat=True)) >= {
        "customer_service",
        "planner",
        "finance",
        "admin",
    }
