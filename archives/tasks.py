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
from archives.stale_devices import stale_devices_check
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


@shared_task(name="haven.archives.stale_devices_check", soft_time_limit=1800, time_limit=2100)
def stale_devices_check_task() -> dict:
    """Hourly: raise a stale_device alert per device past its policy's stale_days without a
    completed backup; resolve those that backed up since (archives/stale_devices.py)."""
    sweep = stale_devices_check()
    return {"stale": len(sweep.stale), "raised": sweep.raised, "resolved": sweep.resolved}


# --- push restores (archives/push_restores.py) ------------------------------------------------

@shared_task(name="haven.keystore.push_stream_build", bind=True, soft_time_limit=RESTORE_SOFT_TIME_LIMIT,
             time_limit=RESTORE_TIME_LIMIT, acks_late=True, max_retries=5, default_retry_delay=120)
def push_stream_build_task(self, job_id: int) -> str:
    """Re-encrypt another user's files to the target agent's one-time key (keys queue)."""
    from archives.push_stream_build import push_stream_build, push_stream_claim

    job = push_stream_claim(job_id=job_id)
    if job is None:
        return "skipped"
    try:
        return push_stream_build(job=job, retry=self.request.retries < self.max_retries).push.stream
    except KeystoreUnavailable as error:
        raise self.retry(exc=error) from None


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


from archives.safeguard_tasks import *  # noqa: E402,F401,F403 - verification, drills, departed users (autodiscovered here)
