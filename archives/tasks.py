"""Celery tasks of the archives app: thin wrappers over services."""
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from archives.gc import orphan_packs_collect
from archives.maintenance import archive_maintain, archives_due
from archives.models import Archive
from archives.restores import (
    RESTORE_SOFT_TIME_LIMIT,
    RESTORE_TIME_LIMIT,
    restore_job_claim,
    restore_job_run,
    restore_results_expire,
)
from keystore.vault import KeystoreUnavailable


@shared_task(name="haven.archives.orphan_packs_collect", soft_time_limit=3600, time_limit=3900)
def orphan_packs_collect_task() -> dict:
    """Daily: quarantine pack files left without index rows by a crash; delete old quarantine
    (nothing at all while the database looks older than the packs: see archives/gc.py)."""
    sweep = orphan_packs_collect(grace=timedelta(hours=settings.HAVEN_ORPHAN_GRACE_HOURS),
                                 retention=timedelta(days=settings.HAVEN_ORPHAN_RETENTION_DAYS))
    return {"quarantined": len(sweep.quarantined), "deleted": len(sweep.deleted), "refused": sweep.refused}


# --- restores ---------------------------------------------------------------------------------
# Named haven.keystore.* on purpose: CELERY_TASK_ROUTES sends those to the `keys` queue, whose
# worker runs one task per child process, so no key outlives the restore that fetched it.

@shared_task(name="haven.keystore.restore_job_run", bind=True, soft_time_limit=RESTORE_SOFT_TIME_LIMIT,
             time_limit=RESTORE_TIME_LIMIT, acks_late=True, max_retries=5, default_retry_delay=120)
def restore_job_run_task(self, job_id: int) -> str:
    job = restore_job_claim(job_id=job_id)
    if job is None:  # already claimed (a redelivered message) or gone
        return "skipped"
    try:
        return restore_job_run(job=job, retry=self.request.retries < self.max_retries).status
    except KeystoreUnavailable as error:  # the service put the job back in the queue
        raise self.retry(exc=error) from None


@shared_task(name="haven.archives.restore_results_expire", soft_time_limit=600, time_limit=900)
def restore_results_expire_task() -> dict:
    """Hourly: delete restore zips past their 24 hours; fail jobs whose worker died."""
    sweep = restore_results_expire()
    return {"deleted": len(sweep.deleted), "stale_failed": sweep.stale_failed}


# --- maintenance (docs/maintenance.md) ----------------------------------------------------------
# Named haven.maintenance.*: CELERY_TASK_ROUTES sends them to the `maintenance` queue, so restores
# never wait behind compaction. Idempotent: a second copy finds the lease held or nothing to do.

@shared_task(name="haven.maintenance.archive_maintain", soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300,
             acks_late=True)
def archive_maintain_task(archive_id: int) -> dict:
    archive = Archive.objects.filter(pk=archive_id).first()
    if archive is None:
        return {"status": "gone"}
    run = archive_maintain(archive=archive).run
    return {"status": run.status, "bytes_freed": run.bytes_freed}


@shared_task(name="haven.maintenance.archives_maintain", soft_time_limit=300, time_limit=600)
def archives_maintain_task() -> int:
    """Beat: one maintenance task per archive."""
    due = archives_due()
    for archive_id in due:
        archive_maintain_task.delay(archive_id)
    return len(due)
