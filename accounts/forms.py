"""Login forms of the console and the Django admin: both check passwords through the throttle."""
from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm

from accounts.mfa import totp_device_confirmed
from accounts.services import AuthenticationThrottled


class ThrottledLoginMixin:
    """Shows a throttled sign-in as a message rather than a server error."""

    def clean(self):
        try:
            return super().clean()
        except AuthenticationThrottled as throttled:
            minutes = max(1, round(throttled.retry_after / 60))
            raise forms.ValidationError(
                f"Too many sign-in attempts. Try again in about {minutes} minute(s).", code="throttled") from None


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    def confirm_login_allowed(self, user):
        """The admin's form has no code step: people with an authenticator app sign in at the
        console (which asks for the code) and come back to /admin/ signed in."""
        super().confirm_login_allowed(user)
        if totp_device_confirmed(user) is not None:
            raise forms.ValidationError("This account uses two-factor authentication: sign in at "
                                        "/login/?next=/admin/ and come back.", code="mfa_required")
