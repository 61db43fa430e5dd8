"""Self-healing (as CrashPlan does): damage found by a verification drops the damaged blocks from
the index and names the affected versions and path ids; the archive's agent asks which path ids to
heal (GET /api/v1/archives/<id>/heal), forgets its cache entries for those files, re-reads them
and — since the server now answers that those blocks are missing — sends them again.

Everything here is keyless: versions hold their block ids, so the affected versions and path ids
are found without decrypting anything; file names appear only when a deep check supplies them.
"""
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from activity.alerts import alert_raise, alert_set_status
from activity.models import Alert
from archives.models import Archive, ArchiveCheck, Block, DamagedBlock, FileVersion, HealPath
from archives.selectors import QUERY_CHUNK
from formats.blocks import BLOCK_ID_SIZE

ALERT_KIND = "archive_damaged"
ALERT_LIST_LIMIT = 200


def _alert_key(archive: Archive) -> str:
    return f"archive_damaged:{archive.uuid}"


@dataclass
class Damage:
    """What one check found: damaged block ids and versions whose manifest frame is damaged
    (reason each), and — from a deep check — the file name of each affected path id."""

    blocks: dict[bytes, str] = field(default_factory=dict)
    manifests: dict[int, str] = field(default_factory=dict)  # FileVersion pk -> reason
    names: dict[str, str] = field(default_factory=dict)  # path id -> file name (deep only)

    def __bool__(self) -> bool:
        return bool(self.blocks or self.manifests)


@dataclass
class DamageReport:
    versions: list[str]
    path_ids: list[str]
    files: list[str]
    blocks: int


def versions_referencing(archive: Archive, block_ids: set[bytes]) -> list[tuple[int, str, str]]:
    """(pk, uuid, path id) of every version of the archive that names one of `block_ids`."""
    found, after = [], 0
    while True:
        rows = list(FileVersion.objects.filter(archive=archive, id__gt=after).order_by("id")
                    .values_list("id", "uuid", "path_id", "block_ids")[:QUERY_CHUNK])
        for pk, version_uuid, path_id, raw in rows:
            raw = bytes(raw)
            if any(raw[i:i + BLOCK_ID_SIZE] in block_ids for i in range(0, len(raw), BLOCK_ID_SIZE)):
                found.append((pk, str(version_uuid), path_id))
        if len(rows) < QUERY_CHUNK:
            return found
        after = rows[-1][0]


def damage_record(*, archive: Archive, check: ArchiveCheck, damage: Damage) -> DamageReport:
    """Drop the damaged blocks from the index, ask for the affected paths to be healed, and raise
    one alert naming what is affected."""
    affected = versions_referencing(archive, set(damage.blocks))
    manifest_rows = list(FileVersion.objects.filter(pk__in=list(damage.manifests)).values_list("id", "uuid", "path_id"))
    affected += [(pk, str(version_uuid), path_id) for pk, version_uuid, path_id in manifest_rows]
    versions = sorted({version_uuid for _, version_uuid, _ in affected})
    path_ids = sorted({path_id for _, _, path_id in affected})
    files = sorted({damage.names[p] for p in path_ids if p in damage.names})
    with transaction.atomic():
        for block_id, reason in damage.blocks.items():
            if not DamagedBlock.objects.filter(archive=archive, block_id=block_id, healed_at__isnull=True).exists():
                DamagedBlock.objects.create(archive=archive, block_id=block_id, found_by=check, reason=reason[:300])
        ids = list(damage.blocks)
        for at in range(0, len(ids), QUERY_CHUNK):
            Block.objects.filter(archive=archive, block_id__in=ids[at:at + QUERY_CHUNK]).delete()
        open_paths = set(HealPath.objects.filter(archive=archive, healed_at__isnull=True, path_id__in=path_ids)
                         .values_list("path_id", flat=True))
        HealPath.objects.bulk_create([HealPath(archive=archive, path_id=p) for p in path_ids if p not in open_paths])
        detail = {"check": str(check.uuid), "kind": check.kind, "damaged_blocks": len(damage.blocks),
                  "damaged_manifests": len(damage.manifests), "versions": versions[:ALERT_LIST_LIMIT],
                  "versions_total": len(versions), "path_ids": path_ids[:ALERT_LIST_LIMIT],
                  "path_ids_total": len(path_ids), "reasons": sorted(set(damage.blocks.values()))[:20],
                  "healing": "the next backup of the device re-sends the affected files"}
        if files:
            detail["files"] = files[:ALERT_LIST_LIMIT]
        what = f"{len(files)} file(s): {', '.join(files[:3])}" if files else f"{len(path_ids)} path(s)"
        alert_raise(organization=archive.organization, kind=ALERT_KIND, dedup_key=_alert_key(archive),
                    severity=Alert.Severity.HIGH, subject_user=archive.user, device=archive.device,
                    archive_uuid=archive.uuid,
                    title=f"Damaged data in the archive of {archive.device.name}: {what} affected",
                    detail=detail)
    return DamageReport(versions=versions, path_ids=path_ids, files=files, blocks=len(damage.blocks))


def heal_path_ids(archive: Archive) -> list[str]:
    """The path ids the archive's agent should re-read on its next backup."""
    return sorted(HealPath.objects.filter(archive=archive, healed_at__isnull=True).values_list("path_id", flat=True))


def heal_progress(*, archive: Archive) -> int:
    """After a backup run: damaged blocks indexed again are healed, paths with a newer version
    are healed, and the damage alert resolves once nothing is left to heal. Returns paths healed."""
    now = timezone.now()
    for damaged in DamagedBlock.objects.filter(archive=archive, healed_at__isnull=True):
        if Block.objects.filter(archive=archive, block_id=bytes(damaged.block_id)).exists():
            DamagedBlock.objects.filter(pk=damaged.pk).update(healed_at=now)
    healed = 0
    for heal in HealPath.objects.filter(archive=archive, healed_at__isnull=True):
        if FileVersion.objects.filter(archive=archive, path_id=heal.path_id, committed_at__gt=heal.requested_at).exists():
            healed += HealPath.objects.filter(pk=heal.pk, healed_at__isnull=True).update(healed_at=now)
    if healed and not HealPath.objects.filter(archive=archive, healed_at__isnull=True).exists():
        for alert in Alert.objects.filter(organization_id=archive.organization_id, dedup_key=_alert_key(archive)).exclude(
                status=Alert.Status.RESOLVED):
            alert_set_status(alert=alert, actor=None, status=Alert.Status.RESOLVED,
                             note="The device sent the damaged files again.")
    return healed
