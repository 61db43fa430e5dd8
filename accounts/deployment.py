"""Deployment tokens (writes): an administrator makes one, an MDM script enrolls a fleet with it.

A token names its organization, so whoever holds it can enroll a device for any user email of
that organization — and that device may then receive the user's escrowed key. What limits it:
an expiry (always), an optional cap on uses (counted under a row lock, so concurrent enrollments
never exceed it), revocation, user creation only when allowed and only in the organization's
verified domains (the rule SCIM follows), and — unless the token says otherwise — no devices
for users who already hold a key (archives.services.device_enroll_by_token checks that). Every
use and every refusal of a known token is audited; the key hand-over keeps its own audit and
emails (keystore.services.key_deliver_to_device).
"""
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import DeploymentToken, Group, Organization, Role, SamlSettings, User
from accounts.services import AuthenticationThrottled, audit_record
from accounts.throttle import counter_bump, counter_unbump

logger = logging.getLogger(__name__)

DEPLOYMENT_TOKEN_PREFIX = "hvt_"
MAX_DAYS = 365


class DeploymentTokenInvalid(ValueError):
    """The settings asked for make no token (bad expiry or use count, a group of another org)."""


class DeploymentTokenRefused(Exception):
    """The token (or the email given with it) does not enroll a device; `code` says why."""

    def __init__(self, code: str, message: str, token: DeploymentToken | None = None, email: str = ""):
        super().__init__(message)
        self.code, self.token, self.email = code, token, email


_REFUSED = {
    "revoked": "The deployment token was revoked",
    "expired": "The deployment token has expired",
    "exhausted": "The deployment token has been used as many times as it allows",
}


@dataclass
class Redeemed:
    token: DeploymentToken
    user: User
    user_created: bool


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def deployment_token_create(*, organization: Organization, days: int = 7, max_uses: int | None = None,
                            group: Group | None = None, create_users: bool = False,
                            allow_existing_keys: bool = False, label: str = "", actor: User | None = None,
                            actor_label: str | None = None) -> tuple[DeploymentToken, str]:
    """A new token and its value (shown this once; only the hash is kept)."""
    if not 1 <= days <= MAX_DAYS:
        raise DeploymentTokenInvalid(f"a deployment token lives 1 to {MAX_DAYS} days")
    if max_uses is not None and max_uses < 1:
        raise DeploymentTokenInvalid("a deployment token allows at least one use (or leave the cap out)")
    if group is not None and group.organization_id != organization.pk:
        raise DeploymentTokenInvalid("that group belongs to another organization")
    if group is not None and group.role:
        # Membership would make the token a way to hand out that role (SCIM derives roles from groups).
        raise DeploymentTokenInvalid(f"the group {group.name} grants a role ({group.role}); choose a group without one")
    raw = DEPLOYMENT_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = DeploymentToken.objects.create(
        organization=organization, label=label[:100], token_hash=_hash(raw), token_prefix=raw[:12],
        group=group, create_users=create_users, allow_existing_keys=allow_existing_keys, max_uses=max_uses,
        expires_at=timezone.now() + timedelta(days=days), created_by=actor)
    audit_record(organization=organization, actor=actor, actor_label=actor_label, action="deployment_token.create",
                 target_type="deployment_token", target_uuid=token.uuid,
                 detail={"label": token.label, "days": days, "max_uses": max_uses,
                         "group": group.name if group else None, "create_users": create_users,
                         "allow_existing_keys": allow_existing_keys})
    return token, raw


def deployment_token_revoke(*, token: DeploymentToken, actor: User | None, actor_label: str | None = None) -> bool:
    revoked = DeploymentToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if revoked:
        audit_record(organization=token.organization, actor=actor, actor_label=actor_label,
                     action="deployment_token.revoke", target_type="deployment_token", target_uuid=token.uuid)
    return bool(revoked)


# --- redeeming a token (agentapi enroll/deployment, through archives.services) ---------------

def deployment_attempt_count(*, address: str) -> None:
    """Count a token use from `address` (outside the enrollment's transaction, so a refusal that
    rolls everything back still counts); shares the address limit of passwords and codes."""
    window = settings.HAVEN_AUTH_WINDOW
    if counter_bump(key=f"address:{address}", window=window) > settings.HAVEN_AUTH_MAX_ATTEMPTS_PER_ADDRESS:
        raise AuthenticationThrottled(int(window.total_seconds()))


def deployment_attempt_forgive(*, address: str) -> None:
    """A successful use does not count against the address: a fleet enrolls from one NAT."""
    counter_unbump(key=f"address:{address}")


def _verified(organization: Organization, email: str) -> bool:
    saml = SamlSettings.objects.filter(organization=organization).first()
    return bool(saml) and email.rsplit("@", 1)[-1] in saml.domains()


def _user_for(token: DeploymentToken, email: str) -> tuple[User, bool]:
    email = User.objects.normalize_email(email).strip().lower()
    unknown = DeploymentTokenRefused(
        "user_unknown", "No user with this email in the token's organization, and the token may not create one",
        token, email)
    user = User.objects.filter(email__iexact=email).first()
    if user is not None:
        # Another organization's user is "unknown" here: a token never reaches across tenants.
        if user.organization_id != token.organization_id or user.scim_deleted_at is not None:
            raise unknown
        if not user.is_active:
            raise DeploymentTokenRefused("user_inactive", "This user is deactivated", token, email)
        return user, False
    if not token.create_users:
        raise unknown
    if not _verified(token.organization, email):
        raise DeploymentTokenRefused(
            "domain_not_verified", "The token may create users only in the organization's verified domains",
            token, email)
    try:
        with transaction.atomic():
            user = User.objects.create_user(email, None, organization=token.organization, role=Role.USER)
    except IntegrityError:  # created meanwhile through another token or SCIM: enroll again
        raise DeploymentTokenRefused("conflict", "The user was created meanwhile; try again", token, email) from None
    audit_record(organization=token.organization, actor=None, actor_label=token.label_for_audit,
                 action="user.create", target_type="user", target_uuid=user.uuid,
                 detail={"email": email, "role": Role.USER, "via": "deployment token"})
    return user, True


def deployment_token_redeem(*, raw: str, email: str) -> Redeemed:
    """Spend one use of a live token for `email`'s device. Call it inside the enrollment's
    transaction: the row stays locked until the device exists, and a refusal after this (a
    deauthorized device) takes the use, the user and the group membership back with it."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("deployment_token_redeem runs inside the enrollment's transaction")
    token = None
    if raw.startswith(DEPLOYMENT_TOKEN_PREFIX):
        token = (DeploymentToken.objects.select_for_update(of=("self",)).select_related("organization", "group")
                 .filter(token_hash=_hash(raw)).first())
    if token is None:
        raise DeploymentTokenRefused("deployment_token_invalid", "The deployment token is unknown")
    if token.state != "active":
        raise DeploymentTokenRefused(f"deployment_token_{token.state}", _REFUSED[token.state], token, email)
    if token.group is not None and token.group.role:
        raise DeploymentTokenRefused("group_grants_role", f"The token's group {token.group.name} was mapped to a "
                                     "role since the token was made; make a new token", token, email)
    user, created = _user_for(token, email)
    if token.group is not None:
        token.group.members.add(user)
    token.use_count += 1
    token.last_used_at = timezone.now()
    token.save(update_fields=["use_count", "last_used_at"])
    audit_record(organization=token.organization, actor=None, actor_label=token.label_for_audit,
                 action="deployment_token.use", target_type="user", target_uuid=user.uuid,
                 detail={"token": str(token.uuid), "email": user.email, "user_created": created,
                         "group": token.group.name if token.group else None, "use": token.use_count})
    return Redeemed(token=token, user=user, user_created=created)


def deployment_refusal_record(*, refused: DeploymentTokenRefused, address: str) -> None:
    """Audit a refused use of a known token (after its transaction rolled back); log unknown ones."""
    if refused.token is None:
        logger.warning("unknown deployment token from %s", address or "?")
        return
    audit_record(organization=refused.token.organization, actor=None, actor_label=refused.token.label_for_audit,
                 action="deployment_token.refused", target_type="deployment_token",
                 target_uuid=refused.token.uuid,
                 detail={"code": refused.code, "email": refused.email, "address": address})
