"""Writes of a backup's data: which blocks are missing, block batches, version commits
(archives/services.py re-exports these names; the set-based SQL is archives/block_index.py).

The crash rule (DESIGN §4) shapes every write here: a pack file is durable (fsynced, renamed,
directory fsynced) *before* the rows that point into it are committed, and a version is committed
only when every block it names has a committed index row. A crash between the two steps leaves
an orphan pack that no row references — harmless, and collected later.

Cost: a first backup of small files is two rows per file, so nothing here is per row in Python
beyond building a tuple, and the statements per request do not grow with its files.
"""
import os
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from archives.block_index import (
    block_rows_insert,
    block_sizes,
    blocks_lock_touch,
    version_owners,
    version_rows_insert,
)
from archives.faults import fault_point
from archives.models import Archive, BackupRun, Pack
from archives.quotas import quota_enforce
from archives.storage import FileRanges, pack_storage
from archives.upload_batch import BatchInvalid, SpooledBatch, batch_spool  # noqa: F401 - BatchInvalid: re-exported
from formats.blocks import BLOCK_ID_SIZE
from formats.commit_body import CommitVersion
from formats.directories import LISTING_VERSION
from formats.frames import FRAME_HEADER_SIZE, FRAME_MANIFEST, PACK_MAGIC, frame_header
from formats.manifest_frames import committed_at_micros, manifest_frame_dense_payload
from keystore.models import UserKey
from keystore.selectors import escrowed_key_of

_shuffle = random.SystemRandom().shuffle
_LISTING = bytes((LISTING_VERSION,))
_ZERO16 = bytes(16)  # a manifest frame id is the version id and 16 zero bytes (docs/formats.md §6.3)


class BlocksBeforeEscrow(Exception):
    """The user's key is not escrowed yet: no block is accepted before it is (DESIGN §3)."""


class VersionsInvalid(Exception):
    """A version commit was malformed; nothing was committed."""


class MissingBlocks(Exception):
    """Versions named blocks the archive does not hold; nothing was committed."""

    def __init__(self, block_ids: list[bytes]):
        super().__init__(f"{len(block_ids)} referenced block(s) are not stored in this archive")
        self.block_ids = block_ids


def block_id_parse(value: str) -> bytes:
    """Hex block id from the API → 32 bytes (ValueError otherwise)."""
    raw = bytes.fromhex(value)
    if len(raw) != BLOCK_ID_SIZE:
        raise ValueError(f"a block id is {BLOCK_ID_SIZE} bytes")
    return raw


def _pack_key(archive: Archive, pack_uuid: uuid.UUID) -> str:
    return f"{archive.organization.uuid}/{archive.uuid}/{pack_uuid.hex[:2]}/{pack_uuid}.pack"


# --- blocks ---------------------------------------------------------------------------------

def blocks_present(*, archive: Archive, block_ids: list[bytes]) -> dict[bytes, int]:
    """The given ids that the archive's index holds, with their stored frame sizes."""
    return block_sizes(archive_pk=archive.pk, block_ids=list(dict.fromkeys(block_ids)))


TOUCH_SLACK = timedelta(seconds=60)  # a row touched this recently is locked but not rewritten


def blocks_touch(*, archive: Archive, block_ids: list[bytes], now: datetime | None = None) -> dict[bytes, int]:
    """The given ids the archive holds (with frame sizes), each locked and marked referenced now.

    This is what makes "you already have it" safe against prune (docs/maintenance.md): the rows
    are locked in block-id order (no deadlock between two callers), `last_referenced_at` is set,
    and only rows that still exist once the lock is held are reported present — a row a prune
    deleted while we waited is reported missing, so the agent sends the block again.
    """
    at = now or timezone.now()
    with transaction.atomic():
        return blocks_lock_touch(archive_pk=archive.pk, block_ids=block_ids, now=at, stale_before=at - TOUCH_SLACK)


def blocks_missing(*, archive: Archive, block_ids: list[bytes]) -> list[bytes]:
    present = blocks_touch(archive=archive, block_ids=block_ids)
    return [block_id for block_id in dict.fromkeys(block_ids) if block_id not in present]


@dataclass
class IngestResult:
    stored: int
    duplicates: int
    pack: Pack | None


def _escrowed_key_id(user: User) -> bytes:
    row = escrowed_key_of(user)
    if row is None or row.state != UserKey.State.ESCROWED:
        raise BlocksBeforeEscrow("The user's key is not escrowed yet: no block is accepted before it is")
    return bytes.fromhex(row.key_id)


def blocks_ingest(*, archive: Archive, body: bytes | None = None, pieces: Iterable[bytes] | None = None,
                  run: BackupRun | None = None) -> IngestResult:
    """Store a batch of encrypted blocks as one new immutable pack, then index them.

    The batch is `body`, or `pieces` read as they arrive (an upload streamed from the request:
    archives/upload_batch.py checks each frame as it passes and spools it, so the body is never
    held whole). Idempotent: blocks the archive already holds are skipped, so a retried or
    resumed batch stores nothing twice. The pack's frames are shuffled so their order and sizes
    do not mirror the files they came from. Every block must carry the key_id of the user's
    *escrowed* key, read here rather than passed in, so no caller can skip the rule: no block is
    stored before the escrow is confirmed, nor one that the keystore could not help decrypt. An
    escrowed key is never replaced, so checking before the pack is written cannot race with a change.
    """
    key_id = _escrowed_key_id(archive.user)
    storage = pack_storage()
    spool = batch_spool((body,) if pieces is None else pieces, archive_uuid=archive.uuid, key_id=key_id,
                        directory=_spool_directory(storage))
    try:
        return _pack_spooled(archive, spool, storage, run)
    finally:
        os.close(spool.fd)


def _spool_directory(storage) -> str | None:
    """Beside the packs (a copy within one file system stays in the kernel), else the temp dir."""
    root = getattr(storage, "root", None)
    if root is None:
        return None
    os.makedirs(root, exist_ok=True)
    return str(root)


def _pack_spooled(archive: Archive, spool: SpooledBatch, storage, run: BackupRun | None) -> IngestResult:
    present = blocks_touch(archive=archive, block_ids=list(spool.blocks))  # "already stored" is a "you have it"
    new = [(block_id, where) for block_id, where in spool.blocks.items() if block_id not in present]
    if not new:
        return IngestResult(stored=0, duplicates=spool.frames, pack=None)
    _shuffle(new)
    quota_enforce(archive=archive, incoming=len(PACK_MAGIC) + sum(size for _, (_, size) in new))

    pack_uuid = uuid.uuid4()
    key = _pack_key(archive, pack_uuid)
    positions, offset = [], len(PACK_MAGIC)
    for block_id, (_, size) in new:  # verified frames go into the pack byte for byte, never re-encoded
        positions.append((block_id, offset, size))
        offset += size
    storage.put(key, FileRanges(PACK_MAGIC, spool.fd, [where for _, where in new]))
    fault_point("blocks.pack_durable")

    with transaction.atomic():
        pack = Pack.objects.create(uuid=pack_uuid, archive=archive, kind=Pack.Kind.BLOCKS, storage_key=key,
                                   size=offset, frame_count=len(new))
        # A concurrent batch that indexed the same block first keeps its row: its copy wins.
        block_rows_insert(archive_pk=archive.pk, pack_pk=pack.pk, rows=positions, now=timezone.now())
        if run is not None:
            BackupRun.objects.filter(pk=run.pk).update(
                blocks_received=F("blocks_received") + len(new), bytes_received=F("bytes_received") + offset)
        fault_point("blocks.before_commit")
    return IngestResult(stored=len(new), duplicates=spool.frames - len(new), pack=pack)


# --- versions -------------------------------------------------------------------------------

# One version of a commit (version id, hex path id, deleted, block ids, manifest blob), as the
# JSON body's parser and the binary body's (docs/formats.md §11) both give it.
VersionIn = CommitVersion


@dataclass
class CommitResult:
    committed: int
    existing: int
    committed_at: datetime
    pack: Pack | None = None
    version_ids: list[uuid.UUID] = field(default_factory=list)


def _existing_versions(archive: Archive, versions: list[VersionIn]) -> set[uuid.UUID]:
    existing = set()
    for version_uuid, archive_pk in version_owners([version.version_id for version in versions]).items():
        if archive_pk != archive.pk:
            raise VersionsInvalid(f"version id {version_uuid} is already used elsewhere")
        existing.add(version_uuid)
    return existing


def versions_commit(*, archive: Archive, versions: list[VersionIn], run: BackupRun | None = None) -> CommitResult:
    """Commit file versions whose blocks are all durable; one manifest pack per call.

    The whole call is refused (MissingBlocks) if any version names a block the archive lacks:
    nothing committed may ever point at data that is not stored.
    """
    seen: set[uuid.UUID] = set()
    for version in versions:
        if version.version_id in seen:
            raise VersionsInvalid(f"version id {version.version_id} appears twice")
        seen.add(version.version_id)
        if version.deleted and version.block_ids:
            raise VersionsInvalid(f"deleted version {version.version_id} cannot reference blocks")
    existing = _existing_versions(archive, versions)
    todo = [version for version in versions if version.version_id not in existing]
    now = timezone.now()
    if not todo:
        return CommitResult(committed=0, existing=len(existing), committed_at=now)
    named = list(dict.fromkeys(b for version in todo for b in version.block_ids))
    sizes = block_sizes(archive_pk=archive.pk, block_ids=named)
    absent = [b for b in named if b not in sizes]
    if absent:
        raise MissingBlocks(absent)

    pack_uuid = uuid.uuid4()
    key = _pack_key(archive, pack_uuid)
    # Dense manifest frame headers (docs/formats.md §6.4): the server's fields as fixed-width
    # bytes, built with one struct pack per version (no JSON, no per-version dict).
    rows, parts, offset = [], [PACK_MAGIC], len(PACK_MAGIC)
    micros, run_raw, archive_uuid = committed_at_micros(now), run.uuid.bytes if run else None, archive.uuid
    for version in todo:
        block_ids = b"".join(version.block_ids)
        stored_size = sum(sizes[b] for b in version.block_ids)
        path_id = bytes.fromhex(version.path_id)
        payload = manifest_frame_dense_payload(
            path_id=path_id, committed_at_us=micros, deleted=version.deleted,
            stored_size=stored_size, block_ids=block_ids, run_id=run_raw, manifest_blob=version.manifest)
        parts.append(frame_header(FRAME_MANIFEST, archive_uuid, version.version_id.bytes + _ZERO16, payload))
        parts.append(payload)
        size = FRAME_HEADER_SIZE + len(payload)
        rows.append((version.version_id, path_id, version.deleted, version.manifest[:1] == _LISTING,
                     block_ids, stored_size, offset, size))
        offset += size
    pack_storage().put(key, parts)
    fault_point("versions.pack_durable")

    try:
        with transaction.atomic():
            # The check that counts: inside the transaction that inserts the versions, every block
            # is locked and marked referenced, so no prune can delete it before they are visible.
            locked = blocks_touch(archive=archive, block_ids=named)
            gone = [b for b in named if b not in locked]
            if gone:
                raise MissingBlocks(gone)
            pack = Pack.objects.create(uuid=pack_uuid, archive=archive, kind=Pack.Kind.MANIFESTS, storage_key=key,
                                       size=offset, frame_count=len(rows))
            version_rows_insert(archive_pk=archive.pk, pack_pk=pack.pk, run_pk=run.pk if run else None,
                                committed_at=now, rows=rows)
            if run is not None:
                BackupRun.objects.filter(pk=run.pk).update(versions_committed=F("versions_committed") + len(rows))
            fault_point("versions.before_commit")
    except IntegrityError:
        raise VersionsInvalid("a concurrent request committed some of these versions; retry") from None
    return CommitResult(committed=len(rows), existing=len(existing), committed_at=now, pack=pack,
                        version_ids=[row[0] for row in rows])
