"""The web console: thin views over the apps' selectors and services, one module per area."""
from console.views.account import account, account_mfa
from console.views.activity import (
    dead_letter_retry,
    detection_rules,
    export_target_remove,
    export_targets,
    file_activity,
    file_activity_export,
    watch_list,
    watch_list_remove,
)
from console.views.alerts import alert_action, alert_detail, alert_list
from console.views.api_clients import api_clients
from console.views.audit import audit_log
from console.views.auth import LoginView, login_mfa
from console.views.deployment import deployment_tokens
from console.views.devices import device_backup_now, device_bulk_deauthorize, device_export, device_list, device_page
from console.views.fleet import dashboard, device_authorization, enrollment_code
from console.views.identity import group_role, saml_settings, scim_tokens
from console.views.keys import key_access_history, keystore_settings
from console.views.maintenance import maintenance_settings
from console.views.policies import policy_device, policy_group, policy_org
from console.views.push_restores import push_restore_create
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
from console.views.safeguards import (
    device_freeze_release,
    device_protection,
    device_verify,
    legal_hold_change,
    legal_hold_new,
    safeguards,
    user_quota,
)
from console.views.users import user_add, user_change, user_detail, user_list

__all__ = [
    "LoginView", "account", "account_mfa", "api_clients", "archive_browser", "audit_log", "dashboard", "device_authorization",
    "device_backup_now", "device_bulk_deauthorize", "device_export", "device_list", "device_page", "enrollment_code",
    "file_versions", "group_role", "key_access_history", "keystore_settings", "login_mfa", "maintenance_settings", "restore_archives",
    "restore_create", "restore_decide", "restore_download", "restore_job", "restore_jobs", "restore_settings",
    "saml_settings", "scim_tokens", "user_add", "user_change", "user_detail", "user_list",
    "alert_action", "alert_detail", "alert_list", "policy_device", "policy_group", "policy_org",
    "deployment_tokens",
    "dead_letter_retry", "detection_rules", "export_target_remove", "export_targets", "file_activity",
    "file_activity_export", "watch_list", "watch_list_remove",
    "push_restore_create",
    "device_freeze_release", "device_protection", "device_verify", "legal_hold_change", "legal_hold_new", "safeguards", "user_quota",
]
