"""Forms of the work-queue screens: they check input and turn it into arguments, nothing more.
The services decide what is allowed (who may act, which reason codes are valid)."""

from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.http import QueryDict

from fulfillment.core.errors import InvalidInput
from fulfillment.core.models import WorkItem
from orders.models import Tier
from portal import work_selectors as sel
from portal.forms import customer_filter, warehouse_filter


def error_list(form: forms.Form) -> list[str]:
    """Every error as one readable line, labelled with its field."""
    return [
        f"{form.fields[name].label}: {error}" if name in form.fields else error
        for name, errors in form.errors.items()
        for error in errors
    ]


class QueueFilterForm(forms.Form):
    type = forms.ChoiceField(label="Type", required=False)
    kind = forms.ChoiceField(label="Kind", required=False, choices=[("", "Any kind"), *WorkItem.Kind.choices])
    warehouse = warehouse_filter()
    customer = customer_filter()
    tier = forms.ChoiceField(label="Tier", required=False, choices=[("", "Any tier"), *Tier.choices])
    assignee = forms.ChoiceField(
        label="Assignee",
        required=False,
        choices=[("", "Anyone"), (sel.ASSIGNEE_ME, "Me"), (sel.ASSIGNEE_NONE, "Unassigned")],
    )
    breached = forms.BooleanField(label="SLA breached only", required=False)
    after = forms.CharField(label="Page link", required=False, max_length=200, widget=forms.HiddenInput)

    FILTERS = ("type", "kind", "warehouse", "customer", "tier", "assignee", "breached")

    def __init__(self, data: QueryDict | None, *, type_labels: dict[str, str]) -> None:
        super().__init__(data)
        self.fields["type"].choices = [("", "Any type"), *sorted(type_labels.items(), key=lambda kv: kv[1])]

    def clean_after(self) -> sel.RankCursor | None:
        token = self.cleaned_data["after"]
        if not token:
            return None
        try:
            return sel.cursor_decode(token)
        except InvalidInput as exc:
            raise forms.ValidationError(f"{exc.message} Start again from the first page.") from exc

    def filters(self) -> sel.WorkFilters:
        """The selector's filters; call only after ``is_valid()`` returned True."""
        data = self.cleaned_data
        return sel.WorkFilters(
            type=data["type"],
            kind=data["kind"],
            warehouse=data["warehouse"].code if data["warehouse"] else "",
            customer=data["customer"].strip(),
            tier=data["tier"],
            breached=data["breached"],
            assignee=data["assignee"],
        )

    def query(self) -> str:
        """The filters in use as a canonical query string (no page link): for paging links,
        the export and saved views. Call only after ``is_valid()`` returned True."""
        params = QueryDict(mutable=True)
        for name in self.FILTERS:
            value = self.cleaned_data[name]
            if name == "warehouse" and value:
                value = value.code
            if value is True:
                value = "on"
            if value:
                params[name] = value
        return params.urlencode()


class SavedViewForm(forms.Form):
    name = forms.CharField(label="Name", max_length=80)
    shared = forms.BooleanField(label="Share with the team", required=False)
    query = forms.CharField(required=False, max_length=1000, widget=forms.HiddenInput)


def members_field(members: QuerySet[AbstractBaseUser], label: str = "Assign to") -> forms.ModelChoiceField:
    return forms.ModelChoiceField(label=label, queryset=members, empty_label="Choose a person")


class IdListField(forms.Field):
    """Several ids under one name (ticked checkboxes)."""

    widget = forms.MultipleHiddenInput
    default_error_messages = {"required": "Tick at least one item.", "invalid": "Unknown item ids."}

    def to_python(self, value: Any) -> list[int]:
        if not value:
            return []
        try:
            return [int(v) for v in value]
        except (TypeError, ValueError) as exc:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from exc


class BulkForm(forms.Form):
    ASSIGN, RELEASE, RESOLVE = "assign", "release", "resolve"

    items = IdListField(label="Items")
    action = forms.ChoiceField(
        label="Action", choices=[(ASSIGN, "Assign to"), (RELEASE, "Release"), (RESOLVE, "Resolve")]
    )
    to = forms.ModelChoiceField(
        label="Assign to", queryset=None, required=False, empty_label="Choose a person"
    )
    reason_code = forms.CharField(label="Reason", required=False, max_length=40)
    note = forms.CharField(label="Note", required=False, max_length=2000)
    query = forms.CharField(required=False, max_length=1000, widget=forms.HiddenInput)

    def __init__(self, data: QueryDict | None, *, members: QuerySet[AbstractBaseUser]) -> None:
        super().__init__(data)
        self.fields["to"].queryset = members

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("action") == self.ASSIGN and not data.get("to"):
            self.add_error("to", "Choose whom to assign the items to.")
        return data


class ReassignForm(forms.Form):
    def __init__(self, data: QueryDict | None, *, members: QuerySet[AbstractBaseUser]) -> None:
        super().__init__(data)
        self.fields["to"] = members_field(members)


class SnoozeForm(forms.Form):
    until = forms.DateTimeField(label="Until", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    note = forms.CharField(label="Note", required=False, max_length=2000)


class ResolveForm(forms.Form):
    reason_code = forms.CharField(label="Reason", required=False, max_length=40)
    note = forms.CharField(
        label="Note", required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )


class CommentForm(forms.Form):
    text = forms.CharField(label="Comment", max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))
