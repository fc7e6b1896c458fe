"""Work queues: the queues with their counts, the items in rank order with why they rank
there, and what a person does with them — the screens' services
(``fulfillment.core.workqueue``, ``exceptions.services``, ``portal.config.queue_save``)
and selectors (``portal.work_selectors``), for machines.

- ``GET /queues/``, ``GET /queues/{slug}/``: slug, name, team and the counts (open,
  unclaimed, breached, yours), one grouped query.
- ``POST /queues/``, ``PATCH /queues/{slug}/`` (admins): create or change a queue, checked
  as on the settings screen; the slug cannot change.
- ``POST /queues/{slug}/claim-next/``: the highest-ranked unclaimed item becomes yours →
  200 with it; 204 when nothing is left to claim.
- ``GET /work-items/``: in queue order (``-priority_key, created_at, id``) with the rank
  explanation; filters ``queue`` (slug), ``kind``, ``type``, ``status`` (``open`` unless
  given), ``assignee`` (a username, ``me`` or ``none``) and ``order`` (order id).
- ``GET /work-items/{id}/``: the item with what it is about and its history.
- ``POST /work-items/{id}/claim/``, ``/release/``, ``/resolve/`` (``reason_code``,
  ``note``; exceptions only: an approval answers 409 ``wrong_kind``), and
  ``GET|POST /work-items/{id}/comments/``; ``/approve/`` and ``/reject/`` are in
  ``portal.api.approvals``.

Who sees what is as on the screens: the queues and items of the user's teams, every one
for admins; another team's queue or item answers 403. The services refuse what the
item's state forbids (claimed by someone else, resolved already, an unknown reason
code) with 422 and change nothing.
"""

from dataclasses import dataclass, fields
from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.urls import reverse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from approvals.models import ApprovalDecision, ApprovalRequest
from exceptions import services as exception_services
from exceptions.models import OrderException
from fulfillment.core import clock, roles, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.errors import InvalidInput, NotFound
from fulfillment.core.models import Queue, WorkItem, WorkItemEvent
from orders.models import Order
from portal import config
from portal import work_selectors as sel
from portal.api.approvals import DecisionActions, WrongKind
from portal.api.base import ApiViewSet
from portal.api.permissions import EVERY_ROLE, admin, read, write
from portal.api.work_serializers import (
    MAX_ID,
    CommentInputSerializer,
    EventSerializer,
    QueueSerializer,
    QueueWriteSerializer,
    ResolveSerializer,
    WorkItemDetailSerializer,
    WorkItemSerializer,
)

ASSIGNEE_ME, ASSIGNEE_NONE = "me", "none"
ID_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The work item's id."
)
ITEM_PARAMETER = OpenApiParameter(
    "item_pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="The work item's id."
)
SLUG_PARAMETER = OpenApiParameter(
    "slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The queue's slug."
)


# --- reads -------------------------------------------------------------------------------


def visible_items(user: AbstractBaseUser) -> QuerySet[WorkItem]:
    """The items of the queues ``user`` may work (``workqueue.may_work``), every one for admins."""
    qs = WorkItem.objects.select_related("queue", "assignee", "resolved_by")
    if roles.has_role(user, roles.ADMIN):
        return qs
    return qs.filter(queue__team__in=user.groups.values("pk"))


def work_item_for(user: AbstractBaseUser, pk: int) -> WorkItem:
    """The item, when ``user`` may work its queue (else 403); 404 when there is none."""
    item = sel.work_item_get(pk=pk)
    if item is None:
        raise NotFound(f"Work item {pk} does not exist.")
    workqueue.access_queue(user, item.queue)
    return item


@dataclass(frozen=True)
class ApprovalView:
    request: ApprovalRequest
    decisions: list[ApprovalDecision]
    order_status: str


@dataclass(frozen=True)
class ItemView(sel.Row):
    """What ``WorkItemDetailSerializer`` renders: the queue row and what the item page shows."""

    exception: OrderException | None
    approval: ApprovalView | None
    history: list[WorkItemEvent]


def item_view(item: WorkItem) -> ItemView:
    row = sel.rows([item], now=clock.now(), labels=sel.type_catalogue().labels)[0]
    detail = sel.work_item_detail(item=item)
    approval = None
    if detail.approval is not None:
        decisions = detail.approval.decisions.select_related("approver", "on_behalf_of").order_by("at", "id")
        approval = ApprovalView(
            request=detail.approval,
            decisions=list(decisions),
            order_status=Order.objects.values_list("status", flat=True).get(pk=detail.approval.order_id),
        )
    return ItemView(
        **{f.name: getattr(row, f.name) for f in fields(sel.Row)},
        exception=detail.exception,
        approval=approval,
        history=detail.events,
    )


def item_response(pk: int) -> Response:
    item = sel.work_item_get(pk=pk)
    if item is None:
        raise NotFound(f"Work item {pk} does not exist.")
    return Response(WorkItemDetailSerializer(item_view(item)).data)


# --- filters -----------------------------------------------------------------------------


@extend_schema_field({"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID})
class OrderIdFilter(filters.NumberFilter):
    """``order``: the rows about the order with this id (work items and messages name the
    order by its external id)."""

    field_class = forms.IntegerField

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=1, max_value=MAX_ID, help_text="Order id.", **kwargs)

    def filter(self, qs: QuerySet, value: int | None) -> QuerySet:
        if value is None:
            return qs
        return qs.filter(subject_ref__in=Order.objects.filter(pk=value).values("external_id"))


class WorkItemFilter(filters.FilterSet):
    queue = filters.CharFilter(method="filter_queue", max_length=50, help_text="Queue slug.")
    kind = filters.ChoiceFilter(field_name="kind", choices=WorkItem.Kind.choices)
    type = filters.CharFilter(
        field_name="type", max_length=40, help_text="Type code, e.g. inventory_shortfall or credit_hold."
    )
    status = filters.ChoiceFilter(
        field_name="state", choices=WorkItem.State.choices, help_text="`open` unless given."
    )
    assignee = filters.CharFilter(
        method="filter_assignee",
        max_length=150,
        help_text=f"A username, `{ASSIGNEE_ME}` for yours, or `{ASSIGNEE_NONE}` for unclaimed items.",
    )
    order = OrderIdFilter()

    class Meta:
        model = WorkItem
        fields = ["queue", "kind", "type", "status", "assignee", "order"]

    def __init__(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        if data is not None and "status" not in data:
            data = data.copy()
            data["status"] = WorkItem.State.OPEN
        super().__init__(data, *args, **kwargs)

    def filter_queue(self, queryset: QuerySet[WorkItem], name: str, value: str) -> QuerySet[WorkItem]:
        queue = Queue.objects.select_related("team").filter(slug=value).first()
        if queue is None:
            raise InvalidInput(f"There is no queue '{value}'.", fields={"queue": ["Unknown queue."]})
        workqueue.access_queue(self.request.user, queue)
        return queryset.filter(queue=queue)

    def filter_assignee(self, queryset: QuerySet[WorkItem], name: str, value: str) -> QuerySet[WorkItem]:
        if value == ASSIGNEE_ME:
            return queryset.filter(assignee=self.request.user)
        if value == ASSIGNEE_NONE:
            return queryset.filter(assignee__isnull=True)
        return queryset.filter(assignee__username=value)


# --- queues ------------------------------------------------------------------------------


@extend_schema_view(
    retrieve=extend_schema(parameters=[SLUG_PARAMETER]),
    partial_update=extend_schema(parameters=[SLUG_PARAMETER]),
)
class QueueViewSet(mixins.ListModelMixin, ApiViewSet):
    access = {
        "list": read(*EVERY_ROLE),
        "retrieve": read(*EVERY_ROLE),
        "claim_next": write(*EVERY_ROLE),
        "create": admin(),
        "partial_update": admin(),
    }
    serializer_class = QueueSerializer
    ordering = ("name", "id")
    lookup_field = "slug"
    lookup_value_regex = "[-a-zA-Z0-9_]{1,50}"

    def get_queryset(self) -> QuerySet[Queue]:
        if getattr(self, "swagger_fake_view", False):
            return Queue.objects.none()
        return sel.queues_with_figures(user=self.request.user, now=clock.now())

    def _queue_response(self, queue: Queue, status_code: int = status.HTTP_200_OK) -> Response:
        figures = self.get_queryset().get(pk=queue.pk)
        return Response(QueueSerializer(figures).data, status=status_code)

    def retrieve(self, request: Request, slug: str) -> Response:
        queue = workqueue.queue_get(slug=slug)
        workqueue.access_queue(request.user, queue)
        return self._queue_response(queue)

    @extend_schema(request=QueueWriteSerializer, responses={201: QueueSerializer})
    def create(self, request: Request) -> Response:
        body = QueueWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        queue = config.queue_save(queue=Queue(**body.validated_data), actor=Actor.of(request.user))
        response = self._queue_response(queue, status.HTTP_201_CREATED)
        response["Location"] = request.build_absolute_uri(reverse("api-queue-detail", args=[queue.slug]))
        return response

    @extend_schema(request=QueueWriteSerializer, responses=QueueSerializer)
    def partial_update(self, request: Request, slug: str) -> Response:
        queue = workqueue.queue_get(slug=slug)
        body = QueueWriteSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        for name, value in body.validated_data.items():
            setattr(queue, name, value)
        config.queue_save(queue=queue, actor=Actor.of(request.user))
        return self._queue_response(queue)

    @extend_schema(
        request=None,
        parameters=[SLUG_PARAMETER],
        responses={
            200: OpenApiResponse(WorkItemDetailSerializer, description="The item, now yours."),
            204: OpenApiResponse(description="Nothing left to claim: every open item is claimed or snoozed."),
        },
    )
    @action(detail=True, methods=["post"], url_path="claim-next")
    def claim_next(self, request: Request, slug: str) -> Response:
        """Claim the highest-ranked unclaimed item of the queue."""
        queue = workqueue.queue_get(slug=slug)
        item = workqueue.work_item_claim_next(queue=queue, user=request.user)
        if item is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return item_response(item.pk)


# --- work items --------------------------------------------------------------------------


@extend_schema_view(retrieve=extend_schema(parameters=[ID_PARAMETER], responses=WorkItemDetailSerializer))
class WorkItemViewSet(DecisionActions, mixins.ListModelMixin, ApiViewSet):
    access = {
        "list": read(*EVERY_ROLE),
        "retrieve": read(*EVERY_ROLE),
        "claim": write(*EVERY_ROLE),
        "release": write(*EVERY_ROLE),
        "resolve": write(*EVERY_ROLE),
        # Approvers are finance or their delegates, of any role: approval_decide decides.
        "approve": write(*EVERY_ROLE),
        "reject": write(*EVERY_ROLE),
    }
    serializer_class = WorkItemSerializer
    filterset_class = WorkItemFilter
    ordering = ("-priority_key", "created_at", "id")
    lookup_value_regex = "[0-9]{1,18}"

    def get_queryset(self) -> QuerySet[WorkItem]:
        if getattr(self, "swagger_fake_view", False):
            return WorkItem.objects.none()
        return visible_items(self.request.user)

    def item_response(self, pk: int) -> Response:
        return item_response(pk)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        rows = sel.rows(page, now=clock.now(), labels=sel.type_catalogue().labels)
        return self.get_paginated_response(self.get_serializer(rows, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(WorkItemDetailSerializer(item_view(work_item_for(request.user, int(pk)))).data)

    @extend_schema(request=None, responses=WorkItemDetailSerializer, parameters=[ID_PARAMETER])
    @action(detail=True, methods=["post"])
    def claim(self, request: Request, pk: str) -> Response:
        """Take the item (yours already: nothing changes)."""
        item = work_item_for(request.user, int(pk))
        workqueue.work_item_claim(item=item, user=request.user)
        return item_response(item.pk)

    @extend_schema(request=None, responses=WorkItemDetailSerializer, parameters=[ID_PARAMETER])
    @action(detail=True, methods=["post"])
    def release(self, request: Request, pk: str) -> Response:
        """Put the item back in the queue (the assignee, or an admin)."""
        item = work_item_for(request.user, int(pk))
        workqueue.work_item_release(item=item, user=request.user)
        return item_response(item.pk)

    @extend_schema(request=ResolveSerializer, responses=WorkItemDetailSerializer, parameters=[ID_PARAMETER])
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str) -> Response:
        """Resolve an exception with one of its type's reason codes (an unclaimed item is
        claimed in the same step)."""
        item = work_item_for(request.user, int(pk))
        body = ResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if item.kind == WorkItem.Kind.APPROVAL:
            raise WrongKind(
                f"Work item {item.pk} is an approval: decide it with "
                f"POST /api/v1/work-items/{item.pk}/approve/ or /reject/."
            )
        exception = getattr(item, "exception", None)
        if exception is None:
            raise InvalidInput(f"Work item {item.pk} has no exception record to resolve.")
        exception_services.exception_resolve(
            exception=exception,
            reason_code=body.validated_data["reason_code"],
            note=body.validated_data["note"],
            actor=Actor.of(request.user),
        )
        return item_response(item.pk)


@extend_schema_view(
    list=extend_schema(parameters=[ITEM_PARAMETER]),
    create=extend_schema(
        parameters=[ITEM_PARAMETER], request=CommentInputSerializer, responses={201: EventSerializer}
    ),
)
class CommentViewSet(mixins.ListModelMixin, ApiViewSet):
    """The comments on a work item, oldest first."""

    access = {"list": read(*EVERY_ROLE), "create": write(*EVERY_ROLE)}
    serializer_class = EventSerializer
    ordering = ("at", "id")

    def get_queryset(self) -> QuerySet[WorkItemEvent]:
        if getattr(self, "swagger_fake_view", False):
            return WorkItemEvent.objects.none()
        item = work_item_for(self.request.user, int(self.kwargs["item_pk"]))
        return WorkItemEvent.objects.filter(item=item, action="comment").select_related("actor_user")

    def create(self, request: Request, item_pk: str) -> Response:
        item = work_item_for(request.user, int(item_pk))
        body = CommentInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        event = workqueue.work_item_comment(item=item, text=body.validated_data["text"], user=request.user)
        return Response(EventSerializer(event).data, status=status.HTTP_201_CREATED)
