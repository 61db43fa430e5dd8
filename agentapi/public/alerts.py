"""Alerts through the public API, for SOAR tools and scripts: list with filters and a cursor, one
alert with its history, and every triage action of the console (status, assignee, notes).

Reads need `alerts:read`, changes `alerts:write`. A client acts by its scope inside its own
organization; the alert's history and the audit log name the client, never a person."""
from django.http import Http404
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from accounts.services import PermissionRefused
from activity.alerts import MAX_NOTE_LENGTH, alert_assign, alert_note, alert_set_status
from activity.models import Alert, AlertEntry
from activity.selectors import (
    ASSIGNEE_NONE,
    STATUS_FILTERS,
    AlertFilters,
    alert_assignee_for,
    alert_for_client,
    alert_history,
    alerts_filtered,
    alerts_of_client,
)
from agentapi.apis.common import body_limit
from agentapi.public.base import PublicApiView, cursor_decode, page, page_limit
from agentapi.public.schema import ALERT_UUID, PAGE_PARAMETERS, error_examples, public_errors

# Named in the schema through ENUM_NAME_OVERRIDES (several serializers have a `status`).
ALERT_STATUSES = list(Alert.Status.values)
ALERT_SEVERITIES = list(Alert.Severity.values)
ALERT_ACTIONS = list(AlertEntry.Action.values)
BODY_LIMIT = 64 * 1024
_ID = "5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
EXAMPLE_ALERT = {
    "id": _ID, "kind": "removable_media", "severity": "high", "status": "open",
    "title": "bob@example.com copied 52 MB to removable media", "detail": {"files": ["/home/bob/q3.xlsx"],
                                                                          "total_bytes": 52428800},
    "subject_user": "bob@example.com", "device": "6f1c2a7e-3b5d-4c8e-9a1f-2d3e4f5a6b7c",
    "archive": None, "assignee": None, "occurrences": 1, "created_at": "2026-12-01T09:00:00Z",
    "last_seen_at": "2026-12-01T09:00:00Z", "resolved_at": None}


class PublicAlertSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    kind = serializers.CharField(help_text="What raised it: stale_device, verify_failed, removable_media…")
    severity = serializers.ChoiceField(choices=ALERT_SEVERITIES)
    status = serializers.ChoiceField(choices=ALERT_STATUSES)
    title = serializers.CharField()
    detail = serializers.JSONField(help_text="The facts: files, sizes, vectors, thresholds (varies by kind)")
    subject_user = serializers.EmailField(source="subject_user.email", allow_null=True, default=None)
    device = serializers.UUIDField(source="device.uuid", allow_null=True, default=None)
    archive = serializers.UUIDField(source="archive_uuid", allow_null=True)
    assignee = serializers.EmailField(source="assignee.email", allow_null=True, default=None)
    occurrences = serializers.IntegerField(help_text="Times the condition was seen while unresolved")
    created_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "PublicAlert"


class PublicAlertEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    action = serializers.ChoiceField(choices=ALERT_ACTIONS)
    actor = serializers.CharField(source="actor_label", help_text="Email, API client, or `system`")
    from_status = serializers.CharField(allow_blank=True)
    to_status = serializers.CharField(allow_blank=True)
    text = serializers.CharField(allow_blank=True, help_text="The note, or the assignee's email when assigned")

    class Meta:
        ref_name = "PublicAlertEntry"


class PublicAlertDetailSerializer(PublicAlertSerializer):
    history = PublicAlertEntrySerializer(many=True, help_text="Oldest first")

    class Meta:
        ref_name = "PublicAlertDetail"


class PublicAlertPageSerializer(serializers.Serializer):
    results = PublicAlertSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="Pass as `cursor` for the next page; null on the last")

    class Meta:
        ref_name = "PublicAlertPage"


class PublicAlertStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ALERT_STATUSES, help_text="acknowledged, resolved, or open to reopen")
    note = serializers.CharField(required=False, allow_blank=True, max_length=MAX_NOTE_LENGTH, default="")

    class Meta:
        ref_name = "PublicAlertStatusChange"


class PublicAlertAssignSerializer(serializers.Serializer):
    assignee = serializers.CharField(allow_null=True, max_length=254,
                                     help_text="Email or UUID of an administrator or security analyst of the "
                                               "organization; null to unassign")

    class Meta:
        ref_name = "PublicAlertAssign"


class PublicAlertNoteSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=MAX_NOTE_LENGTH)

    class Meta:
        ref_name = "PublicAlertNote"


def _detail(alert: Alert) -> dict:
    alert.history = list(alert_history(alert))
    return PublicAlertDetailSerializer(alert).data


def _filters(params) -> AlertFilters:
    errors = {}
    state = params.get("status", "unresolved")
    if state not in STATUS_FILTERS:
        errors["status"] = [f"Give one of {', '.join(STATUS_FILTERS)}"]
    severity = params.get("severity", "")
    if severity and severity not in ALERT_SEVERITIES:
        errors["severity"] = [f"Give one of {', '.join(ALERT_SEVERITIES)}"]
    kind = params.get("kind", "")
    if len(kind) > 64:
        errors["kind"] = ["At most 64 characters"]
    if errors:
        raise exceptions.ValidationError(errors)
    return AlertFilters(status=state, kind=kind, severity=severity, assignee=params.get("assignee", ""))


def _position(raw) -> int | None:
    position = cursor_decode(raw)
    if position is not None and (not isinstance(position, int) or isinstance(position, bool)):
        raise exceptions.ValidationError({"cursor": ["Not a cursor this API returned"]})
    return position


LIST_PARAMETERS = [
    OpenApiParameter("status", str, OpenApiParameter.QUERY, required=False, enum=STATUS_FILTERS,
                     description="`unresolved` (default: open or acknowledged), one status, or `any`"),
    OpenApiParameter("severity", str, OpenApiParameter.QUERY, required=False, enum=ALERT_SEVERITIES),
    OpenApiParameter("kind", str, OpenApiParameter.QUERY, required=False, description="e.g. stale_device"),
    OpenApiParameter("assignee", str, OpenApiParameter.QUERY, required=False,
                     description="Email or UUID of the assignee, or `none` for unassigned alerts"),
    *PAGE_PARAMETERS,
]


class PublicAlertsApi(PublicApiView):
    """The organization's alerts, newest raised first."""

    required_scope = "alerts:read"

    @extend_schema(operation_id="public_alerts_list", tags=["public"], parameters=LIST_PARAMETERS,
                   responses={200: PublicAlertPageSerializer, **public_errors(400)},
                   examples=[OpenApiExample("Alerts", value={"results": [EXAMPLE_ALERT], "next": None},
                                            response_only=True, status_codes=["200"]), *error_examples()])
    def get(self, request):
        filters = _filters(request.query_params)
        alerts = alerts_of_client(self.client)
        if filters.assignee and filters.assignee != ASSIGNEE_NONE:
            try:
                person = alert_assignee_for(self.client.organization_id, filters.assignee)
            except Http404:
                raise exceptions.ValidationError(
                    {"assignee": ["No administrator or security analyst of the organization has this email "
                                  "or UUID"]}) from None
            filters = AlertFilters(status=filters.status, kind=filters.kind, severity=filters.severity,
                                   assignee=str(person.uuid))
        limit = page_limit(request)
        before = _position(request.query_params.get("cursor"))
        alerts = alerts_filtered(alerts, filters).order_by("-pk")
        if before is not None:
            alerts = alerts.filter(pk__lt=before)
        rows, cursor = page(list(alerts[:limit + 1]), limit, lambda alert: alert.pk)
        return Response({"results": PublicAlertSerializer(rows, many=True).data, "next": cursor})


class PublicAlertApi(PublicApiView):
    """One alert with its history (every status change, assignment and note)."""

    required_scope = "alerts:read"

    @extend_schema(operation_id="public_alert", tags=["public"], parameters=[ALERT_UUID],
                   responses={200: PublicAlertDetailSerializer, **public_errors(404)},
                   examples=[OpenApiExample("Alert", response_only=True, status_codes=["200"], value={
                       **EXAMPLE_ALERT, "history": [{"at": "2026-12-01T09:00:00Z", "action": "raised",
                                                     "actor": "system", "from_status": "", "to_status": "open",
                                                     "text": EXAMPLE_ALERT["title"]}]}), *error_examples()])
    def get(self, request, alert_id):
        return Response(_detail(alert_for_client(self.client, alert_id)))


def _refused(error: Exception, field: str):
    if isinstance(error, PermissionRefused):
        return exceptions.PermissionDenied(str(error), code="not_allowed")
    return exceptions.ValidationError({field: [str(error)]})


class _AlertWriteApi(PublicApiView):
    required_scope = "alerts:write"

    def body(self, request, serializer_class):
        body_limit(request, BODY_LIMIT)
        data = serializer_class(data=request.data)
        data.is_valid(raise_exception=True)
        return data.validated_data


class PublicAlertStatusApi(_AlertWriteApi):
    """Acknowledge, resolve or reopen an alert, with an optional note; the alert is returned."""

    @extend_schema(operation_id="public_alert_status", tags=["public"], parameters=[ALERT_UUID],
                   request=PublicAlertStatusSerializer,
                   responses={200: PublicAlertDetailSerializer, **public_errors(400, 404, 411, 413, 415)},
                   examples=[OpenApiExample("Resolve", request_only=True,
                                            value={"status": "resolved", "note": "User confirmed: a backup drive"}),
                             *error_examples()])
    def post(self, request, alert_id):
        alert = alert_for_client(self.client, alert_id)
        data = self.body(request, PublicAlertStatusSerializer)
        try:
            alert = alert_set_status(alert=alert, actor=None, client=self.client, status=data["status"],
                                     note=data["note"].strip())
        except (ValueError, PermissionRefused) as refused:
            raise _refused(refused, "status") from None
        return Response(_detail(alert_for_client(self.client, alert.uuid)))


class PublicAlertAssignApi(_AlertWriteApi):
    """Assign an alert to an administrator or security analyst of the organization, or unassign it."""

    @extend_schema(operation_id="public_alert_assign", tags=["public"], parameters=[ALERT_UUID],
                   request=PublicAlertAssignSerializer,
                   responses={200: PublicAlertDetailSerializer, **public_errors(400, 404, 411, 413, 415)},
                   examples=[OpenApiExample("Assign", request_only=True, value={"assignee": "sam@example.com"}),
                             *error_examples()])
    def post(self, request, alert_id):
        alert = alert_for_client(self.client, alert_id)
        data = self.body(request, PublicAlertAssignSerializer)
        assignee = None
        if data["assignee"] not in (None, ""):
            try:
                assignee = alert_assignee_for(alert.organization_id, data["assignee"])
            except Http404:
                raise exceptions.ValidationError({"assignee": [
                    "No administrator or security analyst of the organization has this email or UUID"]}) from None
        try:
            alert_assign(alert=alert, actor=None, client=self.client, assignee=assignee)
        except PermissionRefused as refused:
            raise _refused(refused, "assignee") from None
        return Response(_detail(alert_for_client(self.client, alert.uuid)))


class PublicAlertNotesApi(_AlertWriteApi):
    """Add a note to an alert's history."""

    @extend_schema(operation_id="public_alert_note", tags=["public"], parameters=[ALERT_UUID],
                   request=PublicAlertNoteSerializer,
                   responses={201: PublicAlertEntrySerializer, **public_errors(400, 404, 411, 413, 415)},
                   examples=[OpenApiExample("Note", request_only=True,
                                            value={"text": "Ticket INC-4411 opened by the SOAR playbook"}),
                             *error_examples()])
    def post(self, request, alert_id):
        alert = alert_for_client(self.client, alert_id)
        data = self.body(request, PublicAlertNoteSerializer)
        try:
            entry = alert_note(alert=alert, actor=None, client=self.client, text=data["text"])
        except (ValueError, PermissionRefused) as refused:
            raise _refused(refused, "text") from None
        return Response(PublicAlertEntrySerializer(entry).data, status=status.HTTP_201_CREATED)

