"""Restore drills: a scheduled job per archive restores a random sample of the latest files inside
the job — one audited key access (purpose archive_maintenance), every manifest and block decrypted
and checked against its keyed id through formats/, the plaintext hashed and dropped, nothing written
anywhere — and records "restorable as of" on the archive (the device page shows it). A drill that
fails raises an alert; the next clean one resolves it.
"""
import hashlib
import logging
import random

from django.utils import timezone

from activity.alerts import alert_raise, alert_set_status
from activity.models import Alert
from archives.models import Archive, ArchiveCheck, FileVersion
from archives.restores import manifests_at
from archives.selectors import blocks_read
from archives.verify import maintenance_keys_into
from formats.reassembly import FETCH_BYTES, file_write

logger = logging.getLogger(__name__)

DRILL_FILES = 20
ALERT_KIND = "restore_drill_failed"


def _alert_key(archive: Archive) -> str:
    return f"restore_drill_failed:{archive.uuid}"


def restorable_as_of(archive: Archive):
    """The point in time of the archive's latest clean drill (None if none succeeded yet)."""
    check = (ArchiveCheck.objects.filter(archive=archive, kind=ArchiveCheck.Kind.DRILL,
                                         outcome=ArchiveCheck.Outcome.CLEAN).order_by("-started_at").first())
    return check.point_in_time if check else None


def restore_drill_run(*, archive: Archive, files: int = DRILL_FILES, key_buffer: bytearray | None = None) -> ArchiveCheck:
    """Restore up to `files` random files of the archive as of now, in memory; record the result."""
    now = timezone.now()
    check = ArchiveCheck.objects.create(archive=archive, kind=ArchiveCheck.Kind.DRILL, point_in_time=now)
    buffer = key_buffer if key_buffer is not None else bytearray(32)
    keys = None
    restored: list[dict] = []
    current = ""
    try:
        if not FileVersion.objects.filter(archive=archive, committed_at__lte=now).exists():
            check.outcome, check.detail = ArchiveCheck.Outcome.CLEAN, {"note": "nothing backed up yet"}
            return check
        keys = maintenance_keys_into(buffer, archive=archive, actor=None, actor_label="restore drill",
                                     job=str(check.uuid))
        chosen = [m for m in manifests_at(archive, keys, now) if not m.deleted and not m.is_listing]  # files only (formats §9)
        chosen = random.SystemRandom().sample(chosen, min(files, len(chosen)))

        def fetch(block_ids):
            return blocks_read(archive, block_ids, max_bytes=2 * FETCH_BYTES + 64 * 1024 * 1024)

        for manifest in chosen:
            current = manifest.path
            digest = hashlib.sha256()
            written = file_write(keys, manifest, fetch=fetch, write=digest.update, archive_id=archive.uuid)
            check.files_checked += 1
            check.bytes_checked += written
            restored.append({"size": written})
        check.outcome = ArchiveCheck.Outcome.CLEAN
        check.detail = {"files": len(restored)}
    except Exception as error:  # noqa: BLE001 - a drill that cannot restore is exactly what it looks for
        logger.warning("restore drill of archive %s failed: %s", archive.uuid, error)
        check.outcome = ArchiveCheck.Outcome.FAILED
        check.detail = {"error": f"{type(error).__name__}: {error}"[:500], "files_restored": len(restored),
                        "file": current}
    finally:
        buffer[:] = bytes(len(buffer))
        keys = None  # noqa: F841 - drop the sub-keys with the buffer
        check.finished_at = timezone.now()
        check.save(update_fields=["outcome", "finished_at", "detail", "files_checked", "bytes_checked"])
    _alert(archive, check)
    return check


def _alert(archive: Archive, check: ArchiveCheck) -> None:
    if check.outcome == ArchiveCheck.Outcome.FAILED:
        alert_raise(organization=archive.organization, kind=ALERT_KIND, dedup_key=_alert_key(archive),
                    severity=Alert.Severity.HIGH, subject_user=archive.user, device=archive.device,
                    archive_uuid=archive.uuid, title=f"Restore drill failed for {archive.device.name}",
                    detail={"check": str(check.uuid), **check.detail})
        return
    for alert in Alert.objects.filter(organization_id=archive.organization_id, dedup_key=_alert_key(archive)).exclude(
            status=Alert.Status.RESOLVED):
        alert_set_status(alert=alert, actor=None, status=Alert.Status.RESOLVED, note="A later restore drill succeeded.")


def restore_drills_run() -> dict:
    """Beat: one drill per archive that holds data."""
    clean = failed = 0
    for archive in (Archive.objects.filter(removal__isnull=True, versions__isnull=False).distinct()
                    .select_related("organization", "user", "device")):
        check = restore_drill_run(archive=archive)
        clean, failed = clean + (check.outcome == ArchiveCheck.Outcome.CLEAN), failed + (
            check.outcome == ArchiveCheck.Outcome.FAILED)
    return {"clean": clean, "failed": failed}
