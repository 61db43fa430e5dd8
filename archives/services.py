"""Writes of the archives app: enrollment, backup runs, block ingestion, version commits
(rebuilding the index is archives/rebuild.py, orphan-pack collection archives/gc.py).

The crash rule (DESIGN §4) shapes every write here: a pack file is durable (fsynced, renamed,
directory fsynced) *before* the rows that point into it are committed, and a version is committed
only when every block it names has a committed index row. A crash between the two steps leaves
an orphan pack that no row references — harmless, and collected later.
"""
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.deployment import (
    DeploymentTokenRefused,
    deployment_attempt_count,
    deployment_attempt_forgive,
    deployment_refusal_record,
    deployment_token_redeem,
)
from accounts.models import Device, User
from accounts.services import device_create, device_enrolled_notify, device_token_issue, device_touch
from archives.faults import fault_point
from archives.freeze import run_mass_change_check
from archives.healing import heal_progress
from archives.models import Archive, BackupRun, Block, FileVersion, Pack
from archives.quotas import quota_enforce
from archives.selectors import QUERY_CHUNK
from archives.storage import pack_storage
from formats.blocks import BLOCK_ID_SIZE, BLOCK_OVERHEAD, FORMAT_VERSION, MAX_BLOCK_SIZE, block_key_id
from formats.directories import LISTING_VERSION
from formats.errors import FormatError
from formats.frames import (
    FRAME_BLOCK,
    FRAME_MANIFEST,
    PACK_MAGIC,
    Frame,
    frames_decode,
    frames_encode,
    manifest_frame_id,
    manifest_frame_payload,
)
from keystore.models import UserKey
from keystore.selectors import escrowed_key_of

MAX_BLOCK_FRAME_PAYLOAD = MAX_BLOCK_SIZE + BLOCK_OVERHEAD
_shuffle = random.SystemRandom().shuffle


class DeviceDeauthorized(Exception):
    """The device was deauthorized; only an administrator can bring it back."""


class BatchInvalid(Exception):
    """An upload batch broke the format or the rules; nothing of it was stored."""


class BlocksBeforeEscrow(Exception):
    """The user's key is not escrowed yet: no block is accepted before it is (DESIGN §3)."""


class VersionsInvalid(Exception):
    """A version commit was malformed; nothing was committed."""


class MissingBlocks(Exception):
    """Versions named blocks the archive does not hold; nothing was committed."""

    def __init__(self, block_ids: list[bytes]):
        super().__init__(f"{len(block_ids)} referenced block(s) are not stored in this archive")
        self.block_ids = block_ids


# --- enrollment -----------------------------------------------------------------------------

def archive_for_device_ensure(*, device: Device) -> Archive:
    archive, _ = Archive.objects.get_or_create(
        user=device.owner, device=device, defaults={"organization": device.organization}
    )
    return archive


@transaction.atomic
def device_enroll(*, user: User, device_name: str, os_name: str, agent_version: str,
                  device_uuid=None) -> tuple[Device, Archive, str]:
    """Enroll a device of `user` (or re-enroll one of theirs) and issue it a token.

    Re-enrolling a deauthorized device is refused: a stolen laptop with its owner's password must
    not come back; an administrator reauthorizes it first.
    """
    device = None
    if device_uuid is not None:
        device = Device.objects.select_for_update().filter(uuid=device_uuid, owner=user).first()
    if device is not None and not device.authorized:
        raise DeviceDeauthorized("This device was deauthorized; ask an administrator to reauthorize it")
    if device is None:
        device = device_create(owner=user, name=device_name, os_name=os_name, agent_version=agent_version)
        device_enrolled_notify(device=device)
    else:
        device_touch(device=device, agent_version=agent_version)
    archive = archive_for_device_ensure(device=device)
    return device, archive, device_token_issue(device=device)


def device_enroll_by_token(*, raw_token: str, email: str, device_name: str, os_name: str, agent_version: str,
                           address: str, device_uuid=None) -> tuple[User, Device, Archive, str]:
    """Enroll a device of `email` with a deployment token (accounts/deployment.py): all or nothing.

    The token's use, a user it creates, the group it joins and the device are one transaction, so
    a refusal at any step (expired, exhausted, unknown user, deauthorized device) leaves none of
    them. Unless the token allows it, a user who already has a key is refused: the new device
    would receive that key, and a token is not the user's own proof of identity.
    """
    deployment_attempt_count(address=address)
    try:
        with transaction.atomic():
            redeemed = deployment_token_redeem(raw=raw_token, email=email)
            if not redeemed.token.allow_existing_keys and UserKey.objects.filter(user=redeemed.user).exists():
                raise DeploymentTokenRefused(
                    "user_has_key", "This user already has a key; enroll with their password or a one-time code, "
                                    "or use a token that allows existing keys", redeemed.token, redeemed.user.email)
            device, archive, token = device_enroll(user=redeemed.user, device_name=device_name, os_name=os_name,
                                                   agent_version=agent_version, device_uuid=device_uuid)
    except DeploymentTokenRefused as refused:
        deployment_refusal_record(refused=refused, address=address)
        raise
    deployment_attempt_forgive(address=address)
    return redeemed.user, device, archive, token


# --- backup runs ----------------------------------------------------------------------------

def backup_run_start(*, archive: Archive) -> BackupRun:
    return BackupRun.objects.create(archive=archive)


RUN_COUNTERS = ("files_scanned", "bytes_scanned", "files_changed", "bytes_sent")


def backup_run_finish(*, run: BackupRun, status: str, counters: dict[str, int], errors: list[str]) -> BackupRun:
    if status not in {BackupRun.Status.COMPLETED, BackupRun.Status.FAILED, BackupRun.Status.INTERRUPTED}:
        raise ValueError(f"unknown final status {status!r}")
    updated = BackupRun.objects.filter(pk=run.pk, status=BackupRun.Status.RUNNING).update(
        status=status, finished_at=timezone.now(), errors=[str(e)[:1000] for e in errors[:100]],
        **{name: max(0, int(counters.get(name, 0))) for name in RUN_COUNTERS},
    )
    if not updated:
        raise ValueError("this backup run has already finished")
    run.refresh_from_db()
    _run_finished(run)
    return run


def _run_finished(run: BackupRun) -> None:
    """Self-healing progress and the mass-change (ransomware) check (archives/healing.py, freeze.py)."""
    heal_progress(archive=run.archive)
    run_mass_change_check(run=run)


# --- blocks ---------------------------------------------------------------------------------

def _pack_key(archive: Archive, pack_uuid: uuid.UUID) -> str:
    return f"{archive.organization.uuid}/{archive.uuid}/{pack_uuid.hex[:2]}/{pack_uuid}.pack"


def blocks_present(*, archive: Archive, block_ids: list[bytes]) -> dict[bytes, int]:
    """The given ids that the archive's index holds, with their stored frame sizes."""
    found: dict[bytes, int] = {}
    unique = list(dict.fromkeys(block_ids))
    for start in range(0, len(unique), QUERY_CHUNK):
        rows = Block.objects.filter(archive=archive, block_id__in=unique[start:start + QUERY_CHUNK])
        found.update((bytes(block_id), size) for block_id, size in rows.values_list("block_id", "frame_size"))
    return found


TOUCH_SLACK = timedelta(seconds=60)  # a row touched this recently is locked but not rewritten


def blocks_touch(*, archive: Archive, block_ids: list[bytes], now: datetime | None = None) -> dict[bytes, int]:
    """The given ids the archive holds (with frame sizes), each locked and marked referenced now.

    This is what makes "you already have it" safe against prune (docs/maintenance.md): the rows
    are locked in block-id order (no deadlock between two callers), `last_referenced_at` is set,
    and only rows that still exist once the lock is held are reported present — a row a prune
    deleted while we waited is reported missing, so the agent sends the block again.
    """
    found: dict[bytes, int] = {}
    unique = sorted(set(block_ids))
    with transaction.atomic():
        for start in range(0, len(unique), QUERY_CHUNK):
            rows = list(Block.objects.select_for_update(no_key=True).order_by("block_id")
                        .filter(archive=archive, block_id__in=unique[start:start + QUERY_CHUNK])
                        .values_list("pk", "block_id", "frame_size", "last_referenced_at"))
            at = now or timezone.now()
            stale = [pk for pk, _, _, referenced in rows if referenced < at - TOUCH_SLACK]
            if stale:
                Block.objects.filter(pk__in=stale).update(last_referenced_at=at)
            found.update((bytes(block_id), size) for _, block_id, size, _ in rows)
    return found


def blocks_missing(*, archive: Archive, block_ids: list[bytes]) -> list[bytes]:
    present = blocks_touch(archive=archive, block_ids=block_ids)
    return [block_id for block_id in dict.fromkeys(block_ids) if block_id not in present]


@dataclass
class IngestResult:
    stored: int
    duplicates: int
    pack: Pack | None


def _batch_frames(archive: Archive, body: bytes, key_id: bytes) -> list[tuple[Frame, memoryview]]:
    """Decode and check an upload batch: (frame, its exact bytes in the body) for each frame."""
    frames: list[tuple[Frame, memoryview]] = []
    view = memoryview(body)
    try:
        for index, (offset, frame) in enumerate(frames_decode(body, max_payload=MAX_BLOCK_FRAME_PAYLOAD)):
            where = f"frame {index} at byte offset {offset}"
            if frame.kind != FRAME_BLOCK:
                raise BatchInvalid(f"{where}: only block frames may be uploaded (kind {frame.kind})")
            if frame.archive_id != archive.uuid:
                raise BatchInvalid(f"{where}: the frame names archive {frame.archive_id}, not this archive")
            if frame.length < BLOCK_OVERHEAD or frame.payload[0] != FORMAT_VERSION:
                raise BatchInvalid(f"{where}: the payload is not a version-{FORMAT_VERSION} block")
            if block_key_id(frame.payload) != key_id:
                raise BatchInvalid(f"{where}: the block is encrypted with a key that is not the user's escrowed key")
            frames.append((frame, view[offset:offset + frame.size]))
    except FormatError as error:
        raise BatchInvalid(str(error)) from None
    return frames


def _escrowed_key_id(user: User) -> bytes:
    row = escrowed_key_of(user)
    if row is None or row.state != UserKey.State.ESCROWED:
        raise BlocksBeforeEscrow("The user's key is not escrowed yet: no block is accepted before it is")
    return bytes.fromhex(row.key_id)


def blocks_ingest(*, archive: Archive, body: bytes, run: BackupRun | None = None) -> IngestResult:
    """Store a batch of encrypted blocks as one new immutable pack, then index them.

    Idempotent: blocks the archive already holds are skipped, so a retried or resumed batch
    stores nothing twice. The pack's frames are shuffled so their order and sizes do not mirror
    the files they came from. Every block must carry the key_id of the user's *escrowed* key,
    read here rather than passed in, so no caller can skip the rule: no block is stored before
    the escrow is confirmed, nor one that the keystore could not help decrypt. An escrowed key
    is never replaced, so checking before the pack is written cannot race with a change.
    """
    frames = _batch_frames(archive, body, _escrowed_key_id(archive.user))
    unique = {bytes(frame.block_id): raw for frame, raw in frames}
    present = blocks_touch(archive=archive, block_ids=list(unique))  # "already stored" is a "you have it"
    new = [(block_id, raw) for block_id, raw in unique.items() if block_id not in present]
    if not new:
        return IngestResult(stored=0, duplicates=len(frames), pack=None)
    _shuffle(new)
    quota_enforce(archive=archive, incoming=len(PACK_MAGIC) + sum(len(raw) for _, raw in new))

    pack_uuid = uuid.uuid4()
    key = _pack_key(archive, pack_uuid)
    positions, offset = [], len(PACK_MAGIC)
    for block_id, raw in new:  # verified frames go into the pack byte for byte, never re-encoded
        positions.append((block_id, offset, len(raw)))
        offset += len(raw)
    pack_storage().put(key, [PACK_MAGIC, *(raw for _, raw in new)])
    fault_point("blocks.pack_durable")

    with transaction.atomic():
        pack = Pack.objects.create(uuid=pack_uuid, archive=archive, kind=Pack.Kind.BLOCKS, storage_key=key,
                                   size=offset, frame_count=len(new))
        Block.objects.bulk_create(
            [Block(archive=archive, block_id=block_id, pack=pack, offset=at, frame_size=size)
             for block_id, at, size in positions],
            ignore_conflicts=True,  # a concurrent batch indexed the same block first: its copy wins
        )
        if run is not None:
            BackupRun.objects.filter(pk=run.pk).update(
                blocks_received=F("blocks_received") + len(new), bytes_received=F("bytes_received") + offset)
        fault_point("blocks.before_commit")
    return IngestResult(stored=len(new), duplicates=len(frames) - len(new), pack=pack)


# --- versions -------------------------------------------------------------------------------

@dataclass
class VersionIn:
    version_id: uuid.UUID
    path_id: str
    deleted: bool
    block_ids: list[bytes]
    manifest: bytes


@dataclass
class CommitResult:
    committed: int
    existing: int
    committed_at: datetime
    pack: Pack | None = None
    version_ids: list[uuid.UUID] = field(default_factory=list)


def _existing_versions(archive: Archive, versions: list[VersionIn]) -> set[uuid.UUID]:
    ids = [version.version_id for version in versions]
    rows = FileVersion.objects.filter(uuid__in=ids).values_list("uuid", "archive_id")
    existing = set()
    for version_uuid, archive_pk in rows:
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
    sizes = blocks_present(archive=archive, block_ids=[b for version in todo for b in version.block_ids])
    absent = list(dict.fromkeys(b for version in todo for b in version.block_ids if b not in sizes))
    if absent:
        raise MissingBlocks(absent)

    pack_uuid = uuid.uuid4()
    key = _pack_key(archive, pack_uuid)
    rows, frames, offset = [], [], len(PACK_MAGIC)
    for version in todo:
        stored_size = sum(sizes[b] for b in version.block_ids)
        server_fields = {
            "archive_id": str(archive.uuid), "version_id": str(version.version_id), "path_id": version.path_id,
            "committed_at": now.isoformat(), "deleted": version.deleted, "stored_size": stored_size,
            "block_ids": [b.hex() for b in version.block_ids], "run_id": str(run.uuid) if run else None,
        }
        frame = Frame(FRAME_MANIFEST, archive.uuid, manifest_frame_id(version.version_id),
                      manifest_frame_payload(server_fields, version.manifest))
        frames.append(frame)
        rows.append(FileVersion(
            uuid=version.version_id, archive=archive, path_id=version.path_id, committed_at=now,
            deleted=version.deleted, block_ids=b"".join(version.block_ids), stored_size=stored_size,
            manifest_offset=offset, manifest_frame_size=frame.size, run=run,
            is_listing=version.manifest[:1] == bytes((LISTING_VERSION,)),
        ))
        offset += frame.size
    pack_storage().put(key, [PACK_MAGIC, frames_encode(frames)])
    fault_point("versions.pack_durable")

    try:
        with transaction.atomic():
            # The check that counts: inside the transaction that inserts the versions, every block
            # is locked and marked referenced, so no prune can delete it before they are visible.
            locked = blocks_touch(archive=archive, block_ids=[b for version in todo for b in version.block_ids])
            gone = [b for b in sizes if b not in locked]
            if gone:
                raise MissingBlocks(gone)
            pack = Pack.objects.create(uuid=pack_uuid, archive=archive, kind=Pack.Kind.MANIFESTS, storage_key=key,
                                       size=offset, frame_count=len(frames))
            for row in rows:
                row.manifest_pack = pack
            FileVersion.objects.bulk_create(rows)
            if run is not None:
                BackupRun.objects.filter(pk=run.pk).update(versions_committed=F("versions_committed") + len(rows))
            fault_point("versions.before_commit")
    except IntegrityError:
        raise VersionsInvalid("a concurrent request committed some of these versions; retry") from None
    return CommitResult(committed=len(rows), existing=len(existing), committed_at=now, pack=pack,
                        version_ids=[row.uuid for row in rows])


def block_id_parse(value: str) -> bytes:
    """Hex block id from the API → 32 bytes (ValueError otherwise)."""
    raw = bytes.fromhex(value)
    if len(raw) != BLOCK_ID_SIZE:
        raise ValueError(f"a block id is {BLOCK_ID_SIZE} bytes")
    return raw
