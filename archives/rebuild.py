"""Rebuilding an archive's index from its pack files alone (`manage.py rebuild-index`).

The database is an index, not the only map of the data (DESIGN §4): every pack frame names its
archive and block id, and manifest frames carry the server's fields (JSON or, since format
version 4, a dense header), so the rows can be recreated.
"""
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.db import DataError, IntegrityError, transaction

from archives.models import Archive, BackupRun, Block, FileVersion, Pack
from archives.selectors import MAX_MANIFEST_FRAME_PAYLOAD
from archives.storage import pack_storage
from formats.blocks import BLOCK_ID_SIZE
from formats.directories import LISTING_VERSION
from formats.errors import FormatError
from formats.frames import FRAME_BLOCK, FRAME_MANIFEST, manifest_frame_id, pack_decode
from formats.manifest_frames import ManifestFields, manifest_frame_fields

# A root's directory listing is told from a file version by its blob's clear version byte
# (docs/formats.md §9.3), as versions_commit does (archives/ingest.py).
_LISTING = bytes((LISTING_VERSION,))
_PATH_ID = re.compile(r"[0-9a-f]{64}")


@dataclass
class RebuildResult:
    packs: int = 0
    blocks: int = 0
    versions: int = 0
    skipped_packs: list[str] = field(default_factory=list)
    restored_packs: list[str] = field(default_factory=list)  # taken back from quarantine


def archive_index_drop(*, archive: Archive) -> None:
    """Forget the archive's index (blocks, versions, packs rows); the pack files stay."""
    with transaction.atomic():
        FileVersion.objects.filter(archive=archive).delete()
        Block.objects.filter(archive=archive).delete()
        Pack.objects.filter(archive=archive).delete()


class _Unreadable(Exception):
    """A pack (or one of its frames) cannot be indexed; it is reported and left as it is."""


def _version_row(archive: Archive, pack: Pack, offset: int, frame, runs: dict[str, int]) -> FileVersion:
    """The version row a manifest frame describes, every server field checked before use."""
    fields, blob = manifest_frame_fields(frame.payload, frame.block_id)
    if isinstance(fields, ManifestFields):  # a dense header (docs/formats.md §6.4), checked by its parser
        return FileVersion(
            uuid=fields.version_id, archive=archive, path_id=fields.path_id, committed_at=fields.committed_at,
            deleted=fields.deleted, is_listing=blob[:1] == _LISTING, block_ids=fields.block_ids,
            stored_size=fields.stored_size, manifest_pack=pack, manifest_offset=offset,
            manifest_frame_size=frame.size, run_id=runs.get(str(fields.run_id or "")))
    version_uuid = uuid.UUID(fields["version_id"])
    if manifest_frame_id(version_uuid) != bytes(frame.block_id):
        raise _Unreadable(f"manifest frame at byte offset {offset} does not match version {version_uuid}")
    committed_at = datetime.fromisoformat(fields["committed_at"])
    block_ids = fields["block_ids"]
    if (committed_at.tzinfo is None or not _PATH_ID.fullmatch(str(fields["path_id"]))
            or not isinstance(fields["deleted"], bool) or not isinstance(block_ids, list)
            or not all(isinstance(b, str) and len(b) == 2 * BLOCK_ID_SIZE for b in block_ids)
            or not isinstance(fields.get("stored_size", 0), int)):
        raise _Unreadable(f"manifest frame at byte offset {offset} has malformed server fields")
    return FileVersion(
        uuid=version_uuid, archive=archive, path_id=fields["path_id"], committed_at=committed_at,
        deleted=fields["deleted"], is_listing=blob[:1] == _LISTING, block_ids=b"".join(bytes.fromhex(b) for b in block_ids),
        stored_size=fields.get("stored_size", 0), manifest_pack=pack, manifest_offset=offset,
        manifest_frame_size=frame.size, run_id=runs.get(str(fields.get("run_id") or "")),
    )


def _pack_rows(archive: Archive, key: str, data: bytes, runs: dict[str, int]):
    """(pack, blocks, versions) rows of one pack file, unsaved; _Unreadable if any frame is bad."""
    try:
        frames = list(pack_decode(data, max_payload=MAX_MANIFEST_FRAME_PAYLOAD))
        pack_uuid = uuid.UUID(key.rsplit("/", 1)[-1].removesuffix(".pack"))
    except (FormatError, ValueError) as error:
        raise _Unreadable(str(error)) from None
    if any(frame.archive_id != archive.uuid for _, frame in frames):
        raise _Unreadable("holds frames of another archive")
    kinds = {frame.kind for _, frame in frames}
    pack = Pack(uuid=pack_uuid, archive=archive, storage_key=key, size=len(data), frame_count=len(frames),
                kind=Pack.Kind.MANIFESTS if kinds == {FRAME_MANIFEST} else Pack.Kind.BLOCKS)
    blocks, versions = [], []
    for offset, frame in frames:
        if frame.kind == FRAME_BLOCK:
            blocks.append(Block(archive=archive, block_id=bytes(frame.block_id), pack=pack,
                                offset=offset, frame_size=frame.size))
            continue
        try:
            versions.append(_version_row(archive, pack, offset, frame, runs))
        except (FormatError, ValueError, KeyError, TypeError) as error:
            raise _Unreadable(f"manifest frame at byte offset {offset}: {error!r}") from None
    return pack, blocks, versions


def archive_index_rebuild(*, archive: Archive) -> RebuildResult:
    """Recreate pack, block and version rows by reading every pack file of the archive.

    Packs already indexed are left alone, so the command can be run on a partial index. Packs
    in quarantine (orphans the sweep moved aside) are read too, and put back under their key when
    indexed: after a database restore they are exactly the packs the old index lacks. A pack
    that fails to decode — a bad frame anywhere in it — is reported and skipped, never modified.
    """
    storage = pack_storage()
    result = RebuildResult()
    prefix = f"{archive.organization.uuid}/{archive.uuid}"
    indexed = set(Pack.objects.filter(archive=archive).values_list("storage_key", flat=True))
    runs = {str(run_uuid): pk for run_uuid, pk in BackupRun.objects.filter(archive=archive).values_list("uuid", "pk")}
    every_live = set(storage.keys(prefix))
    live = sorted(every_live - indexed)
    quarantined = [stat.key for stat in storage.quarantined(prefix) if stat.key not in every_live]
    for key in [key for key in quarantined if key in indexed]:  # rows point at it: it must be live
        storage.quarantine_restore(key)
        result.restored_packs.append(key)
    quarantined = [key for key in quarantined if key not in indexed]
    for key, in_quarantine in [(key, False) for key in live] + [(key, True) for key in quarantined]:
        try:
            data = storage.quarantined_read_all(key) if in_quarantine else storage.read_all(key)
            pack, blocks, versions = _pack_rows(archive, key, data, runs)
        except _Unreadable as error:
            result.skipped_packs.append(f"{key}{' (quarantined)' if in_quarantine else ''}: {error}")
            continue
        try:
            with transaction.atomic():
                pack.save(force_insert=True)
                Block.objects.bulk_create(blocks, ignore_conflicts=True)
                FileVersion.objects.bulk_create(versions, ignore_conflicts=True)
                if in_quarantine:  # back under its key before the rows pointing at it commit
                    storage.quarantine_restore(key)
        except (IntegrityError, DataError) as error:  # e.g. a pack uuid the index holds under another key
            result.skipped_packs.append(f"{key}: the index refused its rows ({type(error).__name__})")
            continue
        if in_quarantine:
            result.restored_packs.append(key)
        result.packs += 1
        result.blocks += len(blocks)
        result.versions += len(versions)
    return result
