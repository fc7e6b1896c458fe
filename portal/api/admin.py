from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from fulfillment.core import clock
from portal.api.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made by ``manage.py issue_token`` (the key is shown only there); here
    they are listed and revoked."""

    list_display = ["prefix", "user", "name", "scopes", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "user__username", "name"]
    readonly_fields = ["user", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    exclude = ["key_hash"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=clock.now())
        self.message_user(request, f"{revoked} token(s) revoked.")
