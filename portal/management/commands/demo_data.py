import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from tqdm import tqdm

from approvals import services as approval_services
from fulfillment.core import clock
from orders.models import Customer, Order, Product
from portal.demo import demo_users_ensure, print_logins
from portal.management.scenario import integrations, lifecycle, master_data, work
from portal.management.scenario.orders import OrderMaker

CHUNK = 2000  # orders generated and written per round
ORDERS_PER_CUSTOMER = 250
MIN_CUSTOMERS = 120


class Command(BaseCommand):
    help = (
        "Load the demo distributor scenario into an empty database: warehouses, carriers, customers, "
        "products with stock, demo users for every role, orders in every state with their history, "
        "and the work items they call for. Also points the integrations at the bundled simulator and "
        "writes its catalog (that part on every run, also with --if-empty on a database with data)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=3000, help="How many orders (default 3000).")
        parser.add_argument("--seed", type=int, default=1, help="Random seed: the same seed, the same data.")
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Load no data if the database holds orders already (the integrations are still set up).",
        )
        parser.add_argument(
            "--catalog",
            type=Path,
            default=settings.VAR_DIR / integrations.CATALOG_FILE,
            help="Where to write the simulator's catalog (default: %(default)s).",
        )

    def handle(
        self, *args: Any, orders: int, seed: int, if_empty: bool, catalog: Path, **options: Any
    ) -> None:
        if orders < 0:
            raise CommandError("--orders must not be negative.")
        if found := self._existing_data():
            if if_empty:
                self.stdout.write(f"The database holds {found} already: demo data not loaded.")
                self.stdout.write(integrations.integrations_ensure(catalog))
                print_logins(self.stdout)
                return
            raise CommandError(
                f"The database holds {found} already; demo data goes into a fresh database only. "
                "Point DATABASE_URL at a new database (or remove var/portal.sqlite3) and run migrate first."
            )
        lifecycle.check_tables(lifecycle.machine_moves())
        started = time.perf_counter()
        with transaction.atomic():
            written = self._build(random.Random(seed), orders, show_progress=options["verbosity"] > 0)
        summary = ", ".join(f"{n} {name}" for name, n in written.items())
        self.stdout.write(f"Demo data built in {time.perf_counter() - started:.1f} s: {summary}.")
        self.stdout.write(integrations.integrations_ensure(catalog))
        print_logins(self.stdout)

    @staticmethod
    def _existing_data() -> str:
        counts = {
            model._meta.verbose_name_plural: model.objects.count() for model in (Order, Customer, Product)
        }
        return ", ".join(f"{n} {name}" for name, n in counts.items() if n)

    def _build(self, rng: random.Random, count: int, *, show_progress: bool) -> Counter[str]:
        now = clock.now()
        users = demo_users_ensure()
        warehouses = master_data.warehouses_ensure()
        carriers = master_data.carriers_ensure()
        catalogue = master_data.catalogue_create(rng, warehouses, now)
        book = master_data.customer_book(rng, max(MIN_CUSTOMERS, count // ORDERS_PER_CUSTOMER), now)
        high_value = approval_services.high_value_threshold() or lifecycle.DEFAULT_HIGH_VALUE
        maker = OrderMaker(rng, now, catalogue, book, warehouses, carriers, users, high_value)
        drafts = [
            maker.draft(plan, seq) for seq, plan in enumerate(lifecycle.plans(rng, count, now), start=1)
        ]
        book.save(rng, maker.credit_needs())
        written = Counter({"customers": len(book.customers), "products": len(catalogue.products)})
        with tqdm(total=count, unit="order", disable=not show_progress) as progress:
            for start in range(0, count, CHUNK):
                for draft in drafts[start : start + CHUNK]:
                    maker.write(draft)
                written.update(maker.tables.write())
                progress.update(min(CHUNK, count - start))
        maker.tables.finish()
        written["inventory rows"] = master_data.inventory_create(
            rng, catalogue, warehouses, maker.reserved, now
        )
        integrations.integrations_configure()  # the failed WMS events need their partner
        written.update(work.work_items_open(users=users))
        return written
