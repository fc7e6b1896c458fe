"""Admin for the integration set-up (partners and their signing secrets, endpoints) and a
read-only view of the traffic: messages change only through the relay and the operator
actions of the integration screen, events only through the webhook intake."""

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from fulfillment.core.models import OutboxMessage
from integrations.models import DeliveryAttempt, Endpoint, InboundEvent, OutboxAction, Partner, PartnerSecret


def _masked(value: str) -> str:
    return f"…{value[-4:]}" if len(value) > 8 else "set" if value else "none"


class _KeepSecretForm(forms.ModelForm):
    """A secret field that is never shown back: left empty, the stored value stays."""

    SECRET_FIELD = ""
    REQUIRED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields[self.SECRET_FIELD]
        field.widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
        field.required = False
        if self.instance.pk:
            field.help_text = (
                f"Stored: {_masked(getattr(self.instance, self.SECRET_FIELD))}. Leave empty to keep it."
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get(self.SECRET_FIELD):
            kept = getattr(self.instance, self.SECRET_FIELD) if self.instance.pk else ""
            if self.REQUIRED and not kept:
                self.add_error(self.SECRET_FIELD, "Give the secret.")
            data[self.SECRET_FIELD] = kept
        return data


class PartnerSecretForm(_KeepSecretForm):
    SECRET_FIELD = "secret"

    class Meta:
        model = PartnerSecret
        fields = ["secret", "is_active"]


class PartnerSecretInline(admin.TabularInline):
    """Rotate by adding the new secret, then deactivating the old one once the partner uses it."""

    model = PartnerSecret
    form = PartnerSecretForm
    extra = 1
    fields = ["secret", "stored", "is_active", "created_at"]
    readonly_fields = ["stored", "created_at"]

    @admin.display(description="Stored")
    def stored(self, obj: PartnerSecret) -> str:
        return _masked(obj.secret) if obj.pk else "—"

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "active_secrets"]
    search_fields = ["name"]
    inlines = [PartnerSecretInline]

    @admin.display(description="Active secrets")
    def active_secrets(self, obj: Partner) -> int:
        return obj.secrets.filter(is_active=True).count()

    def get_readonly_fields(self, request: HttpRequest, obj: Partner | None = None) -> list[str]:
        # Events refer to a partner; the webhook URL carries its name.
        return ["name"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Partner | None = None) -> bool:
        return False


class EndpointForm(_KeepSecretForm):
    SECRET_FIELD = "token"
    REQUIRED = False

    base_url = forms.URLField(label="Base URL", assume_scheme="https", max_length=200)

    class Meta:
        model = Endpoint
        fields = ["name", "base_url", "token", "enabled", "timeout_seconds", "max_attempts"]


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["name", "base_url", "enabled", "circuit", "consecutive_failures", "last_success_at"]
    list_filter = ["enabled", "circuit"]
    readonly_fields = ["circuit", "consecutive_failures", "circuit_opened_at", "last_success_at"]
    fieldsets = [
        (None, {"fields": ["name", "base_url", "token", "enabled", "timeout_seconds", "max_attempts"]}),
        ("Circuit breaker (kept by the relay)", {"fields": readonly_fields}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Endpoint | None = None) -> list[str]:
        # Outbox messages name their endpoint.
        return [*self.readonly_fields, "name"] if obj is not None else list(self.readonly_fields)


class _ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(InboundEvent)
class InboundEventAdmin(_ReadOnlyAdmin):
    list_display = [
        "event_id",
        "partner",
        "type",
        "subject_ref",
        "state",
        "attempts",
        "occurred_at",
        "received_at",
    ]
    list_filter = ["state", "partner", "type"]
    search_fields = ["event_id", "subject_ref"]
    list_select_related = ["partner"]
    date_hierarchy = "received_at"


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class DeliveryAttemptInline(_ReadOnlyInline):
    model = DeliveryAttempt
    fields = ["at", "succeeded", "status_code", "latency_ms", "error"]


class OutboxActionInline(_ReadOnlyInline):
    model = OutboxAction
    fields = ["at", "action", "actor", "note"]


@admin.register(OutboxMessage)
class OutboxMessageAdmin(_ReadOnlyAdmin):
    """Replay and "mark handled" are on the integration screen, where they are recorded."""

    list_display = [
        "id",
        "endpoint",
        "topic",
        "subject_ref",
        "state",
        "attempts",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["state", "endpoint", "topic"]
    search_fields = ["subject_ref", "idempotency_key"]
    date_hierarchy = "created_at"
    inlines = [DeliveryAttemptInline, OutboxActionInline]
