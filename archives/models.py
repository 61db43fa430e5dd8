"""Archives: one append-only log of opaque encrypted blocks per (user, device)."""
import uuid

from django.db import models
from django.utils import timezone

from accounts.models import Device, Organization, User
from archives.fields import PathIdField


class Archive(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="archives")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="archives")
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="archives")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "device"], name="archive_one_per_user_device")]

    def __str__(self) -> str:
        return f"archive {self.uuid} of {self.device.name}"


class Pack(models.Model):
    """One immutable pack file: the blocks (or manifests) of one upload batch.

    The row is committed in the same transaction as the index rows that point into the pack,
    after the file is durable; a pack file without a row is an orphan of a crash.
    """

    class Kind(models.TextChoices):
        BLOCKS = "blocks", "Blocks"
        MANIFESTS = "manifests", "Manifests"

    class State(models.TextChoices):
        LIVE = "live", "Live"
        RETIRING = "retiring", "Retiring (compacted; deleted after the grace period)"

    uuid = models.UUIDField(unique=True, editable=False)
    archive = models.ForeignKey(Archive, on_delete=models.PROTECT, related_name="packs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    storage_key = models.CharField(max_length=255, unique=True)
    size = models.BigIntegerField()
    frame_count = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    # docs/maintenance.md: no row points at a retiring pack; it leaves storage after the grace period.
    state = models.CharField(max_length=16, choices=State.choices, default=State.LIVE)
    retiring_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(state="live", retiring_since__isnull=True)
                                   | models.Q(state="retiring", retiring_since__isnull=False),
                                   name="pack_state_valid"),
        ]


class Block(models.Model):
    """Index row: where an archive's encrypted block lives (pack, offset, frame size)."""

    # No index of its own: block_unique_per_archive starts with archive (one index less per block row).
    archive = models.ForeignKey(Archive, on_delete=models.PROTECT, related_name="blocks", db_index=False)
    block_id = models.BinaryField(max_length=32)
    pack = models.ForeignKey(Pack, on_delete=models.PROTECT, related_name="blocks")
    offset = models.BigIntegerField()
    frame_size = models.IntegerField()
    # Set, under a row lock, on insert, on every "you already have it" answer and by every version
    # commit naming the block: prune's grace period runs from here (docs/maintenance.md). No index:
    # prune reads every version of the archive for its mark anyway, so a scan of its blocks costs
    # it no more, while an index cost every block row ~40 bytes and every touch an index update.
    last_referenced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["archive", "block_id"], name="block_unique_per_archive")]


class BackupRun(models.Model):
    """One backup of a device: what it scanned and sent, and how it ended."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    archive = models.ForeignKey(Archive, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    files_scanned = models.BigIntegerField(default=0)
    bytes_scanned = models.BigIntegerField(default=0)
    files_changed = models.BigIntegerField(default=0)
    bytes_sent = models.BigIntegerField(default=0)
    blocks_received = models.BigIntegerField(default=0, help_text="Counted by the server.")
    bytes_received = models.BigIntegerField(default=0, help_text="Counted by the server.")
    versions_committed = models.BigIntegerField(default=0, help_text="Counted by the server.")
    errors = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [models.Index(fields=["archive", "status", "-finished_at"])]


class FileVersion(models.Model):
    """One committed version of one file (or its deletion marker).

    The server knows only the keyed path id, its own commit time, the block ids (for reference
    counting) and sizes of ciphertext; the encrypted manifest lives in a manifest pack.
    """

    uuid = models.UUIDField(unique=True, editable=False, help_text="Chosen by the agent; bound into the manifest.")
    # No index of its own: the index below starts with archive (one index less per version row).
    archive = models.ForeignKey(Archive, on_delete=models.PROTECT, related_name="versions", db_index=False)
    path_id = PathIdField(help_text="The keyed path id: hex in Python, its 32 bytes in the database.")
    committed_at = models.DateTimeField()
    deleted = models.BooleanField(default=False)
    is_listing = models.BooleanField(default=False, help_text="A root's directory listing (docs/formats.md §9), "
                                                              "not a file: its manifest blob's clear version byte.")
    block_ids = models.BinaryField(help_text="Concatenated 32-byte block ids, in file order.")
    stored_size = models.BigIntegerField(default=0, help_text="Bytes of encrypted blocks the version references.")
    manifest_pack = models.ForeignKey(Pack, on_delete=models.PROTECT, related_name="manifests")
    manifest_offset = models.BigIntegerField()
    manifest_frame_size = models.IntegerField()
    run = models.ForeignKey(BackupRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="versions")

    class Meta:
        # (archive, committed_at): a listing of a point in time (versions_at) walks it from its
        # cursor, a page at a time in commit order, so a restore's listing is linear in the
        # archive and a page's manifests sit together in their packs (~40 bytes per version row).
        indexes = [models.Index(fields=["archive", "path_id", "committed_at"]),
                   models.Index(fields=["archive", "committed_at"])]


class RestoreJob(models.Model):
    """A restore asked for in the console or the public API: which archive, which point in time
    (server time), which paths; its progress; and for a web restore the zip it produced.

    The zip is served only to the person who asked and the organization's administrators, until
    `expires_at` (24 h after it finished); a beat task then deletes it and clears `result_key`.
    """

    class Kind(models.TextChoices):
        WEB = "web", "Web restore (zip download)"
        PUSH = "push", "Push restore to a device"

    class Status(models.TextChoices):
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"  # archives/restore_approval.py
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="restore_jobs")
    archive = models.ForeignKey(Archive, on_delete=models.PROTECT, related_name="restore_jobs")
    requested_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="restore_jobs")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.WEB)
    at = models.DateTimeField(help_text="The point in time restored (server commit times).")
    paths = models.JSONField(default=list, blank=True, help_text="Absolute path prefixes; empty: everything.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    files_total = models.BigIntegerField(default=0)
    files_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    result_key = models.CharField(max_length=255, blank=True, help_text="Under the restore results directory.")
    result_size = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["status", "expires_at"]),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=["awaiting_approval", "queued", "running", "done", "failed",
                                                                   "rejected"]),
                                   name="restorejob_status_valid"),
            models.CheckConstraint(condition=models.Q(kind__in=["web", "push"]), name="restorejob_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} restore {self.uuid} ({self.status})"


from archives.maintenance_models import MaintenanceLease, MaintenanceRun, RetentionPolicy  # noqa: E402,F401
from archives.policy_models import BackupPolicy, DeviceStatus  # noqa: E402,F401 - models of this app
from archives.push_models import PushRestore  # noqa: E402,F401
from archives.restore_approval_models import RestoreApproval, RestoreApprovalSetting  # noqa: E402,F401
from archives.safeguard_models import (  # noqa: E402,F401 - verification, holds, freezes, quotas
    ArchiveCheck,
    ArchiveRemoval,
    DamagedBlock,
    HealPath,
    LegalHold,
    PruneFreeze,
    SafeguardSettings,
    UserQuota,
)
