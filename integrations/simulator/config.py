"""The simulator's settings (CLI flags, ``SIM_*`` environment variables, ``POST /_config``)
and its catalog of customers, SKUs, warehouses and carriers."""

import argparse
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting or a catalog that cannot be used."""


def _setting(default: Any, help: str, *, kind: type | None = None, runtime: bool = True) -> Any:
    """A config field: ``kind`` parses it when the default is None; ``runtime`` fields
    can be changed through ``POST /_config``."""
    return field(default=default, metadata={"help": help, "kind": kind or type(default), "runtime": runtime})


RATES = (
    "error_rate",
    "timeout_rate",
    "lost_response_rate",
    "duplicate_rate",
    "reorder_rate",
    "booking_failure_rate",
    "short_pick_rate",
)


@dataclass(frozen=True)
class Config:
    host: str = _setting("127.0.0.1", "address to listen on", runtime=False)
    port: int = _setting(8100, "port to listen on (0 picks a free one)", runtime=False)
    portal_url: str = _setting("http://127.0.0.1:8000", "where webhooks are sent")
    wms_secret: str = _setting("demo-wms-secret", "HMAC secret of the WMS webhooks")
    carrier_secret: str = _setting("demo-carrier-secret", "HMAC secret of the carrier webhooks")
    latency_ms: int = _setting(0, "added to every ERP/WMS/carrier response")
    error_rate: float = _setting(0.0, "probability of an injected 503 (nothing applied)")
    timeout_rate: float = _setting(0.0, "probability of a timeout: wait, then 504, nothing applied")
    lost_response_rate: float = _setting(0.0, "probability of a lost response: applied, then wait")
    timeout_seconds: float = _setting(5.0, "how long timeouts and lost responses hang")
    duplicate_rate: float = _setting(0.0, "probability that a webhook is sent twice (same id)")
    reorder_rate: float = _setting(0.0, "probability that two consecutive webhooks are swapped")
    booking_failure_rate: float = _setting(0.05, "probability that a carrier booking is refused (422)")
    short_pick_rate: float = _setting(0.05, "probability that a release is picked short on one line")
    time_scale: float = _setting(1.0, "multiplies the WMS/carrier delays (0.01 = 100 times faster)")
    order_rate: float = _setting(0.0, "new ERP orders per minute (0 = none)")
    restock_interval: float = _setting(0.0, "seconds between inventory.adjusted restocks (0 = off)")
    callback_attempts: int = _setting(6, "attempts per webhook before giving up")
    callback_backoff: float = _setting(1.0, "first retry delay of a webhook in seconds (doubles)")
    catalog: str | None = _setting(None, "catalog JSON file", kind=str, runtime=False)
    seed: int | None = _setting(None, "random seed (reproducible faults)", kind=int)

    def __post_init__(self) -> None:
        for name in RATES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1")
        for name in (
            "latency_ms",
            "timeout_seconds",
            "order_rate",
            "restock_interval",
            "callback_backoff",
            "port",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        if self.time_scale <= 0:
            raise ConfigError("time_scale must be positive")
        if self.callback_attempts < 1:
            raise ConfigError("callback_attempts must be at least 1")

    def updated(self, values: Mapping[str, Any]) -> "Config":
        """A copy with the runtime settings in ``values`` (names with ``_`` or ``-``)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for raw_name, value in values.items():
            name = raw_name.replace("-", "_")
            spec = fields.get(name)
            if spec is None or not spec.metadata["runtime"]:
                raise ConfigError(f"'{raw_name}' cannot be changed at runtime")
            changes[name] = _coerce(name, value, spec.metadata["kind"], json_value=True)
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(name: str, value: Any, kind: type, *, json_value: bool) -> Any:
    """Parse a CLI/env string (``json_value=False``) or check a JSON value into the field's type."""
    if value is None and name == "seed":
        return None
    if json_value:
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if kind is str and isinstance(value, str):
            return value
        if kind is float and numeric:
            return float(value)
        if kind is int and numeric and float(value).is_integer():
            return int(value)
        raise ConfigError(f"{name}: {value!r} is not a {kind.__name__}")
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not a {kind.__name__}") from None


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Flags win over ``SIM_<NAME>`` environment variables, which win over the defaults."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="python -m integrations.simulator",
        description="Simulated ERP, WMS and carrier for the Fulfillment Ops Portal (real HTTP on loopback).",
    )
    for spec in dataclasses.fields(Config):
        env_name = f"SIM_{spec.name.upper()}"
        parser.add_argument(
            f"--{spec.name.replace('_', '-')}",
            dest=spec.name,
            metavar=spec.metadata["kind"].__name__.upper(),
            default=environ.get(env_name),
            help=f"{spec.metadata['help']} (env {env_name}, default {spec.default})",
        )
    namespace = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(Config):
        raw = getattr(namespace, spec.name)
        if raw is not None:
            values[spec.name] = _coerce(spec.name, raw, spec.metadata["kind"], json_value=False)
    try:
        return Config(**values)
    except ConfigError as exc:
        parser.error(str(exc))


@dataclass(frozen=True)
class Sku:
    sku: str
    price: str
    on_hand: dict[str, int] = field(default_factory=dict)  # per warehouse, for restocks


@dataclass(frozen=True)
class Catalog:
    customers: list[str]
    skus: list[Sku]
    warehouses: list[str]
    carriers: list[str]
    currency: str = "EUR"


DEFAULT_CATALOG = Catalog(
    customers=[f"C{n:04d}" for n in range(1, 11)],
    skus=[Sku(f"SKU-{n:05d}", f"{5 + n * 1.25:.2f}") for n in range(1, 21)],
    warehouses=["WH1"],
    carriers=["DHL"],
)


def load_catalog(path: str | None) -> Catalog:
    """``{"customers": [...], "skus": [{"sku", "price", "on_hand"?: {wh: n}}], "warehouses": [...],
    "carriers": [...], "currency"?: "EUR"}``; without a path, a small built-in catalog."""
    if path is None:
        return DEFAULT_CATALOG
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"catalog {path}: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"catalog {path}: not a JSON object")

    def codes(key: str, default: list[str] | None = None) -> list[str]:
        value = document.get(key, default)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"catalog {path}: '{key}' must be a non-empty list of codes")
        return value

    raw_skus = document.get("skus")
    if not isinstance(raw_skus, list) or not raw_skus:
        raise ConfigError(f"catalog {path}: 'skus' must be a non-empty list")
    skus = []
    for item in raw_skus:
        try:
            price = Decimal(str(item["price"]))
            on_hand = {str(wh): int(n) for wh, n in item.get("on_hand", {}).items()}
            skus.append(Sku(str(item["sku"]), f"{price:.2f}", on_hand))
        except (TypeError, KeyError, AttributeError, ValueError, InvalidOperation):
            raise ConfigError(f"catalog {path}: bad SKU entry {item!r}") from None
    currency = document.get("currency", "EUR")
    if not isinstance(currency, str):
        raise ConfigError(f"catalog {path}: 'currency' must be a string")
    return Catalog(codes("customers"), skus, codes("warehouses"), codes("carriers", ["DHL"]), currency)
