"""``/api/v1/``: mounted in ``fulfillment/urls.py`` after the webhooks of ``integrations``.

Viewsets register on ``router`` with a ``basename`` prefixed ``api-`` (the screens own
the plain names such as ``order-detail``).
"""

from django.contrib.auth.decorators import login_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from portal.api import configuration, integration, masterdata, orders, webhooks, workqueues
from portal.api.base import ApiMixin
from portal.api.permissions import AUTHENTICATED, RoleAndScope

router = SimpleRouter()
router.register("customers", masterdata.CustomerViewSet, basename="api-customer")
router.register("products", masterdata.ProductViewSet, basename="api-product")
router.register("warehouses", masterdata.WarehouseViewSet, basename="api-warehouse")
router.register("carriers", masterdata.CarrierViewSet, basename="api-carrier")
router.register("inventory", masterdata.InventoryViewSet, basename="api-inventory")
router.register("orders", orders.OrderViewSet, basename="api-order")
router.register("queues", workqueues.QueueViewSet, basename="api-queue")
router.register("work-items", workqueues.WorkItemViewSet, basename="api-work-item")
router.register(
    r"work-items/(?P<item_pk>[0-9]{1,18})/comments",
    workqueues.CommentViewSet,
    basename="api-work-item-comment",
)
router.register("outbox", integration.OutboxMessageViewSet, basename="api-outbox")
router.register("inbound-events", integration.InboundEventViewSet, basename="api-inbound-event")
router.register("escalation-rules", configuration.EscalationRuleViewSet, basename="api-escalation-rule")
router.register("approval-policies", configuration.ApprovalPolicyViewSet, basename="api-approval-policy")


class SchemaView(ApiMixin, SpectacularAPIView):
    """The OpenAPI document, for any authenticated caller (token with ``read``, or session)."""

    access = {"get": AUTHENTICATED}
    permission_classes = (RoleAndScope,)


urlpatterns = [
    path("schema/", SchemaView.as_view(), name="api-schema"),
    # For people: a login page first (DRF views skip LoginRequiredMiddleware).
    path("docs/", login_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    # Behind integrations' own routes for these paths; here for the schema (see webhooks.py).
    path("webhooks/wms/", webhooks.WmsWebhookView.as_view(), name="api-webhook-wms"),
    path("webhooks/carrier/", webhooks.CarrierWebhookView.as_view(), name="api-webhook-carrier"),
    *router.urls,
]
