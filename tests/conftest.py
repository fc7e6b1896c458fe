import os

import pytest
from django.conf import settings
from pytest_django.fixtures import Settings

# pytest-playwright keeps an asyncio loop running in the main thread.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Race tests need real row locks: they run in the PostgreSQL pass of `make test`."""
    if ON_POSTGRES:
        return
    selected = [item for item in items if "postgres" not in item.keywords]
    deselected = [item for item in items if "postgres" in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
