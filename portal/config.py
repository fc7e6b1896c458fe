"""Finance approvals, delegations and the admin configuration screens.

The views call the services (approvals, the escalation module, flows.approvals) and show
their errors. Queues, calendars and SLA targets have no service module, so their thin
save functions live here: each checks the admin role, runs ``full_clean`` and saves in
one transaction, and a failure writes nothing.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import PermissionDenied as Forbidden
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Count, Max, OuterRef, Prefetch, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from approvals import services as approval_services
from approvals.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest, Delegation, Kind
from exceptions.models import ExceptionType, StateDeadline
from flows import approvals as approval_flow
from fulfillment.core import clock, escalation, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.errors import ApplicationError, InvalidInput, NotFound, PermissionDenied
from fulfillment.core.models import BusinessCalendar, EscalationRule, Holiday, Queue, RuleFiring, WorkItem
from fulfillment.core.roles import ADMIN, FINANCE, has_role, roles_of
from orders.models import Order
from orders.services import credit_exposure
from portal.access import role_required
from portal.config_forms import (
    WEEKDAYS,
    ApprovalFilterForm,
    CalendarForm,
    DecidedCursor,
    DecisionForm,
    DelegationForm,
    ExceptionTypeFormSet,
    HolidayForm,
    PolicyForm,
    QueueForm,
    RankCursor,
    RuleForm,
    StateDeadlineFormSet,
    labelled_errors,
    show_errors,
    type_choices,
)

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
DECIDED_WINDOW = timedelta(days=7)
PREVIEW_ITEMS = 20
FIRINGS_SHOWN = 50
DELEGATIONS_SHOWN = 100
View = Callable[..., HttpResponse]


# --- save functions for the configuration without a service module -----------------------


def _require_admin(actor: Actor) -> None:
    if actor.user is not None and not has_role(actor.user, ADMIN):
        raise PermissionDenied("Only admins change the configuration.")


def _full_clean(instance: models.Model, what: str) -> None:
    try:
        instance.full_clean()
    except ValidationError as exc:
        raise InvalidInput(f"The {what} is not valid.", fields=exc.message_dict) from exc


@transaction.atomic
def queue_save(*, queue: Queue, actor: Actor) -> Queue:
    """Create or change a queue; its slug is fixed once created (code refers to it)."""
    _require_admin(actor)
    if queue.pk is not None:
        stored = Queue.objects.select_for_update().filter(pk=queue.pk).values_list("slug", flat=True).first()
        if stored is None:
            raise NotFound(f"Queue {queue.pk} does not exist.")
        if stored != queue.slug:
            raise InvalidInput(
                "A queue's slug cannot change.",
                fields={"slug": [f"Keep '{stored}': links and code refer to it."]},
            )
    _full_clean(queue, "queue")
    queue.save()
    logger.info("queue %s saved by %s", queue.slug, actor.label)
    return queue


@transaction.atomic
def calendar_save(*, calendar: BusinessCalendar, actor: Actor) -> BusinessCalendar:
    """Create or change a team's calendar; SLA due times of open items are not moved."""
    _require_admin(actor)
    _full_clean(calendar, "calendar")
    calendar.save()
    logger.info("calendar of team %s saved by %s", calendar.team_id, actor.label)
    return calendar


@transaction.atomic
def holiday_add(*, calendar: BusinessCalendar, day: date, name: str, actor: Actor) -> Holiday:
    _require_admin(actor)
    list(BusinessCalendar.objects.select_for_update().filter(pk=calendar.pk).values_list("pk", flat=True))
    taken = calendar.holidays.filter(date=day).first()
    if taken is not None:
        raise InvalidInput(
            "That day is a holiday already.",
            fields={"date": [f"{day:%Y-%m-%d} is a holiday already ({taken.name})."]},
        )
    holiday = Holiday(calendar=calendar, date=day, name=name.strip())
    _full_clean(holiday, "holiday")
    holiday.save()
    logger.info("holiday %s added to calendar %s by %s", day, calendar.pk, actor.label)
    return holiday


@transaction.atomic
def holiday_remove(*, holiday: Holiday, actor: Actor) -> None:
    _require_admin(actor)
    logger.info("holiday %s removed from calendar %s by %s", holiday.date, holiday.calendar_id, actor.label)
    holiday.delete()


@transaction.atomic
def sla_targets_save(
    *,
    types: Sequence[ExceptionType],
    deadlines: Sequence[StateDeadline],
    removed: Sequence[StateDeadline],
    actor: Actor,
) -> None:
    """Save exception types' SLA settings and the state deadlines together, or nothing."""
    _require_admin(actor)
    for deadline in removed:
        deadline.delete()
    problems = []
    for instance in [*types, *deadlines]:
        try:
            instance.full_clean()
        except ValidationError as exc:
            for name, texts in exc.message_dict.items():
                problems += [f"{instance}: {name.replace('_', ' ')}: {text}" for text in texts]
    if problems:
        raise InvalidInput("Nothing was saved: " + " ".join(problems))
    for instance in [*types, *deadlines]:
        instance.save()
    logger.info("SLA targets saved by %s", actor.label)


# --- access ----------------------------------------------------------------------------


def _is_delegate_today(user: AbstractBaseUser) -> bool:
    day = approval_services.today()
    return Delegation.objects.in_force(day).filter(delegate=user).exists()


def approvals_access(view: View) -> View:
    """Finance and admins; and whoever stands in for an approver today."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not (has_role(request.user, FINANCE, ADMIN) or _is_delegate_today(request.user)):
            raise Forbidden("Approvals are for finance, admins and the delegates of approvers.")
        return view(request, *args, **kwargs)

    return wrapped


admin_only = role_required(ADMIN)


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


# --- approvals: reads ------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next_token: str = ""


def _approvals_queue() -> Queue | None:
    return Queue.objects.filter(slug=approval_services.QUEUE_SLUG).first()


def pending_approvals(*, queue: Queue, kind: str, after: RankCursor | None, limit: int) -> Page:
    """Open approval items of the queue in rank order, read along the queue's index."""
    approved = (
        ApprovalDecision.objects.filter(
            request__work_item=OuterRef("pk"), decision=ApprovalDecision.Decision.APPROVE
        )
        .order_by()
        .values("request")
        .annotate(n=Count("pk"))
        .values("n")
    )
    items = WorkItem.objects.filter(
        queue=queue, state=WorkItem.State.OPEN, kind=WorkItem.Kind.APPROVAL, approval__isnull=False
    )
    if kind:
        items = items.filter(type=kind)
    if after is not None:
        items = items.filter(
            Q(priority_key__lte=after.priority_key),
            Q(priority_key__lt=after.priority_key)
            | Q(created_at__gt=after.created_at)
            | Q(created_at=after.created_at, id__gt=after.id),
        )
    rows = list(
        items.select_related(
            "assignee",
            "approval__order__customer",
            "approval__policy",
            "approval__requested_by",
        )
        .annotate(approvals_so_far=Coalesce(Subquery(approved), 0))
        .order_by("-priority_key", "created_at", "id")[: limit + 1]
    )
    if len(rows) <= limit:
        return Page(rows=rows)
    rows = rows[:limit]
    last = rows[-1]
    return Page(rows=rows, next_token=RankCursor(last.priority_key, last.created_at, last.pk).encode())


def decided_approvals(*, kind: str, since: datetime, after: DecidedCursor | None, limit: int) -> Page:
    """Requests decided since ``since``, latest first, each with its decisions."""
    requests = ApprovalRequest.objects.exclude(status=ApprovalRequest.Status.PENDING).filter(
        decided_at__gte=since
    )
    if kind:
        requests = requests.filter(kind=kind)
    if after is not None:
        requests = requests.filter(
            Q(decided_at__lte=after.decided_at), Q(decided_at__lt=after.decided_at) | Q(id__lt=after.id)
        )
    rows = list(
        requests.select_related("order__customer", "policy", "requested_by")
        .prefetch_related(
            Prefetch(
                "decisions",
                queryset=ApprovalDecision.objects.select_related("approver", "on_behalf_of").order_by(
                    "at", "id"
                ),
            )
        )
        .order_by("-decided_at", "-id")[: limit + 1]
    )
    next_token = ""
    if len(rows) > limit:
        rows = rows[:limit]
        next_token = DecidedCursor(rows[-1].decided_at, rows[-1].pk).encode()
    for row in rows:
        decisions = list(row.decisions.all())
        row.final_decision = decisions[-1] if decisions else None
    return Page(rows=rows, next_token=next_token)


def _tab_counts(queue: Queue | None, since: datetime) -> dict[str, int]:
    counts = {"pending": 0, "decided": 0}
    if queue is not None:
        by_type = (
            WorkItem.objects.filter(queue=queue, state=WorkItem.State.OPEN, kind=WorkItem.Kind.APPROVAL)
            .values("type")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for row in by_type:
            counts[row["type"]] = row["n"]
            counts["pending"] += row["n"]
    counts["decided"] = (
        ApprovalRequest.objects.exclude(status=ApprovalRequest.Status.PENDING)
        .filter(decided_at__gte=since)
        .count()
    )
    return counts


# --- approvals: screens ------------------------------------------------------------------


@require_GET
@approvals_access
def approval_list(request: HttpRequest) -> HttpResponse:
    form = ApprovalFilterForm(request.GET)
    now = clock.now()
    since = now - DECIDED_WINDOW
    queue = _approvals_queue()
    context: dict[str, Any] = {
        "form": form,
        "now": now,
        "queue": queue,
        "counts": _tab_counts(queue, since),
        "window_days": DECIDED_WINDOW.days,
        "may_open_order": bool(roles_of(request.user)),
        "may_delegate": has_role(request.user, FINANCE, ADMIN),
        "page": Page(rows=[]),
    }
    if not form.is_valid():
        context["errors"] = [e for errors in form.errors.values() for e in errors]
        context.update(view=ApprovalFilterForm.PENDING, kind="")
        return render(request, "portal/approvals/list.html", context, status=400)
    view, kind, after = form.cleaned_data["view"], form.cleaned_data["kind"], form.cleaned_data["after"]
    if view == ApprovalFilterForm.DECIDED:
        page = decided_approvals(kind=kind, since=since, after=after, limit=PAGE_SIZE)
    else:
        page = Page(rows=[])
        if queue is not None:
            page = pending_approvals(queue=queue, kind=kind, after=after, limit=PAGE_SIZE)
    counts = context["counts"]
    pending = view == ApprovalFilterForm.PENDING
    context["kind_links"] = [("", "All kinds", counts["pending"] if pending else None)] + [
        (value, label, counts.get(value, 0) if pending else None) for value, label in Kind.choices
    ]
    context.update(view=view, kind=kind, page=page, is_later_page=after is not None)
    return render(request, "portal/approvals/list.html", context)


@dataclass(frozen=True)
class Cell:
    value: Decimal | None
    over: bool = False  # a negative headroom, shown as the overrun


@dataclass(frozen=True)
class ExposureRow:
    label: str
    cells: tuple[Cell, Cell]  # at request, now
    sign: str = ""  # how the row adds up: "+" to the exposure, "=" the exposure
    headroom: bool = False


@dataclass(frozen=True)
class Exposure:
    rows: list[ExposureRow]
    blocked_then: bool | None
    blocked_now: bool


def _amount(figures: dict[str, Any], key: str) -> Decimal | None:
    value = figures.get(key)
    return None if value in (None, "") else Decimal(str(value))


def _headroom(limit: Decimal | None, exposure: Decimal | None) -> Cell:
    if limit is None or exposure is None:
        return Cell(None)
    return Cell(abs(limit - exposure), over=exposure > limit)


def _exposure(approval: ApprovalRequest) -> Exposure:
    """The breakdown at request time (the request's figures) beside the customer's now."""
    figures = approval.figures or {}
    now = credit_exposure(order=approval.order)

    def row(label: str, key: str, current: Decimal, sign: str = "") -> ExposureRow:
        return ExposureRow(label, (Cell(_amount(figures, key)), Cell(current)), sign=sign)

    headroom = (
        _headroom(_amount(figures, "credit_limit"), _amount(figures, "exposure")),
        _headroom(now.credit_limit, now.exposure),
    )
    blocked = figures.get("credit_blocked")
    return Exposure(
        rows=[
            row("Open receivables", "open_receivables", now.open_receivables),
            row("Other open orders", "other_open_orders", now.other_open_orders, sign="+"),
            row("This order", "this_order", now.this_order, sign="+"),
            row("Exposure", "exposure", now.exposure, sign="="),
            row("Credit limit", "credit_limit", now.credit_limit),
            ExposureRow("Headroom", headroom, headroom=True),
        ],
        blocked_then=None if blocked is None else bool(blocked),
        blocked_now=now.blocked,
    )


def _approval_context(request: HttpRequest, pk: int, form: DecisionForm | None = None) -> dict[str, Any]:
    approval = (
        ApprovalRequest.objects.select_related(
            "work_item__assignee",
            "work_item__queue",
            "order__customer",
            "order__warehouse",
            "policy__approver_group",
            "requested_by",
        )
        .filter(pk=pk)
        .first()
    )
    if approval is None:
        raise Http404(f"Approval request {pk} does not exist.")
    decisions = list(approval.decisions.select_related("approver", "on_behalf_of").order_by("at", "id"))
    pending = approval.status == ApprovalRequest.Status.PENDING
    on_behalf_of, refusal = None, ""
    if pending:
        try:
            on_behalf_of = approval_services.access_approval_decision(request=approval, user=request.user)
        except ApplicationError as exc:
            refusal = exc.message
    item = approval.work_item
    claimed_by_other = item.assignee_id is not None and item.assignee_id != request.user.pk
    return {
        "approval": approval,
        "order": approval.order,
        "item": item,
        "lines": list(approval.order.lines.select_related("product").order_by("line_no")),
        "decisions": decisions,
        "approvals_so_far": sum(d.decision == ApprovalDecision.Decision.APPROVE for d in decisions),
        "exposure": _exposure(approval) if approval.kind == Kind.CREDIT_HOLD else None,
        "may_decide": pending and not refusal,
        "refusal": refusal,
        "on_behalf_of": on_behalf_of,
        "claimed_by_other": claimed_by_other,
        "is_admin": has_role(request.user, ADMIN),
        "may_open_item": workqueue.may_work(request.user, item.queue),
        "may_open_order": bool(roles_of(request.user)),
        "form": form or DecisionForm(),
        "now": clock.now(),
    }


@require_GET
@approvals_access
def approval_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "portal/approvals/detail.html", _approval_context(request, pk))


def _outcome_message(outcome: approval_services.ApprovalOutcome, order: Order) -> str:
    decision = outcome.decision
    stand_in = f" on behalf of {decision.on_behalf_of.get_username()}" if decision.on_behalf_of else ""
    status = order.get_status_display()
    if not outcome.final:
        required = outcome.request.policy.approvers_required
        return (
            f"Your approval{stand_in} is recorded ({required - 1} of {required}). Order "
            f"{order.external_id} stays “{status}” until a second, different approver decides."
        )
    verb = "Approved" if outcome.approved else "Rejected"
    return f"{verb}{stand_in}. Order {order.external_id} is now “{status}”."


@require_POST
@approvals_access
def approval_decide(request: HttpRequest, pk: int) -> HttpResponse:
    approval = ApprovalRequest.objects.filter(pk=pk).first()
    if approval is None:
        raise Http404(f"Approval request {pk} does not exist.")
    form = DecisionForm(request.POST)
    status = 422
    if form.is_valid():
        try:
            outcome = approval_flow.approval_decide(
                request=approval,
                user=request.user,
                approve=form.cleaned_data["decision"] == ApprovalDecision.Decision.APPROVE,
                comment=form.cleaned_data["comment"],
            )
        except ApplicationError as exc:
            show_errors(form, exc)
            status = exc.status
        else:
            order = Order.objects.get(pk=approval.order_id)
            messages.success(request, _outcome_message(outcome, order))
            return redirect("approval", pk=pk)
    return render(
        request, "portal/approvals/detail.html", _approval_context(request, pk, form), status=status
    )


@require_http_methods(["GET", "POST"])
@role_required(FINANCE, ADMIN)
def delegation_list(request: HttpRequest) -> HttpResponse:
    user = request.user
    is_admin = has_role(user, ADMIN)
    form = DelegationForm(
        request.POST or None,
        user=user,
        may_choose_delegator=is_admin,
        initial={"starts_on": approval_services.today()},
    )
    status = 200
    if request.method == "POST":
        status = 422
        if form.is_valid():
            data = form.cleaned_data
            try:
                delegation = approval_services.delegation_create(
                    delegator=data["delegator"] if is_admin else user,
                    delegate=data["delegate"],
                    starts_on=data["starts_on"],
                    ends_on=data["ends_on"],
                    reason=data["reason"],
                    actor=Actor.of(user),
                )
            except ApplicationError as exc:
                show_errors(form, exc)
                status = exc.status
            else:
                messages.success(
                    request,
                    f"{delegation.delegate.get_username()} stands in for "
                    f"{delegation.delegator.get_username()} "
                    f"from {delegation.starts_on:%Y-%m-%d} to {delegation.ends_on:%Y-%m-%d}.",
                )
                return redirect("delegations")
    delegations = Delegation.objects.select_related("delegator", "delegate", "created_by", "ended_by")
    if not is_admin:
        delegations = delegations.filter(Q(delegator=user) | Q(delegate=user))
    rows = list(delegations.order_by("-ends_on", "-id")[:DELEGATIONS_SHOWN])
    context = {
        "form": form,
        "rows": rows,
        "today": approval_services.today(),
        "is_admin": is_admin,
        "may_delegate": True,
        "counts": _tab_counts(_approvals_queue(), clock.now() - DECIDED_WINDOW),
    }
    return render(request, "portal/approvals/delegations.html", context, status=status)


@require_POST
@role_required(FINANCE, ADMIN)
def delegation_end(request: HttpRequest, pk: int) -> HttpResponse:
    delegation = Delegation.objects.select_related("delegator", "delegate").filter(pk=pk).first()
    if delegation is None:
        raise Http404(f"Delegation {pk} does not exist.")
    try:
        approval_services.delegation_end(delegation=delegation, actor=Actor.of(request.user))
    except ApplicationError as exc:
        if exc.status == 403:
            raise Forbidden(exc.message) from exc
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"{delegation.delegate.get_username()} no longer stands in for "
            f"{delegation.delegator.get_username()}.",
        )
    return redirect("delegations")


# --- settings: overview and queues -------------------------------------------------------


@require_GET
@admin_only
def settings_index(request: HttpRequest) -> HttpResponse:
    context = {
        "queues": Queue.objects.count(),
        "calendars": BusinessCalendar.objects.count(),
        "teams": Group.objects.count(),
        "types": ExceptionType.objects.count(),
        "deadlines": StateDeadline.objects.count(),
        "rules": EscalationRule.objects.filter(is_active=True).count(),
        "policies": ApprovalPolicy.objects.filter(is_active=True).count(),
    }
    return render(request, "portal/config/index.html", context)


@require_GET
@admin_only
def queue_list(request: HttpRequest) -> HttpResponse:
    open_items = Count("items", filter=Q(items__state=WorkItem.State.OPEN))
    queues = Queue.objects.select_related("team").annotate(open_items=open_items).order_by("name")
    return render(request, "portal/config/queues.html", {"queues": list(queues), "tab": "queues"})


@require_http_methods(["GET", "POST"])
@admin_only
def queue_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    queue = None
    if pk is not None:
        queue = Queue.objects.select_related("team").filter(pk=pk).first()
        if queue is None:
            raise Http404(f"Queue {pk} does not exist.")
    form = QueueForm(request.POST or None, instance=queue)
    status = 200
    if request.method == "POST":
        status = 422
        if form.is_valid():
            try:
                saved = queue_save(queue=form.instance, actor=Actor.of(request.user))
            except ApplicationError as exc:
                show_errors(form, exc)
                status = exc.status
            else:
                messages.success(request, f"Queue '{saved.name}' saved.")
                return redirect("settings-queues")
    return render(
        request,
        "portal/config/queue_form.html",
        {"form": form, "queue": queue, "tab": "queues"},
        status=status,
    )


# --- settings: calendars -----------------------------------------------------------------


@require_GET
@admin_only
def calendar_list(request: HttpRequest) -> HttpResponse:
    teams = list(
        Group.objects.select_related("calendar")
        .prefetch_related(Prefetch("calendar__holidays", queryset=Holiday.objects.order_by("date")))
        .annotate(queue_count=Count("queues"))
        .order_by("name")
    )
    today = clock.now().date()
    rows = []
    for team in teams:
        calendar = getattr(team, "calendar", None)
        upcoming = [h for h in calendar.holidays.all() if h.date >= today] if calendar is not None else []
        rows.append(
            {"team": team, "calendar": calendar, "upcoming": upcoming[:3], "more": max(len(upcoming) - 3, 0)}
        )
    context = {"rows": rows, "tab": "calendars", "weekday_labels": WEEKDAYS}
    return render(request, "portal/config/calendars.html", context)


def _team(team_id: int) -> Group:
    team = Group.objects.filter(pk=team_id).first()
    if team is None:
        raise Http404(f"Team {team_id} does not exist.")
    return team


def _calendar_page(
    request: HttpRequest,
    team: Group,
    calendar: BusinessCalendar | None,
    form: CalendarForm | None = None,
    holiday_form: HolidayForm | None = None,
    status: int = 200,
) -> HttpResponse:
    stored = BusinessCalendar.objects.filter(team=team).first()
    context = {
        "team": team,
        "calendar": stored,
        "form": form or CalendarForm(instance=calendar),
        "holiday_form": holiday_form or HolidayForm(),
        "holidays": list(stored.holidays.order_by("date")) if stored is not None else [],
        "today": clock.now().date(),
        "tab": "calendars",
    }
    return render(request, "portal/config/calendar_form.html", context, status=status)


def _new_calendar(team: Group) -> BusinessCalendar:
    return BusinessCalendar(team=team, time_zone="UTC", working_days=[1, 2, 3, 4, 5])


@require_http_methods(["GET", "POST"])
@admin_only
def calendar_edit(request: HttpRequest, team_id: int) -> HttpResponse:
    team = _team(team_id)
    calendar = BusinessCalendar.objects.filter(team=team).first() or _new_calendar(team)
    if request.method == "GET":
        return _calendar_page(request, team, calendar)
    form = CalendarForm(request.POST, instance=calendar)
    if form.is_valid():
        try:
            calendar_save(calendar=form.instance, actor=Actor.of(request.user))
        except ApplicationError as exc:
            show_errors(form, exc)
            return _calendar_page(request, team, calendar, form=form, status=exc.status)
        messages.success(
            request, f"Calendar of {team.name} saved. Due times of open items stay as they were."
        )
        return redirect("settings-calendar", team_id=team.pk)
    return _calendar_page(request, team, calendar, form=form, status=422)


@require_POST
@admin_only
def holiday_create(request: HttpRequest, team_id: int) -> HttpResponse:
    team = _team(team_id)
    calendar = BusinessCalendar.objects.filter(team=team).first()
    if calendar is None:
        messages.error(request, f"Save the calendar of {team.name} before adding holidays.")
        return redirect("settings-calendar", team_id=team.pk)
    form = HolidayForm(request.POST)
    if form.is_valid():
        try:
            holiday = holiday_add(
                calendar=calendar, day=form.cleaned_data["date"], name=form.cleaned_data["name"],
                actor=Actor.of(request.user),
            )  # fmt: skip
        except ApplicationError as exc:
            show_errors(form, exc)
            return _calendar_page(request, team, calendar, holiday_form=form, status=exc.status)
        messages.success(request, f"{holiday.date:%Y-%m-%d} ({holiday.name}) is a holiday for {team.name}.")
        return redirect("settings-calendar", team_id=team.pk)
    return _calendar_page(request, team, calendar, holiday_form=form, status=422)


@require_POST
@admin_only
def holiday_delete(request: HttpRequest, team_id: int, pk: int) -> HttpResponse:
    holiday = Holiday.objects.filter(pk=pk, calendar__team_id=team_id).first()
    if holiday is None:
        raise Http404(f"Holiday {pk} does not exist in this calendar.")
    holiday_remove(holiday=holiday, actor=Actor.of(request.user))
    messages.success(request, f"{holiday.date:%Y-%m-%d} ({holiday.name}) is a working day again.")
    return redirect("settings-calendar", team_id=team_id)


# --- settings: SLA targets ---------------------------------------------------------------


def _duration(minutes: int | None, *, days: bool = False) -> str:
    """Minutes as a person reads them: "4 h", "1 h 30 min", "14 d" (``days``: 24 h each)."""
    if not minutes:
        return ""
    if days and minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)} d"
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest} min"
    return f"{hours} h" + (f" {rest} min" if rest else "")


@require_http_methods(["GET", "POST"])
@admin_only
def sla_targets(request: HttpRequest) -> HttpResponse:
    types_qs = ExceptionType.objects.select_related("default_queue").order_by("name")
    deadlines_qs = StateDeadline.objects.select_related("queue").order_by("state")
    data = request.POST if request.method == "POST" else None
    types = ExceptionTypeFormSet(data, queryset=types_qs, prefix="types")
    deadlines = StateDeadlineFormSet(data, queryset=deadlines_qs, prefix="deadlines")
    status, error = 200, ""
    if request.method == "POST":
        status = 422
        if types.is_valid() and deadlines.is_valid():
            changed = [
                f.instance for f in deadlines.forms if f.has_changed() and f not in deadlines.deleted_forms
            ]
            removed = [f.instance for f in deadlines.deleted_forms if f.instance.pk is not None]
            try:
                sla_targets_save(
                    types=[f.instance for f in types.forms if f.has_changed()],
                    deadlines=changed,
                    removed=removed,
                    actor=Actor.of(request.user),
                )
            except ApplicationError as exc:
                error, status = exc.message, exc.status
            else:
                messages.success(request, "SLA targets saved. They apply to work items opened from now on.")
                return redirect("settings-sla")
        else:
            error = "Nothing was saved: correct the fields marked below."
    for form in types:
        form.duration = _duration(form.instance.sla_minutes)
    for form in deadlines:
        form.duration = _duration(form.instance.max_minutes, days=True)
    context = {"types": types, "deadlines": deadlines, "error": error, "tab": "sla"}
    return render(request, "portal/config/sla.html", context, status=status)


# --- settings: escalation rules ------------------------------------------------------------


def _type_labels() -> dict[str, str]:
    labels: dict[str, str] = {}
    for _value, label in type_choices():
        if isinstance(label, list):
            labels.update(dict(label))
    return labels


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def rule_summary(rule: EscalationRule, type_labels: dict[str, str]) -> dict[str, str]:
    """What the rule matches, when it triggers and what it does, as short text."""
    match = [rule.queue.name if rule.queue_id else "every queue"]
    if rule.kind:
        match.append(rule.get_kind_display().lower() + "s")
    if rule.type:
        match.append(type_labels.get(rule.type, rule.type))
    if rule.customer_tier:
        match.append(f"tier {rule.customer_tier}")
    if rule.min_revenue is not None or rule.max_revenue is not None:
        low = _money(rule.min_revenue) if rule.min_revenue is not None else "0"
        high = _money(rule.max_revenue) if rule.max_revenue is not None else "any"
        match.append(f"revenue {low} to {high}")
    value = rule.trigger_value
    trigger = {
        EscalationRule.Trigger.UNCLAIMED_FOR: f"unclaimed for {value} min",
        EscalationRule.Trigger.PAST_SLA: "past the SLA",
        EscalationRule.Trigger.SLA_SHARE: f"{value} % of the SLA used",
        EscalationRule.Trigger.PROMISED_WITHIN: f"promised within {value} h",
    }.get(rule.trigger, rule.trigger)
    actions = []
    if rule.raise_level:
        actions.append("raise level")
    if rule.move_to_id:
        actions.append(f"move to {rule.move_to.name}")
    if rule.notify == EscalationRule.Notify.USER:
        actions.append(f"notify {rule.notify_user.get_username() if rule.notify_user_id else 'a user'}")
    elif rule.notify:
        actions.append(f"notify {rule.get_notify_display().lower()}")
    return {"match": " · ".join(match), "trigger": trigger, "actions": ", ".join(actions) or "nothing"}


@require_GET
@admin_only
def rule_list(request: HttpRequest) -> HttpResponse:
    rules = list(
        EscalationRule.objects.select_related("queue", "move_to", "notify_user")
        .annotate(firings_count=Count("firings"), last_fired=Max("firings__at"))
        .order_by("name")
    )
    labels = _type_labels()
    rows = [(rule, rule_summary(rule, labels)) for rule in rules]
    return render(request, "portal/config/rules.html", {"rows": rows, "tab": "rules"})


def _rule(pk: int) -> EscalationRule:
    rule = EscalationRule.objects.filter(pk=pk).first()
    if rule is None:
        raise Http404(f"Escalation rule {pk} does not exist.")
    return rule


def _rule_page(
    request: HttpRequest,
    rule: EscalationRule | None,
    form: RuleForm,
    status: int = 200,
    preview: dict[str, Any] | None = None,
) -> HttpResponse:
    firings = []
    if rule is not None:
        firings = list(
            RuleFiring.objects.filter(rule=rule).select_related("item").order_by("-at", "-id")[:FIRINGS_SHOWN]
        )
    context = {"rule": rule, "form": form, "firings": firings, "tab": "rules", "shown_preview": preview}
    return render(request, "portal/config/rule_form.html", context, status=status)


@require_http_methods(["GET", "POST"])
@admin_only
def rule_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    rule = _rule(pk) if pk is not None else None
    if request.method == "GET":
        return _rule_page(request, rule, RuleForm(rule=rule))
    form = RuleForm(request.POST, rule=rule)
    if form.is_valid():
        try:
            saved = escalation.rule_save(data=form.rule_data(), actor=Actor.of(request.user), rule=rule)
        except ApplicationError as exc:
            show_errors(form, exc)
            return _rule_page(request, rule, form, status=exc.status)
        messages.success(request, f"Rule '{saved.name}' saved. The next evaluation applies it.")
        return redirect("settings-rule", pk=saved.pk)
    return _rule_page(request, rule, form, status=422)


@require_POST
@admin_only
def rule_preview(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """The open items the rule as typed would fire on now; nothing is saved."""
    saved = _rule(pk) if pk is not None else None
    form = RuleForm(request.POST, rule=saved)
    context: dict[str, Any] = {"form": form, "preview": None, "limit": PREVIEW_ITEMS}
    status = 200
    if form.is_valid():
        # An unsaved copy: a saved rule's id makes the preview skip items it fired on already.
        draft = EscalationRule(pk=saved.pk) if saved is not None else None
        try:
            rule = escalation.rule_build(data=form.rule_data(), rule=draft)
            context["preview"] = escalation.rule_preview(rule, limit=PREVIEW_ITEMS)
        except ApplicationError as exc:
            show_errors(form, exc)
            status = exc.status
    else:
        status = 422
    context["errors"] = labelled_errors(form)
    if _is_htmx(request):
        return render(request, "portal/config/partials/rule_preview.html", context, status=status)
    return _rule_page(request, saved, form, status=status, preview=context)


@require_http_methods(["GET", "POST"])
@admin_only
def rule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    rule = _rule(pk)
    if request.method == "POST":
        escalation.rule_delete(rule=rule, actor=Actor.of(request.user))
        messages.success(request, f"Rule '{rule.name}' deleted. The items' history keeps its escalations.")
        return redirect("settings-rules")
    firings = RuleFiring.objects.filter(rule=rule).count()
    return render(
        request, "portal/config/rule_delete.html", {"rule": rule, "firings": firings, "tab": "rules"}
    )


# --- settings: approval policies ------------------------------------------------------------


@require_GET
@admin_only
def policy_list(request: HttpRequest) -> HttpResponse:
    pending = Count("requests", filter=Q(requests__status=ApprovalRequest.Status.PENDING))
    policies = ApprovalPolicy.objects.select_related("approver_group").annotate(pending=pending)
    return render(
        request,
        "portal/config/policies.html",
        {"policies": list(policies.order_by("kind", "min_amount")), "tab": "policies"},
    )


@require_http_methods(["GET", "POST"])
@admin_only
def policy_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    policy = None
    if pk is not None:
        policy = ApprovalPolicy.objects.filter(pk=pk).first()
        if policy is None:
            raise Http404(f"Approval policy {pk} does not exist.")
    initial = {"approver_group": Group.objects.filter(name=FINANCE).first()} if policy is None else None
    form = PolicyForm(request.POST or None, instance=policy, initial=initial)
    status = 200
    if request.method == "POST":
        status = 422
        if form.is_valid():
            try:
                saved = approval_services.approval_policy_save(policy=form.instance)
            except ApplicationError as exc:
                show_errors(form, exc)
                status = exc.status
            else:
                messages.success(request, f"Policy '{saved.name}' saved.")
                return redirect("settings-policies")
    pending = (
        policy.requests.filter(status=ApprovalRequest.Status.PENDING).count() if policy is not None else 0
    )
    context = {"form": form, "policy": policy, "pending": pending, "tab": "policies"}
    return render(request, "portal/config/policy_form.html", context, status=status)
