"""The web console: thin views over the apps' selectors and services, one module per area."""
from console.views.audit import audit_log
from console.views.auth import LoginView
from console.views.fleet import dashboard, device_authorization, device_list, enrollment_code
from console.views.identity import group_role, saml_settings, scim_tokens
from console.views.keys import key_access_history, keystore_settings
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

__all__ = ["LoginView", "dashboard", "device_authorization", "device_list", "enrollment_code", "group_role",
           "key_access_history", "keystore_settings", "saml_settings", "scim_tokens"]
__all__ += ["archive_browser", "file_versions", "restore_archives", "restore_create", "restore_decide",  # restores
            "restore_download", "restore_job", "restore_jobs", "restore_settings", "audit_log"]
