from datetime import timedelta
from decimal import Decimal

import pytest

from exceptions import services
from exceptions.models import OrderException
from fulfillment.core import clock, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.errors import InvalidInput, PermissionDenied
from fulfillment.core.models import WorkItem, WorkItemEvent
from orders import services as order_services
from orders.models import Inventory, Status
from tests import factories as f

pytestmark = pytest.mark.django_db
WMS = Actor.named("wms")


def raised(type_code: str = "late_shipment_risk") -> OrderException:
    return services.exception_raise(type_code=type_code, order=f.order(), details={}, actor=WMS)


def snapshot(ex: OrderException) -> tuple:
    ex.refresh_from_db()
    item = WorkItem.objects.get(pk=ex.work_item_id)
    return (
        ex.is_open,
        item.state,
        item.assignee_id,
        item.resolution_code,
        item.resolved_at,
        WorkItemEvent.objects.filter(item=item).count(),
    )


def last_event(ex: OrderException) -> WorkItemEvent:
    return WorkItemEvent.objects.filter(item_id=ex.work_item_id).order_by("-id").first()


def test_a_person_resolves_with_one_of_the_type_reason_codes(now):
    ex = raised()
    cs = f.user("cleo", "customer_service")
    workqueue.work_item_claim(item=ex.work_item, user=cs)
    clock.advance(timedelta(minutes=30))

    resolved = services.exception_resolve(
        exception=ex, reason_code="customer_informed", note="Called the buyer.", actor=Actor.of(cs)
    )

    assert resolved.is_open is False
    ex.refresh_from_db()
    item = ex.work_item
    assert ex.is_open is False
    assert (item.state, item.resolution_code, item.resolution_note) == (
        "resolved",
        "customer_informed",
        "Called the buyer.",
    )
    assert (item.resolved_by, item.resolved_at) == (cs, now + timedelta(minutes=30))
    event = last_event(ex)
    assert (event.action, event.actor_user, event.note, event.data) == (
        "resolved",
        cs,
        "Called the buyer.",
        {"reason_code": "customer_informed"},
    )


@pytest.mark.parametrize("code", ["split_shipment", "auto_cleared", ""])
def test_a_reason_code_outside_the_type_list_is_refused_and_changes_nothing(now, code):
    ex = raised()  # late-shipment risk: split_shipment belongs to shortfalls
    cs = f.user("cleo", "customer_service")
    before = snapshot(ex)

    with pytest.raises(InvalidInput) as err:
        services.exception_resolve(exception=ex, reason_code=code, note="", actor=Actor.of(cs))

    assert err.value.fields == {"reason_code": ["Unknown reason code."]}
    assert snapshot(ex) == before
    assert before[:3] == (True, "open", None)


def test_resolving_someone_elses_claimed_item_is_denied_and_changes_nothing(now):
    ex = raised()
    holder, other = f.user("hal", "customer_service"), f.user("oli", "customer_service")
    workqueue.work_item_claim(item=ex.work_item, user=holder)
    before = snapshot(ex)

    with pytest.raises(PermissionDenied):
        services.exception_resolve(exception=ex, reason_code="expedited", note="", actor=Actor.of(other))

    assert snapshot(ex) == before
    assert before[:3] == (True, "open", holder.pk)


def test_a_person_outside_the_queue_team_cannot_resolve(now):
    ex = raised()  # customer-service queue
    planner = f.user("pia", "planner")
    before = snapshot(ex)

    with pytest.raises(PermissionDenied):
        services.exception_resolve(exception=ex, reason_code="expedited", note="", actor=Actor.of(planner))

    assert snapshot(ex) == before


def test_a_resolved_exception_cannot_be_resolved_again(now):
    ex = raised()
    services.exception_resolve(exception=ex, reason_code="risk_gone", note="", actor=WMS)
    before = snapshot(ex)

    with pytest.raises(InvalidInput):
        services.exception_resolve(exception=ex, reason_code="expedited", note="", actor=WMS)

    assert snapshot(ex) == before


def test_clear_closes_the_open_exception_as_auto_cleared_by_the_system(now):
    ex = raised()
    holder = f.user("hal", "customer_service")
    workqueue.work_item_claim(item=ex.work_item, user=holder)  # held by a person: cleared all the same

    cleared = services.exception_clear(
        order=ex.order, type_code="late_shipment_risk", note="Shipped.", actor=WMS
    )

    assert cleared.pk == ex.pk and cleared.is_open is False
    ex.refresh_from_db()
    item = ex.work_item
    assert ex.is_open is False
    assert (item.state, item.resolution_code, item.resolution_note, item.resolved_by) == (
        "resolved",
        "auto_cleared",
        "Shipped.",
        None,
    )
    event = last_event(ex)
    assert (event.action, event.actor_user, event.actor_system, event.note, event.data) == (
        "resolved",
        None,
        "wms",
        "Shipped.",
        {"reason_code": "auto_cleared"},
    )


def test_a_cause_cleared_by_a_persons_action_is_closed_by_the_system_naming_the_person(now):
    ex = raised()
    planner = f.user("pia", "planner")  # not even in the exception's team

    services.exception_clear(
        order=ex.order, type_code="late_shipment_risk", note="Expedited.", actor=Actor.of(planner)
    )

    event = last_event(ex)
    assert (event.actor_user, event.actor_system, event.note) == (
        None,
        "system",
        "Expedited. (after an action by pia)",
    )
    assert WorkItem.objects.get(pk=ex.work_item_id).resolution_code == "auto_cleared"


def test_clear_without_an_open_exception_returns_none_and_writes_nothing(now):
    ex = raised()
    other_type_before = snapshot(ex)

    assert services.exception_clear(order=ex.order, type_code="invalid_address", note="", actor=WMS) is None
    assert (
        services.exception_clear(order=f.order(), type_code="late_shipment_risk", note="", actor=WMS) is None
    )

    assert snapshot(ex) == other_type_before
    assert WorkItemEvent.objects.count() == 1


def test_an_inventory_shortfall_closes_itself_when_stock_arrives_and_reallocation_succeeds(now):
    """The way the fulfilment flow uses it: allocation short → raise; stock arrives,
    re-allocation in full → clear."""
    wh = f.warehouse()
    short, plenty = f.product(price="25.00"), f.product(price="4.00")
    f.stock(wh, short, 2)
    f.stock(wh, plenty, 10)
    order = f.order(lines=[(short, 5), (plenty, 10)], wh=wh)
    assert order_services.order_credit_check(order=order, actor=WMS).passed

    result = order_services.order_allocate(order=order, actor=WMS)
    assert (result.status, result.shortfall) == (Status.PARTIALLY_ALLOCATED, {short.sku: 3})
    ex = services.exception_raise(
        type_code="inventory_shortfall",
        order=order,
        details={"shortfall": result.shortfall, "allocated": result.allocated},
        actor=WMS,
    )
    assert ex.work_item.revenue_at_risk == Decimal("75.00")
    assert ex.work_item.title == f"Inventory shortfall on {order.external_id} (1 SKU)"

    clock.advance(timedelta(hours=3))
    Inventory.objects.filter(warehouse=wh, product=short).update(on_hand=5)  # the goods receipt
    again = order_services.order_allocate(order=order, actor=WMS)
    assert (again.status, again.shortfall) == (Status.ALLOCATED, {})
    services.exception_clear(
        order=order, type_code="inventory_shortfall", note="Stock arrived; re-allocated in full.", actor=WMS
    )

    ex.refresh_from_db()
    item = ex.work_item
    assert (ex.is_open, item.state, item.resolution_code) == (False, "resolved", "auto_cleared")
    assert item.resolved_at == now + timedelta(hours=3)
    assert [(e.action, e.actor_system) for e in item.events.all()] == [("opened", "wms"), ("resolved", "wms")]
    assert not OrderException.objects.filter(order=order, is_open=True).exists()
