"""Second-administrator approval of web restores (issue 9 item 4): an organization's setting and
each decision taken on a job. Imported by archives/models.py, so Django sees them as archives
models; the rules are in archives/restore_approval.py."""
from django.db import models

from accounts.models import Organization, User


class RestoreApprovalSetting(models.Model):
    """Absent row: no approval needed (the default). Changed in the console or with
    `manage.py restoreapproval --org NAME on|off`."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="restore_approval")
    required = models.BooleanField(default=False, help_text="A second administrator approves restores of another "
                                                            "user's files.")
    updated_at = models.DateTimeField(auto_now=True)


class RestoreApproval(models.Model):
    """The one decision on a job that waited for approval: who, when, approve or reject."""

    class Decision(models.TextChoices):
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    job = models.OneToOneField("archives.RestoreJob", on_delete=models.CASCADE, related_name="approval")
    decided_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(decision__in=["approved", "rejected"]),
                                              name="restoreapproval_decision_valid")]
