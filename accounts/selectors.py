"""Reads of the accounts app, and the access helpers that scope every query to the caller.

The rule (DESIGN §9): a request reaches only its own organization's rows; a plain user reaches
only their own. "Absent" and "not yours" are the same 404, so ids cannot be probed.
"""
import uuid

from django.db.models import QuerySet
from django.http import Http404

from accounts.models import (
    AuditEvent,
    DeploymentToken,
    Device,
    Group,
    Organization,
    Role,
    SamlSettings,
    ScimToken,
    User,
    WorkerHeartbeat,
)

# Roles that see every device and user of their organization.
ORG_WIDE_ROLES = {Role.ORG_ADMIN, Role.SECURITY_ANALYST, Role.RESTORE_OPERATOR}


def parse_uuid_or_404(value, kind: str = "object") -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (TypeError, ValueError):
        raise Http404(f"No such {kind}") from None


def one_or_404(queryset: QuerySet, object_uuid, *, kind: str):
    """The row of `queryset` (already scoped to the caller) with this UUID.

    Every `<kind>_for_user` ends here, so "malformed", "absent" and "not yours" are one answer.
    """
    found = queryset.filter(uuid=parse_uuid_or_404(object_uuid, kind)).first()
    if found is None:
        raise Http404(f"No such {kind}")
    return found


def users_visible_to(actor: User) -> QuerySet[User]:
    users = User.objects.filter(organization_id=actor.organization_id)
    if actor.role in ORG_WIDE_ROLES:
        return users
    return users.filter(pk=actor.pk)


def user_for_user(actor: User, user_uuid) -> User:
    return one_or_404(users_visible_to(actor), user_uuid, kind="user")


def devices_visible_to(actor: User) -> QuerySet[Device]:
    devices = Device.objects.filter(organization_id=actor.organization_id).select_related("owner")
    if actor.role in ORG_WIDE_ROLES:
        return devices
    return devices.filter(owner=actor)


def device_for_user(actor: User, device_uuid) -> Device:
    return one_or_404(devices_visible_to(actor), device_uuid, kind="device")


def groups_visible_to(actor: User) -> QuerySet[Group]:
    """Groups and their role mapping are the administrators' business."""
    if actor.role != Role.ORG_ADMIN:
        return Group.objects.none()
    return Group.objects.filter(organization_id=actor.organization_id)


def group_for_user(actor: User, group_uuid) -> Group:
    return one_or_404(groups_visible_to(actor), group_uuid, kind="group")


def scim_tokens_visible_to(actor: User) -> QuerySet[ScimToken]:
    if actor.role != Role.ORG_ADMIN:
        return ScimToken.objects.none()
    return ScimToken.objects.filter(organization_id=actor.organization_id)


def scim_token_for_user(actor: User, token_uuid) -> ScimToken:
    return one_or_404(scim_tokens_visible_to(actor), token_uuid, kind="token")


def saml_settings_of(organization: Organization) -> SamlSettings:
    """The organization's SAML settings; unsaved defaults if it never had any (a read writes nothing)."""
    return SamlSettings.objects.filter(organization=organization).first() or SamlSettings(organization=organization)


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


def deployment_tokens_visible_to(actor: User) -> QuerySet[DeploymentToken]:
    """Deployment tokens enroll devices for anyone in the organization: administrators only."""
    if actor.role != Role.ORG_ADMIN:
        return DeploymentToken.objects.none()
    return DeploymentToken.objects.filter(organization_id=actor.organization_id).select_related("group", "created_by")


def deployment_token_for_user(actor: User, token_uuid) -> DeploymentToken:
    return one_or_404(deployment_tokens_visible_to(actor), token_uuid, kind="deployment token")
