"""The simulated ERP's feed of new orders, read with an opaque cursor.

The feed is append-only and the cursor is a position in it, so paging while orders are
being added never skips or repeats one. The cursor also names the simulator run: a
cursor from an earlier run (the simulator was restarted and forgot its orders) reads
this run's feed from its beginning, and external ids carry the run tag so that they
never collide with the orders of an earlier run.
"""

import base64
import binascii
import datetime as dt
import random
import threading
import time
from typing import Any

from integrations.simulator.config import Catalog

MAX_PAGE = 200

NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov", "Ken Thompson"]
STREETS = ["Harbour Road", "Station Street", "Mill Lane", "Market Square", "Canal Walk", "Church Street"]
CITIES = [("Hamburg", "DE"), ("Rotterdam", "NL"), ("Lyon", "FR"), ("Milan", "IT"), ("Gdansk", "PL")]


class CursorError(ValueError):
    pass


def _base36(number: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    text = ""
    while number:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
    return text or "0"


class ErpFeed:
    def __init__(self, run_tag: str | None = None) -> None:
        self.run_tag = run_tag or _base36(int(time.time()))
        self._orders: list[dict[str, Any]] = []
        self._numbered = 0
        self._lock = threading.Lock()

    def add(self, order: dict[str, Any]) -> dict[str, Any]:
        """Append an order; one without ``external_id`` gets ``ERP-<run>-<n>``."""
        with self._lock:
            if not order.get("external_id"):
                self._numbered += 1
                order = {**order, "external_id": f"ERP-{self.run_tag}-{self._numbered:06d}"}
            self._orders.append(order)
            return order

    def page(self, cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str]:
        """The orders after ``cursor`` (at most ``limit``) and the cursor after them."""
        with self._lock:
            start = self._decode(cursor)
            orders = self._orders[start : start + limit]
            return orders, self._encode(start + len(orders))

    def __len__(self) -> int:
        with self._lock:
            return len(self._orders)

    def _encode(self, position: int) -> str:
        return base64.urlsafe_b64encode(f"{self.run_tag}:{position}".encode()).decode().rstrip("=")

    def _decode(self, cursor: str | None) -> int:
        if not cursor:
            return 0
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            run_tag, _, position_text = text.partition(":")
            position = int(position_text)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise CursorError(f"'{cursor}' is not a cursor of this feed") from None
        if run_tag != self.run_tag:
            return 0  # an earlier run's cursor: this run's orders are all new
        if not 0 <= position <= len(self._orders):
            raise CursorError(f"'{cursor}' is not a cursor of this feed")
        return position


def random_order(catalog: Catalog, rng: random.Random, today: dt.date) -> dict[str, Any]:
    """A new order in the shape of the portal's ERP push contract (without ``external_id``)."""
    city, country = rng.choice(CITIES)
    skus = rng.sample(catalog.skus, k=min(len(catalog.skus), rng.randint(1, 4)))
    return {
        "customer": rng.choice(catalog.customers),
        "warehouse": rng.choice(catalog.warehouses) if rng.random() < 0.6 else None,
        "promised_date": (today + dt.timedelta(days=rng.randint(2, 7))).isoformat(),
        "currency": catalog.currency,
        "ship_to": {
            "name": rng.choice(NAMES),
            "line1": f"{rng.randint(1, 199)} {rng.choice(STREETS)}",
            "city": city,
            "postal_code": f"{rng.randint(10000, 99999)}",
            "country": country,
        },
        "lines": [{"sku": s.sku, "quantity": rng.randint(1, 10), "unit_price": s.price} for s in skus],
    }
