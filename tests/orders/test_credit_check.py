"""Credit check: exposure = open receivables + other open orders + this order <= limit."""

from decimal import Decimal

import pytest

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.errors import TransitionNotAllowed
from orders import selectors, services
from orders.models import Customer, Order, OrderTransition, Status
from tests import factories

S = Status
pytestmark = pytest.mark.django_db

# Written out rather than imported, so a change to what counts is a conscious one.
COUNTED = [
    S.RECEIVED, S.CREDIT_CHECK, S.CREDIT_HOLD, S.ALLOCATING, S.BACKORDERED, S.PARTIALLY_ALLOCATED,
    S.ALLOCATED, S.AWAITING_RELEASE, S.RELEASED, S.PICKING, S.PACKED, S.PARTIALLY_SHIPPED, S.SHIPPED,
    S.DELIVERED, S.ON_HOLD,
]  # fmt: skip
NOT_COUNTED = [S.CANCELLED, S.INVOICED, S.CLOSED]


def _customer(limit: str, receivables: str = "0", *, blocked: bool = False) -> Customer:
    return factories.customer(
        credit_limit=Decimal(limit), open_receivables=Decimal(receivables), credit_blocked=blocked
    )


def _order(cust: Customer, amount: str) -> Order:
    """An order of one unit at ``amount``."""
    return factories.order(cust, [(factories.product(price=amount), 1)])


def _timeline(order: Order) -> list[tuple[str, str, str, str, str]]:
    return list(
        OrderTransition.objects.filter(order=order)
        .order_by("id")
        .values_list("transition", "from_state", "to_state", "actor_system", "reason")
    )


def test_under_the_limit_passes_to_allocating_with_the_figures_recorded() -> None:
    cust = _customer("1000.00", "300.00")
    order = factories.order(cust, [(factories.product(price="50.00"), 4)])

    decision = services.order_credit_check(order=order, actor=Actor.named("scheduler"))

    assert decision.passed is True
    assert decision.exposure == Decimal("500.00")
    assert Order.objects.get(pk=order.pk).status == S.ALLOCATING
    assert _timeline(order) == [
        ("receive", "", S.RECEIVED, "test", ""),
        ("start_credit_check", S.RECEIVED, S.CREDIT_CHECK, "scheduler", ""),
        ("pass_credit_check", S.CREDIT_CHECK, S.ALLOCATING, "scheduler", ""),
    ]
    assert OrderTransition.objects.get(order=order, transition="start_credit_check").data == {}
    assert OrderTransition.objects.get(order=order, transition="pass_credit_check").data == {
        "passed": True,
        "credit_limit": "1000.00",
        "open_receivables": "300.00",
        "other_open_orders": "0.00",
        "this_order": "200.00",
        "exposure": "500.00",
        "credit_blocked": False,
    }


def test_over_the_limit_goes_to_credit_hold_with_the_reason_and_figures() -> None:
    cust = _customer("1000.00", "900.00")
    order = factories.order(cust, [(factories.product(price="50.00"), 4)])

    decision = services.order_credit_check(order=order, actor=factories.SYSTEM)

    assert decision.passed is False
    assert Order.objects.get(pk=order.pk).status == S.CREDIT_HOLD
    assert _timeline(order)[1:] == [
        ("start_credit_check", S.RECEIVED, S.CREDIT_CHECK, "test", ""),
        (
            "fail_credit_check",
            S.CREDIT_CHECK,
            S.CREDIT_HOLD,
            "test",
            "Exposure 1100.00 exceeds credit limit 1000.00.",
        ),
    ]
    assert OrderTransition.objects.get(order=order, transition="fail_credit_check").data == {
        "passed": False,
        "credit_limit": "1000.00",
        "open_receivables": "900.00",
        "other_open_orders": "0.00",
        "this_order": "200.00",
        "exposure": "1100.00",
        "credit_blocked": False,
    }


def test_a_credit_blocked_customer_fails_even_with_headroom() -> None:
    cust = _customer("100000.00", blocked=True)
    order = _order(cust, "1.00")

    decision = services.order_credit_check(order=order, actor=factories.SYSTEM)

    assert decision.passed is False
    assert Order.objects.get(pk=order.pk).status == S.CREDIT_HOLD
    row = OrderTransition.objects.get(order=order, transition="fail_credit_check")
    assert row.reason == "Customer is credit-blocked."
    assert row.data == {
        "passed": False,
        "credit_limit": "100000.00",
        "open_receivables": "0.00",
        "other_open_orders": "0.00",
        "this_order": "1.00",
        "exposure": "1.00",
        "credit_blocked": True,
    }


@pytest.mark.parametrize(
    ("receivables", "passes", "status", "exposure"),
    [
        ("800.00", True, S.ALLOCATING, "1000.00"),  # exactly at the limit
        ("800.01", False, S.CREDIT_HOLD, "1000.01"),  # one cent over
    ],
)
def test_boundary_exposure_equal_to_the_limit_passes_one_cent_over_fails(
    receivables: str, passes: bool, status: str, exposure: str
) -> None:
    cust = _customer("1000.00", receivables)
    order = _order(cust, "200.00")

    decision = services.order_credit_check(order=order, actor=factories.SYSTEM)

    assert decision.passed is passes
    assert decision.exposure == Decimal(exposure)
    assert Order.objects.get(pk=order.pk).status == status
    row = OrderTransition.objects.filter(order=order).latest("id")
    assert row.data["exposure"] == exposure
    assert row.data["passed"] is passes


@pytest.mark.parametrize("other_state", COUNTED, ids=[str(s) for s in COUNTED])
def test_other_open_orders_count_towards_exposure(other_state: str) -> None:
    cust = _customer("100000.00")
    factories.order_in(other_state, cust=cust, qty=4)  # 4 x 10.00
    Customer.objects.filter(pk=cust.pk).update(credit_limit=Decimal("60.00"))
    order = _order(cust, "40.00")

    decision = services.order_credit_check(order=order, actor=factories.SYSTEM)

    assert decision.passed is False
    assert Order.objects.get(pk=order.pk).status == S.CREDIT_HOLD
    row = OrderTransition.objects.get(order=order, transition="fail_credit_check")
    assert (row.data["other_open_orders"], row.data["exposure"]) == ("40.00", "80.00")
    assert row.reason == "Exposure 80.00 exceeds credit limit 60.00."


@pytest.mark.parametrize("other_state", NOT_COUNTED, ids=[str(s) for s in NOT_COUNTED])
def test_cancelled_invoiced_and_closed_orders_do_not_count(other_state: str) -> None:
    cust = _customer("100000.00")
    factories.order_in(other_state, cust=cust, qty=4)
    Customer.objects.filter(pk=cust.pk).update(credit_limit=Decimal("60.00"))
    order = _order(cust, "40.00")

    decision = services.order_credit_check(order=order, actor=factories.SYSTEM)

    assert decision.passed is True
    assert Order.objects.get(pk=order.pk).status == S.ALLOCATING
    row = OrderTransition.objects.get(order=order, transition="pass_credit_check")
    assert (row.data["other_open_orders"], row.data["exposure"]) == ("0.00", "40.00")


def test_exposure_sums_all_open_orders_of_this_customer_only() -> None:
    cust = _customer("100000.00", "10.00")
    factories.order_in(S.RECEIVED, cust=cust, qty=2)  # 20.00
    factories.order_in(S.ALLOCATED, cust=cust, qty=3)  # 30.00
    factories.order_in(S.CANCELLED, cust=cust, qty=5)  # not counted
    factories.order_in(S.ALLOCATED, qty=7)  # another customer's
    order = _order(cust, "0.50")

    decision = services.order_credit_check(order=order, actor=factories.SYSTEM)

    assert decision.passed is True
    assert OrderTransition.objects.get(order=order, transition="pass_credit_check").data == {
        "passed": True,
        "credit_limit": "100000.00",
        "open_receivables": "10.00",
        "other_open_orders": "50.00",
        "this_order": "0.50",
        "exposure": "60.50",
        "credit_blocked": False,
    }


def test_the_check_uses_the_customers_figures_at_check_time_not_when_the_order_was_loaded() -> None:
    cust = _customer("1000.00")
    order = services.order_get(order_id=_order(cust, "100.00").pk)
    # The ERP posts new receivables after the order was loaded.
    Customer.objects.filter(pk=cust.pk).update(open_receivables=Decimal("950.00"))

    decision = services.order_credit_check(order=order, actor=factories.SYSTEM)

    assert decision.passed is False
    assert decision.open_receivables == Decimal("950.00")
    assert Order.objects.get(pk=order.pk).status == S.CREDIT_HOLD


def test_credit_check_of_an_order_past_received_is_refused_and_writes_nothing() -> None:
    order = factories.order_in(S.ALLOCATED)
    before = factories.row_counts()

    with pytest.raises(TransitionNotAllowed):
        services.order_credit_check(order=order, actor=factories.SYSTEM)

    assert factories.row_counts() == before
    assert Order.objects.get(pk=order.pk).status == S.ALLOCATED


def test_release_from_credit_hold_moves_on_to_allocating() -> None:
    cust = _customer("10.00")
    order = _order(cust, "20.00")
    services.order_credit_check(order=order, actor=factories.SYSTEM)
    finance = factories.user("finance1")

    services.order_release_credit_hold(order=order, actor=Actor.of(finance), reason="prepaid")

    assert Order.objects.get(pk=order.pk).status == S.ALLOCATING
    row = OrderTransition.objects.filter(order=order).latest("id")
    assert (row.transition, row.from_state, row.to_state, row.actor_user_id, row.reason) == (
        "release_credit_hold",
        S.CREDIT_HOLD,
        S.ALLOCATING,
        finance.pk,
        "prepaid",
    )


@pytest.mark.parametrize("delivered", [False, True], ids=["closed-short", "closed-short-and-delivered"])
def test_an_order_closed_short_counts_at_what_shipped_not_at_its_total(delivered: bool) -> None:
    cust = _customer("100000.00")
    other = factories.order_in(S.PARTIALLY_SHIPPED, cust=cust, qty=4)  # 4 x 10.00, 1 shipped
    services.order_close_short(order=other, actor=factories.SYSTEM, reason="The rest is discontinued.")
    if delivered:
        services.order_confirm_delivery(
            order=other,
            shipment_id=other.shipments.get().external_id,
            delivered_at=clock.now(),
            signed_by="J. Doe",
            actor=factories.SYSTEM,
        )
    assert other.status == (S.DELIVERED if delivered else S.SHIPPED)
    Customer.objects.filter(pk=cust.pk).update(credit_limit=Decimal("50.00"))
    order = _order(cust, "40.00")

    # At its total the other order would make the exposure 80.00, over the limit.
    decision = services.order_credit_check(order=order, actor=factories.SYSTEM)

    assert decision.passed is True
    row = OrderTransition.objects.get(order=order, transition="pass_credit_check")
    assert (row.data["other_open_orders"], row.data["exposure"]) == ("10.00", "50.00")
    detail = selectors.order_detail(order_id=other.pk, today=clock.now().date())
    assert (detail.credit.open_orders, detail.credit.headroom) == (Decimal("50.00"), Decimal("0.00"))


def test_an_order_shipped_in_full_counts_at_its_total() -> None:
    cust = _customer("100000.00")
    factories.order_in(S.SHIPPED, cust=cust, qty=4)  # 4 x 10.00
    Customer.objects.filter(pk=cust.pk).update(credit_limit=Decimal("60.00"))

    decision = services.order_credit_check(order=_order(cust, "40.00"), actor=factories.SYSTEM)

    assert (decision.passed, decision.other_open_orders) == (False, Decimal("40.00"))
