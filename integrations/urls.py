from collections.abc import Callable

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.webhooks import receive


def _webhook(partner: str) -> Callable[[HttpRequest], JsonResponse]:
    @login_not_required
    @csrf_exempt
    @require_POST
    def view(request: HttpRequest) -> JsonResponse:
        return receive(request, partner)

    view.__name__ = f"{partner}_webhook"
    return view


urlpatterns = [
    path("wms/", _webhook("wms"), name="webhook-wms"),
    path("carrier/", _webhook("carrier"), name="webhook-carrier"),
]
