"""SCIM deactivation puts the person on the departing-employee watch list, if (and only if) their
organization turned that on; their later file activity then raises an alert."""
import pytest

from activity.detection import detection_run
from activity.detection_settings import detection_settings_update
from activity.models import Alert, WatchedUser
from tests.activity.factory import device_of, file_events_insert
from tests.scim.conftest import op


@pytest.mark.parametrize("deactivate", [
    lambda scim, user: scim.patch(f"Users/{user.uuid}", op("replace", "active", False)),
    lambda scim, user: scim.delete(f"Users/{user.uuid}"),
], ids=["patch", "delete"])
def test_it_watches_people_the_idp_deactivates_when_enabled(org_a, alice, bob, scim_a, deactivate):
    detection_settings_update(organization=org_a, actor=alice, watch_on_scim_deactivation=True)
    laptop = device_of(bob, "bob-laptop")
    assert deactivate(scim_a, bob).status_code in (200, 204)
    entry = WatchedUser.objects.get(organization=org_a)
    assert entry.user == bob and entry.source == "scim"

    file_events_insert(device=laptop, events=[{"path": "/home/bob/clients.xlsx"}])
    detection_run(organization=org_a)
    assert Alert.objects.get().kind == "watched_user_activity"


def test_it_does_not_watch_them_by_default(org_a, bob, scim_a):
    assert scim_a.patch(f"Users/{bob.uuid}", op("replace", "active", False)).status_code == 200
    assert not WatchedUser.objects.exists()
