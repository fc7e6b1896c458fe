"""What the simulated WMS and carrier do with a release: the webhooks they send and when.

A release is picked after ~2 s, shipped after ~4 s and delivered after ~8 s (times
``time_scale``); the carrier reports the parcel in transit, out for delivery and
delivered. The content of every event is fixed when it is planned, except the carrier
and tracking number of the shipment, which come from the portal's carrier booking for
the order when there is one by the time the shipment is confirmed.
"""

import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from integrations.simulator.erp import NAMES
from integrations.simulator.webhooks import iso, make_event

PICK_AT, SHIP_AT, DELIVER_AT = 2.0, 4.0, 8.0
TRACKING_AT = {"in_transit": 5.0, "out_for_delivery": 6.5, "delivered": 8.0}


def new_id(prefix: str) -> str:
    """Unique across simulator runs, so that a restart never reuses an id the portal stored."""
    return f"{prefix}-{secrets.token_hex(5).upper()}"


def tracking_number(carrier: str) -> str:
    return f"{carrier[:3].upper()}{secrets.randbelow(10**12):012d}"


@dataclass
class Release:
    release_id: str
    order: str
    warehouse: str
    lines: list[dict[str, Any]]


@dataclass
class Step:
    """One webhook: sent ``due`` seconds after the release, built when it is sent."""

    due: float
    partner: str
    event_id: str
    event_type: str
    occurred_at: float
    build: Callable[[], dict[str, Any]]

    def event(self) -> dict[str, Any]:
        return make_event(self.event_type, self.build(), self.occurred_at, self.event_id)


@dataclass
class Shipping:
    """The carrier and tracking number of a release's shipment, fixed on first use."""

    lookup: Callable[[], tuple[str, str]]
    _value: tuple[str, str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> tuple[str, str]:
        with self._lock:
            if self._value is None:
                self._value = self.lookup()
            return self._value


def picked_quantities(lines: list[dict[str, Any]], short_pick_rate: float, rng: random.Random) -> list[int]:
    """Everything, or with ``short_pick_rate`` one line short (0 to quantity - 1)."""
    picked = [line["quantity"] for line in lines]
    if rng.random() < short_pick_rate:
        index = rng.randrange(len(lines))
        picked[index] = rng.randrange(lines[index]["quantity"])
    return picked


def plan_release(
    release: Release,
    *,
    started_at: float,
    time_scale: float,
    short_pick_rate: float,
    reorder_rate: float,
    rng: random.Random,
    shipping: Shipping,
) -> tuple[list[Step], int]:
    """The release's webhooks in sending order, and how many pairs were swapped."""
    picked = picked_quantities(release.lines, short_pick_rate, rng)

    def step(at: float, partner: str, event_type: str, build: Callable[[], dict[str, Any]]) -> Step:
        due = at * time_scale
        return Step(due, partner, f"evt_{secrets.token_hex(12)}", event_type, started_at + due, build)

    pick_lines = [{"sku": line["sku"], "picked": n} for line, n in zip(release.lines, picked, strict=True)]
    ship_lines = [{"sku": line["sku"], "quantity": line["picked"]} for line in pick_lines if line["picked"]]
    shipment_id = new_id("SHP")
    delivered_at = started_at + DELIVER_AT * time_scale
    signed_by = rng.choice(NAMES)

    def pick() -> dict[str, Any]:
        return {"order": release.order, "warehouse": release.warehouse, "lines": pick_lines}

    def shipment() -> dict[str, Any]:
        carrier_code, tracking = shipping.get()
        return {
            "order": release.order,
            "shipment_id": shipment_id,
            "warehouse": release.warehouse,
            "carrier": carrier_code,
            "tracking": tracking,
            "lines": ship_lines,
        }

    def delivery() -> dict[str, Any]:
        return {
            "order": release.order,
            "shipment_id": shipment_id,
            "delivered_at": iso(delivered_at),
            "signed_by": signed_by,
        }

    def tracking(status: str) -> Callable[[], dict[str, Any]]:
        return lambda: {"tracking": shipping.get()[1], "status": status, "eta": iso(delivered_at)}

    wms = [step(PICK_AT, "wms", "pick.completed", pick)]
    carrier: list[Step] = []
    if ship_lines:  # nothing picked: nothing to ship
        wms.append(step(SHIP_AT, "wms", "shipment.confirmed", shipment))
        wms.append(step(DELIVER_AT, "wms", "delivery.confirmed", delivery))
        carrier = [step(at, "carrier", "tracking.updated", tracking(s)) for s, at in TRACKING_AT.items()]
    swapped = _reorder(wms, reorder_rate, rng) + _reorder(carrier, reorder_rate, rng)
    planned = wms + carrier
    # Stable: a swapped pair shares its due time and keeps its (swapped) order.
    planned.sort(key=lambda s: s.due)
    return planned, swapped


def _reorder(steps: list[Step], rate: float, rng: random.Random) -> int:
    """Swap consecutive steps with probability ``rate``; both go out at the later one's time
    (an event is never sent before it occurred)."""
    swapped, index = 0, 0
    while index + 1 < len(steps):
        if rng.random() < rate:
            first, second = steps[index], steps[index + 1]
            second.due = first.due = max(first.due, second.due)
            steps[index], steps[index + 1] = second, first
            swapped += 1
            index += 2
        else:
            index += 1
    return swapped
