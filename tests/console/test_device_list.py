"""The device list: search, sort, filter, server-side pages, htmx partial, CSV, bulk deauthorize."""
import csv
import io
from datetime import timedelta

import pytest
from django.test import Client

from accounts.models import AuditEvent, Device
from tests.conftest import PASSWORD
from tests.console.fleet_data import device_with_backups


def _browser(user):
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


def _names(response) -> list[str]:
    import re

    return re.findall(r'<td><a href="/devices/[0-9a-f-]+/">([^<]+)</a></td>', response.content.decode())


@pytest.fixture
def fleet(alice, bob, mallory):
    device_with_backups(alice, "alpha", last_backup_ago=timedelta(hours=1), stored=300, os_name="macOS 14")
    device_with_backups(bob, "bravo", last_backup_ago=timedelta(days=2), stored=100, os_name="Windows 11")
    device_with_backups(alice, "charlie", last_backup_ago=None, stored=200, os_name="Ubuntu 24.04")
    device_with_backups(mallory, "mallory-box", last_backup_ago=timedelta(hours=1))


def test_it_searches_name_user_email_and_os(fleet, alice):
    client = _browser(alice)
    assert _names(client.get("/devices/", {"q": "brav"})) == ["bravo"]
    assert _names(client.get("/devices/", {"q": "bob@"})) == ["bravo"]
    assert _names(client.get("/devices/", {"q": "ubuntu"})) == ["charlie"]
    assert _names(client.get("/devices/", {"q": "mallory"})) == []


def test_it_sorts_by_each_column_both_ways(fleet, alice):
    client = _browser(alice)
    assert _names(client.get("/devices/")) == ["alpha", "bravo", "charlie"]
    assert _names(client.get("/devices/", {"sort": "name", "dir": "desc"})) == ["charlie", "bravo", "alpha"]
    assert _names(client.get("/devices/", {"sort": "user"})) == ["alpha", "charlie", "bravo"]
    assert _names(client.get("/devices/", {"sort": "size"})) == ["bravo", "charlie", "alpha"]
    assert _names(client.get("/devices/", {"sort": "size", "dir": "desc"})) == ["alpha", "charlie", "bravo"]
    assert _names(client.get("/devices/", {"sort": "last_backup"})) == ["charlie", "bravo", "alpha"]
    assert _names(client.get("/devices/", {"sort": "last_backup", "dir": "desc"})) == ["alpha", "bravo", "charlie"]
    assert _names(client.get("/devices/", {"sort": "last_seen"}))  # every device has been seen


def test_it_filters_by_health_and_authorization(fleet, alice):
    client = _browser(alice)
    assert _names(client.get("/devices/", {"health": "recent"})) == ["alpha"]
    assert _names(client.get("/devices/", {"health": "days"})) == ["bravo"]
    assert _names(client.get("/devices/", {"health": "never"})) == ["charlie"]
    Device.objects.filter(name="bravo").update(authorized=False)
    assert _names(client.get("/devices/", {"authorized": "no"})) == ["bravo"]
    assert _names(client.get("/devices/", {"authorized": "yes"})) == ["alpha", "charlie"]


def test_bad_query_parameters_are_a_400_not_a_500(fleet, alice):
    client = _browser(alice)
    for params in ({"sort": "password"}, {"page": "x"}, {"health": "great"}, {"q": "x" * 500}):
        response = client.get("/devices/", params)
        assert response.status_code == 400 and response.json()["code"] == "invalid", params


def test_a_plain_user_sees_only_their_own_devices(fleet, bob):
    assert _names(_browser(bob).get("/devices/")) == ["bravo"]
    assert b'name="devices"' not in _browser(bob).get("/devices/").content, "no bulk actions for users"


def test_htmx_requests_get_only_the_table(fleet, alice):
    response = _browser(alice).get("/devices/", {"q": "alp"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "<html" not in html and 'id="bulk-form"' in html and _names(response) == ["alpha"]
    full = _browser(alice).get("/devices/").content.decode()
    assert 'hx-target="#device-table"' in full and "<html" in full


def test_pages_are_server_side_and_the_list_runs_a_bounded_number_of_queries(alice, bob,
                                                                            django_assert_max_num_queries):
    for index in range(120):
        device_with_backups(bob if index % 2 else alice, f"box-{index:03d}", last_backup_ago=timedelta(hours=index))
    client = _browser(alice)
    with django_assert_max_num_queries(6):
        first = client.get("/devices/", {"sort": "size", "dir": "desc"})
    assert len(_names(first)) == 50 and "1–50 of 120" in first.content.decode()
    with django_assert_max_num_queries(6):
        last = client.get("/devices/", {"page": 3})
    assert _names(last) == [f"box-{index:03d}" for index in range(100, 120)]
    assert _names(client.get("/devices/", {"page": 99})) == _names(last), "past the end: the last page"


def test_csv_export_has_the_filtered_list_and_defuses_formulas(fleet, alice, bob):
    device_with_backups(bob, "=HYPERLINK(\"http://evil\")", last_backup_ago=timedelta(days=2))
    response = _browser(alice).get("/devices/export.csv", {"health": "days", "sort": "name"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["uuid", "name", "user"]
    assert [row[1] for row in rows[1:]] == ["'=HYPERLINK(\"http://evil\")", "bravo"]
    assert all(row[8] == "days" for row in rows[1:]) and rows[2][9] == "100"


def test_bulk_deauthorize_is_for_admins_of_the_org_and_audited(fleet, alice, bob, mallory):
    ids = [str(device.uuid) for device in Device.objects.filter(name__in=["alpha", "bravo", "mallory-box"])]
    assert _browser(bob).post("/devices/deauthorize", {"devices": ids}).status_code == 403
    response = _browser(alice).post("/devices/deauthorize", {"devices": ids, "health": "recent"})
    assert response.status_code == 302 and response["Location"] == "/devices/?health=recent&sort=name&dir=asc"
    assert set(Device.objects.filter(authorized=False).values_list("name", flat=True)) == {"alpha", "bravo"}
    assert Device.objects.get(name="mallory-box").authorized, "another org's device is untouched"
    assert AuditEvent.objects.filter(action="device.deauthorize", actor=alice).count() == 2
    revoked = Device.objects.get(name="alpha").tokens.filter(revoked_at__isnull=True)
    assert not revoked.exists()


def test_bulk_deauthorize_needs_csrf_and_valid_ids(fleet, alice):
    strict = Client(enforce_csrf_checks=True)
    strict.login(username=alice.email, password=PASSWORD)
    alpha = Device.objects.get(name="alpha")
    assert strict.post("/devices/deauthorize", {"devices": [str(alpha.uuid)]}).status_code == 403
    assert Device.objects.get(name="alpha").authorized
    response = _browser(alice).post("/devices/deauthorize", {"devices": ["not-a-uuid"]})
    assert response.status_code == 400 and response.json()["code"] == "invalid"
