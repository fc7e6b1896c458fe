"""The scheduled pull of new ERP orders, read page by page from a stored cursor.

Each order is upserted in its own transaction (``flows.intake.erp_order_upsert``); the
cursor moves past a page only after all of its orders are committed. A crash in between
reads the page again, which changes nothing: known orders are returned as they are. An
order the portal cannot take (an unknown SKU, a malformed payload) becomes an integration
exception with its payload, and the feed moves on.
"""

import hashlib
import json
import logging
import time
from typing import Any

from exceptions import services as exception_services
from exceptions.models import OrderException
from flows.intake import erp_order_upsert
from fulfillment.core.actors import Actor
from fulfillment.core.errors import InvalidInput
from integrations.adapters import ErpAdapter
from integrations.models import Endpoint, SyncCursor

log = logging.getLogger(__name__)

CURSOR = "erp-orders"
ERP = Actor.named("erp")
# No further page is begun after this long, so that a run ends inside the task timeout
# (Q_CLUSTER); the next run goes on from the stored cursor.
RUN_BUDGET_SECONDS = 30.0
SYNC_FAILED = "integration_sync_failed"


def erp_pull(*, limit: int = 200, budget_seconds: float = RUN_BUDGET_SECONDS) -> int:
    """Take the ERP's new orders, a page at least; returns how many orders were created."""
    endpoint = Endpoint.objects.filter(name="erp", enabled=True).first()
    if endpoint is None:
        return 0
    adapter = ErpAdapter(endpoint)
    cursor, _ = SyncCursor.objects.get_or_create(name=CURSOR)
    created = 0
    deadline = time.monotonic() + budget_seconds
    while True:
        reply = adapter.new_orders(cursor.value, limit)
        page = _page(reply.body) if reply.ok else None
        if page is None:
            log.warning("ERP order feed unreadable at cursor %r: %s", cursor.value, reply.error or reply.body)
            break
        orders, next_cursor = page
        for payload in orders:
            created += _take(payload)
        cursor.value = next_cursor
        cursor.save(update_fields=["value", "updated_at"])
        if len(orders) < limit or time.monotonic() >= deadline:
            break
    return created


def _page(body: Any) -> tuple[list[Any], str] | None:
    """``{"orders": [...], "next_cursor": "..."}``, else None."""
    if not isinstance(body, dict):
        return None
    orders, next_cursor = body.get("orders"), body.get("next_cursor")
    if not isinstance(orders, list) or not isinstance(next_cursor, str):
        return None
    return orders, next_cursor


def _take(payload: Any) -> bool:
    """Upsert one order of the feed; True when it was new."""
    try:
        return erp_order_upsert(payload=payload, actor=ERP).created
    except InvalidInput as exc:
        _refuse(payload, exc)
        return False


def _refuse(payload: Any, error: InvalidInput) -> None:
    """An integration exception with the order as the ERP sent it, once per payload."""
    external_id = payload.get("external_id") if isinstance(payload, dict) else None
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    open_ones = OrderException.objects.filter(type__code=SYNC_FAILED, is_open=True, details__source="erp")
    if open_ones.filter(details__payload_sha256=digest).exists():
        return  # the page was read again (the cursor had not moved yet): raised already
    exception_services.exception_raise(
        type_code=SYNC_FAILED,
        order=None,
        details={
            "direction": "inbound",
            "source": "erp",
            "external_id": external_id,
            "error": error.message,
            "fields": error.fields,
            "payload": payload,
            "payload_sha256": digest,
        },
        actor=ERP,
        note=f"ERP order {external_id or '(without an external id)'} was not taken: {error.message}",
    )
