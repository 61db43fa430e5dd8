"""Restores through the public API: ask for one, follow it, download its zip with the same key."""
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from agentapi.apis.common import body_limit
from agentapi.public.base import PublicApiView
from agentapi.public.schema import RESTORE_UUID, error_examples, public_errors
from archives.models import RestoreJob
from archives.restore_requests import (
    RestoreNotAllowed,
    archive_for_client,
    push_request_by_client,
    restore_job_for_client,
    restore_request_by_client,
    restore_result_available,
    restore_result_downloaded_by_client,
    restore_result_for_client,
)
from archives.restore_results import result_response
from archives.restore_selectors import RestoreResultUnavailable
from archives.restores import MAX_PATH_LENGTH, MAX_PATHS, RestoreInvalid

# Every status a job can have, from the model: a restore of another user's files may wait for a second
# administrator (awaiting_approval) and be rejected.
RESTORE_STATUSES = list(RestoreJob.Status.values)
_EXAMPLE_ID = "7d6c5b4a-3f2e-4d1c-8b0a-9f8e7d6c5b4a"


class RestoreUnavailable(exceptions.APIException):
    status_code = 409
    default_detail = "The restore has no download"
    default_code = "restore_unavailable"


class PublicRestoreRequestSerializer(serializers.Serializer):
    archive = serializers.UUIDField(help_text="The archive to restore from (its uuid, as in GET devices)")
    at = serializers.CharField(required=False, allow_null=True, max_length=64,
                               help_text="ISO 8601 time with a zone; the archive as it was then. Default: now")
    paths = serializers.ListField(
        child=serializers.CharField(max_length=MAX_PATH_LENGTH, trim_whitespace=False), required=False,
        max_length=MAX_PATHS, help_text="Absolute files or folders to restore; default: everything")
    target_device = serializers.UUIDField(required=False, allow_null=True,
                                          help_text="A push restore: the device (uuid, as in GET devices) whose agent "
                                                    "restores the files; default: a zip download")
    target_path = serializers.CharField(required=False, max_length=MAX_PATH_LENGTH, trim_whitespace=False,
                                        help_text="With target_device: the absolute folder on it the files go under")

    class Meta:
        ref_name = "PublicRestoreRequest"

    def validate(self, attrs):
        if attrs.get("target_device") and not attrs.get("target_path"):
            raise serializers.ValidationError({"target_path": ["a push restore needs the target folder"]})
        if attrs.get("target_path") and not attrs.get("target_device"):
            raise serializers.ValidationError({"target_device": ["target_path is for a push restore"]})
        return attrs


class PublicRestoreCreatedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=RESTORE_STATUSES)

    class Meta:
        ref_name = "PublicRestoreCreated"


class PublicRestoreProgressSerializer(serializers.Serializer):
    files_done = serializers.IntegerField()
    files_total = serializers.IntegerField()
    bytes_done = serializers.IntegerField()
    bytes_total = serializers.IntegerField()

    class Meta:
        ref_name = "PublicRestoreProgress"


class PublicRestoreSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=RESTORE_STATUSES)
    archive = serializers.UUIDField()
    at = serializers.DateTimeField()
    paths = serializers.ListField(child=serializers.CharField())
    progress = PublicRestoreProgressSerializer()
    error = serializers.CharField(allow_blank=True, help_text="Why it failed, when `status` is `failed`")
    kind = serializers.ChoiceField(choices=list(RestoreJob.Kind.values), help_text="web (zip) or push (to a device)")
    target_device = serializers.UUIDField(allow_null=True, help_text="A push restore's device")
    target_path = serializers.CharField(allow_null=True, help_text="A push restore's folder on the device")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True, help_text="When the download is deleted")
    download_url = serializers.URLField(allow_null=True,
                                        help_text="When done and not expired: GET it with the same key")

    class Meta:
        ref_name = "PublicRestore"


def _restore_body(request, job) -> dict:
    url = None
    if restore_result_available(job):
        url = request.build_absolute_uri(reverse("public-api:restore-download", args=[job.uuid]))
    return {"id": job.uuid, "status": job.status, "archive": job.archive.uuid, "at": job.at, "paths": job.paths,
            "progress": {"files_done": job.files_done, "files_total": job.files_total, "bytes_done": job.bytes_done,
                         "bytes_total": job.bytes_total},
            "error": job.error, "kind": job.kind,
            "target_device": job.push.target_device.uuid if job.kind == RestoreJob.Kind.PUSH else None,
            "target_path": job.push.target_path if job.kind == RestoreJob.Kind.PUSH else None,
            "created_at": job.created_at, "finished_at": job.finished_at,
            "expires_at": job.expires_at, "download_url": url}


class PublicRestoresApi(PublicApiView):
    """Ask for a web restore (a zip of the files, under their original absolute paths), or with
    `target_device` and `target_path` a push restore into a folder of a device."""

    required_scope = "restores:write"

    @extend_schema(operation_id="public_restore_create", tags=["public"], request=PublicRestoreRequestSerializer,
                   responses={201: PublicRestoreCreatedSerializer, **public_errors(400, 404, 411, 413, 415)},
                   examples=[
                       OpenApiExample("A folder as it was yesterday", request_only=True, value={
                           "archive": "0b9d8c7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e", "at": "2026-11-30T12:00:00+00:00",
                           "paths": ["/home/alice/Documents"]}),
                       OpenApiExample("Queued", response_only=True, status_codes=["201"],
                                      value={"id": _EXAMPLE_ID, "status": "queued"}),
                       *error_examples()])
    def post(self, request):
        body_limit(request, 8 * 1024 * 1024)
        data = PublicRestoreRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        archive = archive_for_client(self.client, data.validated_data["archive"])
        fields = data.validated_data
        try:
            if fields.get("target_device"):
                job = push_request_by_client(client=self.client, archive=archive, at=fields.get("at"),
                                             paths=fields.get("paths"), target_device_uuid=fields["target_device"],
                                             target_path=fields["target_path"])
            else:
                job = restore_request_by_client(client=self.client, archive=archive, at=fields.get("at"),
                                                paths=fields.get("paths"))
        except RestoreInvalid as invalid:
            field = str(invalid).partition(":")[0]
            raise exceptions.ValidationError({field if field in ("at", "paths", "target_path") else "non_field_errors":
                                              [str(invalid)]}) from None
        except RestoreNotAllowed as refused:
            raise exceptions.PermissionDenied(str(refused), code="restore_not_allowed") from None
        return Response({"id": str(job.uuid), "status": job.status}, status=status.HTTP_201_CREATED)


class PublicRestoreApi(PublicApiView):
    """A restore this key asked for: its status, progress and, when done, its download."""

    required_scope = "restores:write"

    @extend_schema(operation_id="public_restore", tags=["public"], parameters=[RESTORE_UUID],
                   responses={200: PublicRestoreSerializer, **public_errors(404)},
                   examples=[OpenApiExample("Done", response_only=True, status_codes=["200"], value={
                       "id": _EXAMPLE_ID, "status": "done", "archive": "0b9d8c7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e",
                       "at": "2026-11-30T12:00:00Z", "paths": ["/home/alice/Documents"],
                       "progress": {"files_done": 312, "files_total": 312, "bytes_done": 80123904,
                                    "bytes_total": 80123904},
                       "error": "", "kind": "web", "target_device": None, "target_path": None,
                       "created_at": "2026-12-01T09:00:00Z", "finished_at": "2026-12-01T09:01:10Z",
                       "expires_at": "2026-12-02T09:01:10Z",
                       "download_url": f"https://haven.example.com/api/v1/public/restores/{_EXAMPLE_ID}/download"}),
                       *error_examples()])
    def get(self, request, restore_id):
        return Response(_restore_body(request, restore_job_for_client(self.client, restore_id)))


class PublicRestoreDownloadApi(PublicApiView):
    """The zip of a finished restore, for the key that asked for it, for 24 hours."""

    required_scope = "restores:write"

    def perform_content_negotiation(self, request, force=False):
        # The answer is a zip whatever Accept says; errors are JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(operation_id="public_restore_download", tags=["public"], parameters=[RESTORE_UUID],
                   responses={(200, "application/zip"): OpenApiResponse(
                       OpenApiTypes.BINARY, description="The files under their original absolute paths"),
                       **public_errors(404, 409)}, examples=error_examples())
    def get(self, request, restore_id):
        try:
            job, result = restore_result_for_client(self.client, restore_id)
        except RestoreResultUnavailable as unavailable:
            raise RestoreUnavailable(str(unavailable)) from None
        restore_result_downloaded_by_client(client=self.client, job=job)
        return result_response(result, filename=f"restore-{job.uuid}.zip", content_type="application/zip")
