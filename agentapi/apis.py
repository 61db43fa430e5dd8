"""Agent endpoints: validate input, check access, call one service, serialize output."""
import base64
import binascii
import re
import uuid
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.network import client_address
from accounts.selectors import parse_uuid_or_404
from accounts.services import (
    AuthenticationRefused,
    AuthenticationThrottled,
    credentials_check,
    enrollment_code_redeem,
)
from archives.models import BackupRun
from archives.selectors import (
    BlocksNotFound,
    FetchTooLarge,
    archive_for_device,
    archives_readable_by_device,
    blocks_read,
    manifests_read,
    versions_at,
    versions_of_path,
)
from archives.services import (
    BatchInvalid,
    DeviceDeauthorized,
    MissingBlocks,
    VersionIn,
    VersionsInvalid,
    archive_for_device_ensure,
    backup_run_finish,
    backup_run_start,
    block_id_parse,
    blocks_ingest,
    blocks_missing,
    device_enroll,
    versions_commit,
)
from formats.keys import key_id_for
from keystore.models import UserKey
from keystore.selectors import escrowed_key_of
from keystore.services import KeyConflict, KeyInvalid, KeyNotEscrowed, key_deliver_to_device, key_escrow
from keystore.vault import KeystoreUnavailable


class EnrollApi(APIView):
    """Enroll a device with the user's email and password; returns the device's token once."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        email = serializers.EmailField(max_length=254, required=False)
        password = serializers.CharField(max_length=1024, trim_whitespace=False, required=False)
        code = serializers.CharField(max_length=40, required=False,
                                     help_text="One-time code from the console (single sign-on users)")
        device_name = serializers.CharField(max_length=200)
        os = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
        agent_version = serializers.CharField(max_length=50, required=False, default="", allow_blank=True)
        device_id = serializers.UUIDField(required=False, allow_null=True, default=None,
                                          help_text="Set when an enrolled agent enrolls again")

        def validate(self, attrs):
            if attrs.get("code") and not attrs.get("email") and not attrs.get("password"):
                return attrs
            if attrs.get("email") and attrs.get("password") and not attrs.get("code"):
                return attrs
            raise serializers.ValidationError("give either email and password, or a one-time code")

    class OutputSerializer(serializers.Serializer):
        device_id = serializers.UUIDField()
        archive_id = serializers.UUIDField()
        user_id = serializers.UUIDField()
        user_email = serializers.EmailField()
        organization_id = serializers.UUIDField()
        token = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer}, auth=[])
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        address = client_address(request)
        try:
            if fields.get("code"):
                user = enrollment_code_redeem(code=fields["code"], address=address)
            else:
                user = credentials_check(email=fields["email"], password=fields["password"], address=address)
        except AuthenticationThrottled as throttled:
            raise exceptions.Throttled(wait=throttled.retry_after, detail="Too many enrollment attempts",
                                       code="throttled") from None
        except AuthenticationRefused as refused:
            message = str(refused) if fields.get("code") else "Wrong email or password"
            raise exceptions.AuthenticationFailed(message, code="invalid_credentials") from None
        try:
            device, archive, token = device_enroll(
                user=user, device_name=fields["device_name"], os_name=fields["os"],
                agent_version=fields["agent_version"], device_uuid=fields["device_id"],
            )
        except DeviceDeauthorized as refused:
            raise exceptions.PermissionDenied(str(refused), code="device_deauthorized") from None
        output = self.OutputSerializer({
            "device_id": device.uuid, "archive_id": archive.uuid, "user_id": user.uuid, "user_email": user.email,
            "organization_id": user.organization.uuid, "token": token,
        })
        return Response(output.data, status=status.HTTP_201_CREATED)

    def get_authenticate_header(self, request):
        return 'Bearer realm="haven-agent"'


class DeviceApi(APIView):
    """The calling device: who it is, whose it is, and its archive."""

    class OutputSerializer(serializers.Serializer):
        device_id = serializers.UUIDField(source="uuid")
        name = serializers.CharField()
        os = serializers.CharField()
        agent_version = serializers.CharField()
        authorized = serializers.BooleanField()
        last_seen_at = serializers.DateTimeField()
        user_email = serializers.EmailField(source="owner.email")
        user_id = serializers.UUIDField(source="owner.uuid")
        organization_id = serializers.UUIDField(source="organization.uuid")

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request):
        device = request.user.device
        body = dict(self.OutputSerializer(device).data)
        with transaction.atomic():
            body["archive_id"] = str(archive_for_device_ensure(device=device).uuid)
        return Response(body)


class ArchiveApi(APIView):
    """One archive the device may read (its own or another of its user's devices)."""

    class OutputSerializer(serializers.Serializer):
        archive_id = serializers.UUIDField(source="uuid")
        device_id = serializers.UUIDField(source="device.uuid")
        device_name = serializers.CharField(source="device.name")
        created_at = serializers.DateTimeField()

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request, archive_id):
        archive = archive_for_device(request.user.device, archive_id)
        return Response(self.OutputSerializer(archive).data)


# --- backup and restore ----------------------------------------------------------------------

def _body_limit(request, limit: int) -> int:
    """Refuse a body over `limit` before reading it (413), and one without a length (411)."""
    raw = request.META.get("CONTENT_LENGTH") or ""
    try:
        length = int(raw)
    except ValueError:
        raise LengthRequired() from None
    if length > limit:
        raise PayloadTooLarge(f"The request body is {length} bytes; the limit is {limit}")
    return length


class LengthRequired(exceptions.APIException):
    status_code = 411
    default_detail = "A Content-Length header is required"
    default_code = "length_required"


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large"
    default_code = "batch_too_large"


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


def _run_for(archive, run_id):
    if run_id in (None, ""):
        return None
    run = BackupRun.objects.filter(archive=archive, uuid=parse_uuid_or_404(run_id)).first()
    if run is None:
        raise exceptions.NotFound("No such backup run", code="not_found")
    return run


class ArchiveListApi(APIView):
    """The archives this device may read: every archive of its user (computer replacement)."""

    @extend_schema(responses={200: ArchiveApi.OutputSerializer(many=True)})
    def get(self, request):
        archives = archives_readable_by_device(request.user.device).order_by("created_at")
        return Response({"archives": ArchiveApi.OutputSerializer(archives, many=True).data})


class RunStartApi(APIView):
    class OutputSerializer(serializers.Serializer):
        run_id = serializers.UUIDField(source="uuid")
        started_at = serializers.DateTimeField()

    @extend_schema(request=None, responses={201: OutputSerializer})
    def post(self, request, archive_id):
        archive = archive_for_device(request.user.device, archive_id, write=True)
        run = backup_run_start(archive=archive)
        return Response(self.OutputSerializer(run).data, status=status.HTTP_201_CREATED)


class RunFinishApi(APIView):
    class InputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["completed", "failed", "interrupted"])
        files_scanned = serializers.IntegerField(min_value=0, default=0)
        bytes_scanned = serializers.IntegerField(min_value=0, default=0)
        files_changed = serializers.IntegerField(min_value=0, default=0)
        bytes_sent = serializers.IntegerField(min_value=0, default=0)
        errors = serializers.ListField(child=serializers.CharField(max_length=2000), max_length=1000, default=list)

    @extend_schema(request=InputSerializer, responses={200: None})
    def post(self, request, archive_id, run_id):
        _body_limit(request, 1024 * 1024)
        archive = archive_for_device(request.user.device, archive_id, write=True)
        run = _run_for(archive, run_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        try:
            backup_run_finish(run=run, status=fields.pop("status"), errors=fields.pop("errors"), counters=fields)
        except ValueError as error:
            raise exceptions.ValidationError({"status": [str(error)]}) from None
        return Response({"run_id": str(run.uuid), "status": run.status})


class BlocksMissingApi(APIView):
    """Which of these block ids does the archive lack? Only those need to be sent."""

    class InputSerializer(serializers.Serializer):
        block_ids = serializers.ListField(child=HexBlockIdField(), max_length=10_000)

    @extend_schema(request=InputSerializer, responses={200: None})
    def post(self, request, archive_id):
        _body_limit(request, 2 * 1024 * 1024)
        archive = archive_for_device(request.user.device, archive_id, write=True)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        missing = blocks_missing(archive=archive, block_ids=data.validated_data["block_ids"])
        return Response({"missing": [block_id.hex() for block_id in missing]})


class BlocksUploadApi(APIView):
    """An upload batch (frames back to back) → one new immutable pack. Idempotent."""

    @extend_schema(request={"application/octet-stream": bytes}, responses={201: None})
    def post(self, request, archive_id):
        length = _body_limit(request, settings.HAVEN_MAX_BATCH_BYTES)
        archive = archive_for_device(request.user.device, archive_id, write=True)
        run = _run_for(archive, request.query_params.get("run"))
        escrowed = escrowed_key_of(archive.user)
        if escrowed is None or escrowed.state != UserKey.State.ESCROWED:
            raise KeyNotEscrowedError()
        body = request._request.read(length)
        if len(body) != length:
            raise exceptions.ParseError("The request body ended early", code="invalid_batch")
        try:
            result = blocks_ingest(archive=archive, body=body, run=run, key_id=bytes.fromhex(escrowed.key_id))
        except BatchInvalid as invalid:
            raise exceptions.ParseError(f"Invalid upload batch: {invalid}", code="invalid_batch") from None
        return Response({"stored": result.stored, "duplicates": result.duplicates,
                         "pack_id": str(result.pack.uuid) if result.pack else None}, status=status.HTTP_201_CREATED)


class KeyNotEscrowedError(exceptions.APIException):
    status_code = 409
    default_detail = "The user's key is not escrowed yet: no block is accepted before it is"
    default_code = "key_not_escrowed"


class BlocksFetchApi(APIView):
    """The stored frames of the blocks asked for, in that order (any archive of the user)."""

    class InputSerializer(serializers.Serializer):
        block_ids = serializers.ListField(child=HexBlockIdField(), min_length=1, max_length=10_000)

    @extend_schema(request=InputSerializer, responses={(200, "application/octet-stream"): bytes})
    def post(self, request, archive_id):
        _body_limit(request, 2 * 1024 * 1024)
        archive = archive_for_device(request.user.device, archive_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            frames = blocks_read(archive, data.validated_data["block_ids"], max_bytes=settings.HAVEN_MAX_BATCH_BYTES)
        except BlocksNotFound as absent:
            return Response({"detail": str(absent), "code": "blocks_not_found",
                             "block_ids": [b.hex() for b in absent.block_ids[:100]]}, status=404)
        except FetchTooLarge as too_large:
            raise PayloadTooLarge(str(too_large)) from None
        return HttpResponse(b"".join(frames), content_type="application/octet-stream")


_PATH_ID = re.compile(r"[0-9a-f]{64}")


def _versions_parse(items: list) -> list[VersionIn]:
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
        if not isinstance(path_id, str) or not _PATH_ID.fullmatch(path_id):
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


MAX_MANIFEST_B64 = 64 * 1024 * 1024


class VersionsApi(APIView):
    """List versions (a point in time, or one path's history) and commit new ones."""

    class CommitSerializer(serializers.Serializer):
        run_id = serializers.UUIDField(required=False, allow_null=True, default=None)
        versions = serializers.ListField(min_length=1, max_length=2000)

    class VersionOutSerializer(serializers.Serializer):
        version_id = serializers.UUIDField(source="uuid")
        path_id = serializers.CharField()
        committed_at = serializers.DateTimeField()
        deleted = serializers.BooleanField()
        stored_size = serializers.IntegerField()

    @extend_schema(responses={200: VersionOutSerializer(many=True)})
    def get(self, request, archive_id):
        archive = archive_for_device(request.user.device, archive_id)
        params = request.query_params
        try:
            limit = int(params.get("limit", 1000))
            after = int(params.get("after", 0))
            at = datetime.fromisoformat(params["at"]) if params.get("at") else timezone.now()
            if not 1 <= limit <= 1000 or after < 0:
                raise ValueError
        except ValueError:
            raise exceptions.ValidationError(
                {"query": ["limit is 1 to 1000, after a non-negative integer, at an ISO 8601 time"]}) from None
        if timezone.is_naive(at):
            raise exceptions.ValidationError({"at": ["give a time zone, e.g. 2026-01-31T12:00:00+00:00"]})
        if params.get("path_id"):
            versions = versions_of_path(archive, path_id=params["path_id"], limit=limit)
            next_cursor = None
        else:
            versions = versions_at(archive, at=at, after=after, limit=limit)
            next_cursor = str(versions[-1].pk) if len(versions) == limit else None
        blobs = manifests_read(versions)
        # Plain dicts, not a serializer: a restore lists every version of an archive, and DRF's
        # per-field machinery cost more than reading the manifests from their packs.
        body = [{"version_id": str(version.uuid), "path_id": version.path_id,
                 "committed_at": version.committed_at.isoformat().replace("+00:00", "Z"), "deleted": version.deleted,
                 "stored_size": version.stored_size, "manifest": base64.b64encode(blobs[version.pk]).decode()}
                for version in versions]
        return Response({"versions": body, "next": next_cursor})

    @extend_schema(request=CommitSerializer, responses={201: None})
    def post(self, request, archive_id):
        _body_limit(request, settings.HAVEN_MAX_COMMIT_BYTES)
        archive = archive_for_device(request.user.device, archive_id, write=True)
        commit = self.CommitSerializer(data=request.data)
        commit.is_valid(raise_exception=True)
        versions = _versions_parse(commit.validated_data["versions"])
        run = _run_for(archive, commit.validated_data["run_id"])
        try:
            result = versions_commit(archive=archive, versions=versions, run=run)
        except MissingBlocks as missing:
            return Response({"detail": str(missing), "code": "missing_blocks",
                             "block_ids": [b.hex() for b in missing.block_ids[:1000]]}, status=409)
        except VersionsInvalid as invalid:
            raise exceptions.ValidationError({"versions": [str(invalid)]}) from None
        return Response({"committed": result.committed, "existing": result.existing,
                         "committed_at": result.committed_at.isoformat()}, status=status.HTTP_201_CREATED)


# --- keys ------------------------------------------------------------------------------------

class KeystoreUnavailableError(exceptions.APIException):
    status_code = 503
    default_detail = "The keystore is unavailable; try again later"
    default_code = "keystore_unavailable"


def _keystore_call(call):
    try:
        return call()
    except KeystoreUnavailable as error:
        raise KeystoreUnavailableError(f"The keystore is unavailable ({error.reason}); try again later") from None


class KeyStatusApi(APIView):
    """Does the calling device's user have an escrowed key, and which (by key_id)?"""

    @extend_schema(responses={200: None})
    def get(self, request):
        row = escrowed_key_of(request.user.user)
        return Response({"key_id": row.key_id if row else None,
                         "escrowed": bool(row and row.state == UserKey.State.ESCROWED)})


class KeyEscrowApi(APIView):
    """The first device of a user escrows the key it generated. Idempotent for the same key."""

    class InputSerializer(serializers.Serializer):
        key = serializers.CharField(max_length=64, write_only=True)
        key_id = serializers.RegexField(r"^[0-9a-f]{32}$")

    @extend_schema(request=InputSerializer, responses={201: None})
    def post(self, request):
        _body_limit(request, 4096)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            key = base64.b64decode(data.validated_data["key"], validate=True)
        except (binascii.Error, ValueError):
            raise exceptions.ValidationError({"key": ["must be base64"]}) from None
        device = request.user.device
        try:
            row = _keystore_call(lambda: key_escrow(user=device.owner, key=key, key_id=data.validated_data["key_id"],
                                                    device=device))
        except KeyInvalid as invalid:
            raise exceptions.ValidationError({"key": [str(invalid)]}) from None
        except KeyConflict:
            return Response({"detail": "A different key is already escrowed for this user. This device will not "
                                       "back up; contact your administrator.", "code": "key_conflict"}, status=409)
        return Response({"key_id": row.key_id, "escrowed": True}, status=status.HTTP_201_CREATED)


class KeyRetrieveApi(APIView):
    """Computer replacement: a new device of the user receives the escrowed key (audited, notified)."""

    @extend_schema(request=None, responses={200: None})
    def post(self, request):
        device = request.user.device
        try:
            key = _keystore_call(lambda: key_deliver_to_device(device=device))
        except KeyNotEscrowed:
            return Response({"detail": "No key is escrowed for this user", "code": "key_not_escrowed"}, status=404)
        return Response({"key": base64.b64encode(key).decode(), "key_id": key_id_for(key)})
