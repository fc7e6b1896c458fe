"""The one source of "now" for business rules, so tests can move time."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.utils import timezone

_frozen_at: datetime | None = None


def now() -> datetime:
    return _frozen_at or timezone.now()


@contextmanager
def frozen(at: datetime) -> Iterator[None]:
    global _frozen_at
    # Kept in UTC so that advancing it across a DST change moves real, not wall-clock, time.
    previous, _frozen_at = _frozen_at, at.astimezone(UTC)
    try:
        yield
    finally:
        _frozen_at = previous


def advance(delta: timedelta) -> None:
    """Move a frozen clock forward (only inside ``frozen``)."""
    global _frozen_at
    if _frozen_at is None:
        raise RuntimeError("the clock is not frozen")
    _frozen_at += delta
