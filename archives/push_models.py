"""What a push restore adds to its RestoreJob (kind=push): the target device and folder, how the
target reads the data, and for another user's archive the one-time key and the stream's state.
Imported by archives/models.py, so Django sees it as an archives model; the rules are in
archives/push_restores.py."""
from django.db import models

from accounts.models import Device


class PushRestore(models.Model):
    class Mode(models.TextChoices):
        OWN_KEY = "own_key", "The target reads the archive with its own key (same user)"
        STREAM = "stream", "The server re-encrypts a stream to the target's one-time key"

    class Stream(models.TextChoices):
        NONE = "none", "No stream (own key)"
        PENDING = "pending", "Waiting for the target's one-time key"
        PREPARING = "preparing", "The server's restore job is writing it"
        READY = "ready", "Ready for the target to download"
        GONE = "gone", "Deleted after the restore ended"

    job = models.OneToOneField("archives.RestoreJob", on_delete=models.CASCADE, related_name="push")
    target_device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="push_restores")
    target_path = models.CharField(max_length=4096, help_text="Absolute folder on the target the files go under.")
    mode = models.CharField(max_length=8, choices=Mode.choices)
    stream = models.CharField(max_length=10, choices=Stream.choices, default=Stream.NONE)
    agent_public_key = models.BinaryField(max_length=32, null=True, blank=True,
                                          help_text="The target's one-time X25519 public key (docs/formats.md §10).")
    accepted_at = models.DateTimeField(null=True, blank=True)
    progress_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["target_device", "accepted_at"])]
        constraints = [
            models.CheckConstraint(condition=models.Q(mode__in=["own_key", "stream"]), name="pushrestore_mode_valid"),
            models.CheckConstraint(condition=models.Q(stream__in=["none", "pending", "preparing", "ready", "gone"]),
                                   name="pushrestore_stream_valid"),
        ]

    def __str__(self) -> str:
        return f"push restore {self.job_id} to {self.target_device_id}"
