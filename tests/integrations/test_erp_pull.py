"""The scheduled pull of ERP orders from the simulator's feed, over real HTTP on loopback."""

from collections.abc import Iterator
from typing import Any

import pytest

from exceptions.models import OrderException
from flows import intake
from fulfillment.core.actors import Actor
from fulfillment.core.models import OutboxMessage
from integrations import erp
from integrations.erp import erp_pull
from integrations.models import Endpoint, SyncCursor
from integrations.tasks import pull_erp_orders
from orders.models import Order, OrderTransition, Status
from tests import factories
from tests.integrations import simulated
from tests.integrations.simulated import Sim

FEED = "/erp/orders"
SHIP_TO = {
    "name": "Grace Hopper",
    "line1": "9 Canal Walk",
    "city": "Gdansk",
    "postal_code": "80001",
    "country": "PL",
}


@pytest.fixture
def sim(db: None) -> Iterator[Sim]:
    factories.customer(code="C-ERP")
    wh = factories.warehouse("WH-ERP")
    factories.stock(wh, factories.product("SKU-A", "4.00"), 100_000)
    with simulated.running() as running:
        simulated.endpoints(running.url)
        yield running


def feed_order(n: int, **changes: Any) -> dict[str, Any]:
    order = {
        "external_id": f"ERP-{n:05d}",
        "customer": "C-ERP",
        "warehouse": None,
        "promised_date": "2026-03-09",
        "currency": "EUR",
        "ship_to": SHIP_TO,
        "lines": [{"sku": "SKU-A", "quantity": 1 + n % 5, "unit_price": "4.00"}],
    }
    return {**order, **changes}


def external_ids() -> list[str]:
    return list(Order.objects.order_by("external_id").values_list("external_id", flat=True))


def cursor() -> str:
    return SyncCursor.objects.get(name="erp-orders").value


def test_450_orders_over_three_pages_are_created_once_and_the_cursor_is_stored(sim: Sim) -> None:
    sim.add_erp_orders([feed_order(n) for n in range(450)])

    assert erp_pull(budget_seconds=600) == 450  # however slow the machine

    assert sim.received(FEED) == 3  # 200, 200 and 50: a short page is the end
    assert external_ids() == [f"ERP-{n:05d}" for n in range(450)]
    assert set(Order.objects.values_list("status", flat=True)) == {Status.RELEASED}
    assert set(
        OrderTransition.objects.filter(transition="receive").values_list("actor_system", flat=True)
    ) == {"erp"}
    written = (Order.objects.count(), OrderTransition.objects.count(), OutboxMessage.objects.count())
    assert written[0] == 450 and written[2] == 3 * 450

    assert pull_erp_orders() == 0  # the task: nothing new
    assert sim.received(FEED) == 4
    assert (Order.objects.count(), OrderTransition.objects.count(), OutboxMessage.objects.count()) == written
    stored = cursor()
    assert sim.erp_orders(stored) == {"orders": [], "next_cursor": stored}  # at the end of the feed


def test_orders_added_to_the_feed_while_pulling_are_neither_skipped_nor_taken_twice(
    sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.add_erp_orders([feed_order(n) for n in range(120)])

    def upsert_while_the_erp_adds_orders(*, payload: dict[str, Any], actor: Actor) -> intake.UpsertOutcome:
        if payload["external_id"] == "ERP-00010":
            sim.add_erp_orders([feed_order(n) for n in range(120, 127)])
        return intake.erp_order_upsert(payload=payload, actor=actor)

    monkeypatch.setattr(erp, "erp_order_upsert", upsert_while_the_erp_adds_orders)
    assert erp_pull(limit=50) == 127  # pages of 50, 50 and 27
    assert sim.received(FEED) == 3

    sim.add_erp_orders([feed_order(n) for n in range(127, 130)])
    assert erp_pull(limit=50) == 3

    assert external_ids() == [f"ERP-{n:05d}" for n in range(130)]
    assert OrderTransition.objects.filter(transition="receive").count() == 130


def test_a_bad_order_becomes_an_integration_exception_and_the_feed_moves_on(sim: Sim) -> None:
    unknown_sku = feed_order(1, lines=[{"sku": "SKU-NOPE", "quantity": 1, "unit_price": "4.00"}])
    malformed = {"external_id": "ERP-00002", "customer": "C-ERP", "lines": "one of each"}
    sim.add_erp_orders([feed_order(0), unknown_sku, malformed, feed_order(3)])

    assert erp_pull() == 2

    assert external_ids() == ["ERP-00000", "ERP-00003"]
    exceptions = OrderException.objects.select_related("type", "work_item__queue").order_by("pk")
    assert [(e.type.code, e.work_item.queue.slug, e.order, e.work_item.state) for e in exceptions] == [
        ("integration_sync_failed", "integration", None, "open")
    ] * 2
    first, second = (e.details for e in exceptions)
    assert {key: value for key, value in first.items() if key != "payload_sha256"} == {
        "direction": "inbound",
        "source": "erp",
        "external_id": "ERP-00001",
        "error": "The order is not valid.",
        "fields": {"lines": ["Line 1: unknown SKU 'SKU-NOPE'."]},
        "payload": unknown_sku,
    }
    assert (second["external_id"], second["payload"], second["fields"]) == (
        "ERP-00002",
        malformed,
        {
            "promised_date": ["Give a date as YYYY-MM-DD."],
            "ship_to": ["Give the address as {name, line1, city, postal_code, country}."],
            "lines": ["Give the lines as a list of {sku, quantity, unit_price}."],
        },
    )
    assert exceptions[0].work_item.events.get().note == (
        "ERP order ERP-00001 was not taken: The order is not valid."
    )
    stored = cursor()
    assert sim.erp_orders(stored)["orders"] == []  # the cursor moved past the bad ones

    # The page read again (as after a crash before the cursor was stored): nothing twice.
    SyncCursor.objects.filter(name="erp-orders").update(value="")
    assert erp_pull() == 0
    assert external_ids() == ["ERP-00000", "ERP-00003"]
    assert OrderException.objects.count() == 2
    assert cursor() == stored


def test_a_run_out_of_time_stops_after_its_page_and_the_next_run_goes_on(sim: Sim) -> None:
    sim.add_erp_orders([feed_order(n) for n in range(120)])

    assert erp_pull(limit=50, budget_seconds=0) == 50
    assert sim.received(FEED) == 1
    assert sim.erp_orders(cursor(), limit=100)["orders"] == [feed_order(n) for n in range(50, 120)]

    assert erp_pull(limit=50) == 70
    assert external_ids() == [f"ERP-{n:05d}" for n in range(120)]


def test_a_failing_or_disabled_feed_changes_nothing(sim: Sim) -> None:
    sim.add_erp_orders([feed_order(0)])
    sim.configure(error_rate=1.0)

    assert erp_pull() == 0
    assert (cursor(), Order.objects.count(), OrderException.objects.count()) == ("", 0, 0)

    sim.configure(error_rate=0.0)
    Endpoint.objects.filter(name="erp").update(enabled=False)
    assert erp_pull() == 0
    assert sim.received(FEED) == 1  # not asked while disabled

    Endpoint.objects.filter(name="erp").update(enabled=True)
    assert erp_pull() == 1
    assert external_ids() == ["ERP-00000"]
