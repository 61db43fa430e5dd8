"""`active: false` (PUT or PATCH) and DELETE deactivate a user and deauthorize every device at
once; nothing is deleted, and reactivation leaves the devices deauthorized."""
import pytest

from accounts.models import AuditEvent, Device, DeviceToken
from tests.scim.conftest import op, user_body


def _deactivate_by_put(scim, user):
    return scim.put(f"Users/{user.uuid}", user_body(user.email, active=False))


def _deactivate_by_patch(scim, user):
    return scim.patch(f"Users/{user.uuid}", op("replace", "active", False))


def _deactivate_by_azure_patch(scim, user):
    return scim.patch(f"Users/{user.uuid}", op("Replace", "active", "False"))  # Azure AD's string boolean


def _deactivate_by_pathless_patch(scim, user):
    return scim.patch(f"Users/{user.uuid}", op("replace", value={"active": False}))


def _delete(scim, user):
    return scim.delete(f"Users/{user.uuid}")


@pytest.mark.parametrize("deactivate", [_deactivate_by_put, _deactivate_by_patch, _deactivate_by_azure_patch,
                                        _deactivate_by_pathless_patch, _delete])
def test_deactivation_deauthorizes_every_device_and_keeps_the_user(bob, enrolled, scim_a, deactivate):
    laptop, desktop = enrolled(bob, "laptop"), enrolled(bob, "desktop")
    assert laptop.get("/api/v1/device").status_code == 200

    response = deactivate(scim_a, bob)

    assert response.status_code in (200, 204), response.content
    bob.refresh_from_db()
    assert bob.is_active is False
    assert not Device.objects.filter(owner=bob, authorized=True).exists()
    assert Device.objects.filter(owner=bob).count() == 2  # devices, keys and archives stay
    assert not DeviceToken.objects.filter(device__owner=bob, revoked_at__isnull=True).exists()
    assert laptop.get("/api/v1/device").status_code == 401
    assert desktop.get("/api/v1/device").status_code == 401
    assert AuditEvent.objects.filter(action="user.deactivate", target_uuid=bob.uuid).count() == 1
    assert AuditEvent.objects.filter(action="device.deauthorize").count() == 2


def test_reactivation_leaves_devices_deauthorized(bob, enrolled, scim_a):
    laptop = enrolled(bob, "laptop")
    _deactivate_by_patch(scim_a, bob)

    response = scim_a.patch(f"Users/{bob.uuid}", op("replace", "active", True))

    assert response.status_code == 200
    assert response.json()["active"] is True
    bob.refresh_from_db()
    assert bob.is_active
    assert not Device.objects.get(owner=bob).authorized
    assert laptop.get("/api/v1/device").status_code == 401
    assert AuditEvent.objects.filter(action="user.reactivate", target_uuid=bob.uuid).exists()


def test_a_user_deactivated_by_patch_is_still_listed_as_inactive(bob, scim_a):
    _deactivate_by_patch(scim_a, bob)

    response = scim_a.get("Users", filter="active eq false")

    assert [r["userName"] for r in response.json()["Resources"]] == ["bob@a.example"]
