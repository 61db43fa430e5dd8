"""Why an archive must not be pruned, legal holds, and the removal of departed users' archives.

`prune_block_reason(archive)` is the one question retention and prune (archives/gc*) ask before
they remove anything from an archive: a legal hold on its user, its user departed and still
within the organization's departed-user retention, or pruning frozen by a mass-change signal
(archives/freeze.py). Anything but None means: remove nothing from this archive now.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import AuditEvent, Organization, Role, User
from accounts.services import PermissionRefused, audit_record
from archives.models import Archive, ArchiveRemoval, Block, FileVersion, LegalHold, Pack, PruneFreeze
from archives.safeguard_models import SafeguardSettings
from archives.storage import pack_storage


def safeguards_of(organization: Organization) -> SafeguardSettings:
    """The organization's settings row, or the defaults (unsaved) when it has none."""
    row = SafeguardSettings.objects.filter(organization=organization).first()
    return row or SafeguardSettings(organization=organization)


def active_hold_of(user: User) -> LegalHold | None:
    return LegalHold.objects.filter(user=user, released_at__isnull=True).first()


def departed_since(user: User) -> datetime | None:
    """When a deactivated user was deactivated (its audit record), None while active. Without a
    record the clock starts now: data is never removed on a guess."""
    if user.is_active:
        return None
    event = (AuditEvent.objects.filter(organization_id=user.organization_id, action="user.deactivate",
                                       target_uuid=user.uuid).order_by("-occurred_at").first())
    return event.occurred_at if event else timezone.now()


def prune_block_reason(archive: Archive) -> str | None:
    """A reason nothing may be pruned from `archive` now, or None."""
    hold = active_hold_of(archive.user)
    if hold is not None:
        return f"legal hold on {archive.user.email} since {hold.placed_at:%Y-%m-%d}"
    since = departed_since(archive.user)
    if since is not None:
        days = safeguards_of(archive.organization).departed_retention_days
        if timezone.now() < since + timedelta(days=days):
            return (f"{archive.user.email} departed on {since:%Y-%m-%d}: kept whole for {days} days "
                    f"(until {since + timedelta(days=days):%Y-%m-%d})")
    freeze = PruneFreeze.objects.filter(archive=archive, released_at__isnull=True).order_by("frozen_at").first()
    if freeze is not None:
        return f"pruning frozen since {freeze.frozen_at:%Y-%m-%d %H:%M} UTC: {freeze.reason}"
    return None


# --- legal holds ------------------------------------------------------------------------------

def _require_admin(actor: User | None, organization: Organization) -> None:
    if actor is not None and (actor.organization_id != organization.pk or actor.role != Role.ORG_ADMIN):
        raise PermissionRefused("Only an administrator of this organization may change legal holds")


@transaction.atomic
def legal_hold_place(*, user: User, actor: User | None, reason: str = "", actor_label: str = "") -> LegalHold:
    """Place `user` on hold (idempotent: an existing hold is returned)."""
    _require_admin(actor, user.organization)
    User.objects.select_for_update().get(pk=user.pk)  # serializes two admins placing at once
    hold = active_hold_of(user)
    if hold is not None:
        return hold
    label = actor.email if actor else (actor_label or "system")
    hold = LegalHold.objects.create(organization=user.organization, user=user, reason=reason[:300],
                                    placed_by_label=label)
    audit_record(organization=user.organization, actor=actor, actor_label=label, action="legal_hold.place",
                 target_type="user", target_uuid=user.uuid, detail={"reason": reason[:300]})
    return hold


@transaction.atomic
def legal_hold_release(*, user: User, actor: User | None, actor_label: str = "") -> LegalHold | None:
    _require_admin(actor, user.organization)
    hold = LegalHold.objects.select_for_update().filter(user=user, released_at__isnull=True).first()
    if hold is None:
        return None
    label = actor.email if actor else (actor_label or "system")
    hold.released_at, hold.released_by_label = timezone.now(), label
    hold.save(update_fields=["released_at", "released_by_label"])
    audit_record(organization=user.organization, actor=actor, actor_label=label, action="legal_hold.release",
                 target_type="user", target_uuid=user.uuid, detail={"placed_at": hold.placed_at.isoformat()})
    return hold


# --- departed users ---------------------------------------------------------------------------

@dataclass
class DepartedSweep:
    removed: list[str]  # archive uuids
    kept: list[str]  # departed, but on hold or still within retention


def departed_archives_due(*, now: datetime | None = None) -> list[Archive]:
    """Archives of deactivated users past their org's departed-user retention and not on hold."""
    now = now or timezone.now()
    due = []
    for archive in (Archive.objects.filter(user__is_active=False, removal__isnull=True)
                    .select_related("user", "organization")):
        since = departed_since(archive.user)
        days = safeguards_of(archive.organization).departed_retention_days
        if since is not None and now >= since + timedelta(days=days) and active_hold_of(archive.user) is None:
            due.append(archive)
    return due


def departed_archive_remove(*, archive: Archive, now: datetime | None = None) -> ArchiveRemoval | None:
    """Remove every version, block and pack of a departed user's archive (audited); the archive
    row stays, marked removed. Re-checks everything first, so a hold placed or a user
    reactivated meanwhile wins."""
    now = now or timezone.now()
    archive = Archive.objects.select_related("user", "organization").get(pk=archive.pk)
    since = departed_since(archive.user)
    days = safeguards_of(archive.organization).departed_retention_days
    if since is None or now < since + timedelta(days=days) or active_hold_of(archive.user) is not None:
        return None
    packs = list(Pack.objects.filter(archive=archive).values_list("storage_key", "size"))
    with transaction.atomic():
        if ArchiveRemoval.objects.filter(archive=archive).exists():
            return None
        FileVersion.objects.filter(archive=archive).delete()
        Block.objects.filter(archive=archive).delete()
        Pack.objects.filter(archive=archive).delete()
        removal = ArchiveRemoval.objects.create(archive=archive, packs_removed=len(packs),
                                                bytes_removed=sum(size for _, size in packs))
        audit_record(organization=archive.organization, actor=None, actor_label="departed-user retention",
                     action="archive.departed_remove", target_type="archive", target_uuid=archive.uuid,
                     detail={"user": str(archive.user.uuid), "departed": since.isoformat(), "retention_days": days,
                             "packs": len(packs), "bytes": removal.bytes_removed})
    # The rows are gone first: a crash here leaves orphan packs, which the orphan sweep collects.
    storage = pack_storage()
    for key, _size in packs:
        storage.quarantine(key, at=now)
    return removal


def departed_archives_remove(*, now: datetime | None = None) -> DepartedSweep:
    removed = []
    for archive in departed_archives_due(now=now):
        if departed_archive_remove(archive=archive, now=now) is not None:
            removed.append(str(archive.uuid))
    kept = [str(a.uuid) for a in Archive.objects.filter(user__is_active=False, removal__isnull=True)]
    return DepartedSweep(removed=removed, kept=kept)


# --- settings (console and manage.py safeguards) ----------------------------------------------

SETTABLE = ("departed_retention_days", "freeze_share_percent", "freeze_min_files")


@transaction.atomic
def safeguards_set(*, organization: Organization, actor: User | None, actor_label: str = "",
                   **values: int | None) -> SafeguardSettings:
    """Change the departed-user retention and the mass-change threshold (None leaves a field)."""
    _require_admin(actor, organization)
    unknown = set(values) - set(SETTABLE)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    row, _ = SafeguardSettings.objects.get_or_create(organization=organization)
    changed = {name: value for name, value in values.items() if value is not None}
    for name, value in changed.items():
        setattr(row, name, value)
    row.full_clean()
    row.save()
    if changed:
        audit_record(organization=organization, actor=actor, actor_label=actor_label or None,
                     action="safeguards.set", target_type="organization", target_uuid=organization.uuid,
                     detail=changed)
    return row
