"""django-q2 entry points: thin, idempotent, keyed by ids."""

from integrations.erp import erp_pull
from integrations.inbound import apply_pending, retry_deferred
from integrations.relay import relay_run


def apply_pending_events() -> int:
    return apply_pending()


def retry_deferred_events() -> int:
    return retry_deferred()


def relay_outbox() -> int:
    return relay_run()


def pull_erp_orders() -> int:
    return erp_pull()
