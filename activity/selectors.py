"""Reads on alerts, scoped to the caller's organization; only administrators and security
analysts see alerts (DESIGN §1), and API clients of the organization (by their scope)."""
from dataclasses import dataclass

from django.db.models import Count, QuerySet, Window
from django.http import Http404

from accounts.models import ApiClient, User
from accounts.selectors import one_or_404, parse_uuid_or_404
from activity.alerts import TRIAGE_ROLES
from activity.models import Alert, AlertEntry

# The status filter's values beyond the model's: "unresolved" (open or acknowledged) and "any".
UNRESOLVED, ANY = "unresolved", "any"
STATUS_FILTERS = [UNRESOLVED, *Alert.Status.values, ANY]
# The assignee filter names a person by UUID, or one of these.
ASSIGNEE_NONE = "none"


def alerts_visible_to(actor: User) -> QuerySet[Alert]:
    if actor.role not in TRIAGE_ROLES or not actor.is_active:
        return Alert.objects.none()
    return Alert.objects.filter(organization_id=actor.organization_id).select_related(
        "subject_user", "device", "assignee")


def alert_for_user(actor: User, alert_uuid) -> Alert:
    return one_or_404(alerts_visible_to(actor), alert_uuid, kind="alert")


def alerts_of_client(client: ApiClient) -> QuerySet[Alert]:
    return Alert.objects.filter(organization_id=client.organization_id).select_related(
        "subject_user", "device", "assignee")


def alert_for_client(client: ApiClient, alert_uuid) -> Alert:
    return one_or_404(alerts_of_client(client), alert_uuid, kind="alert")


def open_alert_count(actor: User) -> int:
    return alerts_visible_to(actor).exclude(status=Alert.Status.RESOLVED).count()


def open_alerts_preview(actor: User, limit: int) -> tuple[list[Alert], int]:
    """The `limit` most recently seen unresolved alerts and how many there are, in one query."""
    rows = list(alerts_visible_to(actor).exclude(status=Alert.Status.RESOLVED)
                .annotate(unresolved_total=Window(Count("id")))[:limit])
    return rows, rows[0].unresolved_total if rows else 0


@dataclass(frozen=True)
class AlertFilters:
    status: str = UNRESOLVED
    kind: str = ""
    severity: str = ""
    assignee: str = ""  # a user's UUID, ASSIGNEE_NONE, or "" for anyone


def alerts_filtered(alerts: QuerySet[Alert], filters: AlertFilters) -> QuerySet[Alert]:
    """`alerts` (already scoped) narrowed by the filters; values are validated by the caller's form
    or serializer, an unknown assignee UUID simply matches nothing."""
    if filters.status == UNRESOLVED:
        alerts = alerts.exclude(status=Alert.Status.RESOLVED)
    elif filters.status != ANY:
        alerts = alerts.filter(status=filters.status)
    if filters.kind:
        alerts = alerts.filter(kind=filters.kind)
    if filters.severity:
        alerts = alerts.filter(severity=filters.severity)
    if filters.assignee == ASSIGNEE_NONE:
        alerts = alerts.filter(assignee__isnull=True)
    elif filters.assignee:
        alerts = alerts.filter(assignee__uuid=parse_uuid_or_404(filters.assignee, "user"))
    return alerts


def alert_kinds(organization_id) -> list[str]:
    """The kinds this organization's alerts have (for the filter's choices)."""
    return list(Alert.objects.filter(organization_id=organization_id).order_by("kind")
                .values_list("kind", flat=True).distinct())


def alert_history(alert: Alert) -> QuerySet[AlertEntry]:
    return alert.entries.select_related("actor").order_by("at", "id")


def alert_assignees(organization_id) -> QuerySet[User]:
    """Who an alert may be assigned to: the organization's active administrators and analysts."""
    return User.objects.filter(organization_id=organization_id, role__in=TRIAGE_ROLES, is_active=True).order_by("email")


def alert_assignee_for(organization_id, user_ref) -> User:
    """An assignable person by UUID or email; anyone else (another org's, a plain user) is a 404."""
    people = alert_assignees(organization_id)
    found = people.filter(email__iexact=str(user_ref)).first() if "@" in str(user_ref) else \
        people.filter(uuid=parse_uuid_or_404(user_ref, "user")).first()
    if found is None:
        raise Http404("No such administrator or security analyst")
    return found


def require_triage(actor: User) -> None:
    """File-activity pages: administrators and security analysts; everyone else finds nothing (404)."""
    from django.http import Http404
    if actor.role not in TRIAGE_ROLES:
        raise Http404("No such page")


def require_org_admin(actor: User) -> None:
    from django.http import Http404
    if actor.role != "org_admin":
        raise Http404("No such page")


def watched_users(actor: User):
    from activity.models import WatchedUser
    if actor.role not in TRIAGE_ROLES:
        return WatchedUser.objects.none()
    return WatchedUser.objects.filter(organization_id=actor.organization_id).select_related("user")


def person_for_triager(actor: User, user_uuid) -> User:
    people = User.objects.filter(organization_id=actor.organization_id) if actor.role in TRIAGE_ROLES \
        else User.objects.none()
    return one_or_404(people, user_uuid, kind="user")


def export_targets_visible_to(actor: User):
    from activity.models import ExportTarget
    if actor.role != "org_admin":
        return ExportTarget.objects.none()
    return ExportTarget.objects.filter(organization_id=actor.organization_id)


def export_target_for_user(actor: User, target_uuid):
    return one_or_404(export_targets_visible_to(actor), target_uuid, kind="export target")


def dead_letters_visible_to(actor: User):
    from activity.models import ExportDelivery
    if actor.role != "org_admin":
        return ExportDelivery.objects.none()
    return ExportDelivery.objects.filter(target__organization_id=actor.organization_id,
                                         status=ExportDelivery.Status.DEAD).select_related("target")


def dead_letter_for_user(actor: User, delivery_uuid):
    return one_or_404(dead_letters_visible_to(actor), delivery_uuid, kind="delivery")
