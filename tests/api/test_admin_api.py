"""What admins configure through the API: queues, escalation rules (with the preview) and
approval policies — admin role, and for tokens the admin scope."""

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from approvals.models import ApprovalPolicy
from fulfillment.core import clock
from fulfillment.core.models import EscalationRule, Queue, RuleFiring, WorkItem, WorkItemEvent
from fulfillment.core.roles import ADMIN, FINANCE, PLANNER
from tests import factories
from tests.api.conftest import Caller, assert_problem, token_caller
from tests.api.work_support import MONDAY_9, exception_item

pytestmark = pytest.mark.django_db
ALL_SCOPES = ("read", "write", "admin")


@pytest.fixture(autouse=True)
def _setup() -> Iterator[None]:
    factories.migration_data()
    with clock.frozen(MONDAY_9):
        yield


@pytest.fixture
def root() -> Caller:
    return token_caller(user=factories.user("ada", ADMIN), scopes=ALL_SCOPES)


def queues() -> list[tuple[Any, ...]]:
    return list(Queue.objects.order_by("slug").values_list("slug", "name", "team__name", "warning_shares"))


def rules() -> list[dict[str, Any]]:
    return list(EscalationRule.objects.order_by("id").values())


def policies() -> list[dict[str, Any]]:
    return list(ApprovalPolicy.objects.order_by("id").values())


def patch(caller: Caller, path: str, body: Any) -> Any:
    return caller.client.patch(
        path, body, content_type="application/json", headers={"Authorization": f"Token {caller.key}"}
    )


def delete(caller: Caller, path: str) -> Any:
    return caller.client.delete(path, headers={"Authorization": f"Token {caller.key}"})


# --- queues ---------------------------------------------------------------------------------


def test_an_admin_creates_a_queue(root: Caller) -> None:
    response = root.post(
        "/api/v1/queues/",
        {"slug": "returns", "name": "Returns", "team": "customer_service", "warning_shares": [100, 50, 50]},
    )
    assert response.status_code == 201, response.content
    assert response["Location"] == "http://testserver/api/v1/queues/returns/"
    assert response.json() == {
        "slug": "returns", "name": "Returns", "team": "customer_service", "description": "",
        "warning_shares": [50, 100], "open": 0, "unclaimed": 0, "breached": 0, "mine": 0,
    }  # fmt: skip


def test_an_admin_changes_a_queue(root: Caller) -> None:
    exception_item()
    response = patch(root, "/api/v1/queues/planning/", {"name": "Planning desk", "warning_shares": [80]})
    assert response.status_code == 200, response.content
    assert (response.json()["name"], response.json()["warning_shares"], response.json()["open"]) == (
        "Planning desk", [80], 1
    )  # fmt: skip
    assert ("planning", "Planning desk", "planner", [80]) in queues()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"slug": "planning", "name": "Again", "team": "planner"},
            {"slug": ["Queue with this Slug already exists."]},
        ),
        ({"slug": "x", "name": "X", "team": "nobody"}, {"team": ["Object with name=nobody does not exist."]}),
        (
            {"slug": "x y", "name": "X", "team": "planner"},
            {"slug": ['Enter a valid "slug" consisting of letters, numbers, underscores or hyphens.']},
        ),
        (
            {"slug": "x", "name": "X", "team": "planner", "warning_shares": [0]},
            {"warning_shares.0": ["Ensure this value is greater than or equal to 1."]},
        ),
        ({"slug": "x", "name": "", "team": "planner"}, {"name": ["This field may not be blank."]}),
    ],
)
def test_a_bad_queue_is_not_created(root: Caller, body: dict[str, Any], errors: dict) -> None:
    before = queues()
    problem = assert_problem(root.post("/api/v1/queues/", body), 422, "invalid_input")
    assert problem["errors"] == errors
    assert queues() == before


def test_a_queues_slug_cannot_change(root: Caller) -> None:
    before = queues()
    problem = assert_problem(patch(root, "/api/v1/queues/planning/", {"slug": "plan"}), 422, "invalid_input")
    assert problem["errors"] == {"slug": ["Keep 'planning': links and code refer to it."]}
    assert queues() == before
    assert_problem(patch(root, "/api/v1/queues/nope/", {"name": "X"}), 404, "not_found")


def test_queues_are_configured_by_admins_with_the_admin_scope() -> None:
    before = queues()
    body = {"slug": "returns", "name": "Returns", "team": "planner"}
    planner = token_caller(PLANNER, scopes=ALL_SCOPES)
    assert_problem(planner.post("/api/v1/queues/", body), 403, "permission_denied")
    assert_problem(patch(planner, "/api/v1/queues/planning/", {"name": "X"}), 403, "permission_denied")
    writer = token_caller(ADMIN, scopes=("read", "write"))
    problem = assert_problem(writer.post("/api/v1/queues/", body), 403, "insufficient_scope")
    assert problem["detail"] == "This token lacks the 'admin' scope."
    assert queues() == before


# --- escalation rules -----------------------------------------------------------------------

RULE = {
    "name": "Unclaimed big planning items",
    "queue": "planning",
    "min_revenue": "1000.00",
    "trigger": "unclaimed_for",
    "trigger_value": 60,
    "notify": "team",
}


def test_an_admin_creates_reads_changes_and_deletes_a_rule(root: Caller) -> None:
    created = root.post("/api/v1/escalation-rules/", RULE)
    assert created.status_code == 201, created.content
    rule = EscalationRule.objects.get()
    assert created["Location"] == f"http://testserver/api/v1/escalation-rules/{rule.pk}/"
    assert created.json() == {
        "id": rule.pk, "name": "Unclaimed big planning items", "is_active": True, "queue": "planning",
        "kind": "", "type": "", "customer_tier": "", "min_revenue": "1000.00", "max_revenue": None,
        "trigger": "unclaimed_for", "trigger_value": 60, "raise_level": True, "move_to": None,
        "notify": "team", "notify_user": None, "created_at": "2026-03-02T09:00:00Z",
        "updated_at": created.json()["updated_at"],
    }  # fmt: skip
    assert root.get(f"/api/v1/escalation-rules/{rule.pk}/").json() == created.json()
    assert [r["id"] for r in root.get("/api/v1/escalation-rules/").json()["results"]] == [rule.pk]

    changed = patch(
        root, f"/api/v1/escalation-rules/{rule.pk}/", {"move_to": "integration", "is_active": False}
    )
    assert changed.status_code == 200, changed.content
    assert (changed.json()["move_to"], changed.json()["is_active"], changed.json()["trigger_value"]) == (
        "integration", False, 60
    )  # fmt: skip

    deleted = delete(root, f"/api/v1/escalation-rules/{rule.pk}/")
    assert deleted.status_code == 204 and not EscalationRule.objects.exists()
    assert_problem(root.get(f"/api/v1/escalation-rules/{rule.pk}/"), 404, "not_found")


@pytest.mark.parametrize(
    ("change", "errors"),
    [
        ({"trigger": "sometime"}, {"trigger": ['"sometime" is not a valid choice.']}),
        ({"trigger_value": 0}, {"trigger_value": ["Give the number of minutes, more than 0."]}),
        ({"max_revenue": "10.00"}, {"max_revenue": ["The band's maximum is below its minimum."]}),
        (
            {"raise_level": False, "notify": ""},
            {"non_field_errors": ["Give the rule an action: raise the level, move or notify."]},
        ),
        ({"notify": "user"}, {"notify_user": ["Name the user to notify."]}),
        ({"move_to": "planning"}, {"move_to": ["Move to a queue other than the one the rule watches."]}),
        ({"queue": "nope"}, {"queue": ["Object with slug=nope does not exist."]}),
        ({"min_revenue": "-1"}, {"min_revenue": ["Ensure this value is greater than or equal to 0."]}),
        ({"name": "  "}, {"name": ["This field may not be blank."]}),
    ],
)
def test_a_bad_rule_is_not_saved(root: Caller, change: dict[str, Any], errors: dict) -> None:
    problem = assert_problem(root.post("/api/v1/escalation-rules/", {**RULE, **change}), 422, "invalid_input")
    assert problem["errors"] == errors
    assert rules() == []


def test_a_rules_name_is_unique(root: Caller) -> None:
    root.post("/api/v1/escalation-rules/", RULE)
    before = rules()
    problem = assert_problem(root.post("/api/v1/escalation-rules/", RULE), 422, "invalid_input")
    assert problem["errors"] == {"name": ["A rule named 'Unclaimed big planning items' exists already."]}
    other = root.post("/api/v1/escalation-rules/", {**RULE, "name": "Other"}).json()
    problem = assert_problem(
        patch(root, f"/api/v1/escalation-rules/{other['id']}/", {"notify": "user"}), 422, "invalid_input"
    )
    assert problem["errors"] == {"notify_user": ["Name the user to notify."]}
    assert rules()[: len(before)] == before and rules()[-1]["notify"] == "team"


def test_the_preview_shows_what_a_rule_would_fire_on_now_and_saves_nothing(root: Caller) -> None:
    with clock.frozen(MONDAY_9 - timedelta(hours=2)):
        big_old, small_old = exception_item(total="5000.00"), exception_item(total="10.00")
    exception_item(total="9000.00")  # too young
    history = WorkItemEvent.objects.count()
    items = list(WorkItem.objects.order_by("id").values())

    response = root.post("/api/v1/escalation-rules/preview/", RULE)

    assert response.status_code == 200, response.content
    assert response.json()["count"] == 1
    assert [row["id"] for row in response.json()["items"]] == [big_old.pk]
    assert small_old.revenue_at_risk < Decimal(1000)
    assert rules() == [] and not RuleFiring.objects.exists()
    assert WorkItemEvent.objects.count() == history
    assert list(WorkItem.objects.order_by("id").values()) == items


def test_a_preview_needs_no_name_but_a_valid_definition(root: Caller) -> None:
    exception_item()
    unnamed = {key: value for key, value in RULE.items() if key != "name"}
    assert root.post("/api/v1/escalation-rules/preview/", unnamed).json() == {"count": 0, "items": []}
    problem = assert_problem(
        root.post("/api/v1/escalation-rules/preview/", {**unnamed, "trigger_value": -5}), 422, "invalid_input"
    )
    assert problem["errors"] == {"trigger_value": ["Ensure this value is greater than or equal to 0."]}


@pytest.mark.parametrize(
    ("trigger", "value", "error", "longest", "matches"),
    [
        ("unclaimed_for", 5_256_001, "Give at most 5,256,000 minutes (ten years).", 5_256_000, 0),
        ("promised_within", 2**31 - 1, "Give at most 87,600 hours (ten years).", 87_600, 1),
    ],
)
def test_a_time_window_beyond_ten_years_is_refused(
    root: Caller, trigger: str, value: int, error: str, longest: int, matches: int
) -> None:
    exception_item(total="5000.00", promised_in_days=5)
    body = {**RULE, "trigger": trigger, "trigger_value": value}
    for path in ("/api/v1/escalation-rules/", "/api/v1/escalation-rules/preview/"):
        problem = assert_problem(root.post(path, body), 422, "invalid_input")
        assert problem["errors"] == {"trigger_value": [error]}
    assert rules() == []
    longest_body = {**body, "trigger_value": longest}
    assert root.post("/api/v1/escalation-rules/preview/", longest_body).json()["count"] == matches


def test_a_preview_ignores_its_idempotency_key(root: Caller) -> None:
    first = root.post("/api/v1/escalation-rules/preview/", RULE, key="p-1")
    other = root.post("/api/v1/escalation-rules/preview/", {**RULE, "trigger": "past_sla"}, key="p-1")
    assert first.status_code == other.status_code == 200 and "Idempotent-Replayed" not in other


# --- approval policies ----------------------------------------------------------------------

POLICY = {
    "kind": "high_value_release",
    "name": "High-value release above 1,000,000",
    "min_amount": "1000000.00",
    "approvers_required": 2,
    "reject_action": "hold",
}


def test_an_admin_adds_a_band(root: Caller) -> None:
    # The default top band runs without limit: end it first, then add the new one above.
    top = ApprovalPolicy.objects.get(name="High-value release above 100,000")
    ended = patch(root, f"/api/v1/approval-policies/{top.pk}/", {"max_amount": "999999.99"})
    assert ended.status_code == 200, ended.content
    assert ended.json()["band"] == "100,000.01 to 999,999.99"

    created = root.post("/api/v1/approval-policies/", POLICY)

    assert created.status_code == 201, created.content
    policy = ApprovalPolicy.objects.get(name=POLICY["name"])
    assert created["Location"] == f"http://testserver/api/v1/approval-policies/{policy.pk}/"
    assert created.json() == {
        "id": policy.pk, "kind": "high_value_release", "name": POLICY["name"], "min_amount": "1000000.00",
        "max_amount": None, "band": "from 1,000,000.00", "approvers_required": 2, "approver_group": "finance",
        "reject_action": "hold", "sla_minutes": 240, "is_active": True,
    }  # fmt: skip
    listed = root.get("/api/v1/approval-policies/", {"page_size": 10}).json()["results"]
    assert len(listed) == 5 and root.get(f"/api/v1/approval-policies/{policy.pk}/").json() == created.json()


def test_an_overlapping_band_is_not_saved(root: Caller) -> None:
    before = policies()
    problem = assert_problem(root.post("/api/v1/approval-policies/", POLICY), 422, "invalid_input")
    assert problem["errors"] == {
        "min_amount": [
            "The band from 1,000,000.00 overlaps policy 'High-value release above 100,000' "
            "(from 100,000.01) of the same kind; bands must not overlap."
        ]
    }
    assert policies() == before


@pytest.mark.parametrize(
    ("change", "errors"),
    [
        ({"kind": "discount"}, {"kind": ['"discount" is not a valid choice.']}),
        ({"approvers_required": 3}, {"approvers_required": ['"3" is not a valid choice.']}),
        ({"min_amount": "abc"}, {"min_amount": ["A valid number is required."]}),
        ({"max_amount": "5.00"}, {"max_amount": ["The band must end at or above where it starts."]}),
        ({"approver_group": "nobody"}, {"approver_group": ["Object with name=nobody does not exist."]}),
        ({"name": "Credit hold up to 50,000"}, {"name": ["Approval policy with this Name already exists."]}),
    ],
)
def test_a_bad_policy_is_not_saved(root: Caller, change: dict[str, Any], errors: dict) -> None:
    before = policies()
    problem = assert_problem(
        root.post("/api/v1/approval-policies/", {**POLICY, "is_active": False, **change}),
        422,
        "invalid_input",
    )
    assert problem["errors"] == errors
    assert policies() == before


def test_a_policy_is_deactivated_not_deleted(root: Caller) -> None:
    policy = ApprovalPolicy.objects.get(name="Credit hold up to 50,000")
    response = patch(root, f"/api/v1/approval-policies/{policy.pk}/", {"is_active": False})
    assert response.json()["is_active"] is False
    assert_problem(delete(root, f"/api/v1/approval-policies/{policy.pk}/"), 405, "method_not_allowed")
    assert ApprovalPolicy.objects.filter(pk=policy.pk).exists()


@pytest.mark.parametrize("role", [PLANNER, FINANCE])
def test_rules_and_policies_are_for_admins(role: str) -> None:
    caller = token_caller(role, scopes=ALL_SCOPES)
    for response in [
        caller.get("/api/v1/escalation-rules/"),
        caller.post("/api/v1/escalation-rules/", RULE),
        caller.post("/api/v1/escalation-rules/preview/", RULE),
        caller.get("/api/v1/approval-policies/"),
        caller.post("/api/v1/approval-policies/", POLICY),
    ]:
        assert_problem(response, 403, "permission_denied")
    assert rules() == [] and ApprovalPolicy.objects.count() == 4
