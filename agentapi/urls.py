from django.urls import path

from agentapi import apis

app_name = "agentapi"
urlpatterns = [
    path("enroll", apis.EnrollApi.as_view(), name="enroll"),
    path("device", apis.DeviceApi.as_view(), name="device"),
    path("archives/<str:archive_id>", apis.ArchiveApi.as_view(), name="archive"),
]
