"""``python -m bench --scale small|full [--only MEASURE ...]``: see ``bench/__init__.py``."""

import argparse
import os
import sys
import time
from datetime import timedelta
from typing import Any

import psutil

from bench import database
from bench.config import MEASURES, SCALES, Scale

LOADERS = 2  # ERP loaders side by side, for the project and for the raw baseline alike


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument(
        "--only", choices=MEASURES, action="append", help="run only this measure (repeatable)"
    )
    return parser.parse_args(argv)


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def log(message: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> None:
    args = parse(argv)
    scale = SCALES[args.scale]
    only = set(args.only or MEASURES)
    started = time.perf_counter()
    url = database.bench_url()
    measures = ", ".join(m for m in MEASURES if m in only)
    log(f"scale {scale.name}: database {database.NAME}, measures {measures}")
    database.recreate(url)
    setup_django(url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    run = Run(scale, only, url)
    run.go()
    seconds = round(time.perf_counter() - started)
    run.report.emit("run", seconds=seconds, load_average=[round(n, 2) for n in psutil.getloadavg()])
    log(f"done in {seconds} s")


class Run:
    def __init__(self, scale: Scale, only: set[str], url: str) -> None:
        from django.utils import timezone

        from bench.memory import Sampler
        from bench.report import Report, machine

        self.scale, self.only, self.url = scale, only, url
        self.report = Report(scale.name)
        self.report.emit("machine", scale=scale.name, **machine(database.version(url)))
        self.anchor = timezone.now().replace(microsecond=0)
        self.sampler = Sampler()
        self.server: Any = None
        self.session: Any = None

    def go(self) -> None:
        from bench import dataset, ingest

        s = self.scale
        self.catalogue = dataset.master_data(customers=s.customers, products=s.products, planners=s.planners)
        self.sampler.start()
        if "ingest" in self.only:
            ingest.scratch_tables(self.url)
        self.project_totals, self.raw_totals = ingest.Totals(), ingest.Totals()
        try:
            loaded = 0
            for phase, (orders, items) in enumerate(zip(s.orders, s.items, strict=True)):
                self.phase(phase, first=loaded + 1, count=orders - loaded, items=items)
                loaded = orders
            self.after_phases()
        finally:
            if self.server is not None:
                self.server.stop()
            self.sampler.stop()
            ingest.drop_scratch_tables(self.url)

    def phase(self, phase: int, *, first: int, count: int, items: int) -> None:
        from bench import dataset, ingest
        from fulfillment.core.models import WorkItem

        s = self.scale
        moment = dataset.sweep_moment(self.anchor, phase)
        received = moment - dataset.RECEIVED_BEFORE
        log(f"phase {phase}: importing {count:,} orders")
        ingest.load(
            url=None, catalogue=self.catalogue, first=first, count=count, batch=s.batch, loaders=LOADERS,
            anchor=self.anchor, at=received, totals=self.project_totals,
        )  # fmt: skip
        if "ingest" in self.only:
            log(f"phase {phase}: raw baseline of the same {count:,} orders")
            ingest.load(
                url=self.url, catalogue=self.catalogue, first=first, count=count, batch=s.batch,
                loaders=LOADERS, anchor=self.anchor, at=received, totals=self.raw_totals,
            )  # fmt: skip
        wanted = items - WorkItem.objects.filter(state="open").count()
        log(f"phase {phase}: opening {wanted:,} work items")
        fresh = moment - dataset.FRESH_ITEMS[0], moment - dataset.FRESH_ITEMS[1]
        dataset.open_items(orders=dataset.order_ids(first, count)[:wanted], created_between=fresh, seed=phase)
        if "sweeps" in self.only:
            self.sweep_data(phase, moment, first, count)
        database.vacuum_analyze(self.url)
        if "sweeps" in self.only:
            self.sweeps(phase, moment)
        if "queue_page" in self.only:
            self.queue_page(phase)

    def sweep_data(self, phase: int, moment: Any, first: int, count: int) -> None:
        """The work the sweeps find, the same at every size: aged items and stalled orders."""
        from bench import dataset

        s = self.scale
        if phase == 0:
            dataset.escalation_rules(s.rules)
        aged = moment - dataset.AGED_BEFORE
        dataset.open_items(
            orders=dataset.order_ids(first + 1, count - 1)[: s.aged_items],
            created_between=(aged, aged + timedelta(hours=6)),
            seed=100 + phase,
            promised_shift=-timedelta(days=32),
        )
        stalled_first = 50_000_000 + phase * 100_000
        dataset.import_orders(
            dataset.order_batches(self.catalogue, stalled_first, s.stalled_orders, s.batch, self.anchor), aged
        )

    def ensure_server(self) -> None:
        from bench import dataset
        from bench.relay import free_port
        from bench.web import Server, login

        if self.server is None:
            self.server = Server(self.url, free_port())
            self.sampler.watch("web", self.server.process.pid)
            self.session = login(self.server.base, self.catalogue.planners[-1], dataset.PASSWORD)

    def sweeps(self, phase: int, moment: Any) -> None:
        from bench import sweeps

        log(f"phase {phase}: sweeps")
        self.report.emit("sweeps", size=phase, **sweeps.measure(self.url, moment))

    def queue_page(self, phase: int) -> None:
        from bench import web
        from orders.models import Order

        self.ensure_server()
        log(f"phase {phase}: queue page")
        figures = web.queue_page(self.server, self.session, self.url, self.scale.page_requests)
        self.report.emit("queue_page", orders=Order.objects.count(), **figures)

    def after_phases(self) -> None:
        from bench import claim, dataset, relay, web

        s = self.scale
        if "ingest" in self.only:
            p, r = self.project_totals, self.raw_totals
            self.report.emit(
                "ingest",
                orders=p.orders,
                loaders=LOADERS,
                project={"rows": p.rows, "seconds": round(p.seconds, 1), "rows_per_s": p.rows_per_s},
                raw={"rows": r.rows, "seconds": round(r.seconds, 1), "rows_per_s": r.rows_per_s},
                ratio=round(p.rows_per_s / r.rows_per_s, 3) if r.rows_per_s else None,
            )
        if "api" in self.only:
            self.ensure_server()
            log("order API")
            self.report.emit(
                "api", **web.order_api(self.server, self.url, self.catalogue.planners[-1], s.api_requests)
            )
        if "claim" in self.only:
            log("claim next")
            for line in claim.measure(self.url, self.catalogue.planners, s.claimers, s.claim_seconds):
                self.report.emit("claim", **line)
        if "webhook" in self.only:
            self.ensure_server()
            log("webhooks")
            self.report.emit(
                "webhook",
                **web.webhooks(self.server, self.url, dataset.WMS_SECRET, s.webhooks, s.webhook_senders),
            )
        if "relay" in self.only:
            log("outbox relay")
            simulator = relay.Simulator("http://127.0.0.1:9")
            try:
                dataset.endpoints(simulator.url)
                drained = relay.drain(self.url, simulator, s.relay_drain)
                env = relay.worker_env(web.web_env(self.url))
                steady = relay.steady(
                    env, s.relay_rate, s.relay_seconds, lambda pid: self.sampler.watch("background", pid)
                )
            finally:
                simulator.stop()
            self.report.emit("relay", drain=drained, steady=steady)
        if "memory" in self.only:
            from bench.memory import baseline_rss_mb

            self.report.emit("memory", **self.sampler.figures(), raw_process_rss_mb=baseline_rss_mb(self.url))


if __name__ == "__main__":
    main(sys.argv[1:])
