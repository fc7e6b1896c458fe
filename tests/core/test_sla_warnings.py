"""SLA warnings: at the queue's shares of the SLA, in the team's working time, once each."""

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fulfillment.core import clock, escalation, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.models import BusinessCalendar, Holiday, Notification, Queue, WorkItem

BERLIN = ZoneInfo("Europe/Berlin")
FRIDAY_4PM = datetime(2026, 3, 6, 16, 0, tzinfo=BERLIN)
MONDAY = date(2026, 3, 9)
SYSTEM = Actor.named("test")
pytestmark = pytest.mark.django_db


def monday(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(MONDAY, time(hour, minute, second), tzinfo=BERLIN)


def person(name: str, group: Group) -> User:
    user = User.objects.create(username=name, email=f"{name}@example.com")
    user.groups.add(group)
    return user


@pytest.fixture
def team() -> SimpleNamespace:
    """A team working Monday to Friday, 08:00-18:00 in Berlin."""
    group = Group.objects.create(name="night-and-weekend-free")
    calendar = BusinessCalendar.objects.create(
        team=group,
        time_zone="Europe/Berlin",
        working_days=[1, 2, 3, 4, 5],
        day_starts=time(8),
        day_ends=time(18),
    )
    return SimpleNamespace(
        group=group,
        calendar=calendar,
        queue=Queue.objects.create(slug="desk", name="Desk", team=group),
        ann=person("ann", group),
        bob=person("bob", group),
    )


def open_item(queue: Queue, title: str = "eight hours", sla_minutes: int = 480) -> WorkItem:
    return workqueue.work_item_open(
        queue=queue, kind="exception", type="pick_short", title=title, actor=SYSTEM, sla_minutes=sla_minutes,
        subject=workqueue.Subject(ref=title, revenue_at_risk=Decimal(100)),
    )  # fmt: skip


def sweep_at(at: datetime) -> dict[str, int]:
    with clock.frozen(at):
        return escalation.sla_warnings_sweep()


def warnings(item: WorkItem) -> list[tuple[datetime, dict[str, Any], str]]:
    return [(e.at, e.data, e.note) for e in item.events.filter(action="sla_warning")]


def test_warnings_at_half_three_quarters_and_the_full_sla_in_working_time(
    team: SimpleNamespace, django_capture_on_commit_callbacks: Any
) -> None:
    # Opened Friday 16:00 with 8 working hours: 2 on Friday, 6 on Monday, due Monday 14:00.
    with clock.frozen(FRIDAY_4PM):
        item = open_item(team.queue)
    assert (item.sla_due_at, item.next_sla_warning_at) == (monday(14), monday(10))

    quiet = [
        FRIDAY_4PM + timedelta(hours=1, minutes=59),
        datetime(2026, 3, 7, 12, tzinfo=BERLIN),
        monday(9, 59, 59),
    ]
    assert [sweep_at(at) for at in quiet] == [{"warnings": 0, "notifications": 0}] * 3

    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_at(monday(10)) == {"warnings": 1, "notifications": 2}  # unclaimed: the team
    assert sweep_at(monday(10, 1)) == {"warnings": 0, "notifications": 0}
    with clock.frozen(monday(11)):
        workqueue.work_item_claim(item=item, user=team.bob)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_at(monday(12)) == {"warnings": 1, "notifications": 1}  # held: bob
        assert sweep_at(monday(14)) == {"warnings": 1, "notifications": 1}
    assert sweep_at(monday(17)) == {"warnings": 0, "notifications": 0}

    item.refresh_from_db()
    assert (item.sla_warned_share, item.next_sla_warning_at) == (100, None)
    assert warnings(item) == [
        (monday(10), {"share": 50}, "50 % of the SLA used."),
        (monday(12), {"share": 75}, "75 % of the SLA used."),
        (monday(14), {"share": 100}, "100 % of the SLA used."),
    ]
    assert list(
        Notification.objects.order_by("created_at", "user__username").values_list("user__username", "text")
    ) == [
        ("ann", "SLA warning: 50 % used on eight hours"),
        ("bob", "SLA warning: 50 % used on eight hours"),
        ("bob", "SLA warning: 75 % used on eight hours"),
        ("bob", "SLA warning: 100 % used on eight hours"),
    ]
    assert sorted(m.to[0] for m in mail.outbox) == ["ann@example.com"] + ["bob@example.com"] * 3


def test_holidays_are_not_working_time(team: SimpleNamespace) -> None:
    Holiday.objects.create(calendar=team.calendar, date=MONDAY, name="Closed")
    with clock.frozen(FRIDAY_4PM):
        item = open_item(team.queue)
    tuesday_10am = datetime(2026, 3, 10, 10, tzinfo=BERLIN)
    assert item.next_sla_warning_at == tuesday_10am

    assert sweep_at(monday(17))["warnings"] == 0
    assert sweep_at(tuesday_10am)["warnings"] == 1
    assert warnings(item) == [(tuesday_10am, {"share": 50}, "50 % of the SLA used.")]


def test_the_queue_decides_at_which_shares_to_warn(team: SimpleNamespace) -> None:
    team.queue.warning_shares = [80]
    team.queue.save()
    with clock.frozen(FRIDAY_4PM):
        item = open_item(team.queue)
    # 80 % of 480 min = 384 min: 120 on Friday, 264 from Monday 08:00 = 12:24.
    assert item.next_sla_warning_at == monday(12, 24)

    assert [sweep_at(at)["warnings"] for at in (monday(10), monday(12, 23), monday(12, 24), monday(15))] == [
        0, 0, 1, 0,
    ]  # fmt: skip
    item.refresh_from_db()
    assert (item.sla_warned_share, item.next_sla_warning_at) == (80, None)
    assert warnings(item) == [(monday(12, 24), {"share": 80}, "80 % of the SLA used.")]


def test_a_late_sweep_warns_once_at_the_highest_share_reached(team: SimpleNamespace) -> None:
    with clock.frozen(FRIDAY_4PM):
        item = open_item(team.queue)

    assert sweep_at(monday(13))["warnings"] == 1  # 50 % and 75 % have passed: one warning, 75 %
    item.refresh_from_db()
    assert (item.sla_warned_share, item.next_sla_warning_at) == (75, monday(14))
    assert sweep_at(monday(14))["warnings"] == 1
    assert [data for _, data, _ in warnings(item)] == [{"share": 75}, {"share": 100}]


def test_resolved_items_and_items_without_sla_are_not_warned(team: SimpleNamespace) -> None:
    with clock.frozen(FRIDAY_4PM):
        done = open_item(team.queue, "done")
        workqueue.work_item_resolve(item=done, reason_code="fixed", note="", actor=SYSTEM)
        workqueue.work_item_open(
            queue=team.queue, kind="exception", type="pick_short", title="no sla", actor=SYSTEM,
            subject=workqueue.Subject(),
        )  # fmt: skip

    assert sweep_at(monday(17)) == {"warnings": 0, "notifications": 0}
    assert not Notification.objects.exists()


def test_the_number_of_queries_does_not_grow_with_the_number_of_items(team: SimpleNamespace) -> None:
    other_group = Group.objects.create(name="around-the-clock")
    other = Queue.objects.create(slug="other", name="Other", team=other_group)
    person("carl", other_group)

    def sweep_queries(size: int, at: datetime) -> int:
        with clock.frozen(at - timedelta(hours=1)):
            for n in range(size):
                open_item(team.queue, f"desk {size}-{n}", sla_minutes=60)
                open_item(other, f"other {size}-{n}", sla_minutes=60)
        with clock.frozen(at), CaptureQueriesContext(connection) as queries:
            assert escalation.sla_warnings_sweep() == {"warnings": 2 * size, "notifications": 3 * size}
        return len(queries)

    assert sweep_queries(3, monday(10)) == sweep_queries(40, monday(12))


def test_a_large_backlog_of_warnings_is_worked_off_in_batches(
    team: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(escalation, "BATCH_SIZE", 2)
    with clock.frozen(FRIDAY_4PM):
        items = [open_item(team.queue, f"item {n}") for n in range(3)]
    assert [sweep_at(monday(10))["warnings"] for _ in range(3)] == [2, 1, 0]
    assert [WorkItem.objects.get(pk=item.pk).sla_warned_share for item in items] == [50, 50, 50]
