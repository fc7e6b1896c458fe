"""Webhook intake through the real endpoints: bodies refused with problem+json and nothing
written, events stored once and acknowledged, duplicates, and applying an event twice."""

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from django_q.models import OrmQ

from fulfillment.core.models import OutboxMessage
from integrations import tasks
from integrations.inbound import inbound_event_apply
from integrations.models import InboundEvent, Partner
from orders.models import OrderTransition, Status
from tests import factories
from tests.integrations.webhook_support import (
    NOW,
    assert_problem,
    collide,
    counts,
    envelope,
    post,
    stored,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("webhook_now")]

AT = "2026-03-02T08:30:00Z"
PICK_DATA = {"order": "SO-1", "warehouse": "WH1", "lines": [{"sku": "SKU-1", "picked": 2}]}
VALID: dict[str, tuple[str, dict[str, Any]]] = {
    "inventory.adjusted": ("wms", {"warehouse": "WH1", "sku": "SKU-1", "on_hand": 0}),
    "pick.completed": ("wms", PICK_DATA),
    "shipment.confirmed": (
        "wms",
        {
            "order": "SO-1",
            "shipment_id": "SHP-1",
            "warehouse": "WH1",
            "carrier": "DHL",
            "tracking": "JJD1",
            "lines": [{"sku": "SKU-1", "quantity": 2}],
        },
    ),
    "delivery.confirmed": (
        "wms",
        {
            "order": "SO-1",
            "shipment_id": "SHP-1",
            "delivered_at": "2026-03-02T08:20:00+01:00",
            "signed_by": "",
        },
    ),
    "return.initiated": ("wms", {"order": "SO-1", "lines": [{"sku": "SKU-1", "quantity": 1}], "reason": ""}),
    "tracking.updated": ("carrier", {"tracking": "JJD1", "status": "in_transit", "eta": None}),
}


@pytest.fixture
def refused(
    client: Client, partners: dict[str, Partner], django_capture_on_commit_callbacks: Callable[..., Any]
) -> Callable[..., dict[str, Any]]:
    """POST a signed ``document`` that must be refused with ``status``/``code``; nothing is
    written or enqueued. Returns the problem body."""

    def check(document: Any, status: int, code: str, partner: str = "wms") -> dict[str, Any]:
        before = counts()
        with django_capture_on_commit_callbacks() as enqueued:
            response = post(client, partner, document)
        body = assert_problem(response, status, code)
        assert counts() == before
        assert enqueued == []
        return body

    return check


# --- malformed bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"id": "evt_1",}',
        b"\xff\xfe\x00garbage",
        b'{"id": NaN}',
        b'{"id": "evt_1", "type": "inventory.adjusted", "occurred_at": "2026-03-02T08:30:00Z", '
        b'"data": {"warehouse": "WH1", "sku": "SKU-1", "on_hand": Infinity}}',
        b'{"id": "evt_\\ud800"}',
        b"[" * 100_000,
    ],
    ids=["empty", "truncated", "trailing-comma", "not-utf8", "nan", "infinity", "lone-surrogate", "too-deep"],
)
def test_malformed_json(refused: Callable[..., dict[str, Any]], body: bytes) -> None:
    problem = refused(body, 400, "malformed_json")
    assert problem["title"] == "Malformed JSON"
    assert problem["detail"].startswith("The body is not JSON: ")


@pytest.mark.parametrize(
    "document", [[], "evt", 7, None, True], ids=["list", "string", "number", "null", "bool"]
)
def test_body_not_an_object(refused: Callable[..., dict[str, Any]], document: Any) -> None:
    problem = refused(document, 422, "invalid_envelope")
    assert problem["detail"] == 'An event is a JSON object {"id", "type", "occurred_at", "data": {...}}.'
    assert "errors" not in problem


GOOD = envelope("pick.completed", PICK_DATA, "evt_1", AT)
REQUIRED = ["This field is required."]


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"id": None}, {"id": ["This field may not be null."]}),
        ({"id": 12}, {"id": ["Not a valid string."]}),
        ({"id": ""}, {"id": ["This field may not be blank."]}),
        ({"id": "e" * 101}, {"id": ["Ensure this field has no more than 100 characters."]}),
        ({"type": ["pick.completed"]}, {"type": ["Not a valid string."]}),
        (
            {"occurred_at": "yesterday"},
            {"occurred_at": ["Give an ISO 8601 date and time with a UTC offset, e.g. 2026-03-02T09:00:00Z."]},
        ),
        (
            {"occurred_at": "2026-03-02T08:30:00"},
            {"occurred_at": ["Give a UTC offset (Z or +hh:mm): without one the time is ambiguous."]},
        ),
        (
            {"occurred_at": "2026-02-30T08:30:00Z"},
            {"occurred_at": ["Give an ISO 8601 date and time with a UTC offset, e.g. 2026-03-02T09:00:00Z."]},
        ),
        ({"data": []}, {"data": ['Expected a dictionary of items but got type "list".']}),
        ({"data": "x"}, {"data": ['Expected a dictionary of items but got type "str".']}),
    ],
)
def test_invalid_envelope(
    refused: Callable[..., dict[str, Any]], changes: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    problem = refused({**GOOD, **changes}, 422, "invalid_envelope")
    assert problem["errors"] == errors


@pytest.mark.parametrize("missing", ["id", "type", "occurred_at", "data"])
def test_envelope_missing_member(refused: Callable[..., dict[str, Any]], missing: str) -> None:
    document = {key: value for key, value in GOOD.items() if key != missing}
    assert refused(document, 422, "invalid_envelope")["errors"] == {missing: REQUIRED}


def test_envelope_errors_all_at_once(refused: Callable[..., dict[str, Any]]) -> None:
    assert refused({}, 422, "invalid_envelope")["errors"] == {
        "id": REQUIRED, "type": REQUIRED, "occurred_at": REQUIRED, "data": REQUIRED,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("partner", "event_type", "known"),
    [
        ("wms", "order.cancelled", "delivery.confirmed, inventory.adjusted, pick.completed, "
                                   "return.initiated, shipment.confirmed"),
        ("wms", "tracking.updated", "delivery.confirmed, inventory.adjusted, pick.completed, "
                                    "return.initiated, shipment.confirmed"),
        ("carrier", "pick.completed", "tracking.updated"),
    ],
)  # fmt: skip
def test_unknown_event_type(
    refused: Callable[..., dict[str, Any]], partner: str, event_type: str, known: str
) -> None:
    problem = refused({**GOOD, "type": event_type}, 422, "unknown_event_type", partner=partner)
    assert problem["detail"] == f"'{event_type}' is not an event type of {partner}; known types: {known}."


NOT_INT = ["A valid integer is required."]
NOT_STR = ["Not a valid string."]
BAD_DATA: list[tuple[str, dict[str, Any], dict[str, list[str]]]] = [
    ("inventory.adjusted", {"warehouse": "WH1", "sku": "SKU-1"}, {"data.on_hand": REQUIRED}),
    (
        "inventory.adjusted",
        {"warehouse": "WH1", "sku": "SKU-1", "on_hand": -1},
        {"data.on_hand": ["Ensure this value is greater than or equal to 0."]},
    ),
    ("inventory.adjusted", {"warehouse": "WH1", "sku": "SKU-1", "on_hand": "5"}, {"data.on_hand": NOT_INT}),
    ("inventory.adjusted", {"warehouse": "WH1", "sku": "SKU-1", "on_hand": 5.0}, {"data.on_hand": NOT_INT}),
    ("inventory.adjusted", {"warehouse": "WH1", "sku": "SKU-1", "on_hand": True}, {"data.on_hand": NOT_INT}),
    (
        "inventory.adjusted",
        {"warehouse": "WH1", "sku": "SKU-1", "on_hand": 2**31},
        {"data.on_hand": ["Ensure this value is less than or equal to 2147483647."]},
    ),
    (
        "inventory.adjusted",
        {"warehouse": 1, "sku": ["SKU-1"], "on_hand": 5},
        {"data.warehouse": NOT_STR, "data.sku": NOT_STR},
    ),
    (
        "inventory.adjusted",
        {"warehouse": "WH1", "sku": "SKU-\u0000", "on_hand": 5},
        {"data.sku": ["Null characters are not allowed."]},
    ),
    ("pick.completed", {"order": "SO-1", "warehouse": "WH1"}, {"data.lines": REQUIRED}),
    ("pick.completed", {**PICK_DATA, "lines": []}, {"data.lines": ["This list may not be empty."]}),
    (
        "pick.completed",
        {**PICK_DATA, "lines": {"sku": "SKU-1", "picked": 1}},
        {"data.lines": ['Expected a list of items but got type "dict".']},
    ),
    (
        "pick.completed",
        {**PICK_DATA, "lines": [{"sku": "SKU-1", "picked": 1}, {"sku": "SKU-2", "picked": -2}]},
        {"data.lines.1.picked": ["Ensure this value is greater than or equal to 0."]},
    ),
    (
        "pick.completed",
        {**PICK_DATA, "lines": [{"sku": "SKU-1", "picked": 1}, {"sku": "SKU-1", "picked": 1}]},
        {"data.lines": ["Give each SKU on one line."]},
    ),
    (
        "shipment.confirmed",
        {
            "order": "SO-1",
            "shipment_id": "SHP-1",
            "warehouse": "WH1",
            "lines": [{"sku": "SKU-1", "quantity": 0}],
        },
        {
            "data.carrier": REQUIRED,
            "data.tracking": REQUIRED,
            "data.lines.0.quantity": ["Ensure this value is greater than or equal to 1."],
        },
    ),
    (
        "delivery.confirmed",
        {"order": "SO-1", "shipment_id": "SHP-1", "delivered_at": "2026-03-02 08:20", "signed_by": None},
        {
            "data.delivered_at": ["Give a UTC offset (Z or +hh:mm): without one the time is ambiguous."],
            "data.signed_by": ["This field may not be null."],
        },
    ),
    (
        "return.initiated",
        {"order": "SO-1", "lines": [{"sku": "SKU-1"}], "reason": "x" * 501},
        {
            "data.lines.0.quantity": REQUIRED,
            "data.reason": ["Ensure this field has no more than 500 characters."],
        },
    ),
    (
        "tracking.updated",
        {"tracking": "JJD1", "status": "lost_in_space", "eta": 1772442000},
        {
            "data.status": ['"lost_in_space" is not a valid choice.'],
            "data.eta": ["Give an ISO 8601 date and time with a UTC offset, e.g. 2026-03-02T09:00:00Z."],
        },
    ),
]


@pytest.mark.parametrize(("event_type", "data", "errors"), BAD_DATA)
def test_invalid_event_data(
    refused: Callable[..., dict[str, Any]],
    event_type: str,
    data: dict[str, Any],
    errors: dict[str, list[str]],
) -> None:
    partner = VALID[event_type][0]
    problem = refused(envelope(event_type, data, "evt_bad", AT), 422, "invalid_event_data", partner=partner)
    assert problem["detail"] == f"The data of '{event_type}' is not valid."
    assert problem["errors"] == errors


def test_body_too_large(refused: Callable[..., dict[str, Any]], client: Client, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 200
    document = envelope("pick.completed", {**PICK_DATA, "order": "SO-" + "1" * 200}, "evt_big", AT)
    problem = refused(document, 413, "body_too_large")
    assert problem["detail"] == "An event body may have at most 200 bytes."


def test_get_is_refused_with_a_problem(client: Client, partners: dict[str, Partner]) -> None:
    for path in ("/api/v1/webhooks/wms/", "/api/v1/webhooks/carrier/"):
        response = client.get(path)
        assert_problem(response, 405, "method_not_allowed")
        assert response["Allow"] == "POST"
    assert not InboundEvent.objects.exists()


# --- acceptance -------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_every_valid_event_type_is_accepted(
    client: Client, partners: dict[str, Partner], event_type: str
) -> None:
    partner, data = VALID[event_type]
    response = post(client, partner, envelope(event_type, data, "evt_ok", AT))
    assert (response.status_code, response.json()) == (202, {"id": "evt_ok", "status": "accepted"})
    assert stored(partner, "evt_ok").type == event_type


def test_accepted_event_is_stored_normalized_and_kicks_the_apply_after_commit(
    client: Client, partners: dict[str, Partner], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    data = {
        "order": "SO-1", "shipment_id": "SHP-1", "delivered_at": "2026-03-02T08:20:00.5+01:00",
        "signed_by": "  Ada Lovelace ", "courier_notes": "left with neighbour",
    }  # fmt: skip
    before = OrmQ.objects.count()
    with django_capture_on_commit_callbacks(execute=True) as enqueued:
        response = post(
            client, "wms", envelope("delivery.confirmed", data, "evt_dlv_1", "2026-03-02T08:21:00+01:00")
        )
    assert (response.status_code, response.json()) == (202, {"id": "evt_dlv_1", "status": "accepted"})

    event = InboundEvent.objects.get()
    assert (event.partner.name, event.event_id, event.type, event.state, event.attempts) == (
        "wms", "evt_dlv_1", "delivery.confirmed", "pending", 0,
    )  # fmt: skip
    assert event.occurred_at == datetime(2026, 3, 2, 7, 21, tzinfo=UTC)
    assert event.received_at == NOW
    assert event.subject_ref == "SO-1"
    # Validated data only: times in UTC, text trimmed, unknown keys dropped.
    assert event.data == {
        "order": "SO-1", "shipment_id": "SHP-1", "delivered_at": "2026-03-02T07:20:00.500000Z",
        "signed_by": "Ada Lovelace",
    }  # fmt: skip
    # One task, on commit, in the ORM broker: the apply of whatever is pending.
    assert len(enqueued) == 1
    assert OrmQ.objects.count() == before + 1
    task = OrmQ.objects.latest("id").task
    assert (task["func"], task["args"], task["name"]) == (
        "integrations.tasks.apply_pending_events", (), "inbound-apply",
    )  # fmt: skip


def test_tracking_event_is_filed_under_its_order_when_the_shipment_is_known(
    client: Client, partners: dict[str, Partner]
) -> None:
    shipped = factories.order_in(Status.SHIPPED)
    shipment = shipped.shipments.get()
    shipment.tracking = "JJD42"
    shipment.save(update_fields=["tracking"])
    post(client, "carrier", envelope("tracking.updated", {"tracking": "JJD42", "status": "booked"}, "e1", AT))
    post(client, "carrier", envelope("tracking.updated", {"tracking": "JJD43", "status": "booked"}, "e2", AT))
    assert stored("carrier", "e1").subject_ref == shipped.external_id
    assert stored("carrier", "e2").subject_ref == "JJD43"


def test_duplicate_is_acknowledged_and_stored_once(
    client: Client, partners: dict[str, Partner], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    first = envelope("pick.completed", PICK_DATA, "evt_dup", AT)
    assert post(client, "wms", first).json() == {"id": "evt_dup", "status": "accepted"}
    again = {**first, "data": {**PICK_DATA, "lines": [{"sku": "SKU-1", "picked": 0}]}}
    for document in (first, again):
        with django_capture_on_commit_callbacks() as enqueued:
            response = post(client, "wms", document)
        assert (response.status_code, response.json()) == (202, {"id": "evt_dup", "status": "duplicate"})
        assert enqueued == []
    event = InboundEvent.objects.get()
    assert event.data["lines"] == [{"sku": "SKU-1", "picked": 2}]  # the first one stays


def test_event_ids_are_unique_per_partner(client: Client, partners: dict[str, Partner]) -> None:
    assert (
        post(client, "wms", envelope("pick.completed", PICK_DATA, "evt_7", AT)).json()["status"] == "accepted"
    )
    tracking = envelope("tracking.updated", {"tracking": "JJD1", "status": "booked"}, "evt_7", AT)
    assert post(client, "carrier", tracking).json()["status"] == "accepted"
    assert InboundEvent.objects.filter(event_id="evt_7").count() == 2


def test_a_broken_broker_does_not_refuse_a_stored_event(
    client: Client,
    partners: dict[str, Partner],
    django_capture_on_commit_callbacks: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The event is durable before the 202: a failed enqueue is left to the sweep."""

    def broker_down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr("integrations.webhooks.async_task", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, "wms", envelope("pick.completed", PICK_DATA, "evt_lost", AT))
    assert (response.status_code, response.json()["status"]) == (202, "accepted")
    assert stored("wms", "evt_lost").state == "pending"
    assert "Could not enqueue the apply of inbound events" in caplog.text


def test_applying_the_same_event_twice_changes_state_once(
    client: Client, partners: dict[str, Partner]
) -> None:
    order = factories.order_in(Status.RELEASED)
    line = order.lines.select_related("product").get()
    data = {
        "order": order.external_id,
        "warehouse": order.warehouse.code,
        "lines": [{"sku": line.product.sku, "picked": line.quantity}],
    }
    post(client, "wms", envelope("pick.completed", data, "evt_pick", AT))
    event = stored("wms", "evt_pick")
    transitions = OrderTransition.objects.count()
    outbox = OutboxMessage.objects.count()

    assert inbound_event_apply(event_pk=event.pk) == "applied"
    assert OrderTransition.objects.count() == transitions + 2
    assert inbound_event_apply(event_pk=event.pk) == "applied"
    assert OrderTransition.objects.count() == transitions + 2
    assert OutboxMessage.objects.count() == outbox
    order.refresh_from_db()
    event.refresh_from_db()
    assert (order.status, event.state, event.attempts) == (Status.PACKED, "applied", 1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_event_posted_twice_at_once_is_stored_once(partners: dict[str, Partner]) -> None:
    document = envelope("pick.completed", PICK_DATA, "evt_race", AT)

    def post_it(barrier: threading.Barrier) -> tuple[int, str]:
        client = Client()
        barrier.wait()
        response = post(client, "wms", document)
        return response.status_code, response.json()["status"]

    for _ in range(4):
        InboundEvent.objects.all().delete()
        assert sorted(collide(post_it, post_it)) == [(202, "accepted"), (202, "duplicate")]
        assert InboundEvent.objects.filter(event_id="evt_race").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_applying_one_event_at_once_apply_it_once(partners: dict[str, Partner]) -> None:
    order = factories.order_in(Status.RELEASED)
    line = order.lines.select_related("product").get()
    data = {
        "order": order.external_id,
        "warehouse": order.warehouse.code,
        "lines": [{"sku": line.product.sku, "picked": line.quantity}],
    }
    post(Client(), "wms", envelope("pick.completed", data, "evt_pick_race", AT))
    event = stored("wms", "evt_pick_race")
    rows = OrderTransition.objects.filter(order=order).count()

    def work(barrier: threading.Barrier) -> str:
        barrier.wait()
        return inbound_event_apply(event_pk=event.pk)

    assert collide(work, work) == ["applied", "applied"]
    event.refresh_from_db()
    assert (event.state, event.attempts) == ("applied", 1)
    assert OrderTransition.objects.filter(order=order).count() == rows + 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_apply_runs_at_once_apply_each_event_once(partners: dict[str, Partner]) -> None:
    orders = [factories.order_in(Status.RELEASED) for _ in range(3)]
    for n, order in enumerate(orders):
        line = order.lines.select_related("product").get()
        data = {
            "order": order.external_id,
            "warehouse": order.warehouse.code,
            "lines": [{"sku": line.product.sku, "picked": line.quantity}],
        }
        post(Client(), "wms", envelope("pick.completed", data, f"evt_pick_{n}", AT))
    rows = OrderTransition.objects.count()

    def work(barrier: threading.Barrier) -> int:
        barrier.wait()
        return tasks.apply_pending_events()

    assert sum(collide(work, work)) == 3
    assert list(InboundEvent.objects.values_list("state", "attempts").distinct()) == [("applied", 1)]
    assert OrderTransition.objects.count() == rows + 2 * 3
