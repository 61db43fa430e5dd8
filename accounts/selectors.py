"""Reads of the accounts app, and the access helpers that scope every query to the caller.

The rule (DESIGN §9): a request reaches only its own organization's rows; a plain user reaches
only their own. "Absent" and "not yours" are the same 404, so ids cannot be probed.
"""
import uuid

from django.db.models import QuerySet
from django.http import Http404

from accounts.models import AuditEvent, Device, Role, User, WorkerHeartbeat

# Roles that see every device and user of their organization.
ORG_WIDE_ROLES = {Role.ORG_ADMIN, Role.SECURITY_ANALYST, Role.RESTORE_OPERATOR}


def parse_uuid_or_404(value) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (TypeError, ValueError):
        raise Http404("No such object") from None


def users_visible_to(actor: User) -> QuerySet[User]:
    users = User.objects.filter(organization_id=actor.organization_id)
    if actor.role in ORG_WIDE_ROLES:
        return users
    return users.filter(pk=actor.pk)


def user_for_user(actor: User, user_uuid) -> User:
    found = users_visible_to(actor).filter(uuid=parse_uuid_or_404(user_uuid)).first()
    if found is None:
        raise Http404("No such user")
    return found


def devices_visible_to(actor: User) -> QuerySet[Device]:
    devices = Device.objects.filter(organization_id=actor.organization_id).select_related("owner")
    if actor.role in ORG_WIDE_ROLES:
        return devices
    return devices.filter(owner=actor)


def device_for_user(actor: User, device_uuid) -> Device:
    found = devices_visible_to(actor).filter(uuid=parse_uuid_or_404(device_uuid)).first()
    if found is None:
        raise Http404("No such device")
    return found


def audit_events_visible_to(actor: User) -> QuerySet[AuditEvent]:
    if actor.role != Role.ORG_ADMIN:
        return AuditEvent.objects.none()
    return AuditEvent.objects.filter(organization_id=actor.organization_id)


def org_admin_emails(organization_id) -> list[str]:
    """Where alerts for an organization go."""
    return list(User.objects.filter(organization_id=organization_id, role=Role.ORG_ADMIN, is_active=True)
                .values_list("email", flat=True))


def worker_last_seen():
    latest = WorkerHeartbeat.objects.order_by("-seen_at").first()
    return latest.seen_at if latest else None
