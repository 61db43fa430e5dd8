"""Reads for the console's safeguard views: per archive, the last verification, "restorable as
of", a freeze and its last good point in time, a legal hold, the user's storage against its quota.
Callers reach the device or user through the access helpers first (accounts/selectors.py)."""
from dataclasses import dataclass
from datetime import datetime

from accounts.models import Device, Organization, User
from archives.drills import restorable_as_of
from archives.freeze import active_freeze_of
from archives.healing import heal_path_ids
from archives.holds import active_hold_of, departed_since, prune_block_reason, safeguards_of
from archives.models import Archive, ArchiveCheck, LegalHold, PruneFreeze, SafeguardSettings, UserQuota
from archives.quotas import Usage, org_usage_of, user_usage_of
from archives.selectors import archives_visible_to


@dataclass(frozen=True)
class ArchiveSafeguards:
    archive: Archive
    restorable_as_of: datetime | None
    last_drill: ArchiveCheck | None
    last_verification: ArchiveCheck | None
    awaiting_healing: int
    freeze: PruneFreeze | None
    hold: LegalHold | None
    prune_blocked: str | None
    usage: Usage


def _last(archive: Archive, *kinds: str) -> ArchiveCheck | None:
    return ArchiveCheck.objects.filter(archive=archive, kind__in=kinds).order_by("-started_at").first()


def device_safeguards(actor: User, device: Device) -> list[ArchiveSafeguards]:
    """For each archive of `device` the actor sees (reached through device_for_user)."""
    rows = []
    for archive in archives_visible_to(actor).filter(device=device).select_related("user", "organization"):
        rows.append(ArchiveSafeguards(
            archive=archive, restorable_as_of=restorable_as_of(archive),
            last_drill=_last(archive, ArchiveCheck.Kind.DRILL),
            last_verification=_last(archive, ArchiveCheck.Kind.SHALLOW, ArchiveCheck.Kind.DEEP),
            awaiting_healing=len(heal_path_ids(archive)), freeze=active_freeze_of(archive),
            hold=active_hold_of(archive.user), prune_blocked=prune_block_reason(archive),
            usage=user_usage_of(archive.user)))
    return rows


@dataclass(frozen=True)
class UserSafeguards:
    user: User
    usage: Usage
    hold: LegalHold | None
    departed: datetime | None


@dataclass(frozen=True)
class OrgSafeguards:
    settings: SafeguardSettings
    usage: Usage
    users: list[UserSafeguards]
    freezes: list[PruneFreeze]


def org_safeguards(organization: Organization) -> OrgSafeguards:
    """The organization's settings and usage, each user with a quota, a hold or a departure, and
    every active freeze (administrators only: the view checks the role)."""
    interesting = set(UserQuota.objects.filter(user__organization=organization).values_list("user_id", flat=True))
    interesting |= set(LegalHold.objects.filter(organization=organization, released_at__isnull=True)
                       .values_list("user_id", flat=True))
    interesting |= set(User.objects.filter(organization=organization, is_active=False).values_list("pk", flat=True))
    users = [UserSafeguards(user=user, usage=user_usage_of(user), hold=active_hold_of(user),
                            departed=departed_since(user))
             for user in User.objects.filter(pk__in=interesting).order_by("email")]
    freezes = list(PruneFreeze.objects.filter(archive__organization=organization, released_at__isnull=True)
                   .select_related("archive__device", "archive__user").order_by("frozen_at"))
    return OrgSafeguards(settings=safeguards_of(organization), usage=org_usage_of(organization), users=users,
                         freezes=freezes)
