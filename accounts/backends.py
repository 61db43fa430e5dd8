"""Password sign-in for the console and /admin/ through the one throttled check."""
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from accounts.network import client_address
from accounts.services import AuthenticationRefused, credentials_check


class ThrottledModelBackend(ModelBackend):
    """Django's `authenticate(request, username=, password=)` ends here: rate-limited per address
    and per account, failures audited (accounts.services.credentials_check). A throttled attempt
    raises AuthenticationThrottled; the login forms turn it into a message."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None or password is None:
            return None
        try:
            user = credentials_check(email=username, password=password, address=client_address(request),
                                     via=request.path if request is not None else "authenticate")
        except AuthenticationRefused:
            return None
        return user if self.user_can_authenticate(user) else None

    def get_user(self, user_id):
        """The session's user with its organization in one query: every console page shows the
        organization, and the two-factor guard reads its settings."""
        user = get_user_model()._default_manager.select_related("organization").filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None
