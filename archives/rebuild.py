"""Rebuilding an archive's index from its pack files alone (`manage.py rebuild-index`).

The database is an index, not the only map of the data (DESIGN §4): every pack frame names its
archive and block id, and manifest frames carry the server's fields, so the rows can be recreated.
"""
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction

from archives.models import Archive, BackupRun, Block, FileVersion, Pack
from archives.selectors import MAX_MANIFEST_FRAME_PAYLOAD
from archives.storage import pack_storage
from formats.errors import FormatError
from formats.frames import FRAME_BLOCK, FRAME_MANIFEST, manifest_frame_id, manifest_frame_parse, pack_decode


@dataclass
class RebuildResult:
    packs: int = 0
    blocks: int = 0
    versions: int = 0
    skipped_packs: list[str] = field(default_factory=list)


def archive_index_drop(*, archive: Archive) -> None:
    """Forget the archive's index (blocks, versions, packs rows); the pack files stay."""
    with transaction.atomic():
        FileVersion.objects.filter(archive=archive).delete()
        Block.objects.filter(archive=archive).delete()
        Pack.objects.filter(archive=archive).delete()


def archive_index_rebuild(*, archive: Archive) -> RebuildResult:
    """Recreate pack, block and version rows by reading every pack file of the archive.

    Packs already indexed are left alone, so the command can be run on a partial index. A pack
    that fails to decode is reported and skipped, never modified.
    """
    storage = pack_storage()
    result = RebuildResult()
    indexed = set(Pack.objects.filter(archive=archive).values_list("storage_key", flat=True))
    runs = {str(run_uuid): pk for run_uuid, pk in BackupRun.objects.filter(archive=archive).values_list("uuid", "pk")}
    for key in storage.keys(f"{archive.organization.uuid}/{archive.uuid}"):
        if key in indexed:
            continue
        try:
            frames = list(pack_decode(storage.read_all(key), max_payload=MAX_MANIFEST_FRAME_PAYLOAD))
            pack_uuid = uuid.UUID(key.rsplit("/", 1)[-1].removesuffix(".pack"))
        except (FormatError, ValueError) as error:
            result.skipped_packs.append(f"{key}: {error}")
            continue
        if any(frame.archive_id != archive.uuid for _, frame in frames):
            result.skipped_packs.append(f"{key}: holds frames of another archive")
            continue
        kinds = {frame.kind for _, frame in frames}
        with transaction.atomic():
            pack = Pack.objects.create(
                uuid=pack_uuid, archive=archive, storage_key=key, size=storage.size(key), frame_count=len(frames),
                kind=Pack.Kind.MANIFESTS if kinds == {FRAME_MANIFEST} else Pack.Kind.BLOCKS,
            )
            blocks, versions = [], []
            for offset, frame in frames:
                if frame.kind == FRAME_BLOCK:
                    blocks.append(Block(archive=archive, block_id=bytes(frame.block_id), pack=pack,
                                        offset=offset, frame_size=frame.size))
                    continue
                fields, _blob = manifest_frame_parse(frame.payload)
                version_uuid = uuid.UUID(fields["version_id"])
                if manifest_frame_id(version_uuid) != bytes(frame.block_id):
                    raise FormatError(f"{key}: manifest frame id does not match version {version_uuid}")
                versions.append(FileVersion(
                    uuid=version_uuid, archive=archive, path_id=fields["path_id"],
                    committed_at=datetime.fromisoformat(fields["committed_at"]), deleted=fields["deleted"],
                    block_ids=b"".join(bytes.fromhex(b) for b in fields["block_ids"]),
                    stored_size=fields.get("stored_size", 0), manifest_pack=pack, manifest_offset=offset,
                    manifest_frame_size=frame.size, run_id=runs.get(fields.get("run_id") or ""),
                ))
            Block.objects.bulk_create(blocks, ignore_conflicts=True)
            FileVersion.objects.bulk_create(versions, ignore_conflicts=True)
        result.packs += 1
        result.blocks += len(blocks)
        result.versions += len(versions)
    return result
