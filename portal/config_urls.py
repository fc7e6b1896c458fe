from django.urls import path

from portal import config

urlpatterns = [
    path("approvals/", config.approval_list, name="approvals"),
    path("approvals/<int:pk>/", config.approval_detail, name="approval"),
    path("approvals/<int:pk>/decide/", config.approval_decide, name="approval-decide"),
    path("approvals/delegations/", config.delegation_list, name="delegations"),
    path("approvals/delegations/<int:pk>/end/", config.delegation_end, name="delegation-end"),
    path("settings/", config.settings_index, name="settings"),
    path("settings/queues/", config.queue_list, name="settings-queues"),
    path("settings/queues/new/", config.queue_edit, name="settings-queue-new"),
    path("settings/queues/<int:pk>/", config.queue_edit, name="settings-queue"),
    path("settings/calendars/", config.calendar_list, name="settings-calendars"),
    path("settings/calendars/<int:team_id>/", config.calendar_edit, name="settings-calendar"),
    path("settings/calendars/<int:team_id>/holidays/", config.holiday_create, name="settings-holiday-add"),
    path(
        "settings/calendars/<int:team_id>/holidays/<int:pk>/delete/",
        config.holiday_delete,
        name="settings-holiday-delete",
    ),
    path("settings/sla/", config.sla_targets, name="settings-sla"),
    path("settings/rules/", config.rule_list, name="settings-rules"),
    path("settings/rules/new/", config.rule_edit, name="settings-rule-new"),
    path("settings/rules/preview/", config.rule_preview, name="settings-rule-preview"),
    path("settings/rules/<int:pk>/", config.rule_edit, name="settings-rule"),
    path("settings/rules/<int:pk>/preview/", config.rule_preview, name="settings-rule-preview-saved"),
    path("settings/rules/<int:pk>/delete/", config.rule_delete, name="settings-rule-delete"),
    path("settings/approval-policies/", config.policy_list, name="settings-policies"),
    path("settings/approval-policies/new/", config.policy_edit, name="settings-policy-new"),
    path("settings/approval-policies/<int:pk>/", config.policy_edit, name="settings-policy"),
]
