"""Prune: expire the versions retention does not keep, then sweep blocks no version references.

Mark and sweep in two phases (docs/maintenance.md, "Prune"): the mark is taken without locks;
the sweep locks only candidate rows (SKIP LOCKED: it never waits for a backup), marks again
under those locks, and deletes what is still unreferenced. Backups lock the rows they rely on
(archives/services.py `blocks_touch`), which is what makes the two safe together.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from archives.faults import fault_point
from archives.models import Archive, Block, FileVersion
from archives.retention import Retention, VersionInfo, retention_keep
from archives.selectors import QUERY_CHUNK
from archives.services import blocks_touch
from formats.blocks import BLOCK_ID_SIZE

SWEEP_CHUNK = 10_000  # candidates locked per sweep transaction


@dataclass
class PruneResult:
    versions_expired: int = 0
    manifest_bytes: int = 0  # manifest frames of the expired versions
    blocks_deleted: int = 0
    block_bytes: int = 0


def _ids_of(raw) -> list[bytes]:
    raw = bytes(raw)
    return [raw[i:i + BLOCK_ID_SIZE] for i in range(0, len(raw), BLOCK_ID_SIZE)]


def versions_to_expire(*, archive: Archive, policy: Retention, now: datetime) -> list[tuple[int, int]]:
    """(id, manifest frame size) of the versions `policy` does not keep, measured at `now`."""
    rows = list(FileVersion.objects.filter(archive=archive)
                .values_list("id", "path_id", "committed_at", "deleted", "manifest_frame_size"))
    keep = retention_keep((VersionInfo(pk, path, at, deleted) for pk, path, at, deleted, _ in rows), policy, now)
    return [(pk, size) for pk, _, _, _, size in rows if pk not in keep]


def versions_expire(*, archive: Archive, version_ids: list[int], now: datetime) -> int:
    """Delete the given versions; their blocks are marked referenced `now` in the same
    transaction — the grace period runs from a block's *last* reference, so a restore that
    listed an expiring version still finds its blocks."""
    expired = 0
    for start in range(0, len(version_ids), QUERY_CHUNK):
        chunk = version_ids[start:start + QUERY_CHUNK]
        with transaction.atomic():
            versions = FileVersion.objects.filter(archive=archive, pk__in=chunk)
            block_ids = {b for raw in versions.values_list("block_ids", flat=True) for b in _ids_of(raw)}
            blocks_touch(archive=archive, block_ids=list(block_ids), now=now)
            expired += versions.delete()[0]
        fault_point("prune.versions_expired")
    return expired


def _referenced(archive: Archive) -> set[bytes]:
    """The mark: every block id any version of the archive names, in one snapshot."""
    live: set[bytes] = set()
    for raw in FileVersion.objects.filter(archive=archive).values_list("block_ids", flat=True).iterator(chunk_size=2000):
        live.update(_ids_of(raw))
    return live


def blocks_unreferenced(*, archive: Archive, cutoff: datetime) -> list[tuple[int, bytes, int]]:
    """(pk, block id, frame size) of blocks no version names, last referenced before `cutoff`."""
    live = _referenced(archive)
    rows = Block.objects.filter(archive=archive, last_referenced_at__lt=cutoff).values_list("pk", "block_id", "frame_size")
    return [(pk, bytes(block_id), size) for pk, block_id, size in rows.iterator(chunk_size=5000)
            if bytes(block_id) not in live]


def blocks_sweep(*, archive: Archive, grace: timedelta, now: datetime) -> tuple[int, int]:
    """Delete the index rows of garbage blocks; (rows deleted, their frame bytes).

    The pack bytes stay until compaction rewrites or retires the pack.
    """
    cutoff = now - grace
    candidates = blocks_unreferenced(archive=archive, cutoff=cutoff)
    deleted = freed = 0
    for start in range(0, len(candidates), SWEEP_CHUNK):
        pks = [pk for pk, _, _ in candidates[start:start + SWEEP_CHUNK]]
        with transaction.atomic():
            locked = list(Block.objects.select_for_update(skip_locked=True)
                          .filter(pk__in=pks, last_referenced_at__lt=cutoff).values_list("pk", "block_id", "frame_size"))
            live = _referenced(archive)  # the second mark, under the locks
            doomed = [(pk, size) for pk, block_id, size in locked if bytes(block_id) not in live]
            Block.objects.filter(pk__in=[pk for pk, _ in doomed]).delete()
            fault_point("prune.before_sweep_commit")
        deleted += len(doomed)
        freed += sum(size for _, size in doomed)
        fault_point("prune.swept")
    return deleted, freed


def archive_prune(*, archive: Archive, policy: Retention, grace: timedelta, now: datetime,
                  dry_run: bool = False) -> PruneResult:
    expiring = versions_to_expire(archive=archive, policy=policy, now=now)
    result = PruneResult(manifest_bytes=sum(size for _, size in expiring))
    if dry_run:
        # What the expiry leaves unreferenced (freed once the grace period has passed).
        gone = {pk for pk, _ in expiring}
        kept_refs = {b for pk, raw in FileVersion.objects.filter(archive=archive).values_list("id", "block_ids")
                     if pk not in gone for b in _ids_of(raw)}
        rows = Block.objects.filter(archive=archive).values_list("block_id", "frame_size").iterator(chunk_size=5000)
        garbage = [size for block_id, size in rows if bytes(block_id) not in kept_refs]
        result.versions_expired, result.blocks_deleted, result.block_bytes = len(expiring), len(garbage), sum(garbage)
        return result
    result.versions_expired = versions_expire(archive=archive, version_ids=[pk for pk, _ in expiring], now=now)
    result.blocks_deleted, result.block_bytes = blocks_sweep(archive=archive, grace=grace, now=now)
    return result
