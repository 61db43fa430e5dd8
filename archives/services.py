"""Writes of the archives app."""
from django.db import transaction

from accounts.models import Device, User
from accounts.services import device_create, device_token_issue, device_touch
from archives.models import Archive


class DeviceDeauthorized(Exception):
    """The device was deauthorized; only an administrator can bring it back."""


def archive_for_device_ensure(*, device: Device) -> Archive:
    archive, _ = Archive.objects.get_or_create(
        user=device.owner, device=device, defaults={"organization": device.organization}
    )
    return archive


@transaction.atomic
def device_enroll(*, user: User, device_name: str, os_name: str, agent_version: str,
                  device_uuid=None) -> tuple[Device, Archive, str]:
    """Enroll a device of `user` (or re-enroll one of theirs) and issue it a token.

    Re-enrolling a deauthorized device is refused: a stolen laptop with its owner's password must
    not come back; an administrator reauthorizes it first.
    """
    device = None
    if device_uuid is not None:
        device = Device.objects.select_for_update().filter(uuid=device_uuid, owner=user).first()
    if device is not None and not device.authorized:
        raise DeviceDeauthorized("This device was deauthorized; ask an administrator to reauthorize it")
    if device is None:
        device = device_create(owner=user, name=device_name, os_name=os_name, agent_version=agent_version)
    else:
        device_touch(device=device, agent_version=agent_version)
    archive = archive_for_device_ensure(device=device)
    return device, archive, device_token_issue(device=device)
