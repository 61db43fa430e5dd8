"""Writes on an organization's export targets: syslog collectors and webhooks (console and
`manage.py activityexport`). A webhook's HMAC key is made here, shown once, and kept sealed."""
import ipaddress
import secrets
import ssl
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import Organization, User
from accounts.services import PermissionRefused, audit_record
from activity.models import ExportDelivery, ExportTarget
from keystore.sealing import SealedIn, StorageKeyMissing, seal, sealing_check, unseal


class ExportTargetInvalid(ValueError):
    """Bad target settings; the message says what to send instead."""


def _owner(target: ExportTarget) -> SealedIn:
    return SealedIn(table="activity.exporttarget", organization=target.organization.uuid, row=target.uuid)


def webhook_secret(target: ExportTarget) -> bytes:
    return unseal("webhook-secret", target.secret_sealed, owner=_owner(target))


def _require_admin(actor: User | None, organization: Organization) -> None:
    if actor is not None and (actor.role != "org_admin" or actor.organization_id != organization.pk):
        raise PermissionRefused("Only an administrator of the organization configures SIEM export.")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check(target: ExportTarget) -> None:
    if target.kind == ExportTarget.Kind.SYSLOG:
        if not target.host or not target.port or not 1 <= target.port <= 65535:
            raise ExportTargetInvalid("A syslog target needs a host and a port (1-65535).")
        if target.ca_pem:
            try:
                ssl.create_default_context(cadata=target.ca_pem)
            except (ssl.SSLError, ValueError):
                raise ExportTargetInvalid("The CA is not PEM certificate text.") from None
    elif target.kind == ExportTarget.Kind.WEBHOOK:
        parts = urlsplit(target.url)
        if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(parts.hostname or "")):
            raise ExportTargetInvalid("A webhook URL must be https:// (plain http only to this machine).")
        if target.payload != ExportTarget.Payload.JSON:
            raise ExportTargetInvalid("Webhooks carry JSON.")
    else:
        raise ExportTargetInvalid(f"kind must be one of {', '.join(ExportTarget.Kind.values)}")
    try:
        target.full_clean(exclude=["organization", "secret_sealed"])
    except ValidationError as error:
        raise ExportTargetInvalid("; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())) from None


@transaction.atomic
def export_target_create(*, organization: Organization, actor: User | None, actor_label: str = "",
                         name: str, kind: str, **fields) -> tuple[ExportTarget, str]:
    """A new target, reading from now on (older alerts and events are not replayed). Returns the
    target and, for a webhook, its signing secret (shown once)."""
    from activity.models import Alert, FileEvent

    _require_admin(actor, organization)
    if ExportTarget.objects.filter(organization=organization, name=name).exists():
        raise ExportTargetInvalid(f"A target named {name!r} exists already.")
    target = ExportTarget(organization=organization, name=name, kind=kind, **fields)
    _check(target)
    secret = ""
    if kind == ExportTarget.Kind.WEBHOOK:
        try:
            sealing_check()
        except StorageKeyMissing as error:
            raise ExportTargetInvalid(f"A webhook's signing key is stored sealed: {error}") from None
        secret = "hvw_" + secrets.token_urlsafe(32)
        target.secret_sealed = seal("webhook-secret", secret.encode(), owner=_owner(target))
    last_alert = Alert.objects.filter(organization=organization).order_by("-id").values_list("id", flat=True).first()
    last_event = FileEvent.objects.filter(organization=organization).order_by("-id").values_list(
        "id", flat=True).first()
    target.alert_cursor, target.event_cursor = last_alert or 0, last_event or 0
    target.save()
    audit_record(organization=organization, actor=actor, actor_label=actor_label or None,
                 action="activity.export_create", target_type="export_target", target_uuid=target.uuid,
                 detail={"name": name, "kind": kind, "include_events": target.include_events})
    return target, secret


@transaction.atomic
def export_target_delete(*, target: ExportTarget, actor: User | None, actor_label: str = "") -> None:
    _require_admin(actor, target.organization)
    audit_record(organization=target.organization, actor=actor, actor_label=actor_label or None,
                 action="activity.export_delete", target_type="export_target", target_uuid=target.uuid,
                 detail={"name": target.name})
    target.delete()


def export_delivery_retry(*, delivery: ExportDelivery, actor: User | None) -> ExportDelivery:
    """Put a dead letter back in the queue, due now."""
    from django.utils import timezone

    _require_admin(actor, delivery.target.organization)
    ExportDelivery.objects.filter(pk=delivery.pk, status=ExportDelivery.Status.DEAD).update(
        status=ExportDelivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now())
    delivery.refresh_from_db()
    return delivery
