"""The demo's external systems: the bundled simulator stands in for the ERP, the WMS and
the carrier. This step points the endpoints at it, gives the partners the secrets it
signs with, and writes the catalog it draws its orders from (customers in good standing,
SKUs with stock, the warehouses and carriers).

Idempotent, and run on every ``make demo``: rows that exist are left as they are (an
admin may have pointed an endpoint elsewhere or rotated a secret); the catalog is
written again from the database as it is now.
"""

import json
from decimal import Decimal
from pathlib import Path

from django.db import transaction
from django.db.models import Count, F, Min, Sum

from integrations.models import Endpoint, Partner, PartnerSecret
from orders.models import OPEN_FOR_CREDIT, Carrier, Customer, Inventory, Order, Product, Warehouse

SIMULATOR_URL = "http://127.0.0.1:8100"
PARTNER_SECRETS = {"wms": "demo-wms-secret", "carrier": "demo-carrier-secret"}
ENDPOINTS = ("erp", "wms", "carrier", "notify")
# Below the simulator's --timeout-seconds (5 s by default), so that its injected
# timeouts and lost responses end on the portal's side first.
ENDPOINT_TIMEOUT_SECONDS = 2.0
CATALOG_FILE = "simulator-catalog.json"

CATALOG_CUSTOMERS = 40  # in good standing: the simulator's orders pass the credit check
CATALOG_BLOCKED_CUSTOMERS = 1  # ... except this one's, which wait for finance
CATALOG_SKUS = 60  # with free stock at every warehouse
CATALOG_MIN_FREE = 40
CATALOG_MAX_PRICE = Decimal(500)  # four lines of ten stay below the release-approval threshold
CATALOG_OUT_OF_STOCK_SKUS = 2  # none anywhere: shortfalls, until a restock brings some


@transaction.atomic
def integrations_configure() -> list[str]:
    """The partners with the simulator's signing secrets and the endpoints at the simulator,
    where missing; returns what it created."""
    created = []
    for name, secret in PARTNER_SECRETS.items():
        partner, new_partner = Partner.objects.get_or_create(name=name)
        _, new_secret = PartnerSecret.objects.get_or_create(partner=partner, secret=secret)
        if new_partner or new_secret:
            created.append(f"partner {name}")
    for name in ENDPOINTS:
        _, new = Endpoint.objects.get_or_create(
            name=name,
            defaults={
                "base_url": SIMULATOR_URL,
                "token": f"demo-{name}-token",
                "timeout_seconds": ENDPOINT_TIMEOUT_SECONDS,
            },
        )
        if new:
            created.append(f"endpoint {name}")
    return created


def catalog_write(path: Path) -> str:
    """Write the simulator's catalog; returns a summary of what it holds."""
    document = simulator_catalog()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
    return f"{len(document['customers'])} customers, {len(document['skus'])} SKUs"


def integrations_ensure(catalog: Path) -> str:
    """Both of the above; a line for the console."""
    created = integrations_configure()
    holds = catalog_write(catalog)
    return (
        f"Integrations: endpoints {', '.join(ENDPOINTS)} at {SIMULATOR_URL} (the simulator) and partners "
        f"{', '.join(PARTNER_SECRETS)} are set up{' now' if created else ''}; "
        f"simulator catalog {catalog}: {holds}."
    )


def simulator_catalog() -> dict[str, object]:
    """What the simulator may order: ``integrations.simulator.config.load_catalog`` reads it."""
    warehouses = list(Warehouse.objects.values_list("code", flat=True))
    skus = _ample_skus(len(warehouses)) + list(
        Product.objects.exclude(inventory__on_hand__gt=0)
        .order_by("sku")
        .values_list("pk", flat=True)[:CATALOG_OUT_OF_STOCK_SKUS]
    )
    on_hand: dict[int, dict[str, int]] = {pk: dict.fromkeys(warehouses, 0) for pk in skus}
    for pk, warehouse, units in Inventory.objects.filter(product__in=skus).values_list(
        "product", "warehouse__code", "on_hand"
    ):
        on_hand[pk][warehouse] = units
    prices = dict(Product.objects.filter(pk__in=skus).values_list("pk", "price"))
    codes = dict(Product.objects.filter(pk__in=skus).values_list("pk", "sku"))
    return {
        "customers": _good_customers() + _blocked_customers(),
        "skus": [{"sku": codes[pk], "price": str(prices[pk]), "on_hand": on_hand[pk]} for pk in skus],
        "warehouses": warehouses,
        "carriers": list(Carrier.objects.values_list("code", flat=True)),
        "currency": "EUR",
    }


def _ample_skus(warehouses: int) -> list[int]:
    """SKUs with at least CATALOG_MIN_FREE units free at every warehouse, most free first."""
    stocked = (
        Inventory.objects.filter(product__price__lte=CATALOG_MAX_PRICE)
        .values("product")
        .annotate(free=Min(F("on_hand") - F("allocated")), sites=Count("pk"))
        .filter(free__gte=CATALOG_MIN_FREE, sites=warehouses)
        .order_by("-free", "product")
    )
    return [row["product"] for row in stocked[:CATALOG_SKUS]]


def _good_customers() -> list[str]:
    """Not blocked and with the most credit left after receivables and open orders."""
    open_orders = dict(
        Order.objects.filter(status__in=OPEN_FOR_CREDIT)
        .values("customer")
        .annotate(value=Sum("total"))
        .values_list("customer", "value")
    )
    headroom = sorted(
        (
            (limit - owed - open_orders.get(pk, Decimal(0)), code)
            for pk, code, limit, owed in Customer.objects.filter(credit_blocked=False).values_list(
                "pk", "code", "credit_limit", "open_receivables"
            )
        ),
        key=lambda room_code: (-room_code[0], room_code[1]),
    )
    return [code for _, code in headroom[:CATALOG_CUSTOMERS]]


def _blocked_customers() -> list[str]:
    blocked = Customer.objects.filter(credit_blocked=True).values_list("code", flat=True)
    return list(blocked[:CATALOG_BLOCKED_CUSTOMERS])
