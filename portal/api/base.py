"""The base classes every API view derives from.

``ApiViewSet`` (a DRF ``GenericViewSet``) and ``ApiView`` (a ``GenericAPIView``) bring
the project defaults of ``REST_FRAMEWORK`` in settings (token and session
authentication, ``RoleAndScope``, the throttles, keyset pagination, strict filters,
JSON only, problem+json errors) and add:

- ``access``: the role/scope rule per operation (``portal.api.permissions``); required;
- ``ordering`` for lists: the keyset sort, ending in a unique field (``portal.api.pagination``);
- ``Idempotency-Key`` handling for every POST (``portal.api.idempotency``);
- no OPTIONS (405), and no redirect to the login page: the API answers 401 itself
  (the views are exempt from ``LoginRequiredMiddleware``; DRF's permission check is
  the gate).
"""

from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from rest_framework import generics, viewsets

from portal.api.idempotency import IdempotentMixin
from portal.api.permissions import Rule


class ApiMixin(IdempotentMixin):
    access: dict[str, Rule] = {}
    metadata_class = None
    http_method_names = ["get", "post", "put", "patch", "delete", "head"]

    @classmethod
    def as_view(cls, *args: Any, **kwargs: Any) -> Callable[..., HttpResponse]:
        return login_not_required(super().as_view(*args, **kwargs))


class ApiViewSet(ApiMixin, viewsets.GenericViewSet):
    pass


class ApiView(ApiMixin, generics.GenericAPIView):
    pass
