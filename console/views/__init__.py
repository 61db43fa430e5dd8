"""The web console: thin views over the apps' selectors and services, one module per area."""
from console.views.account import account, account_mfa
from console.views.auth import LoginView, login_mfa
from console.views.devices import device_backup_now, device_bulk_deauthorize, device_export, device_list, device_page
from console.views.fleet import dashboard, device_authorization, enrollment_code
from console.views.identity import group_role, saml_settings, scim_tokens
from console.views.keys import key_access_history, keystore_settings
from console.views.users import user_add, user_change, user_detail, user_list

__all__ = ["LoginView", "account", "account_mfa", "dashboard", "device_authorization", "device_backup_now",
           "device_bulk_deauthorize", "device_export", "device_list", "device_page", "enrollment_code", "group_role",
           "key_access_history", "keystore_settings", "login_mfa", "saml_settings", "scim_tokens", "user_add",
           "user_change", "user_detail", "user_list"]
