"""Reads of the public API: every query starts from the client's organization, and lists are
keyset-paginated on an indexed column (fast at any depth, stable while rows are added)."""
from datetime import datetime

from django.db.models import F, OuterRef, Q, QuerySet, Subquery

from accounts.models import ApiClient, AuditEvent, Device
from archives.models import Archive, BackupRun
from keystore.models import KeyAccess


def devices_of_client(client: ApiClient, *, after: int | None, limit: int) -> list[Device]:
    """The organization's devices in enrollment order, each with its archive and last complete
    backup, in one query."""
    archives = Archive.objects.filter(device=OuterRef("pk"), user=OuterRef("owner")).order_by("pk")
    completed = (BackupRun.objects.filter(archive__device=OuterRef("pk"), archive__user=OuterRef("owner"),
                                          status=BackupRun.Status.COMPLETED, finished_at__isnull=False)
                 .order_by("-finished_at").values("finished_at"))
    devices = (Device.objects.filter(organization_id=client.organization_id).select_related("owner")
               .annotate(archive_uuid=Subquery(archives.values("uuid")[:1]),
                         last_complete_backup=Subquery(completed[:1])).order_by("pk"))
    if after is not None:
        devices = devices.filter(pk__gt=after)
    return list(devices[:limit + 1])


def runs_of_archive(archive: Archive, *, before: int | None, limit: int) -> list[BackupRun]:
    """An archive's backup runs, newest first."""
    runs = BackupRun.objects.filter(archive=archive).order_by("-pk")
    if before is not None:
        runs = runs.filter(pk__lt=before)
    return list(runs[:limit + 1])


# The audit stream merges two logs, newest first; at the same instant administrative events come
# before key accesses, then by id. A cursor is the last row's (time, kind, id).
_RANK = {"audit": 1, "key_access": 0}


def _after(queryset: QuerySet, rank: int, cursor: tuple[datetime, int, int] | None) -> QuerySet:
    if cursor is None:
        return queryset
    at, cursor_rank, pk = cursor
    if rank < cursor_rank:
        return queryset.filter(occurred_at__lte=at)
    if rank > cursor_rank:
        return queryset.filter(occurred_at__lt=at)
    return queryset.filter(Q(occurred_at__lt=at) | Q(occurred_at=at, pk__lt=pk))


def audit_of_client(client: ApiClient, *, cursor: tuple[datetime, int, int] | None, limit: int,
                    kind: str = "") -> list[tuple[str, object]]:
    """Up to limit + 1 rows of the organization's audit log and key-access log, merged."""
    rows: list[tuple[str, object]] = []
    if kind in ("", "audit"):
        events = AuditEvent.objects.filter(organization_id=client.organization_id).order_by("-occurred_at", "-pk")
        rows += [("audit", e) for e in _after(events, _RANK["audit"], cursor)[:limit + 1]]
    if kind in ("", "key_access"):
        accesses = (KeyAccess.objects.filter(organization_id=client.organization_id).select_related("subject")
                    .annotate(subject_email=F("subject__email")).order_by("-occurred_at", "-pk"))
        rows += [("key_access", a) for a in _after(accesses, _RANK["key_access"], cursor)[:limit + 1]]
    rows.sort(key=lambda row: (row[1].occurred_at, _RANK[row[0]], row[1].pk), reverse=True)
    return rows[:limit + 1]


def audit_position(kind: str, row) -> list:
    return [row.occurred_at.isoformat(), _RANK[kind], row.pk]
