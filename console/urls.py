from django.contrib.auth import views as auth_views
from django.urls import path

from console import views

app_name = "console"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("login/code/", views.login_mfa, name="login-mfa"),
    path("account/", views.account, name="account"),
    path("account/two-factor/", views.account_mfa, name="account-mfa"),
    path("users/", views.user_list, name="users"),
    path("users/new", views.user_add, name="user-add"),
    path("users/<str:user_id>/", views.user_detail, name="user"),
    path("users/<str:user_id>/<str:action>", views.user_change, name="user-change"),
    path("devices/", views.device_list, name="devices"),
    path("keys/history/", views.key_access_history, name="key-access"),
    path("keystore/", views.keystore_settings, name="keystore"),
    path("sso/", views.saml_settings, name="sso"),
    path("provisioning/", views.scim_tokens, name="scim-tokens"),
    path("api-clients/", views.api_clients, name="api-clients"),
    path("groups/<str:group_id>/role", views.group_role, name="group-role"),
    path("devices/enroll/", views.enrollment_code, name="enroll"),
    path("devices/export.csv", views.device_export, name="devices-export"),
    path("devices/deauthorize", views.device_bulk_deauthorize, name="devices-deauthorize"),
    path("devices/<uuid:device_id>/", views.device_page, name="device"),
    path("devices/<uuid:device_id>/backup-now", views.device_backup_now, name="device-backup-now"),
    path("devices/<uuid:device_id>/authorization/<str:action>", views.device_authorization,
         name="device-authorization"),
    path("restores/", views.restore_jobs, name="restore-jobs"),
    path("restores/archives/", views.restore_archives, name="restore-archives"),
    path("restores/archives/<str:archive_id>/", views.archive_browser, name="archive-browser"),
    path("restores/archives/<str:archive_id>/versions", views.file_versions, name="file-versions"),
    path("restores/archives/<str:archive_id>/restore", views.restore_create, name="restore-create"),
    path("restores/settings/", views.restore_settings, name="restore-settings"),
    path("restores/<str:job_id>/", views.restore_job, name="restore-job"),
    path("restores/<str:job_id>/download", views.restore_download, name="restore-download"),
    path("restores/<str:job_id>/<str:decision>", views.restore_decide, name="restore-decide"),
    path("audit/", views.audit_log, name="audit"),
    path("maintenance/", views.maintenance_settings, name="maintenance"),
]
