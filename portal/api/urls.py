"""``/api/v1/``: mounted in ``fulfillment/urls.py`` after the webhooks of ``integrations``.

Viewsets register on ``router`` with a ``basename`` prefixed ``api-`` (the screens own
the plain names such as ``order-detail``).
"""

from django.contrib.auth.decorators import login_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from portal.api import masterdata, orders, webhooks
from portal.api.base import ApiMixin
from portal.api.permissions import AUTHENTICATED, RoleAndScope

router = SimpleRouter()
router.register("customers", masterdata.CustomerViewSet, basename="api-customer")
router.register("products", masterdata.ProductViewSet, basename="api-product")
router.register("warehouses", masterdata.WarehouseViewSet, basename="api-warehouse")
router.register("carriers", masterdata.CarrierViewSet, basename="api-carrier")
router.register("inventory", masterdata.InventoryViewSet, basename="api-inventory")
router.register("orders", orders.OrderViewSet, basename="api-order")


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
