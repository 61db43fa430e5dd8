"""The calling device and the archives it may read."""
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

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
        last_seen_at = serializers.DateTimeField()
        user_email = serializers.EmailField(source="owner.email")
        user_id = serializers.UUIDField(source="owner.uuid")
        organization_id = serializers.UUIDField(source="organization.uuid")

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request):
        device = request.user.device
        body = dict(self.OutputSerializer(device).data)
        with transaction.atomic():
            body["archive_id"] = str(archive_for_device_ensure(device=device).uuid)
        return Response(body)


class ArchiveApi(APIView):
    """One archive the device may read (its own or another of its user's devices)."""

    class OutputSerializer(serializers.Serializer):
        archive_id = serializers.UUIDField(source="uuid")
        device_id = serializers.UUIDField(source="device.uuid")
        device_name = serializers.CharField(source="device.name")
        created_at = serializers.DateTimeField()

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request, archive_id):
        archive = archive_for_device(request.user.device, archive_id)
        return Response(self.OutputSerializer(archive).data)


class ArchiveListApi(APIView):
    """The archives this device may read: every archive of its user (computer replacement)."""

    @extend_schema(responses={200: ArchiveApi.OutputSerializer(many=True)})
    def get(self, request):
        archives = archives_readable_by_device(request.user.device).order_by("created_at")
        return Response({"archives": ArchiveApi.OutputSerializer(archives, many=True).data})
