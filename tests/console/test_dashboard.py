"""The dashboard: devices by backup health, storage, running backups, charts, restores, health."""
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Role
from archives.models import BackupRun, RestoreJob
from tests.conftest import PASSWORD, _user
from tests.console.fleet_data import device_with_backups


def _browser(user):
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


def _tile(html: str, bucket: str) -> int:
    match = re.search(rf'data-health="{bucket}">\s*<span class="big">(\d+)</span>', html)
    assert match, f"no tile for {bucket}"
    return int(match.group(1))


@pytest.fixture
def fleet(alice, bob, mallory):
    """Alice's org: one device per health bucket (Bob's is the stale one); Mallory's org: two recent."""
    device_with_backups(alice, "fresh-box", last_backup_ago=timedelta(hours=2), stored=5000)
    device_with_backups(alice, "days-box", last_backup_ago=timedelta(days=2), stored=3000)
    device_with_backups(bob, "stale-box", last_backup_ago=timedelta(days=10), stored=7000)
    device_with_backups(alice, "never-box", last_backup_ago=None, stored=0)
    device_with_backups(mallory, "m1", last_backup_ago=timedelta(hours=1), stored=10**9)
    device_with_backups(mallory, "m2", last_backup_ago=timedelta(hours=1))


def test_it_counts_devices_by_backup_health_with_links_to_the_filtered_list(fleet, alice):
    html = _browser(alice).get("/").content.decode()
    assert [_tile(html, bucket) for bucket in ("recent", "days", "stale", "never")] == [1, 1, 1, 1]
    for bucket in ("recent", "days", "stale", "never"):
        assert f'href="/devices/?health={bucket}"' in html


def test_it_shows_org_storage_and_top_users_of_its_own_org_only(fleet, alice):
    html = _browser(alice).get("/").content.decode()
    assert "14.6\xa0KB" in html  # 15,000 bytes of Alice's org; Mallory's gigabyte is not counted
    top = re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">([^<]+)</td></tr>", html)
    assert top == [("alice@a.example", "7.8\xa0KB"), ("bob@a.example", "6.8\xa0KB")], "largest first"
    assert "mallory@b.example" not in html


def test_a_plain_user_sees_only_their_own_devices_counted(fleet, bob):
    html = _browser(bob).get("/").content.decode()
    assert [_tile(html, bucket) for bucket in ("recent", "days", "stale", "never")] == [0, 0, 1, 0]
    assert "alice@a.example" not in html
    assert "data-keystore" not in html, "keystore health is for the organization's staff"


def test_another_orgs_admin_sees_none_of_alices_devices(fleet, mallory):
    html = _browser(mallory).get("/").content.decode()
    assert [_tile(html, bucket) for bucket in ("recent", "days", "stale", "never")] == [2, 0, 0, 0]
    assert "fresh-box" not in html and "alice@a.example" not in html


def test_running_backups_and_restores_in_progress_are_listed(alice, bob):
    device = device_with_backups(bob, "busy-box", last_backup_ago=timedelta(days=1), extra_runs=("running",))
    archive = device.archives.get()
    RestoreJob.objects.create(organization=alice.organization, archive=archive, requested_by=alice,
                              at=timezone.now(), status=RestoreJob.Status.RUNNING, files_total=10, files_done=4)
    html = _browser(alice).get("/").content.decode()
    assert "Backups running now <span class=\"muted\">(1)</span>" in html and "busy-box" in html
    assert "4 / 10 files" in html


def test_the_charts_are_server_side_svg_with_thirty_days(fleet, alice):
    html = _browser(alice).get("/").content.decode()
    assert html.count("<svg") == 2 and "<script src=\"http" not in html
    assert html.count('<rect class="bar"') == 60
    assert re.search(r"<title>[A-Z][a-z]{2} \d+: 1</title>", html), "yesterday's and today's backups are counted"


def test_empty_states_say_what_to_do_next(alice):
    html = _browser(alice).get("/").content.decode()
    assert "Enroll a device" in html and "No backup is running" in html and "No restore is queued" in html
    assert "arrive with maintenance and file activity" in html


def test_keystore_and_worker_health_are_shown_to_staff(alice, vault):
    html = _browser(alice).get("/").content.decode()
    assert 'data-keystore="unsealed"' in html
    assert "Maintenance worker" in html and "not seen" in html


def test_the_dashboard_runs_a_bounded_number_of_queries(alice, bob, django_assert_max_num_queries):
    for index in range(40):
        device_with_backups(bob if index % 2 else alice, f"box-{index}", last_backup_ago=timedelta(hours=index * 3),
                            extra_runs=("running",) if index % 5 == 0 else ())
    client = _browser(alice)
    client.get("/")  # the keystore status is cached after the first view
    with django_assert_max_num_queries(14):  # + the file-activity chart by vector
        response = client.get("/")
    assert response.status_code == 200


def test_security_analysts_see_the_fleet_but_no_restores(alice, bob, org_a):
    analyst = _user(org_a, "sam@a.example", Role.SECURITY_ANALYST)
    device = device_with_backups(bob, "bob-box", last_backup_ago=timedelta(hours=1), extra_runs=())
    RestoreJob.objects.create(organization=org_a, archive=device.archives.get(), requested_by=alice,
                              at=timezone.now(), status=RestoreJob.Status.QUEUED)
    html = _browser(analyst).get("/").content.decode()
    assert _tile(html, "recent") == 1
    assert "Restores in progress" not in html  # no restore entry point at all for analysts (issue 9 item 7)
    assert BackupRun.objects.count() == 1
