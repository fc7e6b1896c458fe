"""Every API error as ``application/problem+json`` (RFC 9457).

Body: ``type`` (``urn:fulfillment:problem:<code>``), ``title``, ``status``, ``detail``,
a stable ``code``, and for validation failures ``errors``: field path → messages, with
nested fields joined by dots (``lines.0.quantity``, ``ship_to.country``) and errors
that belong to no field under ``non_field_errors``.

=====================================  ======  ==========================================
cause                                  status  code
=====================================  ======  ==========================================
body is not JSON                       400     parse_error
bad ``Idempotency-Key`` header         400     invalid_idempotency_key
no or unknown credentials              401     not_authenticated / authentication_failed
token without the scope                403     insufficient_scope
role (or CSRF for a session)           403     permission_denied
no such resource or path               404     not_found
method not offered                     405     method_not_allowed
``Accept`` we cannot serve             406     not_acceptable
conflict with the current state        409     transition_not_allowed, concurrent_update
same key still running                 409     idempotency_in_progress
body is not ``application/json``       415     unsupported_media_type
body, query or rules not satisfied     422     invalid_input (``errors`` per field)
same key, different body               422     idempotency_key_reused
throttled (``Retry-After`` header)     429     throttled
our fault (quote the X-Request-ID)     500     server_error
=====================================  ======  ==========================================

``fulfillment.core.errors.ApplicationError`` keeps its own status and code, so a
service's ``InvalidInput`` is 422 ``invalid_input`` with its ``fields`` as ``errors``,
exactly like a serializer's. Django's own 400/403/404/500 pages answer the same way
for paths under ``/api/`` (``handler*`` in ``fulfillment/urls.py``).
"""

from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from fulfillment.core.errors import ApplicationError
from fulfillment.core.problems import problem_body, problem_response
from portal.observability import current_request_id

PROBLEM_JSON = "application/problem+json"
API_PREFIX = "/api/"


def title_of(code: str) -> str:
    return code.replace("_", " ").capitalize()


def problem(
    *,
    status: int,
    code: str,
    detail: str,
    fields: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = problem_body(status=status, code=code, title=title_of(code), detail=detail, fields=fields)
    return Response(body, status=status, headers=headers, content_type=PROBLEM_JSON)


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as a flat map of dotted field paths to messages."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            flat.update(flatten_errors(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(detail, list) and all(isinstance(item, str) for item in detail):
        if detail:
            flat[prefix or api_settings.NON_FIELD_ERRORS_KEY] = [str(item) for item in detail]
    elif isinstance(detail, list):
        for n, item in enumerate(detail):
            flat.update(flatten_errors(item, f"{prefix}.{n}" if prefix else str(n)))
    else:
        flat[prefix or api_settings.NON_FIELD_ERRORS_KEY] = [str(detail)]
    return flat


def _named_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Django's key for errors of no field (``__all__``) as the API names it."""
    return {api_settings.NON_FIELD_ERRORS_KEY if k == NON_FIELD_ERRORS else k: v for k, v in fields.items()}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER``: None (a 500, handled by ``server_error``) for anything
    that is not a known client error."""
    if isinstance(exc, ApplicationError):
        set_rollback()
        return problem(status=exc.status, code=exc.code, detail=exc.message, fields=_named_fields(exc.fields))
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            _named_fields(exc.message_dict)
            if hasattr(exc, "error_dict")
            else {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return None
    headers = {name: value for name, value in response.items() if name in ("WWW-Authenticate", "Retry-After")}
    if isinstance(exc, exceptions.ValidationError):
        return problem(
            status=422,
            code="invalid_input",
            detail="The request is not valid; see errors.",
            fields=flatten_errors(exc.detail),
            headers=headers,
        )
    code = exc.detail.code if isinstance(exc.detail, exceptions.ErrorDetail) else exc.default_code
    return problem(status=exc.status_code, code=str(code), detail=str(exc.detail), headers=headers)


class ProblemRendering:
    """View mixin: problems are JSON whatever the view's renderers (the schema view's are YAML)."""

    def finalize_response(
        self, request: Request, response: HttpResponse, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response) and response.content_type == PROBLEM_JSON:
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = PROBLEM_JSON
        return response


# --- Django's own error pages, as problems under /api/ --------------------------------


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def _django_problem(status: int, code: str, detail: str) -> HttpResponse:
    return problem_response(status=status, code=code, title=title_of(code), detail=detail)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return _django_problem(400, "bad_request", "The request could not be understood.")
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return _django_problem(403, "permission_denied", str(exception) or "Not allowed.")
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return _django_problem(404, "not_found", f"Nothing at {request.path}.")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return _django_problem(
            500,
            "server_error",
            f"Something went wrong on our side; quote request id {current_request_id()} when reporting it.",
        )
    return defaults.server_error(request)
