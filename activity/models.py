"""Alerts: one model for everything that needs an administrator's eyes (DESIGN §7, §8).

Maintenance (stale devices, verification failures, frozen pruning, quotas) and file-activity
detection rules raise alerts through `activity.alerts.alert_raise`; the console triages them.
An alert is deduplicated by (organization, dedup_key) while it is not resolved: a condition seen
again bumps `occurrences` and `last_seen_at` instead of opening a second alert.
"""
import uuid

from django.db import models

from accounts.models import Device, Organization, User


class Alert(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    class Severity(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"
        CRITICAL = "critical", "Critical"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="alerts")
    kind = models.CharField(max_length=64, help_text="What raised it, e.g. stale_device, verify_failed, "
                                                     "removable_media.")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.MEDIUM)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    title = models.CharField(max_length=300)
    detail = models.JSONField(default=dict, blank=True, help_text="Facts for the triager: files, sizes, vectors.")
    dedup_key = models.CharField(max_length=200, help_text="Same key while unresolved = same alert.")
    subject_user = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    archive_uuid = models.UUIDField(null=True, blank=True)
    assignee = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    occurrences = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "dedup_key"], condition=~models.Q(status="resolved"),
                                    name="alert_one_unresolved_per_key"),
            models.CheckConstraint(condition=models.Q(status__in=["open", "acknowledged", "resolved"]),
                                   name="alert_status_valid"),
        ]
        indexes = [models.Index(fields=["organization", "status", "-last_seen_at"], name="alert_org_status_seen")]

    def __str__(self) -> str:
        return f"alert {self.kind}: {self.title}"


class AlertEntry(models.Model):
    """The alert's history: every status change, assignment and note, in order (append-only)."""

    class Action(models.TextChoices):
        RAISED = "raised", "Raised"
        SEEN_AGAIN = "seen_again", "Seen again"
        STATUS = "status", "Status changed"
        ASSIGNED = "assigned", "Assigned"
        NOTE = "note", "Note"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="entries")
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor_label = models.CharField(max_length=254)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    text = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]
