"""Writes of the accounts app: organizations, users, devices, tokens, the audit log."""
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.models import (
    AuditEvent,
    Device,
    DeviceToken,
    EnrollmentCode,
    Group,
    Organization,
    Role,
    SamlSettings,
    ScimToken,
    User,
    WorkerHeartbeat,
)
from accounts.selectors import org_admin_emails
from accounts.throttle import counter_bump, counter_unbump, counter_value, marker_present, marker_set

logger = logging.getLogger(__name__)

DEVICE_TOKEN_PREFIX = "hvd_"
SCIM_TOKEN_PREFIX = "hvs_"


class AuthenticationRefused(Exception):
    """Wrong email or password (the message never says which)."""


class AuthenticationThrottled(Exception):
    """Too many attempts for this account or from this address; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"Too many attempts; retry in {retry_after} seconds")
        self.retry_after = retry_after


class PermissionRefused(Exception):
    """The actor's role does not allow this action."""


def audit_record(
    *, organization: Organization, actor: User | None, action: str, target_type: str,
    target_uuid=None, detail: dict | None = None, actor_label: str | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        organization=organization,
        actor=actor,
        actor_label=actor_label or (actor.email if actor else "system"),
        action=action,
        target_type=target_type,
        target_uuid=target_uuid,
        detail=detail or {},
    )


def organization_get_or_create(*, name: str) -> tuple[Organization, bool]:
    return Organization.objects.get_or_create_named(name)


@dataclass
class UserEnsured:
    user: User
    created: bool


def user_ensure(*, organization: Organization, email: str, role: str, password: str | None) -> UserEnsured:
    """Create the user if absent. Idempotent: an existing user of this org is left as it is.

    An existing user of *another* organization is an error: emails are unique across Haven and a
    script must never move a person between tenants by accident.
    """
    if role not in Role.values:
        raise ValueError(f"Unknown role {role!r}; choose one of {', '.join(Role.values)}")
    email = User.objects.normalize_email(email).lower()
    existing = User.objects.filter(email__iexact=email).select_related("organization").first()
    if existing:
        if existing.organization_id != organization.pk:
            raise ValueError(f"{email} already belongs to organization {existing.organization.name!r}")
        return UserEnsured(existing, False)
    user = User.objects.create_user(email, password, organization=organization, role=role)
    audit_record(organization=organization, actor=None, action="user.create", target_type="user",
                 target_uuid=user.uuid, detail={"email": email, "role": role}, actor_label="manage.py")
    return UserEnsured(user, True)


# --- password and code checks, rate-limited (docs/decisions.md "Login throttling") -----------

def _account_hash(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()[:32]


def _login_audit(*, email: str, action: str, address: str, via: str, detail: dict | None = None) -> None:
    """Audit a refused sign-in against the account it named, if there is such an account."""
    user = User.objects.filter(email__iexact=email).select_related("organization").first() if email else None
    if user is None:
        logger.warning("%s for an unknown account from %s via %s", action, address or "?", via)
        return
    audit_record(organization=user.organization, actor=None, actor_label=f"sign-in from {address or '?'}",
                 action=action, target_type="user", target_uuid=user.uuid,
                 detail={"address": address, "via": via, **(detail or {})})


def _throttled(*, email: str, address: str, via: str, limit: str, count: int, maximum: int,
               window: timedelta) -> AuthenticationThrottled:
    if count == maximum + 1:  # audited once per window, not once per hammering request
        _login_audit(email=email, action="login.throttle", address=address, via=via, detail={"limit": limit})
    return AuthenticationThrottled(int(window.total_seconds()))


def credentials_check(*, email: str, password: str, address: str, via: str = "api/v1/enroll") -> User:
    """Check an email and password: the only password check Haven makes (console, /admin/, agents).

    Limits: failures from one address (any account); failures for one account from one address;
    and a much higher ceiling per account over a day, to which one address adds at most its
    per-address share. Past the ceiling, only addresses the account signed in from before still get
    a password check: knowing someone's email is not enough to lock them out.
    """
    email = email.strip().lower()
    short, day = settings.HAVEN_AUTH_WINDOW, settings.HAVEN_AUTH_ACCOUNT_WINDOW
    per_pair = settings.HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS
    account = _account_hash(email)
    address_key = f"address:{address}"
    pair_key, pair_day_key = f"pair:{account}:{address}", f"pair-day:{account}:{address}"
    account_key, known_key = f"account:{account}", f"known:{account}:{address}"
    # Each check counts before the password is verified, so parallel guesses cannot slip past a
    # limit together; the rightful owner's successful attempt is taken back afterwards.
    bumped = []
    at_address = counter_bump(key=address_key, window=short)
    bumped.append(address_key)
    if at_address > settings.HAVEN_AUTH_MAX_ATTEMPTS_PER_ADDRESS:
        raise _throttled(email=email, address=address, via=via, limit="address", count=at_address,
                         maximum=settings.HAVEN_AUTH_MAX_ATTEMPTS_PER_ADDRESS, window=short)
    at_pair = counter_bump(key=pair_key, window=short)
    bumped.append(pair_key)
    if at_pair > per_pair:
        raise _throttled(email=email, address=address, via=via, limit="account+address", count=at_pair,
                         maximum=per_pair, window=short)
    counted = counter_bump(key=pair_day_key, window=day) <= per_pair
    bumped.append(pair_day_key)
    if counted:
        at_account = counter_bump(key=account_key, window=day)
        bumped.append(account_key)
    else:
        at_account = counter_value(key=account_key)
    ceiling = settings.HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT
    if at_account > ceiling and not marker_present(key=known_key):
        raise _throttled(email=email, address=address, via=via, limit="account", count=at_account if counted else 0,
                         maximum=ceiling, window=day)
    user = ModelBackend().authenticate(None, username=email, password=password)
    if user is None:
        _login_audit(email=email, action="login.failure", address=address, via=via)
        raise AuthenticationRefused("Wrong email or password")
    for key in bumped:
        counter_unbump(key=key)
    marker_set(key=known_key, lifetime=timedelta(days=settings.HAVEN_AUTH_KNOWN_ADDRESS_DAYS))
    return user


def _token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def device_token_issue(*, device: Device) -> str:
    """Return a new bearer token for the device; only its hash is stored."""
    raw = DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)
    DeviceToken.objects.create(device=device, token_hash=_token_hash(raw))
    return raw


def device_token_lookup(raw: str) -> DeviceToken | None:
    if not raw.startswith(DEVICE_TOKEN_PREFIX):
        return None
    return (
        DeviceToken.objects.select_related("device", "device__owner", "device__organization")
        .filter(token_hash=_token_hash(raw))
        .first()
    )


def device_create(*, owner: User, name: str, os_name: str, agent_version: str) -> Device:
    return Device.objects.create(
        organization=owner.organization, owner=owner, name=name[:200], os=os_name[:100],
        agent_version=agent_version[:50], last_seen_at=timezone.now(),
    )


def device_touch(*, device: Device, agent_version: str | None = None) -> None:
    """Record that the agent called in; written at most once a minute to spare the database."""
    now = timezone.now()
    if device.last_seen_at and (now - device.last_seen_at).total_seconds() < 60 and not agent_version:
        return
    device.last_seen_at = now
    fields = ["last_seen_at"]
    if agent_version and agent_version != device.agent_version:
        device.agent_version = agent_version[:50]
        fields.append("agent_version")
    device.save(update_fields=fields)


def _require_admin(actor: User | None, device: Device) -> None:
    if actor is None:
        return  # system actions (SCIM deactivation, Django admin operators) are authorized upstream
    if actor.organization_id != device.organization_id or actor.role != Role.ORG_ADMIN:
        raise PermissionRefused("Only an administrator of this organization may do that")


@transaction.atomic
def device_deauthorize(*, device: Device, actor: User | None, actor_label: str | None = None) -> Device:
    """Revoke every token of the device; its agent gets 401 device_deauthorized from now on."""
    _require_admin(actor, device)
    device = Device.objects.select_for_update().get(pk=device.pk)
    now = timezone.now()
    DeviceToken.objects.filter(device=device, revoked_at__isnull=True).update(revoked_at=now)
    if device.authorized:
        device.authorized = False
        device.deauthorized_at = now
        device.save(update_fields=["authorized", "deauthorized_at"])
        audit_record(organization=device.organization, actor=actor, action="device.deauthorize",
                     target_type="device", target_uuid=device.uuid, actor_label=actor_label)
    return device


@transaction.atomic
def device_reauthorize(*, device: Device, actor: User | None, actor_label: str | None = None) -> Device:
    """Allow the device to enroll again. Old tokens stay revoked: the agent must re-enroll."""
    _require_admin(actor, device)
    device = Device.objects.select_for_update().get(pk=device.pk)
    if not device.authorized:
        device.authorized = True
        device.deauthorized_at = None
        device.save(update_fields=["authorized", "deauthorized_at"])
        audit_record(organization=device.organization, actor=actor, action="device.reauthorize",
                     target_type="device", target_uuid=device.uuid, actor_label=actor_label)
    return device


def worker_heartbeat_record(*, source: str, nonce: str = "") -> None:
    WorkerHeartbeat.objects.update_or_create(source=source[:64], defaults={"nonce": nonce[:64], "seen_at": timezone.now()})


# --- SCIM tokens and provisioning --------------------------------------------------------------

def scim_token_issue(*, organization: Organization, label: str = "", actor: User | None = None,
                     actor_label: str | None = None) -> str:
    """A new SCIM bearer token for the organization; only its hash is kept."""
    raw = SCIM_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ScimToken.objects.create(organization=organization, label=label[:100], token_hash=_token_hash(raw))
    audit_record(organization=organization, actor=actor, actor_label=actor_label, action="scim.token.create",
                 target_type="scim_token", target_uuid=token.uuid, detail={"label": label})
    return raw


def scim_token_lookup(raw: str) -> ScimToken | None:
    """The live token (never a revoked one) for a bearer value, or None."""
    if not raw.startswith(SCIM_TOKEN_PREFIX):
        return None
    token = (ScimToken.objects.select_related("organization")
             .filter(token_hash=_token_hash(raw), revoked_at__isnull=True).first())
    if token is not None and (token.last_used_at is None or (timezone.now() - token.last_used_at).total_seconds() > 60):
        ScimToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token


def scim_token_revoke(*, token: ScimToken, actor: User | None) -> None:
    ScimToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    audit_record(organization=token.organization, actor=actor, action="scim.token.revoke", target_type="scim_token",
                 target_uuid=token.uuid)


@transaction.atomic
def user_deactivate(*, user: User, actor_label: str) -> User:
    """Deactivate a user (SCIM `active: false` or DELETE): every device is deauthorized at once.
    Keys and archives are never deleted: an administrator can still restore the user's data."""
    user = User.objects.select_for_update().get(pk=user.pk)
    for device in Device.objects.filter(owner=user, authorized=True):
        device_deauthorize(device=device, actor=None, actor_label=actor_label)
    if user.is_active:
        user.is_active = False
        user.save(update_fields=["is_active"])
        audit_record(organization=user.organization, actor=None, actor_label=actor_label, action="user.deactivate",
                     target_type="user", target_uuid=user.uuid)
    return user


def user_reactivate(*, user: User, actor_label: str) -> User:
    """Reactivate a user; their devices stay deauthorized until an administrator reauthorizes them."""
    if not user.is_active:
        user.is_active = True
        user.save(update_fields=["is_active"])
        audit_record(organization=user.organization, actor=None, actor_label=actor_label, action="user.reactivate",
                     target_type="user", target_uuid=user.uuid)
    return user


_ROLE_RANK = [Role.USER, Role.RESTORE_OPERATOR, Role.SECURITY_ANALYST, Role.ORG_ADMIN]


def highest_role(roles) -> str:
    """The most privileged of the roles mapped to someone's groups (plain user if none)."""
    roles = [role for role in roles if role]
    return max(roles, key=_ROLE_RANK.index) if roles else Role.USER


def user_role_from_groups(*, user: User) -> User:
    """While SCIM manages the organization, a user's role is the highest role mapped to their groups."""
    role = highest_role(user.haven_groups.exclude(role="").values_list("role", flat=True))
    if role != user.role:
        user.role = role
        user.save(update_fields=["role"])
    return user


@transaction.atomic
def group_role_set(*, group: Group, role: str, actor: User) -> Group:
    """Map a (SCIM-provisioned) group to a Haven role; its members' roles follow at once."""
    if role not in {"", *Role.values}:
        raise ValueError(f"Unknown role {role!r}")
    group.role = role
    group.save(update_fields=["role"])
    for member in group.members.all():
        user_role_from_groups(user=member)
    audit_record(organization=group.organization, actor=actor, action="group.role", target_type="group",
                 target_uuid=group.uuid, detail={"role": role})
    return group


@transaction.atomic
def saml_settings_update(*, organization: Organization, actor: User, enabled: bool, idp_metadata_xml: str,
                         idp_entity_id: str, idp_metadata_url: str, attribute_email: str, attribute_name: str,
                         attribute_groups: str, jit_enabled: bool) -> SamlSettings:
    """Save the organization's identity provider (metadata already fetched and parsed by the caller)."""
    saml, _ = SamlSettings.objects.select_for_update().get_or_create(organization=organization)
    saml.enabled, saml.jit_enabled = enabled, jit_enabled
    saml.idp_metadata_xml, saml.idp_entity_id, saml.idp_metadata_url = idp_metadata_xml, idp_entity_id, idp_metadata_url
    saml.attribute_email, saml.attribute_name, saml.attribute_groups = attribute_email, attribute_name, attribute_groups
    saml.save()
    audit_record(organization=organization, actor=actor, action="saml.settings.update", target_type="organization",
                 target_uuid=organization.uuid, detail={"idp": idp_entity_id, "enabled": enabled, "jit": jit_enabled})
    return saml


# --- enrollment codes (agents of SSO users) -----------------------------------------------------

ENROLLMENT_CODE_MINUTES = 10
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed by hand


def enrollment_code_issue(*, user: User) -> str:
    """A one-time code, valid for 10 minutes, shown to the signed-in user; only its hash is kept."""
    code = "-".join("".join(secrets.choice(_CODE_ALPHABET) for _ in range(4)) for _ in range(3))
    EnrollmentCode.objects.create(user=user, code_hash=_token_hash(code.replace("-", "")),
                                  expires_at=timezone.now() + timedelta(minutes=ENROLLMENT_CODE_MINUTES))
    return code


def enrollment_code_redeem(*, code: str, address: str) -> User:
    """The user behind a valid, unused, unexpired code; the code is spent. Rate-limited by address."""
    window, address_key = settings.HAVEN_AUTH_WINDOW, f"address:{address}"
    if counter_bump(key=address_key, window=window) > settings.HAVEN_AUTH_MAX_ATTEMPTS_PER_ADDRESS:
        raise AuthenticationThrottled(int(window.total_seconds()))
    normalized = code.replace("-", "").replace(" ", "").upper()
    spent = EnrollmentCode.objects.filter(code_hash=_token_hash(normalized), used_at__isnull=True,
                                          expires_at__gt=timezone.now()).update(used_at=timezone.now())
    if spent != 1:
        raise AuthenticationRefused("The code is wrong, used or expired; get a new one in the console")
    counter_unbump(key=address_key)
    user = EnrollmentCode.objects.select_related("user").get(code_hash=_token_hash(normalized)).user
    if not user.is_active:
        raise AuthenticationRefused("The account is deactivated")
    return user


def device_enrolled_notify(*, device: Device) -> None:
    """Every new device is audited. If its owner has a deauthorized device (a stolen laptop, say),
    the organization's administrators are told at once: the owner's password alone enrolled it."""
    audit_record(organization=device.organization, actor=device.owner, action="device.enroll", target_type="device",
                 target_uuid=device.uuid, detail={"name": device.name, "os": device.os})
    if not Device.objects.filter(owner=device.owner, authorized=False).exists():
        return
    admins = org_admin_emails(device.organization_id)
    send_mail(subject=f"Haven: new device for {device.owner.email}, who has a deauthorized device",
              message=(f"{device.owner.email} enrolled a new device \"{device.name}\" at {timezone.now():%Y-%m-%d %H:%M} "
                       "UTC. One of their devices was deauthorized earlier. If this enrollment was not expected, "
                       "deauthorize the new device in the console and reset the user's password."),
              from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=admins, fail_silently=True)
