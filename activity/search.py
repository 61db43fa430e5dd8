"""Forensic search over file-activity events and the dashboard's events-by-vector counts: reads
scoped to the caller's organization, for administrators and security analysts only.

Pages are keyset-paginated on (occurred_at, id), newest first: a page costs the same at any
depth, and events arriving meanwhile do not shift it. Each selective filter has an index
(activity/models.py FileEvent.Meta; migration 0006: a trigram GIN on path and hash indexes on
file name and SHA-256 on PostgreSQL); docs/activity.md has the searches measured at 10 million
events.
"""
import base64
import binascii
import json
from datetime import datetime, timedelta

from django.db.models import Count, Lookup, Q, QuerySet
from django.db.models.functions import TruncDay
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Device, User
from activity.alerts import TRIAGE_ROLES
from activity.models import FileEvent

PAGE_SIZE = 50


class PathContains(Lookup):
    """Case-insensitive "contains" that the trigram index on `path` answers (PostgreSQL).

    Django's `icontains` is `UPPER(path) LIKE UPPER(%s)` on PostgreSQL, which needs a trigram
    index on the expression `upper(path)`; computing that expression for every ingested event
    cost ~7 µs of PostgreSQL CPU per event (docs/activity.md). `path ILIKE %s` is answered by a
    trigram index on the bare column (pg_trgm folds case itself). Elsewhere: `icontains`."""

    lookup_name = "trgm_icontains"

    def get_db_prep_lookup(self, value, connection):
        return "%s", [f"%{connection.ops.prep_for_like_query(value)}%"]

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} ILIKE {rhs}", [*lhs_params, *rhs_params]

    def as_sqlite(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} LIKE {rhs} ESCAPE '\\'", [*lhs_params, *rhs_params]


FileEvent._meta.get_field("path").register_lookup(PathContains)


class CursorInvalid(ValueError):
    pass


def file_events_visible_to(actor: User) -> QuerySet[FileEvent]:
    if actor.role not in TRIAGE_ROLES:
        return FileEvent.objects.none()
    return FileEvent.objects.filter(organization_id=actor.organization_id)


def file_events_filtered(actor: User, filters: dict) -> QuerySet[FileEvent]:
    """The caller's events matching `filters` (a search form's cleaned data), newest first."""
    return events_matching(file_events_visible_to(actor), actor.organization_id, filters)


def events_matching(events: QuerySet[FileEvent], organization_id: int, filters: dict) -> QuerySet[FileEvent]:
    """`events` (already scoped to `organization_id`) narrowed by `filters`, newest first."""
    if filters.get("user"):
        people = User.objects.filter(organization_id=organization_id, email__icontains=filters["user"])
        events = events.filter(user_id__in=list(people.values_list("id", flat=True)[:100]))
    if filters.get("device"):
        devices = Device.objects.filter(organization_id=organization_id, name__icontains=filters["device"])
        events = events.filter(device_id__in=list(devices.values_list("id", flat=True)[:100]))
    if filters.get("path"):
        events = events.filter(path__trgm_icontains=filters["path"])
    for field in ("file_name", "sha256", "vector", "category", "event_type"):
        if filters.get(field):
            events = events.filter(**{field: filters[field]})
    if filters.get("since"):
        events = events.filter(occurred_at__gte=filters["since"])
    if filters.get("until"):
        events = events.filter(occurred_at__lte=filters["until"])
    return events.order_by("-occurred_at", "-id")


def cursor_encode(event: FileEvent) -> str:
    raw = json.dumps([event.occurred_at.isoformat(), event.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(raw: str) -> tuple[datetime, int]:
    try:
        moment, event_id = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        moment = parse_datetime(moment)
        if moment is None or not isinstance(event_id, int):
            raise ValueError
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise CursorInvalid("Not a cursor this search returned") from None
    return moment, event_id


def events_after(events: QuerySet[FileEvent], cursor: str) -> QuerySet[FileEvent]:
    """`events` older than the cursor's (occurred_at, id); all of them for an empty cursor."""
    if not cursor:
        return events
    moment, event_id = cursor_decode(cursor)
    # The plain bound is what an index scan starts from; the OR alone would be a filter applied
    # row by row from the newest event down (a page's cost growing with its depth).
    return events.filter(occurred_at__lte=moment).filter(
        Q(occurred_at__lt=moment) | Q(occurred_at=moment, id__lt=event_id))


def file_events_page(events: QuerySet[FileEvent], *, cursor: str = "", limit: int = PAGE_SIZE
                     ) -> tuple[list[FileEvent], str | None]:
    """A page of `events` after `cursor`, and the next page's cursor (None on the last page)."""
    rows = list(events_after(events, cursor).select_related("user", "device")[:limit + 1])
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], cursor_encode(rows[limit - 1])


def events_by_vector(actor: User, *, days: int = 14) -> dict:
    """Per vector, events per day over the last `days` days: {vector: [(day, count), ...]}."""
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days - 1)
    rows = (file_events_visible_to(actor).filter(occurred_at__gte=start).exclude(vector="")
            .annotate(day=TruncDay("occurred_at")).values("vector", "day").annotate(count=Count("id")))
    counts: dict = {}
    for row in rows:
        counts.setdefault(row["vector"], {})[row["day"].date()] = row["count"]
    span = [(start + timedelta(days=n)).date() for n in range(days)]
    return {vector: [(day, per_day.get(day, 0)) for day in span] for vector, per_day in sorted(counts.items())}
