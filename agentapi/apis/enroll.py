"""Enrollment: a device proves its user's credentials (or a one-time code) and gets its token."""
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.network import client_address
from accounts.services import (
    AuthenticationRefused,
    AuthenticationThrottled,
    credentials_check,
    enrollment_code_redeem,
)
from agentapi.schema import errors
from archives.services import DeviceDeauthorized, device_enroll


class EnrollApi(APIView):
    """Enroll a device with the user's email and password; returns the device's token once."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        email = serializers.EmailField(max_length=254, required=False)
        password = serializers.CharField(max_length=1024, trim_whitespace=False, required=False)
        code = serializers.CharField(max_length=40, required=False,
                                     help_text="One-time code from the console (single sign-on users)")
        device_name = serializers.CharField(max_length=200)
        os = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
        agent_version = serializers.CharField(max_length=50, required=False, default="", allow_blank=True)
        device_id = serializers.UUIDField(required=False, allow_null=True, default=None,
                                          help_text="Set when an enrolled agent enrolls again")

        class Meta:
            ref_name = "EnrollRequest"

        def validate(self, attrs):
            if attrs.get("code") and not attrs.get("email") and not attrs.get("password"):
                return attrs
            if attrs.get("email") and attrs.get("password") and not attrs.get("code"):
                return attrs
            raise serializers.ValidationError("give either email and password, or a one-time code")

    class OutputSerializer(serializers.Serializer):
        device_id = serializers.UUIDField()
        archive_id = serializers.UUIDField()
        user_id = serializers.UUIDField()
        user_email = serializers.EmailField()
        organization_id = serializers.UUIDField()
        token = serializers.CharField(help_text="The device token, shown this once (`Authorization: Bearer …`)")

        class Meta:
            ref_name = "Enrollment"

    @extend_schema(operation_id="enroll", request=InputSerializer,
                   responses={201: OutputSerializer, **errors(400, 401, 403, 413, 415, 429)},
                   auth=[])
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        address = client_address(request)
        try:
            if fields.get("code"):
                user = enrollment_code_redeem(code=fields["code"], address=address)
            else:
                user = credentials_check(email=fields["email"], password=fields["password"], address=address)
        except AuthenticationThrottled as throttled:
            raise exceptions.Throttled(wait=throttled.retry_after, detail="Too many enrollment attempts",
                                       code="throttled") from None
        except AuthenticationRefused as refused:
            message = str(refused) if fields.get("code") else "Wrong email or password"
            raise exceptions.AuthenticationFailed(message, code="invalid_credentials") from None
        try:
            device, archive, token = device_enroll(
                user=user, device_name=fields["device_name"], os_name=fields["os"],
                agent_version=fields["agent_version"], device_uuid=fields["device_id"],
            )
        except DeviceDeauthorized as refused:
            raise exceptions.PermissionDenied(str(refused), code="device_deauthorized") from None
        output = self.OutputSerializer({
            "device_id": device.uuid, "archive_id": archive.uuid, "user_id": user.uuid, "user_email": user.email,
            "organization_id": user.organization.uuid, "token": token,
        })
        return Response(output.data, status=status.HTTP_201_CREATED)

    def get_authenticate_header(self, request):
        return 'Bearer realm="haven-agent"'
