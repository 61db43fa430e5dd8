"""File activity: the agent's event batches (docs/protocol.md "File activity (version 1)").

The body is read raw and checked by `activity.ingest` (plain Python, not a serializer: see its
docstring); the serializers below describe it for the OpenAPI schema only.
"""
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from activity.ingest import AGENT_VECTORS, MAX_COMPRESSED, MAX_EVENTS, BatchRefused, batch_decode, events_ingest
from activity.models import EventCategory, EventType
from agentapi.apis.common import body_limit
from agentapi.schema import body_errors


class BatchRefusedError(exceptions.APIException):
    def __init__(self, refused: BatchRefused):
        super().__init__(refused.detail, refused.code)
        self.status_code = refused.status
        self.index, self.field = refused.index, refused.field


class FileEventSerializer(serializers.Serializer):
    event_id = serializers.UUIDField(help_text="Chosen by the agent; unique across batches")
    occurred_at = serializers.DateTimeField(help_text="With a zone; ≤ 30 days old, ≤ 5 minutes ahead")
    type = serializers.ChoiceField(choices=EventType.choices)
    path = serializers.CharField(max_length=4096)
    dest_path = serializers.CharField(max_length=4096, allow_null=True, required=False,
                                      help_text="The new path of a rename (and only of a rename)")
    size = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    sha256 = serializers.RegexField(r"^[0-9a-f]{64}$", allow_null=True, required=False)
    category = serializers.ChoiceField(choices=EventCategory.choices, required=False)
    mime_type = serializers.CharField(max_length=127, allow_null=True, required=False)
    vector = serializers.ChoiceField(choices=sorted(AGENT_VECTORS), allow_null=True, required=False)
    entropy = serializers.FloatField(min_value=0, max_value=8, allow_null=True, required=False,
                                     help_text="Bits per byte of the file's first 64 KiB")
    os_user = serializers.CharField(max_length=128, allow_null=True, required=False)
    process = serializers.CharField(max_length=255, allow_null=True, required=False)

    class Meta:
        ref_name = "FileEventIn"


class EventsApi(APIView):
    """Store one batch of file-activity events of this device: all of them or none."""

    class InputSerializer(serializers.Serializer):
        batch_id = serializers.UUIDField(help_text="Chosen by the agent; a re-sent batch is a no-op")
        events = FileEventSerializer(many=True, max_length=MAX_EVENTS)
        dropped = serializers.IntegerField(min_value=0, required=False,
                                           help_text="Events the agent's bounded queue dropped since its last batch")

        class Meta:
            ref_name = "EventBatchRequest"

    class OutputSerializer(serializers.Serializer):
        batch_id = serializers.UUIDField()
        accepted = serializers.IntegerField(help_text="Events stored by this request")
        duplicate = serializers.BooleanField(help_text="The batch had been received before; nothing was stored")

        class Meta:
            ref_name = "EventBatchAccepted"

    @extend_schema(operation_id="events_upload", request=InputSerializer,
                   responses={200: OutputSerializer, 201: OutputSerializer, **body_errors(409)})
    def post(self, request):
        body_limit(request, MAX_COMPRESSED)
        if request.content_type.split(";")[0].strip().lower() != "application/json":
            raise exceptions.UnsupportedMediaType(request.content_type)
        try:
            body = batch_decode(request.body, content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""))
            result = events_ingest(device=request.user.device, body=body)
        except BatchRefused as refused:
            raise BatchRefusedError(refused) from None
        return Response({"batch_id": result.batch_id, "accepted": result.accepted, "duplicate": result.duplicate},
                        status=status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED)
