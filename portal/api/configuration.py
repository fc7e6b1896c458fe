"""What admins configure without code (DESIGN.md §2): escalation rules and approval
policies; queues are written through ``portal.api.workqueues``. Admin role, and for
tokens the ``admin`` scope, on every operation.

- ``/escalation-rules/``: list, read, create, change (PATCH), delete, through
  ``fulfillment.core.escalation`` (``rule_save`` checks the whole definition);
  ``POST /escalation-rules/preview/`` with a definition answers the open items it would
  fire on now — nothing is saved (so no ``Idempotency-Key`` either).
- ``/approval-policies/``: list, read, create, change (PATCH), through
  ``approvals.services.approval_policy_save`` (bands of a kind must not overlap); a
  policy that was applied cannot be deleted — deactivate it (``is_active``).
"""

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from approvals import services as approval_services
from approvals.models import ApprovalPolicy
from fulfillment.core import clock, escalation
from fulfillment.core.actors import Actor
from fulfillment.core.errors import NotFound
from fulfillment.core.models import EscalationRule
from portal import work_selectors as sel
from portal.api.base import ApiViewSet
from portal.api.configuration_serializers import (
    ApprovalPolicySerializer,
    ApprovalPolicyWriteSerializer,
    EscalationRuleSerializer,
    RuleDefinitionSerializer,
    RulePreviewInputSerializer,
    RulePreviewSerializer,
)
from portal.api.permissions import admin

PREVIEW_ITEMS = 50
RULE_PARAMETER = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The rule's id.")
POLICY_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The policy's id."
)


def _rule(pk: str) -> EscalationRule:
    rule = EscalationRule.objects.select_related("queue", "move_to", "notify_user").filter(pk=int(pk)).first()
    if rule is None:
        raise NotFound(f"Escalation rule {pk} does not exist.")
    return rule


def _rule_response(pk: int, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(EscalationRuleSerializer(_rule(str(pk))).data, status=status_code)


@extend_schema_view(
    retrieve=extend_schema(parameters=[RULE_PARAMETER]),
    partial_update=extend_schema(
        parameters=[RULE_PARAMETER], request=RuleDefinitionSerializer, responses=EscalationRuleSerializer
    ),
    destroy=extend_schema(parameters=[RULE_PARAMETER]),
)
class EscalationRuleViewSet(mixins.ListModelMixin, ApiViewSet):
    access = {
        "list": admin(),
        "retrieve": admin(),
        "create": admin(),
        "partial_update": admin(),
        "destroy": admin(),
        "preview": admin(),
    }
    serializer_class = EscalationRuleSerializer
    ordering = ("name", "id")
    lookup_value_regex = "[0-9]{1,18}"
    idempotency_exempt = frozenset({"preview"})

    def get_queryset(self) -> QuerySet[EscalationRule]:
        return EscalationRule.objects.select_related("queue", "move_to", "notify_user")

    def retrieve(self, request: Request, pk: str) -> Response:
        return _rule_response(int(pk))

    @extend_schema(request=RuleDefinitionSerializer, responses={201: EscalationRuleSerializer})
    def create(self, request: Request) -> Response:
        body = RuleDefinitionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        rule = escalation.rule_save(data=body.validated_data, actor=Actor.of(request.user))
        response = _rule_response(rule.pk, status.HTTP_201_CREATED)
        response["Location"] = request.build_absolute_uri(
            reverse("api-escalation-rule-detail", args=[rule.pk])
        )
        return response

    def partial_update(self, request: Request, pk: str) -> Response:
        rule = _rule(pk)
        body = RuleDefinitionSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        escalation.rule_save(data=body.validated_data, actor=Actor.of(request.user), rule=rule)
        return _rule_response(rule.pk)

    def destroy(self, request: Request, pk: str) -> Response:
        """Delete the rule and its firings; the items' history keeps its escalations."""
        escalation.rule_delete(rule=_rule(pk), actor=Actor.of(request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=RulePreviewInputSerializer, responses=RulePreviewSerializer)
    @action(detail=False, methods=["post"])
    def preview(self, request: Request) -> Response:
        """The open items a rule (as given, not saved) would fire on now: how many, and
        the first of them in queue order. Nothing is written."""
        body = RulePreviewInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        preview = escalation.rule_preview(
            escalation.rule_build(data=body.validated_data), limit=PREVIEW_ITEMS
        )
        rows = sel.rows(preview.items, now=clock.now(), labels=sel.type_catalogue().labels)
        return Response(RulePreviewSerializer({"count": preview.count, "items": rows}).data)


def _policy(pk: str) -> ApprovalPolicy:
    policy = ApprovalPolicy.objects.select_related("approver_group").filter(pk=int(pk)).first()
    if policy is None:
        raise NotFound(f"Approval policy {pk} does not exist.")
    return policy


@extend_schema_view(
    retrieve=extend_schema(parameters=[POLICY_PARAMETER]),
    partial_update=extend_schema(
        parameters=[POLICY_PARAMETER],
        request=ApprovalPolicyWriteSerializer,
        responses=ApprovalPolicySerializer,
    ),
)
class ApprovalPolicyViewSet(mixins.ListModelMixin, ApiViewSet):
    access = {"list": admin(), "retrieve": admin(), "create": admin(), "partial_update": admin()}
    serializer_class = ApprovalPolicySerializer
    ordering = ("name", "id")
    lookup_value_regex = "[0-9]{1,18}"

    def get_queryset(self) -> QuerySet[ApprovalPolicy]:
        return ApprovalPolicy.objects.select_related("approver_group")

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(ApprovalPolicySerializer(_policy(pk)).data)

    @extend_schema(request=ApprovalPolicyWriteSerializer, responses={201: ApprovalPolicySerializer})
    def create(self, request: Request) -> Response:
        body = ApprovalPolicyWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        policy = approval_services.approval_policy_save(policy=ApprovalPolicy(**body.validated_data))
        response = Response(
            ApprovalPolicySerializer(_policy(str(policy.pk))).data, status=status.HTTP_201_CREATED
        )
        response["Location"] = request.build_absolute_uri(
            reverse("api-approval-policy-detail", args=[policy.pk])
        )
        return response

    def partial_update(self, request: Request, pk: str) -> Response:
        policy = _policy(pk)
        body = ApprovalPolicyWriteSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        for name, value in body.validated_data.items():
            setattr(policy, name, value)
        approval_services.approval_policy_save(policy=policy)
        return Response(ApprovalPolicySerializer(_policy(pk)).data)
