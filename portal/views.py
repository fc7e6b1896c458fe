"""The portal's screens. Views read through selectors and hold no business rules."""

import re
from decimal import Decimal
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET
from django_htmx.middleware import HtmxDetails

from fulfillment.core import clock
from fulfillment.core.errors import NotFound
from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, FINANCE, PLANNER, ROLES, roles_of
from orders import selectors
from orders.models import Status
from portal.access import role_required
from portal.forms import OrderSearchForm

PAGE_SIZE = 50
PANEL_ROWS = 8
# Amounts are kept as decimal strings in timeline data ("1234.50"): show them as money.
DECIMAL_TEXT = re.compile(r"-?\d+\.\d+")


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _greeting() -> str:
    hour = timezone.localtime(clock.now()).hour
    if hour < 12:
        return "Good morning"
    return "Good afternoon" if hour < 18 else "Good evening"


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    roles = roles_of(request.user)
    now = clock.now()
    today = timezone.localdate(now)
    context: dict[str, Any] = {"greeting": _greeting(), "has_role": bool(roles), "today": today}
    if CUSTOMER_SERVICE in roles:
        context["cs"] = {
            "at_risk": selectors.orders_at_risk(today=today, limit=PANEL_ROWS),
            "on_hold": selectors.status_figures(statuses=[Status.ON_HOLD])[Status.ON_HOLD],
            "on_hold_rows": selectors.orders_in_status(status=Status.ON_HOLD, limit=PANEL_ROWS),
            "recent": selectors.orders_recent(limit=PANEL_ROWS),
        }
    if PLANNER in roles:
        figures = selectors.status_figures(statuses=[Status.BACKORDERED, Status.PARTIALLY_ALLOCATED])
        context["planner"] = {
            "backordered": figures[Status.BACKORDERED],
            "backordered_rows": selectors.orders_in_status(status=Status.BACKORDERED, limit=PANEL_ROWS),
            "partial": figures[Status.PARTIALLY_ALLOCATED],
            "partial_rows": selectors.orders_in_status(status=Status.PARTIALLY_ALLOCATED, limit=PANEL_ROWS),
            "stalled": selectors.orders_released_not_picked(now=now, limit=PANEL_ROWS),
            "stalled_after_hours": int(selectors.RELEASED_STALE_AFTER.total_seconds() // 3600),
        }
    if FINANCE in roles:
        figures = selectors.status_figures(statuses=[Status.CREDIT_HOLD, Status.AWAITING_RELEASE])
        context["finance"] = {
            "figures": list(figures.values()),
            "credit_hold_rows": selectors.orders_in_status(
                status=Status.CREDIT_HOLD, limit=PANEL_ROWS, largest_first=True
            ),
            "awaiting_rows": selectors.orders_in_status(
                status=Status.AWAITING_RELEASE, limit=PANEL_ROWS, largest_first=True
            ),
        }
    if ADMIN in roles:
        figures = selectors.status_figures()
        context["admin"] = {
            "figures": list(figures.values()),
            "total": sum(f.count for f in figures.values()),
        }
    return render(request, "portal/home.html", context)


@require_GET
@role_required(*ROLES)
def order_list(request: HtmxHttpRequest) -> HttpResponse:
    form = OrderSearchForm(request.GET)
    context: dict[str, Any] = {"form": form, "page": None, "next_query": "", "first_query": ""}
    if form.is_valid():
        page = selectors.order_search(
            filters=form.filters(), after=form.cleaned_data["after"], limit=PAGE_SIZE
        )
        params = QueryDict(mutable=True)  # the filters in use, for the paging links
        params.update({k: v for k, v in request.GET.items() if v and k in form.fields and k != "after"})
        context["page"] = page
        context["first_query"] = params.urlencode()
        if page.next_cursor is not None:
            params["after"] = page.next_cursor.encode()
            context["next_query"] = params.urlencode()
    else:
        context["errors"] = form.error_list()
    context["is_later_page"] = bool(request.GET.get("after"))
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    template = "portal/partials/order_results.html" if partial else "portal/order_list.html"
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


def _readable(value: Any) -> str:
    """One figure of a timeline row's data, as a person reads it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_readable(item)}" for key, item in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(_readable(item) for item in value) or "none"
    if isinstance(value, str) and DECIMAL_TEXT.fullmatch(value):
        return f"{Decimal(value):,.2f}"
    return str(value)


def _data_figures(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(key.replace("_", " ").capitalize(), _readable(value)) for key, value in data.items()]


@require_GET
@role_required(*ROLES)
def order_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        detail = selectors.order_detail(order_id=pk, today=timezone.localdate(clock.now()))
    except NotFound as exc:
        raise Http404(exc.message) from exc
    timeline = [
        (t, t.transition.replace("_", " ").capitalize(), _data_figures(t.data)) for t in detail.transitions
    ]
    return render(
        request,
        "portal/order_detail.html",
        {"detail": detail, "order": detail.order, "timeline": timeline},
    )
