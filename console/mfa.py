"""Two-factor sign-in state of a session, and the guard every request passes.

At sign-in (any: console, /admin/, a test client) the session is marked with how it signed in:
`sso` (the identity provider does MFA), `password+totp`, `password` (no device then), or
`unverified` (a password alone for a person who has a TOTP device — /admin/'s form, say). The
guard then needs no query for the common case: unverified sessions are signed out, and an
administrator of an organization that requires MFA is sent to enroll before reaching anything else.
"""
from django.contrib import messages
from django.contrib.auth import BACKEND_SESSION_KEY, logout
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.shortcuts import redirect
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from accounts.mfa import login_success_record, totp_device_confirmed
from accounts.network import client_address

SIGNIN_SESSION_KEY = "haven_signin"
SSO_BACKENDS = {"console.saml.backends.OrganizationSamlBackend"}
# Paths an administrator who must enroll can still reach; the agent API, SCIM and SAML have their
# own credentials and are never redirected.
_UNGUARDED_PREFIXES = ("/api/", "/scim/", "/saml/", "/static/")


@receiver(user_logged_in, dispatch_uid="haven-signin-state")
def signin_state_record(sender, request, user, **kwargs) -> None:
    if request is None or not hasattr(request, "session"):
        return
    if request.session.get(BACKEND_SESSION_KEY) in SSO_BACKENDS:
        state = "sso"
    elif getattr(user, "otp_device", None) is not None:  # the console's second step set it
        state = "password+totp"
    elif totp_device_confirmed(user) is not None:
        state = "unverified"
    else:
        state = "password"
    request.session[SIGNIN_SESSION_KEY] = state
    if state != "unverified":
        login_success_record(user=user, method=state, address=client_address(request), via=request.path)


def _guarded_response(request, url):
    return HttpResponseClientRedirect(url) if getattr(request, "htmx", False) else redirect(url)


def mfa_guard(get_response):
    def middleware(request):
        user = request.user
        if not user.is_authenticated or request.path.startswith(_UNGUARDED_PREFIXES):
            return get_response(request)
        state = request.session.get(SIGNIN_SESSION_KEY, "password")
        if state == "sso" or user.is_verified():
            return get_response(request)
        if state == "unverified":
            logout(request)
            messages.info(request, "This account uses two-factor authentication: sign in here with your code.")
            return _guarded_response(request, reverse("console:login"))
        if user.is_org_admin and user.organization.require_admin_mfa:
            if totp_device_confirmed(user) is not None:  # enrolled in another session: prove it here too
                logout(request)
                messages.info(request, "Sign in again with your authenticator code.")
                return _guarded_response(request, reverse("console:login"))
            allowed = {reverse("console:account"), reverse("console:account-mfa"), reverse("console:logout")}
            if request.path not in allowed:
                messages.warning(request, "Your organization requires two-factor authentication for "
                                          "administrators: set it up to continue.")
                return _guarded_response(request, reverse("console:account"))
        return get_response(request)

    return middleware
