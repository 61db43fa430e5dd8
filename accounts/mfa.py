"""TOTP second factor for password sign-ins (django-otp's TOTPDevice), and sign-in audit rows.

One confirmed device per person. A code is checked under a row lock, so two requests cannot both
spend the same code (TOTPDevice.verify_token reads and writes `last_t` without one). Wrong codes
are counted like wrong passwords (accounts/throttle.py) on top of django-otp's own exponential
back-off per device, and audited. Only someone who already passed the password step reaches a
code check, so the per-account limit cannot be triggered by someone who merely knows an email.
"""
from django.conf import settings
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Organization, User
from accounts.services import AuthenticationRefused, AuthenticationThrottled, PermissionRefused, audit_record
from accounts.throttle import counter_bump, counter_unbump

TOTP_DEVICE_NAME = "Authenticator app"


def totp_device_confirmed(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def totp_device_pending(user: User) -> TOTPDevice | None:
    """The device being enrolled: its secret is shown until a code confirms it."""
    return TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()


def _code_check(*, user: User, device: TOTPDevice, code: str, address: str, via: str, action: str) -> bool:
    """Check one code against the locked device; count, audit and throttle the wrong ones."""
    window = settings.HAVEN_AUTH_WINDOW
    maximum = settings.HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS
    account_key, address_key = f"totp:{user.uuid}", f"address:{address}"
    # Counted before the check (parallel guesses cannot slip past together), taken back on success.
    at_account = counter_bump(key=account_key, window=window)
    at_address = counter_bump(key=address_key, window=window)
    if at_account > maximum or at_address > settings.HAVEN_AUTH_MAX_ATTEMPTS_PER_ADDRESS:
        if at_account == maximum + 1 or at_address == settings.HAVEN_AUTH_MAX_ATTEMPTS_PER_ADDRESS + 1:
            _audit_refusal(user=user, action="login.throttle", address=address, via=via, detail={"limit": "totp"})
        raise AuthenticationThrottled(int(window.total_seconds()))
    with transaction.atomic():
        locked = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        allowed, _ = locked.verify_is_allowed()
        verified = allowed and locked.verify_token(code.replace(" ", ""))
    if not allowed:  # django-otp's back-off after successive failures: the code was not even tried
        _audit_refusal(user=user, action=action, address=address, via=via, detail={"reason": "backoff"})
        raise AuthenticationThrottled(max(1, 2 ** max(0, locked.throttling_failure_count - 1)))
    if not verified:
        _audit_refusal(user=user, action=action, address=address, via=via)
        return False
    counter_unbump(key=account_key)
    counter_unbump(key=address_key)
    return True


def _audit_refusal(*, user: User, action: str, address: str, via: str, detail: dict | None = None) -> None:
    audit_record(organization=user.organization, actor=None, actor_label=f"sign-in from {address or '?'}",
                 action=action, target_type="user", target_uuid=user.uuid,
                 detail={"address": address, "via": via, **(detail or {})})


def totp_login_check(*, user: User, code: str, address: str, via: str) -> TOTPDevice:
    """The second sign-in step: the user's confirmed device if `code` is right, else a refusal."""
    device = totp_device_confirmed(user)
    if device is None or not user.is_active:
        raise AuthenticationRefused("Wrong code")
    if not _code_check(user=user, device=device, code=code, address=address, via=via, action="login.mfa_failure"):
        raise AuthenticationRefused("Wrong code")
    return device


@transaction.atomic
def totp_device_begin(*, user: User) -> TOTPDevice:
    """A fresh unconfirmed device (a new secret); an earlier unconfirmed one is discarded."""
    if totp_device_confirmed(user) is not None:
        raise PermissionRefused("Two-factor authentication is already on; turn it off first to change the app")
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)


def totp_device_confirm(*, user: User, code: str, address: str) -> TOTPDevice:
    """Turn the pending device on once the app shows a right code; audited."""
    device = totp_device_pending(user)
    if device is None:
        raise AuthenticationRefused("Start the set-up again")
    if not _code_check(user=user, device=device, code=code, address=address, via="account", action="mfa.enroll_failure"):
        raise AuthenticationRefused("Wrong code")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=True).delete()
        TOTPDevice.objects.filter(pk=device.pk).update(confirmed=True)
        device.confirmed = True
        audit_record(organization=user.organization, actor=user, action="mfa.enroll", target_type="user",
                     target_uuid=user.uuid, detail={"method": "totp"})
    return device


def totp_device_disable(*, user: User, code: str, address: str) -> None:
    """Turn two-factor authentication off; needs a right code, and is refused to an administrator
    whose organization requires it."""
    device = totp_device_confirmed(user)
    if device is None:
        return
    if user.is_org_admin and user.organization.require_admin_mfa:
        raise PermissionRefused("Your organization requires two-factor authentication for administrators")
    if not _code_check(user=user, device=device, code=code, address=address, via="account", action="mfa.disable_failure"):
        raise AuthenticationRefused("Wrong code")
    TOTPDevice.objects.filter(user=user).delete()
    audit_record(organization=user.organization, actor=user, action="mfa.disable", target_type="user",
                 target_uuid=user.uuid, detail={"method": "totp"})


def totp_device_reset(*, user: User, actor: User | None, actor_label: str | None = None) -> bool:
    """An administrator (or operator) removes a user's device: a lost phone. Audited."""
    if actor is not None and (actor.organization_id != user.organization_id or not actor.is_org_admin):
        raise PermissionRefused("Only an administrator of this organization may do that")
    removed, _ = TOTPDevice.objects.filter(user=user).delete()
    if removed:
        audit_record(organization=user.organization, actor=actor, actor_label=actor_label, action="mfa.reset",
                     target_type="user", target_uuid=user.uuid)
    return bool(removed)


def login_success_record(*, user: User, method: str, address: str, via: str) -> None:
    audit_record(organization=user.organization, actor=user, action="login.success", target_type="user",
                 target_uuid=user.uuid, detail={"method": method, "address": address, "via": via})


@transaction.atomic
def org_require_admin_mfa_set(*, organization: Organization, required: bool, actor: User | None,
                              actor_label: str | None = None) -> Organization:
    """Require (or stop requiring) a TOTP device of the organization's administrators."""
    if actor is not None and (actor.organization_id != organization.pk or not actor.is_org_admin):
        raise PermissionRefused("Only an administrator of this organization may do that")
    organization = Organization.objects.select_for_update().get(pk=organization.pk)
    if organization.require_admin_mfa != required:
        organization.require_admin_mfa = required
        organization.save(update_fields=["require_admin_mfa"])
        audit_record(organization=organization, actor=actor, actor_label=actor_label,
                     action="org.require_admin_mfa", target_type="organization", target_uuid=organization.uuid,
                     detail={"required": required})
    return organization
