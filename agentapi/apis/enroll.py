"""Enrollment: a device proves its user's credentials (or a one-time code, or a deployment token
with the user's email) and gets its token."""
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.deployment import DeploymentTokenRefused
from accounts.network import client_address
from accounts.services import (
    AuthenticationRefused,
    AuthenticationThrottled,
    credentials_check,
    enrollment_code_redeem,
)
from agentapi.schema import ErrorSerializer, errors
from archives.services import DeviceDeauthorized, device_enroll, device_enroll_by_token


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
        return _enrolled(device=device, archive=archive, user=user, token=token)

    def get_authenticate_header(self, request):
        return 'Bearer realm="haven-agent"'


# How each refusal of a deployment token answers: the token itself is wrong (401), or it does
# not enroll this user (403), or a race to create the same user (409). All store nothing.
_TOKEN_REFUSALS = {"deployment_token_invalid": exceptions.AuthenticationFailed}


class DeploymentEnrollApi(APIView):
    """Enroll a device non-interactively (MDM, Ansible, Intune) with an administrator's deployment
    token and the user's email; returns the device's token once. Nothing is stored when refused."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        deployment_token = serializers.CharField(max_length=200, trim_whitespace=True,
                                                 help_text="From the console (Deployment) or manage.py deploytoken")
        user_email = serializers.EmailField(max_length=254, help_text="The user this device backs up")
        device_name = serializers.CharField(max_length=200)
        os = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
        agent_version = serializers.CharField(max_length=50, required=False, default="", allow_blank=True)
        device_id = serializers.UUIDField(required=False, allow_null=True, default=None,
                                          help_text="Set when an enrolled agent enrolls again")

        class Meta:
            ref_name = "DeploymentEnrollRequest"

    @extend_schema(
        operation_id="enroll_deployment", request=InputSerializer, auth=[],
        responses={201: EnrollApi.OutputSerializer, **errors(400, 413, 415, 429),
                   401: OpenApiResponse(ErrorSerializer, description="`deployment_token_invalid`: unknown token"),
                   403: OpenApiResponse(ErrorSerializer, description=(
                       "`deployment_token_expired`, `deployment_token_exhausted`, `deployment_token_revoked`, "
                       "`user_unknown`, `user_inactive`, `domain_not_verified`, `user_has_key`, `group_grants_role` or "
                       "`device_deauthorized`")),
                   409: OpenApiResponse(ErrorSerializer, description="`conflict`: the user was created meanwhile")})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        try:
            user, device, archive, token = device_enroll_by_token(
                raw_token=fields["deployment_token"], email=fields["user_email"], device_name=fields["device_name"],
                os_name=fields["os"], agent_version=fields["agent_version"], device_uuid=fields["device_id"],
                address=client_address(request))
        except AuthenticationThrottled as throttled:
            raise exceptions.Throttled(wait=throttled.retry_after, detail="Too many enrollment attempts",
                                       code="throttled") from None
        except DeploymentTokenRefused as refused:
            if refused.code == "conflict":
                return Response({"detail": str(refused), "code": refused.code}, status=status.HTTP_409_CONFLICT)
            raise _TOKEN_REFUSALS.get(refused.code, exceptions.PermissionDenied)(str(refused), code=refused.code) from None
        except DeviceDeauthorized as refused:
            raise exceptions.PermissionDenied(str(refused), code="device_deauthorized") from None
        return _enrolled(device=device, archive=archive, user=user, token=token)

    def get_authenticate_header(self, request):
        return 'Bearer realm="haven-agent"'


def _enrolled(*, device, archive, user, token: str) -> Response:
    """The 201 answer of both enrollments (password and deployment token)."""
    output = EnrollApi.OutputSerializer({
        "device_id": device.uuid, "archive_id": archive.uuid, "user_id": user.uuid, "user_email": user.email,
        "organization_id": user.organization.uuid, "token": token,
    })
    return Response(output.data, status=status.HTTP_201_CREATED)
