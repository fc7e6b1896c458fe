from django.urls import path

from portal import integration

urlpatterns = [
    path("integration/", integration.health, name="integration"),
    path("integration/health/", integration.health_cards, name="integration-health"),
    path("integration/replay/", integration.replay_selected, name="integration-replay"),
    path("integration/outbox/", integration.outbox_list, name="integration-outbox"),
    path("integration/outbox/<int:pk>/", integration.outbox_detail, name="integration-outbox-detail"),
    path("integration/outbox/<int:pk>/replay/", integration.outbox_replay, name="integration-outbox-replay"),
    path(
        "integration/outbox/<int:pk>/handled/", integration.outbox_handled, name="integration-outbox-handled"
    ),
    path("integration/inbound/", integration.inbound_list, name="integration-inbound"),
    path("integration/inbound/<int:pk>/", integration.inbound_detail, name="integration-inbound-detail"),
    path("integration/inbound/<int:pk>/retry/", integration.inbound_retry, name="integration-inbound-retry"),
]
