"""Reads of the archives app and the archive access helpers (org-scoped; 404 for not-yours)."""
from django.db.models import QuerySet
from django.http import Http404

from accounts.models import Device, Role, User
from accounts.selectors import parse_uuid_or_404
from archives.models import Archive

# Roles that may see (and later restore) every archive of their organization.
ARCHIVE_WIDE_ROLES = {Role.ORG_ADMIN, Role.RESTORE_OPERATOR}


def archives_visible_to(actor: User) -> QuerySet[Archive]:
    archives = Archive.objects.filter(organization_id=actor.organization_id).select_related("device", "user")
    if actor.role in ARCHIVE_WIDE_ROLES:
        return archives
    return archives.filter(user=actor)


def archive_for_user(actor: User, archive_uuid) -> Archive:
    found = archives_visible_to(actor).filter(uuid=parse_uuid_or_404(archive_uuid)).first()
    if found is None:
        raise Http404("No such archive")
    return found


def archives_readable_by_device(device: Device) -> QuerySet[Archive]:
    """A device reads every archive of its own user (same key: computer replacement)."""
    return Archive.objects.filter(organization_id=device.organization_id, user_id=device.owner_id).select_related("device")


def archive_for_device(device: Device, archive_uuid, *, write: bool = False) -> Archive:
    """A device writes only its own archive; reads its user's archives; 404 otherwise."""
    archives = archives_readable_by_device(device)
    if write:
        archives = archives.filter(device=device)
    found = archives.filter(uuid=parse_uuid_or_404(archive_uuid)).first()
    if found is None:
        raise Http404("No such archive")
    return found
