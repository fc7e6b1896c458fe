"""Integration messages, for planners and admins (DESIGN.md §5): what went out through the
outbox and what came in through the webhooks, and the operator's hand on them.

- ``GET /outbox/`` (newest first; filters ``endpoint``, ``topic``, ``state``, ``order``
  — the order's id) and ``GET /outbox/{id}/`` with the payload, the answer, every
  delivery attempt and the operators' actions.
- ``POST /outbox/{id}/replay/`` (``note``): a dead letter is sent again from scratch;
  ``POST /outbox/replay/`` (``messages``: ids, ``note``) replays many, each on its own,
  and reports which were refused. ``POST /outbox/{id}/mark-handled/`` (``note``
  required): done by hand, the relay never sends it.
- ``GET /inbound-events/`` (filters ``partner``, ``type``, ``state``, ``order``),
  ``GET /inbound-events/{id}/`` with the event's data, and
  ``POST /inbound-events/{id}/retry/``: a failed event is applied again now; the answer
  shows how it ended (``applied``, or ``failed`` again with ``last_error``).

Reads go through ``integrations.selectors``, actions through ``integrations.services``;
a message or event whose state does not allow the action answers 422 (``errors.state``)
and nothing changes.
"""

from django.db.models import OuterRef, QuerySet, Subquery
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from fulfillment.core.errors import NotFound
from fulfillment.core.models import OutboxMessage
from fulfillment.core.roles import ADMIN, PLANNER
from integrations import selectors, services
from integrations.models import InboundEvent
from orders.models import Order
from portal.api.base import ApiViewSet
from portal.api.integration_serializers import (
    HandledSerializer,
    InboundEventDetailSerializer,
    InboundEventSerializer,
    NoteSerializer,
    OutboxMessageDetailSerializer,
    OutboxMessageSerializer,
    ReplayManySerializer,
    ReplayReportSerializer,
)
from portal.api.permissions import read, write
from portal.api.workqueues import OrderIdFilter

OPERATORS = (PLANNER, ADMIN)
MESSAGE_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The outbox message's id."
)
EVENT_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The inbound event's id."
)


def _with_order_id(qs: QuerySet) -> QuerySet:
    """Each row with ``order_id``: the id of the order its ``subject_ref`` names, if known."""
    return qs.annotate(
        order_id=Subquery(Order.objects.filter(external_id=OuterRef("subject_ref")).values("pk")[:1])
    )


class OutboxFilter(filters.FilterSet):
    endpoint = filters.CharFilter(
        field_name="endpoint", max_length=32, help_text="erp, wms, carrier, notify."
    )
    topic = filters.CharFilter(field_name="topic", max_length=64, help_text="e.g. order.release.")
    state = filters.ChoiceFilter(field_name="state", choices=OutboxMessage.State.choices)
    order = OrderIdFilter()

    class Meta:
        model = OutboxMessage
        fields = ["endpoint", "topic", "state", "order"]


def _message(pk: str) -> OutboxMessage:
    message = OutboxMessage.objects.filter(pk=int(pk)).first()
    if message is None:
        raise NotFound(f"There is no outbox message {pk}.")
    return message


def _message_response(pk: int) -> Response:
    return Response(OutboxMessageDetailSerializer(selectors.outbox_message_detail(message_id=pk)).data)


@extend_schema_view(
    retrieve=extend_schema(parameters=[MESSAGE_PARAMETER], responses=OutboxMessageDetailSerializer)
)
class OutboxMessageViewSet(mixins.ListModelMixin, ApiViewSet):
    access = {
        "list": read(*OPERATORS),
        "retrieve": read(*OPERATORS),
        "replay": write(*OPERATORS),
        "replay_many": write(*OPERATORS),
        "mark_handled": write(*OPERATORS),
    }
    serializer_class = OutboxMessageSerializer
    filterset_class = OutboxFilter
    ordering = ("-created_at", "-id")
    lookup_value_regex = "[0-9]{1,18}"

    def get_queryset(self) -> QuerySet[OutboxMessage]:
        return _with_order_id(OutboxMessage.objects.defer("payload", "response"))

    def retrieve(self, request: Request, pk: str) -> Response:
        return _message_response(int(pk))

    @extend_schema(
        request=NoteSerializer, responses=OutboxMessageDetailSerializer, parameters=[MESSAGE_PARAMETER]
    )
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, pk: str) -> Response:
        """Send a dead letter again from scratch (attempts reset, due now)."""
        message = _message(pk)
        body = NoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.outbox_message_replay(message=message, user=request.user, note=body.validated_data["note"])
        return _message_response(message.pk)

    @extend_schema(
        operation_id="outbox_replay_many", request=ReplayManySerializer, responses=ReplayReportSerializer
    )
    @action(detail=False, methods=["post"], url_path="replay")
    def replay_many(self, request: Request) -> Response:
        """Replay several dead letters, each on its own: one refusal does not stop the others."""
        body = ReplayManySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ids = list(dict.fromkeys(body.validated_data["messages"]))
        found = OutboxMessage.objects.in_bulk(ids)
        outcome = services.outbox_replay(
            messages=[found[pk] for pk in ids if pk in found],
            user=request.user,
            note=body.validated_data["note"],
        )
        refused = {
            **outcome.failed,
            **{pk: f"There is no outbox message {pk}." for pk in ids if pk not in found},
        }
        report = {
            "replayed": outcome.done,
            "refused": [{"id": pk, "detail": refused[pk]} for pk in ids if pk in refused],
        }
        return Response(ReplayReportSerializer(report).data)

    @extend_schema(
        request=HandledSerializer, responses=OutboxMessageDetailSerializer, parameters=[MESSAGE_PARAMETER]
    )
    @action(detail=True, methods=["post"], url_path="mark-handled")
    def mark_handled(self, request: Request, pk: str) -> Response:
        """Record that a person did by hand what the message would have done."""
        message = _message(pk)
        body = HandledSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.outbox_mark_handled(message=message, user=request.user, note=body.validated_data["note"])
        return _message_response(message.pk)


class InboundFilter(filters.FilterSet):
    partner = filters.CharFilter(field_name="partner__name", max_length=32, help_text="wms, a carrier, …")
    type = filters.CharFilter(field_name="type", max_length=40, help_text="e.g. pick.completed.")
    state = filters.ChoiceFilter(field_name="state", choices=InboundEvent.State.choices)
    order = OrderIdFilter()

    class Meta:
        model = InboundEvent
        fields = ["partner", "type", "state", "order"]


def _event_response(pk: int) -> Response:
    return Response(InboundEventDetailSerializer(selectors.inbound_event_detail(event_id=pk)).data)


@extend_schema_view(
    retrieve=extend_schema(parameters=[EVENT_PARAMETER], responses=InboundEventDetailSerializer)
)
class InboundEventViewSet(mixins.ListModelMixin, ApiViewSet):
    access = {"list": read(*OPERATORS), "retrieve": read(*OPERATORS), "retry": write(*OPERATORS)}
    serializer_class = InboundEventSerializer
    filterset_class = InboundFilter
    ordering = ("-received_at", "-id")
    lookup_value_regex = "[0-9]{1,18}"

    def get_queryset(self) -> QuerySet[InboundEvent]:
        return _with_order_id(InboundEvent.objects.select_related("partner").defer("data"))

    def retrieve(self, request: Request, pk: str) -> Response:
        return _event_response(int(pk))

    @extend_schema(request=None, responses=InboundEventDetailSerializer, parameters=[EVENT_PARAMETER])
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Apply a failed event again now."""
        event = InboundEvent.objects.filter(pk=int(pk)).first()
        if event is None:
            raise NotFound(f"There is no inbound event {pk}.")
        services.inbound_event_retry(event=event, user=request.user)
        return _event_response(event.pk)
