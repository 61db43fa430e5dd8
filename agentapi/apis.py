"""Agent endpoints: validate input, check access, call one service, serialize output."""
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.services import AuthenticationRefused, AuthenticationThrottled, credentials_check
from archives.selectors import archive_for_device
from archives.services import DeviceDeauthorized, archive_for_device_ensure, device_enroll


class EnrollApi(APIView):
    """Enroll a device with the user's email and password; returns the device's token once."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        email = serializers.EmailField(max_length=254)
        password = serializers.CharField(max_length=1024, trim_whitespace=False)
        device_name = serializers.CharField(max_length=200)
        os = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
        agent_version = serializers.CharField(max_length=50, required=False, default="", allow_blank=True)
        device_id = serializers.UUIDField(required=False, allow_null=True, default=None,
                                          help_text="Set when an enrolled agent enrolls again")

    class OutputSerializer(serializers.Serializer):
        device_id = serializers.UUIDField()
        archive_id = serializers.UUIDField()
        user_id = serializers.UUIDField()
        organization_id = serializers.UUIDField()
        token = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer}, auth=[])
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        try:
            user = credentials_check(email=fields["email"], password=fields["password"],
                                     address=request.META.get("REMOTE_ADDR", ""))
        except AuthenticationThrottled as throttled:
            raise exceptions.Throttled(wait=throttled.retry_after, detail="Too many enrollment attempts",
                                       code="throttled") from None
        except AuthenticationRefused:
            raise exceptions.AuthenticationFailed("Wrong email or password", code="invalid_credentials") from None
        try:
            device, archive, token = device_enroll(
                user=user, device_name=fields["device_name"], os_name=fields["os"],
                agent_version=fields["agent_version"], device_uuid=fields["device_id"],
            )
        except DeviceDeauthorized as refused:
            raise exceptions.PermissionDenied(str(refused), code="device_deauthorized") from None
        output = self.OutputSerializer({
            "device_id": device.uuid, "archive_id": archive.uuid, "user_id": user.uuid,
            "organization_id": user.organization.uuid, "token": token,
        })
        return Response(output.data, status=status.HTTP_201_CREATED)

    def get_authenticate_header(self, request):
        return 'Bearer realm="haven-agent"'


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
