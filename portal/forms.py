"""Forms of the screens: they check input and turn it into selector arguments, nothing more."""

from datetime import date
from typing import Any

from django import forms

from fulfillment.core.errors import InvalidInput
from orders import selectors
from orders.models import Status, Warehouse

# Dates outside these bounds mean a typing slip, and would overflow when turned into times.
EARLIEST, LATEST = date(1900, 1, 1), date(2999, 12, 31)


def customer_filter() -> forms.CharField:
    """The "customer code or name" search box the list screens share."""
    return forms.CharField(
        label="Customer",
        required=False,
        max_length=200,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "code or name", "autocomplete": "off"}
        ),
    )


def warehouse_filter() -> forms.ModelChoiceField:
    return forms.ModelChoiceField(
        label="Warehouse",
        required=False,
        queryset=Warehouse.objects.order_by("code"),
        to_field_name="code",
        empty_label="Any warehouse",
    )


class OrderSearchForm(forms.Form):
    MATCH_PREFIX = "prefix"
    MATCH_EXACT = "exact"

    external_id = forms.CharField(
        label="External id",
        required=False,
        max_length=64,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "SO-…", "autocomplete": "off"}),
    )
    match = forms.ChoiceField(
        label="Match",
        required=False,
        choices=[(MATCH_PREFIX, "starts with"), (MATCH_EXACT, "is exactly")],
        # Shown beside the external id without a label of its own: screen readers need a name.
        widget=forms.Select(attrs={"aria-label": "Match"}),
    )
    customer = customer_filter()
    status = forms.ChoiceField(label="Status", required=False, choices=[("", "Any status"), *Status.choices])
    warehouse = warehouse_filter()
    created_from = forms.DateField(
        label="Created from", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        label="Created to", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    after = forms.CharField(label="Page link", required=False, max_length=200, widget=forms.HiddenInput)

    def clean_after(self) -> selectors.Cursor | None:
        token = self.cleaned_data["after"]
        if not token:
            return None
        try:
            return selectors.cursor_decode(token)
        except InvalidInput as exc:
            raise forms.ValidationError(f"{exc.message} Start again from the first page.") from exc

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        for name, day in (("created_from", start), ("created_to", end)):
            if day and not EARLIEST <= day <= LATEST:
                self.add_error(name, f"Give a date between {EARLIEST.year} and {LATEST.year}.")
                return data
        if start and end and start > end:
            self.add_error("created_to", "The end date is before the start date.")
        return data

    def filters(self) -> selectors.OrderFilters:
        """The selector's filters; call only after ``is_valid()`` returned True."""
        data = self.cleaned_data
        return selectors.OrderFilters(
            external_id=data["external_id"],
            external_id_exact=data["match"] == self.MATCH_EXACT,
            customer=data["customer"],
            status=data["status"],
            warehouse=data["warehouse"],
            created_from=data["created_from"],
            created_to=data["created_to"],
        )

    def error_list(self) -> list[str]:
        """Every error as one readable line, labelled with its field."""
        return [
            f"{self.fields[name].label}: {error}" if name in self.fields else error
            for name, errors in self.errors.items()
            for error in errors
        ]
