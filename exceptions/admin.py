from django.contrib import admin
from django.http import HttpRequest

from exceptions.models import ExceptionType, OrderException, StateDeadline


@admin.register(ExceptionType)
class ExceptionTypeAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "default_queue", "sla_minutes", "severity"]
    list_filter = ["default_queue", "severity"]
    search_fields = ["code", "name"]
    list_select_related = ["default_queue"]

    def get_readonly_fields(self, request: HttpRequest, obj: ExceptionType | None = None) -> list[str]:
        # Services and work items refer to a type by its code.
        return ["code"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: ExceptionType | None = None) -> bool:
        return False


@admin.register(StateDeadline)
class StateDeadlineAdmin(admin.ModelAdmin):
    list_display = ["state", "max_minutes", "queue"]
    list_select_related = ["queue"]


@admin.register(OrderException)
class OrderExceptionAdmin(admin.ModelAdmin):
    """Read-only: exceptions are raised and resolved through their services."""

    list_display = ["title", "type", "order", "queue", "occurrences", "last_signal_at", "is_open"]
    list_filter = ["is_open", "type", "work_item__queue"]
    search_fields = ["order__external_id", "work_item__title"]
    list_select_related = ["type", "order", "work_item__queue"]
    date_hierarchy = "last_signal_at"

    @admin.display(description="Title", ordering="work_item__title")
    def title(self, obj: OrderException) -> str:
        return obj.work_item.title

    @admin.display(description="Queue", ordering="work_item__queue__name")
    def queue(self, obj: OrderException) -> str:
        return obj.work_item.queue.name

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OrderException | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: OrderException | None = None) -> bool:
        return False
