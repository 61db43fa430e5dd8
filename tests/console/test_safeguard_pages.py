"""Console pages of the safeguards: the settings page (quotas, departed-user retention, the
mass-change threshold, legal holds, user quotas) and the device page's protection card (restorable
as of, last good point in time, release of a freeze, deep verification on request)."""
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent
from archives import safeguard_tasks
from archives.models import ArchiveCheck, LegalHold, PruneFreeze, SafeguardSettings, UserQuota
from tests.conftest import PASSWORD
from tests.console.fleet_data import device_with_backups


def _browser(user):
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


@pytest.fixture
def bobs_box(bob):
    return device_with_backups(bob, "bob-box", last_backup_ago=timedelta(hours=3), files=3, stored=4096)


def test_the_settings_page_saves_quota_retention_and_threshold(alice, org_a):
    browser = _browser(alice)
    assert browser.get("/safeguards/").status_code == 200
    response = browser.post("/safeguards/", {"quota": "2TiB", "quota_soft_percent": 80, "departed_retention_days": 180,
                                             "freeze_share_percent": 25, "freeze_min_files": 50})
    assert response.status_code == 302
    row = SafeguardSettings.objects.get(organization=org_a)
    assert (row.quota_bytes, row.quota_soft_percent, row.departed_retention_days, row.freeze_share_percent,
            row.freeze_min_files) == (2 * 1024 ** 4, 80, 180, 25, 50)
    assert "2.0\xa0TB" in browser.get("/safeguards/").content.decode()


def test_a_bad_setting_is_400_and_changes_nothing(alice, org_a):
    response = _browser(alice).post("/safeguards/", {"quota": "lots", "quota_soft_percent": 80,
                                                     "departed_retention_days": 180, "freeze_share_percent": 25,
                                                     "freeze_min_files": 50})
    assert response.status_code == 400 and "is not a size" in response.content.decode()
    assert not SafeguardSettings.objects.filter(organization=org_a).exists()


def test_plain_users_and_analysts_cannot_open_it(bob):
    assert _browser(bob).get("/safeguards/").status_code == 403
    assert _browser(bob).post("/safeguards/holds/", {"email": bob.email}).status_code == 403


def test_an_admin_places_and_releases_a_hold_and_sets_a_user_quota(alice, bob):
    browser = _browser(alice)
    browser.post("/safeguards/holds/", {"email": bob.email, "reason": "matter 17"})
    hold = LegalHold.objects.get(user=bob, released_at__isnull=True)
    assert hold.reason == "matter 17" and hold.placed_by_label == alice.email
    assert "matter 17" in browser.get("/safeguards/").content.decode()
    browser.post(f"/safeguards/holds/{bob.uuid}/release")
    assert not LegalHold.objects.filter(user=bob, released_at__isnull=True).exists()
    browser.post("/safeguards/quotas/", {"email": bob.email, "quota": "5G"})
    assert UserQuota.objects.get(user=bob).quota_bytes == 5 * 1000 ** 3


def test_the_device_page_shows_restorable_as_of_and_the_last_good_point_and_releases(bobs_box, alice):
    archive = bobs_box.archives.get()
    drilled = timezone.now() - timedelta(hours=2)
    ArchiveCheck.objects.create(archive=archive, kind="drill", outcome="clean", point_in_time=drilled,
                                files_checked=3, finished_at=drilled)
    last_good = timezone.now() - timedelta(hours=1)
    PruneFreeze.objects.create(archive=archive, reason="backup run changed 300 of 400 files", last_good_at=last_good)
    browser = _browser(alice)
    assert f'hx-get="/devices/{bobs_box.uuid}/protection"' in browser.get(f"/devices/{bobs_box.uuid}/").content.decode()
    html = browser.get(f"/devices/{bobs_box.uuid}/protection").content.decode()
    assert f'data-restorable="{drilled.isoformat()}"' in html
    assert f'data-last-good="{last_good.isoformat()}"' in html and "Release the freeze" in html
    assert browser.post(f"/devices/{bobs_box.uuid}/freeze/release").status_code == 302
    assert not PruneFreeze.objects.filter(archive=archive, released_at__isnull=True).exists()
    assert "Release the freeze" not in browser.get(f"/devices/{bobs_box.uuid}/protection").content.decode()


def test_the_owner_sees_the_card_but_cannot_release_or_verify(bobs_box, bob):
    archive = bobs_box.archives.get()
    PruneFreeze.objects.create(archive=archive, reason="mass change")
    browser = _browser(bob)
    html = browser.get(f"/devices/{bobs_box.uuid}/protection").content.decode()
    assert "frozen" in html and "Release the freeze" not in html and "Verify deeply" not in html
    assert browser.post(f"/devices/{bobs_box.uuid}/freeze/release").status_code == 403
    assert browser.post(f"/devices/{bobs_box.uuid}/verify").status_code == 403
    assert PruneFreeze.objects.filter(archive=archive, released_at__isnull=True).exists()


def test_verify_deeply_queues_an_audited_deep_check(bobs_box, alice, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(safeguard_tasks.verify_deep_task, "delay", lambda *args: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        assert _browser(alice).post(f"/devices/{bobs_box.uuid}/verify").status_code == 302
    archive = bobs_box.archives.get()
    assert sent == [(archive.pk, alice.pk)]
    assert AuditEvent.objects.filter(action="archive.verify_deep_request", target_uuid=archive.uuid).exists()


def test_a_hold_or_quota_for_an_unknown_or_foreign_user_is_400_and_stores_nothing(alice, mallory):
    browser = _browser(alice)
    response = browser.post("/safeguards/holds/", {"email": mallory.email})
    assert response.status_code == 400 and "No such user in your organization" in response.content.decode()
    assert browser.post("/safeguards/quotas/", {"email": "nobody@a.example", "quota": "5G"}).status_code == 400
    assert browser.post("/safeguards/quotas/", {"email": alice.email, "quota": "plenty"}).status_code == 400
    assert not LegalHold.objects.exists() and not UserQuota.objects.exists()
