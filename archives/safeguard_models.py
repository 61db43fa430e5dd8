"""What protects an archive beyond its own data: verification and restore-drill results, damaged
blocks and the paths the agent must send again (self-healing), legal holds, ransomware freezes,
storage quotas and departed-user retention. Imported by archives/models.py, so Django sees them as
archives models. The services are archives/verify.py, healing.py, drills.py, holds.py, freeze.py
and quotas.py.
"""
import uuid

from django.db import models
from django.db.models import Q

from accounts.models import Organization, User
from archives.models import Archive, BackupRun


class ArchiveCheck(models.Model):
    """One verification (shallow: keyless frame checksums against the index; deep: decrypt every
    block of the latest versions) or one restore drill of one archive."""

    class Kind(models.TextChoices):
        SHALLOW = "shallow", "Shallow verification"
        DEEP = "deep", "Deep verification"
        DRILL = "drill", "Restore drill"

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        CLEAN = "clean", "Clean"
        DAMAGED = "damaged", "Damage found"
        FAILED = "failed", "Could not run"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    archive = models.ForeignKey(Archive, on_delete=models.CASCADE, related_name="checks")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    requested_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    point_in_time = models.DateTimeField(null=True, blank=True, help_text="A drill: the moment it restored.")
    packs_checked = models.IntegerField(default=0)
    frames_checked = models.IntegerField(default=0)
    files_checked = models.IntegerField(default=0)
    bytes_checked = models.BigIntegerField(default=0)
    detail = models.JSONField(default=dict, blank=True, help_text="What was damaged, or why it could not run.")

    class Meta:
        indexes = [models.Index(fields=["archive", "kind", "-started_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["shallow", "deep", "drill"]), name="archivecheck_kind_valid"),
            models.CheckConstraint(condition=Q(outcome__in=["running", "clean", "damaged", "failed"]),
                                   name="archivecheck_outcome_valid"),
        ]


class DamagedBlock(models.Model):
    """A block whose stored frame failed a check; its index row was dropped so the next backup
    that holds it sends it again. `healed_at` is set once the archive indexes it again."""

    archive = models.ForeignKey(Archive, on_delete=models.CASCADE, related_name="damaged_blocks")
    block_id = models.BinaryField(max_length=32)
    found_by = models.ForeignKey(ArchiveCheck, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    reason = models.CharField(max_length=300)
    found_at = models.DateTimeField(auto_now_add=True)
    healed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["archive", "block_id"], condition=Q(healed_at__isnull=True),
                                               name="damagedblock_one_open_per_block")]


class HealPath(models.Model):
    """A keyed path id whose versions reference damaged data: the agent re-reads that file on its
    next backup (it forgets its cache entry), which re-sends the blocks. Healed by a newer version."""

    archive = models.ForeignKey(Archive, on_delete=models.CASCADE, related_name="heal_paths")
    path_id = models.CharField(max_length=64)
    requested_at = models.DateTimeField(auto_now_add=True)
    healed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["archive", "path_id"], condition=Q(healed_at__isnull=True),
                                               name="healpath_one_open_per_path")]


class LegalHold(models.Model):
    """A user placed on legal hold: none of their archives loses a version or a block until released."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="legal_holds")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="legal_holds")
    reason = models.CharField(max_length=300, blank=True)
    placed_by_label = models.CharField(max_length=254)
    placed_at = models.DateTimeField(auto_now_add=True)
    released_by_label = models.CharField(max_length=254, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user"], condition=Q(released_at__isnull=True),
                                               name="legalhold_one_active_per_user")]


class PruneFreeze(models.Model):
    """A backup run changed or deleted an unusual share of the archive's files: pruning of the
    archive's older versions stops until an administrator releases it. `last_good_at` is the last
    point in time before that run (what to restore if the run was ransomware)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    archive = models.ForeignKey(Archive, on_delete=models.CASCADE, related_name="prune_freezes")
    run = models.ForeignKey(BackupRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    reason = models.CharField(max_length=300)
    files_before = models.BigIntegerField(default=0)
    files_changed = models.BigIntegerField(default=0)
    files_deleted = models.BigIntegerField(default=0)
    last_good_at = models.DateTimeField(null=True, blank=True)
    frozen_at = models.DateTimeField(auto_now_add=True)
    released_by_label = models.CharField(max_length=254, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["archive", "released_at"])]


class SafeguardSettings(models.Model):
    """Per organization: departed-user retention, the mass-change threshold and the storage quota.
    No row means the defaults (archives/holds.py, freeze.py, quotas.py)."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="safeguards")
    departed_retention_days = models.PositiveIntegerField(default=90)
    freeze_share_percent = models.PositiveSmallIntegerField(default=30)
    freeze_min_files = models.PositiveIntegerField(default=100)
    quota_bytes = models.BigIntegerField(null=True, blank=True, help_text="Hard limit; empty: none.")
    quota_soft_percent = models.PositiveSmallIntegerField(default=90, help_text="Warn above this share of a quota.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(freeze_share_percent__gte=1, freeze_share_percent__lte=100),
                                   name="safeguards_share_percent_range"),
            models.CheckConstraint(condition=Q(quota_soft_percent__gte=1, quota_soft_percent__lte=100),
                                   name="safeguards_soft_percent_range"),
            models.CheckConstraint(condition=Q(quota_bytes__isnull=True) | Q(quota_bytes__gte=0),
                                   name="safeguards_quota_nonnegative"),
        ]


class UserQuota(models.Model):
    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="storage_quota")
    quota_bytes = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(quota_bytes__gte=0), name="userquota_nonnegative")]


class ArchiveRemoval(models.Model):
    """A departed user's archive whose data was removed after the retention period (the row stays)."""

    archive = models.OneToOneField(Archive, on_delete=models.PROTECT, related_name="removal")
    removed_at = models.DateTimeField(auto_now_add=True)
    packs_removed = models.IntegerField(default=0)
    bytes_removed = models.BigIntegerField(default=0)
