"""The public API's parts of the OpenAPI schema: its error answers (the same error body as the
agent API's) and its parameters. The API-key scheme itself is declared in agentapi/schema.py."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from agentapi.schema import ErrorSerializer

_ERRORS = {
    400: "The request or a query parameter is invalid (see `errors`)",
    401: "Missing, unknown or revoked API key",
    403: "The API key lacks the scope this call needs",
    404: "No such object in the key's organization",
    409: "The restore has no download (not finished, failed or expired; see `detail`)",
    411: "A Content-Length header is required",
    413: "The request body is too large",
    415: "The request's Content-Type is not accepted",
    429: "Too many calls with this key; retry after the Retry-After header's seconds",
}
ERROR_EXAMPLES = {
    401: OpenApiExample("Unknown key", value={"detail": "Unknown or revoked API key", "code": "invalid_key"},
                        response_only=True, status_codes=["401"]),
    403: OpenApiExample("Missing scope", value={"detail": "This API key lacks the devices:read scope",
                                                "code": "insufficient_scope"},
                        response_only=True, status_codes=["403"]),
    429: OpenApiExample("Rate limited", value={"detail": "Request was throttled. Expected available in 12 seconds.",
                                               "code": "throttled"}, response_only=True, status_codes=["429"]),
}


def public_errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error answers of one operation: always 401, 403 and 429, plus `statuses`."""
    chosen = sorted({401, 403, 429, *statuses})
    return {status: OpenApiResponse(ErrorSerializer, description=_ERRORS[status]) for status in chosen}


def error_examples() -> list[OpenApiExample]:
    return list(ERROR_EXAMPLES.values())


PAGE_PARAMETERS = [
    OpenApiParameter("cursor", OpenApiTypes.STR, OpenApiParameter.QUERY, required=False,
                     description="The `next` of the previous page; omit it for the first page"),
    OpenApiParameter("limit", OpenApiTypes.INT, OpenApiParameter.QUERY, required=False,
                     description="Rows per page, 1 to 500 (default 100)"),
]
ARCHIVE_UUID = OpenApiParameter("archive_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
RESTORE_UUID = OpenApiParameter("restore_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
ALERT_UUID = OpenApiParameter("alert_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
