"""Backup runs: started before a backup, finished with its counters and errors."""
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from agentapi.apis.common import body_limit, run_for
from agentapi.fields import MAX_BIGINT
from agentapi.schema import ARCHIVE_ID, AUTHENTICATED, RUN_ID, body_errors, errors
from archives.selectors import archive_for_device
from archives.services import backup_run_finish, backup_run_start

# How a backup run ended (named in the schema through ENUM_NAME_OVERRIDES).
RUN_STATUSES = ["completed", "failed", "interrupted"]


class RunStartApi(APIView):
    class OutputSerializer(serializers.Serializer):
        run_id = serializers.UUIDField(source="uuid")
        started_at = serializers.DateTimeField()

        class Meta:
            ref_name = "RunStarted"

    @extend_schema(operation_id="run_start", parameters=[ARCHIVE_ID], request=None,
                   responses={201: OutputSerializer, **errors(*AUTHENTICATED)})
    def post(self, request, archive_id):
        archive = archive_for_device(request.user.device, archive_id, write=True)
        run = backup_run_start(archive=archive)
        return Response(self.OutputSerializer(run).data, status=status.HTTP_201_CREATED)


class RunFinishApi(APIView):
    class InputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=RUN_STATUSES)
        files_scanned = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, default=0)
        bytes_scanned = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, default=0)
        files_changed = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, default=0)
        bytes_sent = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, default=0)
        errors = serializers.ListField(child=serializers.CharField(max_length=2000), max_length=1000, default=list)

        class Meta:
            ref_name = "RunFinishRequest"

    class OutputSerializer(serializers.Serializer):
        run_id = serializers.UUIDField()
        status = serializers.ChoiceField(choices=RUN_STATUSES)

        class Meta:
            ref_name = "RunFinished"

    @extend_schema(operation_id="run_finish", parameters=[ARCHIVE_ID, RUN_ID], request=InputSerializer,
                   responses={200: OutputSerializer, **body_errors()})
    def post(self, request, archive_id, run_id):
        body_limit(request, 1024 * 1024)
        archive = archive_for_device(request.user.device, archive_id, write=True)
        run = run_for(archive, run_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        try:
            backup_run_finish(run=run, status=fields.pop("status"), errors=fields.pop("errors"), counters=fields)
        except ValueError as error:
            raise exceptions.ValidationError({"status": [str(error)]}) from None
        return Response({"run_id": str(run.uuid), "status": run.status})
