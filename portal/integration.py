"""The integration screens (planners and admins): endpoint health with the dead letters,
outbox messages and inbound events with their attempts, and the operator's actions on them.

Views read through ``integrations.selectors`` and act through ``integrations.services``;
they hold no business rules. Actions are POSTs: success redirects (post/redirect/get)
with a message; a refusal renders the page again with the reason and status 422.
"""

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from fulfillment.core import clock
from fulfillment.core.errors import ApplicationError, InvalidInput, NotFound
from fulfillment.core.models import OutboxMessage
from fulfillment.core.roles import ADMIN, PLANNER
from integrations import selectors, services
from integrations.models import Endpoint, InboundEvent, Partner
from orders.selectors import Cursor, cursor_decode
from portal.access import role_required

PAGE_SIZE = 50
DEAD_LETTER_ROWS = 50
OPERATORS = (PLANNER, ADMIN)
BACK_HEALTH, BACK_DETAIL = "health", "detail"


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


# --- forms: they check input and turn it into arguments, nothing more ------------------------


class _ListForm(forms.Form):
    FILTERS: tuple[str, ...] = ()

    order = forms.CharField(
        label="Order",
        required=False,
        max_length=64,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "SO-…", "autocomplete": "off"}),
    )
    after = forms.CharField(label="Page link", required=False, max_length=200, widget=forms.HiddenInput)

    def clean_order(self) -> str:
        return self.cleaned_data["order"].strip()

    def clean_after(self) -> Cursor | None:
        token = self.cleaned_data["after"]
        if not token:
            return None
        try:
            return cursor_decode(token)
        except InvalidInput as exc:
            raise forms.ValidationError(f"{exc.message} Start again from the first page.") from exc

    def query(self) -> str:
        """The filters in use (without the page link), for paging links."""
        params = QueryDict(mutable=True)
        for name in self.FILTERS:
            value = self.data.get(name, "")
            if value:
                params[name] = value
        return params.urlencode()

    def error_list(self) -> list[str]:
        return [
            f"{self.fields[name].label}: {error}" if name in self.fields else error
            for name, errors in self.errors.items()
            for error in errors
        ]


class OutboxFilterForm(_ListForm):
    FILTERS = ("endpoint", "topic", "state", "order")

    endpoint = forms.ChoiceField(label="Endpoint", required=False)
    topic = forms.ChoiceField(
        label="Topic", required=False, choices=[("", "Any topic"), *((t, t) for t in selectors.TOPICS)]
    )
    state = forms.ChoiceField(
        label="State", required=False, choices=[("", "Any state"), *OutboxMessage.State.choices]
    )
    field_order = ["endpoint", "topic", "state", "order", "after"]

    def __init__(self, data: QueryDict) -> None:
        super().__init__(data)
        names = sorted({*selectors.SYSTEMS, *Endpoint.objects.values_list("name", flat=True)})
        self.fields["endpoint"].choices = [("", "Any endpoint"), *((n, n) for n in names)]

    def filters(self) -> selectors.OutboxFilters:
        data = self.cleaned_data
        return selectors.OutboxFilters(
            endpoint=data["endpoint"], topic=data["topic"], state=data["state"], order_ref=data["order"]
        )


class InboundFilterForm(_ListForm):
    FILTERS = ("partner", "type", "state", "order")

    partner = forms.ModelChoiceField(
        label="Partner",
        required=False,
        queryset=Partner.objects.order_by("name"),
        to_field_name="name",
        empty_label="Any partner",
    )
    type = forms.ChoiceField(
        label="Type", required=False, choices=[("", "Any type"), *((t, t) for t in selectors.EVENT_TYPES)]
    )
    state = forms.ChoiceField(
        label="State", required=False, choices=[("", "Any state"), *InboundEvent.State.choices]
    )
    field_order = ["partner", "type", "state", "order", "after"]

    def filters(self) -> selectors.InboundFilters:
        data = self.cleaned_data
        return selectors.InboundFilters(
            partner=data["partner"], type=data["type"], state=data["state"], order_ref=data["order"]
        )


class ReplayForm(forms.Form):
    messages = forms.TypedMultipleChoiceField(label="Messages", coerce=int, required=True)
    note = forms.CharField(label="Note", required=False, max_length=services.NOTE_MAX)

    def __init__(self, data: QueryDict) -> None:
        super().__init__(data)
        # Any id is accepted here: the service says why a message cannot be replayed.
        self.fields["messages"].choices = [(v, v) for v in data.getlist("messages") if v.isdigit()]
        self.fields["messages"].error_messages["required"] = "Select the messages to replay."
        self.fields["messages"].error_messages["invalid_choice"] = "“%(value)s” is not a message."


# --- the health screen -----------------------------------------------------------------------


def _with_orders(page: selectors.Page[Any]) -> list[tuple[Any, int | None]]:
    """Each row with the id of its order (for the link), when the portal knows the order."""
    return [(row, page.order_ids.get(row.subject_ref)) for row in page.rows]


def _cards_context() -> dict[str, Any]:
    cards = selectors.endpoint_health()
    return {
        "cards": cards,
        "window_hours": int(selectors.HEALTH_WINDOW.total_seconds() // 3600),
        "refreshed_at": clock.now(),
    }


def _health(
    request: HttpRequest, *, status: int = 200, error: str = "", note: str = "", failed: int | None = None
) -> HttpResponse:
    """The health page; after a refused action, with the reason next to the form that failed."""
    context = _cards_context()
    dead = selectors.dead_letters(limit=DEAD_LETTER_ROWS)
    if failed not in {m.pk for m in dead.rows}:
        failed = None  # not (or no longer) a row: the reason shows above the list
    context.update(
        dead=dead,
        dead_rows=_with_orders(dead),
        dead_total=sum(card.dead for card in context["cards"]),
        error=error,
        note=note,
        failed_message=failed,
        selected={int(v) for v in request.POST.getlist("messages") if v.isdigit()},
    )
    return render(request, "portal/integration/health.html", context, status=status)


@require_GET
@role_required(*OPERATORS)
def health(request: HttpRequest) -> HttpResponse:
    return _health(request)


@require_GET
@role_required(*OPERATORS)
def health_cards(request: HttpRequest) -> HttpResponse:
    """The endpoint cards alone: the health page refreshes them every few seconds."""
    return render(request, "portal/integration/partials/health_cards.html", _cards_context())


@require_POST
@role_required(*OPERATORS)
def replay_selected(request: HttpRequest) -> HttpResponse:
    form = ReplayForm(request.POST)
    if not form.is_valid():
        errors = [e for field_errors in form.errors.values() for e in field_errors]
        return _health(request, status=422, error=" ".join(errors), note=request.POST.get("note", ""))
    ids = form.cleaned_data["messages"]
    found = OutboxMessage.objects.in_bulk(ids)
    try:
        outcome = services.outbox_replay(
            messages=[found[pk] for pk in ids if pk in found],
            user=request.user,
            note=form.cleaned_data["note"],
        )
    except ApplicationError as exc:
        return _health(request, status=exc.status, error=exc.message, note=form.cleaned_data["note"])
    failed = {**outcome.failed, **{pk: f"There is no message {pk}." for pk in ids if pk not in found}}
    if not outcome.done:
        return _health(request, status=422, error=" ".join(failed.values()), note=form.cleaned_data["note"])
    done = len(outcome.done)
    text = (
        "1 message replayed: the relay is sending it now."
        if done == 1
        else f"{done} messages replayed: the relay is sending them now."
    )
    if failed:
        messages.warning(request, f"{text} Not replayed: {' '.join(failed.values())}")
    else:
        messages.success(request, text)
    return redirect("integration")


# --- outbox messages -------------------------------------------------------------------------


def _list_response(
    request: HtmxHttpRequest,
    form: _ListForm,
    fetch: Callable[..., selectors.Page[Any]],
    page_template: str,
    results_template: str,
) -> HttpResponse:
    context: dict[str, Any] = {"form": form, "rows": [], "next_query": "", "query": ""}
    status = 200
    if form.is_valid():
        page = fetch(filters=form.filters(), after=form.cleaned_data["after"], limit=PAGE_SIZE)
        context.update(rows=_with_orders(page), query=form.query())
        if page.next_cursor is not None:
            params = QueryDict(form.query(), mutable=True)
            params["after"] = page.next_cursor.encode()
            context["next_query"] = params.urlencode()
    else:
        context["errors"] = form.error_list()
        status = 422
    context["is_later_page"] = bool(request.GET.get("after"))
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    response = render(request, results_template if partial else page_template, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response


@require_GET
@role_required(*OPERATORS)
def outbox_list(request: HtmxHttpRequest) -> HttpResponse:
    return _list_response(
        request,
        OutboxFilterForm(request.GET),
        selectors.outbox_messages,
        "portal/integration/outbox_list.html",
        "portal/integration/partials/outbox_results.html",
    )


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _message_detail(
    request: HttpRequest, pk: int, *, status: int = 200, action: str = "", error: str = "", note: str = ""
) -> HttpResponse:
    try:
        detail = selectors.outbox_message_detail(message_id=pk)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    message = detail.message
    context = {
        "detail": detail,
        "message": message,
        "payload": _pretty(message.payload),
        "response": _pretty(message.response) if message.response is not None else "",
        "may_replay": message.state == OutboxMessage.State.DEAD,
        "may_handle": message.state in (OutboxMessage.State.DEAD, OutboxMessage.State.PENDING),
        "failed_action": action,
        "error": error,
        "note": note,
    }
    return render(request, "portal/integration/outbox_detail.html", context, status=status)


@require_GET
@role_required(*OPERATORS)
def outbox_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _message_detail(request, pk)


def _message(pk: int) -> OutboxMessage:
    message = OutboxMessage.objects.filter(pk=pk).first()
    if message is None:
        raise Http404(f"There is no outbox message {pk}.")
    return message


@require_POST
@role_required(*OPERATORS)
def outbox_replay(request: HttpRequest, pk: int) -> HttpResponse:
    message = _message(pk)
    note = request.POST.get("note", "")
    try:
        services.outbox_message_replay(message=message, user=request.user, note=note)
    except ApplicationError as exc:
        return _message_detail(request, pk, status=exc.status, action="replay", error=exc.message, note=note)
    messages.success(request, f"Message {pk} replayed: the relay is sending it now.")
    return redirect("integration-outbox-detail", pk=pk)


@require_POST
@role_required(*OPERATORS)
def outbox_handled(request: HttpRequest, pk: int) -> HttpResponse:
    message = _message(pk)
    note = request.POST.get("note", "")
    back = BACK_HEALTH if request.POST.get("back") == BACK_HEALTH else BACK_DETAIL
    try:
        services.outbox_mark_handled(message=message, user=request.user, note=note)
    except ApplicationError as exc:
        if back == BACK_HEALTH:
            return _health(request, status=exc.status, error=exc.message, note=note, failed=pk)
        return _message_detail(request, pk, status=exc.status, action="handled", error=exc.message, note=note)
    messages.success(request, f"Message {pk} ({message.topic} to {message.endpoint}) marked handled by hand.")
    return redirect("integration") if back == BACK_HEALTH else redirect("integration-outbox-detail", pk=pk)


# --- inbound events --------------------------------------------------------------------------


@require_GET
@role_required(*OPERATORS)
def inbound_list(request: HtmxHttpRequest) -> HttpResponse:
    return _list_response(
        request,
        InboundFilterForm(request.GET),
        selectors.inbound_events,
        "portal/integration/inbound_list.html",
        "portal/integration/partials/inbound_results.html",
    )


def _event_detail(request: HttpRequest, pk: int, *, status: int = 200, error: str = "") -> HttpResponse:
    try:
        detail = selectors.inbound_event_detail(event_id=pk)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    context = {
        "detail": detail,
        "event": detail.event,
        "data": _pretty(detail.event.data),
        "may_retry": detail.event.state == InboundEvent.State.FAILED,
        "error": error,
    }
    return render(request, "portal/integration/inbound_detail.html", context, status=status)


@require_GET
@role_required(*OPERATORS)
def inbound_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _event_detail(request, pk)


@require_POST
@role_required(*OPERATORS)
def inbound_retry(request: HttpRequest, pk: int) -> HttpResponse:
    event = InboundEvent.objects.filter(pk=pk).first()
    if event is None:
        raise Http404(f"There is no inbound event {pk}.")
    try:
        event = services.inbound_event_retry(event=event, user=request.user)
    except ApplicationError as exc:
        return _event_detail(request, pk, status=exc.status, error=exc.message)
    if event.state == InboundEvent.State.FAILED:
        messages.error(request, f"Event {event.event_id} failed again: {event.last_error}")
    else:
        messages.success(request, f"Event {event.event_id} is {event.get_state_display().lower()} now.")
    return redirect(reverse("integration-inbound-detail", args=[pk]))
