"""One maintenance pass over an archive: retention → prune → compaction → aggregation, under the archive's
lease, recorded on a `MaintenanceRun` row (docs/maintenance.md, "Leases and runs").

The lease excludes only other maintenance of the same archive; backups and restores never take
or wait for it. A worker that dies leaves a lease that lapses on its own.
"""
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from archives.aggregation import AggregationPolicy, archive_aggregate
from archives.compaction import archive_compact
from archives.faults import fault_point
from archives.holds import prune_block_reason
from archives.maintenance_models import MaintenanceLease, MaintenanceRun
from archives.models import Archive
from archives.prune import archive_prune
from archives.retention_policies import retention_for_archive

log = logging.getLogger(__name__)


def gc_grace() -> timedelta:
    return timedelta(seconds=settings.HAVEN_GC_GRACE_SECONDS)


def lease_claim(*, archive: Archive, holder: str, ttl: timedelta | None = None) -> bool:
    """Take (or renew) the archive's maintenance lease; False if another live holder has it."""
    now = timezone.now()
    expires = now + (ttl or timedelta(seconds=settings.HAVEN_MAINTENANCE_LEASE_SECONDS))
    taken = MaintenanceLease.objects.filter(Q(expires_at__lt=now) | Q(holder=holder), archive=archive).update(
        holder=holder, expires_at=expires)
    if taken:
        return True
    try:
        with transaction.atomic():
            MaintenanceLease.objects.create(archive=archive, holder=holder, expires_at=expires)
        return True
    except IntegrityError:  # someone holds it (or just took it)
        return False


def lease_release(*, archive: Archive, holder: str) -> None:
    MaintenanceLease.objects.filter(archive=archive, holder=holder).delete()


@dataclass
class MaintenanceReport:
    run: MaintenanceRun
    lines: list[str] = field(default_factory=list)


def _step(run: MaintenanceRun, archive: Archive, holder: str, step: str, dry_run: bool) -> None:
    run.step = step
    run.save(update_fields=["step"])
    if not dry_run and not lease_claim(archive=archive, holder=holder):  # renew; lost means another run took over
        raise RuntimeError("the maintenance lease of this archive was lost (this run took too long)")


def archive_maintain(*, archive: Archive, dry_run: bool = False, now: datetime | None = None,
                     grace: timedelta | None = None, threshold: float | None = None,
                     aggregation: AggregationPolicy | None = None) -> MaintenanceReport:
    """Run retention, prune, compaction and aggregation on one archive now (or, dry-run, say what
    they would do)."""
    now = now or timezone.now()
    grace = gc_grace() if grace is None else grace
    threshold = settings.HAVEN_COMPACT_THRESHOLD if threshold is None else threshold
    run = MaintenanceRun.objects.create(organization_id=archive.organization_id, archive=archive, dry_run=dry_run)
    report = MaintenanceReport(run)
    reason = prune_block_reason(archive)
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if reason is None and not dry_run and not lease_claim(archive=archive, holder=holder):
        reason = "another maintenance run holds this archive's lease"
    if reason is not None:
        run.status, run.detail, run.finished_at = MaintenanceRun.Status.SKIPPED, reason[:1000], timezone.now()
        run.save(update_fields=["status", "detail", "finished_at"])
        report.lines.append(f"skipped: {reason}")
        return report
    try:
        policy, source = retention_for_archive(archive)
        _step(run, archive, holder, "prune", dry_run)
        pruned = archive_prune(archive=archive, policy=policy, grace=grace, now=now, dry_run=dry_run)
        run.versions_expired, run.blocks_deleted = pruned.versions_expired, pruned.blocks_deleted
        _step(run, archive, holder, "compact", dry_run)
        fence = None if dry_run else holder  # every switch and intent clean-up re-checks the lease
        compacted = archive_compact(archive=archive, threshold=threshold, grace=grace, now=now, dry_run=dry_run,
                                    lease_holder=fence)
        run.packs_compacted, run.packs_retired = compacted.packs_compacted, compacted.packs_retired
        _step(run, archive, holder, "aggregate", dry_run)
        aggregated = archive_aggregate(archive=archive, now=now, policy=aggregation, dry_run=dry_run,
                                       lease_holder=fence)
        run.packs_aggregated, run.packs_aggregated_into = aggregated.packs_merged, aggregated.packs_written
        run.bytes_freed = (compacted.bytes_retired - compacted.bytes_written - aggregated.bytes_written
                           if not dry_run else pruned.block_bytes + pruned.manifest_bytes)
        run.status, run.step = MaintenanceRun.Status.DONE, "done"
        verb = "would expire" if dry_run else "expired"
        report.lines += [
            f"retention ({source} policy {policy.as_dict()}): {verb} {pruned.versions_expired} version(s)",
            f"prune: {'would leave' if dry_run else 'deleted'} {pruned.blocks_deleted} unreferenced block(s), "
            f"{pruned.block_bytes} bytes{' (freed once the grace period has passed)' if dry_run else ''}",
            f"compaction: {len(compacted.candidates)} pack(s) below {threshold:.0%} live"
            + ("" if dry_run else f", {compacted.packs_compacted} rewritten ({compacted.bytes_written} bytes), "
                                  f"{compacted.packs_retired} retired ({compacted.bytes_retired} bytes), "
                                  f"{compacted.orphans_removed} crash leftover(s) removed"),
            f"aggregation: {'would merge' if dry_run else 'merged'} {aggregated.packs_merged} small pack(s) "
            f"({aggregated.bytes_merged} bytes) into {aggregated.packs_written} "
            f"({aggregated.bytes_written} bytes)"
            + ("" if dry_run else f", {aggregated.orphans_removed} crash leftover(s) removed"),
            f"space freed{' (estimate)' if dry_run else ''}: {run.bytes_freed} bytes"
            + (" (for now: merged packs are written at once, the packs they replace leave after the grace "
               "period)" if run.bytes_freed < 0 else ""),
        ]
        report.lines += [f"not compacted: {skip}" for skip in compacted.skipped]
        report.lines += [f"not aggregated: {skip}" for skip in aggregated.skipped]
        fault_point("maintenance.done")
    except Exception as error:
        run.status, run.detail = MaintenanceRun.Status.FAILED, f"{type(error).__name__}: {error}"[:1000]
        log.exception("maintenance of archive %s failed", archive.uuid)
        raise
    finally:
        run.finished_at = timezone.now()
        run.save()
        if not dry_run:
            lease_release(archive=archive, holder=holder)
    return report


def archives_due() -> list[int]:
    """Every archive (maintenance is idempotent; a run with nothing to do is cheap)."""
    return list(Archive.objects.order_by("pk").values_list("pk", flat=True))
