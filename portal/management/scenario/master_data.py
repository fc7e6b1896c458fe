"""The distributor's master data: warehouses, carriers, customers, products and stock."""

import itertools
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.utils.text import slugify

from orders.models import Carrier, Customer, Inventory, Product, Tier, Warehouse

CENT = Decimal("0.01")

WAREHOUSES = (  # code, name, region, time zone, daily cut-off
    ("HAM", "Hamburg North DC", "north", "Europe/Berlin", time(17, 0)),
    ("BLQ", "Bologna South DC", "south", "Europe/Rome", time(15, 30)),
    ("MAN", "Manchester West DC", "west", "Europe/London", time(16, 0)),
    ("OTP", "Bucharest East DC", "east", "Europe/Bucharest", time(15, 0)),
)


@dataclass(frozen=True)
class CarrierSpec:
    code: str
    name: str
    tracking_prefix: str
    tracking_digits: int
    share: int

    def tracking(self, rng: random.Random) -> str:
        return f"{self.tracking_prefix}{rng.randrange(10**self.tracking_digits):0{self.tracking_digits}d}"


CARRIERS = (
    CarrierSpec("DHL", "DHL Freight", "JJD", 15, 35),
    CarrierSpec("DPD", "DPD", "0", 13, 30),
    CarrierSpec("UPS", "UPS", "1Z4E7", 11, 20),
    CarrierSpec("DSV", "DSV Road", "DSV", 10, 15),
)


@dataclass(frozen=True)
class Country:
    code: str
    region: str
    share: int
    roots: tuple[str, ...]
    trades: tuple[str, ...]
    legal: tuple[str, ...]
    cities: tuple[tuple[str, str], ...]  # city, postal code
    streets: tuple[str, ...]
    number_first: bool = False


COUNTRIES = (
    Country(
        "GB", "west", 14,
        ("Hartley", "Pennine", "Whitmore", "Calder", "Ashworth", "Brindley", "Thornton", "Holbrook"),
        ("Engineering", "Fabrications", "Packaging", "Plastics", "Process Systems", "Automation", "Foods"),
        ("Ltd", "Ltd", "plc"),
        (("Manchester", "M17 1AB"), ("Leeds", "LS10 1JQ"), ("Sheffield", "S9 2RX"), ("Birmingham", "B6 7AF")),
        ("Trafford Park Road", "Canal Street", "Mill Lane", "Station Road", "Dock Road"), number_first=True,
    ),
    Country(
        "IE", "west", 4, ("Doyle", "Kinsella", "Shannon", "Corrib", "Liffey"),
        ("Engineering", "Pharma Services", "Agri Machinery"), ("Ltd", "DAC"),
        (("Dublin", "D12 X9K3"), ("Cork", "T12 P2F8"), ("Limerick", "V94 K8D2")),
        ("Naas Road", "Harbour Road", "Industrial Estate"), number_first=True,
    ),
    Country(
        "DE", "north", 18,
        ("Keller", "Brandt", "Weser", "Hansen", "Albers", "Kröger", "Petersen", "Nordmann", "Vogt"),
        ("Maschinenbau", "Anlagenbau", "Metallbau", "Fördertechnik", "Antriebstechnik", "Kunststofftechnik"),
        ("GmbH", "GmbH & Co. KG", "AG"),
        (("Hamburg", "21107"), ("Bremen", "28197"), ("Hannover", "30179"), ("Kiel", "24145")),
        ("Industriestraße", "Hafenstraße", "Am Gewerbepark", "Werkstraße"),
    ),
    Country(
        "NL", "north", 6, ("Van Dijk", "De Vries", "Bakker", "Visser", "Smit"),
        ("Techniek", "Machinebouw", "Installatietechniek"), ("B.V.",),
        (("Rotterdam", "3089 JN"), ("Eindhoven", "5651 GH"), ("Groningen", "9723 JA")),
        ("Industrieweg", "Havenstraat", "Energieweg"),
    ),
    Country(
        "DK", "north", 3, ("Jensen", "Møller", "Nielsen", "Lund"), ("Maskinfabrik", "Teknik"), ("A/S", "ApS"),
        (("Aarhus", "8200"), ("Odense", "5220"), ("Esbjerg", "6705")), ("Industrivej", "Havnevej"),
    ),
    Country(
        "IT", "south", 14,
        ("Rossi", "Bianchi", "Ferrari", "Colombo", "Ricci", "Marino", "Greco", "Bruno", "Gallo", "Conti"),
        ("Meccanica", "Impianti", "Automazione", "Oleodinamica", "Carpenteria"), ("S.r.l.", "S.p.A."),
        (("Bologna", "40138"), ("Modena", "41122"), ("Parma", "43122"), ("Verona", "37135")),
        ("Via dell'Industria", "Via del Lavoro", "Via Emilia"),
    ),
    Country(
        "ES", "south", 7, ("García", "Martínez", "López", "Navarro", "Ibáñez"),
        ("Ingeniería", "Mecanizados", "Automatización"), ("S.L.", "S.A."),
        (("Valencia", "46015"), ("Zaragoza", "50014"), ("Bilbao", "48013")),
        ("Calle de la Industria", "Polígono Industrial Norte", "Avenida del Puerto"),
    ),
    Country(
        "PL", "east", 7, ("Kowalski", "Nowicki", "Wiśniewski", "Zieliński", "Lewandowski"),
        ("Maszyny", "Automatyka", "Konstrukcje"), ("Sp. z o.o.", "S.A."),
        (("Wrocław", "54-203"), ("Poznań", "61-131"), ("Łódź", "93-231")),
        ("ul. Przemysłowa", "ul. Fabryczna", "ul. Portowa"),
    ),
    Country(
        "RO", "east", 5, ("Popescu", "Ionescu", "Dumitru", "Stan"), ("Industrial", "Utilaje", "Automatizări"),
        ("S.R.L.", "S.A."), (("Bucharest", "077190"), ("Cluj-Napoca", "400604"), ("Timișoara", "300011")),
        ("Strada Industriilor", "Bulevardul Muncii"),
    ),
)  # fmt: skip

TIER_CREDIT = {
    Tier.STRATEGIC: (400_000, 1_500_000), Tier.KEY: (120_000, 400_000),
    Tier.STANDARD: (30_000, 120_000), Tier.SMALL: (8_000, 30_000),
}  # fmt: skip
TIER_SHARE_OF_CUSTOMERS = {Tier.STRATEGIC: 6, Tier.KEY: 16, Tier.STANDARD: 48, Tier.SMALL: 30}
BLOCKED_SHARE = 1 / 33
NEAR_LIMIT_SHARE = 0.08


@dataclass(frozen=True)
class Family:
    prefix: str
    template: str
    options: tuple[tuple[str, ...], ...]  # later values cost more
    price: tuple[float, float]
    lead_days: tuple[int, int]


FAMILIES = (
    Family("BRG", "Deep groove ball bearing {}{}{}",
           (("60", "62", "63"), tuple(f"{i:02d}" for i in range(13)), ("", "-ZZ", "-2RS")),
           (2.4, 96), (5, 21)),
    Family("HXB", "Hex bolt DIN 933 M{}x{} mm, {}, box of 100",
           (("6", "8", "10", "12", "16"), ("20", "30", "40", "50", "60"),
            ("8.8 zinc plated", "A2 stainless")), (7.5, 120), (3, 10)),
    Family("SCS", "Socket cap screw DIN 912 M{}x{} mm, 12.9, box of 100",
           (("4", "5", "6", "8", "10"), ("12", "16", "20", "30", "40")), (6, 85), (3, 10)),
    Family("HXN", "Hex nut DIN 934 M{}, {}, box of 200",
           (("5", "6", "8", "10", "12", "16"), ("8 zinc plated", "A2 stainless")), (4, 60), (3, 10)),
    Family("HYH", "Hydraulic hose {} {}, {} m",
           (('1/4"', '3/8"', '1/2"', '3/4"', '1"'), ("1SN", "2SN", "4SP"), ("5", "10", "25")),
           (22, 480), (7, 21)),
    Family("PNC", "Pneumatic cylinder ISO 15552 Ø{}x{} mm",
           (("32", "40", "50", "63", "80", "100"), ("50", "100", "160", "200", "320")), (58, 460), (10, 28)),
    Family("CTR", "Contactor 3P {} A, coil {}",
           (("9", "12", "18", "25", "32", "40", "65"), ("24 V DC", "230 V AC")), (19, 185), (5, 14)),
    Family("MCB", "Miniature circuit breaker {}P C{} A",
           (("1", "3"), ("6", "10", "16", "20", "25", "32", "40", "63")), (6, 75), (3, 10)),
    Family("MOT", "IE3 motor {} kW {}-pole, B3 foot mount",
           (("0.75", "1.1", "1.5", "2.2", "3", "4", "5.5", "7.5", "11", "15"), ("2", "4")),
           (180, 2450), (14, 42)),
    Family("VBT", "V-belt {} {} mm",
           (("SPZ", "SPA", "SPB"), ("1000", "1250", "1500", "1800", "2000", "2500")), (6, 48), (5, 14)),
    Family("DRL", "HSS-Co twist drill DIN 338 Ø{} mm, pack of 10",
           (("2", "3", "3.5", "4", "4.5", "5", "5.5", "6", "6.5", "8", "8.5", "10", "12"),),
           (9, 140), (3, 10)),
    Family("ABR", "Flap disc {} mm P{}, pack of 10",
           (("115", "125"), ("40", "60", "80", "120")), (28, 65), (3, 10)),
    Family("GLV", "{} work gloves size {}, pack of 12",
           (("Nitrile-coated", "Cut-resistant level C"), ("7", "8", "9", "10", "11")), (14, 68), (3, 10)),
    Family("GRS", "Lithium grease EP2, {}",
           (("400 g cartridge", "1 kg tin", "5 kg pail", "18 kg pail"),), (6, 140), (5, 14)),
    Family("HYO", "Hydraulic oil HLP {}, {}",
           (("32", "46", "68"), ("20 l canister", "208 l drum")), (70, 900), (5, 14)),
    Family("GRO", "Gear oil CLP {}, {}",
           (("150", "220", "320"), ("20 l canister", "208 l drum")), (90, 1100), (5, 14)),
    Family("ORG", "O-ring NBR 70 {}x{} mm, pack of 50",
           (("10", "12", "16", "20", "25", "30", "40", "50"), ("1.5", "2", "2.5", "3")), (3.9, 29), (5, 14)),
    Family("BVL", "Ball valve {} {} PN{}",
           (('1/2"', '3/4"', '1"', '1 1/4"', '1 1/2"', '2"'), ("brass", "stainless 316"), ("25", "40")),
           (9, 310), (7, 21)),
    Family("CHN", "Roller chain {} simplex, 5 m",
           (("06B-1", "08B-1", "10B-1", "12B-1", "16B-1"),), (28, 190), (7, 21)),
    Family("SPR", "Sprocket {} z{}",
           (("06B-1", "08B-1", "10B-1", "12B-1", "16B-1"), ("12", "15", "19", "25")), (11, 120), (10, 28)),
    Family("CBL", "Control cable {}G{} mm², {} m drum",
           (("3", "5", "7", "12"), ("0.75", "1.5", "2.5"), ("50", "100")), (45, 980), (5, 14)),
    Family("SNS", "Inductive proximity sensor M{} PNP NO, {}",
           (("8", "12", "18", "30"), ("flush", "non-flush")), (24, 95), (7, 21)),
    Family("LGR", "Linear guide rail size {}, {} mm",
           (("15", "20", "25", "30", "35"), ("500", "1000", "2000")), (60, 620), (14, 35)),
    Family("LGC", "Linear guide carriage size {}, {}",
           (("15", "20", "25", "30", "35"), ("narrow", "flanged")), (45, 260), (14, 35)),
    Family("SAF", "{}",
           (("Safety goggles EN 166, anti-fog", "Ear defenders SNR 30 dB", "Hard hat EN 397, white",
             "FFP2 respirator masks, box of 20", "Hi-vis vest EN ISO 20471, size L",
             "Safety shoes S3, size 42", "Safety shoes S3, size 44", "First aid kit DIN 13157"),),
           (4, 90), (3, 10)),
    Family("JCP", "Jaw coupling size {}, bore Ø{} mm",
           (("19", "24", "28", "38"), ("14", "19", "24")), (18, 95), (7, 21)),
)  # fmt: skip
OUT_EVERYWHERE_SHARE = 1 / 40  # SKUs waiting for the supplier: backorders and shortfalls
OUT_AT_WAREHOUSE_SHARE = 0.08
SCARCE_SHARE = 0.12
MAX_POPULARITY = 20.0


def money(value: float) -> Decimal:
    return Decimal(value).quantize(CENT)


def warehouses_ensure() -> list[Warehouse]:
    return [
        Warehouse.objects.get_or_create(
            code=code, defaults={"name": name, "region": region, "time_zone": tz, "cutoff_time": cutoff}
        )[0]
        for code, name, region, tz, cutoff in WAREHOUSES
    ]


def carriers_ensure() -> dict[str, Carrier]:
    return {
        c.code: Carrier.objects.get_or_create(code=c.code, defaults={"name": c.name})[0] for c in CARRIERS
    }


@dataclass
class Catalogue:
    """Products, their popularity, and which warehouse can supply what."""

    products: list[Product]
    popularity: list[float]
    out_everywhere: list[int]  # product indexes with no stock anywhere
    out_at: dict[int, set[int]]  # warehouse id -> product indexes out of stock there
    in_stock: dict[int | None, tuple[list[int], list[float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for wh_id, out in [*self.out_at.items(), (None, set())]:
            indexes = [i for i in range(len(self.products)) if i not in out]
            self.in_stock[wh_id] = (indexes, list(itertools.accumulate(self.popularity[i] for i in indexes)))

    def pick(self, rng: random.Random, wh_id: int | None, count: int) -> list[int]:
        """Distinct products, popular ones more often; in stock at the warehouse if one is given."""
        indexes, cum = self.in_stock[wh_id]
        chosen: dict[int, None] = {}
        while len(chosen) < count:
            chosen.update(dict.fromkeys(rng.choices(indexes, cum_weights=cum, k=count)))
        return list(chosen)[:count]

    def pick_missing(self, rng: random.Random, count: int) -> list[int]:
        return rng.sample(self.out_everywhere, min(count, len(self.out_everywhere)))


def _products(rng: random.Random, now: datetime) -> list[Product]:
    products = []
    for family in FAMILIES:
        lo, hi = family.price
        for n, combo in enumerate(itertools.product(*(enumerate(o) for o in family.options)), start=1):
            rank = sum(i / max(len(o) - 1, 1) for (i, _), o in zip(combo, family.options, strict=True))
            price = money(lo * (hi / lo) ** (rank / len(combo)) * rng.uniform(0.92, 1.08))
            products.append(
                Product(
                    sku=f"{family.prefix}-{10000 + n}",
                    description=family.template.format(*(value for _, value in combo)),
                    price=price,
                    cost=money(float(price) * rng.uniform(0.55, 0.78)),
                    lead_time_days=rng.randint(*family.lead_days),
                    created_at=now - timedelta(days=rng.randint(400, 2500)),
                )
            )
    return products


def catalogue_create(rng: random.Random, warehouses: list[Warehouse], now: datetime) -> Catalogue:
    products = Product.objects.bulk_create(_products(rng, now), batch_size=500)
    indexes = range(len(products))
    out_everywhere = rng.sample(indexes, max(8, round(len(products) * OUT_EVERYWHERE_SHARE)))
    out_at = {
        wh.pk: set(out_everywhere) | {i for i in indexes if rng.random() < OUT_AT_WAREHOUSE_SHARE}
        for wh in warehouses
    }
    popularity = [min(rng.paretovariate(1.5), MAX_POPULARITY) for _ in indexes]  # a few fast movers
    return Catalogue(products, popularity, out_everywhere, out_at)


def inventory_create(
    rng: random.Random,
    catalogue: Catalogue,
    warehouses: list[Warehouse],
    reserved: Counter[tuple[int, int]],
    now: datetime,
) -> int:
    """Stock on hand: what open orders reserve plus free stock, scarce or none for some SKUs."""
    rows = []
    for wh in warehouses:
        for i, product in enumerate(catalogue.products):
            if i in catalogue.out_at[wh.pk]:
                free = 0
            elif rng.random() < SCARCE_SHARE:
                free = rng.randint(0, 5)
            else:
                free = int(rng.uniform(10, 80) * catalogue.popularity[i])
            allocated = reserved[(wh.pk, i)]
            rows.append(
                Inventory(
                    warehouse=wh, product=product, on_hand=allocated + free, allocated=allocated,
                    counted_at=now - timedelta(minutes=rng.uniform(5, 360)),
                )
            )  # fmt: skip
    return len(Inventory.objects.bulk_create(rows, batch_size=500))


@dataclass(frozen=True)
class Site:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str


@dataclass
class CustomerBook:
    """Customers and their delivery sites. Orders are drafted against the unsaved customers;
    ``save`` then gives each a credit limit that carries its open orders and writes them."""

    customers: list[Customer]
    sites: dict[str, list[Site]]  # by customer code
    region: dict[str, str]  # by customer code
    near_limit: set[str]  # customer codes owing about their whole limit
    in_good_standing: dict[tuple[str, str], list[Customer]] = field(default_factory=dict)  # (tier, region)
    risky: list[Customer] = field(default_factory=list)

    def __post_init__(self) -> None:
        for c in self.customers:
            if c.credit_blocked or c.code in self.near_limit:
                self.risky.append(c)
                continue
            for key in ((c.tier, self.region[c.code]), (c.tier, ""), ("", "")):
                self.in_good_standing.setdefault(key, []).append(c)

    def choose(self, rng: random.Random, credit: str, tier: str, region: str) -> Customer:
        """A customer of the tier, near the warehouse if possible, who fails the credit check
        if the order's history says so ("fail") and passes it otherwise."""
        if credit == "fail":
            return rng.choice([c for c in self.risky if c.tier == tier] or self.risky)
        key = next(k for k in ((tier, region), (tier, ""), ("", "")) if k in self.in_good_standing)
        return rng.choice(self.in_good_standing[key])

    def save(self, rng: random.Random, needs: dict[str, Decimal]) -> None:
        """Credit limits and open receivables, then write the customers.

        ``needs`` is what each customer's orders take from its credit: the open orders, or
        the largest order if that is more. Customers in good standing get a limit with
        room for it; blocked ones and those near their limit owe about all of theirs.
        """
        for c in self.customers:
            tier_limit = rng.uniform(*TIER_CREDIT[c.tier])
            if c.credit_blocked or c.code in self.near_limit:
                owed = rng.uniform(0.7, 1.25) if c.credit_blocked else rng.uniform(0.86, 1.02)
                limit = tier_limit
            else:
                owed = rng.uniform(0.05, 0.6)
                limit = max(tier_limit, float(needs.get(c.code, 0)) * rng.uniform(1.25, 1.6) / (1 - owed))
            c.credit_limit = Decimal(math.ceil(limit / 1000) * 1000)
            c.open_receivables = money(float(c.credit_limit) * owed)
        Customer.objects.bulk_create(self.customers, batch_size=500)


def _company(rng: random.Random, country: Country, used: set[str]) -> tuple[str, str]:
    """A company name not used yet, and its e-mail domain."""
    root, trade, legal = rng.choice(country.roots), rng.choice(country.trades), rng.choice(country.legal)
    candidates = (
        f"{root} {trade}",
        f"{root} {trade} {rng.choice(country.cities)[0]}",
        f"{root} & {rng.choice(country.roots)} {trade}",
        f"{root} {trade} {len(used)}",
    )
    firm = next(f for f in candidates if f"{f} {legal}" not in used)
    used.add(f"{firm} {legal}")
    return f"{firm} {legal}", f"{slugify(firm)}.example"


def _sites(rng: random.Random, country: Country, name: str) -> list[Site]:
    sites = []
    for n in range(rng.choice((1, 1, 1, 2, 3))):
        city, postal_code = rng.choice(country.cities)
        street, number = rng.choice(country.streets), rng.randint(1, 180)
        line1 = f"{number} {street}" if country.number_first else f"{street} {number}"
        dock = "Goods In" if n == 0 else f"Plant {n + 1}"
        sites.append(Site(f"{name}, {dock}", line1, city, postal_code, country.code))
    return sites


def customer_book(rng: random.Random, count: int, now: datetime) -> CustomerBook:
    """Unsaved customers of every tier in every region, a few blocked, some near their limit."""
    countries = rng.choices(COUNTRIES, [c.share for c in COUNTRIES], k=count)
    tiers, tier_shares = list(TIER_SHARE_OF_CUSTOMERS), list(TIER_SHARE_OF_CUSTOMERS.values())
    blocked = set(rng.sample(range(1, count + 1), max(3, round(count * BLOCKED_SHARE))))
    used: set[str] = set()
    customers, sites, near_limit = [], {}, set()
    for n, country in enumerate(countries, start=1):
        name, domain = _company(rng, country, used)
        customer = Customer(
            code=f"C{n:05d}", name=name, tier=rng.choices(tiers, tier_shares)[0],
            email=f"purchasing@{domain}", credit_blocked=n in blocked,
            created_at=now - timedelta(days=rng.randint(200, 3000)),
        )  # fmt: skip
        customers.append(customer)
        sites[customer.code] = _sites(rng, country, name)
        if n not in blocked and rng.random() < NEAR_LIMIT_SHARE:
            near_limit.add(customer.code)
    region = {c.code: country.region for c, country in zip(customers, countries, strict=True)}
    return CustomerBook(customers, sites, region, near_limit)
