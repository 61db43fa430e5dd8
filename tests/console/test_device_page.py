"""The device page: facts, archive figures, agent status, run history, authorization, back up now."""
import os
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent, Device, Role
from archives.models import BackupRun, FileVersion
from archives.policy_models import DeviceStatus
from tests.conftest import PASSWORD, _user
from tests.console.fleet_data import device_with_backups


def _browser(user):
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


@pytest.fixture
def bobs_box(bob):
    return device_with_backups(bob, "bob-box", last_backup_ago=timedelta(hours=3), files=3, stored=4096,
                               extra_runs=("failed", "interrupted"))


def test_it_shows_owner_os_agent_and_archive_figures(bobs_box, alice):
    html = _browser(alice).get(f"/devices/{bobs_box.uuid}/").content.decode()
    assert "bob@a.example" in html and "Linux" in html and "0.9.0" in html
    assert 'data-files="3"' in html and "4.0\xa0KB" in html


def test_the_file_count_is_the_newest_version_per_path_not_deleted(bobs_box, alice):
    archive = bobs_box.archives.get()
    first = FileVersion.objects.filter(archive=archive).order_by("path_id").first()
    later = timezone.now()
    FileVersion.objects.create(uuid=uuid.uuid4(), archive=archive, path_id=first.path_id, committed_at=later,
                               deleted=True, block_ids=b"", manifest_pack=first.manifest_pack, manifest_offset=0,
                               manifest_frame_size=1)
    FileVersion.objects.create(uuid=uuid.uuid4(), archive=archive, path_id=f"{9:064x}", committed_at=later,
                               block_ids=os.urandom(32), stored_size=5, manifest_pack=first.manifest_pack,
                               manifest_offset=0, manifest_frame_size=1)
    html = _browser(alice).get(f"/devices/{bobs_box.uuid}/").content.decode()
    assert 'data-files="3"' in html  # 3 - 1 deleted + 1 new


def test_the_run_history_lists_failed_and_interrupted_runs_with_errors(bobs_box, alice):
    html = _browser(alice).get(f"/devices/{bobs_box.uuid}/").content.decode()
    for status in ("Completed", "Failed", "Interrupted"):
        assert f">{status}</span>" in html
    assert "secret-name.txt: Permission denied" in html


def test_security_analysts_see_the_history_but_no_file_names(bobs_box, org_a):
    analyst = _user(org_a, "sam@a.example", Role.SECURITY_ANALYST)
    html = _browser(analyst).get(f"/devices/{bobs_box.uuid}/").content.decode()
    assert ">Failed</span>" in html and "secret-name" not in html
    assert "Deauthorize" not in html and "Back up now" not in html


def test_the_run_history_is_paginated(bob, alice):
    device = device_with_backups(bob, "busy", last_backup_ago=timedelta(hours=1))
    archive = device.archives.get()
    BackupRun.objects.bulk_create([BackupRun(archive=archive, status="completed", finished_at=timezone.now())
                                   for _ in range(30)])
    client = _browser(alice)
    first = client.get(f"/devices/{device.uuid}/").content.decode()
    assert first.count("<tr data-run=") == 25 and "page 1 of 2" in first
    assert client.get(f"/devices/{device.uuid}/", {"page": 2}).content.decode().count("<tr data-run=") == 6
    assert client.get(f"/devices/{device.uuid}/", {"page": "x"}).status_code == 400


def test_agent_status_is_shown_when_reported(bobs_box, alice):
    DeviceStatus.objects.create(device=bobs_box, state="running", pending_bytes=2048, selection_files=9,
                                last_result={"status": "completed"}, reported_at=timezone.now())
    html = _browser(alice).get(f"/devices/{bobs_box.uuid}/").content.decode()
    assert "Backing up" in html and "2.0\xa0KB" in html and "completed" in html


def test_the_owner_sees_their_device_but_not_another_users_and_other_orgs_get_404(bobs_box, alice, bob, mallory):
    assert _browser(bob).get(f"/devices/{bobs_box.uuid}/").status_code == 200
    alices = device_with_backups(alice, "alice-box", last_backup_ago=None)
    assert _browser(bob).get(f"/devices/{alices.uuid}/").status_code == 404
    assert _browser(mallory).get(f"/devices/{bobs_box.uuid}/").status_code == 404
    assert _browser(mallory).get(f"/devices/{uuid.uuid4()}/").status_code == 404
    assert _browser(alice).get("/devices/not-a-uuid/").status_code == 404


def test_the_query_count_does_not_grow_with_runs(bob, alice, django_assert_max_num_queries):
    device = device_with_backups(bob, "busy", last_backup_ago=timedelta(hours=1), extra_runs=("failed",) * 20)
    client = _browser(alice)
    with django_assert_max_num_queries(11):
        assert client.get(f"/devices/{device.uuid}/").status_code == 200


def test_an_admin_deauthorizes_and_reauthorizes_from_the_device_page(bobs_box, alice):
    client = _browser(alice)
    html = client.get(f"/devices/{bobs_box.uuid}/").content.decode()
    assert f'action="/devices/{bobs_box.uuid}/authorization/deauthorize"' in html
    response = client.post(f"/devices/{bobs_box.uuid}/authorization/deauthorize")
    assert response.status_code == 302 and response["Location"] == f"/devices/{bobs_box.uuid}/"
    assert not Device.objects.get(pk=bobs_box.pk).authorized
    assert f'action="/devices/{bobs_box.uuid}/authorization/reauthorize"' in client.get(response["Location"]).content.decode()
    client.post(f"/devices/{bobs_box.uuid}/authorization/reauthorize")
    assert Device.objects.get(pk=bobs_box.pk).authorized
    assert list(AuditEvent.objects.filter(target_uuid=bobs_box.uuid).order_by("pk").values_list("action", flat=True)) \
        == ["device.deauthorize", "device.reauthorize"]


def test_back_up_now_asks_the_agent_and_is_audited(bobs_box, alice, bob, mallory):
    assert _browser(mallory).post(f"/devices/{bobs_box.uuid}/backup-now").status_code == 404
    response = _browser(bob).post(f"/devices/{bobs_box.uuid}/backup-now")
    assert response.status_code == 302
    assert DeviceStatus.objects.get(device=bobs_box).backup_now_requested_at is not None
    assert AuditEvent.objects.filter(action="device.backup_now", actor=bob).count() == 1
    assert _browser(alice).post(f"/devices/{bobs_box.uuid}/backup-now").status_code == 302


def test_an_analyst_cannot_ask_for_a_backup(bobs_box, org_a):
    analyst = _user(org_a, "sam@a.example", Role.SECURITY_ANALYST)
    assert _browser(analyst).post(f"/devices/{bobs_box.uuid}/backup-now").status_code == 403
    assert not DeviceStatus.objects.filter(device=bobs_box, backup_now_requested_at__isnull=False).exists()
