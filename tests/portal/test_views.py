import base64
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, FINANCE, PLANNER, ROLES
from orders import services
from orders.models import Order, Status
from portal import views
from tests import factories
from tests.factories import SYSTEM

pytestmark = pytest.mark.django_db


def login(client: Client, *roles: str) -> User:
    user = factories.user(None, *roles)
    client.force_login(user)
    return user


def credit_checked(order: Order) -> Order:
    services.order_credit_check(order=order, actor=SYSTEM)
    return order


def allocated(qty: int = 2, on_hand: int = 2) -> Order:
    """An order for ``qty`` units of a product with ``on_hand`` in stock, through allocation."""
    wh = factories.warehouse()
    prod = factories.product()
    if on_hand:
        factories.stock(wh, prod, on_hand)
    order = credit_checked(factories.order(lines=[(prod, qty)], wh=wh))
    services.order_allocate(order=order, actor=SYSTEM)
    return order


def search(client: Client, **params: str) -> list[str]:
    response = client.get(reverse("orders"), params)
    assert response.status_code == 200
    return [o.external_id for o in response.context["page"].rows]


# --- login -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/", "/orders/", "/orders/?status=received", "/orders/1/", "/orders/999999/"]
)
def test_anonymous_is_sent_to_login(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_login_page_names_the_product_and_logs_in(client: Client) -> None:
    factories.user("ann", CUSTOMER_SERVICE)
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert "Fulfillment Ops Portal" in page.content.decode()

    bad = client.post(reverse("login"), {"username": "ann", "password": "wrong"})
    assert bad.status_code == 200
    assert "Please enter a correct username and password" in bad.content.decode()

    good = client.post(reverse("login"), {"username": "ann", "password": "pw"})
    assert good.status_code == 302
    assert good["Location"] == reverse("home")
    assert client.get(reverse("home")).status_code == 200


def test_logout_is_a_post_with_csrf(client: Client) -> None:
    csrf_client = Client(enforce_csrf_checks=True)
    login(csrf_client, PLANNER)
    home = csrf_client.get(reverse("home")).content.decode()
    assert f'action="{reverse("logout")}"' in home
    assert csrf_client.get(reverse("logout")).status_code == 405
    assert csrf_client.post(reverse("logout")).status_code == 403  # no CSRF token

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', home).group(1)
    response = csrf_client.post(reverse("logout"), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert csrf_client.get(reverse("home")).status_code == 302


# --- home --------------------------------------------------------------------------------


def test_customer_service_home_shows_risk_holds_and_recent(client: Client) -> None:
    late = factories.order(promised_in_days=-2)
    due_today = factories.order(promised_in_days=0)
    factories.order(promised_in_days=3)
    held = factories.order()
    services.order_apply(order=held, transition_name="hold", actor=SYSTEM, reason="address check")
    login(client, CUSTOMER_SERVICE)

    response = client.get(reverse("home"))

    cs = response.context["cs"]
    assert cs["at_risk"].count == 2
    assert [o.external_id for o in cs["at_risk"].rows] == [late.external_id, due_today.external_id]
    assert cs["on_hold"].count == 1
    assert [o.pk for o in cs["on_hold_rows"]] == [held.pk]
    assert cs["recent"][0].pk == held.pk
    body = response.content.decode()
    assert "Customer service" in body
    assert late.external_id in body
    assert "planner" not in response.context and "finance" not in response.context


def test_planner_home_shows_shortfalls_and_stalled_releases(client: Client) -> None:
    backordered = allocated(qty=2, on_hand=0)
    partial = allocated(qty=4, on_hand=1)
    with clock.frozen(clock.now() - timedelta(hours=5)):
        stalled = allocated()
        services.order_release(order=stalled, actor=SYSTEM)
    fresh = allocated()
    services.order_release(order=fresh, actor=SYSTEM)
    assert (backordered.status, partial.status) == (Status.BACKORDERED, Status.PARTIALLY_ALLOCATED)
    login(client, PLANNER)

    response = client.get(reverse("home"))

    planner = response.context["planner"]
    assert planner["backordered"].count == 1
    assert [o.pk for o in planner["backordered_rows"]] == [backordered.pk]
    assert planner["partial"].count == 1
    assert [o.pk for o in planner["partial_rows"]] == [partial.pk]
    assert planner["stalled"].count == 1
    assert [o.pk for o in planner["stalled"].rows] == [stalled.pk]
    assert "Planning" in response.content.decode()
    assert "cs" not in response.context


def test_finance_home_shows_holds_and_approvals_with_totals(client: Client) -> None:
    broke = factories.customer(credit_limit=Decimal("5"))
    prod = factories.product(price="40.00")
    hold_1 = credit_checked(factories.order(broke, [(prod, 1)]))
    hold_2 = credit_checked(factories.order(broke, [(prod, 3)]))
    big = allocated()
    services.order_request_release_approval(order=big, actor=SYSTEM)
    login(client, FINANCE)

    response = client.get(reverse("home"))

    credit_hold, awaiting = response.context["finance"]["figures"]
    assert (credit_hold.status, credit_hold.count, credit_hold.totals) == (
        Status.CREDIT_HOLD,
        2,
        {"EUR": Decimal("160.00")},
    )
    assert (awaiting.count, awaiting.totals) == (1, {"EUR": big.total})
    assert [o.pk for o in response.context["finance"]["credit_hold_rows"]] == [hold_2.pk, hold_1.pk]
    assert "160.00 EUR" in response.content.decode()


def test_admin_home_counts_every_status_and_links_admin(client: Client) -> None:
    factories.order()
    factories.order()
    credit_checked(factories.order())
    user = login(client, ADMIN)
    user.is_staff = True
    user.save()

    response = client.get(reverse("home"))

    figures = {f.status: f.count for f in response.context["admin"]["figures"]}
    assert set(figures) == {s.value for s in Status}
    assert figures[Status.RECEIVED] == 2
    assert figures[Status.ALLOCATING] == 1
    assert response.context["admin"]["total"] == 3
    body = response.content.decode()
    assert reverse("admin:orders_customer_changelist") in body
    assert reverse("admin:index") in body


def test_user_with_several_roles_sees_several_panels(client: Client) -> None:
    login(client, CUSTOMER_SERVICE, FINANCE)
    response = client.get(reverse("home"))
    assert "cs" in response.context and "finance" in response.context
    assert "planner" not in response.context and "admin" not in response.context
    assert "Customer service, Finance" in response.content.decode()


def test_user_without_a_role_is_told_and_kept_out_of_orders(client: Client) -> None:
    login(client)
    home = client.get(reverse("home"))
    assert home.status_code == 200
    assert "no role yet" in home.content.decode()
    assert f'href="{reverse("orders")}"' not in home.content.decode()
    denied = client.get(reverse("orders"))
    assert denied.status_code == 403
    assert "Not allowed" in denied.content.decode()


@pytest.mark.parametrize("role", ROLES)
def test_every_role_may_see_orders(client: Client, role: str) -> None:
    order = factories.order()
    login(client, role)
    assert client.get(reverse("orders")).status_code == 200
    assert client.get(reverse("order-detail", args=[order.pk])).status_code == 200


# --- order search ----------------------------------------------------------------------


def test_search_filters_each_work_and_combine(client: Client) -> None:
    north, south = factories.warehouse("NORTH"), factories.warehouse("SOUTH")
    acme = factories.customer(code="ACME01", name="Acme Tools")
    bolt = factories.customer(code="BOLT02", name="Bolt & Nut Supply")
    day = datetime(2025, 3, 10, 12, tzinfo=UTC)
    with clock.frozen(day):
        a1 = factories.order(acme, wh=north)
    with clock.frozen(day + timedelta(days=10)):
        a2 = factories.order(acme, wh=south)
    with clock.frozen(day + timedelta(days=20, hours=11)):  # 2025-03-30 23:00
        b1 = credit_checked(factories.order(bolt, wh=north))
    login(client, CUSTOMER_SERVICE)

    assert search(client) == [b1.external_id, a2.external_id, a1.external_id]
    assert search(client, external_id=a1.external_id) == [a1.external_id]
    assert search(client, external_id=a1.external_id[:-1], match="exact") == []
    prefix = a1.external_id[:-1]
    assert set(search(client, external_id=prefix)) >= {a1.external_id}
    assert search(client, external_id="SO-", customer="acme") == [a2.external_id, a1.external_id]
    assert search(client, customer="bolt02") == [b1.external_id]
    assert search(client, customer="nut sup") == [b1.external_id]
    assert search(client, status=Status.ALLOCATING) == [b1.external_id]
    assert search(client, warehouse="NORTH") == [b1.external_id, a1.external_id]
    assert search(client, created_from="2025-03-15") == [b1.external_id, a2.external_id]
    assert search(client, created_to="2025-03-20") == [a2.external_id, a1.external_id]
    assert search(client, created_from="2025-03-30", created_to="2025-03-30") == [b1.external_id]
    assert search(client, customer="acme", warehouse="SOUTH", created_to="2025-03-31") == [a2.external_id]
    assert search(client, customer="acme", status=Status.ALLOCATING) == []


def test_results_table_shows_the_columns(client: Client) -> None:
    wh = factories.warehouse("EAST")
    order = factories.order(factories.customer(name="Zenith Parts"), wh=wh)
    login(client, CUSTOMER_SERVICE)
    body = client.get(reverse("orders")).content.decode()
    assert f'href="{reverse("order-detail", args=[order.pk])}"' in body
    for text in ["Zenith Parts", "badge s-received", "Received", "EUR", "EAST", f"{order.total}"]:
        assert text in body


def _next_url(response: object) -> str | None:
    query = response.context["next_query"]
    return f"{reverse('orders')}?{query}" if query else None


def test_keyset_pagination_walks_every_order_once_despite_inserts(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "PAGE_SIZE", 3)
    cust = factories.customer(name="Paged Customer")
    same_moment = clock.now() - timedelta(days=1)
    with clock.frozen(same_moment):  # ties on created_at: the id breaks them
        tied = [factories.order(cust) for _ in range(5)]
    spread = []
    for n in range(6):
        with clock.frozen(same_moment - timedelta(hours=n + 1)):
            spread.append(factories.order(cust))
    factories.order()  # another customer's order, filtered out
    expected = [o.external_id for o in sorted(tied, key=lambda o: -o.pk)] + [o.external_id for o in spread]
    login(client, CUSTOMER_SERVICE)

    seen: list[str] = []
    url: str | None = f"{reverse('orders')}?customer=Paged"
    pages = 0
    while url:
        response = client.get(url)
        assert response.status_code == 200
        assert response.context["form"].cleaned_data["customer"] == "Paged"  # "Next" keeps filters
        seen += [o.external_id for o in response.context["page"].rows]
        pages += 1
        factories.order(cust)  # a new order arrives between page loads
        url = _next_url(response)

    assert seen == expected
    assert len(set(seen)) == len(seen)
    assert pages == 4


def test_next_link_is_in_the_page_and_first_page_link_on_later_pages(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    for _ in range(3):
        factories.order()
    login(client, PLANNER)
    first = client.get(reverse("orders"), {"status": "received"})
    body = first.content.decode()
    assert "Next page" in body and "First page" not in body
    second = client.get(_next_url(first))
    assert len(second.context["page"].rows) == 1
    assert second.context["page"].next_cursor is None
    assert "First page" in second.content.decode()
    assert "Next page" not in second.content.decode()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"created_from": "2025-13-45"}, "Created from: Enter a valid date."),
        (
            {"created_from": "2025-03-02", "created_to": "2025-03-01"},
            "The end date is before the start date.",
        ),
        ({"status": "lost"}, "Status: Select a valid choice."),
        ({"warehouse": "NOPE"}, "Warehouse: Select a valid choice."),
        ({"match": "fuzzy"}, "Match: Select a valid choice."),
        ({"external_id": "x" * 65}, "External id: Ensure this value has at most 64 characters"),
        ({"after": "%%%not-base64"}, "Page link: This page link is not valid"),
        ({"after": base64.urlsafe_b64encode(b"yesterday|12").decode()}, "Page link: This page link"),
        ({"after": base64.urlsafe_b64encode(b"2025-01-01T10:00:00|12").decode()}, "Page link: This"),
        ({"after": base64.urlsafe_b64encode(b"2025-01-01T10:00:00+00:00|-1").decode()}, "Page link"),
        ({"after": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, "Page link: This page link"),
        ({"after": base64.urlsafe_b64encode(b"0001-01-01T00:00:00+14:00|5").decode()}, "Page link: This"),
        ({"after": base64.urlsafe_b64encode(f"2025-01-01T10:00:00+00:00|{2**63}".encode()).decode()}, "Page"),
        ({"created_to": "9999-12-31"}, "Created to: Give a date between 1900 and 2999."),
        ({"created_from": "0001-01-01"}, "Created from: Give a date between 1900 and 2999."),
    ],
)
def test_invalid_filters_and_cursors_show_an_error(client: Client, params: dict, message: str) -> None:
    login(client, CUSTOMER_SERVICE)
    response = client.get(reverse("orders"), params)
    assert response.status_code == 200
    assert response.context["page"] is None
    assert message in response.content.decode()


def test_a_cursor_made_by_the_page_round_trips() -> None:
    from orders.selectors import Cursor, cursor_decode

    cursor = Cursor(created_at=datetime(2025, 5, 1, 9, 30, 1, 123456, tzinfo=UTC), id=42)
    assert cursor_decode(cursor.encode()) == cursor


def test_htmx_request_gets_only_the_results_partial(client: Client) -> None:
    order = factories.order()
    login(client, CUSTOMER_SERVICE)

    partial = client.get(reverse("orders"), {"status": "received"}, headers={"HX-Request": "true"})
    assert partial.status_code == 200
    body = partial.content.decode()
    assert order.external_id in body
    assert "<html" not in body and "<form" not in body
    assert "HX-Request" in partial["Vary"]

    full = client.get(reverse("orders"), {"status": "received"})
    assert "<html" in full.content.decode()
    assert 'hx-get="/orders/"' in full.content.decode()
    assert "HX-Request" in full["Vary"]

    restore = client.get(
        reverse("orders"), headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in restore.content.decode()


def test_pages_load_htmx_locally_and_send_csrf_with_htmx_requests(client: Client) -> None:
    login(client, CUSTOMER_SERVICE)
    body = client.get(reverse("orders")).content.decode()
    assert '<script src="/static/django_htmx/htmx-2.min.js" defer></script>' in body
    assert "https://" not in body
    assert re.search(r"hx-headers='\{\"X-CSRFToken\": \"[^\"]+\"\}'", body)


def test_search_runs_the_same_queries_for_5_or_40_orders(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "PAGE_SIZE", 100)
    wh = factories.warehouse("WH1")
    login(client, CUSTOMER_SERVICE)

    def queries(params: dict[str, str]) -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(reverse("orders"), params)
        assert response.status_code == 200
        return len(ctx.captured_queries), len(response.context["page"].rows)

    filtered = {"customer": "Customer", "warehouse": "WH1", "created_from": "2000-01-01"}
    for _ in range(5):
        factories.order(wh=wh)
    small = queries({}), queries(filtered)
    for _ in range(35):
        factories.order(wh=wh)
    large = queries({}), queries(filtered)

    assert [rows for _, rows in small] == [5, 5]
    assert [rows for _, rows in large] == [40, 40]
    assert [n for n, _ in small] == [n for n, _ in large]
    assert max(n for n, _ in large) <= 6


# --- order detail ----------------------------------------------------------------------


def _busy_order(n_lines: int) -> Order:
    """An order of ``n_lines`` lines allocated across two warehouses, shipped, delivered, invoiced."""
    home, other = factories.warehouse(), factories.warehouse()
    lines = []
    for _ in range(n_lines):
        prod = factories.product()
        factories.stock(home, prod, 1)
        factories.stock(other, prod, 5)
        lines.append((prod, 3))
    order = credit_checked(factories.order(lines=lines, wh=home))
    services.order_allocate(order=order, actor=SYSTEM)
    services.order_release(order=order, actor=SYSTEM)
    services.order_start_picking(order=order, actor=SYSTEM)
    for n, (prod, _) in enumerate(lines):
        services.order_record_shipment(
            order=order,
            shipment_id=f"{order.external_id}-S{n}",
            warehouse_code=other.code,
            lines=[services.ShippedLine(sku=prod.sku, quantity=2)],
            actor=SYSTEM,
            tracking=f"TRK{n}",
        )
    return order


def test_detail_shows_header_lines_allocations_shipments_and_timeline(client: Client) -> None:
    cust = factories.customer(name="Detail Co", tier="key", credit_limit=Decimal("2500"))
    wh = factories.warehouse("DET1")
    prod = factories.product("SKU-DETAIL", price="12.50")
    factories.stock(wh, prod, 10)
    order = credit_checked(factories.order(cust, [(prod, 4)], wh=wh))
    services.order_allocate(order=order, actor=SYSTEM)
    user = login(client, CUSTOMER_SERVICE)
    services.order_apply(order=order, transition_name="hold", actor=Actor.of(user), reason="Call me")

    response = client.get(reverse("order-detail", args=[order.pk]))

    assert response.status_code == 200
    body = response.content.decode()
    for text in [
        order.external_id, "Detail Co", "Key account", "2,500.00", "Hull", "DET1",
        "SKU-DETAIL", "Product", "12.50", "50.00",  # unit price, amount
        "badge s-on_hold", "held from allocated",
    ]:  # fmt: skip
        assert text in body, text
    timeline = response.context["timeline"]
    assert [title for _, title, _ in timeline] == [
        "Receive", "Start credit check", "Pass credit check", "Allocate in full", "Hold",
    ]  # fmt: skip
    credit_figures = dict(timeline[2][2])
    assert credit_figures["Exposure"] == "50.00"
    assert credit_figures["Credit limit"] == "2,500.00"
    assert credit_figures["Credit blocked"] == "no"
    assert dict(timeline[3][2])["Allocated"] == "SKU-DETAIL: 4"
    assert timeline[4][0].actor_label == user.username
    assert "Call me" in body
    assert '<span class="badge tag-system" title="system">test</span>' in body
    allocations = response.context["detail"].allocations
    assert [(a.warehouse.code, a.lines) for a in allocations] == [("DET1", [("SKU-DETAIL", 4)])]


def test_detail_shows_shipments_deliveries_and_invoices(client: Client) -> None:
    order = _busy_order(1)  # 2 of 3 units shipped from the second warehouse
    line = order.lines.select_related("product").get()
    services.order_record_shipment(
        order=order,
        shipment_id="LAST",
        warehouse_code=order.warehouse.code,
        lines=[services.ShippedLine(sku=line.product.sku, quantity=1)],
        actor=SYSTEM,
    )
    for shipment_id, signed_by in [(f"{order.external_id}-S0", "A. Dock"), ("LAST", "J. Doe")]:
        services.order_confirm_delivery(
            order=order, shipment_id=shipment_id, delivered_at=clock.now(), signed_by=signed_by, actor=SYSTEM
        )
    services.order_invoice(order=order, number="INV-900", actor=SYSTEM)
    login(client, FINANCE)

    response = client.get(reverse("order-detail", args=[order.pk]))

    body = response.content.decode()
    for text in ["TRK0", "A. Dock", "J. Doe", "INV-900", "badge s-invoiced", "Ship in full", "Deliver"]:
        assert text in body, text
    assert [s.external_id for s in response.context["detail"].shipments] == [
        f"{order.external_id}-S0",
        "LAST",
    ]


def test_unknown_order_is_a_404_page(client: Client) -> None:
    login(client, CUSTOMER_SERVICE)
    response = client.get(reverse("order-detail", args=[987654]))
    assert response.status_code == 404
    body = response.content.decode()
    assert "Not found" in body
    assert "Fulfillment Ops" in body  # the portal's look, not Django's bare page


def test_detail_runs_the_same_queries_for_small_and_large_orders(client: Client) -> None:
    small, large = _busy_order(1), _busy_order(8)
    login(client, PLANNER)

    def queries(order: Order) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("order-detail", args=[order.pk])).status_code == 200
        return len(ctx.captured_queries)

    assert queries(small) == queries(large)
    assert queries(large) <= 12
