"""The versioned REST API, ``/api/v1/``: the screens' services for machines.

Conventions for whoever adds an endpoint (work queues, approvals, integrations, admin):

1. **Views hold no rules.** A view checks the body's shape with a serializer, calls a
   service or flow (``orders.services``, ``flows.*``, ``fulfillment.core.workqueue``)
   and renders the result; selectors read. Application errors raised there
   (``InvalidInput`` 422, ``NotFound`` 404, ``PermissionDenied`` 403,
   ``TransitionNotAllowed`` / ``ConcurrentUpdate`` 409) become problem+json by
   themselves (``errors.py``): don't catch them.
2. **Derive from ``base.ApiViewSet`` or ``base.ApiView``** and declare ``access``: one
   ``permissions.Rule`` per action (``read(*roles)``, ``write(*roles)``, ``admin()``);
   add the endpoint to the role table in ``permissions.py`` and to the permission
   matrix test. Actions with a path variable that changes who may call them override
   ``access_key()`` (see ``orders.OrderViewSet``).
3. **Lists**: set ``ordering`` ending in a unique field (``("-priority_key",
   "created_at", "id")``), a ``filterset_class`` (django-filter; unknown parameters
   answer 422) and a ``serializer_class``; pagination is automatic (``pagination.py``).
4. **POSTs** get ``Idempotency-Key`` handling for free (``idempotency.py``); a POST that
   changes nothing lists its action in ``idempotency_exempt``.
5. **Register** viewsets in ``urls.py`` with ``basename="api-…"``. Response bodies are
   serializers with only read-only fields (order status is a protected FSM field); use
   ``@extend_schema`` where the body is not ``serializer_class`` (the error answers are
   added by ``schema.ApiAutoSchema``). ``manage.py spectacular --validate
   --fail-on-warn`` must stay silent (``tests/api/test_schema.py``).

Modules: ``auth`` (tokens), ``permissions`` (role table, scopes), ``errors``
(problem+json), ``idempotency``, ``pagination`` (keyset), ``filters``, ``throttling``,
``schema`` (OpenAPI), ``serializers``, ``masterdata``, ``orders``, ``workqueues`` (queues,
work items, claim next, comments) with ``approvals`` (approve/reject) and
``work_serializers``, ``integration`` (outbox messages, inbound events) with
``integration_serializers``, ``configuration`` (escalation rules, approval policies) with
``configuration_serializers``, ``webhooks`` (the integrations' webhooks in the schema),
``models`` (ApiToken, IdempotencyRecord; this is the Django app ``api``), ``admin`` (the
Django admin of tokens). ``/healthz`` and ``/metrics`` live in ``portal.ops``; request
ids and JSON logs in ``portal.observability``.
"""
