"""Archives: one append-only log of opaque encrypted blocks per (user, device)."""
import uuid

from django.db import models

from accounts.models import Device, Organization, User


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
