"""API authentication: ``Authorization: Token <key>`` for machines, the session for people.

A key is 43 URL-safe characters (256 random bits) made by ``api_token_issue``; the
database keeps only its SHA-256, so a leaked table reveals no key. A key whose user is
inactive or whose token is revoked is refused like an unknown one (401).
"""

import hashlib
import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from fulfillment.core import clock
from fulfillment.core.errors import InvalidInput
from portal.api.models import ApiToken, Scope

KEYWORD = "Token"
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def api_token_issue(*, user: AbstractBaseUser, scopes: Iterable[str], name: str = "") -> tuple[ApiToken, str]:
    """A new token for ``user``; returns it with its key, which is never stored."""
    wanted = sorted(set(scopes))
    unknown = [s for s in wanted if s not in Scope.values]
    if not wanted or unknown:
        raise InvalidInput(
            f"Give one or more of the scopes {', '.join(Scope.values)}.",
            fields={"scopes": [f"Unknown scope '{s}'." for s in unknown] or ["Required."]},
        )
    if len(name) > ApiToken._meta.get_field("name").max_length:
        raise InvalidInput("The name is too long.", fields={"name": ["At most 100 characters."]})
    key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=key[:8], key_hash=key_hash(key), scopes=wanted, created_at=clock.now()
    )
    return token, key


class TokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Token <key>``; any other scheme is left to the next authenticator."""

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, ApiToken] | None:
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].decode("latin-1").lower() != KEYWORD.lower():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send the header as 'Authorization: Token <key>'.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("The token is not valid.") from exc
        token = (
            ApiToken.objects.select_related("user")
            .filter(key_hash=key_hash(key), revoked_at__isnull=True, user__is_active=True)
            .first()
        )
        if token is None:
            raise exceptions.AuthenticationFailed("The token is not valid.")
        now = clock.now()
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


def token_of(request: Request) -> ApiToken | None:
    """The token the request came with; None for a session (or anonymous) request."""
    return request.auth if isinstance(request.auth, ApiToken) else None
