"""Request parsers of the agent API."""
import uuid
from typing import NamedTuple

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from formats.commit_body import MEDIA_TYPE, CommitBodyError, CommitVersion, commit_body_decode

# A commit's limits, for both bodies (agentapi/versions_input.py parses the JSON one).
MAX_COMMIT_VERSIONS = 2000
MAX_MANIFEST_B64 = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = MAX_MANIFEST_B64 // 4 * 3  # what that much base64 decodes to: 48 MiB


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, but a document nested deeper than Python's recursion limit (`[` × 1000)
    is a 400 like any other malformed body; DRF lets the RecursionError through as a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply") from None


class DecodedCommit(NamedTuple):
    run_id: uuid.UUID | None
    versions: list[CommitVersion]  # archives.services.VersionIn


class CommitBodyParser(parsers.BaseParser):
    """The binary commit body (docs/formats.md §11): checked whole, every length against the
    body, before anything is committed; a malformed one is a 400 that says where."""

    media_type = MEDIA_TYPE

    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read() if stream is not None else b""
        try:
            return DecodedCommit(*commit_body_decode(body, max_versions=MAX_COMMIT_VERSIONS,
                                                     max_manifest=MAX_MANIFEST_BYTES))
        except CommitBodyError as error:
            raise ParseError(f"commit body: {error}") from None
