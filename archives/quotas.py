"""Storage quotas per organization and per user: a soft warning (an alert above a share of the
quota) and a hard limit (a block upload that would pass it is refused before anything is written).

Usage is the bytes of the packs the index holds (blocks and manifests, as stored).
"""
import re
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Sum

from accounts.models import Organization, User
from accounts.services import audit_record
from activity.alerts import alert_raise
from activity.models import Alert
from archives.holds import _require_admin, safeguards_of
from archives.models import Archive, Pack, SafeguardSettings, UserQuota


def size_parse(value: str) -> int | None:
    """'none' → no quota; 5000000, 500M, 20G, 1T (powers of 1000), KiB/MiB/GiB/TiB (of 1024)."""
    if value.strip().lower() in ("none", "off", ""):
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:([kmgt])(i?)b?)?\s*", value.lower())
    if not match:
        raise ValueError(f"{value!r} is not a size such as 500M, 20G, 1TiB or none")
    base = 1024 if match[3] else 1000
    return int(match[1]) * base ** ("kmgt".index(match[2]) + 1 if match[2] else 0)


class QuotaExceeded(Exception):
    """The upload would pass a hard storage quota; nothing was stored."""


def org_usage(organization: Organization) -> int:
    return Pack.objects.filter(archive__organization=organization).aggregate(n=Sum("size"))["n"] or 0


def user_usage(user: User) -> int:
    return Pack.objects.filter(archive__user=user).aggregate(n=Sum("size"))["n"] or 0


def user_quota_of(user: User) -> int | None:
    row = UserQuota.objects.filter(user=user).first()
    return row.quota_bytes if row else None


@dataclass(frozen=True)
class Usage:
    used: int
    quota: int | None
    soft_percent: int

    @property
    def percent(self) -> float | None:
        return 100.0 * self.used / self.quota if self.quota else None

    @property
    def state(self) -> str:
        if self.quota is None:
            return "no quota"
        if self.used >= self.quota:
            return "full"
        return "warning" if self.used * 100 >= self.quota * self.soft_percent else "ok"


def org_usage_of(organization: Organization) -> Usage:
    policy = safeguards_of(organization)
    return Usage(used=org_usage(organization), quota=policy.quota_bytes, soft_percent=policy.quota_soft_percent)


def user_usage_of(user: User) -> Usage:
    return Usage(used=user_usage(user), quota=user_quota_of(user),
                 soft_percent=safeguards_of(user.organization).quota_soft_percent)


def _check(archive: Archive, what: str, usage: Usage, incoming: int, key: str) -> None:
    if usage.quota is None:
        return
    if usage.used + incoming > usage.quota:
        raise QuotaExceeded(f"The {what} storage quota of {usage.quota} bytes is reached ({usage.used} used, "
                            f"{incoming} more asked); ask an administrator to raise it")
    if (usage.used + incoming) * 100 >= usage.quota * usage.soft_percent:
        alert_raise(organization=archive.organization, kind="quota_warning", dedup_key=key,
                    severity=Alert.Severity.MEDIUM, subject_user=archive.user if what == "user" else None,
                    title=f"The {what} storage quota is {100 * (usage.used + incoming) // usage.quota} % used",
                    detail={"scope": what, "used": usage.used + incoming, "quota": usage.quota})


def quota_enforce(*, archive: Archive, incoming: int) -> None:
    """QuotaExceeded if storing `incoming` more bytes in `archive` passes the user's or the
    organization's quota; raises the soft-warning alert when past its share. Usage is summed only
    where a quota is set."""
    policy = safeguards_of(archive.organization)
    if policy.quota_bytes is not None:
        usage = Usage(used=org_usage(archive.organization), quota=policy.quota_bytes,
                      soft_percent=policy.quota_soft_percent)
        _check(archive, "organization", usage, incoming, f"quota:org:{archive.organization.uuid}")
    quota = user_quota_of(archive.user)
    if quota is not None:
        usage = Usage(used=user_usage(archive.user), quota=quota, soft_percent=policy.quota_soft_percent)
        _check(archive, "user", usage, incoming, f"quota:user:{archive.user.uuid}")


# --- settings (console and manage.py) ---------------------------------------------------------

@transaction.atomic
def org_quota_set(*, organization: Organization, actor: User | None, quota_bytes: int | None,
                  soft_percent: int | None = None, actor_label: str = "") -> SafeguardSettings:
    _require_admin(actor, organization)
    if quota_bytes is not None and quota_bytes < 0:
        raise ValueError("A quota is a number of bytes, 0 or more")
    row, _ = SafeguardSettings.objects.get_or_create(organization=organization)
    row.quota_bytes = quota_bytes
    if soft_percent is not None:
        row.quota_soft_percent = soft_percent
    row.full_clean()
    row.save(update_fields=["quota_bytes", "quota_soft_percent", "updated_at"])
    audit_record(organization=organization, actor=actor, actor_label=actor_label or None, action="quota.org_set",
                 target_type="organization", target_uuid=organization.uuid,
                 detail={"quota_bytes": quota_bytes, "soft_percent": row.quota_soft_percent})
    return row


@transaction.atomic
def user_quota_set(*, user: User, actor: User | None, quota_bytes: int | None, actor_label: str = "") -> None:
    _require_admin(actor, user.organization)
    if quota_bytes is None:
        UserQuota.objects.filter(user=user).delete()
    else:
        if quota_bytes < 0:
            raise ValueError("A quota is a number of bytes, 0 or more")
        UserQuota.objects.update_or_create(user=user, defaults={"quota_bytes": quota_bytes})
    audit_record(organization=user.organization, actor=actor, actor_label=actor_label or None, action="quota.user_set",
                 target_type="user", target_uuid=user.uuid, detail={"quota_bytes": quota_bytes})
