"""Signed webhooks from the simulated WMS and carrier to the portal, with retries."""

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests

from integrations.simulator.config import Config

log = logging.getLogger("simulator")

PATHS = {"wms": "/api/v1/webhooks/wms/", "carrier": "/api/v1/webhooks/carrier/"}
HTTP_TIMEOUT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 30.0


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def iso(timestamp: float) -> str:
    """ISO 8601 UTC with a ``Z``, to the millisecond."""
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_event(
    event_type: str, data: dict[str, Any], occurred_at: float, event_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "type": event_type,
        "occurred_at": iso(occurred_at),
        "data": data,
    }


class WebhookSender:
    """Posts events to ``<portal_url>/api/v1/webhooks/<partner>/``, signed with the partner's
    secret; a failed delivery (non-2xx or no answer) is retried with exponential backoff."""

    def __init__(self, get_config: Callable[[], Config], stop: threading.Event) -> None:
        self._get_config = get_config
        self._stop = stop
        self._local = threading.local()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                name: self._counts[name] for name in ("sent", "attempts", "failed", "duplicates", "reordered")
            }

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def send_once(
        self, partner: str, event: dict[str, Any], *, secret: str | None = None, timestamp: int | None = None
    ) -> requests.Response:
        """One signed POST; raises ``requests.RequestException`` when the portal does not answer."""
        config = self._get_config()
        if secret is None:
            secret = config.wms_secret if partner == "wms" else config.carrier_secret
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Signature": sign(secret, body, int(time.time()) if timestamp is None else timestamp),
            "User-Agent": f"fulfillment-simulator/{partner}",
        }
        self.count("attempts")
        url = config.portal_url.rstrip("/") + PATHS[partner]
        return self._session().post(url, data=body, headers=headers, timeout=HTTP_TIMEOUT_SECONDS)

    def deliver(self, partner: str, event: dict[str, Any], wanted: Callable[[], bool]) -> None:
        """Send until the portal answers 2xx, ``callback_attempts`` times at most (then log and
        give up); ``wanted()`` turning false (a reset, a shutdown) abandons the delivery."""
        what = f"webhook {partner} {event['type']} {event['id']}"
        attempts = self._get_config().callback_attempts
        for attempt in range(1, attempts + 1):
            if not wanted():
                return
            try:
                response = self.send_once(partner, event)
                outcome = str(response.status_code)
                if response.ok:
                    self.count("sent")
                    log.info("%s -> %s", what, outcome)
                    return
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            log.warning("%s -> %s (attempt %d/%d)", what, outcome, attempt, attempts)
            delay = min(self._get_config().callback_backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
            if attempt < attempts and self._stop.wait(delay):
                return
        self.count("failed")
        log.error("%s: gave up after %d attempts", what, attempts)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session
