"""The inbound webhooks in the OpenAPI schema.

The webhooks are served by ``integrations`` (``integrations/urls.py``, mounted at
``/api/v1/webhooks/`` *before* this package's URLs, so those views take the traffic).
The views here sit on the same paths behind them: drf-spectacular lists them, and
were they ever reached they would answer exactly the same, because they hand the
request to the same ``integrations.webhooks.receive``.
"""

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request

from integrations import webhooks
from portal.api.base import ApiView
from portal.api.errors import PROBLEM_JSON
from portal.api.serializers import ProblemSerializer


class WebhookAckSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The event id, as sent.")
    status = serializers.ChoiceField(choices=["accepted", "duplicate"])


def _event_serializer(partner: str, event_type: str, data: type[serializers.Serializer]) -> type:
    name = "".join(part.capitalize() for part in event_type.replace(".", "_").split("_")) + "Event"
    return type(
        name,
        (serializers.Serializer,),
        {
            "__doc__": f"{partner.upper()} event '{event_type}'.",
            "id": serializers.CharField(
                max_length=100, help_text="The partner's event id (deduplication key)."
            ),
            "type": serializers.ChoiceField(choices=[event_type]),
            "occurred_at": serializers.DateTimeField(),
            "data": data(),
        },
    )


def _request_body(partner: str) -> PolymorphicProxySerializer:
    return PolymorphicProxySerializer(
        component_name=f"{partner.capitalize()}Event",
        serializers={
            event_type: _event_serializer(partner, event_type, data)
            for event_type, data in sorted(webhooks.EVENT_TYPES[partner].items())
        },
        resource_type_field_name="type",
    )


SIGNATURE = OpenApiParameter(
    "X-Signature",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description=(
        '`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>`; several `v1=` while a '
        "partner rotates secrets; the timestamp must be within 5 minutes."
    ),
)


def _schema(partner: str) -> dict:
    return {
        "operation_id": f"webhooks_{partner}",
        "summary": f"Receive a {partner.upper()} event",
        "description": (
            "Signed with the partner's secret, stored durably, acknowledged with 202 and applied in the "
            "background; a repeated event id answers 202 `duplicate` and changes nothing."
        ),
        "tags": ["webhooks"],
        "auth": [],
        "request": _request_body(partner),
        "parameters": [SIGNATURE],
        "responses": {
            202: WebhookAckSerializer,
            (400, PROBLEM_JSON): OpenApiResponse(ProblemSerializer, description="The body is not JSON."),
            (401, PROBLEM_JSON): OpenApiResponse(
                ProblemSerializer, description="Signature missing or wrong."
            ),
            (413, PROBLEM_JSON): OpenApiResponse(
                ProblemSerializer,
                description=f"The body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes.",
            ),
            (422, PROBLEM_JSON): OpenApiResponse(
                ProblemSerializer, description="Not a valid event (envelope, type or data)."
            ),
        },
    }


class _Webhook(ApiView):
    partner = ""
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = ()
    idempotent = False  # deduplicated by event id instead
    problem_defaults = False  # portal.api.schema: these answer no 403/429

    def post(self, request: Request) -> HttpResponse:
        return webhooks.receive(request._request, self.partner)


class WmsWebhookView(_Webhook):
    partner = "wms"

    @extend_schema(**_schema("wms"))
    def post(self, request: Request) -> HttpResponse:
        return super().post(request)


class CarrierWebhookView(_Webhook):
    partner = "carrier"

    @extend_schema(**_schema("carrier"))
    def post(self, request: Request) -> HttpResponse:
        return super().post(request)
