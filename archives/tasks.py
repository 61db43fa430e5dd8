"""Celery tasks of the archives app: thin wrappers over services."""
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from archives.gc import orphan_packs_collect


@shared_task(name="haven.archives.orphan_packs_collect", soft_time_limit=3600, time_limit=3900)
def orphan_packs_collect_task() -> dict:
    """Daily: quarantine pack files left without index rows by a crash; delete old quarantine
    (nothing at all while the database looks older than the packs: see archives/gc.py)."""
    sweep = orphan_packs_collect(grace=timedelta(hours=settings.HAVEN_ORPHAN_GRACE_HOURS),
                                 retention=timedelta(days=settings.HAVEN_ORPHAN_RETENTION_DAYS))
    return {"quarantined": len(sweep.quarantined), "deleted": len(sweep.deleted), "refused": sweep.refused}
