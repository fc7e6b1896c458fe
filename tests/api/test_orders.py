import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.models import OutboxMessage, WorkItem
from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, PLANNER
from orders import services
from orders.models import Order, OrderTransition, Status
from portal.api import orders as api_orders
from tests import factories
from tests.api.conftest import Caller, MasterData, assert_problem, erp_order, token_caller

pytestmark = pytest.mark.django_db
SYSTEM = Actor.named("test")
NOTHING = object()


@pytest.fixture
def cs() -> Caller:
    return token_caller(CUSTOMER_SERVICE)


# --- the ERP push -----------------------------------------------------------------------


def test_push_creates_the_order_runs_intake_and_answers_201(cs: Caller, master: MasterData) -> None:
    response = cs.post("/api/v1/orders/", erp_order("ERP-1"))

    assert response.status_code == 201
    order = Order.objects.get(external_id="ERP-1")
    assert response["Location"] == f"http://testserver/api/v1/orders/{order.pk}/"
    body = response.json()
    assert body["id"] == order.pk and body["external_id"] == "ERP-1"
    # Credit passed, 2 of 100 in stock allocated, below the high-value threshold: released.
    assert body["status"] == order.status == Status.RELEASED
    assert body["total"] == "25.00" and body["currency"] == "EUR" and body["warehouse"] == "W1"
    assert body["customer"] == {"code": "C1", "name": "Acme", "tier": "standard"}
    assert body["ship_to"] == erp_order()["ship_to"]
    assert body["lines"] == [
        {
            "line_no": 1, "sku": "SKU-1", "description": master.product.description, "quantity": 2,
            "unit_price": "12.50", "amount": "25.00", "allocated_quantity": 2, "shipped_quantity": 0,
        }
    ]  # fmt: skip
    assert body["allocations"] == [
        {"warehouse": "W1", "units": 2, "lines": [{"sku": "SKU-1", "quantity": 2}]}
    ]
    assert [(t["transition"], t["to_state"], t["actor"]) for t in body["timeline"]] == [
        ("receive", "received", cs.user.username),
        ("start_credit_check", "credit_check", cs.user.username),
        ("pass_credit_check", "allocating", cs.user.username),
        ("allocate_in_full", "allocated", cs.user.username),
        ("release", "released", cs.user.username),
    ]
    assert body["shipments"] == [] and body["invoices"] == [] and body["work_items"] == []


def test_pushing_a_known_order_again_changes_nothing_and_answers_200(cs: Caller, master: MasterData) -> None:
    first = cs.post("/api/v1/orders/", erp_order("ERP-1")).json()
    transitions = OrderTransition.objects.count()

    again = cs.post(
        "/api/v1/orders/", erp_order("ERP-1", lines=[{"sku": "SKU-1", "quantity": 9, "unit_price": "1"}])
    )

    assert again.status_code == 200 and "Location" not in again
    assert again.json() == first
    assert Order.objects.count() == 1 and OrderTransition.objects.count() == transitions


@pytest.mark.parametrize("warehouse", [NOTHING, None, ""])
def test_optional_fields_have_defaults(cs: Caller, master: MasterData, warehouse: Any) -> None:
    body = erp_order("ERP-2")
    del body["currency"], body["ship_to"]["postal_code"]
    if warehouse is NOTHING:
        del body["warehouse"]
    else:
        body["warehouse"] = warehouse
    response = cs.post("/api/v1/orders/", body)
    assert response.status_code == 201, response.content
    assert response.json()["currency"] == "EUR" and response.json()["warehouse"] is None
    assert response.json()["ship_to"]["postal_code"] == ""


def test_a_shortfall_shows_as_an_open_work_item_on_the_order(cs: Caller, master: MasterData) -> None:
    body = erp_order("ERP-SHORT", lines=[{"sku": "SKU-1", "quantity": 150, "unit_price": "12.50"}])
    created = cs.post("/api/v1/orders/", body).json()
    assert created["status"] == Status.PARTIALLY_ALLOCATED

    detail = cs.get(f"/api/v1/orders/{created['id']}/").json()

    item = WorkItem.objects.get(subject_ref="ERP-SHORT")
    assert detail["work_items"] == [
        {
            "id": item.pk, "kind": "exception", "type": "inventory_shortfall", "title": item.title,
            "queue": item.queue.slug, "assignee": None, "escalation_level": 0,
            "sla_due_at": item.sla_due_at.isoformat().replace("+00:00", "Z"),
            "created_at": item.created_at.isoformat().replace("+00:00", "Z"),
        }
    ]  # fmt: skip


def body_with(path: str, value: Any) -> dict[str, Any]:
    """The valid order with one field (dotted path) replaced, or removed with NOTHING."""
    body = json.loads(json.dumps(erp_order("ERP-BAD")))
    *parents, last = path.split(".")
    target: Any = body
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is NOTHING:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("external_id", NOTHING, "external_id"),
        ("external_id", "", "external_id"),
        ("external_id", "x" * 65, "external_id"),
        ("external_id", 12, None),  # a number is taken as its text: valid
        ("external_id", ["a"], "external_id"),
        ("external_id", "nul\u0000byte", "external_id"),
        ("customer", {"code": "C1"}, "customer"),
        ("customer", "NOPE", "customer"),  # the service: unknown customer
        ("warehouse", "NOPE", "warehouse"),
        ("promised_date", "2030-02-30", "promised_date"),
        ("promised_date", "tomorrow", "promised_date"),
        ("promised_date", 20300101, "promised_date"),
        ("promised_date", "99999-01-01", "promised_date"),
        ("currency", "EU", "currency"),
        ("currency", "E1R", "currency"),  # the service: letters only
        ("ship_to", "Hull", "ship_to.non_field_errors"),
        ("ship_to.name", "", "ship_to.name"),
        ("ship_to.country", "GBR", "ship_to.country"),
        ("ship_to.country", "1A", "ship_to"),  # the service: letters only
        ("ship_to.city", None, "ship_to.city"),
        ("lines", [], "lines.non_field_errors"),
        ("lines", {"sku": "SKU-1"}, "lines.non_field_errors"),
        ("lines", [{"sku": "SKU-1", "quantity": 1, "unit_price": "1"}] * 501, "lines.non_field_errors"),
        ("lines.0.sku", "UNKNOWN", "lines"),  # the service: unknown SKU
        ("lines.0.quantity", 0, "lines.0.quantity"),
        ("lines.0.quantity", -3, "lines.0.quantity"),
        ("lines.0.quantity", 1.5, "lines.0.quantity"),
        ("lines.0.quantity", "many", "lines.0.quantity"),
        ("lines.0.quantity", 10**30, "lines.0.quantity"),
        ("lines.0.quantity", 1e300, "lines.0.quantity"),
        ("lines.0.quantity", True, "lines.0.quantity"),
        ("lines.0.unit_price", "-1", "lines.0.unit_price"),
        ("lines.0.unit_price", "1.234", "lines.0.unit_price"),
        ("lines.0.unit_price", "1e400", "lines.0.unit_price"),
        ("lines.0.unit_price", "99999999999.99", "lines.0.unit_price"),
        ("lines.0.unit_price", "NaN", "lines.0.unit_price"),
        ("lines.0", "SKU-1", "lines.0.non_field_errors"),
    ],
)
def test_bad_orders_answer_422_with_field_errors_and_write_nothing(
    cs: Caller, master: MasterData, path: str, value: Any, field: str | None
) -> None:
    before = factories.row_counts()
    response = cs.post("/api/v1/orders/", body_with(path, value))
    if field is None:
        assert response.status_code == 201
        return
    problem = assert_problem(response, 422, "invalid_input")
    assert field in problem["errors"], problem["errors"]
    assert all(isinstance(m, str) and m for m in problem["errors"][field])
    assert factories.row_counts() == before
    assert not OutboxMessage.objects.exists()


def test_an_order_over_the_total_limit_is_refused(cs: Caller, master: MasterData) -> None:
    line = {"sku": "SKU-1", "quantity": 2_000_000_000, "unit_price": "9999.99"}
    problem = assert_problem(cs.post("/api/v1/orders/", erp_order(lines=[line])), 422, "invalid_input")
    assert problem["errors"] == {"lines": ["The order total must not exceed 999999999999.99."]}


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "parse_error"),
        (b'{"external_id": NaN}', "application/json", 400, "parse_error"),
        (b"\xff\xfe", "application/json", 400, "parse_error"),
        (b"[" * 100_000, "application/json", 400, "parse_error"),
        (b'{"external_id": "\\ud800"}', "application/json", 422, "invalid_input"),
        (b"", "application/json", 422, "invalid_input"),
        (b"[]", "application/json", 422, "invalid_input"),
        (b'"text"', "application/json", 422, "invalid_input"),
        (b"null", "application/json", 422, "invalid_input"),
        (b"external_id=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b"<order/>", "application/xml", 415, "unsupported_media_type"),
    ],
)
def test_garbage_bodies_never_reach_the_service(
    cs: Caller, master: MasterData, raw: bytes, content_type: str, status: int, code: str
) -> None:
    before = factories.row_counts()
    assert_problem(cs.post("/api/v1/orders/", raw=raw, content_type=content_type), status, code)
    assert factories.row_counts() == before


# --- list and filters -------------------------------------------------------------------


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["external_id"] for row in response.json()["results"]]


def test_list_is_newest_first_with_summaries(cs: Caller, master: MasterData) -> None:
    with clock.frozen(datetime(2030, 1, 1, 9, tzinfo=UTC)):
        older = factories.order(master.customer, [(master.product, 1)], wh=master.warehouse)
        clock.advance(timedelta(hours=1))
        newer = factories.order(master.customer, [(master.product, 3)])
    response = cs.get("/api/v1/orders/")
    assert ids(response) == [newer.external_id, older.external_id]
    assert response.json()["results"][1] == {
        "id": older.pk, "external_id": older.external_id, "status": "received", "customer": "C1",
        "customer_name": "Acme", "warehouse": "W1", "currency": "EUR", "total": "12.50",
        "promised_date": older.promised_date.isoformat(), "created_at": "2030-01-01T09:00:00Z",
        "status_changed_at": older.status_changed_at.isoformat().replace("+00:00", "Z"),
    }  # fmt: skip
    assert response.json()["next"] is None and response.json()["previous"] is None


def test_filters(cs: Caller, master: MasterData) -> None:
    other_customer = factories.customer(code="C2")
    w2 = factories.warehouse("W2")
    with clock.frozen(datetime(2030, 3, 1, 23, 30, tzinfo=UTC)):
        a = factories.order(master.customer, [(master.product, 1)], wh=master.warehouse, promised_in_days=3)
    with clock.frozen(datetime(2030, 3, 2, 0, 30, tzinfo=UTC)):
        b = factories.order(other_customer, [(master.product, 1)], wh=w2, promised_in_days=10)
        c = factories.order(master.customer, [(master.product, 1)], promised_in_days=1)
        services.order_apply(order=c, transition_name="hold", actor=SYSTEM, reason="x")
    get = lambda **params: ids(cs.get("/api/v1/orders/", params))  # noqa: E731
    assert get(status="on_hold") == [c.external_id]
    assert get(status="received") == [b.external_id, a.external_id]
    assert get(customer="C1") == [c.external_id, a.external_id]
    assert get(customer="C") == []  # codes match exactly
    assert get(warehouse="W2") == [b.external_id]
    assert get(created_from="2030-03-02") == [c.external_id, b.external_id]
    assert get(created_to="2030-03-01") == [a.external_id]
    assert get(created_from="2030-03-01", created_to="2030-03-01") == [a.external_id]
    assert get(promised_from="2030-03-04") == [b.external_id, a.external_id]
    assert get(promised_to="2030-03-04") == [c.external_id, a.external_id]
    assert get(promised_from="2030-03-05", promised_to="2030-03-20", customer="C2") == [b.external_id]
    assert get(created_from="0001-01-01", created_to="9999-12-31") == [
        c.external_id,
        b.external_id,
        a.external_id,
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"created_from": "2030-13-01"}, "created_from"),
        ({"promised_to": "soon"}, "promised_to"),
        ({"customer": "C" * 33}, "customer"),
        ({"customer": "a\x00b"}, "customer"),
        ({"stauts": "received"}, "stauts"),
        ({"ordering": "-total"}, "ordering"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "201"}, "page_size"),
        ({"page_size": "9" * 5000}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_bad_query_parameters_answer_422(
    cs: Caller, master: MasterData, params: dict[str, str], field: str
) -> None:
    problem = assert_problem(cs.get("/api/v1/orders/", params), 422, "invalid_input")
    assert list(problem["errors"]) == [field]


# --- detail -----------------------------------------------------------------------------


def test_detail_has_shipments_invoices_and_the_timeline(cs: Caller, master: MasterData) -> None:
    order = factories.order_in(Status.INVOICED)
    body = cs.get(f"/api/v1/orders/{order.pk}/").json()
    shipment, invoice = order.shipments.get(), order.invoices.get()
    assert body["status"] == "invoiced"
    assert body["shipments"] == [
        {
            "external_id": shipment.external_id, "warehouse": shipment.warehouse.code, "carrier": None,
            "tracking": "", "tracking_status": "", "eta": None,
            "shipped_at": shipment.shipped_at.isoformat().replace("+00:00", "Z"),
            "delivered_at": shipment.delivered_at.isoformat().replace("+00:00", "Z"),
            "signed_by": "J. Doe", "lines": [{"sku": order.lines.get().product.sku, "quantity": 4}],
        }
    ]  # fmt: skip
    assert body["invoices"] == [
        {
            "number": invoice.number, "amount": str(invoice.amount), "status": "issued",
            "issued_at": invoice.issued_at.isoformat().replace("+00:00", "Z"),
        }
    ]  # fmt: skip
    assert [t["to_state"] for t in body["timeline"]] == [
        "received", "credit_check", "allocating", "allocated", "released", "picking", "packed", "shipped",
        "delivered", "invoiced",
    ]  # fmt: skip
    assert body["credit"]["credit_limit"] == "100000.00" and body["credit"]["blocked"] is False


@pytest.mark.parametrize("path", ["999999", "0", "abc", "1.5", "-1", "9" * 30])
def test_unknown_orders_are_404(cs: Caller, master: MasterData, path: str) -> None:
    assert_problem(cs.get(f"/api/v1/orders/{path}/"), 404, "not_found")
    assert_problem(cs.post(f"/api/v1/orders/{path}/actions/hold/", {"reason": "x"}), 404, "not_found")


# --- actions ----------------------------------------------------------------------------


def act(caller: Caller, order: Order, name: str, reason: str = "", **headers: str) -> Any:
    return caller.post(f"/api/v1/orders/{order.pk}/actions/{name}/", {"reason": reason}, **headers)


def test_hold_and_release_hold_record_who_and_why(master: MasterData) -> None:
    planner = token_caller(PLANNER)
    order = factories.order_in(Status.ALLOCATED)

    held = act(planner, order, "hold", "waiting for the carrier")
    assert held.status_code == 200
    assert held.json()["status"] == "on_hold" and held.json()["held_from"] == "allocated"
    last = held.json()["timeline"][-1]
    assert (last["transition"], last["from_state"], last["to_state"], last["actor"], last["reason"]) == (
        "hold", "allocated", "on_hold", planner.user.username, "waiting for the carrier",
    )  # fmt: skip

    released = act(planner, order, "release_hold", "carrier confirmed")
    assert released.json()["status"] == "allocated"
    order.refresh_from_db()
    assert order.status == Status.ALLOCATED


def test_cancel_needs_a_reason_and_gives_the_stock_back(master: MasterData) -> None:
    admin = token_caller(ADMIN)
    order = factories.order_in(Status.ALLOCATED)
    inventory = order.lines.get().product.inventory.get()
    assert inventory.allocated == 4

    problem = assert_problem(act(admin, order, "cancel", "  "), 422, "invalid_input")
    assert problem["errors"] == {"reason": ["Required."]}
    order.refresh_from_db()
    assert order.status == Status.ALLOCATED

    assert act(admin, order, "cancel", "customer withdrew").json()["status"] == "cancelled"
    inventory.refresh_from_db()
    assert inventory.allocated == 0


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (Status.RELEASED, "hold"),
        (Status.RELEASED, "cancel"),
        (Status.ALLOCATED, "release_hold"),
        (Status.CANCELLED, "cancel"),
        (Status.CREDIT_HOLD, "hold"),
        (Status.SHIPPED, "cancel"),
    ],
)
def test_moves_not_allowed_from_the_state_answer_409(
    cs: Caller, master: MasterData, status: str, name: str
) -> None:
    order = factories.order_in(status)
    transitions = OrderTransition.objects.filter(order=order).count()
    problem = assert_problem(act(cs, order, name, "please"), 409, "transition_not_allowed")
    assert problem["detail"].endswith(f"'{name.replace('_', ' ')}' is not allowed from there.")
    order.refresh_from_db()
    assert order.status == status
    assert OrderTransition.objects.filter(order=order).count() == transitions


@pytest.mark.parametrize("name", ["release", "allocate_in_full", "HOLD", "hold%20"])
def test_moves_a_person_may_not_make_are_not_there(cs: Caller, master: MasterData, name: str) -> None:
    order = factories.order_in(Status.ALLOCATED)
    assert_problem(cs.post(f"/api/v1/orders/{order.pk}/actions/{name}/", {"reason": "x"}), 404, "not_found")


def test_a_concurrent_change_answers_409_concurrent_update(
    cs: Caller, master: MasterData, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = factories.order_in(Status.ALLOCATED)
    stale = services.order_get(order_id=order.pk)  # what the API loads ...
    services.order_apply(
        order=order, transition_name="hold", actor=SYSTEM, reason="meanwhile"
    )  # ... then this
    monkeypatch.setattr(api_orders.order_services, "order_get", lambda order_id: stale)

    problem = assert_problem(act(cs, order, "cancel", "too late"), 409, "concurrent_update")
    assert "changed by someone else" in problem["detail"]
    order.refresh_from_db()
    assert order.status == Status.ON_HOLD
    assert [t.transition for t in order.transitions.all()][-1] == "hold"


def test_reason_must_be_text(cs: Caller, master: MasterData) -> None:
    order = factories.order_in(Status.ALLOCATED)
    response = cs.post(f"/api/v1/orders/{order.pk}/actions/hold/", {"reason": {"why": 1}})
    assert assert_problem(response, 422, "invalid_input")["errors"] == {"reason": ["Not a valid string."]}
    long = cs.post(f"/api/v1/orders/{order.pk}/actions/hold/", {"reason": "x" * 2001})
    assert list(assert_problem(long, 422, "invalid_input")["errors"]) == ["reason"]
    order.refresh_from_db()
    assert order.status == Status.ALLOCATED


def test_money_in_timeline_data_is_kept_as_text(cs: Caller, master: MasterData) -> None:
    created = cs.post("/api/v1/orders/", erp_order("ERP-M")).json()
    credit = next(t for t in created["timeline"] if t["transition"] == "pass_credit_check")
    assert credit["data"]["this_order"] == "25.00"
    assert Decimal(credit["data"]["exposure"]) == Decimal("25.00")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_people_holding_one_order_at_once_one_wins_the_other_gets_409(master: MasterData) -> None:
    callers = [token_caller(CUSTOMER_SERVICE), token_caller(PLANNER)]
    for _ in range(4):
        order = factories.order_in(Status.ALLOCATED)
        barrier = threading.Barrier(2, timeout=30)
        results: list[Any] = [None, None]

        def hold(
            i: int, order: Order = order, barrier: threading.Barrier = barrier, results: list[Any] = results
        ) -> None:
            try:
                barrier.wait()
                results[i] = act(callers[i], order, "hold", f"caller {i}")
            finally:
                connections.close_all()

        threads = [threading.Thread(target=hold, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)

        assert sorted(r.status_code for r in results) == [200, 409]
        loser = next(r for r in results if r.status_code == 409)
        assert loser.json()["code"] in ("concurrent_update", "transition_not_allowed")
        assert OrderTransition.objects.filter(order=order, transition="hold").count() == 1
        order.refresh_from_db()
        assert order.status == Status.ON_HOLD
