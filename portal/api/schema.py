"""The OpenAPI description (drf-spectacular), complete without annotations on every view.

``ApiAutoSchema`` adds to every operation what the framework does for all of them:

- the error answers, each a ``Problem`` (``application/problem+json``): 401, 403 and
  429 everywhere; 404 on paths with an id; 422 on lists (bad filter or cursor); 400,
  409, 415 and 422 on POST/PUT/PATCH. A view with ``problem_defaults = False`` (the
  webhooks) lists its own;
- the ``X-Request-ID`` header (request, optional; response, always), ``Retry-After``
  on 429, ``WWW-Authenticate`` on 401, and on POST ``Idempotency-Key`` (request) and
  ``Idempotent-Replayed`` (response).

Security schemes: ``tokenAuth`` (``Authorization: Token <key>``) and ``cookieAuth``
(the session). The schema (``/api/v1/schema/``) is for any authenticated caller, token
or session; the Swagger UI (``/api/v1/docs/``, served from drf-spectacular-sidecar,
no CDN) is for people and sends anonymous visitors to the login page.

A new view needs nothing here: a serializer (or ``@extend_schema``) for its bodies,
and ``manage.py spectacular --validate --fail-on-warn`` (a test runs it) stays quiet.
"""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from portal.api import idempotency
from portal.api.errors import PROBLEM_JSON
from portal.api.serializers import ProblemSerializer
from portal.observability import REQUEST_ID_HEADER

BODY_METHODS = {"POST", "PUT", "PATCH"}
# Answers an Idempotency-Key may replay (idempotency.NOT_KEPT and 5xx are never kept;
# 400, 401 and 429 come before the key is looked at).
REPLAYABLE = [200, 201, 202, 204, 403, 404, 422]
# What ``idempotency.valid_key`` accepts, as it arrives (HTTP trims the value's outer spaces).
IDEMPOTENCY_KEY = {
    "type": "string",
    "minLength": 1,
    "maxLength": idempotency.MAX_KEY_LENGTH,
    "pattern": r"^[!-~]([ -~]*[!-~])?$",
}
PROBLEMS = {
    "400": "Malformed: the body is not JSON, or a header is not valid.",
    "401": "No credentials, or unknown ones.",
    "403": "The token lacks the scope, or the user the role.",
    "404": "No such resource.",
    "409": "Conflicts with the current state, or the same Idempotency-Key is still running.",
    "415": "The body must be application/json.",
    "422": "Not valid: `errors` maps each field to its messages.",
    "429": "Too many requests; wait `Retry-After` seconds.",
}


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = "portal.api.auth.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`; a key comes from `manage.py issue_token <user> --scope …`.",
        }


class ApiAutoSchema(AutoSchema):
    def _problem_codes(self) -> list[str]:
        if not getattr(self.view, "problem_defaults", True):
            return []
        codes = ["401", "403", "429"]
        if "{" in self.path:
            codes.append("404")
        if self.method in BODY_METHODS:
            codes += ["400", "409", "415", "422"]
        elif self.method == "GET" and self._is_list_view():
            codes.append("422")
        return sorted(codes)

    def get_override_parameters(self) -> list[Any]:
        parameters = [
            *super().get_override_parameters(),
            OpenApiParameter(
                REQUEST_ID_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Your id for this request (1 to 200 of `A-Za-z0-9._:+/=@-`); else one is made.",
            ),
            OpenApiParameter(
                REQUEST_ID_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=True,
                description="The request's id, also in the logs.",
            ),
        ]
        codes = self._problem_codes()
        if "429" in codes:
            parameters.append(
                OpenApiParameter(
                    "Retry-After",
                    OpenApiTypes.INT,
                    OpenApiParameter.HEADER,
                    response=[429],
                    description="Seconds.",
                )
            )
        if "401" in codes:
            parameters.append(
                OpenApiParameter(
                    "WWW-Authenticate", OpenApiTypes.STR, OpenApiParameter.HEADER, response=[401]
                )
            )
        if self.method == "POST" and getattr(self.view, "idempotent", False):
            parameters += [
                OpenApiParameter(
                    idempotency.HEADER,
                    IDEMPOTENCY_KEY,
                    OpenApiParameter.HEADER,
                    description=(
                        "Send the same key when you retry: the first answer comes back instead of a second "
                        f"run. 1 to {idempotency.MAX_KEY_LENGTH} printable ASCII characters; kept 24 hours."
                    ),
                ),
                OpenApiParameter(
                    idempotency.REPLAYED_HEADER,
                    OpenApiTypes.STR,
                    OpenApiParameter.HEADER,
                    response=REPLAYABLE,
                    enum=["true"],
                    description="Present when this is the stored answer to an earlier request with this key.",
                ),
            ]
        return parameters

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code in self._problem_codes():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ProblemSerializer, description=PROBLEMS[code]),
                    code,
                    [PROBLEM_JSON],
                    direction,
                )
        return responses
