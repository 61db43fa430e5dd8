"""Backup policies (per organization, overridden per group and per device) and what each device
last reported of itself. Imported by archives/models.py, so Django sees them as archives models.

A policy row stores only the fields it sets: NULL means "inherit" (device > group > org >
built-in defaults, field by field; archives/policies.py resolves it).
"""
import uuid

from django.db import models
from django.db.models import Q

from accounts.models import Device, Group, Organization


class BackupPolicy(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="backup_policies")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, null=True, blank=True, related_name="backup_policies")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, null=True, blank=True, related_name="backup_policies")
    include = models.JSONField(null=True, blank=True, help_text="Paths to back up; `~` is the user's home.")
    exclude = models.JSONField(null=True, blank=True, help_text="Glob patterns never backed up.")
    default_excludes = models.BooleanField(null=True, blank=True,
                                           help_text="Also apply Haven's default exclusions (caches, temp files...).")
    vm_image_max_bytes = models.BigIntegerField(null=True, blank=True,
                                                help_text="Virtual machine images larger than this are excluded.")
    interval_seconds = models.IntegerField(null=True, blank=True)
    allowed_hours = models.JSONField(null=True, blank=True, help_text="Local hours 0-23 backups may start; [] = any.")
    allowed_days = models.JSONField(null=True, blank=True, help_text="Weekdays 0 (Monday)-6; [] = any.")
    bandwidth_active = models.BigIntegerField(null=True, blank=True, help_text="Bytes/s while the user is active; 0 = no limit.")
    bandwidth_away = models.BigIntegerField(null=True, blank=True, help_text="Bytes/s while the user is away; 0 = no limit.")
    cpu_threads = models.IntegerField(null=True, blank=True)
    nice = models.IntegerField(null=True, blank=True)
    version_interval_seconds = models.IntegerField(
        null=True, blank=True, help_text="Shortest time between two versions of a changed file; 0 = every backup.")
    stale_days = models.IntegerField(
        null=True, blank=True, help_text="Alert the administrators when a device has not completed a backup in this "
                                         "many days; 0 = never (archives/stale_devices.py).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(group__isnull=True) | Q(device__isnull=True),
                                   name="backup_policy_one_scope"),
            models.UniqueConstraint(fields=["organization"], condition=Q(group__isnull=True, device__isnull=True),
                                    name="backup_policy_one_per_org"),
            models.UniqueConstraint(fields=["group"], condition=Q(group__isnull=False),
                                    name="backup_policy_one_per_group"),
            models.UniqueConstraint(fields=["device"], condition=Q(device__isnull=False),
                                    name="backup_policy_one_per_device"),
            models.CheckConstraint(condition=Q(interval_seconds__isnull=True) | Q(interval_seconds__gte=1),
                                   name="backup_policy_interval_positive"),
        ]

    def __str__(self) -> str:
        scope = f"device {self.device_id}" if self.device_id else f"group {self.group_id}" if self.group_id else "org"
        return f"backup policy of {scope}"


class DeviceStatus(models.Model):
    """What a device's agent last reported (written by archives/device_status.py), and the
    commands waiting for it."""

    class State(models.TextChoices):
        RUNNING = "running", "Backing up"
        IDLE = "idle", "Idle"
        ERROR = "error", "Error"

    device = models.OneToOneField(Device, on_delete=models.CASCADE, related_name="status")
    state = models.CharField(max_length=16, choices=State.choices, default=State.IDLE)
    last_result = models.JSONField(default=dict, blank=True)
    selection_files = models.BigIntegerField(default=0)
    selection_bytes = models.BigIntegerField(default=0)
    pending_bytes = models.BigIntegerField(default=0)
    agent_version = models.CharField(max_length=50, blank=True)
    policy_etag = models.CharField(max_length=80, blank=True)
    reported_at = models.DateTimeField(null=True, blank=True)
    backup_now_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="Set by an administrator; cleared when delivered to the agent (once).")

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(state__in=["running", "idle", "error"]),
                                              name="device_status_state_valid")]
