"""Login forms of the console and the Django admin: both check passwords through the throttle."""
from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm

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
    pass
