"""The signed-in person's own account: password, two-factor authentication, and (administrators)
the organization's requirement of it."""
import io

import django_otp
import qrcode
import qrcode.image.svg
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe

from accounts.mfa import (
    org_require_admin_mfa_set,
    totp_device_begin,
    totp_device_confirm,
    totp_device_confirmed,
    totp_device_disable,
    totp_device_pending,
)
from accounts.network import client_address
from accounts.people import password_change
from accounts.services import AuthenticationRefused, AuthenticationThrottled, PermissionRefused
from console.forms import RequireAdminMfaForm, TotpCodeForm
from console.mfa import SIGNIN_SESSION_KEY
from console.views.auth import throttled_message
from console.views.common import require_admin


def _code_error(form, error) -> int:
    if isinstance(error, AuthenticationThrottled):
        form.add_error(None, throttled_message(error.retry_after))
        return 429
    form.add_error("code" if isinstance(error, AuthenticationRefused) else None, str(error))
    return 400


@login_required
def account(request):
    user = request.user
    password_form = PasswordChangeForm(user)
    disable_form = TotpCodeForm(auto_id="disable_%s")
    mfa_form = RequireAdminMfaForm(initial={"require_admin_mfa": user.organization.require_admin_mfa})
    status, action = 200, request.POST.get("action")
    if request.method == "POST" and action == "password" and user.has_usable_password():
        password_form = PasswordChangeForm(user, request.POST)
        if password_form.is_valid():
            password_change(user=user, new_password=password_form.cleaned_data["new_password1"])
            update_session_auth_hash(request, user)  # this session stays signed in; others end
            messages.success(request, "Your password was changed. Other sessions were signed out.")
            return redirect("console:account")
        status = 400
    elif request.method == "POST" and action == "mfa-disable":
        disable_form = TotpCodeForm(request.POST, auto_id="disable_%s")
        if disable_form.is_valid():
            try:
                totp_device_disable(user=user, code=disable_form.cleaned_data["code"], address=client_address(request))
            except (AuthenticationRefused, AuthenticationThrottled, PermissionRefused) as error:
                status = _code_error(disable_form, error)
            else:
                request.session[SIGNIN_SESSION_KEY] = "password"
                messages.success(request, "Two-factor authentication is off.")
                return redirect("console:account")
        else:
            status = 400
    elif request.method == "POST" and action == "require-admin-mfa":
        require_admin(user)
        mfa_form = RequireAdminMfaForm(request.POST)
        if mfa_form.is_valid():
            required = mfa_form.cleaned_data["require_admin_mfa"]
            org_require_admin_mfa_set(organization=user.organization, required=required, actor=user)
            messages.success(request, "Administrators must now use two-factor authentication." if required
                             else "Two-factor authentication is now optional for administrators.")
            return redirect("console:account")
        status = 400
    elif request.method == "POST":
        status = 400
    return render(request, "console/account.html", {
        "password_form": password_form, "disable_form": disable_form, "mfa_form": mfa_form,
        "device": totp_device_confirmed(user), "sso_only": not user.has_usable_password(),
        "signin": request.session.get(SIGNIN_SESSION_KEY, "password"),
    }, status=status)


def _qr_svg(url: str) -> str:
    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode()


@login_required
def account_mfa(request):
    """Setting up an authenticator app: a new secret (shown with its QR code), then a code confirms it."""
    user = request.user
    if not user.has_usable_password():
        messages.info(request, "You sign in through single sign-on: your identity provider asks for the second factor.")
        return redirect("console:account")
    form, status, action = TotpCodeForm(), 200, request.POST.get("action")
    if request.method == "POST" and action == "begin":
        try:
            totp_device_begin(user=user)
        except PermissionRefused as refused:
            messages.error(request, str(refused))
            return redirect("console:account")
        return redirect("console:account-mfa")
    device = totp_device_pending(user)
    if request.method == "POST" and action == "confirm":
        form = TotpCodeForm(request.POST)
        if form.is_valid():
            try:
                confirmed = totp_device_confirm(user=user, code=form.cleaned_data["code"],
                                                address=client_address(request))
            except (AuthenticationRefused, AuthenticationThrottled) as error:
                status = _code_error(form, error)
            else:
                django_otp.login(request, confirmed)  # this session proved the code: it is verified
                request.session[SIGNIN_SESSION_KEY] = "password+totp"
                messages.success(request, "Two-factor authentication is on: sign-ins now ask for a code.")
                return redirect("console:account")
        else:
            status = 400
    elif request.method == "POST":
        status = 400
    if device is None:
        return redirect("console:account") if request.method == "GET" else render(
            request, "console/account_mfa.html", {"form": form, "device": None}, status=status)
    secret = device.config_url.split("secret=", 1)[1].split("&", 1)[0]
    return render(request, "console/account_mfa.html", {
        "form": form, "device": device, "secret": secret,
        "qr": mark_safe(_qr_svg(device.config_url)),  # generated here from our own URL, no user input
    }, status=status)
