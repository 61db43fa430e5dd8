"""Push restores, as the target device sees them: its open jobs, accept one (with a one-time
public key when the server must re-encrypt), download the stream, report progress and the end.
Only the target device reaches a job here; any other device gets 404 (docs/protocol.md)."""
import base64
import binascii

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from agentapi.apis.common import body_limit
from agentapi.fields import MAX_BIGINT
from agentapi.schema import body_errors, errors
from archives.push_restores import (
    PushRefused,
    push_job_for_device,
    push_jobs_for_device,
    push_restore_accept,
    push_restore_finish,
    push_restore_progress,
    push_stream_file,
)
from archives.restore_results import result_response
from archives.restores import RestoreInvalid

JOB_ID = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class PushConflict(exceptions.APIException):
    status_code = 409
    default_detail = "The push restore is not in a state for this step"
    default_code = "push_conflict"


def _conflict(error: PushRefused) -> PushConflict:
    return PushConflict(str(error), code=error.code)


class PushJobSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    mode = serializers.ChoiceField(source="push.mode", choices=["own_key", "stream"],
                                   help_text="own_key: read `archive` with the device's key; stream: accept with a "
                                             "one-time public key and download the stream (docs/formats.md §10).")
    status = serializers.CharField(help_text="queued (to accept), running, done, failed.")
    stream = serializers.CharField(source="push.stream", help_text="none, pending, preparing, ready or gone.")
    archive = serializers.UUIDField(source="archive.uuid", help_text="The source archive.")
    at = serializers.DateTimeField(help_text="The point in time to restore (server commit times).")
    paths = serializers.ListField(child=serializers.CharField(), help_text="Absolute prefixes; empty: everything.")
    target_path = serializers.CharField(source="push.target_path", help_text="The folder the files go under.")
    files_total = serializers.IntegerField()
    bytes_total = serializers.IntegerField()
    error = serializers.CharField()

    class Meta:
        ref_name = "PushRestoreJob"


class PushJobListSerializer(serializers.Serializer):
    results = PushJobSerializer(many=True)

    class Meta:
        ref_name = "PushRestoreJobs"


class PushJobsApi(APIView):
    """GET the device's open push restores (the fallback when a status report's command is missed)."""

    @extend_schema(operation_id="push_restores_list", responses={200: PushJobListSerializer, **errors(401)})
    def get(self, request):
        return Response({"results": PushJobSerializer(push_jobs_for_device(request.user.device), many=True).data})


class PushJobApi(APIView):
    @extend_schema(operation_id="push_restore_get", parameters=[JOB_ID],
                   responses={200: PushJobSerializer, **errors(401, 404)})
    def get(self, request, job_id):
        return Response(PushJobSerializer(push_job_for_device(request.user.device, job_id)).data)


class PushAcceptApi(APIView):
    """Claim the job (once). A `stream` job sends the agent's one-time X25519 public key."""

    class InputSerializer(serializers.Serializer):
        public_key = serializers.CharField(required=False, allow_null=True, max_length=64,
                                           help_text="Base64 of the 32-byte X25519 public key (stream jobs only).")

        class Meta:
            ref_name = "PushRestoreAccept"

    @extend_schema(operation_id="push_restore_accept", parameters=[JOB_ID], request=InputSerializer,
                   responses={200: PushJobSerializer, **body_errors(409)})
    def post(self, request, job_id):
        body_limit(request, 4096)
        job = push_job_for_device(request.user.device, job_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        raw = data.validated_data.get("public_key")
        public_key = None
        if raw is not None:
            try:
                public_key = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise exceptions.ValidationError({"public_key": ["not base64"]}) from None
        try:
            job = push_restore_accept(device=request.user.device, job=job, public_key=public_key)
        except RestoreInvalid as invalid:
            raise exceptions.ValidationError({"public_key": [str(invalid)]}) from None
        except PushRefused as refused:
            raise _conflict(refused) from None
        return Response(PushJobSerializer(job).data)


class PushStreamApi(APIView):
    """The encrypted stream (docs/formats.md §10), once the server's job wrote it; 409
    `stream_not_ready` before."""

    @extend_schema(operation_id="push_restore_stream", parameters=[JOB_ID],
                   responses={(200, "application/octet-stream"): OpenApiResponse(
                       OpenApiTypes.BINARY, description="The push restore stream"), **errors(401, 404, 409)})
    def get(self, request, job_id):
        job = push_job_for_device(request.user.device, job_id)
        try:
            stream = push_stream_file(job=job)
        except PushRefused as refused:
            raise _conflict(refused) from None
        except FileNotFoundError:
            raise PushConflict("the stream was deleted", code="stream_not_ready") from None
        return result_response(stream, content_type="application/octet-stream")


class _Counts(serializers.Serializer):
    files_done = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, default=0)
    bytes_done = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, default=0)


class PushProgressApi(APIView):
    class InputSerializer(_Counts):
        files_total = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, required=False)
        bytes_total = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, required=False)

        class Meta:
            ref_name = "PushRestoreProgress"

    @extend_schema(operation_id="push_restore_progress", parameters=[JOB_ID], request=InputSerializer,
                   responses={200: PushJobSerializer, **body_errors(409)})
    def post(self, request, job_id):
        body_limit(request, 4096)
        job = push_job_for_device(request.user.device, job_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            job = push_restore_progress(job=job, **data.validated_data)
        except PushRefused as refused:
            raise _conflict(refused) from None
        return Response(PushJobSerializer(job).data)


class PushResultApi(APIView):
    class InputSerializer(_Counts):
        status = serializers.ChoiceField(choices=["done", "failed"])
        error = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "PushRestoreResult"

    @extend_schema(operation_id="push_restore_result", parameters=[JOB_ID], request=InputSerializer,
                   responses={200: PushJobSerializer, **body_errors(409)})
    def post(self, request, job_id):
        body_limit(request, 8192)
        job = push_job_for_device(request.user.device, job_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        try:
            job = push_restore_finish(device=request.user.device, job=job, ok=fields["status"] == "done",
                                      error=fields["error"], files_done=fields["files_done"],
                                      bytes_done=fields["bytes_done"])
        except PushRefused as refused:
            raise _conflict(refused) from None
        return Response(PushJobSerializer(job).data)
