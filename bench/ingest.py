"""Measure 1, ingest: orders through the ERP's bulk path against raw ``executemany`` of the
same rows into scratch tables of the same shape (same columns, defaults, checks, indexes
and foreign keys), in batches of the same size, one transaction per batch."""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import psycopg

from bench import dataset, workers
from bench.config import Catalogue
from bench.database import connect
from bench.workers import Ready
from orders.services import OrderImport

SCRATCH = {
    "orders_order": "raw_order",
    "orders_orderline": "raw_orderline",
    "orders_ordertransition": "raw_ordertransition",
}
ORDER_COLUMNS = (
    "created_at", "updated_at", "external_id", "customer_id", "warehouse_id", "status", "held_from",
    "status_changed_at", "promised_date", "currency", "total", "ship_to_name", "ship_to_line1",
    "ship_to_city", "ship_to_postal_code", "ship_to_country",
)  # fmt: skip
LINE_COLUMNS = (
    "order_id",
    "line_no",
    "product_id",
    "quantity",
    "unit_price",
    "allocated_quantity",
    "shipped_quantity",
)
TRANSITION_COLUMNS = (
    "order_id",
    "transition",
    "from_state",
    "to_state",
    "actor_system",
    "reason",
    "data",
    "at",
)


def _insert(table: str, columns: tuple[str, ...], returning: bool = False) -> str:
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    return sql + (" RETURNING id" if returning else "")


def scratch_tables(url: str) -> None:
    """Empty copies of the order tables with the same defaults, checks, indexes and keys."""
    with connect(url) as conn:
        for source, copy in SCRATCH.items():
            conn.execute(f"DROP TABLE IF EXISTS {copy} CASCADE")
            conn.execute(f"CREATE TABLE {copy} (LIKE {source} INCLUDING ALL)")
        for table, column, target in (
            ("raw_order", "customer_id", "orders_customer"),
            ("raw_order", "warehouse_id", "orders_warehouse"),
            ("raw_orderline", "order_id", "raw_order"),
            ("raw_orderline", "product_id", "orders_product"),
            ("raw_ordertransition", "order_id", "raw_order"),
        ):
            conn.execute(
                f"ALTER TABLE {table} ADD FOREIGN KEY ({column}) REFERENCES {target} (id) "
                "DEFERRABLE INITIALLY DEFERRED"
            )


def drop_scratch_tables(url: str) -> None:
    with connect(url) as conn:
        for copy in SCRATCH.values():
            conn.execute(f"DROP TABLE IF EXISTS {copy} CASCADE")


class RawIngest:
    """The baseline: what a hand-written loader does with the same rows, nothing more."""

    def __init__(self, url: str) -> None:
        self.conn = connect(url, autocommit=False)
        self.customers = dict(self.conn.execute("SELECT code, id FROM orders_customer").fetchall())
        self.warehouses = dict(self.conn.execute("SELECT code, id FROM orders_warehouse").fetchall())
        self.products = dict(self.conn.execute("SELECT sku, id FROM orders_product").fetchall())
        self.conn.commit()
        self.seconds = 0.0
        self.rows = 0

    def close(self) -> None:
        self.conn.close()

    def load(self, batches: Iterator[list[OrderImport]], received_at: datetime) -> None:
        for batch in batches:
            started = time.perf_counter()
            self._batch(batch, received_at)
            self.seconds += time.perf_counter() - started

    def _batch(self, batch: list[OrderImport], at: datetime) -> None:
        order_params = [
            (
                at, at, row.external_id, self.customers[row.customer_code],
                self.warehouses[row.warehouse_code] if row.warehouse_code else None,
                "received", "", at, row.promised_date, row.currency,
                sum(line.unit_price * line.quantity for line in row.lines),
                row.ship_to.name, row.ship_to.line1, row.ship_to.city, row.ship_to.postal_code,
                row.ship_to.country,
            )
            for row in batch
        ]  # fmt: skip
        with self.conn.cursor() as cur:
            cur.executemany(_insert("raw_order", ORDER_COLUMNS, returning=True), order_params, returning=True)
            ids = []
            while True:
                ids.append(cur.fetchone()[0])
                if not cur.nextset():
                    break
            lines = [
                (order_id, n, self.products[line.sku], line.quantity, line.unit_price, 0, 0)
                for order_id, row in zip(ids, batch, strict=True)
                for n, line in enumerate(row.lines, start=1)
            ]
            cur.executemany(_insert("raw_orderline", LINE_COLUMNS), lines)
            transitions = [
                (order_id, "receive", "", "received", "erp", "", psycopg.types.json.Jsonb({}), at)
                for order_id in ids
            ]
            cur.executemany(_insert("raw_ordertransition", TRANSITION_COLUMNS), transitions)
        self.conn.commit()
        self.rows += 2 * len(batch) + len(lines)


class ProjectIngest:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.rows = 0
        self.orders = 0

    def load(self, batches: Iterator[list[OrderImport]], received_at: datetime) -> None:
        """The row generation is not timed: the batches are made before each call."""
        for batch in batches:
            started = time.perf_counter()
            orders, rows = dataset.import_orders(iter([batch]), received_at)
            self.seconds += time.perf_counter() - started
            self.orders += orders
            self.rows += rows


def _starts(first: int, count: int, batch: int) -> list[int]:
    return list(range(first, first + count, batch))


def project_loader(
    catalogue: Catalogue,
    starts: list[int],
    end: int,
    batch: int,
    anchor: datetime,
    at: datetime,
    *,
    ready: Ready,
) -> dict[str, float]:
    loader = ProjectIngest()
    ready()
    loader.load((dataset.order_rows(catalogue, s, min(batch, end - s), anchor) for s in starts), at)
    return {"rows": loader.rows, "orders": loader.orders, "seconds": loader.seconds}


def raw_loader(
    url: str,
    catalogue: Catalogue,
    starts: list[int],
    end: int,
    batch: int,
    anchor: datetime,
    at: datetime,
    *,
    ready: Ready,
) -> dict[str, float]:
    loader = RawIngest(url)
    ready()
    try:
        loader.load((dataset.order_rows(catalogue, s, min(batch, end - s), anchor) for s in starts), at)
    finally:
        loader.close()
    return {"rows": loader.rows, "orders": 0, "seconds": loader.seconds}


@dataclass
class Totals:
    rows: int = 0
    orders: int = 0
    seconds: float = 0.0

    def add(self, results: list[dict[str, float]]) -> None:
        """Loaders run side by side: the phase took as long as the slowest one's inserts."""
        self.rows += int(sum(r["rows"] for r in results))
        self.orders += int(sum(r["orders"] for r in results))
        self.seconds += max(r["seconds"] for r in results)

    @property
    def rows_per_s(self) -> float:
        return round(self.rows / self.seconds, 1) if self.seconds else 0.0


def load(
    *,
    url: str | None,
    catalogue: Catalogue,
    first: int,
    count: int,
    batch: int,
    loaders: int,
    anchor: datetime,
    at: datetime,
    totals: Totals,
) -> None:
    """Orders ``first`` .. ``first + count - 1`` by ``loaders`` processes side by side: the
    project's bulk path, or with ``url`` the raw baseline."""
    starts = _starts(first, count, batch)
    end = first + count
    parts = [starts[i::loaders] for i in range(loaders)]
    if url is None:
        args = [(catalogue, part, end, batch, anchor, at) for part in parts if part]
        results, _ = workers.run("bench.ingest.project_loader", args, timeout=3600)
    else:
        args = [(url, catalogue, part, end, batch, anchor, at) for part in parts if part]
        results, _ = workers.run("bench.ingest.raw_loader", args, timeout=3600)
    totals.add(results)
