"""Forms of the approvals and configuration screens: they parse input, nothing more.

The rules (policy bands, separation of duties, rule definitions, calendars) are checked
by the services and the save functions in ``portal.config``; the views show their errors
on these forms.
"""

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import available_timezones

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group

from approvals.models import ApprovalDecision, ApprovalPolicy, Kind
from exceptions.models import ExceptionType, StateDeadline
from fulfillment.core.errors import ApplicationError
from fulfillment.core.escalation import RULE_FIELDS
from fulfillment.core.models import BusinessCalendar, EscalationRule, Holiday, Queue, WorkItem
from orders.models import TERMINAL, Status, Tier

User = get_user_model()
WEEKDAYS = [(1, "Mon"), (2, "Tue"), (3, "Wed"), (4, "Thu"), (5, "Fri"), (6, "Sat"), (7, "Sun")]


def show_errors(form: forms.BaseForm, exc: ApplicationError) -> None:
    """Put a service's error on the form: per field where it names one, else on the form."""
    for name, messages in exc.fields.items():
        for message in messages:
            form.add_error(name if name in form.fields else None, message)
    if not exc.fields:
        form.add_error(None, exc.message)


def labelled_errors(form: forms.BaseForm) -> list[str]:
    """Every error of the form as one line, led by its field's label."""
    return [
        f"{form.fields[name].label or name}: {error}" if name in form.fields else error
        for name, errors in form.errors.items()
        for error in errors
    ]


def _codes_text(codes: list[str]) -> str:
    return ", ".join(codes)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


# --- keyset cursors ----------------------------------------------------------------------


def _encode(*parts: object) -> str:
    raw = "|".join(p.isoformat() if isinstance(p, datetime) else str(p) for p in parts)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(token: str, count: int) -> list[str]:
    try:
        parts = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split("|")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(token) from exc
    if len(parts) != count:
        raise ValueError(token)
    return parts


def _instant(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(text)
    return at.astimezone(UTC)


def _pk(text: str) -> int:
    pk = int(text)
    if not 0 < pk < 2**63:
        raise ValueError(text)
    return pk


@dataclass(frozen=True)
class RankCursor:
    """Where a page of a queue ended: the last row's (priority key, created at, id)."""

    priority_key: int
    created_at: datetime
    id: int

    def encode(self) -> str:
        return _encode(self.priority_key, self.created_at, self.id)

    @classmethod
    def decode(cls, token: str) -> "RankCursor":
        key, at, pk = _decode(token, 3)
        priority_key = int(key)
        if not -(2**63) <= priority_key < 2**63:
            raise ValueError(token)
        return cls(priority_key=priority_key, created_at=_instant(at), id=_pk(pk))


@dataclass(frozen=True)
class DecidedCursor:
    """Where a page of decided requests ended: the last row's (decided at, id)."""

    decided_at: datetime
    id: int

    def encode(self) -> str:
        return _encode(self.decided_at, self.id)

    @classmethod
    def decode(cls, token: str) -> "DecidedCursor":
        at, pk = _decode(token, 2)
        return cls(decided_at=_instant(at), id=_pk(pk))


# --- approvals ---------------------------------------------------------------------------


class ApprovalFilterForm(forms.Form):
    PENDING, DECIDED = "pending", "decided"

    view = forms.ChoiceField(required=False, choices=[(PENDING, "Pending"), (DECIDED, "Decided recently")])
    kind = forms.ChoiceField(required=False, choices=[("", "All kinds"), *Kind.choices])
    after = forms.CharField(required=False, max_length=200)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        data["view"] = data.get("view") or self.PENDING
        token = data.get("after")
        if not token:
            data["after"] = None
            return data
        cursor_type = DecidedCursor if data["view"] == self.DECIDED else RankCursor
        try:
            data["after"] = cursor_type.decode(token)
        except ValueError:
            self.add_error(
                "after",
                "This page link is not valid (it may have been cut or edited). "
                "Start again from the first page.",
            )
        return data


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=ApprovalDecision.Decision.choices)
    comment = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Why — required to reject"}),
    )


class DelegationForm(forms.Form):
    delegator = forms.ModelChoiceField(
        queryset=User.objects.none(),
        label="Approver",
        empty_label="Choose an approver",
        help_text="Whose approvals the delegate takes on.",
    )
    delegate = forms.ModelChoiceField(
        queryset=User.objects.none(), label="Delegate", empty_label="Choose a person"
    )
    starts_on = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    ends_on = forms.DateField(
        label="To", widget=forms.DateInput(attrs={"type": "date"}), help_text="Inclusive."
    )
    reason = forms.CharField(required=False, max_length=200, label="Reason")

    def __init__(self, *args: Any, user: AbstractBaseUser, may_choose_delegator: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        active = User.objects.filter(is_active=True).order_by("username")
        self.fields["delegate"].queryset = active.exclude(pk=user.pk) if not may_choose_delegator else active
        if may_choose_delegator:
            approver_groups = ApprovalPolicy.objects.filter(is_active=True).values("approver_group")
            self.fields["delegator"].queryset = active.filter(groups__in=approver_groups).distinct()
        else:
            del self.fields["delegator"]


# --- queues, calendars, SLA targets --------------------------------------------------------


class QueueForm(forms.ModelForm):
    warning_shares = forms.CharField(
        label="SLA warnings at (%)",
        help_text="Shares of the SLA at which to warn, e.g. 50, 75, 100.",
        max_length=100,
    )

    class Meta:
        model = Queue
        fields = ["slug", "name", "team", "description", "warning_shares"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}
        help_texts = {"slug": "Identifies the queue in links and in code; cannot change later."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Group.objects.order_by("name")
        if self.instance.pk is not None:
            self.fields["slug"].disabled = True
        self.initial["warning_shares"] = ", ".join(str(s) for s in self.instance.warning_shares or [])

    def clean_warning_shares(self) -> list[int]:
        shares = []
        for part in _split(self.cleaned_data["warning_shares"]):
            if not part.isdigit():
                raise forms.ValidationError(f"'{part}' is not a whole percentage.")
            shares.append(int(part))
        return sorted(set(shares))


class CalendarForm(forms.ModelForm):
    time_zone = forms.ChoiceField(choices=[(z, z) for z in sorted(available_timezones())])
    working_days = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS,
        coerce=int,
        widget=forms.CheckboxSelectMultiple(attrs={"class": "choices"}),
        label="Working days",
    )

    class Meta:
        model = BusinessCalendar
        fields = ["time_zone", "working_days", "day_starts", "day_ends"]
        labels = {"day_starts": "Day starts", "day_ends": "Day ends"}
        widgets = {
            "day_starts": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "day_ends": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        }


class HolidayForm(forms.ModelForm):
    class Meta:
        model = Holiday
        fields = ["date", "name"]
        widgets = {"date": forms.DateInput(attrs={"type": "date"})}


class ExceptionTypeSlaForm(forms.ModelForm):
    sla_minutes = forms.IntegerField(min_value=1, label="SLA (working min)")
    severity = forms.TypedChoiceField(choices=[(1, "1 low"), (2, "2"), (3, "3 high")], coerce=int)
    reason_codes = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Comma-separated codes a person may resolve with.",
    )

    class Meta:
        model = ExceptionType
        fields = ["sla_minutes", "severity", "default_queue", "reason_codes"]
        labels = {"default_queue": "Queue"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial["reason_codes"] = _codes_text(self.instance.reason_codes or [])

    def clean_reason_codes(self) -> list[str]:
        return _split(self.cleaned_data["reason_codes"])


class StateDeadlineForm(forms.ModelForm):
    max_minutes = forms.IntegerField(min_value=1, label="At most (min)")
    state = forms.ChoiceField(choices=[("", "—"), *((s.value, s.label) for s in Status if s not in TERMINAL)])

    class Meta:
        model = StateDeadline
        fields = ["state", "max_minutes", "queue"]


ExceptionTypeFormSet = forms.modelformset_factory(
    ExceptionType, form=ExceptionTypeSlaForm, extra=0, can_delete=False
)
StateDeadlineFormSet = forms.modelformset_factory(
    StateDeadline, form=StateDeadlineForm, extra=1, can_delete=True
)


# --- escalation rules and approval policies ----------------------------------------------


def type_choices(extra: str = "") -> list[tuple[str, Any]]:
    """Work-item types by kind, for rule forms; ``extra`` keeps a type no longer listed."""
    exception_types = [(t.code, t.name) for t in ExceptionType.objects.order_by("name")]
    choices: list[tuple[str, Any]] = [
        ("", "Every type"),
        ("Exceptions", exception_types),
        ("Approvals", list(Kind.choices)),
    ]
    known = {code for code, _ in exception_types} | set(Kind.values)
    if extra and extra not in known:
        choices.append((extra, extra))
    return choices


class RuleForm(forms.Form):
    """The rule's definition; ``escalation.rule_validate`` decides whether it is valid."""

    name = forms.CharField(required=False, max_length=100)
    is_active = forms.BooleanField(required=False, initial=True, label="Active")
    queue = forms.ModelChoiceField(queryset=Queue.objects.none(), required=False, empty_label="Every queue")
    kind = forms.ChoiceField(required=False, choices=[("", "Every kind"), *WorkItem.Kind.choices])
    type = forms.ChoiceField(required=False, choices=[])
    customer_tier = forms.ChoiceField(
        required=False, choices=[("", "Every tier"), *Tier.choices], label="Tier"
    )
    min_revenue = forms.DecimalField(required=False, max_digits=14, decimal_places=2, label="Revenue from")
    max_revenue = forms.DecimalField(required=False, max_digits=14, decimal_places=2, label="Revenue to")
    trigger = forms.ChoiceField(choices=EscalationRule.Trigger.choices, label="Trigger")
    trigger_value = forms.IntegerField(
        min_value=0, initial=60, label="N", help_text="Minutes, % of the SLA, or hours, by trigger."
    )
    raise_level = forms.BooleanField(required=False, initial=True, label="Raise the escalation level")
    move_to = forms.ModelChoiceField(queryset=Queue.objects.none(), required=False, empty_label="Don't move")
    notify = forms.ChoiceField(required=False, choices=EscalationRule.Notify.choices)
    notify_user = forms.ModelChoiceField(
        queryset=User.objects.none(), required=False, empty_label="—", label="Named user"
    )

    def __init__(self, *args: Any, rule: EscalationRule | None = None, **kwargs: Any) -> None:
        if rule is not None and rule.pk is not None and not args and "data" not in kwargs:
            kwargs["initial"] = {name: getattr(rule, name) for name in RULE_FIELDS}
        super().__init__(*args, **kwargs)
        queues = Queue.objects.order_by("name")
        self.fields["queue"].queryset = queues
        self.fields["move_to"].queryset = queues
        self.fields["notify_user"].queryset = User.objects.filter(is_active=True).order_by("username")
        self.fields["type"].choices = type_choices(rule.type if rule is not None else "")

    def rule_data(self) -> dict[str, Any]:
        """The definition for ``rule_build``/``rule_save``; call after ``is_valid()``."""
        return {name: self.cleaned_data[name] for name in RULE_FIELDS}


class PolicyForm(forms.ModelForm):
    class Meta:
        model = ApprovalPolicy
        fields = [
            "kind", "name", "min_amount", "max_amount", "approvers_required", "approver_group",
            "reject_action", "sla_minutes", "is_active",
        ]  # fmt: skip
        labels = {
            "min_amount": "Band from",
            "max_amount": "Band to",
            "approver_group": "Approvers from",
            "sla_minutes": "SLA (working min)",
            "is_active": "Active",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["approver_group"].queryset = Group.objects.order_by("name")
