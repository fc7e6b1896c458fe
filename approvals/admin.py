from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.models import Group
from django.http import HttpRequest

from approvals import services
from approvals.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest, Delegation
from fulfillment.core import roles
from fulfillment.core.actors import Actor
from fulfillment.core.errors import ApplicationError


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(admin.ModelAdmin):
    """Bands are validated by the model (no overlap) and saved through the service."""

    list_display = [
        "name", "kind", "min_amount", "max_amount", "approvers_required",
        "approver_group", "reject_action", "sla_minutes", "is_active",
    ]  # fmt: skip
    list_filter = ["kind", "is_active"]
    list_select_related = ["approver_group"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        finance = Group.objects.filter(name=roles.FINANCE).first()
        return {**super().get_changeform_initial_data(request), "approver_group": finance}

    def save_model(
        self, request: HttpRequest, obj: ApprovalPolicy, form: forms.ModelForm, change: bool
    ) -> None:
        services.approval_policy_save(policy=obj)

    def has_delete_permission(self, request: HttpRequest, obj: ApprovalPolicy | None = None) -> bool:
        """Retire a policy by making it inactive: decisions refer to it."""
        return False


class DelegationForm(forms.ModelForm):
    actor: Actor  # set by DelegationAdmin.get_form for the signed-in admin

    class Meta:
        model = Delegation
        fields = ["delegator", "delegate", "starts_on", "ends_on", "reason"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        try:
            services.delegation_check(
                delegator=data["delegator"],
                delegate=data["delegate"],
                starts_on=data["starts_on"],
                ends_on=data["ends_on"],
                actor=self.actor,
            )
        except ApplicationError as exc:
            for name, messages in exc.fields.items():
                for message in messages:
                    self.add_error(name if name in self.fields else None, message)
            if not exc.fields:
                self.add_error(None, exc.message)
        return data


@admin.register(Delegation)
class DelegationAdmin(admin.ModelAdmin):
    """Delegations are created through the service and never changed afterwards."""

    form = DelegationForm
    list_display = ["delegator", "delegate", "starts_on", "ends_on", "ended_at", "reason", "created_by"]
    list_select_related = ["delegator", "delegate", "created_by"]
    search_fields = ["delegator__username", "delegate__username"]
    raw_id_fields = ["delegator", "delegate"]

    def get_form(
        self, request: HttpRequest, obj: Delegation | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.actor = Actor.of(request.user)
        return form

    def has_change_permission(self, request: HttpRequest, obj: Delegation | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Delegation, form: forms.ModelForm, change: bool) -> None:
        saved = services.delegation_create(
            delegator=obj.delegator,
            delegate=obj.delegate,
            starts_on=obj.starts_on,
            ends_on=obj.ends_on,
            reason=obj.reason,
            actor=form.actor,
        )
        obj.pk = saved.pk


class ApprovalDecisionInline(admin.TabularInline):
    model = ApprovalDecision
    extra = 0
    can_delete = False
    fields = readonly_fields = ["at", "approver", "on_behalf_of", "decision", "comment", "policy"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    """Read-only: requests are opened by the flows and decided on the approvals screen."""

    list_display = ["order", "kind", "amount", "status", "policy", "requested_by", "created_at", "decided_at"]
    list_filter = ["kind", "status"]
    list_select_related = ["order", "policy", "requested_by"]
    search_fields = ["order__external_id"]
    inlines = [ApprovalDecisionInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApprovalRequest | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApprovalRequest | None = None) -> bool:
        return False
