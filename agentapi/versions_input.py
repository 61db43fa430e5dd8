"""The hand parser for version commits (`POST archives/<id>/versions`)."""
import base64
import binascii
import re
import uuid

from rest_framework import exceptions

from archives.services import VersionIn, block_id_parse

PATH_ID = re.compile(r"[0-9a-f]{64}")
MAX_MANIFEST_B64 = 64 * 1024 * 1024


def versions_parse(items: list) -> list[VersionIn]:
    """Validate commit items by hand: a DRF serializer per item costs more than the commit itself
    for thousands of small files. Errors name the item and the field, as a serializer's would."""
    parsed, errors = [], {}
    for index, item in enumerate(items):
        problems = {}
        if not isinstance(item, dict):
            errors[index] = {"non_field_errors": ["each version is an object"]}
            continue
        try:
            version_id = uuid.UUID(str(item.get("version_id")))
        except ValueError:
            problems["version_id"] = ["must be a UUID"]
        path_id = item.get("path_id")
        if not isinstance(path_id, str) or not PATH_ID.fullmatch(path_id):
            problems["path_id"] = ["must be 64 lowercase hexadecimal characters"]
        deleted = item.get("deleted", False)
        if not isinstance(deleted, bool):
            problems["deleted"] = ["must be true or false"]
        block_ids = item.get("block_ids", [])
        try:
            if not isinstance(block_ids, list):
                raise ValueError
            block_ids = [block_id_parse(b) for b in block_ids]
        except (ValueError, TypeError):
            problems["block_ids"] = ["must be a list of 64-character hexadecimal block ids"]
        manifest = item.get("manifest")
        try:
            if not isinstance(manifest, str) or not manifest or len(manifest) > MAX_MANIFEST_B64:
                raise ValueError
            manifest = base64.b64decode(manifest, validate=True)
        except (binascii.Error, ValueError):
            problems["manifest"] = ["must be base64, at most 64 MiB"]
        if problems:
            errors[index] = problems
            continue
        parsed.append(VersionIn(version_id=version_id, path_id=path_id, deleted=deleted, block_ids=block_ids,
                                manifest=manifest))
    if errors:
        raise exceptions.ValidationError({"versions": errors})
    return parsed
