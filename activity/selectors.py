"""Reads on alerts, scoped to the caller's organization; only administrators and security
analysts see alerts (DESIGN §1)."""
from django.db.models import QuerySet

from accounts.models import User
from accounts.selectors import one_or_404
from activity.alerts import TRIAGE_ROLES
from activity.models import Alert


def alerts_visible_to(actor: User) -> QuerySet[Alert]:
    if actor.role not in TRIAGE_ROLES:
        return Alert.objects.none()
    return Alert.objects.filter(organization_id=actor.organization_id).select_related(
        "subject_user", "device", "assignee")


def alert_for_user(actor: User, alert_uuid) -> Alert:
    return one_or_404(alerts_visible_to(actor), alert_uuid, kind="alert")


def open_alert_count(actor: User) -> int:
    return alerts_visible_to(actor).exclude(status=Alert.Status.RESOLVED).count()
