"""Working time: SLA clocks that count only a team's working hours."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from fulfillment.core.models import BusinessCalendar

MAX_DAYS = 3 * 366


class WorkingTime:
    """A team's working hours; ``None`` as calendar means around the clock."""

    def __init__(self, calendar: BusinessCalendar | None) -> None:
        self.calendar = calendar
        if calendar is not None:
            self.zone = ZoneInfo(calendar.time_zone)
            self.days = set(calendar.working_days)
            self.holidays = set(calendar.holidays.values_list("date", flat=True))

    def _window(self, day: date) -> tuple[datetime, datetime] | None:
        """The local working day as UTC instants: arithmetic on datetimes that share a
        zone is wall-clock arithmetic, wrong by an hour across a DST change."""
        cal = self.calendar
        assert cal is not None
        if day.isoweekday() not in self.days or day in self.holidays:
            return None
        return (
            datetime.combine(day, cal.day_starts, tzinfo=self.zone).astimezone(UTC),
            datetime.combine(day, cal.day_ends, tzinfo=self.zone).astimezone(UTC),
        )

    def add(self, start: datetime, minutes: float) -> datetime:
        """The moment when ``minutes`` of working time have passed after ``start``."""
        if self.calendar is None:
            return (start.astimezone(UTC) + timedelta(minutes=minutes)).astimezone(start.tzinfo)
        remaining = timedelta(minutes=minutes)
        current = start.astimezone(UTC)
        day = start.astimezone(self.zone).date()
        for _ in range(MAX_DAYS):
            window = self._window(day)
            if window is not None:
                opens, closes = window
                current = max(current, opens)
                if current < closes:
                    available = closes - current
                    if remaining <= available:
                        return (current + remaining).astimezone(start.tzinfo)
                    remaining -= available
            day += timedelta(days=1)
        raise ValueError(f"{self.calendar} has no working time in {MAX_DAYS} days")

    def minutes_between(self, start: datetime, end: datetime) -> float:
        """Working minutes from ``start`` to ``end`` (0 if end is not after start)."""
        if end <= start:
            return 0.0
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if self.calendar is None:
            return (end - start).total_seconds() / 60
        total = timedelta()
        day, last = start.astimezone(self.zone).date(), end.astimezone(self.zone).date()
        while day <= last:
            window = self._window(day)
            if window is not None:
                opens, closes = max(window[0], start), min(window[1], end)
                if closes > opens:
                    total += closes - opens
            day += timedelta(days=1)
        return total.total_seconds() / 60
