import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client

from exceptions import services
from exceptions.models import ExceptionType, StateDeadline
from fulfillment.core.actors import Actor
from orders.models import Status
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_the_nine_exception_types_exist_with_their_default_queues():
    assert dict(ExceptionType.objects.values_list("code", "default_queue__slug")) == {
        "inventory_shortfall": "planning",
        "pick_short": "planning",
        "carrier_booking_failed": "planning",
        "integration_sync_failed": "integration",
        "late_shipment_risk": "customer-service",
        "invalid_address": "customer-service",
        "delivery_failed": "customer-service",
        "invoice_blocked": "invoicing",
        "stalled_order": "planning",
    }
    shortfall = ExceptionType.objects.get(code="inventory_shortfall")
    assert shortfall.reason_codes == [
        "split_shipment",
        "alternate_warehouse",
        "backorder_accepted",
        "stock_arrived",
        "cancelled",
    ]
    for ex_type in ExceptionType.objects.all():
        ex_type.full_clean()  # every shipped type is valid as the admin would save it
        assert ex_type.sla_minutes > 0 and ex_type.severity in (1, 2, 3)


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        ([], "This field cannot be blank."),
        ("stock_arrived", "Give a list of codes"),
        (["stock arrived"], "Give a list of codes"),
        (["fixed", "fixed"], "Each code once."),
        (["fixed", "auto_cleared"], "'auto_cleared' is reserved for the system."),
    ],
)
def test_reason_codes_are_checked_when_an_admin_edits_a_type(codes, message):
    ex_type = ExceptionType.objects.get(code="invalid_address")
    ex_type.reason_codes = codes

    with pytest.raises(ValidationError) as err:
        ex_type.full_clean()

    assert message in err.value.message_dict["reason_codes"][0]


def test_a_terminal_state_cannot_get_a_deadline():
    deadline = StateDeadline(state=Status.CLOSED, max_minutes=60, queue_id=1)

    with pytest.raises(ValidationError) as err:
        deadline.full_clean()

    assert err.value.message_dict["state"] == ["A closed or cancelled order cannot stall."]


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_admins_edit_types_and_deadlines_and_browse_exceptions_read_only(admin_client, now):
    ex = services.exception_raise(
        type_code="late_shipment_risk", order=f.order(), details={}, actor=Actor.named("wms")
    )
    shortfall = ExceptionType.objects.get(code="inventory_shortfall")

    for url in [
        "/admin/exceptions/exceptiontype/",
        f"/admin/exceptions/exceptiontype/{shortfall.pk}/change/",
        "/admin/exceptions/statedeadline/",
        "/admin/exceptions/orderexception/",
        "/admin/exceptions/orderexception/?is_open__exact=1&type__id__exact=" + str(ex.type_id),
        f"/admin/exceptions/orderexception/{ex.pk}/change/",
    ]:
        assert admin_client.get(url).status_code == 200, url
    listing = admin_client.get("/admin/exceptions/orderexception/").content.decode()
    assert ex.work_item.title in listing
    assert admin_client.get("/admin/exceptions/orderexception/add/").status_code == 403
    assert admin_client.get(f"/admin/exceptions/orderexception/{ex.pk}/delete/").status_code == 403
    # The code is what services and work items refer to: fixed once the type exists.
    page = admin_client.get(f"/admin/exceptions/exceptiontype/{shortfall.pk}/change/").content.decode()
    assert 'name="code"' not in page and 'name="sla_minutes"' in page
