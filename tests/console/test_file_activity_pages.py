"""The console's file-activity pages: forensic search (filters, keyset pages, streamed CSV), the
dashboard's events-by-vector panel, thresholds, watch list and SIEM export; administrators and
security analysts only, everyone else 404."""
import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.services import user_ensure
from activity.models import DetectionSettings, ExportDelivery, ExportTarget, WatchedUser
from tests.activity.factory import device_of, file_events_insert
from tests.conftest import PASSWORD


@pytest.fixture
def carol(org_a):
    return user_ensure(organization=org_a, email="carol@a.example", role="security_analyst", password=PASSWORD).user


def _login(client, user):
    assert client.login(username=user.email, password=PASSWORD)
    return client


@pytest.fixture
def events(alice, bob, mallory):
    now = timezone.now()
    laptop, bobs, evil = device_of(alice, "alice-laptop"), device_of(bob, "bob-desktop"), device_of(mallory, "m")
    file_events_insert(device=laptop, events=[
        {"path": f"/home/alice/docs/report-{i}.docx", "occurred_at": now - timedelta(minutes=i), "category": "document"}
        for i in range(120)])
    file_events_insert(device=laptop, events=[
        {"path": "/media/usb/payroll.xlsx", "vector": "removable_media", "sha256": "ab" * 32,
         "occurred_at": now - timedelta(seconds=30), "size": 4096, "category": "spreadsheet"}])
    file_events_insert(device=bobs, events=[{"path": "/home/bob/Dropbox/plan.pdf", "vector": "cloud_sync",
                                              "category": "pdf", "occurred_at": now - timedelta(hours=3)}])
    file_events_insert(device=evil, events=[{"path": "/home/mallory/payroll.xlsx", "sha256": "ab" * 32}])


def _paths(response) -> list[str]:
    return [event.path for event in response.context["rows"]]


def test_search_filters_by_every_field(client, alice, events):
    _login(client, alice)
    assert _paths(client.get("/activity/", {"vector": "removable_media"})) == ["/media/usb/payroll.xlsx"]
    assert _paths(client.get("/activity/", {"sha256": "AB" * 32})) == ["/media/usb/payroll.xlsx"]  # not Mallory's
    assert _paths(client.get("/activity/", {"user": "bob@"})) == ["/home/bob/Dropbox/plan.pdf"]
    assert _paths(client.get("/activity/", {"device": "desktop"})) == ["/home/bob/Dropbox/plan.pdf"]
    assert _paths(client.get("/activity/", {"path": "dropbox"})) == ["/home/bob/Dropbox/plan.pdf"]
    assert _paths(client.get("/activity/", {"file_name": "report-7.docx"})) == ["/home/alice/docs/report-7.docx"]
    assert _paths(client.get("/activity/", {"category": "pdf"})) == ["/home/bob/Dropbox/plan.pdf"]
    since = (timezone.now() - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M")
    until = (timezone.now() - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    assert _paths(client.get("/activity/", {"since": since, "until": until})) == ["/home/bob/Dropbox/plan.pdf"]


def test_search_pages_by_cursor_newest_first_without_gaps(client, alice, events):
    _login(client, alice)
    seen, cursor = [], ""
    while True:
        response = client.get("/activity/", {"cursor": cursor} if cursor else {})
        assert response.status_code == 200
        seen += [(e.occurred_at, e.id) for e in response.context["rows"]]
        cursor = response.context["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 122 == len(set(seen)) and seen == sorted(seen, reverse=True)


@pytest.mark.parametrize("query", [{"sha256": "xyz"}, {"path": "ab"}, {"vector": "carrier_pigeon"},
                                   {"cursor": "not-a-cursor"}, {"since": "yesterday"}])
def test_bad_filters_are_400_with_the_reason(client, alice, events, query):
    response = _login(client, alice).get("/activity/", query)
    assert response.status_code == 400 and response.context["form"].errors


def test_csv_export_is_streamed_and_filtered(client, alice, events):
    response = _login(client, alice).get("/activity/events.csv", {"path": "/docs/"})
    assert response.status_code == 200 and response.streaming
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["occurred_at", "user", "device"] and len(rows) == 121
    assert {row[1] for row in rows[1:]} == {"alice@a.example"}


def test_analysts_see_search_and_watch_list_but_not_admin_settings(client, carol, events):
    _login(client, carol)
    assert client.get("/activity/").status_code == 200
    assert client.get("/activity/watch-list/").status_code == 200
    assert client.get("/activity/rules/").status_code == 404
    assert client.get("/activity/export/").status_code == 404


@pytest.mark.parametrize("url", ["/activity/", "/activity/events.csv", "/activity/rules/", "/activity/watch-list/",
                                 "/activity/export/"])
def test_plain_users_find_nothing(client, bob, url):
    assert _login(client, bob).get(url).status_code == 404


def test_the_dashboard_shows_events_by_vector_to_triagers_only(client, alice, bob, events):
    page = _login(client, alice).get("/").content.decode()
    assert "File activity by vector" in page and "Removable media: events per day" in page
    assert "Cloud sync folder: events per day" in page
    client.logout()
    assert "File activity by vector" not in _login(client, bob).get("/").content.decode()


def test_thresholds_form_saves_and_refuses_bad_values(client, alice):
    _login(client, alice)
    response = client.post("/activity/rules/", {"removable_media_mb": 500, "window_minutes": 30,
                                                "sensitive_patterns": "*.pem", "archive_exfil_minutes": 15,
                                                "mass_deletion_count": 100, "mass_encryption_count": 40,
                                                "watch_on_scim_deactivation": "on"})
    assert response.status_code == 302
    config = DetectionSettings.objects.get(organization=alice.organization)
    assert (config.removable_media_mb, config.window_minutes, config.watch_on_scim_deactivation) == (500, 30, True)
    bad = client.post("/activity/rules/", {"removable_media_mb": -1, "window_minutes": 0})
    assert bad.status_code == 400
    config.refresh_from_db()
    assert config.removable_media_mb == 500


def test_watch_list_add_and_remove(client, carol, bob, mallory):
    _login(client, carol)
    assert client.post("/activity/watch-list/", {"email": "BOB@a.example", "reason": "resigned"}).status_code == 302
    assert WatchedUser.objects.get().user == bob
    assert client.post("/activity/watch-list/", {"email": mallory.email}).status_code == 400  # another org's
    assert client.post(f"/activity/watch-list/{bob.uuid}/remove").status_code == 302
    assert not WatchedUser.objects.exists()


def test_export_targets_and_dead_letters_in_the_console(client, alice, settings):
    settings.HAVEN_STORAGE_KEY = "test-storage-key-for-webhook-secrets-0123456789"
    _login(client, alice)
    response = client.post("/activity/export/", {"name": "soar", "kind": "webhook", "payload": "json",
                                                 "url": "https://soar.example.com/haven"})
    assert response.status_code == 200 and "hvw_" in response.content.decode()  # the secret, shown once
    bad = client.post("/activity/export/", {"name": "x", "kind": "syslog", "payload": "cef", "host": "siem"})
    assert bad.status_code == 400 and "port" in bad.content.decode()
    target = ExportTarget.objects.get()
    dead = ExportDelivery.objects.create(target=target, subject="alert", records=[{}], status="dead", attempts=6,
                                         last_error="ConnectionRefusedError", next_attempt_at=timezone.now())
    assert "ConnectionRefusedError" in client.get("/activity/export/").content.decode()
    assert client.post(f"/activity/dead-letters/{dead.uuid}/retry").status_code == 302
    dead.refresh_from_db()
    assert dead.status == "pending" and dead.attempts == 0
    assert client.post(f"/activity/export/{target.uuid}/remove").status_code == 302
    assert not ExportTarget.objects.exists()
