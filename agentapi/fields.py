"""Input fields and bounds shared by the agent endpoints and their hand parsers."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agentapi.schema import BLOCK_ID_PATTERN
from archives.services import block_id_parse

# The largest integer a BigIntegerField holds (PostgreSQL bigint, SQLite INTEGER): a larger one
# reaches the database and fails there as a 500, after the request was accepted.
MAX_BIGINT = 2 ** 63 - 1


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
