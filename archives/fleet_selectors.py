"""Reads for the console's fleet pages: devices with their backup health and storage, the
dashboard's aggregates, one device's archive figures and run history.

Every read starts from an access helper (`devices_visible_to`, `archives_visible_to`), so the
organization and, for plain users, the owner are always in the WHERE clause. Per-device figures
are correlated subqueries on indexed columns, computed in the one query that lists the page: no
per-row queries at 10,000 devices.

"Size" is what an archive occupies in storage: the sum of its packs' sizes (every version kept,
after deduplication and compression). It comes from the packs table — tens of rows per archive —
rather than from the versions table, which at a million rows would be too slow to sum per page.
"""
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from accounts.models import Device, User
from accounts.selectors import ORG_WIDE_ROLES, devices_visible_to
from archives.models import Archive, BackupRun, FileVersion, Pack, RestoreJob
from archives.policy_models import DeviceStatus
from archives.selectors import archives_visible_to

# Backup health, by the age of the device's last complete backup.
HEALTH_RECENT, HEALTH_DAYS, HEALTH_STALE, HEALTH_NEVER = "recent", "days", "stale", "never"
HEALTH_LABELS = {
    HEALTH_RECENT: "Backed up in the last 24 hours",
    HEALTH_DAYS: "Last backup 1–3 days ago",
    HEALTH_STALE: "Last backup more than 3 days ago",
    HEALTH_NEVER: "Never backed up",
}

DEVICE_SORTS = {
    "name": ("name", "pk"),
    "user": ("owner__email", "name", "pk"),
    "os": ("os", "name", "pk"),
    "last_seen": (F("last_seen_at").asc(nulls_first=True), "pk"),
    "last_backup": (F("last_backup").asc(nulls_first=True), "pk"),
    "size": ("stored_bytes", "pk"),
}


def _health_edges(now: datetime) -> tuple[datetime, datetime]:
    return now - timedelta(hours=24), now - timedelta(days=3)


def devices_with_health(actor: User, *, now: datetime | None = None) -> QuerySet[Device]:
    """The devices the actor sees, each with `last_backup` (finish of its last completed run),
    `stored_bytes` (its archives' packs) and `health` (one of HEALTH_LABELS).

    Each figure is one correlated subquery on an index (runs by (archive, status, -finished_at),
    packs by archive). `health` is computed inside its own subquery, so a filter or a GROUP BY on
    it runs one lookup per device (a CASE over `last_backup` would repeat the lookup per branch),
    and PostgreSQL evaluates the display-only figures after ORDER BY ... LIMIT, for one page."""
    day_ago, three_days_ago = _health_edges(now or timezone.now())
    completed = (BackupRun.objects.filter(archive__device=OuterRef("pk"), status=BackupRun.Status.COMPLETED)
                 .order_by("-finished_at"))
    bucket = completed.annotate(bucket=Case(
        When(finished_at__gte=day_ago, then=Value(HEALTH_RECENT)),
        When(finished_at__gte=three_days_ago, then=Value(HEALTH_DAYS)),
        default=Value(HEALTH_STALE), output_field=CharField(),
    )).values("bucket")[:1]
    stored = (Pack.objects.filter(archive__device=OuterRef("pk")).order_by()
              .values("archive__device").annotate(total=Sum("size")).values("total"))
    # The owner comes in a second query (one per page), not a join: a filter on `health` is
    # estimated at a few rows, and PostgreSQL would nested-loop the users over it.
    return devices_visible_to(actor).select_related(None).prefetch_related("owner").annotate(
        last_backup=Subquery(completed.values("finished_at")[:1]),
        stored_bytes=Coalesce(Subquery(stored, output_field=BigIntegerField()), Value(0)),
        health=Coalesce(Subquery(bucket, output_field=CharField()), Value(HEALTH_NEVER)),
    )


def devices_filtered(actor: User, *, search: str = "", health: str = "", authorized: str = "",
                     sort: str = "name", descending: bool = False) -> QuerySet[Device]:
    devices = devices_with_health(actor)
    if search:
        devices = devices.filter(Q(name__icontains=search) | Q(owner__email__icontains=search)
                                 | Q(os__icontains=search))
    if health:
        devices = devices.filter(health=health)
    if authorized:
        devices = devices.filter(authorized=(authorized == "yes"))
    order = DEVICE_SORTS.get(sort, DEVICE_SORTS["name"])
    if descending:
        order = tuple(_descending(field) for field in order)
    return devices.order_by(*order)


def _descending(field):
    if isinstance(field, str):
        return field[1:] if field.startswith("-") else f"-{field}"
    return F(field.expression.name).desc(nulls_last=True)


def health_counts(actor: User, *, now: datetime | None = None) -> dict[str, int]:
    """How many of the actor's devices are in each health bucket (one query, one GROUP BY)."""
    counts = dict(devices_with_health(actor, now=now).order_by().values("health").annotate(n=Count("pk"))
                  .values_list("health", "n"))
    return {key: counts.get(key, 0) for key in HEALTH_LABELS}


def _scope(actor: User, prefix: str) -> Q:
    """The rows (packs, runs) of archives on devices the actor sees, as a plain filter: staff by
    organization (no join to the devices), plain users by their own devices."""
    if actor.role in ORG_WIDE_ROLES:
        return Q(**{f"{prefix}organization_id": actor.organization_id})
    return Q(**{f"{prefix}organization_id": actor.organization_id, f"{prefix}device__owner": actor})


def _packs_visible_to(actor: User) -> QuerySet[Pack]:
    return Pack.objects.filter(_scope(actor, "archive__"))


@dataclass(frozen=True)
class StorageUse:
    total_bytes: int
    top_users: list[dict]  # {"email", "bytes"}, largest first


def storage_use(actor: User, *, top: int = 5) -> StorageUse:
    packs = _packs_visible_to(actor)
    total = packs.aggregate(total=Sum("size"))["total"] or 0
    users = list(packs.order_by().values(email=F("archive__user__email")).annotate(bytes=Sum("size"))
                 .order_by("-bytes", "email")[:top])
    return StorageUse(total_bytes=total, top_users=users)


def runs_in_progress(actor: User, *, limit: int = 10) -> tuple[int, list[BackupRun]]:
    runs = (BackupRun.objects.filter(_scope(actor, "archive__"), status=BackupRun.Status.RUNNING)
            .select_related("archive__device", "archive__user").order_by("started_at"))
    return runs.count(), list(runs[:limit])


def restores_in_progress(actor: User, *, limit: int = 10) -> list[RestoreJob]:
    """Queued and running restores of archives the actor sees (no paths: names are not shown)."""
    return list(RestoreJob.objects.filter(archive__in=archives_visible_to(actor).values("pk"),
                                          status__in=[RestoreJob.Status.QUEUED, RestoreJob.Status.RUNNING])
                .select_related("archive__device", "requested_by").order_by("created_at")[:limit])


@dataclass(frozen=True)
class DailyPoint:
    day: date
    value: int


def daily_activity(actor: User, *, days: int = 30, now: datetime | None = None) -> dict[str, list[DailyPoint]]:
    """Per day (server time zone) for the last `days` days: bytes stored in new packs, and backups
    completed. Days without activity are zeros, so a chart has one point per day."""
    now = timezone.localtime(now or timezone.now())
    first_day = now.date() - timedelta(days=days - 1)
    since = timezone.make_aware(datetime.combine(first_day, datetime.min.time()))
    stored = dict(_packs_visible_to(actor).filter(created_at__gte=since).order_by()
                  .annotate(day=TruncDate("created_at")).values("day").annotate(total=Sum("size"))
                  .values_list("day", "total"))
    completed = dict(BackupRun.objects.filter(_scope(actor, "archive__"), status=BackupRun.Status.COMPLETED,
                                              finished_at__gte=since)
                     .order_by().annotate(day=TruncDate("finished_at")).values("day").annotate(total=Count("pk"))
                     .values_list("day", "total"))
    span = [first_day + timedelta(days=offset) for offset in range(days)]
    return {"stored_bytes": [DailyPoint(day, stored.get(day) or 0) for day in span],
            "completed_backups": [DailyPoint(day, completed.get(day) or 0) for day in span]}


# --- one device -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveFigures:
    archive: Archive
    stored_bytes: int  # packs: every version kept, as stored
    file_count: int  # paths whose newest version is not a deletion
    current_bytes: int  # stored size of those newest versions


def device_archives(actor: User, device: Device) -> list[ArchiveFigures]:
    """The device's archives the actor may see, with storage and current file figures.

    A file counts when its newest version is not a deletion marker: a version with no newer one of
    the same path (NOT EXISTS on the (archive, path_id, committed_at) index; PostgreSQL and SQLite
    alike), one query per archive (a device has one archive per user).
    """
    figures = []
    # Figures, not names: an analyst sees them for every device it sees; a plain user only
    # for their own archives. `device` was reached through `device_for_user`.
    archives = Archive.objects.filter(organization_id=actor.organization_id)
    if actor.role not in ORG_WIDE_ROLES:
        archives = archives.filter(user=actor)
    for archive in archives.filter(device=device).annotate(
            stored=Coalesce(Subquery(Pack.objects.filter(archive=OuterRef("pk")).order_by().values("archive")
                                     .annotate(total=Sum("size")).values("total"),
                                     output_field=BigIntegerField()), Value(0))).order_by("created_at"):
        newer = FileVersion.objects.filter(archive=archive, path_id=OuterRef("path_id")).filter(
            Q(committed_at__gt=OuterRef("committed_at")) | Q(committed_at=OuterRef("committed_at"), pk__gt=OuterRef("pk")))
        live = (FileVersion.objects.filter(archive=archive, deleted=False, is_listing=False).filter(~Exists(newer))
                .aggregate(files=Count("pk"), size=Coalesce(Sum("stored_size"), Value(0),
                                                            output_field=BigIntegerField())))
        figures.append(ArchiveFigures(archive=archive, stored_bytes=archive.stored, file_count=live["files"],
                                      current_bytes=live["size"]))
    return figures


def device_runs(device: Device) -> QuerySet[BackupRun]:
    """Every run of the device's archives, newest first — interrupted and failed ones too.
    The caller has already reached `device` through `device_for_user`."""
    return BackupRun.objects.filter(archive__device=device).select_related("archive__user").order_by("-started_at", "-pk")


def device_status_of(device: Device) -> DeviceStatus | None:
    return DeviceStatus.objects.filter(device=device).first()


def device_last_backup(device: Device):
    return (BackupRun.objects.filter(archive__device=device, status=BackupRun.Status.COMPLETED)
            .order_by("-finished_at").values_list("finished_at", flat=True).first())
