"""Versions: list them (a point in time, or one path's history) and commit new ones."""
import base64

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from agentapi.apis.common import body_limit, run_for
from agentapi.fields import Base64Field
from agentapi.parsers import CommitBodyParser, JSONParser
from agentapi.schema import ARCHIVE_ID, AUTHENTICATED, BLOCK_ID_PATTERN, PATH_ID_PATTERN, body_errors, errors
from agentapi.versions_input import MAX_COMMIT_VERSIONS, commit_parse, cursor_format, listing_query_parse
from archives.selectors import archive_for_device, manifests_read, versions_at, versions_of_path
from archives.services import MissingBlocks, VersionsInvalid, versions_commit


class VersionInSerializer(serializers.Serializer):
    """One version of a commit, as documented; versions_input.py validates it (see why there)."""

    version_id = serializers.UUIDField()
    path_id = serializers.RegexField(PATH_ID_PATTERN)
    deleted = serializers.BooleanField(default=False)
    block_ids = serializers.ListField(child=serializers.RegexField(BLOCK_ID_PATTERN), default=list)
    manifest = Base64Field(help_text="The encrypted manifest, base64 (at most 64 MiB)")

    class Meta:
        ref_name = "VersionIn"


@extend_schema_field(VersionInSerializer(many=True))
class VersionItemsField(serializers.ListField):
    pass


class VersionOutSerializer(serializers.Serializer):
    """Documents the listed versions, which the view builds as plain dicts (see why there)."""

    version_id = serializers.UUIDField()
    path_id = serializers.CharField()
    committed_at = serializers.DateTimeField()
    deleted = serializers.BooleanField()
    stored_size = serializers.IntegerField()
    manifest = Base64Field(help_text="The encrypted manifest, base64")

    class Meta:
        ref_name = "Version"


class VersionListSerializer(serializers.Serializer):
    versions = serializers.ListField(child=VersionOutSerializer())
    next = serializers.CharField(allow_null=True, help_text="`after` for the next page; null on the last")

    class Meta:
        ref_name = "VersionList"


class VersionsCommittedSerializer(serializers.Serializer):
    committed = serializers.IntegerField()
    existing = serializers.IntegerField(help_text="Versions this archive already held (a retried commit)")
    committed_at = serializers.DateTimeField()

    class Meta:
        ref_name = "VersionsCommitted"


class VersionsApi(APIView):
    """List versions (a point in time, or one path's history) and commit new ones."""

    # A commit is JSON, or the binary body the agent sends (docs/formats.md §11).
    parser_classes = [JSONParser, CommitBodyParser]

    class CommitSerializer(serializers.Serializer):
        run_id = serializers.UUIDField(required=False, allow_null=True, default=None)
        versions = VersionItemsField(min_length=1, max_length=MAX_COMMIT_VERSIONS)

        class Meta:
            ref_name = "VersionsCommitRequest"

    @extend_schema(operation_id="versions_list", parameters=[
        ARCHIVE_ID,
        OpenApiParameter("at", OpenApiTypes.DATETIME, description="The point in time (default: now)"),
        OpenApiParameter("after", {"type": "string", "pattern": r"^(0|-?[0-9]{1,17}-[0-9]{1,19})$"},
                         description="The `next` of the previous page, as given; absent or 0 for the first"),
        OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
        OpenApiParameter("path_id", {"type": "string", "pattern": PATH_ID_PATTERN},
                         description="Every version of this one path instead"),
    ], responses={200: VersionListSerializer, **errors(*AUTHENTICATED, 400)})
    def get(self, request, archive_id):
        archive = archive_for_device(request.user.device, archive_id)
        query = listing_query_parse(request.query_params)
        if query.path_id:
            versions = versions_of_path(archive, path_id=query.path_id, limit=query.limit)
            next_cursor = None
        else:
            versions, after = versions_at(archive, at=query.at, after=query.after, limit=query.limit)
            next_cursor = cursor_format(after)
        blobs = manifests_read(versions, verify_checksums=False)  # the agent authenticates each one (GCM)
        # Plain dicts, not a serializer: a restore lists every version of an archive, and DRF's
        # per-field machinery cost more than reading the manifests from their packs.
        body = [{"version_id": str(version.uuid), "path_id": version.path_id,
                 "committed_at": version.committed_at.isoformat().replace("+00:00", "Z"), "deleted": version.deleted,
                 "stored_size": version.stored_size, "manifest": base64.b64encode(blobs[version.pk]).decode()}
                for version in versions]
        return Response({"versions": body, "next": next_cursor})

    @extend_schema(operation_id="versions_commit", parameters=[ARCHIVE_ID],
                   request={"application/json": CommitSerializer, CommitBodyParser.media_type: OpenApiTypes.BINARY},
                   responses={201: VersionsCommittedSerializer, **body_errors(409)})
    def post(self, request, archive_id):
        body_limit(request, settings.HAVEN_MAX_COMMIT_BYTES)
        archive = archive_for_device(request.user.device, archive_id, write=True)
        run_id, versions = commit_parse(request.data)  # as CommitSerializer documents it
        run = run_for(archive, run_id)
        try:
            result = versions_commit(archive=archive, versions=versions, run=run)
        except MissingBlocks as missing:
            return Response({"detail": str(missing), "code": "missing_blocks",
                             "block_ids": [b.hex() for b in missing.block_ids[:1000]]}, status=409)
        except VersionsInvalid as invalid:
            raise exceptions.ValidationError({"versions": [str(invalid)]}) from None
        return Response({"committed": result.committed, "existing": result.existing,
                         "committed_at": result.committed_at.isoformat()}, status=status.HTTP_201_CREATED)
