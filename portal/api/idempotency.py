"""``Idempotency-Key`` on every POST of the API.

A POST may carry ``Idempotency-Key: <1 to 200 printable ASCII characters>``. Keys belong
to the caller: to the token for token requests, to the user for session requests.

- First use: a row (owner, key) is inserted *before* the view runs, then the view runs
  and its final answer (status, body, content type, Location) is stored on the row.
- Same key, same request (method, path and the body as canonical JSON: keys sorted,
  no whitespace): the stored answer is sent again, byte for byte, with
  ``Idempotent-Replayed: true``; nothing runs.
- Same key, different request: 422 ``idempotency_key_reused``.
- Same key while the first request still runs: 409 ``idempotency_in_progress`` (the
  unique row makes sure only one runs); retry after a moment.
- Answers that may change on a retry are not kept — 409 conflicts, 429 and 5xx —
  so the key can be used again for the retry.
- Rows are kept ``RETENTION`` (24 h); an older row no longer counts, and every new
  row prunes up to ``PRUNE_BATCH`` expired ones. A row left ``in_progress`` longer
  than ``ABANDONED_AFTER`` (its worker died) is taken over by the next request.

Requests refused before the view runs (401, 403, 429, malformed JSON) use no key.
``IdempotentMixin`` does all of this for an API view; a POST action that changes
nothing (a preview) opts out by listing its action in ``idempotency_exempt``, a view
that must not take part (the webhooks) sets ``idempotent = False``.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpResponse
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from fulfillment.core import clock
from portal.api.auth import token_of
from portal.api.models import IdempotencyRecord

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 200
RETENTION = timedelta(hours=24)
ABANDONED_AFTER = timedelta(minutes=10)
PRUNE_BATCH = 100
NOT_KEPT = {409, 429}


class InvalidKey(exceptions.APIException):
    status_code = 400
    default_code = "invalid_idempotency_key"
    default_detail = f"An Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable ASCII characters."


class KeyReused(exceptions.APIException):
    status_code = 422
    default_code = "idempotency_key_reused"
    default_detail = "This Idempotency-Key was used for a different request; use a new key."


class InProgress(exceptions.APIException):
    status_code = 409
    wait = 1  # sent as Retry-After
    default_code = "idempotency_in_progress"
    default_detail = "A request with this Idempotency-Key is still running; retry in a moment."


class Replay(Exception):
    """Raised to skip the view: ``response`` is the stored first answer."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__("replay")
        self.response = response


def owner_of(request: Request) -> str:
    token = token_of(request)
    return f"token:{token.pk}" if token is not None else f"user:{request.user.pk}"


def fingerprint(request: Request) -> str:
    body = json.dumps(request.data, cls=JSONEncoder, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{request.method}\n{request.path}\n{body}".encode()).hexdigest()


def valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()


def _replay(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(bytes(record.body), status=record.status_code, content_type=record.content_type)
    if record.location:
        response["Location"] = record.location
    response[REPLAYED_HEADER] = "true"
    return response


def _prune(now: datetime) -> None:
    expired = IdempotencyRecord.objects.filter(created_at__lt=now - RETENTION).order_by("created_at")
    IdempotencyRecord.objects.filter(pk__in=list(expired.values_list("pk", flat=True)[:PRUNE_BATCH])).delete()


def begin(request: Request, key: str) -> IdempotencyRecord:
    """Claim ``key`` for this request, or raise ``Replay``, ``KeyReused`` or ``InProgress``."""
    if not valid_key(key):
        raise InvalidKey()
    owner, print_ = owner_of(request), fingerprint(request)
    for _ in range(2):  # a second try after removing an expired or abandoned row
        now = clock.now()
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    owner=owner, key=key, fingerprint=print_, created_at=now
                )
            _prune(now)
            return record
        except IntegrityError:
            existing = IdempotencyRecord.objects.filter(owner=owner, key=key).first()
        if existing is None:
            continue  # removed in between: try again
        stale = existing.created_at < now - RETENTION or (
            existing.state == IdempotencyRecord.State.IN_PROGRESS
            and existing.created_at < now - ABANDONED_AFTER
        )
        if stale:
            IdempotencyRecord.objects.filter(pk=existing.pk, created_at=existing.created_at).delete()
            continue
        if existing.fingerprint != print_:
            raise KeyReused()
        if existing.state == IdempotencyRecord.State.IN_PROGRESS:
            raise InProgress()
        raise Replay(_replay(existing))
    raise InProgress()


def finish(record: IdempotencyRecord, response: HttpResponse) -> None:
    """Keep the final answer, or free the key when a retry may fare differently."""
    if response.status_code >= 500 or response.status_code in NOT_KEPT:
        release(record)
        return
    if isinstance(response, Response) and not response.is_rendered:
        response.render()
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        state=IdempotencyRecord.State.DONE,
        status_code=response.status_code,
        content_type=response.get("Content-Type", ""),
        body=response.content,
        location=response.get("Location", ""),
    )


def release(record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).delete()


@dataclass
class _State:
    record: IdempotencyRecord | None = None


class IdempotentMixin:
    """For API views: POSTs honour ``Idempotency-Key`` (see the module docstring)."""

    idempotent = True  # False: the view ignores the header (e.g. the webhooks)
    idempotency_exempt: frozenset[str] = frozenset()  # actions that change nothing

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttles
        self._idempotency = _State()
        key = request.headers.get(HEADER)
        if (
            not self.idempotent
            or request.method != "POST"
            or key is None
            or getattr(self, "action", None) in self.idempotency_exempt
        ):
            return
        self._idempotency.record = begin(request, key)

    def handle_exception(self, exc: Exception) -> HttpResponse:
        if isinstance(exc, Replay):
            return exc.response
        try:
            return super().handle_exception(exc)
        except Exception:
            self._release()
            raise

    def finalize_response(
        self, request: Request, response: HttpResponse, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = super().finalize_response(request, response, *args, **kwargs)
        state = getattr(self, "_idempotency", None)
        if state is not None and state.record is not None:
            finish(state.record, response)
            state.record = None
        return response

    def _release(self) -> None:
        state = getattr(self, "_idempotency", None)
        if state is not None and state.record is not None:
            release(state.record)
            state.record = None
