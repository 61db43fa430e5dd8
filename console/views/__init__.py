"""The web console: thin views over the apps' selectors and services, one module per area."""
from console.views.api_clients import api_clients
from console.views.auth import LoginView
from console.views.fleet import dashboard, device_authorization, device_list, enrollment_code
from console.views.identity import group_role, saml_settings, scim_tokens
from console.views.keys import key_access_history, keystore_settings

__all__ = ["LoginView", "api_clients", "dashboard", "device_authorization", "device_list", "enrollment_code", "group_role",
           "key_access_history", "keystore_settings", "saml_settings", "scim_tokens"]
