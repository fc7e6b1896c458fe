from collections.abc import Iterator

import pytest

from fulfillment.core import clock
from integrations.models import Partner
from tests.integrations.webhook_support import NOW, make_partners


@pytest.fixture
def webhook_now() -> Iterator[None]:
    """The webhook tests' frozen "now" (their signatures and events are dated by it)."""
    with clock.frozen(NOW):
        yield


@pytest.fixture
def partners(db: None) -> dict[str, Partner]:
    return make_partners()
