"""Rate limits: per token for token requests, per user for session requests.

Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` (env ``API_THROTTLE_TOKEN``,
default 600/min, and ``API_THROTTLE_USER``, default 120/min), read on every request
rather than once at import as DRF's own throttles do, so a changed setting applies at
once. The counters live in the Django cache (``CACHE_URL``: set a Redis URL so that
all workers share them). Over the limit: 429 ``throttled`` with ``Retry-After``.
"""

from typing import TYPE_CHECKING

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from portal.api.auth import token_of

if TYPE_CHECKING:
    from rest_framework.views import APIView


class _LiveRateThrottle(SimpleRateThrottle):
    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class TokenRateThrottle(_LiveRateThrottle):
    scope = "token"

    def get_cache_key(self, request: Request, view: "APIView") -> str | None:
        token = token_of(request)
        return None if token is None else self.cache_format % {"scope": self.scope, "ident": token.pk}


class UserRateThrottle(_LiveRateThrottle):
    scope = "user"

    def get_cache_key(self, request: Request, view: "APIView") -> str | None:
        if token_of(request) is not None or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
