"""Celery tasks of the keystore app: thin, ids only, routed to the `keys` queue whose worker runs
with --max-tasks-per-child=1 so no key material outlives a job."""
from celery import shared_task

from keystore.migration import keystore_migration_run
from keystore.models import KeystoreMigration, PrivateKeystore
from keystore.private_keystores import private_keystore_renew, private_keystore_renewal_failed


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
