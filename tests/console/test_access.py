"""The console: login, roles, and tenant isolation through the access helpers."""
import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Device
from accounts.selectors import device_for_user, devices_visible_to, user_for_user, users_visible_to
from archives.selectors import archive_for_user, archives_visible_to
from tests.conftest import PASSWORD


@pytest.fixture
def browser_for():
    def _browser(user):
        client = Client()
        assert client.login(username=user.email, password=PASSWORD)
        return client

    return _browser


def test_the_login_page_renders_and_the_dashboard_needs_login(client, db):
    assert client.get("/login/").status_code == 200
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_logging_in_with_email_reaches_the_dashboard(client, alice):
    response = client.post("/login/", {"username": alice.email, "password": PASSWORD}, follow=True)
    assert response.status_code == 200 and b"Dashboard" in response.content and b"Org A" in response.content


def test_an_admin_deauthorizes_a_device_in_the_console(browser_for, enrolled, alice, bob):
    device = Device.objects.get(uuid=enrolled(bob).enrollment["device_id"])
    response = browser_for(alice).post(reverse("console:device-authorization", args=[device.uuid, "deauthorize"]))
    assert response.status_code == 302
    device.refresh_from_db()
    assert not device.authorized
    assert device.tokens.filter(revoked_at__isnull=True).count() == 0


def test_a_plain_user_cannot_deauthorize_even_their_own_device(browser_for, enrolled, bob):
    device = Device.objects.get(uuid=enrolled(bob).enrollment["device_id"])
    response = browser_for(bob).post(reverse("console:device-authorization", args=[device.uuid, "deauthorize"]))
    assert response.status_code == 403
    device.refresh_from_db()
    assert device.authorized


def test_another_orgs_admin_gets_404_for_the_device(browser_for, enrolled, alice, mallory):
    device = Device.objects.get(uuid=enrolled(alice).enrollment["device_id"])
    response = browser_for(mallory).post(reverse("console:device-authorization", args=[device.uuid, "deauthorize"]))
    assert response.status_code == 404
    device.refresh_from_db()
    assert device.authorized


def test_the_device_list_is_scoped(browser_for, enrolled, alice, bob, mallory):
    enrolled(alice, "alice-box")
    enrolled(bob, "bob-box")
    enrolled(mallory, "mallory-box")
    admin_page = browser_for(alice).get("/devices/").content
    assert b"alice-box" in admin_page and b"bob-box" in admin_page and b"mallory-box" not in admin_page
    bob_page = browser_for(bob).get("/devices/").content
    assert b"bob-box" in bob_page and b"alice-box" not in bob_page


def test_access_helpers_answer_404_for_other_orgs_and_other_users(enrolled, alice, bob, mallory):
    from django.http import Http404

    alice_device = Device.objects.get(uuid=enrolled(alice).enrollment["device_id"])
    alice_archive = alice_device.archives.get()
    assert device_for_user(alice, alice_device.uuid) == alice_device
    assert archive_for_user(alice, alice_archive.uuid) == alice_archive
    for outsider in (bob, mallory):
        with pytest.raises(Http404):
            device_for_user(outsider, alice_device.uuid)
        with pytest.raises(Http404):
            archive_for_user(outsider, alice_archive.uuid)
    with pytest.raises(Http404):
        user_for_user(mallory, alice.uuid)
    with pytest.raises(Http404):
        user_for_user(bob, alice.uuid)
    assert list(users_visible_to(bob)) == [bob]
    assert set(users_visible_to(alice)) == {alice, bob}
    assert not devices_visible_to(mallory).filter(pk=alice_device.pk).exists()
    assert not archives_visible_to(mallory).exists() or alice_archive not in archives_visible_to(mallory)


@pytest.mark.parametrize("role,sees_all_devices,sees_all_archives", [
    ("org_admin", True, True), ("restore_operator", True, True),
    ("security_analyst", True, False), ("user", False, False),
])
def test_roles_decide_what_is_visible_inside_the_org(enrolled, alice, org_a, role, sees_all_devices, sees_all_archives):
    from accounts.services import user_ensure

    enrolled(alice)
    carol = user_ensure(organization=org_a, email=f"carol-{role}@a.example", role=role, password=PASSWORD).user
    assert devices_visible_to(carol).filter(owner=alice).exists() is sees_all_devices
    assert archives_visible_to(carol).filter(user=alice).exists() is sees_all_archives


def test_the_device_list_shows_the_last_complete_backup(browser_for, enrolled, alice):
    from archives.models import Archive, BackupRun
    from archives.services import backup_run_finish, backup_run_start

    enrolled(alice, "backed-up-box")
    archive = Archive.objects.get(device__name="backed-up-box")
    assert b"none yet" in browser_for(alice).get("/devices/").content
    backup_run_finish(run=backup_run_start(archive=archive), status=BackupRun.Status.FAILED, counters={}, errors=["x"])
    assert b"none yet" in browser_for(alice).get("/devices/").content
    backup_run_finish(run=backup_run_start(archive=archive), status=BackupRun.Status.COMPLETED, counters={}, errors=[])
    assert b"none yet" not in browser_for(alice).get("/devices/").content


def test_key_access_history_is_scoped(browser_for, alice, bob, mallory):
    from keystore.services import key_access_record

    for subject in (alice, bob, mallory):
        key_access_record(subject=subject, purpose="escrow", outcome="succeeded", actor=subject,
                          actor_label=f"device of {subject.email}")
    admin_page = browser_for(alice).get("/keys/history/").content.decode()
    assert "device of alice@a.example" in admin_page and "device of bob@a.example" in admin_page
    assert "mallory" not in admin_page
    own_page = browser_for(bob).get("/keys/history/").content.decode()
    assert "device of bob@a.example" in own_page and "device of alice@a.example" not in own_page


def test_every_access_helper_gives_one_404_for_malformed_absent_and_not_yours(enrolled, alice, mallory):
    import uuid

    from django.http import Http404

    from accounts.models import Group
    from accounts.selectors import group_for_user, scim_token_for_user
    from accounts.services import scim_token_issue

    device = Device.objects.get(uuid=enrolled(alice).enrollment["device_id"])
    group = Group.objects.create(organization=alice.organization, name="Staff")
    scim_token_issue(organization=alice.organization)
    token = alice.organization.scim_tokens.get()
    for helper, row, kind in [(user_for_user, alice, "user"), (device_for_user, device, "device"),
                              (archive_for_user, device.archives.get(), "archive"), (group_for_user, group, "group"),
                              (scim_token_for_user, token, "token")]:
        assert helper(alice, row.uuid) == row
        answers = []
        for actor, value in [(alice, "not-a-uuid"), (alice, uuid.uuid4()), (mallory, row.uuid)]:
            with pytest.raises(Http404) as refused:
                helper(actor, value)
            answers.append(str(refused.value))
        assert answers == [f"No such {kind}"] * 3, helper.__name__


def test_the_device_helpers_of_archives_keep_their_old_name(enrolled, alice):
    from archives.selectors import archives_readable_by_device, archives_visible_to_device

    device = Device.objects.get(uuid=enrolled(alice).enrollment["device_id"])
    assert list(archives_readable_by_device(device)) == list(archives_visible_to_device(device)) == [device.archives.get()]
