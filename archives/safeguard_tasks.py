"""Celery tasks of verification, restore drills and departed-user retention: thin wrappers.

Keyless work runs on the `maintenance` queue, so restores never wait behind it; work that fetches
a user's key (deep verification, drills) is named haven.keystore.* and so runs on the `keys`
queue, one task per child process, so no key outlives its job.
"""
from celery import shared_task

from archives.drills import restore_drill_run, restore_drills_run
from archives.holds import departed_archives_remove
from archives.models import Archive
from archives.verify import archive_verify_deep, archives_verify_scheduled

DAILY_SAMPLE = 0.1  # share of each archive's packs read by the daily check


@shared_task(name="haven.archives.verify_sample", soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300)
def verify_sample_task() -> dict:
    """Daily: shallow check of a random tenth of every archive's packs."""
    return archives_verify_scheduled(sample=DAILY_SAMPLE)


@shared_task(name="haven.archives.verify_full", soft_time_limit=12 * 3600, time_limit=12 * 3600 + 300)
def verify_full_task() -> dict:
    """Weekly: shallow check of every pack."""
    return archives_verify_scheduled(sample=None)


@shared_task(name="haven.keystore.verify_deep", soft_time_limit=12 * 3600, time_limit=12 * 3600 + 300)
def verify_deep_task(archive_id: int, actor_id: int | None = None) -> str:
    from accounts.models import User

    archive = Archive.objects.select_related("organization", "user", "device").get(pk=archive_id)
    actor = User.objects.filter(pk=actor_id).first() if actor_id else None
    return archive_verify_deep(archive=archive, actor=actor).check.outcome


@shared_task(name="haven.keystore.restore_drills", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300)
def restore_drills_task() -> dict:
    """Daily: one restore drill per archive."""
    return restore_drills_run()


@shared_task(name="haven.keystore.restore_drill", soft_time_limit=3600, time_limit=3900)
def restore_drill_task(archive_id: int) -> str:
    archive = Archive.objects.select_related("organization", "user", "device").get(pk=archive_id)
    return restore_drill_run(archive=archive).outcome


@shared_task(name="haven.archives.departed_archives_remove", soft_time_limit=3600, time_limit=3900)
def departed_archives_remove_task() -> dict:
    """Daily: remove departed users' archives past their organization's retention (not on hold)."""
    sweep = departed_archives_remove()
    return {"removed": len(sweep.removed), "kept": len(sweep.kept)}
