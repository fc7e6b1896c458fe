"""The role table of DESIGN.md §2 on EVERY operation of the OpenAPI schema, for anonymous
callers and each role (a token holding every scope, so that only the role decides; the
admin also with a browser session).

The operations come from the generated schema, so a new endpoint fails here until the
table below says who may call it. Allowed: a 2xx answer (each caller acts on something of
its own team: its queue, an item of that queue). Denied: 401 for anonymous callers, 403
``permission_denied`` for roles, and nothing written.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

from approvals.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest
from fulfillment.core import clock
from fulfillment.core.models import EscalationRule, OutboxMessage, Queue, WorkItem, WorkItemEvent
from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, FINANCE, PLANNER
from integrations.models import InboundEvent, OutboxAction
from orders.models import Order, OrderTransition, Status
from portal.api.auth import api_token_issue
from tests import factories
from tests.api.conftest import PROBLEM, Caller, MasterData, assert_problem, erp_order
from tests.api.work_support import (
    CS_QUEUE,
    CS_REASON,
    CS_TYPE,
    FINANCE_QUEUE,
    FINANCE_REASON,
    FINANCE_TYPE,
    MONDAY_9,
    PLANNING_QUEUE,
    PLANNING_REASON,
    PLANNING_TYPE,
    approval_request,
    exception_item,
    inbound_event,
    outbox_message,
)

pytestmark = pytest.mark.django_db

CS, PL, FI, AD = CUSTOMER_SERVICE, PLANNER, FINANCE, ADMIN
EVERYONE = frozenset({CS, PL, FI, AD})
OPERATORS = frozenset({PL, AD})  # integration messages
ADMINS = frozenset({AD})
WEBHOOK = "signed"  # no token or session: an HMAC signature, else 401 for everybody

# Who may call what (DESIGN.md §2). Work-item operations: on items of the caller's own
# team's queues (another team's answer 403 in the service; tests/api/test_workqueues.py).
TABLE: dict[str, frozenset[str] | str] = {
    "GET /api/v1/customers/": EVERYONE,
    "GET /api/v1/products/": EVERYONE,
    "GET /api/v1/warehouses/": EVERYONE,
    "GET /api/v1/carriers/": EVERYONE,
    "GET /api/v1/inventory/": EVERYONE,
    "GET /api/v1/orders/": EVERYONE,
    "POST /api/v1/orders/": frozenset({CS, AD}),  # the ERP's service account is customer service
    "GET /api/v1/orders/{id}/": EVERYONE,
    # hold here; release_hold and cancel per transition in tests/api/test_access.py
    "POST /api/v1/orders/{id}/actions/{transition}/": frozenset({CS, PL, AD}),
    "GET /api/v1/queues/": EVERYONE,
    "POST /api/v1/queues/": ADMINS,
    "GET /api/v1/queues/{slug}/": EVERYONE,
    "PATCH /api/v1/queues/{slug}/": ADMINS,
    "POST /api/v1/queues/{slug}/claim-next/": EVERYONE,
    "GET /api/v1/work-items/": EVERYONE,
    "GET /api/v1/work-items/{id}/": EVERYONE,
    "POST /api/v1/work-items/{id}/claim/": EVERYONE,
    "POST /api/v1/work-items/{id}/release/": EVERYONE,
    "POST /api/v1/work-items/{id}/resolve/": EVERYONE,
    "POST /api/v1/work-items/{id}/approve/": frozenset({FI}),  # and approvers' delegates
    "POST /api/v1/work-items/{id}/reject/": frozenset({FI}),
    "GET /api/v1/work-items/{item_pk}/comments/": EVERYONE,
    "POST /api/v1/work-items/{item_pk}/comments/": EVERYONE,
    "GET /api/v1/outbox/": OPERATORS,
    "GET /api/v1/outbox/{id}/": OPERATORS,
    "POST /api/v1/outbox/{id}/replay/": OPERATORS,
    "POST /api/v1/outbox/{id}/mark-handled/": OPERATORS,
    "POST /api/v1/outbox/replay/": OPERATORS,
    "GET /api/v1/inbound-events/": OPERATORS,
    "GET /api/v1/inbound-events/{id}/": OPERATORS,
    "POST /api/v1/inbound-events/{id}/retry/": OPERATORS,
    "GET /api/v1/escalation-rules/": ADMINS,
    "POST /api/v1/escalation-rules/": ADMINS,
    "GET /api/v1/escalation-rules/{id}/": ADMINS,
    "PATCH /api/v1/escalation-rules/{id}/": ADMINS,
    "DELETE /api/v1/escalation-rules/{id}/": ADMINS,
    "POST /api/v1/escalation-rules/preview/": ADMINS,
    "GET /api/v1/approval-policies/": ADMINS,
    "POST /api/v1/approval-policies/": ADMINS,
    "GET /api/v1/approval-policies/{id}/": ADMINS,
    "PATCH /api/v1/approval-policies/{id}/": ADMINS,
    "POST /api/v1/webhooks/wms/": WEBHOOK,
    "POST /api/v1/webhooks/carrier/": WEBHOOK,
}

METHODS = ("get", "post", "put", "patch", "delete")
SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
OPERATIONS = sorted(
    f"{method.upper()} {path}"
    for path, item in SCHEMA["paths"].items()
    for method in item
    if method in METHODS
)
WHO = ["anonymous", CS, PL, FI, AD, "admin session"]

# Each role's own queue, the exception type of that queue and a reason code to resolve it.
TEAM = {
    CS: (CS_QUEUE, CS_TYPE, CS_REASON),
    PL: (PLANNING_QUEUE, PLANNING_TYPE, PLANNING_REASON),
    FI: (FINANCE_QUEUE, FINANCE_TYPE, FINANCE_REASON),
    AD: (PLANNING_QUEUE, PLANNING_TYPE, PLANNING_REASON),
}
RULE = {"name": "Old unclaimed", "trigger": "unclaimed_for", "trigger_value": 60}


def test_the_table_names_every_operation_of_the_schema_and_no_other() -> None:
    assert set(TABLE) == set(OPERATIONS)


@pytest.fixture(autouse=True)
def _setup() -> Iterator[None]:
    factories.migration_data()
    with clock.frozen(MONDAY_9):
        yield


def caller_for(who: str) -> tuple[Caller, str | None]:
    """The caller and the role it acts in."""
    if who == "anonymous":
        return Caller(client=Client()), None
    if who == "admin session":
        client = Client()
        client.force_login(factories.user("ada", AD))
        return Caller(client=client), AD
    user = factories.user(f"{who}-caller", who)
    token, key = api_token_issue(user=user, scopes=["read", "write", "admin"], name="matrix")
    return Caller(client=Client(), user=user, token=token, key=key), who


@dataclass
class World:
    """What the operations act on, made when an operation needs it."""

    role: str | None
    master: Callable[[], MasterData]

    @property
    def team(self) -> tuple[str, str, str]:
        return TEAM[self.role or PL]

    @cached_property
    def order(self) -> Order:
        return factories.order_in(Status.ALLOCATED)

    @cached_property
    def item(self) -> WorkItem:
        return exception_item(self.team[1])

    @cached_property
    def approval(self) -> ApprovalRequest:
        return approval_request()

    @cached_property
    def dead_letter(self) -> OutboxMessage:
        return outbox_message(OutboxMessage.State.DEAD, attempts=[(503, "HTTP 503: down")])

    @cached_property
    def failed_event(self) -> InboundEvent:
        return inbound_event(InboundEvent.State.FAILED, last_error="Unknown warehouse 'W1'.")

    @cached_property
    def rule(self) -> EscalationRule:
        return EscalationRule.objects.create(**RULE)

    @cached_property
    def policy(self) -> ApprovalPolicy:
        return ApprovalPolicy.objects.get(name="Credit hold up to 50,000")

    def path(self, template: str) -> str:
        if "{slug}" in template:
            return template.format(slug=self.team[0])
        if template.startswith(("/api/v1/work-items/{id}/approve/", "/api/v1/work-items/{id}/reject/")):
            return template.format(id=self.approval.work_item_id)
        if template.startswith("/api/v1/work-items/{"):
            return template.format(id=self.item.pk, item_pk=self.item.pk)
        if template.startswith("/api/v1/orders/{"):
            return template.format(id=self.order.pk, transition="hold")
        ids = {
            "/api/v1/outbox/{id}": lambda: self.dead_letter.pk,
            "/api/v1/inbound-events/{id}": lambda: self.failed_event.pk,
            "/api/v1/escalation-rules/{id}": lambda: self.rule.pk,
            "/api/v1/approval-policies/{id}": lambda: self.policy.pk,
        }
        for prefix, pk in ids.items():
            if template.startswith(prefix):
                return template.format(id=pk())
        assert "{" not in template, template
        return template

    def erp_order(self) -> dict[str, Any]:
        self.master()  # the customer, warehouse and product the ERP's order names
        return erp_order()

    def body(self, operation: str) -> Any:
        bodies: dict[str, Callable[[], Any]] = {
            "POST /api/v1/orders/": self.erp_order,
            "POST /api/v1/orders/{id}/actions/{transition}/": lambda: {"reason": "check"},
            "POST /api/v1/queues/": lambda: {"slug": "returns", "name": "Returns", "team": "planner"},
            "PATCH /api/v1/queues/{slug}/": lambda: {"name": "Renamed"},
            "POST /api/v1/work-items/{id}/resolve/": lambda: {"reason_code": self.team[2]},
            "POST /api/v1/work-items/{id}/reject/": lambda: {"comment": "Over the limit."},
            "POST /api/v1/work-items/{item_pk}/comments/": lambda: {"text": "Looking into it."},
            "POST /api/v1/outbox/{id}/mark-handled/": lambda: {"note": "Keyed in by hand."},
            "POST /api/v1/outbox/replay/": lambda: {"messages": [self.dead_letter.pk]},
            "POST /api/v1/escalation-rules/": lambda: {**RULE, "name": "Another"},
            "PATCH /api/v1/escalation-rules/{id}/": lambda: {"is_active": False},
            "POST /api/v1/escalation-rules/preview/": lambda: RULE,
            "POST /api/v1/approval-policies/": lambda: {
                "kind": "credit_hold",
                "name": "Dormant band",
                "reject_action": "hold",
                "is_active": False,
            },
            "PATCH /api/v1/approval-policies/{id}/": lambda: {"sla_minutes": 300},
            "POST /api/v1/webhooks/wms/": lambda: {"event_id": "e-1", "type": "pick.completed"},
            "POST /api/v1/webhooks/carrier/": lambda: {"event_id": "e-1", "type": "tracking.updated"},
        }
        make = bodies.get(operation)
        return make() if make else {}


def written() -> dict[str, Any]:
    """Everything an operation could write: compare before and after a refused one."""
    return {
        "orders": list(Order.objects.order_by("id").values_list("status", "status_changed_at")),
        "transitions": OrderTransition.objects.count(),
        "queues": list(Queue.objects.order_by("id").values_list("slug", "name", "warning_shares")),
        "items": list(WorkItem.objects.order_by("id").values_list("state", "assignee_id", "queue_id")),
        "events": WorkItemEvent.objects.count(),
        "decisions": ApprovalDecision.objects.count(),
        "requests": list(ApprovalRequest.objects.order_by("id").values_list("status")),
        "outbox": list(OutboxMessage.objects.order_by("id").values_list("state", "attempts")),
        "outbox_actions": OutboxAction.objects.count(),
        "inbound": list(InboundEvent.objects.order_by("id").values_list("state", "attempts")),
        "rules": list(EscalationRule.objects.order_by("id").values_list("name", "is_active")),
        "policies": list(ApprovalPolicy.objects.order_by("id").values_list("name", "sla_minutes")),
    }


def send(caller: Caller, method: str, path: str, body: Any) -> Any:
    if method in ("GET", "POST"):
        return caller.call(method, path, body)
    headers = {"Authorization": f"Token {caller.key}"} if caller.key else {}
    return caller.client.generic(
        method, path, data=json.dumps(body), content_type="application/json", headers=headers
    )


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_permission_matrix(operation: str, who: str, request: pytest.FixtureRequest) -> None:
    allowed = TABLE[operation]
    caller, role = caller_for(who)
    world = World(role=role, master=lambda: request.getfixturevalue("master"))
    method, template = operation.split(" ", 1)
    path = world.path(template)
    body = world.body(operation)
    before = written()

    response = send(caller, method, path, body)

    if allowed == WEBHOOK:
        assert response.status_code == 401 and response["Content-Type"] == PROBLEM, response.content
        permitted = False
    elif role is None:
        assert_problem(response, 401, "not_authenticated")
        permitted = False
    else:
        permitted = role in allowed
        if permitted:
            assert 200 <= response.status_code < 300, response.content
        else:
            assert_problem(response, 403, "permission_denied")
    if not permitted:
        assert written() == before


def test_a_user_without_a_role_may_only_read_the_schema() -> None:
    user = User.objects.create_user("nobody", password="pw")
    _, key = api_token_issue(user=user, scopes=["read", "write", "admin"], name="matrix")
    caller = Caller(client=Client(), user=user, key=key)
    assert caller.get("/api/v1/schema/").status_code == 200
    for operation in OPERATIONS:
        if TABLE[operation] == WEBHOOK:
            continue
        method, template = operation.split(" ", 1)
        path = template.format(id=1, item_pk=1, slug="planning", transition="hold")
        assert_problem(send(caller, method, path, {}), 403, "permission_denied")
