"""The order's way through the portal, written out in one visible place.

Each step calls the services of the apps below in order; nothing here is hidden in a
signal or ``save()``.
"""

from dataclasses import dataclass

from fulfillment.core.actors import Actor
from orders import services as order_services
from orders.models import Order, Status


@dataclass(frozen=True)
class IntakeOutcome:
    order: Order
    credit_passed: bool
    allocation: order_services.AllocationResult | None


def order_intake(*, order: Order, actor: Actor) -> IntakeOutcome:
    """received → credit check → allocation → release, as far as the rules allow."""
    decision = order_services.order_credit_check(order=order, actor=actor)
    if not decision.passed:
        return IntakeOutcome(order=order, credit_passed=False, allocation=None)
    return IntakeOutcome(order=order, credit_passed=True, allocation=order_allocate(order=order, actor=actor))


def order_allocate(*, order: Order, actor: Actor) -> order_services.AllocationResult:
    result = order_services.order_allocate(order=order, actor=actor)
    if order.status == Status.ALLOCATED:
        order_services.order_release(order=order, actor=actor)
    return result
