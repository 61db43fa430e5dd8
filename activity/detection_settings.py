"""Writes on an organization's detection thresholds and its departing-employee watch list."""
from django.db import transaction

from accounts.models import Organization, User
from accounts.services import PermissionRefused, audit_record
from activity.alerts import TRIAGE_ROLES
from activity.models import DetectionSettings, WatchedUser

THRESHOLD_FIELDS = ("removable_media_mb", "window_minutes", "sensitive_patterns", "archive_exfil_minutes",
                    "mass_deletion_count", "mass_encryption_count", "watch_on_scim_deactivation")


def detection_settings_for(organization: Organization) -> DetectionSettings:
    return DetectionSettings.objects.get_or_create(organization=organization)[0]


@transaction.atomic
def detection_settings_update(*, organization: Organization, actor: User | None, actor_label: str = "",
                              **changes) -> DetectionSettings:
    """Change thresholds; `actor=None` is `manage.py activityrules` (labelled by `actor_label`)."""
    if actor is not None and (actor.role != "org_admin" or actor.organization_id != organization.pk):
        raise PermissionRefused("Only an administrator of the organization changes detection thresholds.")
    unknown = set(changes) - set(THRESHOLD_FIELDS)
    if unknown:
        raise ValueError(f"unknown detection setting(s): {', '.join(sorted(unknown))}")
    config = DetectionSettings.objects.select_for_update().get(pk=detection_settings_for(organization).pk)
    for name, value in changes.items():
        setattr(config, name, value)
    config.full_clean()
    if changes:
        config.save(update_fields=list(changes))
        audit_record(organization=organization, actor=actor, actor_label=actor_label or None,
                     action="activity.thresholds", target_type="organization", target_uuid=organization.uuid,
                     detail={name: value for name, value in changes.items()})
    return config


def _require_triage(actor: User | None, organization: Organization) -> None:
    if actor is not None and (actor.role not in TRIAGE_ROLES or actor.organization_id != organization.pk):
        raise PermissionRefused("Only administrators and security analysts manage the watch list.")


@transaction.atomic
def watchlist_add(*, user: User, actor: User | None, source: str, reason: str = "",
                  actor_label: str = "") -> tuple[WatchedUser, bool]:
    """Put a person of the organization on the watch list (a second add keeps the first entry)."""
    organization = user.organization
    _require_triage(actor, organization)
    label = actor.email if actor else (actor_label or "system")
    entry, created = WatchedUser.objects.get_or_create(
        organization=organization, user=user,
        defaults={"source": source, "reason": reason[:300], "added_by_label": label})
    if created:
        audit_record(organization=organization, actor=actor, actor_label=label, action="activity.watch_add",
                     target_type="user", target_uuid=user.uuid, detail={"source": source, "reason": reason[:300]})
    return entry, created


@transaction.atomic
def watchlist_remove(*, user: User, actor: User | None, actor_label: str = "") -> bool:
    _require_triage(actor, user.organization)
    deleted, _ = WatchedUser.objects.filter(organization=user.organization, user=user).delete()
    if deleted:
        label = actor.email if actor else (actor_label or "system")
        audit_record(organization=user.organization, actor=actor, actor_label=label,
                     action="activity.watch_remove", target_type="user", target_uuid=user.uuid)
    return bool(deleted)


def watchlist_on_deactivation(*, user: User, actor_label: str) -> bool:
    """SCIM deactivated `user`: watch them if their organization asked for it. True if added."""
    if not detection_settings_for(user.organization).watch_on_scim_deactivation:
        return False
    return watchlist_add(user=user, actor=None, source=WatchedUser.Source.SCIM, actor_label=actor_label,
                         reason="Deactivated by the identity provider")[1]
