"""Admin pages for the work-queue configuration. Escalation rules are validated and
saved through the escalation services and can be previewed before they are saved;
work items and notifications are read-only here (their services are the only writers)."""

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from fulfillment.core import escalation
from fulfillment.core.actors import Actor
from fulfillment.core.errors import InvalidInput
from fulfillment.core.models import (
    BusinessCalendar,
    EscalationRule,
    Holiday,
    Notification,
    Queue,
    RuleFiring,
    WorkItem,
    WorkItemEvent,
)


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "team", "warning_shares")
    list_select_related = ("team",)
    prepopulated_fields = {"slug": ("name",)}
    search_fields = ("name", "slug")


class HolidayInline(admin.TabularInline):
    model = Holiday
    extra = 1


@admin.register(BusinessCalendar)
class BusinessCalendarAdmin(admin.ModelAdmin):
    list_display = ("team", "time_zone", "working_days", "day_starts", "day_ends")
    list_select_related = ("team",)
    inlines = [HolidayInline]


class EscalationRuleForm(forms.ModelForm):
    class Meta:
        model = EscalationRule
        fields = escalation.RULE_FIELDS

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:
            return
        try:
            escalation.rule_validate(self.instance)
        except InvalidInput as exc:
            for field, messages in exc.fields.items():
                self.add_error(field if field in self.fields else None, messages)


@admin.register(EscalationRule)
class EscalationRuleAdmin(admin.ModelAdmin):
    form = EscalationRuleForm
    change_form_template = "admin/core/escalationrule/change_form.html"
    list_display = (
        "name",
        "is_active",
        "queue",
        "trigger",
        "trigger_value",
        "raise_level",
        "move_to",
        "notify",
    )
    list_filter = ("is_active", "trigger", "queue")
    list_select_related = ("queue", "move_to")
    search_fields = ("name",)
    readonly_fields = ("matches_now",)
    fieldsets = (
        (None, {"fields": ("name", "is_active")}),
        (
            "Which open items",
            {"fields": ("queue", "kind", "type", "customer_tier", "min_revenue", "max_revenue")},
        ),
        ("When", {"fields": ("trigger", "trigger_value")}),
        ("What it does", {"fields": ("raise_level", "move_to", "notify", "notify_user")}),
        ("Right now", {"fields": ("matches_now",)}),
    )

    @admin.display(description="Would fire now on")
    def matches_now(self, rule: EscalationRule) -> str:
        if rule.pk is None:
            return "Use “Preview matches” to see the items before saving."
        preview = escalation.rule_preview(rule, limit=0)
        return f"{preview.count} open item(s)"

    def save_model(
        self, request: HttpRequest, obj: EscalationRule, form: forms.ModelForm, change: bool
    ) -> None:
        data = {name: form.cleaned_data[name] for name in escalation.RULE_FIELDS if name in form.cleaned_data}
        escalation.rule_save(data=data, actor=Actor.of(request.user), rule=obj)

    def delete_model(self, request: HttpRequest, obj: EscalationRule) -> None:
        escalation.rule_delete(rule=obj, actor=Actor.of(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[EscalationRule]) -> None:
        for rule in queryset:
            escalation.rule_delete(rule=rule, actor=Actor.of(request.user))

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "preview/", self.admin_site.admin_view(self.preview_view), name="core_escalationrule_preview"
            ),
            path(
                "<path:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="core_escalationrule_preview_change",
            ),
        ]
        return own + super().get_urls()

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any):
        obj = kwargs.get("obj")
        context["preview_url"] = (
            reverse("admin:core_escalationrule_preview_change", args=[obj.pk])
            if obj is not None and obj.pk
            else reverse("admin:core_escalationrule_preview")
        )
        return super().render_change_form(request, context, *args, **kwargs)

    def preview_view(self, request: HttpRequest, object_id: str | None = None) -> HttpResponse:
        """The items the rule as typed into the form would fire on now; saves nothing."""
        obj = self.get_object(request, object_id) if object_id else None
        if request.method != "POST" or not (
            self.has_change_permission(request, obj) if obj else self.has_add_permission(request)
        ):
            raise PermissionDenied
        form = self.get_form(request, obj)(request.POST, instance=obj)
        preview = escalation.rule_preview(form.instance) if form.is_valid() else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Preview of the escalation rule",
            "form": form,
            "rule": form.instance,
            "preview": preview,
        }
        return TemplateResponse(request, "admin/core/escalationrule/preview.html", context)


class RuleFiringInline(ReadOnlyMixin, admin.TabularInline):
    model = RuleFiring
    fields = ("rule", "level", "at")
    readonly_fields = fields
    extra = 0


class WorkItemEventInline(ReadOnlyMixin, admin.TabularInline):
    model = WorkItemEvent
    fields = ("at", "action", "actor_label", "note", "data")
    readonly_fields = fields
    extra = 0


@admin.register(WorkItem)
class WorkItemAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id", "title", "queue", "kind", "type", "state", "assignee",
        "escalation_level", "priority_key", "sla_due_at",
    )  # fmt: skip
    list_filter = ("state", "kind", "queue", "escalation_level")
    list_select_related = ("queue", "assignee")
    search_fields = ("title", "subject_ref", "customer_code")
    ordering = ("-priority_key", "created_at", "id")
    inlines = [RuleFiringInline, WorkItemEventInline]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "user", "text", "item", "read_at")
    list_select_related = ("user", "item")
    list_filter = ("read_at",)
    search_fields = ("text", "user__username")
