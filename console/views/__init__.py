"""The web console: thin views over the apps' selectors and services, one module per area."""
from console.views.account import account, account_mfa
from console.views.auth import LoginView, login_mfa
from console.views.fleet import dashboard, device_authorization, device_list, enrollment_code
from console.views.identity import group_role, saml_settings, scim_tokens
from console.views.keys import key_access_history, keystore_settings
from console.views.users import user_add, user_change, user_detail, user_list

__all__ = ["LoginView", "dashboard", "device_authorization", "device_list", "enrollment_code", "group_role",
           "key_access_history", "keystore_settings", "saml_settings", "scim_tokens",
           "account", "account_mfa", "login_mfa", "user_add", "user_change", "user_detail", "user_list"]
