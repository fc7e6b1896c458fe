from django.contrib import admin
from django.urls import include, path

from portal import ops

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/webhooks/", include("integrations.urls")),
    path("api/v1/", include("portal.api.urls")),
    path("healthz", ops.healthz, name="healthz"),
    path("metrics", ops.metrics, name="metrics"),
    path("", include("portal.urls")),
]

# Problem+json under /api/, the usual pages elsewhere (portal/api/errors.py).
handler400 = "portal.api.errors.bad_request"
handler403 = "portal.api.errors.permission_denied"
handler404 = "portal.api.errors.page_not_found"
handler500 = "portal.api.errors.server_error"
