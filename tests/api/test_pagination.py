import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fulfillment.core import clock
from fulfillment.core.roles import PLANNER
from orders.models import Order
from tests import factories
from tests.api.conftest import Caller, assert_problem, token_caller

pytestmark = pytest.mark.django_db
AT = datetime(2030, 5, 1, 12, tzinfo=UTC)


@pytest.fixture
def reader() -> Caller:
    return token_caller(PLANNER, scopes=("read",))


def page(caller: Caller, url: str) -> dict[str, Any]:
    response = caller.client.get(url, headers=caller._headers({}))
    assert response.status_code == 200, response.content
    return response.json()


def walk(caller: Caller, url: str, between_pages: Any = None) -> list[str]:
    seen: list[str] = []
    while url:
        body = page(caller, url)
        seen += [row["external_id"] for row in body["results"]]
        url = body["next"]
        if between_pages is not None and url:
            between_pages()
    return seen


def test_rows_inserted_while_paging_neither_repeat_nor_push_others_out(reader: Caller) -> None:
    """All orders made at the same instant: only the id tiebreak keeps the pages apart."""
    with clock.frozen(AT):
        existing = [factories.order() for _ in range(7)]
        expected = [o.external_id for o in reversed(existing)]

        seen = walk(reader, "/api/v1/orders/?page_size=2", between_pages=lambda: factories.order())

    assert seen == expected  # newest first; the 3 orders made while paging sort before the first page
    assert Order.objects.count() == 10


def test_rows_deleted_while_paging_do_not_shift_the_rest(reader: Caller) -> None:
    with clock.frozen(AT):
        orders = [factories.order() for _ in range(6)]
    newest_first = [o.external_id for o in reversed(orders)]
    first = page(reader, "/api/v1/orders/?page_size=2")
    assert [r["external_id"] for r in first["results"]] == newest_first[:2]
    Order.objects.filter(external_id=newest_first[0]).delete()  # a row already seen goes away
    assert walk(reader, first["next"]) == newest_first[2:]


def test_previous_leads_back_page_by_page(reader: Caller) -> None:
    with clock.frozen(AT):
        orders = [factories.order() for _ in range(5)]
    newest_first = [o.external_id for o in reversed(orders)]
    p1 = page(reader, "/api/v1/orders/?page_size=2")
    p2 = page(reader, p1["next"])
    p3 = page(reader, p2["next"])
    assert [r["external_id"] for r in p3["results"]] == newest_first[4:] and p3["next"] is None
    back2 = page(reader, p3["previous"])
    assert [r["external_id"] for r in back2["results"]] == newest_first[2:4]
    back1 = page(reader, back2["previous"])
    assert [r["external_id"] for r in back1["results"]] == newest_first[:2]
    assert back1["previous"] is None
    assert [r["external_id"] for r in page(reader, back1["next"])["results"]] == newest_first[2:4]


def test_filters_stay_on_the_next_link(reader: Caller) -> None:
    c1, c2 = factories.customer(code="A1"), factories.customer(code="A2")
    with clock.frozen(AT):
        mine = [factories.order(c1) for _ in range(3)]
        factories.order(c2)
    assert walk(reader, "/api/v1/orders/?customer=A1&page_size=1") == [o.external_id for o in reversed(mine)]


def test_master_data_pages_by_code(reader: Caller) -> None:
    for code in ["W3", "W1", "W2"]:
        factories.warehouse(code)
    first = page(reader, "/api/v1/warehouses/?page_size=2")
    assert [w["code"] for w in first["results"]] == ["W1", "W2"]
    assert [w["code"] for w in page(reader, first["next"])["results"]] == ["W3"]


def test_a_page_costs_the_same_wherever_it_is(reader: Caller) -> None:
    with clock.frozen(AT):
        for _ in range(9):
            factories.order()
    url, counts = "/api/v1/orders/?page_size=2", []
    page(reader, "/api/v1/carriers/")  # the token's last use is written once a minute: now
    while url:
        with CaptureQueriesContext(connection) as queries:
            url = page(reader, url)["next"]
        counts.append(len(queries))
        assert not any("OFFSET" in q["sql"].upper() for q in queries.captured_queries)
    assert len(set(counts)) == 1


def cursor(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "%%%",
        "eyJw",  # cut short
        cursor([1, 2]),
        cursor({"p": ["2030-01-01T00:00:00+00:00"], "r": False}),  # one value short
        cursor({"p": ["yesterday", 5], "r": False}),
        cursor({"p": ["2030-01-01T00:00:00+00:00", "five"], "r": False}),
        cursor({"p": ["2030-01-01T00:00:00+00:00", 5], "r": "no"}),
        cursor({"p": [None, 5], "r": False}),
        cursor({"p": [{"a": 1}, 5], "r": False}),
        cursor({"p": ["2030-01-01T00:00:00+00:00", 5]}),
    ],
)
def test_a_bad_cursor_answers_422(reader: Caller, token: str) -> None:
    problem = assert_problem(reader.get("/api/v1/orders/", {"cursor": token}), 422, "invalid_input")
    assert problem["errors"] == {"cursor": ["This cursor is not valid; start from the first page."]}


@pytest.mark.parametrize("pk", [10**30, -(10**30), 2**63])
def test_out_of_range_numbers_in_a_cursor_never_break_the_query(reader: Caller, pk: int) -> None:
    order = factories.order()  # made now, so before the cursor's 2030 in newest-first order
    position = cursor({"p": ["2030-01-01T00:00:00+00:00", pk], "r": False})
    response = reader.get("/api/v1/orders/", {"cursor": position})
    assert response.status_code == 200, response.content
    assert [row["id"] for row in response.json()["results"]] == [order.pk]
