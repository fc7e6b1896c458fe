"""Working time: SLA clocks count only a team's working hours, in its own time zone."""

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.calendars import WorkingTime
from fulfillment.core.models import BusinessCalendar, Holiday, Queue, WorkItem
from fulfillment.core.workqueue import Subject, queue_get, work_item_open, working_time

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
SYSTEM = Actor.named("test")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def calendar(
    name: str, days: list[int], starts: time, ends: time, holidays: tuple[date, ...] = ()
) -> BusinessCalendar:
    cal = BusinessCalendar.objects.create(
        team=Group.objects.create(name=name),
        time_zone="Europe/Berlin",
        working_days=days,
        day_starts=starts,
        day_ends=ends,
    )
    for day in holidays:
        Holiday.objects.create(calendar=cal, date=day, name="Holiday")
    return cal


@pytest.fixture
def office() -> WorkingTime:
    """Mon-Fri 08:00-18:00 in Berlin."""
    return WorkingTime(calendar("office", [1, 2, 3, 4, 5], time(8), time(18)))


# 2026-11-20 is a Friday, 2026-11-23 a Monday.
@pytest.mark.parametrize(
    ("start", "minutes", "due"),
    [
        (berlin(2026, 11, 23, 10, 0), 90, berlin(2026, 11, 23, 11, 30)),  # same day
        (berlin(2026, 11, 23, 16, 0), 120, berlin(2026, 11, 23, 18, 0)),  # ends at closing, not next day
        (berlin(2026, 11, 23, 17, 0), 120, berlin(2026, 11, 24, 9, 0)),  # over a night
        (berlin(2026, 11, 20, 17, 0), 120, berlin(2026, 11, 23, 9, 0)),  # over a weekend
        (berlin(2026, 11, 20, 9, 0), 3 * 600, berlin(2026, 11, 25, 9, 0)),  # three working days
        (berlin(2026, 11, 23, 6, 0), 30, berlin(2026, 11, 23, 8, 30)),  # before opening
        (berlin(2026, 11, 23, 19, 0), 60, berlin(2026, 11, 24, 9, 0)),  # after closing
        (berlin(2026, 11, 21, 12, 0), 30, berlin(2026, 11, 23, 8, 30)),  # on a Saturday
        (berlin(2026, 11, 22, 12, 0), 0, berlin(2026, 11, 23, 8, 0)),  # the clock starts at opening
        (utc(2026, 11, 23, 16, 30), 60, berlin(2026, 11, 24, 8, 30)),  # 17:30 Berlin, given in UTC
    ],
)
def test_add_counts_only_working_hours(
    office: WorkingTime, start: datetime, minutes: int, due: datetime
) -> None:
    result = office.add(start, minutes)

    assert result == due
    assert result.tzinfo is start.tzinfo


@pytest.mark.parametrize(
    ("start", "end", "minutes"),
    [
        (berlin(2026, 11, 23, 10, 0), berlin(2026, 11, 23, 11, 30), 90),
        (berlin(2026, 11, 23, 17, 0), berlin(2026, 11, 24, 9, 0), 120),
        (berlin(2026, 11, 20, 17, 0), berlin(2026, 11, 23, 9, 0), 120),
        (berlin(2026, 11, 21, 0, 0), berlin(2026, 11, 22, 23, 59), 0),  # a weekend
        (berlin(2026, 11, 23, 0, 0), berlin(2026, 11, 30, 0, 0), 5 * 600),  # a week
        (berlin(2026, 11, 23, 19, 0), berlin(2026, 11, 24, 7, 0), 0),  # a night
        (berlin(2026, 11, 23, 12, 0), berlin(2026, 11, 23, 11, 0), 0),  # end before start
        (utc(2026, 11, 23, 9, 0), utc(2026, 11, 23, 17, 30), 480),  # 10:00-18:30 Berlin
    ],
)
def test_minutes_between_counts_only_working_hours(
    office: WorkingTime, start: datetime, end: datetime, minutes: int
) -> None:
    assert office.minutes_between(start, end) == minutes


def test_holidays_are_not_working_days() -> None:
    hours = WorkingTime(
        calendar(
            "office", [1, 2, 3, 4, 5], time(8), time(18), holidays=(date(2026, 11, 23), date(2026, 11, 24))
        )
    )

    assert hours.add(berlin(2026, 11, 20, 17, 0), 120) == berlin(2026, 11, 25, 9, 0)
    assert hours.minutes_between(berlin(2026, 11, 20, 17, 0), berlin(2026, 11, 25, 9, 0)) == 120


class TestDaylightSavingTime:
    """Europe/Berlin changes on the last Sunday of March (02:00 -> 03:00) and of October
    (03:00 -> 02:00); in 2026 those are 29 March and 25 October."""

    def test_friday_to_monday_over_the_spring_change(self, office: WorkingTime) -> None:
        due = office.add(berlin(2026, 3, 27, 17, 0), 120)

        assert due == berlin(2026, 3, 30, 9, 0)
        assert due == utc(2026, 3, 30, 7, 0)  # +02:00 now, +01:00 on Friday
        assert office.minutes_between(berlin(2026, 3, 27, 17, 0), due) == 120

    def test_friday_to_monday_over_the_autumn_change(self, office: WorkingTime) -> None:
        due = office.add(berlin(2026, 10, 23, 17, 0), 120)

        assert due == berlin(2026, 10, 26, 9, 0)
        assert due == utc(2026, 10, 26, 8, 0)
        assert office.minutes_between(berlin(2026, 10, 23, 17, 0), due) == 120

    def test_a_working_day_that_spans_the_spring_change_is_an_hour_shorter(self) -> None:
        night = WorkingTime(calendar("night", [1, 2, 3, 4, 5, 6, 7], time(1), time(5)))

        assert night.minutes_between(berlin(2026, 3, 29, 0, 0), berlin(2026, 3, 30, 0, 0)) == 180
        assert night.add(berlin(2026, 3, 29, 1, 0), 180) == berlin(2026, 3, 29, 5, 0)
        assert night.add(berlin(2026, 3, 29, 1, 0), 240) == berlin(2026, 3, 30, 2, 0)

    def test_a_working_day_that_spans_the_autumn_change_is_an_hour_longer(self) -> None:
        night = WorkingTime(calendar("night", [1, 2, 3, 4, 5, 6, 7], time(1), time(5)))

        assert night.minutes_between(berlin(2026, 10, 25, 0, 0), berlin(2026, 10, 26, 0, 0)) == 300
        assert night.add(berlin(2026, 10, 25, 1, 0), 270) == utc(2026, 10, 25, 3, 30)  # 04:30 +01:00

    def test_around_the_clock_counts_real_minutes(self) -> None:
        always = WorkingTime(None)
        start = berlin(2026, 3, 28, 23, 0)

        assert always.add(start, 240) == berlin(2026, 3, 29, 4, 0)  # 02:00-03:00 does not exist
        assert always.minutes_between(start, berlin(2026, 3, 29, 4, 0)) == 240


def test_without_a_calendar_every_minute_counts() -> None:
    always = WorkingTime(None)

    assert always.add(berlin(2026, 11, 20, 17, 0), 120) == berlin(2026, 11, 20, 19, 0)
    assert always.add(berlin(2026, 11, 21, 23, 0), 24 * 60) == berlin(2026, 11, 22, 23, 0)
    assert always.minutes_between(berlin(2026, 11, 20, 17, 0), berlin(2026, 11, 23, 9, 0)) == 64 * 60


def test_a_team_without_a_calendar_works_around_the_clock() -> None:
    queue = Queue.objects.create(
        slug="night-desk", name="Night desk", team=Group.objects.create(name="night")
    )

    assert working_time(queue).calendar is None


def test_the_queue_clock_is_its_team_calendar() -> None:
    planning = queue_get(slug="planning")

    hours = working_time(planning)

    assert hours.calendar == BusinessCalendar.objects.get(team__name="planner")
    assert (hours.calendar.time_zone, hours.calendar.working_days) == ("Europe/Berlin", [1, 2, 3, 4, 5])
    assert (hours.calendar.day_starts, hours.calendar.day_ends) == (time(8), time(18))


def _open_at(at: datetime, sla_minutes: int) -> WorkItem:
    with clock.frozen(at):
        return work_item_open(
            queue=queue_get(slug="planning"),
            kind=WorkItem.Kind.EXCEPTION,
            type="inventory_shortfall",
            title="Short 4 units",
            subject=Subject(ref="SO-1"),
            actor=SYSTEM,
            sla_minutes=sla_minutes,
        )


class TestSlaDueTime:
    """The default planning calendar: Mon-Fri 08:00-18:00 Europe/Berlin."""

    def test_friday_evening_item_is_due_monday_morning(self) -> None:
        item = _open_at(berlin(2026, 11, 20, 17, 0), 120)
        item.refresh_from_db()

        assert item.sla_due_at == berlin(2026, 11, 23, 9, 0)
        assert item.next_sla_warning_at == berlin(2026, 11, 20, 18, 0)  # 50 % = 60 working minutes

    def test_with_monday_a_holiday_it_is_due_tuesday(self) -> None:
        cal = BusinessCalendar.objects.get(team__name="planner")
        Holiday.objects.create(calendar=cal, date=date(2026, 11, 23), name="Company day")

        item = _open_at(berlin(2026, 11, 20, 17, 0), 120)
        item.refresh_from_db()

        assert item.sla_due_at == berlin(2026, 11, 24, 9, 0)

    def test_opened_on_a_weekend_the_clock_starts_on_monday(self) -> None:
        item = _open_at(berlin(2026, 11, 21, 10, 0), 30)
        item.refresh_from_db()

        assert item.sla_due_at == berlin(2026, 11, 23, 8, 30)
        assert item.next_sla_warning_at == berlin(2026, 11, 23, 8, 15)

    def test_without_sla_minutes_there_is_no_due_time(self) -> None:
        no_sla = work_item_open(
            queue=queue_get(slug="planning"),
            kind=WorkItem.Kind.EXCEPTION,
            type="inventory_shortfall",
            title="No SLA",
            subject=Subject(ref="SO-2"),
            actor=SYSTEM,
        )
        no_sla.refresh_from_db()
        assert (no_sla.sla_due_at, no_sla.next_sla_warning_at) == (None, None)
