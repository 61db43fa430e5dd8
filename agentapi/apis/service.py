"""The agent as a service: its effective backup policy (with an ETag, so an idle agent can poll
cheaply) and its status report, whose answer carries the server's commands for it."""
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from agentapi.apis.common import body_limit
from agentapi.fields import MAX_BIGINT
from agentapi.schema import body_errors, errors
from archives.device_status import device_status_report
from archives.policies import policy_effective, policy_etag

# The last backup's result in a status report (named in the schema through ENUM_NAME_OVERRIDES).
LAST_RESULTS = ["none", "completed", "completed_with_errors", "failed", "interrupted"]


class EffectivePolicySerializer(serializers.Serializer):
    """The policy the device follows, resolved device > group > organization > defaults."""

    include = serializers.ListField(child=serializers.CharField(), help_text="Paths to back up; `~` is the home.")
    exclude = serializers.ListField(child=serializers.CharField(), help_text="Patterns the administrator set.")
    default_excludes = serializers.BooleanField()
    exclude_effective = serializers.ListField(child=serializers.CharField(),
                                              help_text="Every pattern to apply: defaults and the administrator's.")
    vm_image_patterns = serializers.ListField(child=serializers.CharField())
    vm_image_max_bytes = serializers.IntegerField()
    interval_seconds = serializers.IntegerField()
    allowed_hours = serializers.ListField(child=serializers.IntegerField(), help_text="Empty: any hour.")
    allowed_days = serializers.ListField(child=serializers.IntegerField(), help_text="0 is Monday; empty: any day.")
    bandwidth_active = serializers.IntegerField(help_text="Bytes/s while the user is active; 0 = no limit.")
    bandwidth_away = serializers.IntegerField(help_text="Bytes/s while the user is away; 0 = no limit.")
    cpu_threads = serializers.IntegerField()
    nice = serializers.IntegerField()
    version_interval_seconds = serializers.IntegerField()
    os_family = serializers.ChoiceField(choices=["linux", "macos", "windows"])


def _etag_matches(header: str, etag: str) -> bool:
    candidates = [part.strip() for part in header.split(",")]
    return "*" in candidates or etag in candidates or f"W/{etag}" in candidates


class DevicePolicyApi(APIView):
    """GET the effective policy; 304 when If-None-Match names the current ETag."""

    @extend_schema(
        operation_id="device_policy",
        parameters=[OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER, required=False,
                                     description="The ETag of the policy the agent holds.")],
        responses={200: EffectivePolicySerializer, 304: OpenApiResponse(description="The policy is unchanged."),
                   **errors(401)})
    def get(self, request):
        effective = policy_effective(device=request.user.device)
        etag = policy_etag(effective)
        if _etag_matches(request.headers.get("If-None-Match", ""), etag):
            response = Response(status=304)
        else:
            response = Response(EffectivePolicySerializer(effective).data)
        response["ETag"] = etag
        response["Cache-Control"] = "private, no-cache"
        return response


class DeviceLastResultSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=LAST_RESULTS)
    finished_at = serializers.DateTimeField(required=False, allow_null=True)
    files_changed = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, required=False, default=0)
    bytes_sent = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, required=False, default=0)
    error = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class DeviceStatusInputSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["running", "idle", "error"])
    last_result = DeviceLastResultSerializer(required=False)
    selection_files = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, default=0)
    selection_bytes = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, default=0)
    pending_bytes = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, default=0)
    agent_version = serializers.CharField(max_length=50, allow_blank=True, default="")
    policy_etag = serializers.CharField(max_length=80, allow_blank=True, default="")


class DeviceCommandSerializer(serializers.Serializer):
    command = serializers.CharField(help_text="backup_now, or push_restore (detail: {\"job\": id}); agents "
                                                      "ignore commands they do not know.")
    detail = serializers.DictField()


class DeviceStatusOutputSerializer(serializers.Serializer):
    commands = DeviceCommandSerializer(many=True)
    policy_etag = serializers.CharField(help_text="The current policy's ETag: refetch the policy when it differs.")


class DeviceStatusApi(APIView):
    """POST what the agent is doing; the answer lists the commands waiting for it (each once)."""

    @extend_schema(operation_id="device_status_report", request=DeviceStatusInputSerializer,
                   responses={200: DeviceStatusOutputSerializer, **body_errors()})
    def post(self, request):
        body_limit(request, 64 * 1024)
        data = DeviceStatusInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        last_result = fields.pop("last_result", None) or {"status": "none"}
        if last_result.get("finished_at"):
            last_result["finished_at"] = last_result["finished_at"].isoformat()
        device = request.user.device
        commands = device_status_report(device=device, last_result=last_result, **fields)
        return Response(DeviceStatusOutputSerializer({
            "commands": [{"command": c.command, "detail": c.detail} for c in commands],
            "policy_etag": policy_etag(policy_effective(device=device)),
        }).data)
