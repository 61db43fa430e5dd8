from django.contrib.auth import views as auth_views
from django.urls import path

from console import views

app_name = "console"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("devices/", views.device_list, name="devices"),
    path("keys/history/", views.key_access_history, name="key-access"),
    path("keystore/", views.keystore_settings, name="keystore"),
    path("sso/", views.saml_settings, name="sso"),
    path("provisioning/", views.scim_tokens, name="scim-tokens"),
    path("api-clients/", views.api_clients, name="api-clients"),
    path("groups/<str:group_id>/role", views.group_role, name="group-role"),
    path("devices/enroll/", views.enrollment_code, name="enroll"),
    path("devices/<str:device_id>/<str:action>", views.device_authorization, name="device-authorization"),
]
