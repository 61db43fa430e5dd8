"""Which versions a retention policy keeps: a pure function of (history, policy, now).

The rules are stated in docs/maintenance.md ("Retention"); tests/archives/test_retention.py
checks this function against an independent statement of them with hypothesis. No Django here.
"""
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Retention:
    keep_all_days: int = 7
    daily_days: int = 90
    weekly_weeks: int = 52
    monthly_months: int = 12
    deleted_days: int = 30

    FIELDS = ("keep_all_days", "daily_days", "weekly_weeks", "monthly_months", "deleted_days")

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.FIELDS}


DEFAULT_RETENTION = Retention()


@dataclass(frozen=True)
class VersionInfo:
    id: int
    path_id: str
    committed_at: datetime  # the server's commit time
    deleted: bool


def _order(version: VersionInfo):
    return (version.committed_at, version.id)


def version_tier(policy: Retention, age: timedelta) -> str:
    """'all', 'daily', 'weekly', 'monthly' or 'beyond': the tiers follow one another."""
    edge = timedelta(days=policy.keep_all_days)
    if age < edge:
        return "all"
    for tier, length in (("daily", timedelta(days=policy.daily_days)), ("weekly", timedelta(weeks=policy.weekly_weeks)),
                         ("monthly", timedelta(days=30 * policy.monthly_months))):
        edge += length
        if age < edge:
            return tier
    return "beyond"


def version_bucket(tier: str, at: datetime):
    at = at.astimezone(UTC)
    if tier == "daily":
        return at.date()
    if tier == "weekly":
        return at.isocalendar()[:2]
    return (at.year, at.month)


def retention_keep(history: Iterable[VersionInfo], policy: Retention, now: datetime) -> set[int]:
    """The ids of the versions to keep; every other version of the history may be expired."""
    by_path: dict[str, list[VersionInfo]] = defaultdict(list)
    for version in history:
        by_path[version.path_id].append(version)
    keep: set[int] = set()
    for versions in by_path.values():
        versions.sort(key=_order)
        newest = versions[-1]
        if newest.deleted:
            if now - newest.committed_at >= timedelta(days=policy.deleted_days):
                continue  # deleted long enough ago: every version of the path goes
            keep.add(newest.id)
            before = [v for v in versions if not v.deleted]
            if before:
                keep.add(before[-1].id)
        else:
            keep.add(newest.id)
        chosen: dict[tuple, VersionInfo] = {}
        for version in versions:
            tier = version_tier(policy, now - version.committed_at)
            if tier == "all":
                keep.add(version.id)
            elif tier != "beyond":
                chosen[(tier, version_bucket(tier, version.committed_at))] = version  # sorted: the newest wins
        keep.update(version.id for version in chosen.values())
    return keep
