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
    path("groups/<str:group_id>/role", views.group_role, name="group-role"),
    path("devices/enroll/", views.enrollment_code, name="enroll"),
    path("devices/<str:device_id>/<str:action>", views.device_authorization, name="device-authorization"),
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
]
