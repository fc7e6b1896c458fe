"""The work-queue screens: the queues, a queue's items, my work and the work-item page.

Views call the work-queue services and the selectors and hold no business rules. Every
action is a POST: an ApplicationError becomes a clear message and nothing changes; htmx
requests get the updated fragment, other requests a redirect (post/redirect/get).
"""

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from exceptions import services as exception_services
from fulfillment.core import clock, notify, roles, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.errors import ApplicationError, InvalidInput, NotFound
from fulfillment.core.models import Queue, WorkItem, WorkItemEvent
from fulfillment.core.roles import ROLES
from portal import work_selectors as sel
from portal import work_services
from portal.access import role_required
from portal.views import HtmxHttpRequest, _data_figures
from portal.work_forms import (
    BulkForm,
    CommentForm,
    QueueFilterForm,
    ReassignForm,
    ResolveForm,
    SavedViewForm,
    SnoozeForm,
    error_list,
)

PAGE_SIZE = 50
MY_WORK_ROWS = 100
EXPORT_BATCH = 500
# Set on error fragments: the pages' htmx handler swaps these in although their status is 4xx.
FRAGMENT_HEADER = "X-Portal-Fragment"


def _partial(request: HtmxHttpRequest) -> bool:
    return bool(request.htmx) and not request.htmx.history_restore_request


def _render(
    request: HtmxHttpRequest, page: str, fragment: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """The whole page, or only its fragment for htmx."""
    response = render(request, fragment if _partial(request) else page, context, status=status)
    if status >= 400:
        response[FRAGMENT_HEADER] = "error"
    patch_vary_headers(response, ("HX-Request",))
    return response


def _go(request: HtmxHttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _queue(user: AbstractBaseUser, slug: str) -> Queue:
    try:
        queue = workqueue.queue_get(slug=slug)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    if not workqueue.may_work(user, queue):
        raise PermissionDenied(
            f"Queue “{queue.name}” belongs to team {queue.team.name}, and you are not in it."
        )
    return queue


def _flash(request: HttpRequest, *, notice: str, error: str) -> None:
    if error:
        messages.error(request, error)
    else:
        messages.success(request, notice)


def _queue_url(queue: Queue, query: str = "") -> str:
    url = reverse("queue", args=[queue.slug])
    return f"{url}?{query}" if query else url


# --- the queues ---------------------------------------------------------------------------


@require_GET
@role_required(*ROLES)
def queues(request: HtmxHttpRequest) -> HttpResponse:
    now = clock.now()
    context = {
        "figures": sel.queues_overview(user=request.user, now=now),
        "every_queue": roles.has_role(request.user, roles.ADMIN),
        "now": now,
    }
    return _render(request, "portal/work/queues.html", "portal/work/partials/queue_figures.html", context)


# --- a queue ------------------------------------------------------------------------------


@dataclass
class BulkReport:
    verb: str
    done: int = 0
    failed: list[tuple[int, str, str]] = field(default_factory=list)  # (id, title, why)
    error: str = ""


def _results(
    request: HtmxHttpRequest,
    queue: Queue,
    params: QueryDict,
    *,
    catalogue: sel.TypeCatalogue | None = None,
    report: BulkReport | None = None,
    notice: str = "",
    error: str = "",
) -> dict[str, Any]:
    """The filter form and, when it is valid, one page of the queue: fixed queries."""
    catalogue = catalogue or sel.type_catalogue()
    form = QueueFilterForm(params, type_labels=catalogue.labels)
    context: dict[str, Any] = {
        "queue": queue,
        "form": form,
        "report": report,
        "notice": notice,
        "error": error,
        "rows": [],
        "query": "",
    }
    if not form.is_valid():
        context["errors"] = error_list(form)
        return context
    now = clock.now()
    query = form.query()
    page = sel.queue_items(
        queue=queue,
        filters=form.filters(),
        user=request.user,
        now=now,
        after=form.cleaned_data["after"],
        limit=PAGE_SIZE,
    )
    rows = sel.rows(page.items, now=now, labels=catalogue.labels)
    next_query = ""
    if page.next_cursor is not None:
        params_next = QueryDict(query, mutable=True)
        params_next["after"] = page.next_cursor.encode()
        next_query = params_next.urlencode()
    context.update(
        rows=rows,
        query=query,
        next_query=next_query,
        is_later_page=form.cleaned_data["after"] is not None,
        members=list(notify.team_members(queue).order_by("username")),
        views=sel.saved_views(queue=queue, user=request.user),
        reason_groups=catalogue.reason_groups(
            {r.item.type for r in rows if r.item.kind == WorkItem.Kind.EXCEPTION}
        ),
    )
    return context


@require_GET
@role_required(*ROLES)
def queue_page(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    queue = _queue(request.user, slug)
    context = _results(request, queue, request.GET)
    status = 200 if "errors" not in context else 422
    return _render(
        request, "portal/work/queue.html", "portal/work/partials/queue_results.html", context, status
    )


def _results_response(
    request: HtmxHttpRequest, queue: Queue, query: str, status: int = 200, **extra: Any
) -> HttpResponse:
    """The results fragment after an htmx action, for the filters the page showed."""
    context = _results(request, queue, QueryDict(query), **extra)
    return _render(
        request, "portal/work/queue.html", "portal/work/partials/queue_results.html", context, status
    )


@require_POST
@role_required(*ROLES)
def queue_claim_next(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    queue = _queue(request.user, slug)
    try:
        item = workqueue.work_item_claim_next(queue=queue, user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return _go(request, _queue_url(queue))
    if item is None:
        messages.info(
            request, f"Nothing left to claim in {queue.name}: every open item is claimed or snoozed."
        )
        return _go(request, _queue_url(queue))
    messages.success(request, f"You claimed “{item.title}”.")
    return _go(request, reverse("work-item", args=[item.pk]))


def _resolve_exception(item: WorkItem, *, reason_code: str, note: str, user: AbstractBaseUser) -> None:
    if item.kind == WorkItem.Kind.APPROVAL:
        raise InvalidInput(f"Work item {item.pk} is an approval: decide it on its approval page.")
    exception = getattr(item, "exception", None)
    if exception is None:
        raise InvalidInput(f"Work item {item.pk} has no exception record to resolve.")
    exception_services.exception_resolve(
        exception=exception, reason_code=reason_code, note=note, actor=Actor.of(user)
    )


BULK_VERBS = {BulkForm.ASSIGN: "Assigned", BulkForm.RELEASE: "Released", BulkForm.RESOLVE: "Resolved"}


def _bulk(queue: Queue, form: BulkForm, user: AbstractBaseUser) -> BulkReport:
    data = form.cleaned_data
    report = BulkReport(verb=BULK_VERBS[data["action"]])
    found = WorkItem.objects.select_related("queue__team", "assignee", "exception").in_bulk(data["items"])
    items = []
    for pk in dict.fromkeys(data["items"]):
        item = found.get(pk)
        if item is None or item.queue_id != queue.pk:
            report.failed.append((pk, "", f"Work item {pk} is not in {queue.name}."))
        else:
            items.append(item)
    actions: dict[str, Callable[[WorkItem], object]] = {
        BulkForm.ASSIGN: lambda item: workqueue.work_item_reassign(item=item, to=data["to"], actor=user),
        BulkForm.RELEASE: lambda item: workqueue.work_item_release(item=item, user=user),
        BulkForm.RESOLVE: lambda item: _resolve_exception(
            item, reason_code=data["reason_code"], note=data["note"], user=user
        ),
    }
    outcome = workqueue.bulk(items, actions[data["action"]])
    titles = {item.pk: item.title for item in items}
    report.done = len(outcome.done)
    report.failed += [(pk, titles[pk], why) for pk, why in outcome.failed.items()]
    return report


@require_POST
@role_required(*ROLES)
def queue_bulk(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    queue = _queue(request.user, slug)
    form = BulkForm(request.POST, members=notify.team_members(queue))
    query = request.POST.get("query", "")
    if not form.is_valid():
        report = BulkReport(verb="Changed", error="; ".join(error_list(form)))
    else:
        report = _bulk(queue, form, request.user)
    if request.htmx:
        return _results_response(request, queue, query, status=422 if report.error else 200, report=report)
    if report.error:
        messages.error(request, f"Nothing was changed. {report.error}")
    else:
        if report.done:
            messages.success(request, f"{report.verb} {report.done} item{'' if report.done == 1 else 's'}.")
        for pk, title, why in report.failed:
            messages.error(request, f"#{pk} {title}: {why}" if title else f"#{pk}: {why}")
    return redirect(_queue_url(queue, query))


@require_POST
@role_required(*ROLES)
def saved_view_save(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    queue = _queue(request.user, slug)
    form = SavedViewForm(request.POST)
    catalogue = sel.type_catalogue()
    filters = QueueFilterForm(QueryDict(request.POST.get("query", "")), type_labels=catalogue.labels)
    query = filters.query() if filters.is_valid() else ""
    notice, error = "", ""
    if not form.is_valid():
        error = "The view was not saved. " + " ".join(error_list(form))
    elif not filters.is_valid():
        error = "The view was not saved: its filters are not valid."
    else:
        try:
            view = work_services.saved_view_save(
                owner=request.user,
                queue=queue,
                name=form.cleaned_data["name"],
                query=query,
                shared=form.cleaned_data["shared"],
            )
            notice = f"Saved the view “{view.name}”" + (", shared with the team." if view.shared else ".")
        except ApplicationError as exc:
            error = f"The view was not saved: {exc.message}"
    if request.htmx:
        return _results_response(
            request,
            queue,
            query,
            status=422 if error else 200,
            catalogue=catalogue,
            notice=notice,
            error=error,
        )
    _flash(request, notice=notice, error=error)
    return redirect(_queue_url(queue, query))


@require_POST
@role_required(*ROLES)
def saved_view_delete(request: HtmxHttpRequest, slug: str, view_id: int) -> HttpResponse:
    queue = _queue(request.user, slug)
    query = request.POST.get("query", "")
    notice, error = "", ""
    try:
        work_services.saved_view_delete(view_id=view_id, user=request.user)
        notice = "Deleted the view."
    except ApplicationError as exc:
        error = exc.message
    if request.htmx:
        return _results_response(
            request, queue, query, status=422 if error else 200, notice=notice, error=error
        )
    _flash(request, notice=notice, error=error)
    return redirect(_queue_url(queue, query))


# --- CSV export ---------------------------------------------------------------------------


EXPORT_HEADER = [
    "rank", "item_id", "title", "kind", "type", "type_name", "order", "customer_code", "customer_tier",
    "warehouse", "assignee", "revenue_at_risk", "severity", "escalation_level", "promised_at", "due",
    "revenue_hours", "tier_hours", "severity_hours", "escalation_hours", "weight_hours",
    "sla_due_at", "sla_state", "created_at", "priority_key",
]  # fmt: skip


class _Echo:
    """A file for csv.writer that hands each written line back instead of storing it."""

    def write(self, value: str) -> str:
        return value


def _text(value: str) -> str:
    """A text cell that a spreadsheet will not run as a formula."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@") else value


def _when(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _export_rows(items: Iterator[WorkItem], *, now: datetime, labels: dict[str, str]) -> Iterator[list[Any]]:
    yield EXPORT_HEADER
    for rank, item in enumerate(items, start=1):
        why = sel.explain(item, now=now)
        yield [
            rank, item.pk, _text(item.title), item.kind, item.type, labels.get(item.type, item.type),
            _text(item.subject_ref),
            _text(item.customer_code), item.customer_tier, _text(item.warehouse_code),
            item.assignee.get_username() if item.assignee_id else "",
            f"{item.revenue_at_risk:.2f}", item.severity, item.escalation_level,
            _when(item.promised_at), why.due,
            *(f"{f.hours:.2f}" for f in why.factors), f"{why.weight_hours:.2f}",
            _when(item.sla_due_at), sel.sla_state(item, now=now), _when(item.created_at), item.priority_key,
        ]  # fmt: skip


@require_GET
@role_required(*ROLES)
def queue_export(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    queue = _queue(request.user, slug)
    catalogue = sel.type_catalogue()
    form = QueueFilterForm(request.GET, type_labels=catalogue.labels)
    if not form.is_valid():
        return HttpResponse(
            "These filters cannot be used: " + "; ".join(error_list(form)),
            status=422,
            content_type="text/plain; charset=utf-8",
        )
    now = clock.now()
    items = sel.queue_items_all(
        queue=queue, filters=form.filters(), user=request.user, now=now, batch=EXPORT_BATCH
    )
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in _export_rows(items, now=now, labels=catalogue.labels)),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{queue.slug}-{now:%Y%m%d-%H%M}.csv"'
    return response


# --- my work ------------------------------------------------------------------------------


@require_GET
@role_required(*ROLES)
def my_work(request: HtmxHttpRequest) -> HttpResponse:
    now = clock.now()
    items = sel.my_items(user=request.user, limit=MY_WORK_ROWS)
    catalogue = sel.type_catalogue()
    context = {
        "rows": sel.rows(items[:MY_WORK_ROWS], now=now, labels=catalogue.labels),
        "more": len(items) > MY_WORK_ROWS,
        "inbox": sel.unread_notifications(user=request.user),
    }
    return render(request, "portal/work/my_work.html", context)


@require_POST
@role_required(*ROLES)
def notifications_read(request: HtmxHttpRequest) -> HttpResponse:
    """Mark the notifications named by ``id`` read, or all of them without any ``id``."""
    try:
        ids = [int(v) for v in request.POST.getlist("id")]
    except ValueError:
        raise Http404("There is no such notification.") from None
    marked = work_services.notifications_mark_read(user=request.user, ids=ids or None)
    if request.htmx:
        return render(
            request,
            "portal/work/partials/notifications.html",
            {"inbox": sel.unread_notifications(user=request.user)},
        )
    messages.success(request, f"Marked {marked} notification{'' if marked == 1 else 's'} read.")
    return redirect("my-work")


# --- a work item ----------------------------------------------------------------------------


def _item(user: AbstractBaseUser, pk: int) -> WorkItem:
    item = sel.work_item_get(pk=pk)
    if item is None:
        raise Http404(f"Work item {pk} does not exist.")
    if not workqueue.may_work(user, item.queue):
        raise PermissionDenied(
            f"Work item {pk} is in queue “{item.queue.name}” of team {item.queue.team.name}, "
            "and you are not in it."
        )
    return item


def _event_line(event: WorkItemEvent) -> tuple[str, str]:
    """An event of the item's history as (what happened, details)."""
    data = event.data
    match event.action:
        case "opened":
            return "Opened", event.note
        case "updated":
            return "Signalled again", event.note
        case "claimed":
            return "Claimed", event.note
        case "released":
            return "Released", event.note
        case "reassigned":
            previous = f" (from {data['previous']})" if data.get("previous") else ""
            return f"Assigned to {data.get('to', '?')}{previous}", event.note
        case "snoozed":
            until = datetime.fromisoformat(data["until"]) if data.get("until") else None
            return f"Snoozed until {until:%Y-%m-%d %H:%M}" if until else "Snoozed", event.note
        case "comment":
            return "Comment", event.note
        case "sla_warning":
            return f"SLA warning: {data.get('share', '?')} % used", ""
        case "escalated":
            moved = ""
            if data.get("from_queue") != data.get("to_queue"):
                moved = f", moved from {data.get('from_queue')} to {data.get('to_queue')}"
            level = f"level {data.get('from_level')} → {data.get('to_level')}"
            return f"Escalated by rule “{data.get('rule', '?')}”", f"{level}{moved}. {event.note}".strip()
        case "resolved":
            claimed = " (claimed and resolved at once)" if data.get("claimed") else ""
            return f"Resolved: {data.get('reason_code', '?')}{claimed}", event.note
        case "approved":
            return "Approved", event.note
    return event.action.replace("_", " ").capitalize(), event.note


@dataclass(frozen=True)
class Can:
    """Which actions the page offers; the services decide what is allowed."""

    claim: bool
    release: bool
    reassign: bool
    snooze: bool
    resolve: bool
    decide: bool  # an approval: decided on its approval page


def _can(item: WorkItem, user: AbstractBaseUser, *, has_request: bool) -> Can:
    is_open = item.is_open
    admin = roles.has_role(user, roles.ADMIN)
    holds = item.assignee_id == user.pk
    free_or_mine = item.assignee_id is None or holds or admin
    approval = item.kind == WorkItem.Kind.APPROVAL
    return Can(
        claim=is_open and item.assignee_id is None,
        release=is_open and item.assignee_id is not None and (holds or admin),
        reassign=is_open and free_or_mine,
        snooze=is_open,
        resolve=is_open and not approval and free_or_mine,
        decide=is_open and approval and has_request,
    )


def _item_context(request: HtmxHttpRequest, item: WorkItem, **extra: Any) -> dict[str, Any]:
    now = clock.now()
    detail = sel.work_item_detail(item=item)
    catalogue = sel.type_catalogue()
    can = _can(item, request.user, has_request=detail.approval is not None)
    history = [(event, *_event_line(event)) for event in detail.events]
    exception, approval = detail.exception, detail.approval
    shortfall = exception.details.get("shortfall") if exception else None
    return {
        "item": item,
        "detail": detail,
        "why": sel.explain(item, now=now),
        "sla": sel.sla_state(item, now=now),
        "now": now,
        "type_label": catalogue.labels.get(item.type, item.type),
        "history": history,
        "comments": sum(1 for event in detail.events if event.action == "comment"),
        "can": can,
        "members": list(notify.team_members(item.queue).order_by("username")) if can.reassign else [],
        "reason_codes": exception.type.reason_codes if exception else [],
        "shortfall": sorted(shortfall.items()) if isinstance(shortfall, dict) else [],
        "exception_figures": _data_figures({k: v for k, v in exception.details.items() if k != "shortfall"})
        if exception
        else [],
        "approval_figures": _data_figures(approval.figures) if approval else [],
        "timeline": [
            (t, t.transition.replace("_", " ").capitalize(), _data_figures(t.data)) for t in detail.timeline
        ],
        "held_by_other": item.assignee_id not in (None, request.user.pk),
        **extra,
    }


@require_GET
@role_required(*ROLES)
def work_item(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    item = _item(request.user, pk)
    return render(request, "portal/work/item.html", _item_context(request, item))


def _valid(form: Any) -> dict[str, Any]:
    if not form.is_valid():
        raise InvalidInput(" ".join(error_list(form)))
    return form.cleaned_data


def _do_claim(request: HttpRequest, item: WorkItem) -> str:
    workqueue.work_item_claim(item=item, user=request.user)
    return "You hold this item now."


def _do_release(request: HttpRequest, item: WorkItem) -> str:
    workqueue.work_item_release(item=item, user=request.user)
    return "Released: the item is back in the queue."


def _do_reassign(request: HttpRequest, item: WorkItem) -> str:
    data = _valid(ReassignForm(request.POST, members=notify.team_members(item.queue)))
    workqueue.work_item_reassign(item=item, to=data["to"], actor=request.user)
    return f"Assigned to {data['to'].get_username()}."


def _do_snooze(request: HttpRequest, item: WorkItem) -> str:
    data = _valid(SnoozeForm(request.POST))
    workqueue.work_item_snooze(item=item, until=data["until"], user=request.user, note=data["note"])
    return f"Snoozed until {data['until']:%Y-%m-%d %H:%M}."


def _do_resolve(request: HttpRequest, item: WorkItem) -> str:
    data = _valid(ResolveForm(request.POST))
    _resolve_exception(item, reason_code=data["reason_code"], note=data["note"], user=request.user)
    return f"Resolved as {data['reason_code']}."


def _do_comment(request: HttpRequest, item: WorkItem) -> str:
    data = _valid(CommentForm(request.POST))
    workqueue.work_item_comment(item=item, text=data["text"], user=request.user)
    return "Comment added."


ACTIONS: dict[str, Callable[[HttpRequest, WorkItem], str]] = {
    "claim": _do_claim,
    "release": _do_release,
    "reassign": _do_reassign,
    "snooze": _do_snooze,
    "resolve": _do_resolve,
    "comment": _do_comment,
}


@require_POST
@role_required(*ROLES)
def work_item_action(request: HtmxHttpRequest, pk: int, action: str) -> HttpResponse:
    handler = ACTIONS.get(action)
    if handler is None:
        raise Http404(f"There is no action “{action}” on work items.")
    item = _item(request.user, pk)
    notice, error, status = "", "", 200
    try:
        notice = handler(request, item)
    except ApplicationError as exc:
        error, status = exc.message, exc.status
    if request.htmx:
        fresh = _item(request.user, pk) if not error else item
        context = _item_context(request, fresh, notice=notice, error=error)
        response = render(request, "portal/work/partials/item_main.html", context, status=status)
        if error:
            response[FRAGMENT_HEADER] = "error"
        return response
    _flash(request, notice=notice, error=f"Nothing was changed. {error}" if error else "")
    return redirect("work-item", pk=pk)
