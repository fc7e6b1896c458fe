"""The newest-first lists of the integration screens and API read an index, not the whole
table: the outbox holds every message ever sent, and dead letters are few among them."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from fulfillment.core.models import OutboxMessage
from integrations import selectors

pytestmark = pytest.mark.django_db


def _plan(sql: str) -> str:
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # An empty table is cheapest to read whole: ask for what a large one gets.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute(f"EXPLAIN {sql}")
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return "\n".join(str(row) for row in cursor.fetchall())


@pytest.mark.parametrize(
    ("state", "index"),
    [("", "outbox_recent"), (OutboxMessage.State.DEAD, "outbox_dead")],
    ids=["all", "dead"],
)
def test_an_outbox_page_newest_first_reads_an_index(state: str, index: str) -> None:
    OutboxMessage.objects.create(
        endpoint="erp", topic="erp.status", payload={}, idempotency_key="k1",
        state=state or OutboxMessage.State.DELIVERED,
    )  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        page = selectors.outbox_messages(filters=selectors.OutboxFilters(state=state))
    assert len(page.rows) == 1
    page_query = next(q["sql"] for q in queries.captured_queries if "core_outboxmessage" in q["sql"])

    assert index in _plan(page_query)
