from datetime import UTC, date, datetime

import pytest
from django.contrib.auth.models import User
from django.test import Client

from approvals.models import ApprovalPolicy, Delegation
from flows.approvals import approval_decide
from fulfillment.core import clock
from tests import factories
from tests.approvals.support import credit_hold_order, finance, request_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client) -> Client:
    ada = factories.user("ada", "admin")
    User.objects.filter(pk=ada.pk).update(is_staff=True, is_superuser=True)
    client.force_login(User.objects.get(pk=ada.pk))
    return client


def test_the_admin_lists_policies_delegations_and_requests(admin_client: Client) -> None:
    request = request_for(credit_hold_order())
    approval_decide(request=request, user=finance("fiona"), approve=False, comment="Overdue invoices.")
    for url in [
        "/admin/approvals/approvalpolicy/",
        "/admin/approvals/approvalpolicy/add/",
        "/admin/approvals/delegation/",
        "/admin/approvals/approvalrequest/",
        f"/admin/approvals/approvalrequest/{request.pk}/change/",
    ]:
        assert admin_client.get(url).status_code == 200, url
    assert (
        "Overdue invoices." in admin_client.get(f"/admin/approvals/approvalrequest/{request.pk}/change/").text
    )


def test_an_overlapping_band_is_refused_on_the_admin_form(admin_client: Client) -> None:
    finance_group = ApprovalPolicy.objects.first().approver_group
    response = admin_client.post(
        "/admin/approvals/approvalpolicy/add/",
        {
            "kind": "credit_hold",
            "name": "Overlap",
            "min_amount": "40000",
            "max_amount": "60000",
            "approvers_required": "1",
            "approver_group": finance_group.pk,
            "reject_action": "cancel",
            "sla_minutes": "240",
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    assert "overlaps policy" in response.content.decode()
    assert not ApprovalPolicy.objects.filter(name="Overlap").exists()


def test_a_delegation_is_created_through_the_service(admin_client: Client) -> None:
    fiona, dan = finance("fiona"), factories.user("dan")
    with clock.frozen(datetime(2026, 3, 2, 9, tzinfo=UTC)):
        refused = admin_client.post(
            "/admin/approvals/delegation/add/",
            {"delegator": dan.pk, "delegate": fiona.pk, "starts_on": "2026-03-02", "ends_on": "2026-03-06"},
        )
        assert refused.status_code == 200
        assert "dan approves no active policy" in refused.content.decode()
        assert not Delegation.objects.exists()

        created = admin_client.post(
            "/admin/approvals/delegation/add/",
            {
                "delegator": fiona.pk,
                "delegate": dan.pk,
                "starts_on": "2026-03-02",
                "ends_on": "2026-03-06",
                "reason": "Holiday",
            },
        )
    assert created.status_code == 302
    delegation = Delegation.objects.get()
    saved = (delegation.delegator, delegation.delegate, delegation.starts_on, delegation.created_by.username)
    assert saved == (fiona, dan, date(2026, 3, 2), "ada")
