"""Blocks: which are missing, upload a batch (one new pack), fetch stored frames for a restore."""
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from agentapi.apis.common import body_limit, run_for
from agentapi.exceptions import KeyNotEscrowedError, PayloadTooLarge, QuotaExceededError
from agentapi.fields import HexBlockIdField, block_ids_parse
from agentapi.schema import ARCHIVE_ID, BLOCK_ID_PATTERN, body_errors, errors
from archives.quotas import QuotaExceeded
from archives.selectors import (
    BlocksNotFound,
    FetchTooLarge,
    archive_for_device,
    blocks_locate,
    blocks_read,
    frames_stream,
)
from archives.services import BatchInvalid, BlocksBeforeEscrow, blocks_ingest, blocks_missing


class BlocksMissingApi(APIView):
    """Which of these block ids does the archive lack? Only those need to be sent."""

    class InputSerializer(serializers.Serializer):
        block_ids = serializers.ListField(child=HexBlockIdField(), max_length=10_000)

        class Meta:
            ref_name = "BlocksMissingRequest"

    class OutputSerializer(serializers.Serializer):
        missing = serializers.ListField(child=serializers.RegexField(BLOCK_ID_PATTERN))

        class Meta:
            ref_name = "BlocksMissing"

    @extend_schema(operation_id="blocks_missing", parameters=[ARCHIVE_ID], request=InputSerializer,
                   responses={200: OutputSerializer, **body_errors()})
    def post(self, request, archive_id):
        body_limit(request, 2 * 1024 * 1024)
        archive = archive_for_device(request.user.device, archive_id, write=True)
        block_ids = block_ids_parse(request.data, max_length=10_000)  # as InputSerializer documents it
        missing = blocks_missing(archive=archive, block_ids=block_ids)
        return Response({"missing": [block_id.hex() for block_id in missing]})


BODY_PIECE = 2 * 1024 * 1024  # read at a time from the request: the body is checked and spooled as it comes


def _body_pieces(request, length: int):
    left = length
    while left:
        piece = request.read(min(BODY_PIECE, left))
        if not piece:
            raise exceptions.ParseError("The request body ended early", code="invalid_batch")
        left -= len(piece)
        yield piece


class BlocksUploadApi(APIView):
    """An upload batch (frames back to back) → one new immutable pack. Idempotent."""

    class OutputSerializer(serializers.Serializer):
        stored = serializers.IntegerField(help_text="Blocks stored by this batch")
        duplicates = serializers.IntegerField(help_text="Blocks the archive already held")
        pack_id = serializers.UUIDField(allow_null=True, help_text="The new pack; null when nothing was new")

        class Meta:
            ref_name = "BlocksStored"

    @extend_schema(
        operation_id="blocks_upload",
        parameters=[ARCHIVE_ID, OpenApiParameter("run", OpenApiTypes.UUID, description="The backup run it belongs to")],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={201: OutputSerializer, **errors(401, 404, 400, 409, 411, 413)})
    def post(self, request, archive_id):
        length = body_limit(request, settings.HAVEN_MAX_BATCH_BYTES)
        archive = archive_for_device(request.user.device, archive_id, write=True)
        run = run_for(archive, request.query_params.get("run"))
        try:
            result = blocks_ingest(archive=archive, pieces=_body_pieces(request._request, length), run=run)
        except BlocksBeforeEscrow:
            raise KeyNotEscrowedError() from None
        except BatchInvalid as invalid:
            raise exceptions.ParseError(f"Invalid upload batch: {invalid}", code="invalid_batch") from None
        except QuotaExceeded as exceeded:
            raise QuotaExceededError(str(exceeded)) from None
        return Response({"stored": result.stored, "duplicates": result.duplicates,
                         "pack_id": str(result.pack.uuid) if result.pack else None}, status=status.HTTP_201_CREATED)


class BlocksFetchApi(APIView):
    """The stored frames of the blocks asked for (any archive of the user): in the order asked, or
    with `any_order` in pack order, neighbouring frames of a pack read at once and streamed."""

    class InputSerializer(serializers.Serializer):
        block_ids = serializers.ListField(child=HexBlockIdField(), min_length=1, max_length=10_000)
        any_order = serializers.BooleanField(
            default=False, help_text="Answer each distinct block once, in the order the server stores them "
                                     "(faster); the reader places each frame by the block id in its header")

        class Meta:
            ref_name = "BlocksFetchRequest"

    @extend_schema(operation_id="blocks_fetch", parameters=[ARCHIVE_ID], request=InputSerializer,
                   responses={(200, "application/octet-stream"): OpenApiResponse(
                       OpenApiTypes.BINARY, description="The blocks' stored frames, back to back: in the order asked, or "
                                                 "with any_order in pack order, each distinct block once"), **body_errors()})
    def post(self, request, archive_id):
        body_limit(request, 2 * 1024 * 1024)
        archive = archive_for_device(request.user.device, archive_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            if data.validated_data["any_order"]:
                located = blocks_locate(archive, data.validated_data["block_ids"],
                                        max_bytes=settings.HAVEN_MAX_BATCH_BYTES)
                response = StreamingHttpResponse(frames_stream(located), content_type="application/octet-stream")
                response["Content-Length"] = str(sum(size for _, _, size in located))
                return response
            frames = blocks_read(archive, data.validated_data["block_ids"], max_bytes=settings.HAVEN_MAX_BATCH_BYTES)
        except BlocksNotFound as absent:
            return Response({"detail": str(absent), "code": "blocks_not_found",
                             "block_ids": [b.hex() for b in absent.block_ids[:100]]}, status=404)
        except FetchTooLarge as too_large:
            raise PayloadTooLarge(str(too_large)) from None
        return HttpResponse(b"".join(frames), content_type="application/octet-stream")
