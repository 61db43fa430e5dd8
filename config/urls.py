"""Top-level URLs: the console, the agent API under /api/v1/, its schema, Django admin, and the
operations endpoints /healthz and /metrics (config/monitoring.py)."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from accounts.forms import AdminLoginForm
from config.monitoring import healthz, metrics

# The admin's password login goes through the same throttle as the console's.
admin.site.login_form = AdminLoginForm

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/public/", include("agentapi.public.urls")),
    path("api/v1/", include("agentapi.urls")),
    path("scim/v2/", include("console.scim.urls")),
    path("saml/", include("console.saml.urls")),
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="api-schema"),
    path("", include("console.urls")),
]
