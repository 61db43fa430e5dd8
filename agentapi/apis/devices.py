"""The calling device and the archives it may read."""
from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from agentapi.schema import ARCHIVE_ID, AUTHENTICATED, errors
from archives.selectors import archive_for_device, archives_readable_by_device
from archives.services import archive_for_device_ensure


class DeviceApi(APIView):
    """The calling device: who it is, whose it is, and its archive."""

    class OutputSerializer(serializers.Serializer):
        device_id = serializers.UUIDField(source="uuid")
        name = serializers.CharField()
        os = serializers.CharField()
        agent_version = serializers.CharField()
        authorized = serializers.BooleanField()
        last_seen_at = serializers.DateTimeField(allow_null=True)
        user_email = serializers.EmailField(source="owner.email")
        user_id = serializers.UUIDField(source="owner.uuid")
        organization_id = serializers.UUIDField(source="organization.uuid")
        archive_id = serializers.SerializerMethodField()

        class Meta:
            ref_name = "Device"

        @extend_schema_field(OpenApiTypes.UUID)
        def get_archive_id(self, device) -> str:
            return str(self.context["archive"].uuid)

    @extend_schema(operation_id="device", responses={200: OutputSerializer, **errors(401)})
    def get(self, request):
        device = request.user.device
        with transaction.atomic():
            archive = archive_for_device_ensure(device=device)
        return Response(self.OutputSerializer(device, context={"archive": archive}).data)


class ArchiveApi(APIView):
    """One archive the device may read (its own or another of its user's devices)."""

    class OutputSerializer(serializers.Serializer):
        archive_id = serializers.UUIDField(source="uuid")
        device_id = serializers.UUIDField(source="device.uuid")
        device_name = serializers.CharField(source="device.name")
        created_at = serializers.DateTimeField()

        class Meta:
            ref_name = "Archive"

    @extend_schema(operation_id="archive", parameters=[ARCHIVE_ID],
                   responses={200: OutputSerializer, **errors(*AUTHENTICATED)})
    def get(self, request, archive_id):
        archive = archive_for_device(request.user.device, archive_id)
        return Response(self.OutputSerializer(archive).data)


class ArchiveListApi(APIView):
    """The archives this device may read: every archive of its user (computer replacement)."""

    class OutputSerializer(serializers.Serializer):
        archives = ArchiveApi.OutputSerializer(many=True)

        class Meta:
            ref_name = "ArchiveList"

    @extend_schema(operation_id="archives_list", responses={200: OutputSerializer, **errors(401)})
    def get(self, request):
        archives = archives_readable_by_device(request.user.device).order_by("created_at")
        return Response({"archives": ArchiveApi.OutputSerializer(archives, many=True).data})
