"""Orders: the ERP push, search, the full order, and the moves a person may make.

- ``POST /orders/``: the ERP push (``flows.intake.erp_order_upsert``): a new external
  id is created and goes through intake at once (credit check, allocation, …) → 201
  with the order and ``Location``; a known external id changes nothing → 200 with the
  order as it is.
- ``GET /orders/``: newest first, filtered by ``status``, ``customer`` (code),
  ``warehouse`` (code), ``created_from``/``created_to`` and
  ``promised_from``/``promised_to`` (dates, inclusive; creation days in the portal's
  time zone).
- ``GET /orders/{id}/``: lines, allocations, shipments, invoices, the timeline and the
  open work items about the order.
- ``POST /orders/{id}/actions/{hold|release_hold|cancel}/`` with ``{"reason"}``
  (``orders.services.order_apply``) → 200 with the order; a move the state machine
  does not allow from the current state → 409 ``transition_not_allowed``; someone
  else moved the order meanwhile → 409 ``concurrent_update``.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from flows import intake
from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.models import WorkItem
from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, PLANNER
from orders import selectors
from orders import services as order_services
from orders.models import Order, Status
from portal.api import serializers
from portal.api.base import ApiViewSet
from portal.api.permissions import EVERY_ROLE, read, write

TRANSITIONS = sorted(order_services.MANUAL_TRANSITIONS)


def _day_start(day: date) -> datetime | None:
    """Midnight of ``day`` in the portal's time zone; None beyond the calendar's ends."""
    try:
        return timezone.make_aware(datetime.combine(day, time.min))
    except (OverflowError, ValueError):
        return None


class OrderFilter(filters.FilterSet):
    status = filters.ChoiceFilter(field_name="status", choices=Status.choices)
    customer = filters.CharFilter(field_name="customer__code", max_length=32, help_text="Customer code.")
    warehouse = filters.CharFilter(field_name="warehouse__code", max_length=16, help_text="Warehouse code.")
    created_from = filters.DateFilter(method="filter_created_from", help_text="Created on or after this day.")
    created_to = filters.DateFilter(method="filter_created_to", help_text="Created on or before this day.")
    promised_from = filters.DateFilter(field_name="promised_date", lookup_expr="gte")
    promised_to = filters.DateFilter(field_name="promised_date", lookup_expr="lte")

    class Meta:
        model = Order
        fields = ["status", "customer", "warehouse"]

    def filter_created_from(self, queryset: QuerySet[Order], name: str, value: date) -> QuerySet[Order]:
        start = _day_start(value)
        return queryset if start is None else queryset.filter(created_at__gte=start)

    def filter_created_to(self, queryset: QuerySet[Order], name: str, value: date) -> QuerySet[Order]:
        end = _day_start(value + timedelta(days=1)) if value < date.max else None
        return queryset if end is None else queryset.filter(created_at__lt=end)


@dataclass(frozen=True)
class OrderView:
    """What ``OrderDetailSerializer`` renders."""

    order: Order
    at_risk: bool
    ship_to: dict[str, str]
    credit: selectors.CreditFigures
    lines: list[Any]
    allocations: list[dict[str, Any]]
    shipments: list[Any]
    invoices: list[Any]
    timeline: list[Any]
    work_items: list[WorkItem]


def order_view(order_id: int) -> OrderView:
    detail = selectors.order_detail(order_id=order_id, today=timezone.localdate(clock.now()))
    order = detail.order
    work_items = list(
        WorkItem.objects.filter(subject_ref=order.external_id, state=WorkItem.State.OPEN)
        .select_related("queue", "assignee")
        .order_by("-priority_key", "created_at", "id")
    )
    return OrderView(
        order=order,
        at_risk=detail.at_risk,
        ship_to={
            "name": order.ship_to_name,
            "line1": order.ship_to_line1,
            "city": order.ship_to_city,
            "postal_code": order.ship_to_postal_code,
            "country": order.ship_to_country,
        },
        credit=detail.credit,
        lines=detail.lines,
        allocations=[
            {
                "warehouse": alloc.warehouse.code,
                "units": alloc.units,
                "lines": [{"sku": sku, "quantity": units} for sku, units in alloc.lines],
            }
            for alloc in detail.allocations
        ],
        shipments=detail.shipments,
        invoices=detail.invoices,
        timeline=detail.transitions,
        work_items=work_items,
    )


ID_PARAMETER = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The order's id.")
TRANSITION_PARAMETER = OpenApiParameter(
    "transition", OpenApiTypes.STR, OpenApiParameter.PATH, enum=TRANSITIONS, description="The move to make."
)


class OrderViewSet(mixins.ListModelMixin, ApiViewSet):
    access = {
        "list": read(*EVERY_ROLE),
        "retrieve": read(*EVERY_ROLE),
        "create": write(CUSTOMER_SERVICE, ADMIN),
        "transition:hold": write(CUSTOMER_SERVICE, PLANNER, ADMIN),
        "transition:release_hold": write(CUSTOMER_SERVICE, PLANNER, ADMIN),
        "transition:cancel": write(CUSTOMER_SERVICE, ADMIN),
    }
    serializer_class = serializers.OrderSummarySerializer
    filterset_class = OrderFilter
    ordering = ("-created_at", "-id")
    lookup_value_regex = "[0-9]{1,18}"

    def access_key(self, request: Request) -> str:
        if self.action == "transition":
            return f"transition:{self.kwargs.get('transition')}"
        return self.action or request.method.lower()

    def get_queryset(self) -> QuerySet[Order]:
        return Order.objects.select_related("customer", "warehouse")

    def _detail(self, order_id: int, status_code: int = status.HTTP_200_OK) -> Response:
        body = serializers.OrderDetailSerializer(order_view(order_id)).data
        return Response(body, status=status_code)

    @extend_schema(responses=serializers.OrderDetailSerializer, parameters=[ID_PARAMETER])
    def retrieve(self, request: Request, pk: str) -> Response:
        return self._detail(int(pk))

    @extend_schema(
        request=serializers.ErpOrderSerializer,
        responses={
            201: OpenApiResponse(serializers.OrderDetailSerializer, description="Created and taken in."),
            200: OpenApiResponse(serializers.OrderDetailSerializer, description="Known already; unchanged."),
        },
        parameters=[
            OpenApiParameter(
                "Location",
                OpenApiTypes.URI,
                OpenApiParameter.HEADER,
                response=[201],
                description="The new order.",
            )
        ],
    )
    def create(self, request: Request) -> Response:
        """The ERP push: create the order and run its intake, or return the known order."""
        payload = serializers.ErpOrderSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        outcome = intake.erp_order_upsert(payload=payload.validated_data, actor=Actor.of(request.user))
        if not outcome.created:
            return self._detail(outcome.order.pk)
        response = self._detail(outcome.order.pk, status.HTTP_201_CREATED)
        response["Location"] = request.build_absolute_uri(
            reverse("api-order-detail", args=[outcome.order.pk])
        )
        return response

    @extend_schema(
        operation_id="orders_transition",
        request=serializers.TransitionSerializer,
        responses=serializers.OrderDetailSerializer,
        parameters=[ID_PARAMETER, TRANSITION_PARAMETER],
    )
    @action(detail=True, methods=["post"], url_path=f"actions/(?P<transition>{'|'.join(TRANSITIONS)})")
    def transition(self, request: Request, pk: str, transition: str) -> Response:
        """Hold, release the hold, or cancel (``reason`` required to cancel)."""
        body = serializers.TransitionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        order = order_services.order_get(order_id=int(pk))
        order_services.order_apply(
            order=order,
            transition_name=transition,
            actor=Actor.of(request.user),
            reason=body.validated_data["reason"],
        )
        return self._detail(order.pk)
