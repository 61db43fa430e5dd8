"""Console sign-in: the password, then — for people with an authenticator app — a TOTP code."""
import time

from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.core.exceptions import NON_FIELD_ERRORS
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from accounts.mfa import totp_device_confirmed, totp_login_check
from accounts.models import User
from accounts.network import client_address
from accounts.services import AuthenticationRefused, AuthenticationThrottled
from console.forms import EmailLoginForm, TotpCodeForm
from console.mfa import SIGNIN_SESSION_KEY

PENDING_SESSION_KEY = "haven_mfa_pending"
PENDING_SECONDS = 300  # the code must follow the password within five minutes
PASSWORD_BACKEND = "accounts.backends.ThrottledModelBackend"


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    authentication_form = EmailLoginForm
    redirect_authenticated_user = True

    def form_valid(self, form):
        user = form.get_user()
        if totp_device_confirmed(user) is None:
            return super().form_valid(form)
        # The password was right; the session is not signed in until the code is. A new session
        # key, so a session id planted before the password cannot be used for the second step.
        self.request.session.cycle_key()
        self.request.session[PENDING_SESSION_KEY] = {"user": user.pk, "at": time.time(),
                                                     "next": self.get_success_url()}
        return redirect("console:login-mfa")

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "throttled"):
            response.status_code = 429
        return response


def throttled_message(retry_after: int) -> str:
    """django-otp waits a second or two after one wrong code; Haven's own limit, minutes."""
    if retry_after < 60:
        return f"Too many wrong codes. Wait {retry_after} second(s) and try again."
    return f"Too many wrong codes. Try again in about {round(retry_after / 60)} minute(s)."


def _pending_user(request) -> tuple[User | None, str]:
    pending = request.session.get(PENDING_SESSION_KEY) or {}
    if not pending or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None, ""
    user = User.objects.filter(pk=pending.get("user"), is_active=True).select_related("organization").first()
    next_url = pending.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        next_url = reverse("console:dashboard")
    return user, next_url


def login_mfa(request):
    """Second step of a password sign-in: the code from the person's authenticator app."""
    user, next_url = _pending_user(request)
    if user is None:
        request.session.pop(PENDING_SESSION_KEY, None)
        return redirect("console:login")
    form, status = TotpCodeForm(request.POST or None), 200
    if request.method == "POST" and form.is_valid():
        try:
            device = totp_login_check(user=user, code=form.cleaned_data["code"], address=client_address(request),
                                      via=request.path)
        except AuthenticationThrottled as throttled:
            form.add_error(None, throttled_message(throttled.retry_after))
            status = 429
        except AuthenticationRefused:
            form.add_error("code", "That code is not right. Use the current code of your authenticator app.")
            status = 400
        else:
            request.session.pop(PENDING_SESSION_KEY, None)
            user.otp_device = device  # django-otp marks the session verified as it signs in
            auth_login(request, user, backend=PASSWORD_BACKEND)
            request.session[SIGNIN_SESSION_KEY] = "password+totp"
            return redirect(next_url)
    elif request.method == "POST":
        status = 400
    return render(request, "console/login_mfa.html", {"form": form, "email": user.email}, status=status)
