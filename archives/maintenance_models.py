"""Retention policies, maintenance runs and per-archive maintenance leases (docs/maintenance.md).
Imported by archives/models.py, so Django sees them as archives models.

A retention policy row sets all five numbers; the device's row wins over the user's, the user's
over the organization's, the organization's over the built-in defaults (archives/retention.py).
"""
import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from accounts.models import Device, Organization, User

_LIMIT = [MinValueValidator(0), MaxValueValidator(100_000)]


class RetentionPolicy(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="retention_policies")
    user = models.ForeignKey(User, on_delete=models.CASCADE, null=True, blank=True, related_name="retention_policies")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, null=True, blank=True,
                               related_name="retention_policies")
    keep_all_days = models.IntegerField(validators=_LIMIT, help_text="Keep every version this many days.")
    daily_days = models.IntegerField(validators=_LIMIT, help_text="Then one version a day for this many days.")
    weekly_weeks = models.IntegerField(validators=_LIMIT, help_text="Then one a week for this many weeks.")
    monthly_months = models.IntegerField(validators=_LIMIT, help_text="Then one a month for this many months.")
    deleted_days = models.IntegerField(validators=_LIMIT, help_text="A deleted file's versions are kept this long.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(user__isnull=True) | Q(device__isnull=True),
                                   name="retention_policy_one_scope"),
            models.UniqueConstraint(fields=["organization"], condition=Q(user__isnull=True, device__isnull=True),
                                    name="retention_policy_one_per_org"),
            models.UniqueConstraint(fields=["user"], condition=Q(user__isnull=False), name="retention_policy_one_per_user"),
            models.UniqueConstraint(fields=["device"], condition=Q(device__isnull=False),
                                    name="retention_policy_one_per_device"),
            *[models.CheckConstraint(condition=Q(**{f"{name}__gte": 0}), name=f"retention_{name}_not_negative")
              for name in ("keep_all_days", "daily_days", "weekly_weeks", "monthly_months", "deleted_days")],
        ]


class MaintenanceRun(models.Model):
    """One maintenance pass over one archive: retention, prune, compaction, aggregation, and what each did."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="maintenance_runs")
    archive = models.ForeignKey("archives.Archive", on_delete=models.CASCADE, related_name="maintenance_runs")
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    step = models.CharField(max_length=32, blank=True, help_text="The step in progress or the last one done.")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    versions_expired = models.BigIntegerField(default=0)
    blocks_deleted = models.BigIntegerField(default=0)
    packs_compacted = models.BigIntegerField(default=0)
    packs_retired = models.BigIntegerField(default=0)
    packs_aggregated = models.BigIntegerField(default=0, help_text="Small packs merged (now retiring).")
    packs_aggregated_into = models.BigIntegerField(default=0, help_text="New packs aggregation wrote.")
    bytes_freed = models.BigIntegerField(default=0, help_text="Pack bytes retired (or, dry-run, that would be).")
    detail = models.CharField(max_length=1000, blank=True, help_text="Why it was skipped, or the error.")

    class Meta:
        indexes = [models.Index(fields=["organization", "-started_at"])]


class MaintenanceLease(models.Model):
    """Only one maintenance run per archive at a time; a dead worker's lease lapses at expires_at."""

    archive = models.OneToOneField("archives.Archive", on_delete=models.CASCADE, related_name="maintenance_lease")
    holder = models.CharField(max_length=64)
    expires_at = models.DateTimeField()
