"""Retention policies: the effective policy of an archive, and setting an org's or an override.

The device's row wins over the user's, the user's over the organization's, the organization's
over the built-in defaults (archives/retention.py `DEFAULT_RETENTION`, docs/maintenance.md).
"""
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from accounts.models import Device, Organization, User
from archives.maintenance_models import RetentionPolicy
from archives.models import Archive
from archives.retention import DEFAULT_RETENTION, Retention


def _retention_of(row: RetentionPolicy) -> Retention:
    return Retention(**{name: getattr(row, name) for name in Retention.FIELDS})


def retention_for_org(organization: Organization) -> Retention:
    row = RetentionPolicy.objects.filter(organization=organization, user=None, device=None).first()
    return _retention_of(row) if row else DEFAULT_RETENTION


def retention_for_archive(archive: Archive) -> tuple[Retention, str]:
    """(the policy, where it comes from: 'device', 'user', 'organization' or 'default')."""
    found = RetentionPolicy.objects.filter(organization_id=archive.organization_id).filter(
        Q(device_id=archive.device_id) | Q(user_id=archive.user_id) | Q(user=None, device=None))
    rows = {("device" if row.device_id else "user" if row.user_id else "organization"): row for row in found}
    for scope in ("device", "user", "organization"):
        if scope in rows:
            return _retention_of(rows[scope]), scope
    return DEFAULT_RETENTION, "default"


@transaction.atomic
def retention_policy_set(*, organization: Organization, user: User | None = None, device: Device | None = None,
                         **values: int | None) -> RetentionPolicy:
    """Set the org's policy (or a user's / device's override); fields not given keep their value
    (for a new row: the org's policy, or the defaults). Raises ValidationError on bad numbers."""
    if user is not None and device is not None:
        raise ValidationError("an override is for a user or for a device, not both")
    for scoped in (user, device):
        if scoped is not None and scoped.organization_id != organization.pk:
            raise ValidationError("that user or device is not in this organization")
    unknown = set(values) - set(Retention.FIELDS)
    if unknown:
        raise ValidationError(f"unknown retention fields: {', '.join(sorted(unknown))}")
    row = (RetentionPolicy.objects.select_for_update()
           .filter(organization=organization, user=user, device=device).first())
    base = (retention_for_org(organization) if (user or device) else DEFAULT_RETENTION).as_dict()
    if row is None:
        row = RetentionPolicy(organization=organization, user=user, device=device, **base)
    for name, value in values.items():
        if value is not None:
            setattr(row, name, value)
    row.full_clean()
    row.save()
    return row


def retention_override_delete(*, organization: Organization, policy_uuid) -> bool:
    deleted, _ = (RetentionPolicy.objects.filter(organization=organization, uuid=policy_uuid)
                  .exclude(user=None, device=None).delete())
    return bool(deleted)
