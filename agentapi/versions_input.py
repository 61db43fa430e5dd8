"""Hand parsers of the versions endpoint: the commit body and the listing query."""
import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone
from rest_framework import exceptions

from agentapi.fields import MAX_BIGINT
from agentapi.parsers import MAX_COMMIT_VERSIONS, MAX_MANIFEST_B64, DecodedCommit
from agentapi.schema import PATH_ID_PATTERN
from archives.services import VersionIn, block_id_parse

PATH_ID = re.compile(PATH_ID_PATTERN)
QUERY_RULES = "limit is 1 to 1000, after the `next` of the previous page (or 0), at an ISO 8601 time"


@dataclass(frozen=True)
class ListingQuery:
    limit: int
    after: tuple[datetime, int] | None  # None: the first page
    at: datetime
    path_id: str | None


CURSOR = re.compile(r"(-?[0-9]{1,17})-([0-9]{1,19})")  # a commit time before 1970 is negative
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def cursor_format(after: tuple[datetime, int] | None) -> str | None:
    """The `next` of a listing page: where the following page starts, in commit order
    (microseconds since the epoch of the last version's commit time, and its row id)."""
    if after is None:
        return None
    committed_at, pk = after
    return f"{(committed_at - EPOCH) // timedelta(microseconds=1)}-{pk}"


def cursor_parse(value: str) -> tuple[datetime, int] | None:
    """A `next` back (ValueError if it is not one); "0" is the first page."""
    if value == "0":
        return None
    match = CURSOR.fullmatch(value)
    if match is None or int(match[2]) > MAX_BIGINT:
        raise ValueError(value)
    return EPOCH + timedelta(microseconds=int(match[1])), int(match[2])  # OverflowError past year 9999


def listing_query_parse(params) -> ListingQuery:
    """`GET archives/<id>/versions?at=&after=&limit=&path_id=`; every value reaches SQL, so each
    is refused here (400) before it could fail there (a 500)."""
    try:
        limit = int(params.get("limit", 1000))
        after = cursor_parse(params.get("after") or "0")
        at = datetime.fromisoformat(params["at"]) if params.get("at") else timezone.now()
        if not 1 <= limit <= 1000:
            raise ValueError
    except (ValueError, OverflowError):
        raise exceptions.ValidationError({"query": [QUERY_RULES]}) from None
    if timezone.is_naive(at):
        raise exceptions.ValidationError({"at": ["give a time zone, e.g. 2026-01-31T12:00:00+00:00"]})
    try:
        # The database compares in UTC: a time with no UTC calendar date (9999-12-31T23:59-23:59)
        # is refused here rather than by the database.
        at = at.astimezone(UTC)
    except OverflowError:
        raise exceptions.ValidationError({"query": [QUERY_RULES]}) from None
    path_id = params.get("path_id") or None
    if path_id is not None and not PATH_ID.fullmatch(path_id):
        raise exceptions.ValidationError({"path_id": ["must be 64 lowercase hexadecimal characters"]})
    return ListingQuery(limit=limit, after=after, at=at, path_id=path_id)


def commit_parse(data) -> tuple[uuid.UUID | None, list[VersionIn]]:
    """`{"run_id": uuid|null, "versions": [...]}` by hand: the serializer's ListField ran a child
    field per version before versions_parse looked at it again. Errors are shaped as its were.
    A binary body (docs/formats.md §11) was checked whole by its parser."""
    if isinstance(data, DecodedCommit):
        return data.run_id, data.versions
    if not isinstance(data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["Invalid data. Expected a dictionary."]})
    run_id = data.get("run_id")
    if run_id is not None:
        try:
            run_id = uuid.UUID(str(run_id))
        except ValueError:
            raise exceptions.ValidationError({"run_id": ["Must be a valid UUID."]}) from None
    items = data.get("versions")
    if items is None:
        raise exceptions.ValidationError({"versions": ["This field is required."]})
    if not isinstance(items, list):
        raise exceptions.ValidationError({"versions": [f'Expected a list of items but got type "{type(items).__name__}".']})
    if not 1 <= len(items) <= MAX_COMMIT_VERSIONS:
        raise exceptions.ValidationError({"versions": [f"give 1 to {MAX_COMMIT_VERSIONS} versions"]})
    return run_id, versions_parse(items)


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
