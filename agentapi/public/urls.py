from django.urls import path

from agentapi.public import alerts, events, reads, restores

app_name = "public-api"
urlpatterns = [
    path("devices", reads.PublicDevicesApi.as_view(), name="devices"),
    path("archives/<str:archive_id>/runs", reads.PublicArchiveRunsApi.as_view(), name="archive-runs"),
    path("audit", reads.PublicAuditApi.as_view(), name="audit"),
    path("events", events.PublicEventsApi.as_view(), name="events"),
    path("restores", restores.PublicRestoresApi.as_view(), name="restores"),
    path("restores/<str:restore_id>", restores.PublicRestoreApi.as_view(), name="restore"),
    path("restores/<str:restore_id>/download", restores.PublicRestoreDownloadApi.as_view(), name="restore-download"),
    path("alerts", alerts.PublicAlertsApi.as_view(), name="alerts"),
    path("alerts/<str:alert_id>", alerts.PublicAlertApi.as_view(), name="alert"),
    path("alerts/<str:alert_id>/status", alerts.PublicAlertStatusApi.as_view(), name="alert-status"),
    path("alerts/<str:alert_id>/assign", alerts.PublicAlertAssignApi.as_view(), name="alert-assign"),
    path("alerts/<str:alert_id>/notes", alerts.PublicAlertNotesApi.as_view(), name="alert-notes"),
]
