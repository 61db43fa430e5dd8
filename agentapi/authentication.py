"""Device-token authentication for agents: `Authorization: Bearer hvd_...`."""
from dataclasses import dataclass

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from accounts.models import Device, User
from accounts.services import device_token_lookup, device_touch


class DeviceDeauthorizedError(exceptions.AuthenticationFailed):
    default_detail = "This device was deauthorized by an administrator; its local key must be removed."
    default_code = "device_deauthorized"


@dataclass
class DevicePrincipal:
    """What `request.user` is for an agent call: the device and the user who owns it."""

    device: Device

    is_authenticated = True
    is_anonymous = False

    @property
    def user(self) -> User:
        return self.device.owner

    def __str__(self) -> str:
        return f"device {self.device.uuid}"


class DeviceTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header", code="invalid_token")
        token = device_token_lookup(parts[1].decode("latin-1"))
        if token is None:
            raise exceptions.AuthenticationFailed("Unknown device token", code="invalid_token")
        device = token.device
        if token.revoked_at is not None or not device.authorized:
            raise DeviceDeauthorizedError()
        if not device.owner.is_active:
            raise exceptions.AuthenticationFailed("The device's user is deactivated", code="user_inactive")
        device_touch(device=device)
        return DevicePrincipal(device), token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="haven-agent"'
