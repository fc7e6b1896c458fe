"""The base classes every API view derives from.

``ApiViewSet`` (a DRF ``GenericViewSet``) and ``ApiView`` (a ``GenericAPIView``) bring
the project defaults of ``REST_FRAMEWORK`` in settings (token and session
authentication, ``RoleAndScope``, the throttles, keyset pagination, strict filters,
JSON only, problem+json errors) and add:

- ``access``: the role/scope rule per operation (``portal.api.permissions``); required;
- ``ordering`` for lists: the keyset sort, ending in a unique field (``portal.api.pagination``);
- ``Idempotency-Key`` handling for every POST (``portal.api.idempotency``);
- no OPTIONS (405). DRF exempts its views from ``LoginRequiredMiddleware``: the API
  answers 401 itself instead of redirecting to the login page, and ``access`` is the gate.
"""

from rest_framework import generics, viewsets

from portal.api.errors import ProblemRendering
from portal.api.idempotency import IdempotentMixin
from portal.api.permissions import Rule


class ApiMixin(IdempotentMixin, ProblemRendering):
    access: dict[str, Rule] = {}
    metadata_class = None
    http_method_names = ["get", "post", "put", "patch", "delete", "head"]


class ApiViewSet(ApiMixin, viewsets.GenericViewSet):
    pass


class ApiView(ApiMixin, generics.GenericAPIView):
    pass
