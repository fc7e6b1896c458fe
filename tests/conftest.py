import os

import pytest
from django.db import connection

# pytest-playwright keeps an asyncio loop running in the main thread.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def on_postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: races are proven with real row locks")
