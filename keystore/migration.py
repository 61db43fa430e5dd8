"""Moving an organization's keys between the Haven-managed keystore and its private one.

One key at a time: read it from the source, create it at the target, read it back and compare,
and only then record the key's new location. A crash anywhere leaves every key readable from
where its row says it is, and running the migration again resumes. The organization switches
(new escrows go to the target) only once every key is verified there; the source copies are
deleted only on request, through the privileged path, and only after that.
"""
import base64

import hvac
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization, User
from accounts.services import audit_record
from archives.faults import fault_point
from formats.keys import KEY_SIZE, key_id_for
from keystore.engines import HAVEN, PRIVATE, engine_named, privileged_haven_token
from keystore.models import KeyAccess, KeystoreMigration, PrivateKeystore, UserKey
from keystore.services import key_access_record, key_path
from keystore.vault import KeystorePathExists, KeystoreUnavailable, vault_address


class MigrationRefused(Exception):
    """The migration cannot start or the source cannot be deleted (the message says why)."""


def keystore_migration_start(*, organization: Organization, target: str, actor_label: str) -> KeystoreMigration:
    if target not in (HAVEN, PRIVATE):
        raise MigrationRefused(f"unknown keystore {target!r}")
    if target == PRIVATE and not PrivateKeystore.objects.filter(organization=organization).exists():
        raise MigrationRefused("configure the private keystore first")
    running = KeystoreMigration.objects.filter(organization=organization, state=KeystoreMigration.State.RUNNING).first()
    if running:
        return running  # resume, never two at once
    source = HAVEN if target == PRIVATE else PRIVATE
    migration = KeystoreMigration.objects.create(organization=organization, source=source, target=target,
                                                 started_by=actor_label[:254])
    audit_record(organization=organization, actor=None, actor_label=actor_label, action="keystore.migration.start",
                 target_type="keystore", target_uuid=migration.uuid, detail={"from": source, "to": target})
    return migration


def _key_of(data: dict | None) -> bytes | None:
    if not data or "key" not in data:
        return None
    key = base64.b64decode(data["key"])
    return key if len(key) == KEY_SIZE else None


def _migrate_one(migration: KeystoreMigration, row: UserKey, source, target) -> None:
    user: User = row.user
    path, job = key_path(user), str(migration.uuid)
    label = f"keystore migration {migration.source} → {migration.target}"
    key_access_record(subject=user, purpose=KeyAccess.Purpose.MIGRATION, outcome=KeyAccess.Outcome.STARTED,
                      actor=None, actor_label=label, job=job)
    key = _key_of(source.read(path))
    if key is None or key_id_for(key) != row.key_id:
        key_access_record(subject=user, purpose=KeyAccess.Purpose.MIGRATION, outcome=KeyAccess.Outcome.FAILED,
                          actor=None, actor_label=label, job=job, detail="the source copy is missing or damaged")
        raise MigrationRefused(f"the source keystore has no valid key for {user.email}")
    try:
        target.create(path, {"key": base64.b64encode(key).decode(), "key_id": row.key_id})
    except KeystorePathExists:
        pass  # copied before a crash: the read-back below decides whether it is the same key
    fault_point("keystore.migration.after_copy")
    copied = _key_of(target.read(path))
    if copied != key:
        key_access_record(subject=user, purpose=KeyAccess.Purpose.MIGRATION, outcome=KeyAccess.Outcome.FAILED,
                          actor=None, actor_label=label, job=job, detail="the target holds a different key")
        raise MigrationRefused(f"the target keystore holds a different key for {user.email}")
    UserKey.objects.filter(pk=row.pk).update(location=migration.target)
    key_access_record(subject=user, purpose=KeyAccess.Purpose.MIGRATION, outcome=KeyAccess.Outcome.SUCCEEDED,
                      actor=None, actor_label=label, job=job, detail=f"key {row.key_id} verified at {migration.target}")


def keystore_migration_run(*, migration: KeystoreMigration) -> KeystoreMigration:
    """Copy and verify every key still at the source; then switch the organization."""
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
    except (MigrationRefused, KeystoreUnavailable) as error:
        KeystoreMigration.objects.filter(pk=migration.pk).update(error=str(error)[:500])
        raise
    with transaction.atomic():
        PrivateKeystore.objects.filter(organization=organization).update(in_use=migration.target == PRIVATE)
        KeystoreMigration.objects.filter(pk=migration.pk).update(
            state=KeystoreMigration.State.COMPLETED, finished_at=timezone.now(), error="",
            keys_total=escrowed.count(), keys_verified=escrowed.filter(location=migration.target).count())
    audit_record(organization=organization, actor=None, actor_label=migration.started_by,
                 action="keystore.migration.complete", target_type="keystore", target_uuid=migration.uuid,
                 detail={"to": migration.target})
    migration.refresh_from_db()
    return migration


def keystore_migration_delete_source(*, migration: KeystoreMigration, actor_label: str) -> int:
    """Delete the source copies through the privileged path — only after every key is verified at
    the target, re-checked here one key at a time. Returns how many keys were deleted."""
    if migration.state != KeystoreMigration.State.COMPLETED:
        raise MigrationRefused("the migration has not completed: every key must be verified first")
    if migration.source != HAVEN:
        raise MigrationRefused("Haven's policy on your keystore cannot delete keys; remove them there yourself")
    organization = migration.organization
    target = engine_named(organization, migration.target)
    rows = list(UserKey.objects.filter(organization=organization, state=UserKey.State.ESCROWED)
                .select_related("user", "user__organization"))
    for row in rows:
        if row.location != migration.target or _key_of(target.read(key_path(row.user))) is None:
            raise MigrationRefused(f"the key of {row.user.email} is not verified at the target; nothing deleted")
    privileged = hvac.Client(url=vault_address(), token=privileged_haven_token(), verify=settings.VAULT_CACERT or True)
    for row in rows:
        key_access_record(subject=row.user, purpose=KeyAccess.Purpose.DELETION, outcome=KeyAccess.Outcome.STARTED,
                          actor=None, actor_label=actor_label, job=str(migration.uuid))
        privileged.secrets.kv.v1.delete_secret(path=key_path(row.user), mount_point="secret")
        key_access_record(subject=row.user, purpose=KeyAccess.Purpose.DELETION, outcome=KeyAccess.Outcome.SUCCEEDED,
                          actor=None, actor_label=actor_label, job=str(migration.uuid),
                          detail="the Haven-managed copy was deleted after migration")
    KeystoreMigration.objects.filter(pk=migration.pk).update(source_deleted_at=timezone.now())
    return len(rows)
