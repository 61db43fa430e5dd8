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
            # Forensic search (activity/search.py): each selective filter has an index that also
            # yields the keyset order (occurred_at, id). Made by migration 0006 instead, per
            # database: "path contains" (a trigram GIN on path, PostgreSQL only), and file name
            # and SHA-256 equality (hash indexes on PostgreSQL, B-trees on SQLite) — each index
            # costs ingestion CPU, and these are the cheapest that keep search fast
            # (docs/activity.md has both sets of figures).
            models.Index(fields=["organization", "user", "occurred_at", "id"], name="fileevent_org_user_time"),
            models.Index(fields=["organization", "device", "occurred_at", "id"], name="fileevent_org_device_time"),
            models.Index(fields=["organization", "vector", "occurred_at", "id"], name="fileevent_org_vector_time",
                         condition=~models.Q(vector="")),
        ]


# --- detection rules (issue 13 item 3) ---------------------------------------------------------

DEFAULT_SENSITIVE_PATTERNS = "*.pem\n*.key\n*.kdbx\n*.pfx\n*confidential*\n*secret*\n*.sql\n*salary*"


class DetectionSettings(models.Model):
    """An organization's detection thresholds, and how far the rules have read its events.

    A threshold of 0 (or no patterns) turns that rule off. The rules read events in id order and
    keep `last_event_id` in the same transaction as the alerts they raise, so a run that dies
    half-way is simply redone."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="detection_settings")
    removable_media_mb = models.PositiveIntegerField(default=100, help_text="MB to removable media per window "
                                                                            "per user and device.")
    window_minutes = models.PositiveIntegerField(default=60, help_text="Length of the windows the volume rules "
                                                                       "count in (removable media, mass deletion, "
                                                                       "mass encryption).")
    sensitive_patterns = models.TextField(default=DEFAULT_SENSITIVE_PATTERNS, blank=True,
                                          help_text="File name patterns (one a line, * and ? wildcards, case "
                                                    "ignored) that must not appear in cloud-sync folders.")
    archive_exfil_minutes = models.PositiveIntegerField(default=30, help_text="An archive created, then an "
                                                                              "exfiltration vector within this.")
    mass_deletion_count = models.PositiveIntegerField(default=200)
    mass_encryption_count = models.PositiveIntegerField(default=50)
    watch_on_scim_deactivation = models.BooleanField(default=False, help_text="Put people the identity provider "
                                                                              "deactivates on the departing-employee "
                                                                              "watch list.")
    last_event_id = models.BigIntegerField(default=0)
    last_run_at = models.DateTimeField(null=True, blank=True)

    def patterns(self) -> list[str]:
        return [line.strip().lower() for line in self.sensitive_patterns.splitlines() if line.strip()]


class WatchedUser(models.Model):
    """The departing-employee watch list: any file activity of these people raises an alert."""

    class Source(models.TextChoices):
        CONSOLE = "console", "Added in the console"
        COMMAND = "command", "Added by manage.py"
        SCIM = "scim", "Deactivated by the identity provider"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=16, choices=Source.choices)
    reason = models.CharField(max_length=300, blank=True)
    added_by_label = models.CharField(max_length=254)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-added_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="watcheduser_once")]


# --- export to SIEM and SOAR (issue 13 item 5) ----------------------------------------------------

class ExportTarget(models.Model):
    """Where an organization's alerts (and, if asked, events) are sent: a syslog collector or a
    webhook. Each target reads alerts and events in id order from its own cursors."""

    class Kind(models.TextChoices):
        SYSLOG = "syslog", "Syslog (RFC 5424)"
        WEBHOOK = "webhook", "JSON webhook (HMAC-SHA256 signed)"

    class Payload(models.TextChoices):
        JSON = "json", "JSON"
        CEF = "cef", "CEF"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    payload = models.CharField(max_length=8, choices=Payload.choices, default=Payload.JSON)
    host = models.CharField(max_length=253, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    tls = models.BooleanField(default=True, help_text="Syslog over TLS (RFC 5425); off = plain TCP.")
    ca_pem = models.TextField(blank=True, help_text="CA that signed the collector's certificate (PEM); empty = "
                                                    "the system's trust store.")
    url = models.URLField(max_length=500, blank=True)
    secret_sealed = models.BinaryField(null=True, blank=True, help_text="The webhook's HMAC key, sealed.")
    include_events = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    alert_cursor = models.BigIntegerField(default=0)
    event_cursor = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="exporttarget_name_once"),
            models.CheckConstraint(condition=models.Q(kind="webhook", payload="json") | models.Q(kind="syslog"),
                                   name="exporttarget_webhook_is_json"),
        ]


class ExportDelivery(models.Model):
    """One message (an alert) or one chunk of events on its way to a target; retried with backoff,
    then kept as a dead letter for an administrator to retry."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        DEAD = "dead", "Dead letter"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    target = models.ForeignKey(ExportTarget, on_delete=models.CASCADE, related_name="deliveries")
    subject = models.CharField(max_length=16, help_text="alert or events")
    records = models.JSONField(help_text="The alert or events, as exported (a list).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="exportdelivery_due")]


# --- cloud-service connectors (issue 13 item 6) -------------------------------------------------

class CloudConnector(models.Model):
    """A cloud service whose audit log Haven pulls into file events (activity/connectors/)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, help_text="A name in activity.connectors.CONNECTORS.")
    name = models.CharField(max_length=100)
    base_url = models.URLField(max_length=300, help_text="The service's API root (tests point it at a local server).")
    settings = models.JSONField(default=dict, blank=True, help_text="Non-secret settings (tenant id, ...).")
    credentials_sealed = models.BinaryField(help_text="The service's credentials (JSON), sealed.")
    cursor = models.CharField(max_length=500, blank=True, help_text="Where the next pull starts (the service's own "
                                                                    "notion: a time or a page token).")
    enabled = models.BooleanField(default=True)
    next_pull_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    last_pull_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="cloudconnector_name_once")]
