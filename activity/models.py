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


class EventCategory(models.TextChoices):
    DOCUMENT = "document", "Document"
    SPREADSHEET = "spreadsheet", "Spreadsheet"
    PRESENTATION = "presentation", "Presentation"
    PDF = "pdf", "PDF"
    IMAGE = "image", "Image"
    AUDIO = "audio", "Audio"
    VIDEO = "video", "Video"
    ARCHIVE = "archive", "Archive"
    SOURCE_CODE = "source_code", "Source code"
    EXECUTABLE = "executable", "Executable"
    OTHER = "other", "Other"


class EventType(models.TextChoices):
    CREATED = "created", "Created"
    MODIFIED = "modified", "Modified"
    RENAMED = "renamed", "Renamed"
    DELETED = "deleted", "Deleted"


class Vector(models.TextChoices):
    REMOVABLE_MEDIA = "removable_media", "Removable media"
    CLOUD_SYNC = "cloud_sync", "Cloud sync folder"
    ARCHIVE_CREATED = "archive_created", "Archive created"
    MASS_RENAME = "mass_rename", "Mass rename"
    MASS_ENCRYPTION = "mass_encryption", "Mass encryption"
    CLOUD_SERVICE = "cloud_service", "Cloud service (connector)"


class EventBatch(models.Model):
    """One delivered batch (`docs/protocol.md` "File activity"): its id makes delivery idempotent."""

    batch_id = models.UUIDField(unique=True)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
                               help_text="Null for batches pulled by a cloud-service connector.")
    source = models.CharField(max_length=64, default="agent", help_text="agent, or the connector's name.")
    event_count = models.IntegerField()
    dropped_events = models.BigIntegerField(default=0, help_text="Events the agent's bounded queue dropped "
                                                                 "(oldest first) since its previous batch.")
    received_at = models.DateTimeField(auto_now_add=True)


class FileEvent(models.Model):
    """One file-activity event. Written in bulk (never one ORM save per event); read by time range
    within one organization, so the table is ordered by (organization, occurred_at)."""

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True, help_text="Chosen by the agent; a re-sent event is not stored twice.")
    # No database-level foreign keys: four referential checks per row cost a third of the
    # ingestion rate (docs/activity.md). Ingestion sets all four from the authenticated device
    # (activity/ingest.py), and Django still applies on_delete (PROTECT, SET_NULL) itself.
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+", db_index=False,
                                     db_constraint=False)
    device = models.ForeignKey(Device, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
                               db_index=False, db_constraint=False)
    user = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
                             db_index=False, db_constraint=False, help_text="The device's owner when the event arrived.")
    batch = models.ForeignKey(EventBatch, on_delete=models.PROTECT, related_name="events", db_index=False,
                              db_constraint=False)
    occurred_at = models.DateTimeField(help_text="Endpoint clock, checked against the server's on arrival.")
    received_at = models.DateTimeField()
    event_type = models.CharField(max_length=16, choices=EventType.choices)
    path = models.CharField(max_length=4096)
    dest_path = models.CharField(max_length=4096, blank=True)
    file_name = models.CharField(max_length=255, help_text="Last component of path (or dest_path when renamed).")
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    category = models.CharField(max_length=16, choices=EventCategory.choices, default=EventCategory.OTHER)
    mime_type = models.CharField(max_length=127, blank=True)
    vector = models.CharField(max_length=32, choices=Vector.choices, blank=True)
    entropy = models.FloatField(null=True, blank=True, help_text="Bits per byte of the file's first 64 KiB.")
    os_user = models.CharField(max_length=128, blank=True)
    process = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "occurred_at"], name="fileevent_org_time"),
            models.Index(fields=["organization", "sha256"], name="fileevent_org_sha256",
                         condition=~models.Q(sha256="")),
        ]
