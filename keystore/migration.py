"""Moving an organization's keys between the Haven-managed keystore and its private one.

One key at a time: read it from the source; if the target lacks it, create it there and read it
back, if the target has it, compare; only then record the key's new location. A crash anywhere
leaves every key readable from where its row says it is, and running the migration again resumes. The organization switches
(new escrows go to the target) only once every key is verified there; then the source copies are
deleted (unless kept on request), each after reading its key at the target, through the audited
privileged path. Haven cannot delete from an organization's own Vault (its policy grants no
`delete`): after a migration back, the copies left there are counted for the admin to remove.
"""
import base64

import hvac
from django.conf import settings
from django.utils import timezone
from hvac import exceptions as hvac_errors

from accounts.models import Organization, User
from accounts.services import audit_record
from archives.faults import fault_point
from formats.keys import KEY_SIZE, key_id_for
from keystore.engines import HAVEN, PRIVATE, engine_named, privileged_haven_token
from keystore.models import KeyAccess, KeystoreMigration, PrivateKeystore, UserKey
from keystore.private_keystores import PrivateKeystoreInvalid, private_keystore_address_check
from keystore.services import key_access_record, key_path
from keystore.vault import (
    KeystorePathExists,
    KeystoreUnavailable,
    vault_address,
    vault_call,  # the one translation of Vault errors
)


class MigrationRefused(Exception):
    """The migration cannot start or the source cannot be deleted (the message says why)."""


def keystore_migration_start(*, organization: Organization, target: str, actor_label: str,
                             keep_source: bool = False) -> KeystoreMigration:
    """Start (or resume) moving the organization's keys to `target`. Once every key is verified there,
    the source copies are deleted too, unless `keep_source` (an explicit opt-out)."""
    if target not in (HAVEN, PRIVATE):
        raise MigrationRefused(f"unknown keystore {target!r}")
    keystore = PrivateKeystore.objects.filter(organization=organization).first()
    if keystore is None:
        raise MigrationRefused("configure the private keystore first")
    try:  # checked at upload too, but the name may resolve elsewhere by now (moving keys back stays possible)
        if target == PRIVATE:
            private_keystore_address_check(keystore.address)
    except PrivateKeystoreInvalid as error:
        raise MigrationRefused(str(error)) from None
    running = KeystoreMigration.objects.filter(organization=organization, state=KeystoreMigration.State.RUNNING).first()
    if running:  # resume, never two at once; keeping the source may still be chosen (e.g. no privileged token)
        if keep_source and not running.keep_source:
            KeystoreMigration.objects.filter(pk=running.pk).update(keep_source=True)
            running.keep_source = True
        return running
    source = HAVEN if target == PRIVATE else PRIVATE
    migration = KeystoreMigration.objects.create(organization=organization, source=source, target=target,
                                                 started_by=actor_label[:254], keep_source=keep_source)
    audit_record(organization=organization, actor=None, actor_label=actor_label, action="keystore.migration.start",
                 target_type="keystore", target_uuid=migration.uuid,
                 detail={"from": source, "to": target, "keep_source": keep_source})
    return migration


def _key_of(data: dict | None) -> bytes | None:
    if not data or "key" not in data:
        return None
    try:
        key = base64.b64decode(data["key"])
    except ValueError:
        return None
    return key if len(key) == KEY_SIZE else None


def _label(migration: KeystoreMigration) -> str:
    return f"keystore migration {migration.source} → {migration.target}"


def _migrate_one(migration: KeystoreMigration, row: UserKey, source, target) -> None:
    user: User = row.user
    path, job, label = key_path(user), str(migration.uuid), _label(migration)
    key_access_record(subject=user, purpose=KeyAccess.Purpose.MIGRATION, outcome=KeyAccess.Outcome.STARTED,
                      actor=None, actor_label=label, job=job)
    key = _key_of(source.read(path))
    if key is None or key_id_for(key) != row.key_id:
        key_access_record(subject=user, purpose=KeyAccess.Purpose.MIGRATION, outcome=KeyAccess.Outcome.FAILED,
                          actor=None, actor_label=label, job=job, detail="the source copy is missing or damaged")
        raise MigrationRefused(f"the source keystore has no valid key for {user.email}")
    # Write only what is absent, compare what is present: Haven's policies grant `create`, never
    # `update`, so writing over a present key (a copy kept by an earlier migration) is refused anyway.
    present = target.read(path)
    outcome = "already at the target, identical"
    if present is None:
        try:
            target.create(path, {"key": base64.b64encode(key).decode(), "key_id": row.key_id})
        except KeystorePathExists:
            pass  # written meanwhile: the read-back below decides whether it is the same key
        fault_point("keystore.migration.after_copy")
        present, outcome = target.read(path), "copied and verified"
    if _key_of(present) != key:
        key_access_record(subject=user, purpose=KeyAccess.Purpose.MIGRATION, outcome=KeyAccess.Outcome.FAILED,
                          actor=None, actor_label=label, job=job, detail="the target holds a different key")
        raise MigrationRefused(f"the target keystore holds a different key for {user.email}")
    UserKey.objects.filter(pk=row.pk).update(location=migration.target)
    key_access_record(subject=user, purpose=KeyAccess.Purpose.MIGRATION, outcome=KeyAccess.Outcome.SUCCEEDED,
                      actor=None, actor_label=label, job=job, detail=f"key {row.key_id} {outcome} at {migration.target}")


def keystore_migration_run(*, migration: KeystoreMigration) -> KeystoreMigration:
    """Copy and verify every key still at the source; switch the organization; then delete the source
    copies (unless kept on request). The migration completes only when all three are done."""
    organization = migration.organization
    source, target = engine_named(organization, migration.source), engine_named(organization, migration.target)
    escrowed = UserKey.objects.filter(organization=organization, state=UserKey.State.ESCROWED)
    try:
        while True:
            pending = list(escrowed.filter(location=migration.source).select_related("user", "user__organization")[:100])
            if not pending:
                break
            for row in pending:
                _migrate_one(migration, row, source, target)
                KeystoreMigration.objects.filter(pk=migration.pk).update(
                    keys_verified=escrowed.filter(location=migration.target).count(), keys_total=escrowed.count())
        PrivateKeystore.objects.filter(organization=organization).update(in_use=migration.target == PRIVATE)
        moved = KeyAccess.objects.filter(job=str(migration.uuid), purpose=KeyAccess.Purpose.MIGRATION,
                                         outcome=KeyAccess.Outcome.SUCCEEDED).count()
        deleted_at, copies_left = None, moved
        migration.refresh_from_db(fields=["keep_source"])  # may have been chosen while this run went on
        if not migration.keep_source and migration.source == HAVEN:
            _source_delete(migration, target, actor_label=_label(migration))
            deleted_at, copies_left = timezone.now(), 0
    except (MigrationRefused, KeystoreUnavailable) as error:
        KeystoreMigration.objects.filter(pk=migration.pk).update(error=str(error)[:500])
        raise
    KeystoreMigration.objects.filter(pk=migration.pk).update(
        state=KeystoreMigration.State.COMPLETED, finished_at=timezone.now(), error="", source_deleted_at=deleted_at,
        source_copies_left=copies_left, keys_total=escrowed.count(),
        keys_verified=escrowed.filter(location=migration.target).count())
    audit_record(organization=organization, actor=None, actor_label=migration.started_by,
                 action="keystore.migration.complete", target_type="keystore", target_uuid=migration.uuid,
                 detail={"to": migration.target, "source_copies_deleted": deleted_at is not None,
                         "source_copies_left": copies_left})
    migration.refresh_from_db()
    return migration


def keystore_migration_delete_source(*, migration: KeystoreMigration, actor_label: str) -> int:
    """Delete the Haven-managed copies kept by a completed migration (`keep_source`), each only after
    its key is verified at the target. Returns how many keys were checked and deleted."""
    if migration.state != KeystoreMigration.State.COMPLETED:
        raise MigrationRefused("the migration has not completed: every key must be verified first")
    if migration.source != HAVEN:
        raise MigrationRefused("Haven's policy on your keystore cannot delete keys; remove them there yourself")
    latest = KeystoreMigration.objects.filter(organization=migration.organization).order_by("-started_at").first()
    if latest is not None and latest.pk != migration.pk:
        raise MigrationRefused("a later migration moved the keys again; the copies of this one may be in use")
    count = _source_delete(migration, engine_named(migration.organization, migration.target), actor_label=actor_label)
    KeystoreMigration.objects.filter(pk=migration.pk).update(source_deleted_at=timezone.now(), source_copies_left=0)
    return count


# --- deleting the Haven-managed copies: the audited privileged path --------------------------------

PRIVILEGED_TIMEOUT = 10.0


def _source_delete(migration: KeystoreMigration, target, *, actor_label: str) -> int:
    """For each key: record the access, read it at the target and check it, then delete the source copy."""
    organization = migration.organization
    rows = list(UserKey.objects.filter(organization=organization, state=UserKey.State.ESCROWED)
                .select_related("user", "user__organization").order_by("pk"))
    if any(row.location != migration.target for row in rows):
        raise MigrationRefused("some keys are not at the target yet; nothing deleted")
    if not rows:
        return 0
    privileged = hvac.Client(url=vault_address(), token=privileged_haven_token(), verify=settings.VAULT_CACERT or True,
                             timeout=PRIVILEGED_TIMEOUT)
    try:
        for row in rows:
            _source_delete_one(migration, row, target, privileged, actor_label=actor_label)
    finally:
        privileged.adapter.close()
    return len(rows)


def _source_delete_one(migration: KeystoreMigration, row: UserKey, target, privileged: hvac.Client, *,
                       actor_label: str) -> None:
    record = {"subject": row.user, "purpose": KeyAccess.Purpose.DELETION, "actor": None, "actor_label": actor_label,
              "job": str(migration.uuid)}
    path = key_path(row.user)
    key_access_record(outcome=KeyAccess.Outcome.STARTED, **record,
                      detail=f"verifying key {row.key_id} at {migration.target} before deleting the Haven-managed copy")
    try:
        key = _key_of(target.read(path))
        if key is None or key_id_for(key) != row.key_id:
            raise MigrationRefused(f"the key of {row.user.email} is not verified at the target; its source copy "
                                   "was kept")
        _privileged_delete(privileged, path)
    except (MigrationRefused, KeystoreUnavailable) as error:
        key_access_record(outcome=KeyAccess.Outcome.FAILED, **record, detail=str(error))
        raise
    key_access_record(outcome=KeyAccess.Outcome.SUCCEEDED, **record,
                      detail="the Haven-managed copy was deleted after migration")


def _privileged_delete(client: hvac.Client, path: str) -> None:
    try:
        vault_call(lambda: client.secrets.kv.v1.delete_secret(path=path, mount_point="secret"))
    except hvac_errors.Forbidden:
        raise KeystoreUnavailable("the keystore refused the deletion (check the privileged token's policy)") from None
    except hvac_errors.VaultError as error:
        raise KeystoreUnavailable(f"the keystore failed to delete a key: {type(error).__name__}") from None
