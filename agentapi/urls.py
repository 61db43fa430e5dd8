from django.urls import path

from agentapi import apis
from agentapi.apis import push

app_name = "agentapi"
urlpatterns = [
    path("enroll", apis.EnrollApi.as_view(), name="enroll"),
    path("enroll/deployment", apis.DeploymentEnrollApi.as_view(), name="enroll-deployment"),
    path("device", apis.DeviceApi.as_view(), name="device"),
    path("devices/me/policy", apis.DevicePolicyApi.as_view(), name="device-policy"),
    path("devices/me/status", apis.DeviceStatusApi.as_view(), name="device-status"),
    path("keys/mine", apis.KeyStatusApi.as_view(), name="key-status"),
    path("keys/escrow", apis.KeyEscrowApi.as_view(), name="key-escrow"),
    path("keys/retrieve", apis.KeyRetrieveApi.as_view(), name="key-retrieve"),
    path("archives", apis.ArchiveListApi.as_view(), name="archives"),
    path("archives/<str:archive_id>", apis.ArchiveApi.as_view(), name="archive"),
    path("archives/<str:archive_id>/runs", apis.RunStartApi.as_view(), name="run-start"),
    path("archives/<str:archive_id>/runs/<str:run_id>/finish", apis.RunFinishApi.as_view(), name="run-finish"),
    path("archives/<str:archive_id>/blocks", apis.BlocksUploadApi.as_view(), name="blocks-upload"),
    path("archives/<str:archive_id>/blocks/missing", apis.BlocksMissingApi.as_view(), name="blocks-missing"),
    path("archives/<str:archive_id>/blocks/fetch", apis.BlocksFetchApi.as_view(), name="blocks-fetch"),
    path("events", apis.EventsApi.as_view(), name="events"),
    path("archives/<str:archive_id>/versions", apis.VersionsApi.as_view(), name="versions"),
    path("devices/me/push-restores", push.PushJobsApi.as_view(), name="push-restores"),
    path("devices/me/push-restores/<str:job_id>", push.PushJobApi.as_view(), name="push-restore"),
    path("devices/me/push-restores/<str:job_id>/accept", push.PushAcceptApi.as_view(), name="push-restore-accept"),
    path("devices/me/push-restores/<str:job_id>/stream", push.PushStreamApi.as_view(), name="push-restore-stream"),
    path("devices/me/push-restores/<str:job_id>/progress", push.PushProgressApi.as_view(),
         name="push-restore-progress"),
    path("devices/me/push-restores/<str:job_id>/result", push.PushResultApi.as_view(), name="push-restore-result"),
    path("archives/<str:archive_id>/heal", apis.HealApi.as_view(), name="heal"),
]
