"""Celery tasks of the keystore app: thin, ids only, routed to the `keys` queue whose worker runs
with --max-tasks-per-child=1 so no key material outlives a job."""
from celery import shared_task

from keystore.migration import keystore_migration_run
from keystore.models import KeystoreMigration, PrivateKeystore
from keystore.private_keystores import private_keystore_renew, private_keystore_renewal_failed
from keystore.snapshots import keystore_snapshot_check, keystore_snapshot_take

# A queued snapshot the key worker did not start before the next hourly check is dropped.
SNAPSHOT_QUEUE_EXPIRES = 50 * 60


@shared_task(name="haven.keystore.migrate", soft_time_limit=3600, time_limit=3900, acks_late=True)
def keystore_migrate_task(migration_id: int) -> str:
    migration = KeystoreMigration.objects.get(pk=migration_id)
    if migration.state != KeystoreMigration.State.RUNNING:
        return migration.state
    return keystore_migration_run(migration=migration).state


@shared_task(name="haven.keystore.renew_certificates", soft_time_limit=600, time_limit=900, bind=True,
             max_retries=5, default_retry_delay=3600)
def private_keystore_renew_task(self) -> list[str]:
    """Daily: renew every private keystore certificate that expires within 30 days."""
    renewed, failed = [], None
    for keystore in PrivateKeystore.objects.select_related("organization"):
        try:
            if private_keystore_renew(keystore=keystore).renewed:
                renewed.append(str(keystore.organization.uuid))
        except Exception as error:  # noqa: BLE001 - each org's failure is recorded; the task retries
            private_keystore_renewal_failed(keystore=keystore, error=error)
            failed = error
    if failed is not None:
        raise self.retry(exc=failed)
    return renewed


@shared_task(name="haven.snapshots.keystore_check", soft_time_limit=60, time_limit=120)
def keystore_snapshot_check_task() -> dict:
    """Hourly, on the default queue (no token there): alert on a stale newest snapshot, and queue
    one on `keys` when it is due."""
    check = keystore_snapshot_check()
    if check.due:
        keystore_snapshot_take_task.apply_async(kwargs={"scheduled": True}, expires=SNAPSHOT_QUEUE_EXPIRES)
    return {"due": check.due, "stale": check.stale, "note": check.note}


@shared_task(name="haven.keystore.snapshot_take", soft_time_limit=600, time_limit=900)
def keystore_snapshot_take_task(scheduled: bool = False) -> dict:
    """A raft snapshot of Haven's keystore onto the pack storage (keys queue: the privileged token)."""
    if scheduled and not keystore_snapshot_check().due:
        return {"snapshot": None, "state": "not due"}  # a duplicate delivery, or one was just taken
    row = keystore_snapshot_take(started_by="beat" if scheduled else "task")
    return {"snapshot": row.name, "state": row.state, "error": row.error}
