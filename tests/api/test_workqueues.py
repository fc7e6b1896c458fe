"""Work queues through the API: queues with counts, items in rank order with the reason,
claim next, claim, release, resolve, comments."""

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from exceptions.models import OrderException
from fulfillment.core import clock, workqueue
from fulfillment.core.models import WorkItem, WorkItemEvent
from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, FINANCE, PLANNER
from orders.models import Order, Tier
from tests import factories
from tests.api.conftest import Caller, assert_problem, token_caller
from tests.api.work_support import (
    CS_TYPE,
    MONDAY_9,
    PLANNING_REASON,
    PLANNING_TYPE,
    SYSTEM,
    UTC,
    approval_request,
    exception_item,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _setup() -> Iterator[None]:
    factories.migration_data()
    with clock.frozen(MONDAY_9):
        yield


@pytest.fixture
def planner() -> Caller:
    return token_caller(PLANNER)


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def events(item: WorkItem) -> list[str]:
    return list(WorkItemEvent.objects.filter(item=item).order_by("at", "id").values_list("action", flat=True))


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


# --- queues -------------------------------------------------------------------------------


def test_the_queues_of_the_callers_team_with_their_counts(planner: Caller) -> None:
    with clock.frozen(MONDAY_9 - timedelta(days=3)):  # Friday: its 120-minute SLA has run out
        breached = exception_item()
    mine, snoozed, _unclaimed = exception_item(), exception_item(), exception_item()
    workqueue.work_item_claim(item=mine, user=planner.user)
    workqueue.work_item_snooze(item=snoozed, until=MONDAY_9 + timedelta(hours=2), user=planner.user)
    exception_item("integration_sync_failed")
    exception_item(CS_TYPE)  # another team's

    body = planner.get("/api/v1/queues/").json()

    assert body == {
        "next": None,
        "previous": None,
        "results": [
            {
                "slug": "integration", "name": "Integration", "team": "planner",
                "description": "Messages to or from ERP, WMS and carriers that failed.",
                "warning_shares": [50, 75, 100], "open": 1, "unclaimed": 1, "breached": 0, "mine": 0,
            },
            {
                "slug": "planning", "name": "Planning", "team": "planner",
                "description": "Shortfalls, short picks, carrier bookings and stalled orders.",
                "warning_shares": [50, 75, 100], "open": 4, "unclaimed": 2, "breached": 1, "mine": 1,
            },
        ],
    }  # fmt: skip
    assert breached.sla_due_at < MONDAY_9


def test_an_admin_sees_every_queue() -> None:
    slugs = [q["slug"] for q in token_caller(ADMIN).get("/api/v1/queues/").json()["results"]]
    assert slugs == ["customer-service", "finance-approvals", "integration", "invoicing", "planning"]


def test_the_counts_are_one_query_whatever_the_number_of_items(planner: Caller) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert planner.get("/api/v1/queues/").status_code == 200
        return len(captured)

    exception_item()
    queries()  # the token's first use is recorded once a minute
    few = queries()
    for _ in range(8):
        exception_item("integration_sync_failed")
        exception_item()
    assert queries() == few


def test_one_queue(planner: Caller) -> None:
    exception_item()
    assert planner.get("/api/v1/queues/planning/").json()["open"] == 1
    assert_problem(planner.get("/api/v1/queues/customer-service/"), 403, "permission_denied")
    assert_problem(planner.get("/api/v1/queues/nope/"), 404, "not_found")


# --- the items in rank order ------------------------------------------------------------------


def test_items_come_in_rank_order_with_the_reason(planner: Caller) -> None:
    later_small = exception_item(total="100.00", promised_in_days=5)
    later_big = exception_item(total="10000.00", promised_in_days=5)
    sooner_small = exception_item(total="100.00", promised_in_days=1)
    key_customer = exception_item(total="1000.00", tier=Tier.KEY, promised_in_days=5)

    response = planner.get("/api/v1/work-items/")

    # Ten times the revenue is worth a day (a key customer half a day); a promise four days
    # sooner is worth 96 hours.
    assert ids(response) == [sooner_small.pk, later_big.pk, key_customer.pk, later_small.pk]
    row = response.json()["results"][2]
    order = Order.objects.get(external_id=key_customer.subject_ref)
    promised = datetime.combine(date(2026, 3, 7), time.max, tzinfo=UTC)
    assert row == {
        "id": key_customer.pk, "queue": "planning", "kind": "exception", "type": PLANNING_TYPE,
        "type_label": "Carrier booking failed", "title": f"Carrier booking failed on {order.external_id}",
        "state": "open", "order_id": order.pk, "order": order.external_id,
        "customer_code": order.customer.code, "customer_name": order.customer.name, "customer_tier": "key",
        "warehouse": "", "revenue_at_risk": "1000.00", "severity": 3, "escalation_level": 0,
        "priority_key": 108 * 3600 - int(promised.timestamp()),
        "rank": {
            "factors": [
                {"label": "Revenue at risk", "value": "1,000.00", "hours": 72.0},
                {"label": "Customer tier", "value": "key", "hours": 12.0},
                {"label": "Severity", "value": "3", "hours": 24.0},
                {"label": "Escalation level", "value": "0", "hours": 0.0},
            ],
            "weight_hours": 108.0,
            "promised_at": "2026-03-07T23:59:59.999999Z",
            "anchor": "2026-03-07T23:59:59.999999Z",
            "ranks_like": "2026-03-03T11:59:59.999999Z",
            "due": "due in 5 d",
            "overdue": False,
            "summary": "Revenue at risk 1,000.00: +72.0 h; Customer tier key: +12.0 h; Severity 3: +24.0 h; "
            "Escalation level 0: +0.0 h; Promised 2026-03-07 23:59 UTC (due in 5 d)",
        },
        "assignee": None, "claimed_at": None, "snoozed_until": None, "sla_minutes": 120,
        "sla_due_at": stamp(key_customer.sla_due_at), "sla_state": "", "created_at": stamp(MONDAY_9),
        "resolved_at": None, "resolved_by": None, "resolution_code": "", "resolution_note": "",
    }  # fmt: skip


def test_the_filters(planner: Caller) -> None:
    mine, theirs, free = exception_item(), exception_item(), exception_item()
    sync = exception_item("integration_sync_failed")
    done = exception_item()
    other = factories.user("piet", PLANNER)
    workqueue.work_item_claim(item=mine, user=planner.user)
    workqueue.work_item_claim(item=theirs, user=other)
    workqueue.work_item_resolve(item=done, reason_code=PLANNING_REASON, note="", actor=SYSTEM)
    exception_item(CS_TYPE)  # another team's queue: never listed for a planner

    def listed(**params: Any) -> set[int]:
        return set(ids(planner.get("/api/v1/work-items/", {"page_size": 200, **params})))

    assert listed() == {mine.pk, theirs.pk, free.pk, sync.pk}
    assert listed(queue="planning") == {mine.pk, theirs.pk, free.pk}
    assert listed(queue="integration", kind="exception") == {sync.pk}
    assert listed(type="integration_sync_failed") == {sync.pk}
    assert listed(kind="approval") == set()
    assert listed(status="resolved") == {done.pk}
    assert listed(assignee="me") == {mine.pk}
    assert listed(assignee="none") == {free.pk, sync.pk}
    assert listed(assignee="piet") == {theirs.pk}
    assert listed(assignee="nobody-of-that-name") == set()
    order = Order.objects.get(external_id=free.subject_ref)
    assert listed(order=order.pk) == {free.pk}
    assert listed(order=10**15) == set()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"queue": "nope"}, "queue"),
        ({"kind": "chore"}, "kind"),
        ({"status": "closed"}, "status"),
        ({"order": "SO-1"}, "order"),
        ({"order": "0"}, "order"),
        ({"order": str(2**63)}, "order"),
        ({"stauts": "open"}, "stauts"),
    ],
)
def test_a_bad_filter_answers_422(planner: Caller, params: dict[str, str], field: str) -> None:
    body = assert_problem(planner.get("/api/v1/work-items/", params), 422, "invalid_input")
    assert list(body["errors"]) == [field]


def test_another_teams_queue_is_refused(planner: Caller) -> None:
    body = assert_problem(
        planner.get("/api/v1/work-items/", {"queue": "customer-service"}), 403, "permission_denied"
    )
    assert body["detail"] == "Queue 'Customer service' belongs to team customer_service."


def test_an_admin_sees_every_queues_items_and_approvals() -> None:
    exception_item(CS_TYPE)
    approval = approval_request()
    admin = token_caller(ADMIN)
    assert len(ids(admin.get("/api/v1/work-items/"))) == 2
    assert ids(admin.get("/api/v1/work-items/", {"kind": "approval"})) == [approval.work_item_id]


def test_pages_follow_the_rank_and_survive_inserts(planner: Caller) -> None:
    items = [exception_item(total=f"{100 * 2**n}.00") for n in range(5)]
    expected = [item.pk for item in reversed(items)]  # the biggest revenue first
    seen: list[int] = []
    response = planner.get("/api/v1/work-items/", {"page_size": 2})
    seen += ids(response)
    exception_item(total="999999.00")  # ranks above everything read so far
    while response.json()["next"]:
        response = planner.get(response.json()["next"])
        seen += ids(response)
    assert seen == expected


# --- claim next -----------------------------------------------------------------------------


def test_claim_next_hands_out_the_top_item_then_the_next_then_nothing(planner: Caller) -> None:
    low, high = exception_item(total="100.00"), exception_item(total="5000.00")

    first = planner.post("/api/v1/queues/planning/claim-next/")
    second = planner.post("/api/v1/queues/planning/claim-next/")
    third = planner.post("/api/v1/queues/planning/claim-next/")

    assert first.status_code == 200 and first.json()["id"] == high.pk
    assert first.json()["assignee"] == planner.user.username
    assert first.json()["claimed_at"] == stamp(MONDAY_9)
    assert [e["action"] for e in first.json()["history"]] == ["opened", "claimed"]
    assert second.status_code == 200 and second.json()["id"] == low.pk
    assert third.status_code == 204 and third.content == b""
    assert set(WorkItem.objects.values_list("assignee", flat=True)) == {planner.user.pk}


def test_claim_next_with_the_same_idempotency_key_returns_the_same_item(planner: Caller) -> None:
    top, other = exception_item(total="5000.00"), exception_item(total="100.00")

    first = planner.post("/api/v1/queues/planning/claim-next/", key="claim-1")
    again = planner.post("/api/v1/queues/planning/claim-next/", key="claim-1")

    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again.json()["id"] == top.pk
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    other.refresh_from_db()
    assert other.assignee is None and events(other) == ["opened"]
    assert events(top) == ["opened", "claimed"]


def test_claim_next_in_another_teams_queue_is_refused(planner: Caller) -> None:
    item = exception_item(CS_TYPE)
    assert_problem(planner.post("/api/v1/queues/customer-service/claim-next/"), 403, "permission_denied")
    item.refresh_from_db()
    assert item.assignee is None and events(item) == ["opened"]
    assert_problem(planner.post("/api/v1/queues/nope/claim-next/"), 404, "not_found")


# --- one item ---------------------------------------------------------------------------------


def test_an_item_with_what_it_is_about_and_its_history(planner: Caller) -> None:
    item = exception_item()
    body = planner.get(f"/api/v1/work-items/{item.pk}/").json()
    assert body["exception"] == {
        "type": PLANNING_TYPE,
        "type_name": "Carrier booking failed",
        "reason_codes": ["rebooked", "alternate_carrier", "manual_booking", "cancelled"],
        "details": {},
        "occurrences": 1,
        "last_signal_at": stamp(MONDAY_9),
    }
    assert body["approval"] is None
    event = item.events.get()
    assert body["history"] == [
        {"id": event.pk, "action": "opened", "actor": "test", "note": "", "data": {}, "at": stamp(MONDAY_9)}
    ]


def test_another_teams_item_or_none_at_all(planner: Caller) -> None:
    item = exception_item(CS_TYPE)
    path = f"/api/v1/work-items/{item.pk}/"
    for response in [
        planner.get(path),
        planner.get(f"{path}comments/"),
        planner.post(f"{path}comments/", {"text": "hi"}),
        planner.post(f"{path}claim/"),
        planner.post(f"{path}release/"),
        planner.post(f"{path}resolve/", {"reason_code": "expedited"}),
    ]:
        assert_problem(response, 403, "permission_denied")
    assert_problem(planner.get("/api/v1/work-items/999999/"), 404, "not_found")
    item.refresh_from_db()
    assert item.assignee is None and events(item) == ["opened"]


def test_claim_and_release(planner: Caller) -> None:
    item = exception_item()
    claimed = planner.post(f"/api/v1/work-items/{item.pk}/claim/")
    again = planner.post(f"/api/v1/work-items/{item.pk}/claim/")
    assert claimed.json()["assignee"] == again.json()["assignee"] == planner.user.username
    assert events(item) == ["opened", "claimed"]

    other = token_caller(PLANNER)
    body = assert_problem(other.post(f"/api/v1/work-items/{item.pk}/claim/"), 422, "invalid_input")
    assert body["detail"] == f"Work item {item.pk} is claimed by {planner.user.username}."
    body = assert_problem(other.post(f"/api/v1/work-items/{item.pk}/release/"), 403, "permission_denied")
    assert body["detail"] == (
        f"Only the assignee may release work item {item.pk}; it is claimed by {planner.user.username}."
    )
    assert events(item) == ["opened", "claimed"]

    released = planner.post(f"/api/v1/work-items/{item.pk}/release/")
    assert released.status_code == 200 and released.json()["assignee"] is None
    assert events(item) == ["opened", "claimed", "released"]


def test_an_admin_releases_anyones_item(planner: Caller) -> None:
    item = exception_item()
    workqueue.work_item_claim(item=item, user=planner.user)
    assert token_caller(ADMIN).post(f"/api/v1/work-items/{item.pk}/release/").json()["assignee"] is None


# --- resolve ----------------------------------------------------------------------------------


def test_resolve_an_exception_with_a_reason_code(planner: Caller) -> None:
    item = exception_item()
    response = planner.post(
        f"/api/v1/work-items/{item.pk}/resolve/", {"reason_code": "rebooked", "note": "Booked with DHL."}
    )
    body = response.json()
    assert response.status_code == 200
    assert (body["state"], body["resolution_code"], body["resolution_note"]) == (
        "resolved", "rebooked", "Booked with DHL."
    )  # fmt: skip
    assert (body["resolved_by"], body["resolved_at"], body["assignee"]) == (
        planner.user.username, stamp(MONDAY_9), planner.user.username
    )  # fmt: skip
    assert body["history"][-1]["data"] == {"reason_code": "rebooked", "claimed": True}
    assert not OrderException.objects.get(pk=item.exception.pk).is_open


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"reason_code": "made_up"}, {"reason_code": ["Unknown reason code."]}),
        ({}, {"reason_code": ["This field is required."]}),
        ({"reason_code": ""}, {"reason_code": ["This field may not be blank."]}),
        (
            {"reason_code": "rebooked", "note": "x" * 2001},
            {"note": ["Ensure this field has no more than 2000 characters."]},
        ),
        ({"reason_code": 7}, {"reason_code": ["Unknown reason code."]}),
    ],
)
def test_a_bad_resolution_changes_nothing(planner: Caller, body: dict[str, Any], errors: dict) -> None:
    item = exception_item()
    problem = assert_problem(
        planner.post(f"/api/v1/work-items/{item.pk}/resolve/", body), 422, "invalid_input"
    )
    assert problem["errors"] == errors
    item.refresh_from_db()
    assert (item.state, item.assignee, item.resolution_code) == ("open", None, "")
    assert events(item) == ["opened"]


def test_an_approval_is_decided_not_resolved() -> None:
    request = approval_request()
    finance = token_caller(FINANCE)
    body = assert_problem(
        finance.post(f"/api/v1/work-items/{request.work_item_id}/resolve/", {"reason_code": "approved"}),
        409,
        "wrong_kind",
    )
    assert body["detail"] == (
        f"Work item {request.work_item_id} is an approval: decide it with "
        f"POST /api/v1/work-items/{request.work_item_id}/approve/ or /reject/."
    )
    request.work_item.refresh_from_db()
    assert request.work_item.state == "open"


def test_a_resolved_item_stays_resolved(planner: Caller) -> None:
    item = exception_item()
    planner.post(f"/api/v1/work-items/{item.pk}/resolve/", {"reason_code": "rebooked"})
    body = assert_problem(
        planner.post(f"/api/v1/work-items/{item.pk}/resolve/", {"reason_code": "cancelled"}),
        422,
        "invalid_input",
    )
    assert body["detail"] == f"Exception {item.exception.pk} is resolved already."
    item.refresh_from_db()
    assert item.resolution_code == "rebooked"


def test_someone_elses_item_is_theirs_to_resolve(planner: Caller) -> None:
    item = exception_item()
    workqueue.work_item_claim(item=item, user=factories.user("piet", PLANNER))
    assert_problem(
        planner.post(f"/api/v1/work-items/{item.pk}/resolve/", {"reason_code": "rebooked"}),
        403,
        "permission_denied",
    )
    item.refresh_from_db()
    assert item.state == "open"


# --- comments ---------------------------------------------------------------------------------


def test_comments_are_added_and_listed_oldest_first(planner: Caller) -> None:
    item = exception_item()
    first = planner.post(f"/api/v1/work-items/{item.pk}/comments/", {"text": "  Called the carrier.  "})
    clock.advance(timedelta(minutes=5))
    second = planner.post(f"/api/v1/work-items/{item.pk}/comments/", {"text": "They call back at 3."})

    assert first.status_code == 201
    assert first.json() == {
        "id": first.json()["id"], "action": "comment", "actor": planner.user.username,
        "note": "Called the carrier.", "data": {}, "at": stamp(MONDAY_9),
    }  # fmt: skip
    listed = planner.get(f"/api/v1/work-items/{item.pk}/comments/").json()
    assert listed["results"] == [first.json(), second.json()]
    assert events(item) == ["opened", "comment", "comment"]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"text": ["This field is required."]}),
        ({"text": ""}, {"text": ["This field may not be blank."]}),
        ({"text": "   "}, {"text": ["This field may not be blank."]}),
        ({"text": "x" * 4001}, {"text": ["Ensure this field has no more than 4000 characters."]}),
    ],
)
def test_a_bad_comment_is_refused(planner: Caller, body: dict[str, Any], errors: dict) -> None:
    item = exception_item()
    problem = assert_problem(
        planner.post(f"/api/v1/work-items/{item.pk}/comments/", body), 422, "invalid_input"
    )
    assert problem["errors"] == errors
    assert events(item) == ["opened"]


def test_comments_of_an_unknown_item(planner: Caller) -> None:
    assert_problem(planner.get("/api/v1/work-items/999999/comments/"), 404, "not_found")
    assert_problem(planner.post("/api/v1/work-items/999999/comments/", {"text": "hi"}), 404, "not_found")


def test_customer_service_works_its_own_queue() -> None:
    item = exception_item(CS_TYPE)
    cs = token_caller(CUSTOMER_SERVICE)
    assert ids(cs.get("/api/v1/work-items/")) == [item.pk]
    assert cs.post("/api/v1/queues/customer-service/claim-next/").json()["id"] == item.pk
