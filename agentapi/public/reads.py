"""Read endpoints of the public API: devices, an archive's backup runs, the audit log."""
from datetime import datetime

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from agentapi.public.base import PublicApiView, cursor_decode, page, page_limit
from agentapi.public.schema import ARCHIVE_UUID, PAGE_PARAMETERS, error_examples, public_errors
from agentapi.public.selectors import audit_of_client, audit_position, devices_of_client, runs_of_archive
from archives.restore_requests import archive_for_client

# Every state a backup run can be in (named in the schema through ENUM_NAME_OVERRIDES).
BACKUP_RUN_STATUSES = ["running", "completed", "failed", "interrupted"]
EXAMPLE_DEVICE = {"uuid": "6f1c2a7e-3b5d-4c8e-9a1f-2d3e4f5a6b7c", "name": "alice-laptop",
                  "user": "alice@example.com", "archive": "0b9d8c7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e",
                  "last_complete_backup": "2026-11-30T22:14:05Z", "os": "Linux 6.1", "agent_version": "1.4.0",
                  "authorized": True, "last_seen_at": "2026-12-01T08:00:12Z"}


def _int_position(raw) -> int | None:
    position = cursor_decode(raw)
    if position is not None and not isinstance(position, int):
        raise exceptions.ValidationError({"cursor": ["Not a cursor this API returned"]})
    return position


class PublicDeviceSerializer(serializers.Serializer):
    uuid = serializers.UUIDField()
    name = serializers.CharField()
    user = serializers.EmailField(source="owner.email", help_text="The owner's email")
    archive = serializers.UUIDField(source="archive_uuid", allow_null=True,
                                    help_text="The device's archive; null before its first backup")
    last_complete_backup = serializers.DateTimeField(allow_null=True,
                                                     help_text="When the newest completed backup ended")
    os = serializers.CharField()
    agent_version = serializers.CharField()
    authorized = serializers.BooleanField()
    last_seen_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "PublicDevice"


class PublicDevicePageSerializer(serializers.Serializer):
    results = PublicDeviceSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="Pass as `cursor` for the next page; null on the last")

    class Meta:
        ref_name = "PublicDevicePage"


class PublicDevicesApi(PublicApiView):
    """The organization's devices, in enrollment order."""

    required_scope = "devices:read"

    @extend_schema(operation_id="public_devices_list", tags=["public"], parameters=PAGE_PARAMETERS,
                   responses={200: PublicDevicePageSerializer, **public_errors(400)},
                   examples=[OpenApiExample("Devices", value={"results": [EXAMPLE_DEVICE], "next": "MTIz"},
                                            response_only=True, status_codes=["200"]), *error_examples()])
    def get(self, request):
        limit = page_limit(request)
        rows, cursor = page(devices_of_client(self.client, after=_int_position(request.query_params.get("cursor")),
                                              limit=limit), limit, lambda device: device.pk)
        return Response({"results": PublicDeviceSerializer(rows, many=True).data, "next": cursor})


class PublicRunSerializer(serializers.Serializer):
    uuid = serializers.UUIDField()
    status = serializers.ChoiceField(choices=BACKUP_RUN_STATUSES)
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    files_scanned = serializers.IntegerField()
    bytes_scanned = serializers.IntegerField()
    files_changed = serializers.IntegerField()
    bytes_sent = serializers.IntegerField()
    bytes_received = serializers.IntegerField()
    versions_committed = serializers.IntegerField()
    errors = serializers.ListField(child=serializers.CharField())

    class Meta:
        ref_name = "PublicBackupRun"


class PublicRunPageSerializer(serializers.Serializer):
    results = PublicRunSerializer(many=True)
    next = serializers.CharField(allow_null=True)

    class Meta:
        ref_name = "PublicBackupRunPage"


class PublicArchiveRunsApi(PublicApiView):
    """One archive's backup runs, newest first: interrupted and failed ones too, with their errors."""

    required_scope = "archives:read"

    @extend_schema(operation_id="public_archive_runs", tags=["public"], parameters=[ARCHIVE_UUID, *PAGE_PARAMETERS],
                   responses={200: PublicRunPageSerializer, **public_errors(400, 404)},
                   examples=[OpenApiExample("Runs", response_only=True, status_codes=["200"], value={
                       "results": [{"uuid": "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d", "status": "completed",
                                    "started_at": "2026-11-30T22:00:00Z", "finished_at": "2026-11-30T22:14:05Z",
                                    "files_scanned": 48211, "bytes_scanned": 20132659200, "files_changed": 12,
                                    "bytes_sent": 5242880, "bytes_received": 5311488, "versions_committed": 12,
                                    "errors": []}], "next": None}), *error_examples()])
    def get(self, request, archive_id):
        archive = archive_for_client(self.client, archive_id)
        limit = page_limit(request)
        rows, cursor = page(runs_of_archive(archive, before=_int_position(request.query_params.get("cursor")),
                                            limit=limit), limit, lambda run: run.pk)
        return Response({"results": PublicRunSerializer(rows, many=True).data, "next": cursor})


class PublicAuditEntrySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["audit", "key_access"],
                                   help_text="`audit`: an administrative action; `key_access`: a use of a user's key")
    uuid = serializers.UUIDField()
    occurred_at = serializers.DateTimeField()
    actor = serializers.CharField(help_text="Email, API client or system component")
    action = serializers.CharField(help_text="`audit`: the action; `key_access`: the purpose")
    target_type = serializers.CharField()
    target = serializers.UUIDField(allow_null=True)
    outcome = serializers.CharField(allow_blank=True, help_text="`key_access` only: started, succeeded, failed, refused")
    detail = serializers.JSONField()

    class Meta:
        ref_name = "PublicAuditEntry"


class PublicAuditPageSerializer(serializers.Serializer):
    results = PublicAuditEntrySerializer(many=True)
    next = serializers.CharField(allow_null=True)

    class Meta:
        ref_name = "PublicAuditPage"


def _audit_entry(kind: str, row) -> dict:
    if kind == "audit":
        return {"kind": kind, "uuid": row.uuid, "occurred_at": row.occurred_at, "actor": row.actor_label,
                "action": row.action, "target_type": row.target_type, "target": row.target_uuid, "outcome": "",
                "detail": row.detail}
    return {"kind": kind, "uuid": row.uuid, "occurred_at": row.occurred_at, "actor": row.actor_label,
            "action": row.purpose, "target_type": "user_key", "target": row.subject.uuid, "outcome": row.outcome,
            "detail": {"subject": row.subject_email, "job": row.job, "detail": row.detail, "seq": row.seq}}


def _audit_cursor(raw) -> tuple[datetime, int, int] | None:
    position = cursor_decode(raw)
    if position is None:
        return None
    try:
        at, rank, pk = position
        return datetime.fromisoformat(at), int(rank), int(pk)
    except (TypeError, ValueError):
        raise exceptions.ValidationError({"cursor": ["Not a cursor this API returned"]}) from None


class PublicAuditApi(PublicApiView):
    """The organization's audit log and key-access log, newest first, merged."""

    required_scope = "audit:read"

    @extend_schema(operation_id="public_audit", tags=["public"], parameters=[*PAGE_PARAMETERS, OpenApiParameter(
                       "kind", str, OpenApiParameter.QUERY, required=False, enum=["audit", "key_access"],
                       description="Only administrative events, or only key accesses")],
                   responses={200: PublicAuditPageSerializer, **public_errors(400)},
                   examples=[OpenApiExample("Audit", response_only=True, status_codes=["200"], value={"results": [
                       {"kind": "audit", "uuid": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
                        "occurred_at": "2026-12-01T09:00:00Z", "actor": "alice@example.com",
                        "action": "device.deauthorize", "target_type": "device",
                        "target": "6f1c2a7e-3b5d-4c8e-9a1f-2d3e4f5a6b7c", "outcome": "", "detail": {}},
                       {"kind": "key_access", "uuid": "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a",
                        "occurred_at": "2026-12-01T08:59:00Z", "actor": "alice@example.com (web restore)",
                        "action": "web_restore", "target_type": "user_key",
                        "target": "3e4f5a6b-7c8d-4e9f-8a1b-2c3d4e5f6a7b", "outcome": "succeeded",
                        "detail": {"subject": "bob@example.com", "job": "4f5a6b7c-8d9e-4f0a-9b1c-2d3e4f5a6b7c",
                                   "detail": "", "seq": 42}}], "next": "WyIyMDI2LTEyLTAxVDA4OjU5OjAwKzAwOjAwIiwwLDQyXQ"}),
                       *error_examples()])
    def get(self, request):
        kind = request.query_params.get("kind", "")
        if kind not in ("", "audit", "key_access"):
            raise exceptions.ValidationError({"kind": ["Give audit or key_access"]})
        limit = page_limit(request)
        rows = audit_of_client(self.client, cursor=_audit_cursor(request.query_params.get("cursor")), limit=limit,
                               kind=kind)
        rows, cursor = page(rows, limit, lambda row: audit_position(*row))
        return Response({"results": PublicAuditEntrySerializer([_audit_entry(*r) for r in rows], many=True).data,
                         "next": cursor})
