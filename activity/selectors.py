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
