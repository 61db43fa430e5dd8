"""The web console: thin views over the apps' selectors and services, one module per area."""
from console.views.account import account, account_mfa
from console.views.api_clients import api_clients
from console.views.audit import audit_log
from console.views.auth import LoginView, login_mfa
from console.views.devices import device_backup_now, device_bulk_deauthorize, device_export, device_list, device_page
from console.views.fleet import dashboard, device_authorization, enrollment_code
from console.views.identity import group_role, saml_settings, scim_tokens
from console.views.keys import key_access_history, keystore_settings
from console.views.maintenance import maintenance_settings
from console.views.restores import (
    archive_browser,
    file_versions,
    restore_archives,
    restore_create,
    restore_decide,
    restore_download,
    restore_job,
    restore_jobs,
    restore_settings,
)
from console.views.users import user_add, user_change, user_detail, user_list

__all__ = [
    "LoginView", "account", "account_mfa", "api_clients", "archive_browser", "audit_log", "dashboard", "device_authorization",
    "device_backup_now", "device_bulk_deauthorize", "device_export", "device_list", "device_page", "enrollment_code",
    "file_versions", "group_role", "key_access_history", "keystore_settings", "login_mfa", "maintenance_settings", "restore_archives",
    "restore_create", "restore_decide", "restore_download", "restore_job", "restore_jobs", "restore_settings",
    "saml_settings", "scim_tokens", "user_add", "user_change", "user_detail", "user_list",
]
