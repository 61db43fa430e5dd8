"""Key escrow records and the hash-chained key-access audit log.

The key itself never touches the database: a `UserKey` row says which key (by its public
key_id) a user escrowed and where; the key lives in the Vault-API keystore only.
"""
import uuid

from django.db import models

from accounts.models import Organization, User


class UserKey(models.Model):
    """One escrowed key per user. The unique row is written *before* the keystore write, so two
    devices racing to escrow different keys get a conflict instead of a silent overwrite."""

    class State(models.TextChoices):
        PENDING = "pending", "Escrow started"
        ESCROWED = "escrowed", "Escrowed"

    class Location(models.TextChoices):
        HAVEN = "haven", "Haven-managed keystore"
        PRIVATE = "private", "The organization's private keystore"

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="user_keys")
    user = models.OneToOneField(User, on_delete=models.PROTECT, related_name="escrowed_key")
    key_id = models.CharField(max_length=32)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    location = models.CharField(max_length=16, choices=Location.choices, default=Location.HAVEN)
    created_at = models.DateTimeField(auto_now_add=True)
    escrowed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"key {self.key_id} of {self.user.email} ({self.state})"


LEGACY_CHAIN = "global"


class KeyAccess(models.Model):
    """One line of the key-access audit log, chained by hash to the line before.

    Written before the keystore is called ("started") and again with the outcome, so an access
    that crashed half-way still left a trace. Rows are never updated or deleted; the chain head
    is also written to the keystore, where a database-only attacker cannot reach it.
    """

    class Purpose(models.TextChoices):
        ESCROW = "escrow", "Escrow from the user's device"
        DEVICE_RETRIEVAL = "device_retrieval", "Sent to the user's new device"
        WEB_RESTORE = "web_restore", "Web restore"
        PUSH_RESTORE = "push_restore", "Push restore"
        MIGRATION = "migration", "Keystore migration"
        DELETION = "deletion", "Deletion"
        ARCHIVE_MAINTENANCE = "archive_maintenance", "Archive maintenance (deep verification, restore drill)"

    class Outcome(models.TextChoices):
        STARTED = "started", "Started"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        REFUSED = "refused", "Refused"

    chain = models.CharField(max_length=36, default=LEGACY_CHAIN,
                             help_text="The organization's UUID: each organization has its own chain (DESIGN §10). "
                                       f"'{LEGACY_CHAIN}' marks records of the single chain kept before that.")
    seq = models.PositiveBigIntegerField(help_text="Position in its chain, from 1.")
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="key_accesses")
    subject = models.ForeignKey(User, on_delete=models.PROTECT, related_name="key_accesses")
    actor = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    actor_label = models.CharField(max_length=254)
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    job = models.CharField(max_length=100, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.CharField(max_length=500, blank=True)
    occurred_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="keyaccess_seq_unique_per_chain")]


class AuditChainHead(models.Model):
    """One row per chain: locking it serializes appends to that chain only (SELECT ... FOR UPDATE),
    so key accesses of different organizations never wait on each other."""

    chain = models.CharField(max_length=36, unique=True, default=LEGACY_CHAIN)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)


class PrivateKeystore(models.Model):
    """An organization's own Vault (seed 004): address, CA chain and the PKCS12 Haven logs in with.

    The PKCS12 and its password are stored encrypted (keystore/sealing.py), bound to this row's
    uuid and organization. `in_use` says whether
    new escrows of the organization go there; where each user's key lives is `UserKey.location`.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)  # bound into the sealed values
    organization = models.OneToOneField(Organization, on_delete=models.PROTECT, related_name="private_keystore")
    address = models.URLField(max_length=300)
    ca_pem = models.TextField()
    pkcs12_sealed = models.BinaryField()
    password_sealed = models.BinaryField()
    cert_role = models.CharField(max_length=100, default="haven-initial",
                                 help_text="The auth/cert/certs/<name> entry Haven logs in with.")
    cert_subject = models.CharField(max_length=300, blank=True)
    cert_not_after = models.DateTimeField()
    cert_fingerprint = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the client certificate.")
    in_use = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    renewed_at = models.DateTimeField(null=True, blank=True)
    renewal_error = models.CharField(max_length=500, blank=True)


class KeystoreMigration(models.Model):
    """Moving an organization's keys between keystores, one key at a time, resumable."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="keystore_migrations")
    source = models.CharField(max_length=16)
    target = models.CharField(max_length=16)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    keys_total = models.IntegerField(default=0)
    keys_verified = models.IntegerField(default=0)
    started_by = models.CharField(max_length=254)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    source_deleted_at = models.DateTimeField(null=True, blank=True)
    # Opt-out of deleting the source copies once every key is verified at the target.
    keep_source = models.BooleanField(default=False)
    # Copies left at the source when it completed: kept on request, or in a Vault Haven may not delete from.
    source_copies_left = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization"], condition=models.Q(state="running"),
                                               name="one_running_migration_per_org")]


class KeystoreSnapshot(models.Model):
    """One raft snapshot of Haven's keystore, kept on the pack storage (keystore/snapshots.py).

    The snapshot is sealed by the keystore's barrier: it restores only with the unseal shares of
    the cluster it was taken from. A copy of this record lives beside it on the storage, so a
    database restored from an older backup can still find and check it.
    """

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Not possible (the keystore is not raft-backed)"

    name = models.CharField(max_length=64, unique=True, help_text="What operators type: 20261201T154935Z-3f2a1c.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    storage_key = models.CharField(max_length=200, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    size = models.BigIntegerField(default=0)
    raft_index = models.BigIntegerField(null=True, blank=True)
    cluster_id = models.CharField(max_length=64, blank=True, help_text="Whose unseal shares restore it.")
    node = models.CharField(max_length=300, blank=True)
    started_by = models.CharField(max_length=254)
    # When the request started: a key escrowed after this may be missing from the snapshot.
    taken_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-taken_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(state="succeeded") | ~models.Q(sha256=""),
                                   name="keystore_snapshot_succeeded_has_sha256"),
        ]
        indexes = [models.Index(fields=["state", "-taken_at"], name="keystore_snapshot_state_taken")]

    def __str__(self) -> str:
        return f"keystore snapshot {self.name} ({self.state})"
