"""What several agent endpoints share: the body-size guard, the run lookup, the block-id field."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers

from accounts.selectors import parse_uuid_or_404
from agentapi.exceptions import LengthRequired, PayloadTooLarge
from agentapi.schema import BLOCK_ID_PATTERN
from archives.models import BackupRun
from archives.services import block_id_parse

# The largest integer a BigIntegerField holds (PostgreSQL bigint, SQLite INTEGER): a larger one
# reaches the database and fails there as a 500, after the request was accepted.
MAX_BIGINT = 2 ** 63 - 1


def body_limit(request, limit: int) -> int:
    """Refuse a body over `limit` before reading it (413), and one without a length (411)."""
    raw = request.META.get("CONTENT_LENGTH") or ""
    try:
        length = int(raw)
    except ValueError:
        raise LengthRequired() from None
    if length > limit:
        raise PayloadTooLarge(f"The request body is {length} bytes; the limit is {limit}")
    return length


def run_for(archive, run_id):
    if run_id in (None, ""):
        return None
    run = BackupRun.objects.filter(archive=archive, uuid=parse_uuid_or_404(run_id)).first()
    if run is None:
        raise exceptions.NotFound("No such backup run", code="not_found")
    return run


@extend_schema_field(OpenApiTypes.BYTE)
class Base64Field(serializers.CharField):
    """A base64 string; the view decodes it (documented as `format: byte`)."""


@extend_schema_field({"type": "string", "pattern": BLOCK_ID_PATTERN})
class HexBlockIdField(serializers.Field):
    """A 32-byte block id written as 64 hexadecimal characters."""

    def to_internal_value(self, data):
        if not isinstance(data, str) or len(data) != 64:
            raise serializers.ValidationError("a block id is 64 hexadecimal characters")
        try:
            return block_id_parse(data)
        except ValueError:
            raise serializers.ValidationError("a block id is 64 hexadecimal characters") from None

    def to_representation(self, value):
        return bytes(value).hex()
