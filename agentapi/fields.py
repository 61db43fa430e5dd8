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


_HEX = frozenset("0123456789abcdefABCDEF")


def block_ids_parse(data, *, max_length: int, min_length: int = 0) -> list[bytes]:
    """`{"block_ids": [hex, ...]}` → ids, by hand: a DRF field per id cost more than answering
    "which are missing" for thousands of them. Errors are shaped as the serializer's were."""
    if not isinstance(data, dict):
        raise serializers.ValidationError({"non_field_errors": ["Invalid data. Expected a dictionary."]})
    values = data.get("block_ids")
    if not isinstance(values, list):
        raise serializers.ValidationError({"block_ids": ["a list of 64-character hexadecimal block ids"]})
    if not min_length <= len(values) <= max_length:
        raise serializers.ValidationError({"block_ids": [f"give {min_length} to {max_length} block ids"]})
    parsed, errors = [], {}
    for index, value in enumerate(values):
        if isinstance(value, str) and len(value) == 64 and _HEX.issuperset(value):
            parsed.append(bytes.fromhex(value))
        else:
            errors[index] = ["a block id is 64 hexadecimal characters"]
    if errors:
        raise serializers.ValidationError({"block_ids": errors})
    return parsed
