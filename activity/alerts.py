"""Writes on alerts: raise (deduplicated), acknowledge, resolve, reopen, assign, note.

Any app may raise an alert: maintenance and stale-device checks in `archives`, detection rules
here. Every change leaves an `AlertEntry`; a new alert is emailed to the organization's
administrators once (a condition seen again is not re-sent).
"""
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import ApiClient, Device, Organization, Role, User
from accounts.selectors import org_admin_emails
from accounts.services import PermissionRefused, audit_record
from activity.models import Alert, AlertEntry

TRIAGE_ROLES = {Role.ORG_ADMIN, Role.SECURITY_ANALYST}


def alert_raise(*, organization: Organization, kind: str, dedup_key: str, title: str, detail: dict | None = None,
                severity: str = Alert.Severity.MEDIUM, subject_user: User | None = None,
                device: Device | None = None, archive_uuid=None, notify: bool = True) -> tuple[Alert, bool]:
    """The unresolved alert for (organization, dedup_key), created if there is none.

    Returns (alert, created). Safe under concurrent raisers: the partial unique constraint lets
    only one unresolved alert exist per key, and the loser of a race counts as "seen again".
    """
    now = timezone.now()
    for _attempt in range(3):
        existing = Alert.objects.filter(organization=organization, dedup_key=dedup_key).exclude(
            status=Alert.Status.RESOLVED).first()
        if existing is not None:
            Alert.objects.filter(pk=existing.pk).update(occurrences=F("occurrences") + 1, last_seen_at=now,
                                                        detail=detail if detail is not None else existing.detail)
            existing.refresh_from_db()
            return existing, False
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    organization=organization, kind=kind, dedup_key=dedup_key, title=title[:300],
                    detail=detail or {}, severity=severity, subject_user=subject_user, device=device,
                    archive_uuid=archive_uuid, last_seen_at=now)
                AlertEntry.objects.create(alert=alert, action=AlertEntry.Action.RAISED, actor_label="system",
                                          to_status=alert.status, text=title[:300])
        except IntegrityError:
            continue  # another raiser won; take its alert on the next pass
        if notify:
            transaction.on_commit(lambda created=alert: _notify(created))
        return alert, True
    raise RuntimeError(f"could not raise alert {dedup_key!r}")


def _notify(alert: Alert) -> None:
    recipients = org_admin_emails(alert.organization_id)
    if not recipients:
        return
    send_mail(subject=f"Haven alert ({alert.severity}): {alert.title}",
              message=(f"{alert.title}\n\nRaised {alert.created_at:%Y-%m-%d %H:%M} UTC. "
                       "Open the console's Alerts page to acknowledge or resolve it."),
              from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=recipients, fail_silently=True)


def _require_triage(actor: User | None, alert: Alert, client: ApiClient | None = None) -> None:
    """A person of a triage role, or an API client (its `alerts:write` scope is checked by the API),
    of the alert's own organization."""
    if client is not None:
        if client.organization_id != alert.organization_id:
            raise PermissionRefused("This API client belongs to another organization.")
        return
    if actor is None or actor.role not in TRIAGE_ROLES or actor.organization_id != alert.organization_id:
        raise PermissionRefused("Only administrators and security analysts triage alerts.")


def _label(actor: User | None, client: ApiClient | None) -> str:
    return client.label if client is not None else actor.email if actor is not None else "system"


def _entry(alert: Alert, actor: User | None, action: str, client: ApiClient | None = None, **fields) -> AlertEntry:
    return AlertEntry.objects.create(alert=alert, action=action, actor=actor, actor_label=_label(actor, client),
                                     **fields)


def _audit(alert: Alert, actor: User | None, client: ApiClient | None, action: str, **detail) -> None:
    audit_record(organization=alert.organization, actor=actor, actor_label=_label(actor, client) if client else None,
                 action=action, target_type="alert", target_uuid=alert.uuid, detail={"kind": alert.kind, **detail})


@transaction.atomic
def alert_set_status(*, alert: Alert, actor: User | None, status: str, note: str = "",
                     client: ApiClient | None = None) -> Alert:
    """Acknowledge, resolve or reopen. `actor=None` (and no client) is the system (a condition that
    cleared); `client` is an API client of the public API acting by its scope."""
    if actor is not None or client is not None:
        _require_triage(actor, alert, client)
    if status not in Alert.Status.values:
        raise ValueError(f"unknown alert status {status!r}")
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status == status:
        return alert
    if status != Alert.Status.RESOLVED and alert.status == Alert.Status.RESOLVED and Alert.objects.filter(
            organization_id=alert.organization_id, dedup_key=alert.dedup_key).exclude(
            status=Alert.Status.RESOLVED).exists():
        raise ValueError("A newer alert for the same condition is open; reopen that one instead.")
    previous, alert.status = alert.status, status
    alert.resolved_at = timezone.now() if status == Alert.Status.RESOLVED else None
    alert.save(update_fields=["status", "resolved_at"])
    _entry(alert, actor, AlertEntry.Action.STATUS, client, from_status=previous, to_status=status, text=note)
    if actor is not None or client is not None:
        _audit(alert, actor, client, f"alert.{status}")
    return alert


@transaction.atomic
def alert_assign(*, alert: Alert, actor: User | None, assignee: User | None, client: ApiClient | None = None) -> Alert:
    _require_triage(actor, alert, client)
    if assignee is not None and (assignee.organization_id != alert.organization_id
                                 or assignee.role not in TRIAGE_ROLES or not assignee.is_active):
        raise PermissionRefused("Alerts are assigned to administrators or security analysts of the organization.")
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.assignee_id == (assignee.pk if assignee else None):
        return alert
    alert.assignee = assignee
    alert.save(update_fields=["assignee"])
    _entry(alert, actor, AlertEntry.Action.ASSIGNED, client, text=assignee.email if assignee else "")
    _audit(alert, actor, client, "alert.assign", assignee=assignee.email if assignee else None)
    return alert


MAX_NOTE_LENGTH = 10_000


@transaction.atomic
def alert_note(*, alert: Alert, actor: User | None, text: str, client: ApiClient | None = None) -> AlertEntry:
    _require_triage(actor, alert, client)
    text = (text or "").strip()
    if not text:
        raise ValueError("A note needs some text.")
    if len(text) > MAX_NOTE_LENGTH:
        raise ValueError(f"A note is at most {MAX_NOTE_LENGTH} characters.")
    entry = _entry(alert, actor, AlertEntry.Action.NOTE, client, text=text)
    _audit(alert, actor, client, "alert.note")
    return entry


def alerts_resolve_cleared(*, organization: Organization, kind: str, still_active_keys: set[str]) -> int:
    """Resolve (as the system) the unresolved alerts of `kind` whose condition no longer holds."""
    cleared = Alert.objects.filter(organization=organization, kind=kind).exclude(
        status=Alert.Status.RESOLVED).exclude(dedup_key__in=still_active_keys)
    count = 0
    for alert in cleared:
        alert_set_status(alert=alert, actor=None, status=Alert.Status.RESOLVED, note="The condition cleared.")
        count += 1
    return count
