"""What the published OpenAPI schema says beyond the serializers: the device-token scheme, the
error body every 4xx/5xx carries, and the wrapper bodies views build as plain dicts for speed.

Schemathesis checks the live server against this schema (tests/e2e/test_schemathesis.py), so a
body documented here that a view does not return fails the suite.
"""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

BLOCK_ID_PATTERN = r"^[0-9a-fA-F]{64}$"
PATH_ID_PATTERN = r"^[0-9a-f]{64}$"
ARCHIVE_ID = OpenApiParameter("archive_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
RUN_ID = OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class DeviceTokenScheme(OpenApiAuthenticationExtension):
    target_class = "agentapi.authentication.DeviceTokenAuthentication"
    name = "deviceToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "hvd_…",
                "description": "The device token `POST /api/v1/enroll` returned once: `Authorization: Bearer hvd_…`."}


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "agentapi.public.base.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "hvp_…",
                "description": "A public-API key from the console (API clients) or `manage.py apiclient`: "
                               "`Authorization: Bearer hvp_…`. Each call needs the scope its operation names."}


class ErrorSerializer(serializers.Serializer):
    """Every error answer: a human `detail` and a `code` agents switch on (agentapi/exceptions.py)."""

    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(required=False, help_text="Per-field problems, when `code` is `invalid`")
    block_ids = serializers.ListField(child=serializers.CharField(), required=False,
                                      help_text="The blocks concerned (at most 1,000), for `missing_blocks` and "
                                                "`blocks_not_found`")

    index = serializers.IntegerField(required=False, help_text="The first invalid event of a refused event "
                                                               "batch (`invalid_events`)")
    field = serializers.CharField(required=False, help_text="That event's invalid field")

    class Meta:
        ref_name = "Error"


_ERRORS = {
    400: "The request is malformed or invalid",
    401: "Missing, unknown or revoked device token (enrollment: wrong email, password or code)",
    403: "The device was deauthorized by an administrator",
    404: "No such archive, run or blocks (or not readable by this device)",
    409: "Conflicts with the stored state (see `code`)",
    411: "A Content-Length header is required",
    413: "The request body is too large",
    415: "The request's Content-Type is not accepted",
    429: "Too many attempts; retry after the Retry-After header's seconds",
    503: "The keystore is unavailable; try again later",
}
AUTHENTICATED = (401, 404)


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error answers of one operation, each with the error body."""
    return {status: OpenApiResponse(ErrorSerializer, description=_ERRORS[status]) for status in statuses}


def body_errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Errors of an authenticated operation that reads a JSON body through `body_limit`."""
    return errors(*AUTHENTICATED, 400, 411, 413, 415, *statuses)
