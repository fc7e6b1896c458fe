"""Deciding approvals: ``POST /work-items/{id}/approve/`` and ``/reject/`` with ``{"comment"}``.

An approval is a work item of kind ``approval``; its decision goes through
``flows.approvals.approval_decide`` exactly as on the approval page: the policy's
approver group or a delegate of one of its members decides, never whoever raised the
request nor someone who decided on it already (separation of duties, 403); a rejection
needs a comment (422); a request decided already is refused (422); the final decision
moves the order on or ends it as the policy says. Anyone may call (delegates may be of
any role): the service decides who may decide. The answer is the item as it is after.
"""

from collections.abc import Callable

from django.contrib.auth.models import AbstractBaseUser
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from flows import approvals as approval_flow
from fulfillment.core.errors import ApplicationError, NotFound
from fulfillment.core.models import WorkItem
from portal import work_selectors as sel
from portal.api.work_serializers import DecisionInputSerializer, WorkItemDetailSerializer


class WrongKind(ApplicationError):
    """The action belongs to the other kind of work item."""

    code = "wrong_kind"
    status = 409


def approval_item_decide(*, pk: int, user: AbstractBaseUser, approve: bool, comment: str) -> None:
    item = sel.work_item_get(pk=pk)
    if item is None:
        raise NotFound(f"Work item {pk} does not exist.")
    approval = getattr(item, "approval", None)
    if item.kind != WorkItem.Kind.APPROVAL or approval is None:
        raise WrongKind(
            f"Work item {pk} is an exception, not an approval: resolve it with "
            f"POST /api/v1/work-items/{pk}/resolve/."
        )
    approval_flow.approval_decide(request=approval, user=user, approve=approve, comment=comment)


class DecisionActions:
    """The approve and reject actions of ``workqueues.WorkItemViewSet``."""

    item_response: Callable[[int], Response]  # the item as it is now, from the viewset

    def _decide(self, request: Request, pk: str, *, approve: bool) -> Response:
        body = DecisionInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        approval_item_decide(
            pk=int(pk), user=request.user, approve=approve, comment=body.validated_data["comment"]
        )
        return self.item_response(int(pk))

    @extend_schema(request=DecisionInputSerializer, responses=WorkItemDetailSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        """Approve: final when the policy needs one approver (or this is the second)."""
        return self._decide(request, pk, approve=True)

    @extend_schema(request=DecisionInputSerializer, responses=WorkItemDetailSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str) -> Response:
        """Reject (a comment is required): final; the order ends as the policy says."""
        return self._decide(request, pk, approve=False)
