"""The work-queue screens: queues, a queue's page, my work and the work-item page."""

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import import_module
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.db import connection
from django.http import HttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from exceptions import services as exception_services
from exceptions.models import OrderException
from fulfillment.core import clock, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.models import Notification, WorkItem, WorkItemEvent
from fulfillment.core.priority import rank_factors
from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, FINANCE, PLANNER
from orders.models import Order, Tier
from portal import work
from portal.models import SavedView
from tests import factories
from tests.approvals import support as approval_support

pytestmark = pytest.mark.django_db

# Monday 2 March 2026, 09:00 UTC = 10:00 in Berlin, inside every team's working day.
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SYSTEM = Actor.named("test")
EXCEPTION, APPROVAL = WorkItem.Kind.EXCEPTION, WorkItem.Kind.APPROVAL
SHORTFALL_CODES = [
    "split_shipment",
    "alternate_warehouse",
    "backorder_accepted",
    "stock_arrived",
    "cancelled",
]
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    with clock.frozen(T0):
        yield


@pytest.fixture(autouse=True)
def default_data() -> None:
    """Teams, queues, exception types and policies as the data migrations create them (a
    transactional test elsewhere may have flushed them; the functions are idempotent)."""
    for module in (
        "fulfillment.core.migrations.0002_default_teams_and_queues",
        "exceptions.migrations.0002_default_types_and_deadlines",
        "approvals.migrations.0002_default_policies",
    ):
        import_module(module).create(apps, None)


@pytest.fixture
def alice(client: Client) -> User:
    """A planner, logged in."""
    user = factories.user("alice", PLANNER)
    client.force_login(user)
    return user


@pytest.fixture
def bob() -> User:
    return factories.user("bob", PLANNER)


def as_user(client: Client, *roles: str, name: str | None = None) -> User:
    user = factories.user(name, *roles)
    client.force_login(user)
    return user


def item(
    queue: str = "planning",
    *,
    title: str = "",
    revenue: str = "100.00",
    promised_in: timedelta | None = timedelta(days=2),
    tier: str = Tier.STANDARD,
    type: str = "inventory_shortfall",
    kind: str = EXCEPTION,
    ref: str = "",
    customer: str = "",
    warehouse: str = "",
    severity: int = 2,
    sla_minutes: int | None = 240,
) -> WorkItem:
    """A work item opened through the work queue (no exception or approval behind it)."""
    return workqueue.work_item_open(
        queue=workqueue.queue_get(slug=queue),
        kind=kind,
        type=type,
        title=title or f"{type} worth {revenue}",
        subject=workqueue.Subject(
            ref=ref,
            customer_code=customer,
            customer_tier=tier,
            warehouse_code=warehouse,
            revenue_at_risk=Decimal(revenue),
            promised_at=T0 + promised_in if promised_in is not None else None,
        ),
        actor=SYSTEM,
        severity=severity,
        sla_minutes=sla_minutes,
    )


def shortfall(units: int = 2, price: str = "50.00", tier: str = Tier.STANDARD) -> OrderException:
    """A real inventory-shortfall exception about a new order."""
    cust = factories.customer(tier=tier)
    wh = factories.warehouse()
    prod = factories.product(price=price)
    order = factories.order(cust, [(prod, units)], wh=wh)
    return exception_services.exception_raise(
        type_code="inventory_shortfall", order=order, details={"shortfall": {prod.sku: units}}, actor=SYSTEM
    )


def titles(response: HttpResponse) -> list[str]:
    return [row.item.title for row in response.context["rows"]]


def post(client: Client, url: str, data: dict[str, Any] | None = None, **extra: str) -> HttpResponse:
    """POST, and keep the messages this request flashed on the response (``flashed``), so
    that they do not pile up for the next request."""
    response = client.post(url, data or {}, **extra)
    response.flashed = [str(m) for m in get_messages(response.wsgi_request)]
    client.cookies.pop("messages", None)
    return response


def flashed(response: HttpResponse) -> list[str]:
    return response.flashed


def stored(pk: int) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The item's row and history: compare before and after a refused action."""
    row = WorkItem.objects.filter(pk=pk).values().get()
    return row, list(WorkItemEvent.objects.filter(item_id=pk).values_list("action", "note"))


def queue_url(slug: str = "planning", **params: str) -> str:
    url = reverse("queue", args=[slug])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


def action_url(pk: int, action: str) -> str:
    return reverse("work-item-action", args=[pk, action])


# --- who may open what ------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client: Client) -> None:
    target = item()
    gets = [
        "/queues/",
        "/queues/planning/",
        "/queues/planning/export.csv",
        "/my-work/",
        f"/work-items/{target.pk}/",
    ]
    posts = [
        "/queues/planning/claim-next/",
        "/queues/planning/bulk/",
        "/queues/planning/views/",
        "/my-work/notifications/read/",
        f"/work-items/{target.pk}/claim/",
    ]
    for url in gets:
        response = client.get(url)
        assert (response.status_code, response["Location"]) == (302, f"{reverse('login')}?next={url}")
    for url in posts:
        response = post(client, url)
        assert (response.status_code, response["Location"]) == (302, f"{reverse('login')}?next={url}")
    assert stored(target.pk)[0]["assignee_id"] is None


def test_other_team_gets_403_on_pages_and_actions_and_nothing_changes(client: Client, bob: User) -> None:
    target = item(title="Planning's item")
    held = item(title="Held by bob")
    workqueue.work_item_claim(item=held, user=bob)
    as_user(client, CUSTOMER_SERVICE)
    before = [stored(target.pk), stored(held.pk)]

    for url in ["/queues/planning/", "/queues/planning/export.csv", f"/work-items/{target.pk}/"]:
        assert client.get(url).status_code == 403, url
    posts = {
        "/queues/planning/claim-next/": {},
        "/queues/planning/bulk/": {"items": [target.pk], "action": "release"},
        "/queues/planning/views/": {"name": "mine", "query": ""},
        action_url(target.pk, "claim"): {},
        action_url(target.pk, "comment"): {"text": "hello"},
        action_url(target.pk, "resolve"): {"reason_code": "stock_arrived"},
        action_url(held.pk, "release"): {},
        action_url(held.pk, "snooze"): {"until": "2026-03-03T10:00"},
    }
    for url, data in posts.items():
        assert post(client, url, data).status_code == 403, url
        assert post(client, url, data, **HTMX).status_code == 403, url

    assert [stored(target.pk), stored(held.pk)] == before
    assert SavedView.objects.count() == 0
    assert b"Planning" not in client.get("/queues/").content


def test_customer_service_may_open_the_order_but_not_another_teams_item(client: Client) -> None:
    exception = shortfall()
    as_user(client, CUSTOMER_SERVICE)
    assert client.get(reverse("order-detail", args=[exception.order_id])).status_code == 200
    response = client.get(reverse("work-item", args=[exception.work_item_id]))
    assert response.status_code == 403
    assert "you are not in it" in response.content.decode()


def test_a_user_without_a_role_gets_403(client: Client) -> None:
    as_user(client)
    for url in ["/queues/", "/my-work/"]:
        assert client.get(url).status_code == 403


def test_admin_may_open_and_work_every_queue(client: Client) -> None:
    target = item("finance-approvals", kind=APPROVAL, type="credit_hold")
    admin = as_user(client, ADMIN, name="root")

    listing = client.get("/queues/")
    assert [f.queue.slug for f in listing.context["figures"]] == [
        "customer-service", "finance-approvals", "integration", "invoicing", "planning",
    ]  # fmt: skip
    assert client.get("/queues/planning/").status_code == 200
    assert client.get(f"/work-items/{target.pk}/").status_code == 200
    response = post(client, action_url(target.pk, "claim"))
    assert response.status_code == 302
    assert WorkItem.objects.get(pk=target.pk).assignee_id == admin.pk


def test_unknown_queue_item_and_action_are_404(client: Client, alice: User) -> None:
    target = item()
    assert client.get("/queues/nope/").status_code == 404
    assert client.get("/queues/nope/export.csv").status_code == 404
    assert post(client, "/queues/nope/claim-next/").status_code == 404
    assert client.get("/work-items/999999/").status_code == 404
    assert post(client, action_url(999999, "claim")).status_code == 404
    assert post(client, action_url(target.pk, "explode")).status_code == 404
    assert stored(target.pk)[0]["assignee_id"] is None


def test_actions_are_posts_with_csrf(alice: User) -> None:
    target = item()
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(alice)
    assert csrf_client.get(action_url(target.pk, "claim")).status_code == 405
    assert csrf_client.get("/queues/planning/claim-next/").status_code == 405
    assert csrf_client.post(action_url(target.pk, "claim")).status_code == 403  # no token
    assert csrf_client.post("/queues/planning/claim-next/").status_code == 403
    assert stored(target.pk)[0]["assignee_id"] is None


def test_nav_shows_queues_and_my_work_to_every_role(client: Client) -> None:
    for role in (CUSTOMER_SERVICE, PLANNER, FINANCE, ADMIN):
        as_user(client, role)
        nav = client.get("/").context["nav"]
        names = [name for name, _, _ in nav]
        assert {"queues", "my-work"} <= set(names), role
    as_user(client, PLANNER)
    nav = client.get("/queues/planning/").context["nav"]
    assert [name for name, _, active in nav if active] == ["queues"]


# --- queues list ------------------------------------------------------------------------


def test_queues_list_counts_open_unclaimed_breached_and_mine(client: Client, alice: User, bob: User) -> None:
    item(title="overdue", sla_minutes=60)
    mine = item(title="mine", sla_minutes=6000)
    workqueue.work_item_claim(item=mine, user=alice)
    held = item(title="bob's", sla_minutes=60)
    workqueue.work_item_claim(item=held, user=bob)
    snoozed = item(title="snoozed", sla_minutes=6000)
    workqueue.work_item_snooze(item=snoozed, until=T0 + timedelta(days=1), user=bob)
    done = item(title="done", sla_minutes=60)
    workqueue.work_item_resolve(item=done, reason_code="stock_arrived", note="", actor=SYSTEM)
    item("integration", type="integration_sync_failed")
    item("customer-service", type="invalid_address")  # not alice's team
    clock.advance(timedelta(hours=2))

    response = client.get("/queues/")

    figures = {f.queue.slug: (f.open, f.unclaimed, f.breached, f.mine) for f in response.context["figures"]}
    assert figures == {"integration": (1, 1, 0, 0), "planning": (4, 1, 2, 1)}
    body = response.content.decode()
    assert 'hx-trigger="every 15s"' in body
    assert "<html" in body


def test_queues_list_htmx_poll_gets_the_fragment_only(client: Client, alice: User) -> None:
    item()
    response = client.get("/queues/", **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.startswith('<div id="queue-figures"')
    assert "<html" not in body
    assert 'hx-trigger="every 15s"' in body
    assert "HX-Request" in response["Vary"]


# --- claim next ---------------------------------------------------------------------------


def test_claim_next_hands_the_top_item_and_redirects_to_it(client: Client, alice: User) -> None:
    low = item(title="low", revenue="10.00")
    top = item(title="top", revenue="90000.00")

    first = post(client, "/queues/planning/claim-next/")
    assert (first.status_code, first["Location"]) == (302, reverse("work-item", args=[top.pk]))
    assert flashed(first) == ["You claimed “top”."]
    second = post(client, "/queues/planning/claim-next/")
    assert second["Location"] == reverse("work-item", args=[low.pk])
    assert list(WorkItem.objects.order_by("id").values_list("assignee_id", flat=True)) == [alice.pk, alice.pk]


def test_claim_next_with_nothing_left_says_so(client: Client, alice: User, bob: User) -> None:
    workqueue.work_item_claim(item=item(), user=bob)

    response = post(client, "/queues/planning/claim-next/")

    assert (response.status_code, response["Location"]) == (302, queue_url())
    assert flashed(response) == ["Nothing left to claim in Planning: every open item is claimed or snoozed."]
    assert WorkItem.objects.get().assignee_id == bob.pk
    htmx = post(client, "/queues/planning/claim-next/", **HTMX)
    assert htmx["HX-Redirect"] == queue_url()


# --- the queue page -------------------------------------------------------------------------


def test_queue_page_lists_open_items_in_rank_order_with_why(client: Client, alice: User) -> None:
    exception = shortfall(units=4, price="250.00", tier=Tier.STRATEGIC)  # 1,000 at risk, strategic
    order = exception.order
    item(title="small, soon", revenue="50.00", promised_in=timedelta(hours=3))
    item(title="big, later", revenue="80000.00", promised_in=timedelta(days=3))
    escalated = item(title="escalated later still", revenue="500.00", promised_in=timedelta(days=4))
    escalated.escalation_level = 2
    workqueue.rank(escalated)
    escalated.save(update_fields=["escalation_level", "priority_key"])
    item(title="resolved", revenue="999999.00")
    workqueue.work_item_resolve(
        item=WorkItem.objects.get(title="resolved"), reason_code="x", note="", actor=SYSTEM
    )
    item("integration", title="other queue", revenue="999999.00")

    response = client.get("/queues/planning/")

    expected = list(
        WorkItem.objects.filter(queue__slug="planning", state="open")
        .order_by("-priority_key", "created_at", "id")
        .values_list("title", flat=True)
    )
    assert titles(response) == expected
    assert set(expected) == {
        exception.work_item.title, "small, soon", "big, later", "escalated later still",
    }  # fmt: skip
    assert expected[0] == "big, later"
    rows = {row.item.title: row for row in response.context["rows"]}
    shortfall_row = rows[exception.work_item.title]
    assert shortfall_row.order_id == order.pk
    assert shortfall_row.customer_name == order.customer.name
    assert [p.text for p in shortfall_row.why.pills] == ["1,000 at risk", "Strategic", "due in 5 d", "sev 2"]
    assert [p.text for p in rows["escalated later still"].why.pills][-1] == "esc 2"
    assert rows["small, soon"].why.due == "due in 3 h"
    body = response.content.decode()
    assert f'href="{reverse("order-detail", args=[order.pk])}"' in body
    assert f'href="{reverse("work-item", args=[exception.work_item.pk])}"' in body
    opened = timezone.localtime(exception.work_item.created_at).strftime("%Y-%m-%d %H:%M")
    assert f'title="Opened {opened}"' in body
    assert "Revenue at risk 1,000.00: +72.0 h; Customer tier strategic: +24.0 h" in body


def test_sla_column_is_red_when_breached_and_amber_when_warned(client: Client, alice: User) -> None:
    item(title="breached", sla_minutes=30)
    warned = item(title="warned", sla_minutes=6000)
    WorkItem.objects.filter(pk=warned.pk).update(sla_warned_share=50)
    item(title="calm", sla_minutes=6000)
    clock.advance(timedelta(hours=1))

    response = client.get("/queues/planning/")

    rows = {row.item.title: row for row in response.context["rows"]}
    assert {t: (r.sla, r.sla_due) for t, r in rows.items()} == {
        "breached": ("breached", "30 min ago"),
        "warned": ("warned", rows["warned"].sla_due),
        "calm": ("", rows["calm"].sla_due),
    }
    body = response.content.decode()
    assert body.count('class="nowrap sla sla-breached"') == 1
    assert body.count('class="nowrap sla sla-warned"') == 1
    due = timezone.localtime(WorkItem.objects.get(pk=warned.pk).sla_due_at).strftime("%Y-%m-%d %H:%M")
    assert f'title="Due {due} · 50 % warning sent"' in body


@pytest.fixture
def varied(alice: User, bob: User) -> dict[str, WorkItem]:
    acme = factories.customer(code="ACME01", name="Acme Tools")
    other = factories.customer(code="ZED002", name="Zed Parts")
    items = {
        "acme-key-w1": item(customer=acme.code, tier=Tier.KEY, warehouse="W1", sla_minutes=30),
        "zed-std-w2": item(customer=other.code, warehouse="W2", type="pick_short", sla_minutes=6000),
        "acme-std-w2": item(customer=acme.code, warehouse="W2", type="stalled_order", sla_minutes=6000),
        "approval": item(kind=APPROVAL, type="credit_hold", customer=other.code, tier=Tier.KEY),
    }
    workqueue.work_item_claim(item=items["zed-std-w2"], user=alice)
    workqueue.work_item_claim(item=items["acme-std-w2"], user=bob)
    clock.advance(timedelta(hours=1))
    return items


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type": "pick_short"}, {"zed-std-w2"}),
        ({"kind": "approval"}, {"approval"}),
        ({"kind": "exception"}, {"acme-key-w1", "zed-std-w2", "acme-std-w2"}),
        ({"warehouse": "W2"}, {"zed-std-w2", "acme-std-w2"}),
        ({"customer": "acme"}, {"acme-key-w1", "acme-std-w2"}),
        ({"customer": "ZED0"}, {"zed-std-w2", "approval"}),
        ({"tier": "key"}, {"acme-key-w1", "approval"}),
        ({"breached": "on"}, {"acme-key-w1"}),
        ({"assignee": "me"}, {"zed-std-w2"}),
        ({"assignee": "unassigned"}, {"acme-key-w1", "approval"}),
        ({"assignee": "unassigned", "customer": "acme", "tier": "key"}, {"acme-key-w1"}),
        ({}, {"acme-key-w1", "zed-std-w2", "acme-std-w2", "approval"}),
    ],
)
def test_each_filter(
    client: Client, varied: dict[str, WorkItem], params: dict[str, str], expected: set[str]
) -> None:
    factories.warehouse(code="W1")
    factories.warehouse(code="W2")
    names = {wi.pk: name for name, wi in varied.items()}

    response = client.get("/queues/planning/", params)

    assert response.status_code == 200
    assert {names[row.item.pk] for row in response.context["rows"]} == expected


def test_invalid_filters_say_why(client: Client, alice: User) -> None:
    item()
    response = client.get("/queues/planning/", {"tier": "gold", "after": "garbage"})
    assert response.status_code == 422
    assert response.context["rows"] == []
    assert response.context["errors"] == [
        "Tier: Select a valid choice. gold is not one of the available choices.",
        "Page link: This page link is not valid (it may have been cut or edited). Start again from the "
        "first page.",
    ]


def test_filters_via_htmx_return_the_results_fragment(client: Client, alice: User) -> None:
    item(title="one")
    response = client.get("/queues/planning/", {"assignee": "unassigned"}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and 'id="results"' not in body
    assert "one" in body
    assert 'name="query" value="assignee=unassigned"' in body
    assert "HX-Request" in response["Vary"]


# --- keyset pagination ------------------------------------------------------------------------


def test_keyset_pagination_walks_every_item_once_in_rank_order(
    client: Client, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(work, "PAGE_SIZE", 3)
    for revenue in ["500.00", "500.00", "500.00", "20.00", "9000.00", "500.00", "1.00", "70.00"]:
        item(revenue=revenue)  # the four at 500 tie on the key and on the creation time
    expected = list(
        WorkItem.objects.order_by("-priority_key", "created_at", "id").values_list("pk", flat=True)
    )

    seen, url, pages = [], queue_url(), 0
    while url:
        response = client.get(url)
        pages += 1
        seen += [row.item.pk for row in response.context["rows"]]
        url = f"{queue_url()}?{response.context['next_query']}" if response.context["next_query"] else ""
        # an item that arrives while paging lands where it ranks and does not shift later pages
        if pages == 1:
            item(revenue="1.00", promised_in=timedelta(days=30))
            expected.append(WorkItem.objects.latest("id").pk)

    assert pages == 3
    assert seen == expected
    assert len(set(seen)) == 9


def test_paging_keeps_the_filters(client: Client, alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(work, "PAGE_SIZE", 2)
    for n in range(5):
        item(warehouse="W1" if n % 2 == 0 else "W2", revenue=str(100 + n))
    factories.warehouse(code="W1")
    response = client.get("/queues/planning/", {"warehouse": "W1"})
    assert response.context["next_query"].startswith("warehouse=W1&after=")
    following = client.get(f"{queue_url()}?{response.context['next_query']}")
    assert len(following.context["rows"]) == 1
    assert {row.item.warehouse_code for row in following.context["rows"]} == {"W1"}
    assert following.context["next_query"] == ""


# --- saved views -------------------------------------------------------------------------------


def test_saved_views_private_shared_and_applied(client: Client, alice: User, bob: User) -> None:
    item(title="key", tier=Tier.KEY)
    item(title="standard")

    private = post(client, "/queues/planning/views/", {"name": "Key accounts", "query": "tier=key&bogus=1"})
    assert private["Location"] == queue_url(tier="key")
    post(
        client,
        "/queues/planning/views/",
        {"name": "Unassigned", "query": "assignee=unassigned", "shared": "on"},
    )
    views = {v.name: (v.owner_id, v.query, v.shared) for v in SavedView.objects.all()}
    assert views == {
        "Key accounts": (alice.pk, "tier=key", False),
        "Unassigned": (alice.pk, "assignee=unassigned", True),
    }

    client.force_login(bob)
    page = client.get("/queues/planning/")
    assert [v.name for v in page.context["views"]] == ["Unassigned"]
    applied = client.get(f"{queue_url()}?{SavedView.objects.get(name='Unassigned').query}")
    assert titles(applied) == ["key", "standard"]
    assert applied.context["query"] == "assignee=unassigned"

    client.force_login(alice)
    mine = client.get("/queues/planning/")
    assert [v.name for v in mine.context["views"]] == ["Key accounts", "Unassigned"]
    assert titles(client.get(f"{queue_url()}?{SavedView.objects.get(name='Key accounts').query}")) == ["key"]
    # another team never sees the views of this queue
    other = factories.user("carol", CUSTOMER_SERVICE)
    client.force_login(other)
    assert client.get("/queues/planning/").status_code == 403


def test_saving_a_view_again_replaces_it_and_only_the_owner_deletes(
    client: Client, alice: User, bob: User
) -> None:
    post(client, "/queues/planning/views/", {"name": "Mine", "query": "assignee=me"})
    post(client, "/queues/planning/views/", {"name": "Mine", "query": "assignee=me&tier=key", "shared": "on"})
    view = SavedView.objects.get()
    assert (view.query, view.shared) == ("tier=key&assignee=me", True)

    client.force_login(bob)
    refused = post(client, reverse("queue-view-delete", args=["planning", view.pk]), {"query": ""})
    assert flashed(refused) == ["Only the person who saved a view may delete it."]
    assert SavedView.objects.count() == 1

    client.force_login(alice)
    deleted = post(client, reverse("queue-view-delete", args=["planning", view.pk]), {"query": ""}, **HTMX)
    assert deleted.status_code == 200
    assert "Deleted the view." in deleted.content.decode()
    assert SavedView.objects.count() == 0


def test_a_view_needs_a_name(client: Client, alice: User) -> None:
    response = post(client, "/queues/planning/views/", {"name": "", "query": "tier=key"}, **HTMX)
    assert response.status_code == 422
    assert response["X-Portal-Fragment"] == "error"
    assert "The view was not saved. Name: This field is required." in response.content.decode()
    assert SavedView.objects.count() == 0


# --- bulk actions -----------------------------------------------------------------------------


def test_bulk_assign_reports_done_and_refused(client: Client, alice: User, bob: User) -> None:
    free = [item(title="free 1"), item(title="free 2")]
    held = item(title="held by a colleague")
    workqueue.work_item_claim(item=held, user=factories.user("carl", PLANNER))
    elsewhere = item("integration", title="other queue")
    before = stored(held.pk), stored(elsewhere.pk)

    response = post(
        client,
        "/queues/planning/bulk/",
        {
            "items": [free[0].pk, held.pk, free[1].pk, elsewhere.pk],
            "action": "assign",
            "to": bob.pk,
            "query": "",
        },
    )

    assert response["Location"] == queue_url()
    assert flashed(response) == [
        "Assigned 2 items.",
        f"#{elsewhere.pk}: Work item {elsewhere.pk} is not in Planning.",
        f"#{held.pk} held by a colleague: Only the assignee may reassign work item {held.pk}; "
        "it is claimed by carl.",
    ]
    assert [WorkItem.objects.get(pk=wi.pk).assignee_id for wi in free] == [bob.pk, bob.pk]
    assert (stored(held.pk), stored(elsewhere.pk)) == before


def test_bulk_resolve_mixed_batch_over_htmx(client: Client, alice: User, bob: User) -> None:
    ok = shortfall()
    held = shortfall()
    workqueue.work_item_claim(item=held.work_item, user=bob)
    approval = item(kind=APPROVAL, type="credit_hold", title="an approval")
    bare = item(title="no exception behind it")
    refused_before = [stored(held.work_item_id), stored(approval.pk)]

    response = post(
        client,
        "/queues/planning/bulk/",
        {
            "items": [ok.work_item_id, held.work_item_id, approval.pk],
            "action": "resolve",
            "reason_code": "stock_arrived",
            "note": "arrived",
            "query": "kind=exception",
        },
        **HTMX,
    )

    assert response.status_code == 200
    report = response.context["report"]
    assert (report.verb, report.done) == ("Resolved", 1)
    assert report.failed == [
        (
            held.work_item_id,
            held.work_item.title,
            f"Only the assignee may resolve work item {held.work_item_id}; it is claimed by bob.",
        ),
        (
            approval.pk,
            "an approval",
            f"Work item {approval.pk} is an approval: decide it on its approval page.",
        ),
    ]
    body = response.content.decode()
    assert "Resolved 1 item" in body and "2 refused" in body
    assert response.context["query"] == "kind=exception"
    assert bare.title in body and approval.title not in titles(response)
    ok.refresh_from_db()
    assert (ok.is_open, ok.work_item.state, ok.work_item.resolution_code) == (
        False,
        "resolved",
        "stock_arrived",
    )
    assert [stored(held.work_item_id), stored(approval.pk)] == refused_before


def test_bulk_resolve_with_a_bad_reason_refuses_each_and_changes_nothing(client: Client, alice: User) -> None:
    exceptions = [shortfall(), shortfall()]
    before = [stored(e.work_item_id) for e in exceptions]
    response = post(
        client,
        "/queues/planning/bulk/",
        {"items": [e.work_item_id for e in exceptions], "action": "resolve", "reason_code": "because"},
    )
    assert flashed(response) == [
        f"#{e.work_item_id} {e.work_item.title}: Choose a reason code: {', '.join(SHORTFALL_CODES)}."
        for e in exceptions
    ]
    assert [stored(e.work_item_id) for e in exceptions] == before


def test_bulk_release_and_bad_input(client: Client, alice: User) -> None:
    mine = item(title="mine")
    workqueue.work_item_claim(item=mine, user=alice)
    released = post(client, "/queues/planning/bulk/", {"items": [mine.pk], "action": "release"})
    assert flashed(released) == ["Released 1 item."]
    assert WorkItem.objects.get(pk=mine.pk).assignee_id is None

    nothing = post(client, "/queues/planning/bulk/", {"action": "assign", "query": "tier=key"}, **HTMX)
    assert nothing.status_code == 422
    assert nothing.context["report"].error == (
        "Items: Tick at least one item.; Assign to: Choose whom to assign the items to."
    )
    assert "Nothing was changed." in nothing.content.decode()


# --- CSV export -------------------------------------------------------------------------------


def export(client: Client, **params: str) -> list[list[str]]:
    response = client.get(reverse("queue-export", args=["planning"]), params)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="planning-20260302-0900.csv"'
    assert response.streaming
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_csv_export_in_rank_order_with_the_factors_and_filters(
    client: Client, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(work, "EXPORT_BATCH", 2)  # several keyset batches
    exception = shortfall(units=3, price="100.00")
    for revenue in ["10.00", "5000.00", "250.00", "75.00"]:
        item(revenue=revenue, warehouse="W9" if revenue == "5000.00" else "")
    item(title="=HYPERLINK(1)", revenue="1.00")
    item("integration", revenue="99999.00")
    factories.warehouse(code="W9")

    rows = export(client)

    assert rows[0] == work.EXPORT_HEADER
    ranked = list(
        WorkItem.objects.filter(queue__slug="planning").order_by("-priority_key", "created_at", "id")
    )
    assert [int(r[1]) for r in rows[1:]] == [wi.pk for wi in ranked]
    assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"]
    first = dict(zip(rows[0], rows[1], strict=True))
    top = ranked[0]
    factors = rank_factors(
        revenue_at_risk=top.revenue_at_risk, customer_tier=top.customer_tier,
        severity=top.severity, escalation_level=top.escalation_level,
    )  # fmt: skip
    assert first["revenue_at_risk"] == "5000.00"
    assert [
        first["revenue_hours"],
        first["tier_hours"],
        first["severity_hours"],
        first["escalation_hours"],
    ] == [f"{f.hours:.2f}" for f in factors]
    assert first["due"] == "due in 2 d"
    assert first["priority_key"] == str(top.priority_key)
    by_id = {int(r[1]): dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    shortfall_row = by_id[exception.work_item_id]
    assert (shortfall_row["order"], shortfall_row["type_name"]) == (
        exception.order.external_id,
        "Inventory shortfall",
    )
    assert by_id[WorkItem.objects.get(title="=HYPERLINK(1)").pk]["title"] == "'=HYPERLINK(1)"

    filtered = export(client, warehouse="W9")
    assert [r[1] for r in filtered[1:]] == [str(top.pk)]
    assert export(client, tier="key")[1:] == []


def test_csv_export_with_bad_filters_is_refused(client: Client, alice: User) -> None:
    response = client.get(reverse("queue-export", args=["planning"]), {"assignee": "everyone"})
    assert response.status_code == 422
    assert response.content.decode() == (
        "These filters cannot be used: Assignee: Select a valid choice. everyone is not one of the "
        "available choices."
    )


# --- fixed query counts -----------------------------------------------------------------------


def queries(client: Client, url: str) -> tuple[int, int]:
    """How many queries the page ran, and how many rows it showed."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    shown = response.context.get("rows") or response.context.get("figures")
    rows = sum(f.open for f in shown) if url == "/queues/" else len(shown)
    return len(captured), rows


def fill(n: int, alice: User, bob: User) -> None:
    """``n`` items: two in three in planning, half about an order, a quarter claimed, and
    ``n`` notifications for alice."""
    order = factories.order()
    for k in range(n):
        wi = item(
            "planning" if k % 3 else "integration",
            revenue=str(10 + k),
            ref=order.external_id if k % 2 == 0 else "",
            type="pick_short" if k % 2 else "stalled_order",
        )
        if k % 4 == 0:
            workqueue.work_item_claim(item=wi, user=alice if k % 8 == 0 else bob)
    for k in range(n):
        Notification.objects.create(user=alice, text=f"note {k}", item=WorkItem.objects.first())


@pytest.mark.parametrize(
    ("url", "rows_few", "rows_many"),
    [("/queues/", 3, 33), ("/queues/planning/", 2, 22), ("/my-work/", 1, 5)],
)
def test_list_pages_run_a_fixed_number_of_queries(
    client: Client, alice: User, bob: User, url: str, rows_few: int, rows_many: int
) -> None:
    fill(3, alice, bob)
    few, shown_few = queries(client, url)
    fill(30, alice, bob)
    many, shown_many = queries(client, url)
    assert (shown_few, shown_many) == (rows_few, rows_many)
    assert few == many


# --- my work ----------------------------------------------------------------------------------


def test_my_work_lists_my_open_items_across_queues_by_rank_and_unread_notes(
    client: Client, alice: User, bob: User
) -> None:
    low = item(title="low planning", revenue="10.00")
    high = item("integration", title="high integration", revenue="9000.00", type="integration_sync_failed")
    mid = item(title="mid planning", revenue="500.00")
    theirs = item(title="bob's")
    done = item(title="done")
    for wi in (low, high, mid, done):
        workqueue.work_item_claim(item=wi, user=alice)
    workqueue.work_item_claim(item=theirs, user=bob)
    workqueue.work_item_resolve(item=done, reason_code="x", note="", actor=Actor.of(alice))
    Notification.objects.create(user=alice, text="old, read", read_at=T0)
    first = Notification.objects.create(user=alice, text="SLA warning on low", item=low)
    Notification.objects.create(user=alice, text="Escalated: mid", item=mid)
    Notification.objects.create(user=bob, text="for bob")

    response = client.get("/my-work/")

    assert titles(response) == ["high integration", "mid planning", "low planning"]
    inbox = response.context["inbox"]
    assert inbox.unread == 2
    assert [n.text for n in inbox.notifications] == ["Escalated: mid", "SLA warning on low"]
    body = response.content.decode()
    assert f'href="{reverse("work-item", args=[low.pk])}"' in body

    bobs = Notification.objects.get(user=bob)
    assert post(client, reverse("notifications-read"), {"id": "first"}).status_code == 404
    post(client, reverse("notifications-read"), {"id": bobs.pk})  # not alice's: untouched
    assert Notification.objects.filter(read_at__isnull=True).count() == 3
    one = post(client, reverse("notifications-read"), {"id": first.pk}, **HTMX)
    assert one.status_code == 200
    assert one.content.decode().lstrip().startswith('<div id="notifications">')
    assert [n.text for n in one.context["inbox"].notifications] == ["Escalated: mid"]
    everything = post(client, reverse("notifications-read"))
    assert flashed(everything) == ["Marked 1 notification read."]
    assert Notification.objects.filter(read_at__isnull=True).values_list("text", flat=True).get() == "for bob"


# --- the work-item page -------------------------------------------------------------------------


def test_detail_shows_explanation_order_history_and_comments(client: Client, alice: User) -> None:
    exception = shortfall(units=3, price="40.00", tier=Tier.KEY)
    wi = exception.work_item
    workqueue.work_item_claim(item=wi, user=alice)
    workqueue.work_item_comment(item=wi, text="Called the supplier.", user=alice)

    response = client.get(reverse("work-item", args=[wi.pk]))

    assert response.status_code == 200
    why = response.context["why"]
    assert [(f.label, f.value, round(f.hours, 2)) for f in why.factors] == [
        ("Revenue at risk", "120.00", 49.9),
        ("Customer tier", "key", 12.0),
        ("Severity", "2", 16.0),
        ("Escalation level", "0", 0.0),
    ]
    assert [(title, note) for _, title, note in response.context["history"]] == [
        ("Opened", ""),
        ("Claimed", ""),
        ("Comment", "Called the supplier."),
    ]
    assert response.context["shortfall"] == [(exception.order.lines.get().product.sku, 3)]
    assert response.context["reason_codes"] == SHORTFALL_CODES
    can = response.context["can"]
    assert (can.claim, can.release, can.reassign, can.snooze, can.resolve, can.decide) == (
        False, True, True, True, True, False,
    )  # fmt: skip
    body = response.content.decode()
    for text in [
        "Why it ranks here",
        "49.9 h",
        "Called the supplier.",
        "History and comments",
        exception.order.external_id,
    ]:
        assert text in body
    assert f'href="{reverse("order-detail", args=[exception.order_id])}"' in body
    assert '<span class="badge s-received">Received</span>' in body


def test_detail_shows_escalations_by_rule_and_warnings(client: Client, alice: User) -> None:
    wi = item()
    WorkItemEvent.objects.create(
        item=wi, action="escalated", actor_system="scheduler", note="Rule 'Big' fired.",
        data={"rule": "Big", "from_level": 0, "to_level": 1, "from_queue": "planning",
              "to_queue": "planning"},
    )  # fmt: skip
    WorkItemEvent.objects.create(item=wi, action="sla_warning", actor_system="scheduler", data={"share": 75})
    history = client.get(reverse("work-item", args=[wi.pk])).context["history"]
    assert [(title, note) for _, title, note in history][1:] == [
        ("Escalated by rule “Big”", "level 0 → 1. Rule 'Big' fired."),
        ("SLA warning: 75 % used", ""),
    ]


def test_approval_items_link_to_the_approval_page_instead_of_resolve(client: Client) -> None:
    order = approval_support.credit_hold_order()
    request = approval_support.request_for(order)
    as_user(client, FINANCE)

    response = client.get(reverse("work-item", args=[request.work_item_id]))

    can = response.context["can"]
    assert (can.resolve, can.decide) == (False, True)
    body = response.content.decode()
    assert f'href="{reverse("approval", args=[request.pk])}"' in body
    assert 'name="reason_code"' not in body
    refused = post(client, action_url(request.work_item_id, "resolve"), {"reason_code": "approved"})
    assert flashed(refused) == [
        f"Nothing was changed. Work item {request.work_item_id} is an approval: "
        "decide it on its approval page."
    ]
    assert WorkItem.objects.get(pk=request.work_item_id).state == "open"


def test_claim_comment_snooze_reassign_release_and_resolve(client: Client, alice: User, bob: User) -> None:
    exception = shortfall()
    pk = exception.work_item_id
    url = reverse("work-item", args=[pk])

    claimed = post(client, action_url(pk, "claim"))
    assert (claimed["Location"], flashed(claimed)) == (url, ["You hold this item now."])
    post(client, action_url(pk, "comment"), {"text": "  looking  "})
    post(client, action_url(pk, "snooze"), {"until": "2026-03-03T08:00", "note": "supplier"})
    post(client, action_url(pk, "reassign"), {"to": bob.pk})
    wi = WorkItem.objects.get(pk=pk)
    assert (wi.assignee_id, wi.snoozed_until) == (bob.pk, datetime(2026, 3, 3, 8, 0, tzinfo=UTC))

    client.force_login(bob)
    post(client, action_url(pk, "release"))
    resolved = post(client, action_url(pk, "resolve"), {"reason_code": "stock_arrived", "note": "came in"})
    assert flashed(resolved) == ["Resolved as stock_arrived."]
    wi.refresh_from_db()
    exception.refresh_from_db()
    assert (wi.state, wi.assignee_id, wi.resolution_code, wi.resolution_note, exception.is_open) == (
        "resolved", bob.pk, "stock_arrived", "came in", False,
    )  # fmt: skip
    actions = list(
        WorkItemEvent.objects.filter(item_id=pk).values_list("action", "actor_user__username", "note")
    )
    assert actions == [
        ("opened", None, ""),
        ("claimed", "alice", ""),
        ("comment", "alice", "looking"),
        ("snoozed", "alice", "supplier"),
        ("reassigned", "alice", ""),
        ("released", "bob", ""),
        ("resolved", "bob", "came in"),
    ]
    after = client.get(url)
    assert after.context["can"] == work.Can(False, False, False, False, False, False)


def test_resolve_with_a_bad_reason_code_is_refused_and_changes_nothing(client: Client, alice: User) -> None:
    exception = shortfall()
    pk = exception.work_item_id
    workqueue.work_item_claim(item=exception.work_item, user=alice)
    before = stored(pk)

    response = post(client, action_url(pk, "resolve"), {"reason_code": "because", "note": "n"})

    assert response["Location"] == reverse("work-item", args=[pk])
    assert flashed(response) == [f"Nothing was changed. Choose a reason code: {', '.join(SHORTFALL_CODES)}."]
    assert stored(pk) == before
    assert OrderException.objects.get(pk=exception.pk).is_open is True

    htmx = post(client, action_url(pk, "resolve"), {"reason_code": ""}, **HTMX)
    assert (htmx.status_code, htmx["X-Portal-Fragment"]) == (422, "error")
    body = htmx.content.decode()
    assert body.startswith('<div id="work-item"')
    assert "Nothing was changed. Choose a reason code" in body
    assert stored(pk) == before


def test_resolving_someone_elses_claimed_item_is_refused(client: Client, alice: User, bob: User) -> None:
    exception = shortfall()
    pk = exception.work_item_id
    workqueue.work_item_claim(item=exception.work_item, user=bob)
    before = stored(pk)

    page = client.get(reverse("work-item", args=[pk]))
    assert (page.context["can"].resolve, page.context["can"].release, page.context["held_by_other"]) == (
        False, False, True,
    )  # fmt: skip
    assert "only they or an admin may release, reassign or resolve it" in page.content.decode()
    for action, data in [
        ("resolve", {"reason_code": "stock_arrived"}),
        ("release", {}),
        ("reassign", {"to": alice.pk}),
    ]:
        response = post(client, action_url(pk, action), data)
        assert flashed(response)[0].startswith("Nothing was changed. Only the assignee may"), action
    assert flashed(post(client, action_url(pk, "claim"))) == [
        f"Nothing was changed. Work item {pk} is claimed by bob."
    ]
    assert stored(pk) == before
    assert OrderException.objects.get(pk=exception.pk).is_open is True


def test_htmx_actions_return_the_updated_fragment(client: Client, alice: User) -> None:
    wi = item(title="fragment me")

    claimed = post(client, action_url(wi.pk, "claim"), **HTMX)
    body = claimed.content.decode()
    assert claimed.status_code == 200
    assert body.startswith('<div id="work-item"') and "<html" not in body
    assert "You hold this item now." in body
    assert claimed.context["item"].assignee_id == alice.pk

    commented = post(client, action_url(wi.pk, "comment"), {"text": "first note"}, **HTMX)
    assert "first note" in commented.content.decode()
    assert [title for _, title, _ in commented.context["history"]] == ["Opened", "Claimed", "Comment"]

    empty = post(client, action_url(wi.pk, "comment"), {"text": "   "}, **HTMX)
    assert (empty.status_code, empty["X-Portal-Fragment"]) == (422, "error")
    assert "Nothing was changed. Comment: This field is required." in empty.content.decode()

    past = post(client, action_url(wi.pk, "snooze"), {"until": "2026-03-01T08:00"}, **HTMX)
    assert past.status_code == 422
    assert "Snooze until a time in the future." in past.content.decode()
    assert WorkItem.objects.get(pk=wi.pk).snoozed_until is None
    assert Order.objects.count() == 0
