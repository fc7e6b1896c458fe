from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import import_module

import pytest
from django.apps import apps

from fulfillment.core import clock

# Monday 2 March 2026, 09:00 UTC = 10:00 in Berlin, inside every team's working day.
MONDAY_9_UTC = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def now() -> Iterator[datetime]:
    with clock.frozen(MONDAY_9_UTC):
        yield MONDAY_9_UTC


@pytest.fixture
def default_data(transactional_db: None) -> None:
    """Teams, queues and exception types as the data migrations create them.

    A transactional test may start from a database an earlier one flushed; the migrations'
    own functions put the rows back (they are idempotent).
    """
    for module in (
        "fulfillment.core.migrations.0002_default_teams_and_queues",
        "exceptions.migrations.0002_default_types_and_deadlines",
    ):
        import_module(module).create(apps, None)
