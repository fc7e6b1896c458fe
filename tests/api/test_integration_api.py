"""Integration messages through the API: outbox messages and inbound events, and the
operator's replay, mark handled and retry."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from exceptions import services as exception_services
from exceptions.models import OrderException
from fulfillment.core import clock
from fulfillment.core.models import OutboxMessage
from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, FINANCE, PLANNER
from integrations.models import InboundEvent, OutboxAction, Partner
from orders.models import Carrier, Status
from tests import factories
from tests.api.conftest import Caller, assert_problem, token_caller
from tests.api.work_support import MONDAY_9, SYSTEM, failed_shipment, inbound_event, outbox_message

pytestmark = pytest.mark.django_db
State = OutboxMessage.State


@pytest.fixture(autouse=True)
def _setup() -> Iterator[None]:
    factories.migration_data()
    with clock.frozen(MONDAY_9):
        yield


@pytest.fixture
def planner() -> Caller:
    return token_caller(user=factories.user("pia", PLANNER))


def stamp(at: Any) -> str:
    return at.isoformat().replace("+00:00", "Z")


def row(message: OutboxMessage) -> dict[str, Any]:
    return OutboxMessage.objects.filter(pk=message.pk).values().get()


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [r["id"] for r in response.json()["results"]]


# --- outbox ---------------------------------------------------------------------------------


def test_messages_newest_first_with_filters(planner: Caller) -> None:
    order = factories.order()
    dead = outbox_message(State.DEAD, order=order, attempts=[(503, "HTTP 503: down")])
    delivered = outbox_message(State.DELIVERED, order=order, topic="order.release", endpoint="wms")
    stray = outbox_message(State.PENDING)

    listed = planner.get("/api/v1/outbox/")

    assert ids(listed) == [stray.pk, delivered.pk, dead.pk]
    assert listed.json()["results"][2] == {
        "id": dead.pk, "endpoint": "erp", "topic": "erp.status", "state": "dead", "order": order.external_id,
        "order_id": order.pk, "idempotency_key": dead.idempotency_key, "attempts": 1,
        "next_attempt_at": stamp(dead.next_attempt_at), "last_error": "HTTP 503: down",
        "created_at": stamp(dead.created_at), "delivered_at": None,
    }  # fmt: skip
    assert listed.json()["results"][0]["order_id"] is None
    assert ids(planner.get("/api/v1/outbox/", {"state": "dead"})) == [dead.pk]
    assert ids(planner.get("/api/v1/outbox/", {"endpoint": "wms"})) == [delivered.pk]
    assert ids(planner.get("/api/v1/outbox/", {"topic": "erp.status"})) == [stray.pk, dead.pk]
    assert ids(planner.get("/api/v1/outbox/", {"order": order.pk})) == [delivered.pk, dead.pk]
    for params in ({"state": "lost"}, {"order": "x"}, {"endpoint": "e" * 33}, {"partner": "wms"}):
        assert_problem(planner.get("/api/v1/outbox/", params), 422, "invalid_input")


def test_a_message_with_its_payload_attempts_and_actions(planner: Caller) -> None:
    order = factories.order()
    dead = outbox_message(order=order, attempts=[(503, "HTTP 503: down"), (None, "timed out")])
    planner.post(f"/api/v1/outbox/{dead.pk}/replay/", {"note": "ERP is back"})

    body = planner.get(f"/api/v1/outbox/{dead.pk}/").json()

    assert body["payload"] == {"order": order.external_id, "n": dead.payload["n"]}
    assert body["response"] is None and body["order_id"] == order.pk and body["state"] == "pending"
    assert [(a["status_code"], a["error"], a["succeeded"]) for a in body["delivery_attempts"]] == [
        (503, "HTTP 503: down", False),
        (None, "timed out", False),
    ]
    assert body["actions"] == [
        {"action": "replay", "actor": "pia", "note": "ERP is back", "at": stamp(MONDAY_9)}
    ]
    assert_problem(planner.get("/api/v1/outbox/999999/"), 404, "not_found")


def test_replay_sends_a_dead_letter_again(planner: Caller) -> None:
    dead = outbox_message(attempts=[(503, "HTTP 503: down")] * 8)
    response = planner.post(f"/api/v1/outbox/{dead.pk}/replay/")
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["attempts"], response.json()["last_error"]) == (
        "pending", 0, ""
    )  # fmt: skip
    assert row(dead)["next_attempt_at"] == MONDAY_9


@pytest.mark.parametrize("state", [State.DELIVERED, State.PENDING, State.HANDLED, State.SENDING])
def test_only_dead_letters_are_replayed(planner: Caller, state: str) -> None:
    message = outbox_message(state)
    before = row(message)
    body = assert_problem(planner.post(f"/api/v1/outbox/{message.pk}/replay/"), 422, "invalid_input")
    assert list(body["errors"]) == ["state"]
    assert row(message) == before and not OutboxAction.objects.exists()


def test_replay_many_reports_what_was_refused(planner: Caller) -> None:
    first, second, delivered = outbox_message(), outbox_message(), outbox_message(State.DELIVERED)

    response = planner.post(
        "/api/v1/outbox/replay/", {"messages": [first.pk, delivered.pk, 999999, second.pk, first.pk]}
    )

    assert response.json() == {
        "replayed": [first.pk, second.pk],
        "refused": [
            {
                "id": delivered.pk,
                "detail": f"Message {delivered.pk} (erp.status to erp) cannot be replayed: "
                "it was delivered already.",
            },
            {"id": 999999, "detail": "There is no outbox message 999999."},
        ],
    }
    assert row(delivered)["state"] == State.DELIVERED


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": ["a"]}, "messages.0"),
        ({"messages": [0]}, "messages.0"),
        ({"messages": list(range(1, 202))}, "messages"),
        ({"messages": [1], "note": "x" * 2001}, "note"),
    ],
)
def test_replay_many_with_a_bad_body_changes_nothing(
    planner: Caller, body: dict[str, Any], field: str
) -> None:
    dead = outbox_message()
    problem = assert_problem(planner.post("/api/v1/outbox/replay/", body), 422, "invalid_input")
    assert list(problem["errors"]) == [field]
    assert row(dead)["state"] == State.DEAD


def test_mark_handled_needs_a_note_and_clears_the_orders_exception(planner: Caller) -> None:
    order = factories.order()
    dead = outbox_message(order=order)
    exception_services.exception_raise(  # as the relay opens it for the dead letter
        type_code="integration_sync_failed", order=order, details={"message": dead.pk}, actor=SYSTEM
    )
    for body in ({}, {"note": "  "}):
        assert_problem(planner.post(f"/api/v1/outbox/{dead.pk}/mark-handled/", body), 422, "invalid_input")
    assert row(dead)["state"] == State.DEAD

    response = planner.post(f"/api/v1/outbox/{dead.pk}/mark-handled/", {"note": "Keyed into the ERP."})

    assert response.json()["state"] == "handled"
    assert response.json()["actions"][-1]["note"] == "Keyed into the ERP."
    assert not OrderException.objects.filter(order=order, is_open=True).exists()
    body = assert_problem(planner.post(f"/api/v1/outbox/{dead.pk}/replay/"), 422, "invalid_input")
    assert body["errors"] == {"state": ["The message is handled by hand."]}


# --- inbound events -------------------------------------------------------------------------


def test_events_newest_first_with_filters(planner: Caller) -> None:
    order = factories.order()
    applied = inbound_event(order=order)
    failed = inbound_event(InboundEvent.State.FAILED, last_error="Unknown SKU.")
    carrier = inbound_event(
        partner=Partner.objects.create(name="dhl"), type="tracking.updated", state=InboundEvent.State.DEFERRED
    )

    listed = planner.get("/api/v1/inbound-events/")

    assert ids(listed) == [carrier.pk, failed.pk, applied.pk]
    assert listed.json()["results"][2] == {
        "id": applied.pk, "partner": "wms", "event_id": applied.event_id, "type": "inventory.adjusted",
        "state": "applied", "order": order.external_id, "order_id": order.pk,
        "occurred_at": stamp(applied.occurred_at), "attempts": 0, "last_error": "",
        "received_at": stamp(applied.received_at), "applied_at": None,
    }  # fmt: skip
    assert ids(planner.get("/api/v1/inbound-events/", {"state": "failed"})) == [failed.pk]
    assert ids(planner.get("/api/v1/inbound-events/", {"partner": "dhl"})) == [carrier.pk]
    assert ids(planner.get("/api/v1/inbound-events/", {"type": "inventory.adjusted"})) == [
        failed.pk,
        applied.pk,
    ]
    assert ids(planner.get("/api/v1/inbound-events/", {"order": order.pk})) == [applied.pk]
    detail = planner.get(f"/api/v1/inbound-events/{applied.pk}/").json()
    assert detail["data"] == {"warehouse": "W1", "sku": "S", "on_hand": 1} and detail["order_id"] == order.pk
    assert_problem(planner.get("/api/v1/inbound-events/999999/"), 404, "not_found")


def test_retrying_a_failed_event_after_fixing_its_cause_applies_it(planner: Caller) -> None:
    order = factories.order_in(Status.PACKED)
    event = failed_shipment(order)
    clock.advance(timedelta(minutes=1))
    again = planner.post(f"/api/v1/inbound-events/{event.pk}/retry/")
    assert (again.json()["state"], again.json()["attempts"]) == ("failed", 2)
    assert again.json()["last_error"] == "Unknown carrier 'NEWCO'."

    Carrier.objects.create(code="NEWCO", name="New Carrier")
    applied = planner.post(f"/api/v1/inbound-events/{event.pk}/retry/")

    assert (applied.json()["state"], applied.json()["attempts"], applied.json()["last_error"]) == (
        "applied",
        3,
        "",
    )
    order.refresh_from_db()
    assert order.status == Status.SHIPPED
    assert not OrderException.objects.filter(order=order, is_open=True).exists()


def test_only_failed_events_are_retried(planner: Caller) -> None:
    event = inbound_event(InboundEvent.State.APPLIED)
    body = assert_problem(planner.post(f"/api/v1/inbound-events/{event.pk}/retry/"), 422, "invalid_input")
    assert body["errors"] == {"state": ["The event has not failed."]}
    event.refresh_from_db()
    assert (event.state, event.attempts) == ("applied", 0)
    assert_problem(planner.post("/api/v1/inbound-events/999999/retry/"), 404, "not_found")


# --- who ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [CUSTOMER_SERVICE, FINANCE])
def test_integration_messages_are_for_planners_and_admins(role: str) -> None:
    dead, failed = outbox_message(), inbound_event(InboundEvent.State.FAILED)
    caller = token_caller(role)
    for response in [
        caller.get("/api/v1/outbox/"),
        caller.get(f"/api/v1/outbox/{dead.pk}/"),
        caller.post(f"/api/v1/outbox/{dead.pk}/replay/"),
        caller.post("/api/v1/outbox/replay/", {"messages": [dead.pk]}),
        caller.post(f"/api/v1/outbox/{dead.pk}/mark-handled/", {"note": "x"}),
        caller.get("/api/v1/inbound-events/"),
        caller.get(f"/api/v1/inbound-events/{failed.pk}/"),
        caller.post(f"/api/v1/inbound-events/{failed.pk}/retry/"),
    ]:
        assert_problem(response, 403, "permission_denied")
    assert row(dead)["state"] == State.DEAD
    failed.refresh_from_db()
    assert failed.attempts == 0
    assert token_caller(ADMIN).post(f"/api/v1/outbox/{dead.pk}/replay/").json()["state"] == "pending"
