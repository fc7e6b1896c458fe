"""The finance approvals, delegations and admin settings screens, through the HTTP client."""

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.forms import BaseFormSet
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals import services as approvals_services
from approvals.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest, Delegation
from exceptions.models import ExceptionType, StateDeadline
from fulfillment.core import clock, escalation, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.errors import InvalidInput, PermissionDenied
from fulfillment.core.models import BusinessCalendar, EscalationRule, Holiday, Queue, RuleFiring, WorkItem
from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, FINANCE, PLANNER
from orders.models import Order, Status
from portal import config
from tests import factories
from tests.approvals.support import credit_hold_order, request_for, written

pytestmark = pytest.mark.django_db

MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    with clock.frozen(MONDAY_9):
        yield


def login(client: Client, *roles: str, name: str | None = None) -> User:
    user = factories.user(name, *roles)
    client.force_login(user)
    return user


def text(response: Any) -> str:
    return response.content.decode()


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def order_of(request: ApprovalRequest) -> Order:
    return Order.objects.get(pk=request.order_id)


def decide(client: Client, request: ApprovalRequest, decision: str = "approve", comment: str = "") -> Any:
    return client.post(
        reverse("approval-decide", args=[request.pk]), {"decision": decision, "comment": comment}
    )


def open_item(
    title: str, queue: str = "planning", revenue: str = "100.00", type: str = "late_shipment_risk"
) -> WorkItem:
    return workqueue.work_item_open(
        queue=workqueue.queue_get(slug=queue),
        kind=WorkItem.Kind.EXCEPTION,
        type=type,
        title=title,
        subject=workqueue.Subject(ref=title, revenue_at_risk=Decimal(revenue)),
        actor=Actor.named("test"),
        sla_minutes=60,
    )


# --- permissions ------------------------------------------------------------------------


@pytest.fixture
def pages() -> dict[str, list[str]]:
    """Every page of these screens, by who may open it."""
    request = request_for(credit_hold_order())
    rule = escalation.rule_save(
        data={"name": "Unclaimed an hour", "trigger": "unclaimed_for", "trigger_value": 60},
        actor=Actor.named("test"),
    )
    queue = Queue.objects.get(slug="planning")
    policy = ApprovalPolicy.objects.order_by("pk").first()
    return {
        "approvals": [
            reverse("approvals"),
            reverse("approvals") + "?view=decided",
            reverse("approval", args=[request.pk]),
            reverse("delegations"),
        ],
        "settings": [
            reverse("settings"),
            reverse("settings-queues"),
            reverse("settings-queue-new"),
            reverse("settings-queue", args=[queue.pk]),
            reverse("settings-calendars"),
            reverse("settings-calendar", args=[queue.team_id]),
            reverse("settings-sla"),
            reverse("settings-rules"),
            reverse("settings-rule-new"),
            reverse("settings-rule", args=[rule.pk]),
            reverse("settings-rule-delete", args=[rule.pk]),
            reverse("settings-policies"),
            reverse("settings-policy-new"),
            reverse("settings-policy", args=[policy.pk]),
        ],
    }


def test_anonymous_users_are_sent_to_login(client: Client, pages: dict[str, list[str]]) -> None:
    for url in pages["approvals"] + pages["settings"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next="), url


@pytest.mark.parametrize(
    ("role", "approvals_status", "settings_status"),
    [
        (CUSTOMER_SERVICE, 403, 403),
        (PLANNER, 403, 403),
        (FINANCE, 200, 403),
        (ADMIN, 200, 200),
    ],
)
def test_who_may_open_which_page(
    client: Client, pages: dict[str, list[str]], role: str, approvals_status: int, settings_status: int
) -> None:
    login(client, role)
    for url in pages["approvals"]:
        assert client.get(url).status_code == approvals_status, url
    for url in pages["settings"]:
        assert client.get(url).status_code == settings_status, url


@pytest.mark.parametrize("role", [CUSTOMER_SERVICE, PLANNER, FINANCE])
def test_settings_actions_are_refused_to_non_admins_and_change_nothing(client: Client, role: str) -> None:
    login(client, role)
    queue = Queue.objects.get(slug="planning")
    rule = escalation.rule_save(data={"name": "Past SLA", "trigger": "past_sla"}, actor=Actor.named("test"))
    posts = [
        (reverse("settings-queue", args=[queue.pk]), {"name": "Renamed", "team": queue.team_id}),
        (reverse("settings-rule-new"), {"name": "X", "trigger": "past_sla", "trigger_value": 0}),
        (reverse("settings-rule-preview"), {"trigger": "past_sla", "trigger_value": 0}),
        (reverse("settings-rule-delete", args=[rule.pk]), {}),
        (reverse("settings-policy-new"), {"name": "X"}),
        (reverse("settings-calendar", args=[queue.team_id]), {"time_zone": "UTC"}),
        (reverse("settings-sla"), {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    assert Queue.objects.get(pk=queue.pk).name == "Planning"
    assert list(EscalationRule.objects.values_list("name", flat=True)) == ["Past SLA"]


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ((CUSTOMER_SERVICE,), []),
        ((PLANNER,), []),
        ((FINANCE,), ["Approvals"]),
        ((ADMIN,), ["Approvals", "Settings"]),
    ],
)
def test_the_navigation_shows_approvals_and_settings_by_role(
    client: Client, roles: tuple[str, ...], expected: list[str]
) -> None:
    login(client, *roles)
    labels = [label for _, label, _ in client.get(reverse("home")).context["nav"]]
    assert [label for label in labels if label in ("Approvals", "Settings")] == expected


# --- approvals list -----------------------------------------------------------------------


def test_the_list_shows_pending_requests_in_priority_order_with_their_figures(client: Client) -> None:
    small = request_for(credit_hold_order(total="12000.00", limit="10000.00"))
    large = request_for(credit_hold_order(total="60000.00", limit="10000.00"))
    login(client, FINANCE)

    response = client.get(reverse("approvals"))

    assert response.status_code == 200
    rows = response.context["page"].rows
    assert [item.approval.pk for item in rows] == [large.pk, small.pk]
    assert [(item.approval.policy.approvers_required, item.approvals_so_far) for item in rows] == [
        (2, 0),
        (1, 0),
    ]
    page = text(response)
    assert "60,000.00" in page and "50,000.01" in page
    assert "0 of 2 approvals" in page and "0 of 1 approval" in page
    assert order_of(large).external_id in page
    assert "intake" in page  # requested by the system that raised it


def test_the_list_pages_by_keyset_and_filters_by_kind(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "PAGE_SIZE", 2)
    requests = [request_for(credit_hold_order(total=f"{11000 + n * 1000}.00")) for n in range(3)]
    login(client, FINANCE)

    first = client.get(reverse("approvals"))
    first_ids = [item.approval.pk for item in first.context["page"].rows]
    token = first.context["page"].next_token
    second = client.get(reverse("approvals"), {"after": token})
    second_ids = [item.approval.pk for item in second.context["page"].rows]

    assert first_ids + second_ids == [r.pk for r in reversed(requests)]
    assert second.context["page"].next_token == ""
    assert client.get(reverse("approvals"), {"kind": "high_value_release"}).context["page"].rows == []
    bad = client.get(reverse("approvals"), {"after": "not-a-cursor"})
    assert bad.status_code == 400
    assert "This page link is not valid" in text(bad)


def test_decided_recently_lists_the_final_decision(client: Client) -> None:
    request = request_for(credit_hold_order())
    fiona = login(client, FINANCE, name="fiona")
    decide(client, request, "reject", "Customer in dispute.")

    response = client.get(reverse("approvals"), {"view": "decided"})

    [row] = response.context["page"].rows
    assert (row.pk, row.status, row.final_decision.approver) == (request.pk, "rejected", fiona)
    assert "Customer in dispute." in text(response)
    assert client.get(reverse("approvals")).context["page"].rows == []


def _list_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_approvals_list_runs_a_fixed_number_of_queries(client: Client) -> None:
    login(client, FINANCE)
    for _ in range(3):
        request_for(credit_hold_order())
    three = _list_queries(client, reverse("approvals"))
    for _ in range(27):
        request_for(credit_hold_order())
    assert len(client.get(reverse("approvals")).context["page"].rows) == 30
    assert _list_queries(client, reverse("approvals")) == three


# --- deciding -----------------------------------------------------------------------------


def test_finance_approves_a_credit_hold_and_the_order_moves_on_to_allocation(client: Client) -> None:
    order = credit_hold_order(total="12000.00", limit="10000.00")
    request = request_for(order)
    fiona = login(client, FINANCE, name="fiona")

    page = client.get(reverse("approval", args=[request.pk]))
    assert page.status_code == 200
    exposure = {row.label: [cell.value for cell in row.cells] for row in page.context["exposure"].rows}
    assert exposure["Credit limit"] == [Decimal("10000.00"), Decimal("10000.00")]
    assert exposure["This order"] == [Decimal("12000.00"), Decimal("12000.00")]
    assert exposure["Exposure"] == [Decimal("12000.00"), Decimal("12000.00")]
    assert [(c.value, c.over) for c in page.context["exposure"].rows[-1].cells] == [
        (Decimal("2000.00"), True),
        (Decimal("2000.00"), True),
    ]
    assert "2,000.00 over" in text(page)
    assert 'value="approve"' in text(page)

    response = decide(client, request, "approve", "Customer paid by wire.")

    assert response.status_code == 302
    assert response["Location"] == reverse("approval", args=[request.pk])
    assert order_of(request).status == Status.RELEASED
    transitions = list(
        order_of(request).transitions.order_by("at", "id").values_list("transition", flat=True)
    )
    assert transitions[-3:] == ["release_credit_hold", "allocate_in_full", "release"]
    decision = ApprovalDecision.objects.get(request=request)
    assert (decision.approver, decision.decision, decision.comment) == (
        fiona,
        "approve",
        "Customer paid by wire.",
    )
    after = client.get(response["Location"])
    assert messages_of(after) == [f"Approved. Order {order.external_id} is now “Released to warehouse”."]
    assert "nothing left to decide" in text(after)
    assert 'value="approve"' not in text(after)


def test_a_requester_cannot_approve_their_own_request(client: Client) -> None:
    fiona = login(client, FINANCE, name="fiona")
    request = request_for(credit_hold_order(), requested_by=fiona)

    page = client.get(reverse("approval", args=[request.pk]))
    assert 'value="approve"' not in text(page)
    assert "You raised this request; someone else must decide it." in text(page)

    before = written()
    response = decide(client, request, "approve", "Looks fine to me.")

    assert response.status_code == 403
    assert "You raised this request; someone else must decide it." in text(response)
    assert written() == before
    assert order_of(request).status == Status.CREDIT_HOLD


def test_a_rejection_needs_a_comment_and_changes_nothing_without_one(client: Client) -> None:
    login(client, FINANCE)
    request = request_for(credit_hold_order())
    before = written()

    response = decide(client, request, "reject", "   ")

    assert response.status_code == 422
    assert "Required to reject." in text(response)
    assert written() == before


def test_a_two_approver_band_needs_two_different_people(client: Client) -> None:
    request = request_for(credit_hold_order(total="60000.00", limit="10000.00"))
    order = order_of(request)
    login(client, FINANCE, name="fiona")

    first = decide(client, request, "approve", "First look: fine.")
    assert first.status_code == 302
    assert messages_of(client.get(first["Location"])) == [
        f"Your approval is recorded (1 of 2). Order {order.external_id} stays “Credit hold” until a "
        "second, different approver decides."
    ]
    assert order_of(request).status == Status.CREDIT_HOLD
    listed = client.get(reverse("approvals")).context["page"].rows
    assert [(item.approval.pk, item.approvals_so_far) for item in listed] == [(request.pk, 1)]

    again = client.get(reverse("approval", args=[request.pk]))
    assert 'value="approve"' not in text(again)
    assert "You have taken part in a decision on this request already" in text(again)
    before = written()
    twice = decide(client, request, "approve", "Me again.")
    assert twice.status_code == 403
    assert "You have taken part in a decision on this request already" in text(twice)
    assert written() == before

    login(client, FINANCE, name="frank")
    second = decide(client, request, "approve", "Second look: fine.")
    assert second.status_code == 302
    # 60,000 is above the high-value threshold: allocated, the order now waits for release approval.
    assert messages_of(client.get(second["Location"])) == [
        f"Approved. Order {order.external_id} is now “Awaiting release approval”."
    ]
    assert order_of(request).status == Status.AWAITING_RELEASE
    listed = client.get(reverse("approvals")).context["page"].rows
    assert [(item.approval.order_id, item.approval.kind) for item in listed] == [
        (order.pk, "high_value_release")
    ]
    assert list(
        ApprovalDecision.objects.filter(request=request)
        .order_by("id")
        .values_list("approver__username", "decision")
    ) == [("fiona", "approve"), ("frank", "approve")]


def test_an_admin_may_view_but_not_decide_without_being_an_approver(client: Client) -> None:
    request = request_for(credit_hold_order())
    login(client, ADMIN)

    page = client.get(reverse("approval", args=[request.pk]))

    assert page.status_code == 200
    assert 'value="approve"' not in text(page)
    assert "Only members of finance, or their delegates, may decide this request" in text(page)


# --- delegations ------------------------------------------------------------------------


def test_a_delegate_named_on_the_screen_decides_within_the_window_only(client: Client) -> None:
    fiona = login(client, FINANCE, name="fiona")
    dana = factories.user("dana")  # no role of her own
    request = request_for(credit_hold_order())

    response = client.post(
        reverse("delegations"),
        {"delegate": dana.pk, "starts_on": "2026-03-02", "ends_on": "2026-03-04", "reason": "Holiday"},
    )

    assert response.status_code == 302
    delegation = Delegation.objects.get()
    assert (delegation.delegator, delegation.delegate, delegation.starts_on, delegation.ends_on) == (
        fiona,
        dana,
        date(2026, 3, 2),
        date(2026, 3, 4),
    )
    assert (delegation.reason, delegation.created_by) == ("Holiday", fiona)
    assert messages_of(client.get(response["Location"])) == [
        "dana stands in for fiona from 2026-03-02 to 2026-03-04."
    ]

    client.force_login(dana)
    page = client.get(reverse("approval", args=[request.pk]))
    assert page.status_code == 200
    assert "You decide on behalf of <strong>fiona</strong>" in text(page)
    decided = decide(client, request, "approve", "For Fiona.")
    assert decided.status_code == 302
    assert messages_of(client.get(decided["Location"])) == [
        f"Approved on behalf of fiona. Order {order_of(request).external_id} is now “Released to warehouse”."
    ]
    decision = ApprovalDecision.objects.get(request=request)
    assert (decision.approver, decision.on_behalf_of) == (dana, fiona)

    clock.advance(timedelta(days=3))  # Thursday: the window ended on Wednesday
    assert client.get(reverse("approvals")).status_code == 403
    assert client.get(reverse("approval", args=[request.pk])).status_code == 403


def test_an_invalid_delegation_is_refused_with_errors_and_nothing_saved(client: Client) -> None:
    fiona = login(client, FINANCE, name="fiona")
    dana = factories.user("dana")

    backwards = client.post(
        reverse("delegations"), {"delegate": dana.pk, "starts_on": "2026-03-05", "ends_on": "2026-03-04"}
    )
    to_self = client.post(
        reverse("delegations"), {"delegate": fiona.pk, "starts_on": "2026-03-05", "ends_on": "2026-03-06"}
    )

    assert backwards.status_code == 422
    assert "The delegation must end on or after the day it starts." in text(backwards)
    assert to_self.status_code == 422
    assert "Select a valid choice" in text(to_self)  # finance never sees themselves as delegate
    assert not Delegation.objects.exists()


def test_finance_sees_their_own_delegations_and_an_admin_names_any_approvers_delegate(client: Client) -> None:
    fiona = factories.user("fiona", FINANCE)
    frank = factories.user("frank", FINANCE)
    dana = factories.user("dana")
    login(client, ADMIN)

    response = client.post(
        reverse("delegations"),
        {"delegator": frank.pk, "delegate": dana.pk, "starts_on": "2026-03-02", "ends_on": "2026-03-02"},
    )

    assert response.status_code == 302
    assert Delegation.objects.get().delegator == frank
    client.force_login(fiona)
    assert client.get(reverse("delegations")).context["rows"] == []
    client.force_login(frank)
    assert [d.delegate for d in client.get(reverse("delegations")).context["rows"]] == [dana]


# --- escalation rules -----------------------------------------------------------------------

RULE = {
    "name": "Planning unclaimed 1 h",
    "is_active": "on",
    "queue": "",
    "kind": "",
    "type": "",
    "customer_tier": "",
    "min_revenue": "",
    "max_revenue": "",
    "trigger": "unclaimed_for",
    "trigger_value": "60",
    "raise_level": "on",
    "move_to": "",
    "notify": "team",
    "notify_user": "",
}


def rule_form(**changes: object) -> dict[str, object]:
    data = {**RULE, "queue": Queue.objects.get(slug="planning").pk}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_the_preview_lists_the_matching_items_and_saves_nothing(client: Client) -> None:
    early = open_item("Early planning item", revenue="500.00")
    rich = open_item("Rich planning item", revenue="90000.00")
    open_item("Customer service item", queue="customer-service")
    clock.advance(timedelta(minutes=30))
    open_item("Fresh planning item")
    clock.advance(timedelta(minutes=45))  # the first three are 75 minutes old, the last 45
    login(client, ADMIN)
    before = (EscalationRule.objects.count(), RuleFiring.objects.count())
    levels = list(WorkItem.objects.order_by("pk").values_list("escalation_level", "priority_key"))

    response = client.post(reverse("settings-rule-preview"), rule_form(), **HTMX)

    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview.count == 2
    assert [item.pk for item in preview.items] == [rich.pk, early.pk]
    page = text(response)
    assert "<html" not in page  # a fragment for htmx
    assert reverse("work-item", args=[rich.pk]) in page and reverse("work-item", args=[early.pk]) in page
    assert "Customer service item" not in page and "Fresh planning item" not in page
    assert "Nothing was saved." in page
    without_js = client.post(reverse("settings-rule-preview"), rule_form())  # the button's formaction
    assert without_js.status_code == 200
    assert "<html" in text(without_js) and "would fire now on <strong>2</strong> open items" in text(
        without_js
    )
    assert (EscalationRule.objects.count(), RuleFiring.objects.count()) == before
    assert list(WorkItem.objects.order_by("pk").values_list("escalation_level", "priority_key")) == levels


def test_a_preview_of_an_invalid_definition_says_what_is_wrong(client: Client) -> None:
    login(client, ADMIN)

    response = client.post(reverse("settings-rule-preview"), rule_form(trigger_value="0"), **HTMX)

    assert response.status_code == 422
    assert "N: Give the number of minutes, more than 0." in text(response)
    assert not EscalationRule.objects.exists()


def test_the_preview_of_a_saved_rule_skips_items_it_fired_on(client: Client) -> None:
    fired = open_item("Fired on already")
    clock.advance(timedelta(hours=2))
    login(client, ADMIN)
    planning = Queue.objects.get(slug="planning")
    rule = escalation.rule_save(
        data={"name": "Saved", "trigger": "unclaimed_for", "trigger_value": 60, "queue": planning},
        actor=Actor.named("test"),
    )
    escalation.escalations_evaluate()
    assert RuleFiring.objects.filter(rule=rule, item=fired).exists()
    waiting = open_item("Not yet")
    clock.advance(timedelta(hours=2))

    response = client.post(
        reverse("settings-rule-preview-saved", args=[rule.pk]), rule_form(name="Saved"), **HTMX
    )

    assert [item.pk for item in response.context["preview"].items] == [waiting.pk]
    assert EscalationRule.objects.get(pk=rule.pk).name == "Saved"


def test_an_invalid_rule_is_refused_with_field_errors_and_nothing_saved(client: Client) -> None:
    login(client, ADMIN)

    response = client.post(reverse("settings-rule-new"), rule_form(name="", notify="user"))

    assert response.status_code == 422
    errors = response.context["form"].errors
    assert errors["name"] == ["Give the rule a name."]
    assert errors["notify_user"] == ["Name the user to notify."]
    assert not EscalationRule.objects.exists()


def test_a_valid_rule_is_saved_listed_and_shows_its_firings(client: Client) -> None:
    admin = login(client, ADMIN)
    item = open_item("Waiting planning item")
    clock.advance(timedelta(hours=2))

    response = client.post(reverse("settings-rule-new"), rule_form(notify="user", notify_user=admin.pk))

    rule = EscalationRule.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("settings-rule", args=[rule.pk])
    assert (rule.name, rule.queue.slug, rule.trigger, rule.trigger_value, rule.raise_level) == (
        "Planning unclaimed 1 h",
        "planning",
        "unclaimed_for",
        60,
        True,
    )
    assert (rule.notify, rule.notify_user) == ("user", admin)
    listed = text(client.get(reverse("settings-rules")))
    assert "Planning unclaimed 1 h" in listed
    assert "Planning · unclaimed for 60 min" not in listed  # match and trigger are separate columns
    assert "unclaimed for 60 min" in listed and f"raise level, notify {admin.username}" in listed

    escalation.escalations_evaluate()
    page = client.get(reverse("settings-rule", args=[rule.pk]))
    assert [(f.item_id, f.level) for f in page.context["firings"]] == [(item.pk, 0)]
    assert reverse("work-item", args=[item.pk]) in text(page)
    rows = client.get(reverse("settings-rules")).context["rows"]
    assert [(r.firings_count, r.last_fired) for r, _ in rows] == [(1, MONDAY_9 + timedelta(hours=2))]


def test_editing_a_rule_keeps_it_and_an_invalid_edit_changes_nothing(client: Client) -> None:
    login(client, ADMIN)
    client.post(reverse("settings-rule-new"), rule_form())
    rule = EscalationRule.objects.get()
    url = reverse("settings-rule", args=[rule.pk])

    assert client.post(url, rule_form(trigger="past_sla", trigger_value="0")).status_code == 302
    bad = client.post(url, rule_form(move_to=Queue.objects.get(slug="planning").pk))

    assert bad.status_code == 422
    assert bad.context["form"].errors["move_to"] == ["Move to a queue other than the one the rule watches."]
    rule.refresh_from_db()
    assert (rule.trigger, rule.move_to) == ("past_sla", None)


def test_deleting_a_rule_asks_first_and_then_deletes(client: Client) -> None:
    login(client, ADMIN)
    rule = escalation.rule_save(data={"name": "Old", "trigger": "past_sla"}, actor=Actor.named("test"))
    url = reverse("settings-rule-delete", args=[rule.pk])

    confirm = client.get(url)
    assert confirm.status_code == 200 and "Delete rule “Old”?" in text(confirm)
    assert EscalationRule.objects.filter(pk=rule.pk).exists()

    response = client.post(url)
    assert response.status_code == 302
    assert not EscalationRule.objects.filter(pk=rule.pk).exists()


def test_the_rules_list_runs_a_fixed_number_of_queries(client: Client) -> None:
    login(client, ADMIN)
    item = open_item("Item")
    clock.advance(timedelta(hours=2))
    queues = list(Queue.objects.order_by("pk"))

    def rules(start: int, stop: int) -> None:
        for n in range(start, stop):
            escalation.rule_save(
                data={
                    "name": f"Rule {n:02d}", "trigger": "unclaimed_for", "trigger_value": 60 + n,
                    "queue": queues[n % 2], "move_to": queues[2 + n % 2], "notify": "user",
                    "notify_user": User.objects.get(), "raise_level": False,
                },
                actor=Actor.named("test"),
            )  # fmt: skip

    rules(0, 3)
    escalation.escalations_evaluate()
    three = _list_queries(client, reverse("settings-rules"))
    rules(3, 30)
    assert len(client.get(reverse("settings-rules")).context["rows"]) == 30
    assert RuleFiring.objects.filter(item=item).exists()
    assert _list_queries(client, reverse("settings-rules")) == three


# --- queues ------------------------------------------------------------------------------


def test_an_admin_creates_and_edits_a_queue(client: Client) -> None:
    login(client, ADMIN)
    team = Group.objects.get(name=PLANNER)

    created = client.post(
        reverse("settings-queue-new"),
        {
            "slug": "returns",
            "name": "Returns",
            "team": team.pk,
            "description": "RMAs",
            "warning_shares": "75, 50",
        },
    )

    assert created.status_code == 302
    queue = Queue.objects.get(slug="returns")
    assert (queue.name, queue.team, queue.description, queue.warning_shares) == (
        "Returns",
        team,
        "RMAs",
        [50, 75],
    )
    edited = client.post(
        reverse("settings-queue", args=[queue.pk]),
        {"slug": "other", "name": "Returns and claims", "team": team.pk, "warning_shares": "50, 75, 100"},
    )
    assert edited.status_code == 302
    queue.refresh_from_db()
    assert (queue.slug, queue.name, queue.warning_shares) == ("returns", "Returns and claims", [50, 75, 100])
    assert "Returns and claims" in text(client.get(reverse("settings-queues")))


def test_an_invalid_queue_is_refused_with_errors_and_nothing_changed(client: Client) -> None:
    login(client, ADMIN)
    queue = Queue.objects.get(slug="planning")
    before = list(Queue.objects.order_by("pk").values())

    shares = client.post(
        reverse("settings-queue", args=[queue.pk]),
        {"name": "Planning!", "team": queue.team_id, "warning_shares": "50, 150"},
    )
    not_numbers = client.post(
        reverse("settings-queue", args=[queue.pk]),
        {"name": "Planning!", "team": queue.team_id, "warning_shares": "half"},
    )
    taken = client.post(
        reverse("settings-queue-new"),
        {"slug": "planning", "name": "Second planning", "team": queue.team_id, "warning_shares": "50"},
    )

    assert shares.status_code == 422
    assert shares.context["form"].errors["warning_shares"] == ["Give whole percentages between 1 and 100."]
    assert not_numbers.context["form"].errors["warning_shares"] == ["'half' is not a whole percentage."]
    assert taken.status_code == 422
    assert taken.context["form"].errors["slug"] == ["Queue with this Slug already exists."]
    assert list(Queue.objects.order_by("pk").values()) == before


def test_queue_save_checks_the_role_the_slug_and_the_model_rules() -> None:
    queue = Queue.objects.get(slug="planning")
    planner = factories.user("pia", PLANNER)
    admin = factories.user("ada", ADMIN)

    with pytest.raises(PermissionDenied):
        config.queue_save(queue=queue, actor=Actor.of(planner))
    queue.slug = "planning-2"
    with pytest.raises(InvalidInput) as renamed:
        config.queue_save(queue=queue, actor=Actor.of(admin))
    assert renamed.value.fields == {"slug": ["Keep 'planning': links and code refer to it."]}
    queue.slug, queue.warning_shares = "planning", [0]
    with pytest.raises(InvalidInput) as shares:
        config.queue_save(queue=queue, actor=Actor.of(admin))
    assert shares.value.fields == {"warning_shares": ["Give whole percentages between 1 and 100."]}
    assert Queue.objects.get(pk=queue.pk).warning_shares == [50, 75, 100]


# --- calendars ---------------------------------------------------------------------------


def test_an_admin_edits_a_teams_calendar_and_its_holidays(client: Client) -> None:
    login(client, ADMIN)
    team = Group.objects.get(name=PLANNER)
    url = reverse("settings-calendar", args=[team.pk])

    saved = client.post(
        url,
        {"time_zone": "Europe/London", "working_days": ["1", "2", "3", "4", "5", "6"], "day_starts": "07:00",
         "day_ends": "15:30"},
    )  # fmt: skip
    added = client.post(
        reverse("settings-holiday-add", args=[team.pk]), {"date": "2026-12-25", "name": "Christmas"}
    )

    assert (saved.status_code, added.status_code) == (302, 302)
    calendar = BusinessCalendar.objects.get(team=team)
    assert (calendar.time_zone, calendar.working_days, calendar.day_starts, calendar.day_ends) == (
        "Europe/London",
        [1, 2, 3, 4, 5, 6],
        time(7),
        time(15, 30),
    )
    holiday = Holiday.objects.get(calendar=calendar)
    assert (holiday.date, holiday.name) == (date(2026, 12, 25), "Christmas")
    assert "Christmas" in text(client.get(reverse("settings-calendars")))

    removed = client.post(reverse("settings-holiday-delete", args=[team.pk, holiday.pk]))
    assert removed.status_code == 302
    assert not Holiday.objects.filter(calendar=calendar).exists()


def test_invalid_calendar_changes_are_refused_with_errors_and_nothing_changed(client: Client) -> None:
    login(client, ADMIN)
    team = Group.objects.get(name=PLANNER)
    calendar = BusinessCalendar.objects.get(team=team)
    Holiday.objects.create(calendar=calendar, date=date(2026, 12, 25), name="Christmas")
    before = list(BusinessCalendar.objects.filter(pk=calendar.pk).values())

    hours = client.post(
        reverse("settings-calendar", args=[team.pk]),
        {"time_zone": "UTC", "working_days": ["1"], "day_starts": "18:00", "day_ends": "08:00"},
    )
    no_days = client.post(
        reverse("settings-calendar", args=[team.pk]),
        {"time_zone": "UTC", "day_starts": "08:00", "day_ends": "18:00"},
    )
    twice = client.post(
        reverse("settings-holiday-add", args=[team.pk]), {"date": "2026-12-25", "name": "Xmas"}
    )

    assert hours.status_code == 422
    assert hours.context["form"].errors["day_ends"] == ["The working day must end after it starts."]
    assert no_days.context["form"].errors["working_days"] == ["This field is required."]
    assert twice.status_code == 422
    assert "2026-12-25 is a holiday already (Christmas)." in text(twice)
    assert list(BusinessCalendar.objects.filter(pk=calendar.pk).values()) == before
    assert list(Holiday.objects.values_list("name", flat=True)) == ["Christmas"]


def test_a_team_without_a_calendar_gets_one(client: Client) -> None:
    login(client, ADMIN)
    team = Group.objects.create(name="returns")

    page = client.get(reverse("settings-calendar", args=[team.pk]))
    assert "no calendar yet" in text(page)
    response = client.post(
        reverse("settings-calendar", args=[team.pk]),
        {"time_zone": "UTC", "working_days": ["1", "2"], "day_starts": "09:00", "day_ends": "17:00"},
    )

    assert response.status_code == 302
    assert BusinessCalendar.objects.get(team=team).working_days == [1, 2]


# --- SLA targets -------------------------------------------------------------------------


def formset_data(formset: BaseFormSet) -> dict[str, object]:
    """What the browser posts for the formset as shown."""
    data: dict[str, object] = {
        f"{formset.prefix}-TOTAL_FORMS": len(formset.forms),
        f"{formset.prefix}-INITIAL_FORMS": formset.initial_form_count(),
        f"{formset.prefix}-MIN_NUM_FORMS": 0,
        f"{formset.prefix}-MAX_NUM_FORMS": 1000,
    }
    for form in formset.forms:
        for name in form.fields:
            value = form[name].value()
            if value is None or value is False:
                continue
            data[form.add_prefix(name)] = "on" if value is True else value
    return data


def sla_post(
    client: Client, types: dict[str, dict[str, object]], states: dict[str, dict[str, object]]
) -> Any:
    page = client.get(reverse("settings-sla"))
    data = {**formset_data(page.context["types"]), **formset_data(page.context["deadlines"])}
    for form in page.context["types"].forms:
        for name, value in types.get(form.instance.code, {}).items():
            data[form.add_prefix(name)] = value
    for form in page.context["deadlines"].forms:
        for name, value in states.get(form.instance.state, {}).items():
            data[form.add_prefix(name)] = value
    return client.post(reverse("settings-sla"), data)


def test_an_admin_edits_exception_types_and_state_deadlines_on_one_screen(client: Client) -> None:
    login(client, ADMIN)
    cs = Queue.objects.get(slug="customer-service")

    response = sla_post(
        client,
        {"inventory_shortfall": {"sla_minutes": 300, "severity": 3, "default_queue": cs.pk,
                                 "reason_codes": "stock_arrived, cancelled"}},
        {"received": {"max_minutes": 45}, "credit_check": {"DELETE": "on"}},
    )  # fmt: skip

    assert response.status_code == 302
    shortfall = ExceptionType.objects.get(code="inventory_shortfall")
    assert (shortfall.sla_minutes, shortfall.severity, shortfall.default_queue, shortfall.reason_codes) == (
        300,
        3,
        cs,
        ["stock_arrived", "cancelled"],
    )
    assert StateDeadline.objects.get(state="received").max_minutes == 45
    assert not StateDeadline.objects.filter(state="credit_check").exists()


def test_invalid_sla_targets_are_refused_with_errors_and_nothing_changed(client: Client) -> None:
    login(client, ADMIN)
    types_before = list(ExceptionType.objects.order_by("pk").values())
    deadlines_before = list(StateDeadline.objects.order_by("pk").values())

    response = sla_post(
        client,
        {"inventory_shortfall": {"sla_minutes": 300}, "pick_short": {"reason_codes": "ok, auto_cleared"}},
        {"received": {"max_minutes": 0}, "credit_check": {"DELETE": "on"}},
    )

    assert response.status_code == 422
    page = text(response)
    assert "Nothing was saved" in page
    assert "&#x27;auto_cleared&#x27; is reserved for the system." in page
    deadline_errors = [f.errors for f in response.context["deadlines"].forms if f.errors]
    assert deadline_errors == [{"max_minutes": ["Ensure this value is greater than or equal to 1."]}]
    assert list(ExceptionType.objects.order_by("pk").values()) == types_before
    assert list(StateDeadline.objects.order_by("pk").values()) == deadlines_before


# --- approval policies ----------------------------------------------------------------------

POLICY = {
    "kind": "high_value_release",
    "name": "High-value release 10,000 to 24,999.99",
    "min_amount": "10000.00",
    "max_amount": "24999.99",
    "approvers_required": "1",
    "reject_action": "hold",
    "sla_minutes": "120",
    "is_active": "on",
}


def test_an_admin_adds_and_edits_approval_policies(client: Client) -> None:
    login(client, ADMIN)
    finance = Group.objects.get(name=FINANCE)

    created = client.post(reverse("settings-policy-new"), {**POLICY, "approver_group": finance.pk})

    assert created.status_code == 302
    policy = ApprovalPolicy.objects.get(name=POLICY["name"])
    assert (policy.min_amount, policy.max_amount, policy.approvers_required, policy.reject_action) == (
        Decimal("10000.00"),
        Decimal("24999.99"),
        1,
        "hold",
    )
    edited = client.post(
        reverse("settings-policy", args=[policy.pk]),
        {**POLICY, "approver_group": finance.pk, "approvers_required": "2"},
    )
    assert edited.status_code == 302
    assert ApprovalPolicy.objects.get(pk=policy.pk).approvers_required == 2
    assert POLICY["name"] in text(client.get(reverse("settings-policies")))


def test_an_overlapping_band_is_refused_with_a_clear_error_and_nothing_saved(client: Client) -> None:
    login(client, ADMIN)
    finance = Group.objects.get(name=FINANCE)
    before = list(ApprovalPolicy.objects.order_by("pk").values())
    existing = ApprovalPolicy.objects.get(name="High-value release 25,000 to 100,000")

    new = client.post(
        reverse("settings-policy-new"), {**POLICY, "max_amount": "30000.00", "approver_group": finance.pk}
    )
    widened = client.post(
        reverse("settings-policy", args=[existing.pk]),
        {**POLICY, "name": existing.name, "min_amount": "25000.00", "max_amount": "200000.00",
         "approver_group": finance.pk},
    )  # fmt: skip

    assert new.status_code == 422
    assert new.context["form"].errors["min_amount"] == [
        "The band 10,000.00 to 30,000.00 overlaps policy 'High-value release 25,000 to 100,000' "
        "(25,000.00 to 100,000.00) of the same kind; bands must not overlap."
    ]
    assert widened.status_code == 422
    assert "overlaps policy &#x27;High-value release above 100,000&#x27;" in text(widened)
    assert list(ApprovalPolicy.objects.order_by("pk").values()) == before


def test_an_approver_back_early_ends_the_delegation_on_the_screen(client: Client) -> None:
    fiona = login(client, FINANCE, name="fiona")
    dana = factories.user("dana")
    client.post(
        reverse("delegations"),
        {"delegate": dana.pk, "starts_on": "2026-03-02", "ends_on": "2026-03-06", "reason": "Holiday"},
    )
    delegation = Delegation.objects.get()
    end = reverse("delegation-end", args=[delegation.pk])
    assert f'action="{end}"' in client.get(reverse("delegations")).content.decode()

    response = client.post(end)

    assert response.status_code == 302
    page = client.get(response["Location"])
    assert messages_of(page) == ["dana no longer stands in for fiona."]
    assert "ended early" in text(page) and f'action="{end}"' not in page.content.decode()
    assert (Delegation.objects.get().ended_at, Delegation.objects.get().ended_by) == (MONDAY_9, fiona)
    client.force_login(dana)
    assert client.get(reverse("approval", args=[request_for(credit_hold_order()).pk])).status_code == 403

    client.force_login(fiona)
    again = client.post(end)
    assert messages_of(client.get(again["Location"])) == [
        "This delegation was ended already, at 2026-03-02 09:00."
    ]


def test_only_the_approver_or_an_admin_ends_a_delegation(client: Client) -> None:
    fiona, dana = factories.user("fiona", FINANCE), factories.user("dana")
    delegation = approvals_services.delegation_create(
        delegator=fiona,
        delegate=dana,
        starts_on=date(2026, 3, 2),
        ends_on=date(2026, 3, 6),
        reason="",
        actor=Actor.of(fiona),
    )
    end = reverse("delegation-end", args=[delegation.pk])
    login(client, FINANCE, name="frank")
    assert client.post(end).status_code == 403
    assert client.get(end).status_code == 405
    assert client.post(reverse("delegation-end", args=[delegation.pk + 1])).status_code == 404
    assert Delegation.objects.get().ended_at is None

    login(client, ADMIN)
    assert client.post(end).status_code == 302
    assert Delegation.objects.get().ended_at == MONDAY_9
