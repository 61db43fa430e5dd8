"""File-activity events for SOAR and SIEM tools (issue 13 item 5): the forensic search's filters,
keyset-paginated newest first on (occurred_at, id). Alerts have their own endpoints."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from activity.models import EventCategory, EventType, FileEvent, Vector
from activity.search import CursorInvalid, events_matching, file_events_page
from agentapi.public.base import PublicApiView, page_limit
from agentapi.public.schema import PAGE_PARAMETERS, error_examples, public_errors

EXAMPLE_EVENT = {"event_id": "5b1d0c7e-2a3f-4e6d-9b8c-7a6f5e4d3c2b", "occurred_at": "2026-12-01T09:12:44Z",
                 "received_at": "2026-12-01T09:12:50Z", "user": "alice@example.com", "device": "alice-laptop",
                 "event_type": "created", "path": "/media/alice/USB/payroll.xlsx", "dest_path": "",
                 "file_name": "payroll.xlsx", "size": 482133, "sha256": "9f" * 32, "category": "spreadsheet",
                 "mime_type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                 "vector": "removable_media", "source": "agent", "process": ""}


class PublicEventQuerySerializer(serializers.Serializer):
    user = serializers.CharField(required=False, max_length=254, help_text="The user's email contains this")
    device = serializers.CharField(required=False, max_length=200, help_text="The device's name contains this")
    path = serializers.CharField(required=False, min_length=3, max_length=500, help_text="The path contains this")
    file_name = serializers.CharField(required=False, max_length=255, help_text="Exactly this file name")
    sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", required=False)
    vector = serializers.ChoiceField(choices=Vector.values, required=False)
    category = serializers.ChoiceField(choices=EventCategory.values, required=False)
    event_type = serializers.ChoiceField(choices=EventType.values, required=False)
    since = serializers.DateTimeField(required=False, help_text="occurred_at at or after (ISO 8601)")
    until = serializers.DateTimeField(required=False, help_text="occurred_at at or before (ISO 8601)")

    def validate_sha256(self, value):
        return value.lower()


class PublicEventSerializer(serializers.Serializer):
    event_id = serializers.UUIDField()
    occurred_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    user = serializers.EmailField(source="user.email", allow_null=True, default=None)
    device = serializers.CharField(source="device.name", allow_null=True, default=None,
                                   help_text="Null for events pulled from a cloud service")
    event_type = serializers.ChoiceField(choices=EventType.values)
    path = serializers.CharField()
    dest_path = serializers.CharField(allow_blank=True, help_text="The new path of a rename")
    file_name = serializers.CharField()
    size = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField(allow_blank=True)
    category = serializers.ChoiceField(choices=EventCategory.values)
    mime_type = serializers.CharField(allow_blank=True)
    vector = serializers.ChoiceField(choices=["", *Vector.values], allow_blank=True,
                                     help_text="The exfiltration vector; empty for ordinary activity")
    source = serializers.CharField(source="batch.source", help_text="agent, or the cloud-service connector")
    process = serializers.CharField(allow_blank=True)

    class Meta:
        ref_name = "PublicFileEvent"


class PublicEventPageSerializer(serializers.Serializer):
    results = PublicEventSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="Pass as `cursor` for the next page; null on the last")

    class Meta:
        ref_name = "PublicFileEventPage"


_QUERY = [OpenApiParameter(name, OpenApiTypes.DATETIME if name in ("since", "until") else OpenApiTypes.STR,
                           OpenApiParameter.QUERY, required=False, description=field.help_text or "",
                           enum=list(field.choices) if isinstance(field, serializers.ChoiceField) else None)
          for name, field in PublicEventQuerySerializer().fields.items()]


class PublicEventsApi(PublicApiView):
    """The organization's file-activity events, newest first, filtered as the console's search."""

    required_scope = "events:read"

    @extend_schema(operation_id="public_events_list", tags=["public"], parameters=[*_QUERY, *PAGE_PARAMETERS],
                   responses={200: PublicEventPageSerializer, **public_errors(400)},
                   examples=[OpenApiExample("Events", response_only=True, status_codes=["200"],
                                            value={"results": [EXAMPLE_EVENT], "next": "WyIyMDI2LTEyLTAxIiw0Ml0"}),
                             *error_examples()])
    def get(self, request):
        query = PublicEventQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        limit = page_limit(request)
        organization_id = self.client.organization_id
        events = events_matching(FileEvent.objects.filter(organization_id=organization_id), organization_id,
                                 query.validated_data).select_related("batch")
        try:
            rows, cursor = file_events_page(events, cursor=request.query_params.get("cursor", ""), limit=limit)
        except CursorInvalid as error:
            raise exceptions.ValidationError({"cursor": [str(error)]}) from None
        return Response({"results": PublicEventSerializer(rows, many=True).data, "next": cursor})
