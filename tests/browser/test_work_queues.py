"""Issue 3 in the browser: a planner works the Planning queue, finance decides credit holds
(and may not decide its own request), an admin writes an escalation rule and sees it fire."""

import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from approvals.models import ApprovalDecision, ApprovalRequest
from exceptions.models import OrderException
from flows import fulfilment
from fulfillment.core import clock, tasks
from fulfillment.core.actors import Actor
from fulfillment.core.models import EscalationRule, Notification, Queue, RuleFiring, WorkItem, WorkItemEvent
from orders import services as order_services
from orders.models import Customer, Inventory, Order, OrderTransition, Product, Status, Tier
from portal.demo import demo_users_ensure
from portal.management.scenario.master_data import warehouses_ensure
from tests.browser.conftest import Portal

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ERP = Actor.named("erp")
OPEN = WorkItem.State.OPEN
ORDER = ("-priority_key", "created_at", "id")  # the queue order
RULE_NAME = "Strategic shortfalls unclaimed for 2 hours"

# sku, description, price, units on hand at HAM
PRODUCTS = [
    ("MTR-0750", "Helical gear motor 0.75 kW, 400 V, IE3", "389.00", 25),
    ("SNS-M12P", "Inductive proximity sensor M12, PNP NO, 4 mm", "27.50", 0),
    ("BRG-6204", "Deep groove ball bearing 6204-2RS, 20x47x14 mm", "4.80", 200),
    ("BLT-SPZ1250", "V-belt SPZ 1250 Lw", "9.40", 10),
    ("VLV-DN25", "Ball valve DN25 PN40, stainless 316", "64.00", 500),
    ("HOS-DN10", "Hydraulic hose DN10 2SN, 1 m, pressed fittings", "18.90", 300),
]
# code, name, tier, credit limit, open receivables, blocked, street, postal code, city, country
CUSTOMERS = [
    ("C10021", "Keller Maschinenbau GmbH", Tier.STRATEGIC, "400000", "61200", False,
     "Industriestraße 14", "21107", "Hamburg", "DE"),
    ("C10107", "Hartley Engineering Ltd", Tier.KEY, "150000", "18400", False,
     "27 Trafford Park Road", "M17 1AB", "Manchester", "GB"),
    ("C10233", "Brandt Fördertechnik AG", Tier.STANDARD, "80000", "9100", False,
     "Am Gewerbepark 3", "28197", "Bremen", "DE"),
    ("C10318", "Calder Packaging Ltd", Tier.SMALL, "20000", "2300", False,
     "4 Canal Street", "LS10 1JQ", "Leeds", "GB"),
    ("C10402", "Doyle Agri Machinery Ltd", Tier.STANDARD, "10000", "9650", False,
     "Naas Road", "D12 X9K3", "Dublin", "IE"),
    ("C10455", "Whitmore Plastics Ltd", Tier.STANDARD, "25000", "24800", False,
     "12 Mill Lane", "S9 2RX", "Sheffield", "GB"),
    ("C10519", "Corrib Foods Ltd", Tier.SMALL, "15000", "3100", True,
     "Harbour Road", "T12 P2F8", "Cork", "IE"),
]  # fmt: skip


@dataclass(frozen=True)
class Floor:
    planner: User
    finance: User
    admin: User
    keller: Order  # strategic, short of gear motors: first in the Planning queue
    shortfalls: list[Order]  # every order short of stock
    doyle: Order  # on credit hold, asked for by the ERP's intake
    whitmore: Order  # on credit hold, keyed in by the finance user herself


def _intake(
    external_id: str, code: str, lines: list[tuple[str, int]], *, promised_in_days: int, actor: Actor
) -> Order:
    customer = Customer.objects.get(code=code)
    spec = next(c for c in CUSTOMERS if c[0] == code)
    street, postal_code, city, country = spec[6:]
    prices = dict(Product.objects.values_list("sku", "price"))
    order = order_services.order_create(
        external_id=external_id,
        customer_code=code,
        warehouse_code="HAM",
        promised_date=timezone.localdate(clock.now()) + timedelta(days=promised_in_days),
        ship_to=order_services.ShipTo(
            name=f"{customer.name}, Goods In",
            line1=street,
            city=city,
            postal_code=postal_code,
            country=country,
        ),
        lines=[order_services.LineInput(sku=sku, quantity=n, unit_price=prices[sku]) for sku, n in lines],
        actor=actor,
    )
    fulfilment.order_intake(order=order, actor=actor)
    order.refresh_from_db()
    return order


@pytest.fixture
def floor() -> Floor:
    """A morning's work: the ERP sent orders over the last hours; four are short of stock
    (Planning) and three wait on credit (Finance approvals), one of them keyed in by the
    finance user. Made through the real services and flows."""
    users = demo_users_ensure()
    (ham, *_) = warehouses_ensure()
    for sku, description, price, on_hand in PRODUCTS:
        product = Product.objects.create(
            sku=sku, description=description, price=Decimal(price), cost=Decimal(price) * Decimal("0.6")
        )
        Inventory.objects.create(warehouse=ham, product=product, on_hand=on_hand)
    for code, name, tier, limit, receivables, blocked, *_address in CUSTOMERS:
        Customer.objects.create(
            code=code,
            name=name,
            tier=tier,
            credit_limit=Decimal(limit),
            open_receivables=Decimal(receivables),
            credit_blocked=blocked,
        )
    finance = Actor.of(users["finance"])
    start = clock.now() - timedelta(hours=4)
    orders = [
        ("SO-0048203", "C10107", [("SNS-M12P", 120), ("BRG-6204", 40)], 4, ERP),
        ("SO-0048207", "C10233", [("BRG-6204", 600), ("HOS-DN10", 24)], 6, ERP),
        ("SO-0048211", "C10021", [("MTR-0750", 40), ("VLV-DN25", 12)], 2, ERP),
        ("SO-0048214", "C10402", [("VLV-DN25", 12), ("HOS-DN10", 30)], 5, ERP),
        ("SO-0048216", "C10318", [("BLT-SPZ1250", 30)], 3, ERP),
        ("SO-0048219", "C10519", [("HOS-DN10", 40)], 7, ERP),
        ("SO-0048222", "C10455", [("VLV-DN25", 8)], 5, finance),
    ]
    made = {}
    for n, (external_id, code, lines, days, actor) in enumerate(orders):
        with clock.frozen(start + timedelta(minutes=23 * n)):
            made[external_id] = _intake(external_id, code, lines, promised_in_days=days, actor=actor)
    return Floor(
        planner=users["planner"],
        finance=users["finance"],
        admin=users["admin"],
        keller=made["SO-0048211"],
        shortfalls=[o for o in made.values() if o.status in (Status.BACKORDERED, Status.PARTIALLY_ALLOCATED)],
        doyle=made["SO-0048214"],
        whitmore=made["SO-0048222"],
    )


def _main_nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def _transitions(order: Order) -> list[str]:
    return list(
        OrderTransition.objects.filter(order=order).order_by("at", "id").values_list("transition", flat=True)
    )


def test_planner_claims_the_next_item_and_resolves_an_inventory_shortfall(
    portal: Portal, floor: Floor
) -> None:
    page = portal.page
    planning = Queue.objects.get(slug="planning")
    ranked = list(WorkItem.objects.filter(queue=planning, state=OPEN).order_by(*ORDER))
    top = ranked[0]
    assert top.subject_ref == floor.keller.external_id
    assert {i.type for i in ranked} == {fulfilment.SHORTFALL}
    assert len(ranked) == len(floor.shortfalls) == 4

    portal.login("planner")
    _main_nav(page, "Queues")
    page.get_by_role("link", name="Planning", exact=True).click()
    expect(page).to_have_url(re.compile(r"/queues/planning/$"))
    rows = page.locator("table.work-table tbody tr")
    expect(rows).to_have_count(len(ranked))
    assert rows.locator("td.item-cell > a").all_inner_texts() == [i.title for i in ranked]
    portal.shot("planner-queue")

    page.get_by_role("button", name="Claim next").click()
    expect(page).to_have_url(re.compile(rf"/work-items/{top.pk}/$"))
    expect(page.locator(".alert.success").first).to_have_text(f"You claimed “{top.title}”.")
    top.refresh_from_db()
    assert (top.assignee, top.state) == (floor.planner, OPEN)
    portal.assert_assets_loaded()
    portal.shot("planner-work-item")

    note = (
        "Keller accepts a split shipment: 25 motors today from HAM, 15 with the supplier delivery on Friday."
    )
    page.get_by_label("Reason code").select_option("split_shipment")
    page.get_by_label("Resolution note").fill(note)
    page.get_by_role("button", name="Resolve", exact=True).click()
    expect(page.locator("#work-item .alert.success")).to_have_text("Resolved as split_shipment.")
    expect(page.locator("#work-item .page-head .badge").first).to_have_text("resolved")
    expect(page.locator("ol.history li").last).to_contain_text("Resolved: split_shipment")
    portal.shot("planner-work-item-resolved")

    top.refresh_from_db()
    assert (top.state, top.resolution_code, top.resolution_note, top.resolved_by) == (
        WorkItem.State.RESOLVED,
        "split_shipment",
        note,
        floor.planner,
    )
    assert OrderException.objects.get(work_item=top).is_open is False
    assert list(
        WorkItemEvent.objects.filter(item=top).order_by("at", "id").values_list("action", flat=True)
    ) == [
        "opened",
        "claimed",
        "resolved",
    ]
    others = WorkItem.objects.filter(pk__in=[i.pk for i in ranked[1:]])
    assert list(others.values_list("state", "assignee")) == [(OPEN, None)] * (len(ranked) - 1)
    floor.keller.refresh_from_db()
    assert floor.keller.status == Status.PARTIALLY_ALLOCATED  # resolving records the decision only


def test_finance_approves_a_credit_hold_and_the_order_moves_on_to_allocation(
    portal: Portal, floor: Floor
) -> None:
    page = portal.page
    order = floor.doyle
    approval = ApprovalRequest.objects.get(order=order)
    assert (order.status, approval.requested_by, approval.policy.approvers_required) == (
        Status.CREDIT_HOLD,
        None,  # the ERP's intake asked
        1,
    )
    before = _transitions(order)

    portal.login("finance")
    _main_nav(page, "Approvals")
    page.locator("table.approvals tr", has_text=order.external_id).get_by_role(
        "link", name="Credit hold"
    ).click()
    expect(page).to_have_url(re.compile(rf"/approvals/{approval.pk}/$"))
    exposure = page.locator("table.exposure")
    expect(exposure).to_contain_text("Credit limit")
    expect(page.get_by_text("One approval decides this band.")).to_be_visible()
    comment = "Remittance advice for 5,000.00 received, payment due Friday: release this order."
    page.get_by_label("Comment").fill(comment)
    portal.shot("finance-approval")

    page.get_by_role("button", name="Approve").click()
    expect(page).to_have_url(re.compile(rf"/approvals/{approval.pk}/$"))
    expect(page.locator(".alert.success")).to_have_text(
        f"Approved. Order {order.external_id} is now “{Status.RELEASED.label}”."
    )
    expect(page.get_by_text("This request was approved on")).to_be_visible()
    portal.shot("finance-approval-approved")

    order.refresh_from_db()
    approval.refresh_from_db()
    assert order.status == Status.RELEASED
    assert _transitions(order)[len(before) :] == [
        "release_credit_hold",
        "allocate_in_full",
        "release",
    ]
    assert approval.status == ApprovalRequest.Status.APPROVED
    decision = ApprovalDecision.objects.get(request=approval)
    assert (decision.approver, decision.decision, decision.comment) == (
        floor.finance,
        ApprovalDecision.Decision.APPROVE,
        comment,
    )
    item = approval.work_item
    item.refresh_from_db()
    assert (item.state, item.resolution_code) == (WorkItem.State.RESOLVED, "approved")


def test_a_requester_cannot_approve_their_own_request(portal: Portal, floor: Floor) -> None:
    page = portal.page
    order = floor.whitmore
    approval = ApprovalRequest.objects.get(order=order)
    assert (order.status, approval.requested_by) == (Status.CREDIT_HOLD, floor.finance)
    before = _transitions(order)
    reason = "You raised this request; someone else must decide it."

    portal.login("finance")
    _main_nav(page, "Approvals")
    page.locator("table.approvals tr", has_text=order.external_id).get_by_role(
        "link", name="Credit hold"
    ).click()
    expect(page).to_have_url(re.compile(rf"/approvals/{approval.pk}/$"))
    expect(page.locator(".decide .alert")).to_have_text(f"You cannot decide this request. {reason}")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_role("button", name="Reject")).to_have_count(0)
    portal.shot("finance-own-request")

    # The server refuses the decision too, when it is posted without the page's help.
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"/approvals/{approval.pk}/decide/",
        form={"csrfmiddlewaretoken": token, "decision": "approve", "comment": "Looks fine to me."},
    )
    assert response.status == 403
    assert reason in response.text()

    approval.refresh_from_db()
    order.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.PENDING
    assert not ApprovalDecision.objects.filter(request=approval).exists()
    assert order.status == Status.CREDIT_HOLD
    assert _transitions(order) == before
    assert approval.work_item.state == OPEN
    assert not WorkItemEvent.objects.filter(item=approval.work_item).exclude(action="opened").exists()


def test_admin_creates_an_escalation_rule_previews_it_and_sees_it_fire(portal: Portal, floor: Floor) -> None:
    page = portal.page
    keller_item = WorkItem.objects.get(subject_ref=floor.keller.external_id, state=OPEN)

    portal.login("admin")
    _main_nav(page, "Settings")
    page.get_by_role("link", name="Escalation rules").first.click()
    page.get_by_role("link", name="New rule").click()
    expect(page).to_have_url(re.compile(r"/settings/rules/new/$"))
    page.get_by_label("Name", exact=True).fill(RULE_NAME)
    page.get_by_label("Queue", exact=True).select_option(label="Planning")
    page.get_by_label("Type", exact=True).select_option(fulfilment.SHORTFALL)
    page.get_by_label("Tier", exact=True).select_option(Tier.STRATEGIC)
    page.get_by_label("Trigger", exact=True).select_option(EscalationRule.Trigger.UNCLAIMED_FOR)
    page.get_by_label("N", exact=True).fill("120")
    expect(page.get_by_label("Raise the escalation level")).to_be_checked()
    page.get_by_label("Notify", exact=True).select_option(EscalationRule.Notify.TEAM)

    page.get_by_role("button", name="Preview matches").click()
    preview = page.locator("#preview")
    expect(preview.locator("header")).to_have_text(re.compile(r"would fire now on\s+1\s+open item$"))
    expect(preview.locator("tbody tr")).to_have_count(1)
    expect(preview.locator("tbody tr td").first).to_have_text(keller_item.title)
    expect(page).to_have_url(re.compile(r"/settings/rules/new/$"))  # htmx: the form stays as typed
    assert not EscalationRule.objects.exists()
    portal.shot("admin-rule-preview")

    page.get_by_role("button", name="Save rule").click()
    rule = EscalationRule.objects.get(name=RULE_NAME)
    expect(page).to_have_url(re.compile(rf"/settings/rules/{rule.pk}/$"))
    expect(page.locator(".alert.success")).to_have_text(
        f"Rule '{RULE_NAME}' saved. The next evaluation applies it."
    )
    assert (rule.queue.slug, rule.type, rule.customer_tier, rule.trigger, rule.trigger_value) == (
        "planning",
        fulfilment.SHORTFALL,
        Tier.STRATEGIC,
        EscalationRule.Trigger.UNCLAIMED_FOR,
        120,
    )
    assert (rule.raise_level, rule.notify) == (True, EscalationRule.Notify.TEAM)

    # The scheduled task's entry point, as django-q2 calls it every minute.
    assert tasks.evaluate_escalations()["escalations"] == {"rules": 1, "firings": 1, "notifications": 1}

    page.reload()
    firings = page.locator("table.data tbody tr")
    expect(firings).to_have_count(1)
    firings.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/work-items/{keller_item.pk}/$"))
    expect(page.locator(".page-head .badge.tag-danger")).to_have_text("escalation level 1")
    escalated = page.locator("ol.history li.ev-escalated")
    expect(escalated).to_have_count(1)
    expect(escalated).to_contain_text(f"Escalated by rule “{RULE_NAME}”")
    expect(escalated).to_contain_text("level 0 → 1")
    portal.shot("admin-work-item-escalated")

    keller_item.refresh_from_db()
    assert keller_item.escalation_level == 1
    assert list(RuleFiring.objects.values_list("rule", "item", "level")) == [
        (rule.pk, keller_item.pk, 0)
    ]  # fired at level 0
    others = WorkItem.objects.filter(state=OPEN).exclude(pk=keller_item.pk)
    assert set(others.values_list("escalation_level", flat=True)) == {0}
    # The rule notifies the Planning team; the same run may also send SLA warnings, by the hour.
    notified = Notification.objects.filter(text__startswith=f"Escalated by rule '{RULE_NAME}'")
    assert list(notified.values_list("user__username", "item")) == [("planner", keller_item.pk)]
