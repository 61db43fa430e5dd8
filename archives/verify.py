"""Verification of stored archives (DESIGN §7).

Shallow, keyless (beat: a daily sample, weekly every pack): each pack the index names is read
through the pack storage, and every frame an index row points at must decode at its offset with a
valid checksum, the right kind, archive id and block id (docs/formats.md §6); a pack the storage
no longer has, or one shorter than indexed, damages every frame in it.

Deep, on request (console, `manage.py verify --deep`): the shallow check over every pack, then
the user's key is fetched (one audited access, purpose `archive_maintenance`) and every block of
the latest version of every file is decrypted and checked against its keyed id through formats/
(the agent's own code); the key is zeroed at the end whatever happens. Only the deep check can
name files, and only it finds a block whose frame is intact but whose content is wrong.

Damage of either kind goes to archives/healing.py: one alert, damaged blocks dropped from the
index, the agent re-sends the affected files on its next backup.
"""
import logging
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from django.utils import timezone

from accounts.models import User
from archives.healing import Damage, DamageReport, damage_record
from archives.models import Archive, ArchiveCheck, Block, FileVersion, Pack
from archives.selectors import (
    MAX_MANIFEST_FRAME_PAYLOAD,
    BlocksNotFound,
    blocks_read,
    manifests_read,
    versions_at_pages,
)
from archives.storage import PackStorage, pack_storage
from formats.errors import FormatError
from formats.frames import FRAME_BLOCK, FRAME_MANIFEST, frame_decode, manifest_frame_id
from formats.keys import KeySet, derive_keys
from formats.manifests import manifest_decrypt
from formats.reassembly import MAX_BLOCK_FRAME_PAYLOAD, block_open
from keystore.models import KeyAccess
from keystore.services import key_retrieve

logger = logging.getLogger(__name__)

READ_GROUP = 16  # blocks read from the packs at once in a deep check (≤ 16 × 4 MiB)


@dataclass
class VerifyResult:
    check: ArchiveCheck
    damage: Damage
    report: DamageReport | None

    @property
    def clean(self) -> bool:
        return self.check.outcome == ArchiveCheck.Outcome.CLEAN


# --- shallow, keyless -------------------------------------------------------------------------

def _frame_problem(data: bytes, offset: int, size: int, *, kind: int, archive: Archive, frame_id: bytes,
                   max_payload: int) -> str | None:
    if offset + size > len(data):
        return "the pack is shorter than its index says"
    try:
        frame = frame_decode(memoryview(data)[offset:offset + size], max_payload=max_payload)
    except FormatError as error:
        return f"frame damaged: {error}"
    if frame.kind != kind or frame.archive_id != archive.uuid or bytes(frame.block_id) != frame_id:
        return "the frame at the indexed offset is not the one the index names"
    return None


def pack_verify(storage: PackStorage, pack: Pack, damage: Damage) -> int:
    """Check every indexed frame of one pack; returns the number of frames checked."""
    blocks = list(Block.objects.filter(pack=pack).values_list("block_id", "offset", "frame_size"))
    manifests = list(FileVersion.objects.filter(manifest_pack=pack)
                     .values_list("id", "uuid", "manifest_offset", "manifest_frame_size"))
    try:
        data = storage.read_all(pack.storage_key)
    except FileNotFoundError:
        data, missing = b"", "the pack file is missing"
    else:
        missing = None
    for block_id, offset, size in blocks:
        problem = missing or _frame_problem(data, offset, size, kind=FRAME_BLOCK, archive=pack.archive,
                                            frame_id=bytes(block_id), max_payload=MAX_BLOCK_FRAME_PAYLOAD)
        if problem:
            damage.blocks[bytes(block_id)] = f"pack {pack.uuid}: {problem}"
    for pk, version_uuid, offset, size in manifests:
        problem = missing or _frame_problem(data, offset, size, kind=FRAME_MANIFEST, archive=pack.archive,
                                            frame_id=manifest_frame_id(version_uuid),
                                            max_payload=MAX_MANIFEST_FRAME_PAYLOAD)
        if problem:
            damage.manifests[pk] = f"pack {pack.uuid}: {problem}"
    return len(blocks) + len(manifests)


def _check_start(archive: Archive, kind: str, actor: User | None) -> ArchiveCheck:
    return ArchiveCheck.objects.create(archive=archive, kind=kind, requested_by=actor)


def _check_finish(check: ArchiveCheck, archive: Archive, damage: Damage) -> VerifyResult:
    report = damage_record(archive=archive, check=check, damage=damage) if damage else None
    check.outcome = ArchiveCheck.Outcome.DAMAGED if damage else ArchiveCheck.Outcome.CLEAN
    check.finished_at = timezone.now()
    if report is not None:
        check.detail = {**check.detail, "damaged_blocks": report.blocks, "versions": report.versions[:200],
                        "path_ids": report.path_ids[:200], "files": report.files[:200]}
    check.save(update_fields=["outcome", "finished_at", "detail", "packs_checked", "frames_checked",
                              "files_checked", "bytes_checked"])
    return VerifyResult(check=check, damage=damage, report=report)


def _shallow_into(check: ArchiveCheck, archive: Archive, packs: list[Pack], damage: Damage) -> None:
    storage = pack_storage()
    for pack in packs:
        pack.archive = archive
        check.frames_checked += pack_verify(storage, pack, damage)
        check.packs_checked += 1
        check.bytes_checked += pack.size


def archive_verify_shallow(*, archive: Archive, sample: float | None = None, actor: User | None = None) -> VerifyResult:
    """Check every pack of the archive (or a random `sample` share of them, at least one)."""
    packs = list(Pack.objects.filter(archive=archive).order_by("id"))
    if sample is not None and packs:
        packs = random.SystemRandom().sample(packs, max(1, round(len(packs) * sample)))
    check = _check_start(archive, ArchiveCheck.Kind.SHALLOW, actor)
    damage = Damage()
    _shallow_into(check, archive, packs, damage)
    return _check_finish(check, archive, damage)


# --- deep, with the key -----------------------------------------------------------------------

def maintenance_keys_into(buffer: bytearray, *, archive: Archive, actor: User | None, actor_label: str,
                          job: str) -> KeySet:
    """One audited key access, purpose archive_maintenance; the caller zeroes `buffer`."""
    key = key_retrieve(user=archive.user, purpose=KeyAccess.Purpose.ARCHIVE_MAINTENANCE, actor=actor,
                       actor_label=actor_label, job=job)
    buffer[:] = key
    del key
    return derive_keys(buffer)


def _latest_versions(archive: Archive, at) -> Iterator[list]:
    return versions_at_pages(archive, at=at)


def _manifests(archive: Archive, keys: KeySet, page: list, damage: Damage):
    """(version, manifest) of a page; a version whose manifest cannot be read or decrypted is damage."""
    try:
        blobs = manifests_read(page)
    except (FormatError, OSError):
        blobs = {}
        for version in page:  # find which one
            try:
                blobs.update(manifests_read([version]))
            except (FormatError, OSError) as error:
                damage.manifests.setdefault(version.pk, f"manifest unreadable: {error}")
    for version in page:
        if version.pk not in blobs:
            continue
        try:
            yield version, manifest_decrypt(keys, blobs[version.pk], archive_id=archive.uuid,
                                            path_id=version.path_id, version_id=version.uuid)
        except FormatError as error:
            damage.manifests.setdefault(version.pk, f"manifest failed decryption: {error}")


def _blocks_decrypt(archive: Archive, keys: KeySet, wanted: list[tuple[bytes, int]], damage: Damage) -> int:
    """Decrypt and check each (block id, plaintext size); damaged or absent ones go to `damage`."""
    checked = 0
    ids = [block_id for block_id, _ in wanted]
    try:
        frames = blocks_read(archive, ids, max_bytes=READ_GROUP * (MAX_BLOCK_FRAME_PAYLOAD + 1024))
    except BlocksNotFound as absent:
        for block_id in absent.block_ids:
            damage.blocks.setdefault(block_id, "indexed by a version but not stored")
        rest = [(b, s) for b, s in wanted if b not in set(absent.block_ids)]
        return _blocks_decrypt(archive, keys, rest, damage) if rest else 0
    for (block_id, size), raw in zip(wanted, frames):
        try:
            block_open(keys, block_id, frame_decode(raw, max_payload=MAX_BLOCK_FRAME_PAYLOAD), size=size,
                       archive_id=archive.uuid)
        except FormatError as error:  # ReassemblyError and IntegrityError are FormatErrors
            damage.blocks.setdefault(block_id, f"block failed decryption: {error}"[:300])
        checked += len(raw)
    return checked


def archive_verify_deep(*, archive: Archive, actor: User | None = None, actor_label: str = "",
                        key_buffer: bytearray | None = None) -> VerifyResult:
    """Shallow over every pack, then decrypt every block of the latest versions (see the module)."""
    check = _check_start(archive, ArchiveCheck.Kind.DEEP, actor)
    damage = Damage()
    _shallow_into(check, archive, list(Pack.objects.filter(archive=archive).order_by("id")), damage)
    buffer = key_buffer if key_buffer is not None else bytearray(32)
    keys = None
    try:
        keys = maintenance_keys_into(buffer, archive=archive, actor=actor, job=str(check.uuid),
                                     actor_label=actor_label or (f"{actor.email} (deep verification)" if actor
                                                                 else "deep verification"))
        done: set[bytes] = set()
        by_path: dict[bytes, set[str]] = defaultdict(set)
        for page in _latest_versions(archive, timezone.now()):
            for version, manifest in _manifests(archive, keys, page, damage):
                check.files_checked += 1
                damage.names[version.path_id] = manifest.path
                wanted = []
                for block_id, size in zip(manifest.block_ids, manifest.block_sizes):
                    by_path[block_id].add(version.path_id)
                    if block_id not in done and block_id not in damage.blocks:
                        done.add(block_id)
                        wanted.append((block_id, size))
                for at in range(0, len(wanted), READ_GROUP):
                    check.bytes_checked += _blocks_decrypt(archive, keys, wanted[at:at + READ_GROUP], damage)
        for pk in damage.manifests:  # their names are unknown: the manifest is what is damaged
            damage.names.pop(FileVersion.objects.get(pk=pk).path_id, None)
    except Exception as error:  # noqa: BLE001 - the check must end, and say why
        logger.exception("deep verification of archive %s could not run", archive.uuid)
        check.outcome, check.finished_at = ArchiveCheck.Outcome.FAILED, timezone.now()
        check.detail = {"error": f"{type(error).__name__}: {error}"[:500]}
        check.save(update_fields=["outcome", "finished_at", "detail", "packs_checked", "frames_checked",
                                  "files_checked", "bytes_checked"])
        return VerifyResult(check=check, damage=damage, report=None)
    finally:
        buffer[:] = bytes(len(buffer))
        keys = None  # noqa: F841 - drop the sub-keys with the buffer
    return _check_finish(check, archive, damage)


# --- the scheduled checks ---------------------------------------------------------------------

def archives_verify_scheduled(*, sample: float | None) -> dict:
    """Shallow-check every archive (a sample of its packs, or all of them)."""
    clean = damaged = 0
    for archive in Archive.objects.filter(removal__isnull=True).select_related("organization", "user", "device"):
        result = archive_verify_shallow(archive=archive, sample=sample)
        clean, damaged = clean + result.clean, damaged + (not result.clean)
    return {"clean": clean, "damaged": damaged}


def archive_verify_deep_request(*, archive: Archive, actor: User) -> None:
    """Queue a deep check (console button): administrators only; audited; runs on the keys queue."""
    from django.db import transaction

    from accounts.models import Role
    from accounts.services import PermissionRefused, audit_record
    from archives.safeguard_tasks import verify_deep_task  # the task module imports this one

    if actor.organization_id != archive.organization_id or actor.role != Role.ORG_ADMIN:
        raise PermissionRefused("Only an administrator of this organization may verify an archive")
    audit_record(organization=archive.organization, actor=actor, action="archive.verify_deep_request",
                 target_type="archive", target_uuid=archive.uuid)
    transaction.on_commit(lambda: verify_deep_task.delay(archive.pk, actor.pk))
