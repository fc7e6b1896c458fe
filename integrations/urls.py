from collections.abc import Callable

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from fulfillment.core.problems import problem_response
from integrations.webhooks import receive


def _webhook(partner: str) -> Callable[[HttpRequest], JsonResponse]:
    @login_not_required
    @csrf_exempt
    def view(request: HttpRequest) -> JsonResponse:
        if request.method != "POST":
            response = problem_response(
                status=405, code="method_not_allowed", title="Method not allowed",
                detail=f"Webhooks are POSTed; {request.method} is not supported here.",
            )  # fmt: skip
            response["Allow"] = "POST"
            return response
        return receive(request, partner)

    view.__name__ = f"{partner}_webhook"
    return view


urlpatterns = [
    path("wms/", _webhook("wms"), name="webhook-wms"),
    path("carrier/", _webhook("carrier"), name="webhook-carrier"),
]
