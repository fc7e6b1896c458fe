"""The integration screens: who may open them, filters, paging, fixed queries, and the
operator's actions as a person takes them (replay, mark handled, retry)."""

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib import import_module
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from exceptions import services as exception_services
from exceptions.models import OrderException
from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.models import OutboxMessage
from fulfillment.core.outbox import kick_relay
from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, FINANCE, PLANNER
from integrations.models import DeliveryAttempt, Endpoint, InboundEvent, OutboxAction, Partner
from orders.models import Order
from portal import integration
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
State = OutboxMessage.State
_keys = iter(range(1, 10**6))


@pytest.fixture(autouse=True)
def _default_data(db: None) -> None:
    for module in (
        "fulfillment.core.migrations.0002_default_teams_and_queues",
        "exceptions.migrations.0002_default_types_and_deadlines",
    ):
        import_module(module).create(apps, None)


@pytest.fixture(autouse=True)
def now() -> Iterator[datetime]:
    with clock.frozen(NOW):
        yield NOW


@pytest.fixture
def planner(client: Client) -> User:
    user = factories.user("pia", PLANNER)
    client.force_login(user)
    return user


def message(
    state: str = State.DEAD,
    *,
    order: Order | None = None,
    ref: str = "",
    topic: str = "erp.status",
    endpoint: str = "erp",
    created_at: datetime | None = None,
) -> OutboxMessage:
    n = next(_keys)
    return OutboxMessage.objects.create(
        endpoint=endpoint,
        topic=topic,
        payload={"order": ref or (order.external_id if order else ""), "lines": [{"sku": "A-1", "qty": 2}]},
        idempotency_key=f"screen-{n}",
        subject_ref=order.external_id if order else ref,
        state=state,
        attempts=8 if state == State.DEAD else 1,
        last_error="HTTP 503: down" if state == State.DEAD else "",
        created_at=created_at or NOW - timedelta(minutes=n % 50),
    )


def event(
    state: str = InboundEvent.State.APPLIED,
    *,
    partner: str = "wms",
    type: str = "pick.completed",
    ref: str = "SO-1",
    received_at: datetime | None = None,
) -> InboundEvent:
    n = next(_keys)
    return InboundEvent.objects.create(
        partner=Partner.objects.get_or_create(name=partner)[0],
        event_id=f"ev-{n}",
        type=type,
        occurred_at=NOW - timedelta(minutes=5),
        data={"order": ref, "n": n},
        subject_ref=ref,
        state=state,
        attempts=1,
        last_error="boom" if state == InboundEvent.State.FAILED else "",
        received_at=received_at or NOW - timedelta(minutes=n % 50),
    )


def texts(response: Any) -> str:
    """The visible text of a page, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


# --- who may open them ---------------------------------------------------------------------------

PAGES = ["integration", "integration-health", "integration-outbox", "integration-inbound"]


def detail_urls() -> list[str]:
    m, e = message(), event(InboundEvent.State.FAILED)
    return [
        reverse("integration-outbox-detail", args=[m.pk]),
        reverse("integration-inbound-detail", args=[e.pk]),
    ]


def action_urls() -> list[str]:
    m, e = message(), event(InboundEvent.State.FAILED)
    return [
        reverse("integration-replay"),
        reverse("integration-outbox-replay", args=[m.pk]),
        reverse("integration-outbox-handled", args=[m.pk]),
        reverse("integration-inbound-retry", args=[e.pk]),
    ]


def test_anonymous_people_are_sent_to_log_in(client: Client) -> None:
    for url in [reverse(name) for name in PAGES] + detail_urls():
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    for url in action_urls():
        response = client.post(url, {"note": "x"})
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    assert not OutboxAction.objects.exists()


@pytest.mark.parametrize("roles", [(CUSTOMER_SERVICE,), (FINANCE,), (CUSTOMER_SERVICE, FINANCE), ()])
def test_other_roles_are_refused(client: Client, roles: tuple[str, ...]) -> None:
    client.force_login(factories.user(None, *roles))
    for url in [reverse(name) for name in PAGES] + detail_urls():
        assert client.get(url).status_code == 403, url
    for url in action_urls():
        assert client.post(url, {"note": "x", "messages": ["1"]}).status_code == 403, url
    assert not OutboxAction.objects.exists()
    assert not OutboxMessage.objects.exclude(state=State.DEAD).exists()
    assert not InboundEvent.objects.exclude(state=InboundEvent.State.FAILED).exists()


@pytest.mark.parametrize("role", [PLANNER, ADMIN])
def test_planners_and_admins_open_every_page(client: Client, role: str) -> None:
    client.force_login(factories.user(None, role))
    for url in [reverse(name) for name in PAGES] + detail_urls():
        assert client.get(url).status_code == 200, url


def test_the_navigation_shows_integration_to_planners_and_admins_only(client: Client) -> None:
    link = f'href="{reverse("integration")}"'
    client.force_login(factories.user(None, PLANNER))
    assert link in client.get(reverse("home")).content.decode()
    client.force_login(factories.user(None, CUSTOMER_SERVICE, FINANCE))
    assert link not in client.get(reverse("home")).content.decode()


def test_unknown_messages_and_events_are_not_found(client: Client, planner: User) -> None:
    assert client.get(reverse("integration-outbox-detail", args=[999999])).status_code == 404
    assert client.get(reverse("integration-inbound-detail", args=[999999])).status_code == 404
    assert client.post(reverse("integration-outbox-handled", args=[999999]), {"note": "x"}).status_code == 404
    assert client.post(reverse("integration-inbound-retry", args=[999999])).status_code == 404


# --- the health screen ---------------------------------------------------------------------------


def test_health_shows_each_endpoint_and_the_dead_letters(client: Client, planner: User) -> None:
    Endpoint.objects.create(
        name="carrier", base_url="http://c.test", circuit=Endpoint.Circuit.OPEN, circuit_opened_at=NOW
    )
    Endpoint.objects.create(name="erp", base_url="http://e.test", last_success_at=NOW - timedelta(minutes=5))
    order = factories.order()
    dead = message(State.DEAD, order=order, topic="erp.invoice")
    message(State.DELIVERED, order=order)
    DeliveryAttempt.objects.create(message=dead, at=NOW, status_code=200, latency_ms=120, succeeded=True)
    DeliveryAttempt.objects.create(message=dead, at=NOW, status_code=503, latency_ms=80, succeeded=False)

    response = client.get(reverse("integration"))

    assert response.status_code == 200
    page = texts(response)
    body = response.content.decode()
    assert 'class="health-card tone-danger"' in body and 'class="badge circuit-open"' in body
    assert "ERP circuit closed Success 50.0% 2 attempts Latency p95 118 ms" in page
    assert "1 message gave up after the last attempt" in page
    assert [m.pk for m, _ in response.context["dead_rows"]] == [dead.pk]
    assert f'href="{reverse("order-detail", args=[order.pk])}"' in body
    assert f'value="{dead.pk}" form="replay-form"' in body
    assert 'hx-trigger="every 10s' in body


def test_htmx_refreshes_the_cards_alone(client: Client, planner: User) -> None:
    Endpoint.objects.create(name="wms", base_url="http://w.test")
    message(State.PENDING, endpoint="wms")

    response = client.get(reverse("integration-health"), headers={"HX-Request": "true"})

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="health-cards"')
    assert "<html" not in body and "Dead letters</h2>" not in body
    assert [(c.name, c.backlog) for c in response.context["cards"]] == [
        ("carrier", 0),
        ("erp", 0),
        ("notify", 0),
        ("wms", 1),
    ]


def health_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("integration")).status_code == 200
    return len(queries)


def test_the_health_page_runs_fixed_queries_for_3_or_30_dead_letters(client: Client, planner: User) -> None:
    orders = [factories.order() for _ in range(3)]
    for i in range(3):
        message(State.DEAD, order=orders[i % 3])
    few = health_queries(client)
    for i in range(27):
        m = message(State.DEAD, order=orders[i % 3], endpoint=["erp", "wms", "carrier"][i % 3])
        DeliveryAttempt.objects.create(message=m, at=NOW, latency_ms=i)
    assert health_queries(client) == few


# --- replay and mark handled from the screens ----------------------------------------------------


def test_replay_selected_from_the_health_screen(
    client: Client, planner: User, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    first, second, third = message(), message(), message()

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("integration-replay"), {"messages": [first.pk, third.pk], "note": "token renewed"}
        )

    assert (response.status_code, response["Location"]) == (302, reverse("integration"))
    states = dict(OutboxMessage.objects.values_list("pk", "state"))
    assert (states[first.pk], states[second.pk], states[third.pk]) == (
        State.PENDING,
        State.DEAD,
        State.PENDING,
    )
    assert sorted(OutboxAction.objects.values_list("message_id", "action", "note")) == [
        (first.pk, "replay", "token renewed"),
        (third.pk, "replay", "token renewed"),
    ]
    assert callbacks == [kick_relay]
    assert "2 messages replayed: the relay is sending them now." in texts(client.get(reverse("integration")))


def test_replaying_a_mixed_selection_says_which_ones_were_not_replayed(client: Client, planner: User) -> None:
    dead, delivered = message(), message(State.DELIVERED)

    response = client.post(reverse("integration-replay"), {"messages": [dead.pk, delivered.pk]}, follow=True)

    page = texts(response)
    assert "1 message replayed: the relay is sending it now." in page
    assert f"Message {delivered.pk} (erp.status to erp) cannot be replayed: it was delivered already." in page
    assert OutboxMessage.objects.get(pk=delivered.pk).state == State.DELIVERED


def test_replaying_nothing_or_only_unreplayable_messages_is_refused_in_place(
    client: Client, planner: User
) -> None:
    delivered, dead = message(State.DELIVERED), message(State.DEAD)

    nothing = client.post(reverse("integration-replay"), {"note": "x"})
    assert nothing.status_code == 422
    assert "Select the messages to replay." in texts(nothing)

    refused = client.post(
        reverse("integration-replay"), {"messages": [delivered.pk, 999999], "note": "keep me"}
    )
    assert refused.status_code == 422
    page = texts(refused)
    assert "cannot be replayed: it was delivered already." in page and "There is no message 999999." in page
    assert 'value="keep me"' in refused.content.decode()  # the note stays for another try
    assert [m.pk for m, _ in refused.context["dead_rows"]] == [dead.pk]
    assert not OutboxAction.objects.exists()


def test_mark_handled_from_the_health_screen_needs_a_note(client: Client, planner: User) -> None:
    order = factories.order()
    dead = message(order=order)
    exception_services.exception_raise(
        type_code="integration_sync_failed",
        order=order,
        details={"message": dead.pk},
        actor=Actor.named("relay"),
    )
    url = reverse("integration-outbox-handled", args=[dead.pk])

    refused = client.post(url, {"note": "  ", "back": "health"})
    assert refused.status_code == 422
    assert "Say what was done by hand, so that others can follow it." in texts(refused)
    assert refused.context["failed_message"] == dead.pk  # the row's form stays open with the reason
    assert OutboxMessage.objects.get(pk=dead.pk).state == State.DEAD

    done = client.post(url, {"note": "status set in the ERP by hand", "back": "health"})
    assert (done.status_code, done["Location"]) == (302, reverse("integration"))
    assert OutboxMessage.objects.get(pk=dead.pk).state == State.HANDLED
    assert not OrderException.objects.filter(order=order, is_open=True).exists()


def test_a_refusal_about_a_message_no_longer_listed_shows_above_the_list(
    client: Client, planner: User
) -> None:
    delivered = message(State.DELIVERED)
    response = client.post(
        reverse("integration-outbox-handled", args=[delivered.pk]), {"note": "done", "back": "health"}
    )
    assert response.status_code == 422
    assert response.context["failed_message"] is None
    assert (
        f'<div class="alert" role="alert">Message {delivered.pk} (erp.status to erp) '
        "cannot be marked handled: it was delivered already.</div>" in response.content.decode()
    )


def test_the_message_page_shows_payload_attempts_and_history_and_offers_what_its_state_allows(
    client: Client, planner: User
) -> None:
    dead = message(order=factories.order())
    DeliveryAttempt.objects.create(
        message=dead, at=NOW - timedelta(minutes=3), status_code=503, latency_ms=1234, error="HTTP 503: down"
    )
    DeliveryAttempt.objects.create(
        message=dead, at=NOW - timedelta(minutes=1), latency_ms=5000, error="ReadTimeout"
    )
    url = reverse("integration-outbox-detail", args=[dead.pk])

    response = client.get(url)

    body, page = response.content.decode(), texts(response)
    assert "{\n  &quot;lines&quot;: [\n    {\n      &quot;qty&quot;: 2," in body  # pretty-printed
    assert "1 2026-03-02 08:57:00 failed 503 1,234 ms HTTP 503: down" in page
    assert "2 2026-03-02 08:59:00 failed — 5,000 ms ReadTimeout" in page
    assert reverse("integration-outbox-replay", args=[dead.pk]) in body
    assert reverse("integration-outbox-handled", args=[dead.pk]) in body

    client.post(reverse("integration-outbox-replay", args=[dead.pk]), {"note": "ERP fixed"})
    after = client.get(url)
    assert "Replayed pia ERP fixed" in texts(after)
    assert reverse("integration-outbox-replay", args=[dead.pk]) not in after.content.decode()  # pending now
    assert reverse("integration-outbox-handled", args=[dead.pk]) in after.content.decode()

    delivered = message(State.DELIVERED)
    settled = client.get(reverse("integration-outbox-detail", args=[delivered.pk])).content.decode()
    assert "/replay/" not in settled and "/handled/" not in settled


def test_replaying_a_delivered_message_from_its_page_is_refused_and_changes_nothing(
    client: Client, planner: User
) -> None:
    delivered = message(State.DELIVERED)
    response = client.post(reverse("integration-outbox-replay", args=[delivered.pk]), {"note": "again"})
    assert response.status_code == 422
    assert (
        f"Message {delivered.pk} (erp.status to erp) cannot be replayed: it was delivered already."
        in texts(response)
    )
    assert OutboxMessage.objects.get(pk=delivered.pk).state == State.DELIVERED
    assert not OutboxAction.objects.exists()


def test_mark_handled_from_the_message_page_returns_to_it(client: Client, planner: User) -> None:
    pending = message(State.PENDING)
    url = reverse("integration-outbox-handled", args=[pending.pk])

    refused = client.post(url, {"note": "", "back": "detail"})
    assert refused.status_code == 422 and refused.context["failed_action"] == "handled"

    response = client.post(url, {"note": "customer called instead", "back": "detail"})
    assert response["Location"] == reverse("integration-outbox-detail", args=[pending.pk])
    assert "Marked handled by hand pia customer called instead" in texts(client.get(response["Location"]))


def test_retry_a_failed_event_from_its_page(client: Client, planner: User) -> None:
    failed = event(InboundEvent.State.FAILED, type="inventory.adjusted", ref="")
    InboundEvent.objects.filter(pk=failed.pk).update(data={"warehouse": "NOPE", "sku": "NOPE", "on_hand": 1})
    url = reverse("integration-inbound-detail", args=[failed.pk])
    assert reverse("integration-inbound-retry", args=[failed.pk]) in client.get(url).content.decode()

    response = client.post(reverse("integration-inbound-retry", args=[failed.pk]), follow=True)

    assert response.redirect_chain == [(url, 302)]
    failed.refresh_from_db()
    assert (failed.state, failed.attempts) == (InboundEvent.State.FAILED, 2)
    assert f"Event {failed.event_id} failed again:" in texts(response)

    applied = event(InboundEvent.State.APPLIED)
    refused = client.post(reverse("integration-inbound-retry", args=[applied.pk]))
    assert refused.status_code == 422
    assert "only failed events can be retried" in texts(refused)


# --- lists: filters, paging, fixed queries -------------------------------------------------------


def outbox_ids(client: Client, **params: str) -> list[int]:
    response = client.get(reverse("integration-outbox"), params)
    assert response.status_code == 200
    return [m.pk for m, _ in response.context["rows"]]


def test_outbox_filters_combine(client: Client, planner: User) -> None:
    a = message(State.DEAD, ref="SO-A", endpoint="erp", topic="erp.invoice")
    b = message(State.DELIVERED, ref="SO-A", endpoint="wms", topic="order.release")
    c = message(State.DEAD, ref="SO-B", endpoint="wms", topic="order.release")
    assert set(outbox_ids(client)) == {a.pk, b.pk, c.pk}
    assert set(outbox_ids(client, state="dead")) == {a.pk, c.pk}
    assert outbox_ids(client, state="dead", endpoint="wms") == [c.pk]
    assert outbox_ids(client, topic="erp.invoice") == [a.pk]
    assert set(outbox_ids(client, order=" SO-A ")) == {a.pk, b.pk}
    assert outbox_ids(client, order="SO-A", endpoint="wms") == [b.pk]
    assert outbox_ids(client, order="SO-C") == []


def test_bad_outbox_filters_are_explained(client: Client, planner: User) -> None:
    response = client.get(reverse("integration-outbox"), {"state": "lost", "after": "!!"})
    assert response.status_code == 422
    page = texts(response)
    assert "State: Select a valid choice. lost is not one of the available choices." in page
    assert "Page link: This page link is not valid" in page


def inbound_ids(client: Client, **params: str) -> list[int]:
    response = client.get(reverse("integration-inbound"), params)
    assert response.status_code == 200
    return [e.pk for e, _ in response.context["rows"]]


def test_inbound_filters_combine(client: Client, planner: User) -> None:
    a = event(InboundEvent.State.FAILED, partner="wms", type="pick.completed", ref="SO-A")
    b = event(InboundEvent.State.APPLIED, partner="wms", type="shipment.confirmed", ref="SO-A")
    c = event(InboundEvent.State.FAILED, partner="carrier", type="tracking.updated", ref="")
    assert set(inbound_ids(client)) == {a.pk, b.pk, c.pk}
    assert set(inbound_ids(client, state="failed")) == {a.pk, c.pk}
    assert inbound_ids(client, state="failed", partner="carrier") == [c.pk]
    assert inbound_ids(client, type="shipment.confirmed") == [b.pk]
    assert set(inbound_ids(client, order="SO-A")) == {a.pk, b.pk}
    assert client.get(reverse("integration-inbound"), {"partner": "nobody"}).status_code == 422


def walk(client: Client, url: str, **params: str) -> list[int]:
    """Follow the next-page links to the end; every page through htmx, as the screen does."""
    seen: list[int] = []
    query = "&".join(f"{k}={v}" for k, v in params.items())
    for _ in range(100):
        response = client.get(f"{url}?{query}", headers={"HX-Request": "true"})
        assert response.status_code == 200 and "<html" not in response.content.decode()
        seen += [row.pk for row, _ in response.context["rows"]]
        query = response.context["next_query"]
        if not query:
            return seen
    raise AssertionError("the pages never ended")


def test_outbox_pages_walk_every_message_once_newest_first(
    client: Client, planner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(integration, "PAGE_SIZE", 7)
    same = NOW - timedelta(minutes=10)
    made = [message(State.DEAD, created_at=same if i % 3 == 0 else None) for i in range(30)]
    message(State.DELIVERED)  # filtered out

    seen = walk(client, reverse("integration-outbox"), state="dead")

    expected = sorted(made, key=lambda m: (m.created_at, m.pk), reverse=True)
    assert seen == [m.pk for m in expected]


def test_inbound_pages_walk_every_event_once_newest_first(
    client: Client, planner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(integration, "PAGE_SIZE", 4)
    same = NOW - timedelta(minutes=3)
    made = [event(received_at=same if i % 2 else None) for i in range(17)]

    seen = walk(client, reverse("integration-inbound"))

    assert seen == [e.pk for e in sorted(made, key=lambda e: (e.received_at, e.pk), reverse=True)]


def list_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_lists_run_fixed_queries_for_3_or_30_rows(client: Client, planner: User) -> None:
    orders = [factories.order() for _ in range(3)]
    for i in range(3):
        message(State.DEAD, order=orders[i])
        event(ref=orders[i].external_id, partner=["wms", "carrier"][i % 2])
    outbox, inbound = (
        list_queries(client, reverse("integration-outbox")),
        list_queries(client, reverse("integration-inbound")),
    )
    for i in range(27):
        message([State.DEAD, State.PENDING, State.DELIVERED][i % 3], order=orders[i % 3])
        event(ref=orders[i % 3].external_id, partner=["wms", "carrier"][i % 2])

    assert list_queries(client, reverse("integration-outbox")) == outbox
    assert list_queries(client, reverse("integration-inbound")) == inbound
    page = client.get(reverse("integration-outbox"))
    assert len(page.context["rows"]) == 30


def test_list_rows_link_to_their_orders(client: Client, planner: User) -> None:
    order = factories.order()
    message(State.DEAD, order=order)
    message(State.DEAD, ref="SO-UNKNOWN")
    body = client.get(reverse("integration-outbox")).content.decode()
    assert (
        f'<a class="mono" href="{reverse("order-detail", args=[order.pk])}">{order.external_id}</a>' in body
    )
    assert '<span class="mono" title="No such order in the portal">SO-UNKNOWN</span>' in body
