"""Error bodies as RFC 9457 problem details (``application/problem+json``)."""

from django.http import JsonResponse

from fulfillment.core.errors import ApplicationError

PROBLEM_TYPE_BASE = "urn:fulfillment:problem:"


def problem_body(
    *, status: int, code: str, title: str, detail: str = "", fields: dict[str, list[str]] | None = None
) -> dict:
    body = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if fields:
        body["errors"] = fields
    return body


def problem_response(
    *, status: int, code: str, title: str, detail: str = "", fields: dict[str, list[str]] | None = None
) -> JsonResponse:
    return JsonResponse(
        problem_body(status=status, code=code, title=title, detail=detail, fields=fields),
        status=status,
        content_type="application/problem+json",
    )


def problem_from_error(error: ApplicationError) -> JsonResponse:
    return problem_response(
        status=error.status,
        code=error.code,
        title=error.code.replace("_", " ").capitalize(),
        detail=error.message,
        fields=error.fields,
    )
