"""Django admin for the integration set-up and the read-only traffic."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from fulfillment.core.models import OutboxMessage
from integrations.models import DeliveryAttempt, Endpoint, InboundEvent, OutboxAction, Partner, PartnerSecret

pytestmark = pytest.mark.django_db

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def admin_client(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


def inline_post(partner: Partner, rows: list[dict[str, str]]) -> dict[str, str]:
    data = {
        "secrets-TOTAL_FORMS": str(len(rows)),
        "secrets-INITIAL_FORMS": str(sum(1 for row in rows if row.get("id"))),
        "secrets-MIN_NUM_FORMS": "0",
        "secrets-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        data.update({f"secrets-{i}-{key}": value for key, value in row.items()})
        data[f"secrets-{i}-partner"] = str(partner.pk)
    return data


def test_secrets_are_never_shown_and_kept_when_left_empty(admin_client: Client) -> None:
    partner = Partner.objects.create(name="wms")
    old = PartnerSecret.objects.create(partner=partner, secret="demo-wms-secret-0001")
    url = reverse("admin:integrations_partner_change", args=[partner.pk])

    page = admin_client.get(url).content.decode()
    assert "demo-wms-secret-0001" not in page
    assert "…0001" in page

    # Rotation: keep the old one (left empty, now inactive) and add a new one.
    response = admin_client.post(
        url,
        inline_post(
            partner,
            [
                {"id": str(old.pk), "secret": "", "is_active": ""},
                {"secret": "rotated-secret-2", "is_active": "on"},
            ],
        ),
    )
    assert response.status_code == 302
    assert list(PartnerSecret.objects.order_by("pk").values_list("secret", "is_active")) == [
        ("demo-wms-secret-0001", False),
        ("rotated-secret-2", True),
    ]


def test_an_endpoint_token_is_kept_when_left_empty(admin_client: Client) -> None:
    endpoint = Endpoint.objects.create(name="erp", base_url="http://erp.test", token="tok-123456789")
    url = reverse("admin:integrations_endpoint_change", args=[endpoint.pk])
    assert "tok-123456789" not in admin_client.get(url).content.decode()

    response = admin_client.post(
        url,
        {
            "base_url": "http://erp2.test",
            "token": "",
            "enabled": "on",
            "timeout_seconds": "3",
            "max_attempts": "5",
        },
    )

    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.base_url, endpoint.token, endpoint.timeout_seconds, endpoint.max_attempts) == (
        "http://erp2.test",
        "tok-123456789",
        3.0,
        5,
    )


def test_messages_and_events_are_read_only_with_their_attempts(admin_client: Client) -> None:
    message = OutboxMessage.objects.create(
        endpoint="wms", topic="order.release", payload={}, idempotency_key="k-1", state="dead"
    )
    DeliveryAttempt.objects.create(
        message=message, at=AT, status_code=503, latency_ms=42, error="HTTP 503: nope"
    )
    OutboxAction.objects.create(
        message=message, action="handled", actor=User.objects.get(username="root"), note="by phone"
    )
    event = InboundEvent.objects.create(
        partner=Partner.objects.create(name="carrier"),
        event_id="e-1",
        type="tracking.updated",
        occurred_at=AT,
        data={},
    )

    page = admin_client.get(reverse("admin:core_outboxmessage_change", args=[message.pk])).content.decode()
    assert "HTTP 503: nope" in page and "by phone" in page
    assert 'name="_save"' not in page
    assert admin_client.get(reverse("admin:core_outboxmessage_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:core_outboxmessage_add")).status_code == 403
    assert admin_client.get(reverse("admin:integrations_inboundevent_changelist")).status_code == 200
    assert (
        'name="_save"'
        not in admin_client.get(
            reverse("admin:integrations_inboundevent_change", args=[event.pk])
        ).content.decode()
    )
    assert admin_client.post(reverse("admin:core_outboxmessage_delete", args=[message.pk])).status_code == 403
    assert OutboxMessage.objects.filter(pk=message.pk).exists()
