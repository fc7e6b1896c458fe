"""Issue 2: each demo role logs in, sees its home page, searches an order and opens its timeline."""

import io
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db.models import Count, Q
from playwright.sync_api import Page, expect

from orders.models import Order, OrderTransition, Status
from tests.browser.conftest import Portal

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DEMO_ORDERS = 300
PANELS = {"Customer service", "Planning", "Finance", "Admin"}
EVERYONE = ["Home", "My work", "Queues", "Orders"]


class By(Enum):
    CUSTOMER_NAME = "the first word of the customer's name"
    CUSTOMER_CODE = "the customer's code"
    EXACT_ID = "the exact external id"
    ID_PREFIX = "the external id without its last digit"


@dataclass(frozen=True)
class Tour:
    username: str
    first_name: str
    panel: str  # the heading of the role's section on the home page
    nav: list[str]
    status: str  # the role looks up the order in this status with the longest history
    by: By


TOURS = [
    Tour("cs", "Clara", "Customer service", EVERYONE, Status.ON_HOLD, By.CUSTOMER_NAME),
    Tour("planner", "Piotr", "Planning", [*EVERYONE, "Integration"], Status.BACKORDERED, By.EXACT_ID),
    Tour("finance", "Fiona", "Finance", [*EVERYONE, "Approvals"], Status.CREDIT_HOLD, By.CUSTOMER_CODE),
    Tour(
        "admin",
        "Arjun",
        "Admin",
        [*EVERYONE, "Approvals", "Integration", "Settings", "Admin"],
        Status.CLOSED,
        By.ID_PREFIX,
    ),
]


def _search(page: Page, order: Order, by: By) -> list[str]:
    """Fill the search form; returns the external ids the search must list, newest first."""
    customer = order.customer
    if by in (By.CUSTOMER_NAME, By.CUSTOMER_CODE):
        term = customer.name.split()[0] if by == By.CUSTOMER_NAME else customer.code
        page.get_by_label("Customer").fill(term)
        found = Order.objects.filter(Q(customer__name__icontains=term) | Q(customer__code__icontains=term))
    else:
        exact = by == By.EXACT_ID
        term = order.external_id if exact else order.external_id[:-1]
        page.get_by_label("Match").select_option(label="is exactly" if exact else "starts with")
        page.get_by_label("External id", exact=True).fill(term)
        found = (
            Order.objects.filter(external_id=term)
            if exact
            else Order.objects.filter(external_id__startswith=term)
        )
    return list(found.order_by("-created_at", "-id").values_list("external_id", flat=True))


@pytest.fixture
def demo_data(tmp_path: Path) -> None:
    """The demo scenario (users cs, planner, finance, admin with password demo), small."""
    call_command(
        "demo_data", orders=DEMO_ORDERS, catalog=tmp_path / "catalog.json", verbosity=0, stdout=io.StringIO()
    )


@pytest.mark.parametrize("tour", TOURS, ids=[t.username for t in TOURS])
def test_role_logs_in_searches_an_order_and_reads_its_timeline(
    portal: Portal, demo_data: None, tour: Tour
) -> None:
    page = portal.page
    order = (
        Order.objects.filter(status=tour.status)
        .annotate(changes=Count("transitions"))
        .select_related("customer")
        .order_by("-changes", "id")
        .first()
    )
    assert order is not None

    portal.login(tour.username)
    greeting = page.get_by_role("heading", level=1)
    expect(greeting).to_have_text(re.compile(rf"^Good (morning|afternoon|evening), {tour.first_name}$"))
    assert portal.nav_links() == tour.nav
    sections = set(page.get_by_role("heading", level=2).all_inner_texts()) & PANELS
    assert sections == {tour.panel}
    portal.shot(f"{tour.username}-home")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Orders").click()
    expect(page).to_have_url(re.compile(r"/orders/$"))
    expected = _search(page, order, tour.by)
    assert order.external_id in expected
    assert len(expected) <= 50  # one page
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"/orders/\?"))  # htmx pushed the search into the address bar
    results = page.locator("#results tbody tr")
    expect(results).to_have_count(len(expected))
    assert results.locator("td:first-child").all_inner_texts() == expected
    portal.assert_assets_loaded()
    portal.shot(f"{tour.username}-search")

    page.locator("#results").get_by_role("link", name=order.external_id, exact=True).click()
    expect(page).to_have_url(re.compile(rf"/orders/{order.pk}/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Order {order.external_id}")
    transitions = list(OrderTransition.objects.filter(order=order).order_by("at", "id"))
    assert len(transitions) >= 5
    timeline = page.locator("table.timeline tbody tr")
    expect(timeline).to_have_count(len(transitions))
    assert timeline.locator("td:nth-child(2)").all_inner_texts() == [
        t.transition.replace("_", " ").capitalize() for t in transitions
    ]
    assert timeline.locator("td:nth-child(1)").all_inner_texts() == [
        f"{t.at:%Y-%m-%d %H:%M:%S}" for t in transitions
    ]
    last = timeline.last.locator("td:nth-child(3) .badge").last
    expect(last).to_have_text(order.get_status_display())
    portal.assert_assets_loaded()
    portal.shot(f"{tour.username}-order", full_page=True)
