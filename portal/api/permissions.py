"""Who may call what: the role table of DESIGN.md §2, and the token's scopes.

Every API view declares ``access``, a map from the operation to a ``Rule``; the key is
the viewset action (``list``, ``retrieve``, ``create``, or what ``access_key()``
returns, e.g. ``transition:cancel``) or, for a plain ``APIView``, the lower-case method
(HEAD counts as ``get``). An operation with no rule is refused (403): a forgotten rule
fails closed, and the permission-matrix test notices.

A request passes when

1. it is authenticated (else 401 ``not_authenticated``);
2. for a token, the token holds the rule's scope (else 403 ``insufficient_scope``);
   scopes do not imply each other: a token for reading and pushing orders gets
   ``--scope read --scope write``; a session has every scope, like the screens;
3. the user holds one of the rule's roles (else 403 ``permission_denied``);
   ``fulfillment.core.roles`` counts a superuser as admin.

Object rules (a queue only for its team, separation of duties on approvals) stay in
the services, which raise ``PermissionDenied`` (403) themselves.

The table, as the views declare it (cs = customer_service):

=====================================================  ====  =======  =======  =====  =====
operation                                              cs    planner  finance  admin  scope
=====================================================  ====  =======  =======  =====  =====
GET customers, products, warehouses, carriers,         yes   yes      yes      yes    read
inventory (lists)
GET orders/, orders/{id}/                              yes   yes      yes      yes    read
POST orders/ (ERP push)                                yes   no       no       yes    write
POST orders/{id}/actions/hold/, release_hold/          yes   yes      no       yes    write
POST orders/{id}/actions/cancel/                       yes   no       no       yes    write
GET queues/, queues/{slug}/ (own team's; admin: all)   yes   yes      yes      yes    read
POST queues/{slug}/claim-next/ (own team's queue)      yes   yes      yes      yes    write
GET work-items/, work-items/{id}/, …/comments/         yes   yes      yes      yes    read
POST work-items/{id}/claim/, release/, resolve/,       yes   yes      yes      yes    write
comments/ (items of the own team's queues)
POST work-items/{id}/approve/, reject/ (the policy's   no    no       yes      no     write
approvers or their delegates, checked by the service)
GET outbox/…, inbound-events/…                         no    yes      no       yes    read
POST outbox/{id}/replay/, mark-handled/, outbox/       no    yes      no       yes    write
replay/, inbound-events/{id}/retry/
POST queues/, PATCH queues/{slug}/, escalation-rules/  no    no       no       yes    admin
(all methods, preview), approval-policies/ (all)
GET schema/                                            any authenticated user         read
=====================================================  ====  =======  =======  =====  =====

Team queues and approvers are object rules: the views let every role through for work
items and approvals, and ``workqueue.access_queue`` / ``approval_decide`` refuse (403)
another team's queue or someone who may not decide. ``tests/api/test_permission_matrix.py``
holds this table for every operation of the schema.

Customer service takes orders and the customer's requests (hold, cancel); planners may
stop an order (hold) while they sort out stock or carriers, but a cancellation is the
customer's call; finance decides through approvals, not by moving orders by hand. The
ERP's service account is a customer-service user with a ``write`` token.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from fulfillment.core.roles import ADMIN, ROLES, has_role
from portal.api.auth import token_of
from portal.api.models import Scope

if TYPE_CHECKING:
    from rest_framework.views import APIView


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str] | None  # None: any authenticated user
    scope: str


def read(*roles: str) -> Rule:
    return Rule(roles=frozenset(roles), scope=Scope.READ)


def write(*roles: str) -> Rule:
    return Rule(roles=frozenset(roles), scope=Scope.WRITE)


def admin(scope: str = Scope.ADMIN) -> Rule:
    """An admin endpoint: the admin role, and for tokens the ``admin`` scope."""
    return Rule(roles=frozenset({ADMIN}), scope=scope)


EVERY_ROLE = ROLES
AUTHENTICATED = Rule(roles=None, scope=Scope.READ)


def access_key(view: "APIView", request: Request) -> str:
    custom = getattr(view, "access_key", None)
    if callable(custom):
        return custom(request)
    method = request.method.lower()
    return getattr(view, "action", None) or ("get" if method == "head" else method)


class RoleAndScope(BasePermission):
    """The rules above; ``message`` and ``code`` say which one refused."""

    message = "Your account has no role that may do this."
    code = "permission_denied"

    def has_permission(self, request: Request, view: "APIView") -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            self.message, self.code = "Authenticate with a token or a session.", "not_authenticated"
            return False
        rule = getattr(view, "access", {}).get(access_key(view, request))
        if rule is None:
            # An unsupported method goes on to its 405; a supported one without a rule is refused.
            return request.method.upper() not in view.allowed_methods
        token = token_of(request)
        if token is not None and rule.scope not in token.scopes:
            self.message = f"This token lacks the '{rule.scope}' scope."
            self.code = "insufficient_scope"
            return False
        return rule.roles is None or has_role(user, *rule.roles)
