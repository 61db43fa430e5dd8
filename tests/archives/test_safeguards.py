"""Legal hold, departed users, ransomware freeze and quotas through the agent API and the services:
prune_block_reason (what retention and prune ask first) says why an archive must be kept."""
import os
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.services import PermissionRefused, user_deactivate
from activity.models import Alert
from archives.freeze import prune_freeze_release, run_mass_change
from archives.holds import (
    departed_archive_remove,
    departed_archives_remove,
    legal_hold_place,
    legal_hold_release,
    prune_block_reason,
    safeguards_set,
)
from archives.models import Archive, ArchiveRemoval, BackupRun, Block, FileVersion, Pack, PruneFreeze
from archives.quotas import org_quota_set, org_usage, user_quota_set
from archives.storage import pack_storage
from tests.archives.conftest import block, commit, upload, version


def _run(client, archive_id: str) -> str:
    response = client.post(f"/api/v1/archives/{archive_id}/runs")
    assert response.status_code == 201
    return response.json()["run_id"]


def _finish(client, archive_id: str, run_id: str):
    response = client.post(f"/api/v1/archives/{archive_id}/runs/{run_id}/finish", {"status": "completed"},
                           format="json")
    assert response.status_code == 200, response.content
    return response


def _backup(client, archive_id: str, files: dict[str, bytes], deleted: list[str] = ()) -> str:
    """One run committing `files` (path → content) and deletion markers for `deleted`."""
    run_id = _run(client, archive_id)
    frames, versions = [], []
    for path, data in files.items():
        block_id, frame = block(archive_id, data)
        frames.append(frame)
        versions.append(version(archive_id, path, [block_id], [len(data)]))
    versions += [version(archive_id, path, [], [], deleted=True) for path in deleted]
    if frames:
        assert upload(client, archive_id, b"".join(frames), QUERY_STRING=f"run={run_id}").status_code == 201
    assert commit(client, archive_id, versions, run_id=run_id).status_code == 201
    _finish(client, archive_id, run_id)
    return run_id


# --- legal hold -------------------------------------------------------------------------------

def test_a_held_users_archive_may_not_be_pruned_until_released(enrolled, alice, bob):
    client = enrolled(bob)
    archive = Archive.objects.get(uuid=client.enrollment["archive_id"])
    assert prune_block_reason(archive) is None
    legal_hold_place(user=bob, actor=alice, reason="litigation 2026-17")
    assert "legal hold" in prune_block_reason(archive)
    assert AuditEvent.objects.filter(action="legal_hold.place", target_uuid=bob.uuid, actor=alice).exists()
    legal_hold_release(user=bob, actor=alice)
    assert prune_block_reason(archive) is None
    assert AuditEvent.objects.filter(action="legal_hold.release", target_uuid=bob.uuid).exists()


def test_only_an_administrator_of_the_organization_places_a_hold(alice, bob, mallory):
    with pytest.raises(PermissionRefused):
        legal_hold_place(user=alice, actor=bob)
    with pytest.raises(PermissionRefused):
        legal_hold_place(user=alice, actor=mallory)


def test_the_legalhold_command_places_and_releases(enrolled, alice, bob, org_a):
    archive = Archive.objects.get(uuid=enrolled(bob).enrollment["archive_id"])
    call_command("legalhold", "--org", org_a.name, "--user", bob.email, "--reason", "subpoena")
    assert "legal hold" in prune_block_reason(archive)
    call_command("legalhold", "--org", org_a.name, "--user", bob.email, "--release")
    assert prune_block_reason(archive) is None


# --- departed users ---------------------------------------------------------------------------

def test_a_departed_users_archive_is_kept_for_the_retention_then_removed_with_an_audit_record(enrolled, bob, org_a):
    client = enrolled(bob)
    archive_id = client.enrollment["archive_id"]
    _backup(client, archive_id, {"/home/bob/a.txt": b"a" * 100})
    archive = Archive.objects.get(uuid=archive_id)
    safeguards_set(organization=org_a, actor=None, departed_retention_days=30)
    user_deactivate(user=bob, actor_label="scim")
    assert "departed" in prune_block_reason(archive)
    assert departed_archives_remove().removed == []  # within the 30 days
    keys = list(Pack.objects.filter(archive=archive).values_list("storage_key", flat=True))

    later = timezone.now() + timedelta(days=31)
    assert prune_block_reason(archive) is not None  # the clock is real time; only the sweep is told "later"
    sweep = departed_archives_remove(now=later)
    assert sweep.removed == [archive_id]
    assert not FileVersion.objects.filter(archive=archive).exists() and not Block.objects.filter(archive=archive).exists()
    assert ArchiveRemoval.objects.filter(archive=archive).exists()
    event = AuditEvent.objects.get(action="archive.departed_remove", target_uuid=archive.uuid)
    assert event.detail["retention_days"] == 30 and event.detail["packs"] == len(keys)
    storage = pack_storage()
    assert not [k for k in keys if k in set(storage.keys(""))]  # moved to quarantine for the orphan sweep
    assert {stat.key for stat in storage.quarantined("")} >= set(keys)


def test_a_hold_wins_over_departed_user_removal(enrolled, alice, bob, org_a):
    client = enrolled(bob)
    _backup(client, client.enrollment["archive_id"], {"/x": b"x"})
    archive = Archive.objects.get(uuid=client.enrollment["archive_id"])
    user_deactivate(user=bob, actor_label="scim")
    legal_hold_place(user=bob, actor=alice)
    assert departed_archive_remove(archive=archive, now=timezone.now() + timedelta(days=365)) is None
    assert FileVersion.objects.filter(archive=archive).exists()


# --- ransomware freeze ------------------------------------------------------------------------

def test_a_run_changing_a_large_share_of_files_freezes_pruning_and_alerts(enrolled, alice, org_a):
    client = enrolled(alice)
    archive_id = client.enrollment["archive_id"]
    files = {f"/home/alice/doc-{i:03}.txt": f"original {i}".encode() for i in range(150)}
    _backup(client, archive_id, files)
    archive = Archive.objects.get(uuid=archive_id)
    good_until = FileVersion.objects.filter(archive=archive).latest("committed_at").committed_at
    assert prune_block_reason(archive) is None and not PruneFreeze.objects.exists()

    # 20 changed + 30 deleted of 150 = 33 %, 50 files: under the 100-file minimum, no freeze
    small = _backup(client, archive_id, {p: b"enc" + p.encode() for p in list(files)[:20]}, deleted=list(files)[20:50])
    assert run_mass_change(BackupRun.objects.get(uuid=small)).share == pytest.approx(50 / 150)
    assert prune_block_reason(archive) is None

    safeguards_set(organization=org_a, actor=None, freeze_min_files=40)
    run_id = _backup(client, archive_id, {p: b"ENCRYPTED" + p.encode() for p in list(files)[50:100]})
    freeze = PruneFreeze.objects.get(archive=archive)
    assert freeze.files_changed == 50 and freeze.files_before == 120 and str(freeze.run.uuid) == run_id
    assert freeze.last_good_at > good_until  # the run before: the last point in time before the mass change
    reason = prune_block_reason(archive)
    assert reason and "frozen" in reason
    alert = Alert.objects.get(kind="prune_frozen", archive_uuid=archive.uuid)
    assert alert.status == "open" and alert.detail["files_changed"] == 50

    call_command("freeze", "--archive", archive_id, "--release")
    assert prune_block_reason(archive) is None
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert AuditEvent.objects.filter(action="prune_freeze.release", target_uuid=archive.uuid).exists()


def test_only_an_administrator_releases_a_freeze(enrolled, alice, bob):
    archive = Archive.objects.get(uuid=enrolled(alice).enrollment["archive_id"])
    PruneFreeze.objects.create(archive=archive, reason="test")
    with pytest.raises(PermissionRefused):
        prune_freeze_release(archive=archive, actor=bob)
    assert prune_block_reason(archive) is not None


# --- quotas -----------------------------------------------------------------------------------

def test_an_upload_past_the_users_quota_is_refused_and_stores_nothing(enrolled, alice, bob):
    client = enrolled(bob)
    archive_id = client.enrollment["archive_id"]
    _backup(client, archive_id, {"/first": b"f" * 1000})
    used = org_usage(bob.organization)
    user_quota_set(user=bob, actor=alice, quota_bytes=used + 500)
    packs, blocks = Pack.objects.count(), Block.objects.count()
    files_before = sorted(pack_storage().keys(""))
    _, frame = block(archive_id, os.urandom(4000))  # random: zstd cannot shrink it under the quota
    response = upload(client, archive_id, frame)
    assert response.status_code == 409
    assert response.json()["code"] == "quota_exceeded" and "quota" in response.json()["detail"]
    assert (Pack.objects.count(), Block.objects.count()) == (packs, blocks)
    assert sorted(pack_storage().keys("")) == files_before
    user_quota_set(user=bob, actor=alice, quota_bytes=None)
    assert upload(client, archive_id, frame).status_code == 201


def test_the_organizations_quota_applies_and_warns_first(enrolled, alice, org_a):
    client = enrolled(alice)
    archive_id = client.enrollment["archive_id"]
    _backup(client, archive_id, {"/a": b"a" * 1000})
    used = org_usage(org_a)
    org_quota_set(organization=org_a, actor=alice, quota_bytes=used + 400, soft_percent=50)
    _, small = block(archive_id, b"s" * 10)
    assert upload(client, archive_id, small).status_code == 201
    assert Alert.objects.filter(kind="quota_warning", organization=org_a).exists()
    _, big = block(archive_id, os.urandom(5000))
    assert upload(client, archive_id, big).json()["code"] == "quota_exceeded"


def test_the_quota_command_sets_and_shows_usage(enrolled, alice, bob, org_a, capsys):
    enrolled(bob)
    call_command("quota", "--org", org_a.name, "--user", bob.email, "--set", "2G")
    assert "quota 2000000000 bytes" in capsys.readouterr().out
    call_command("quota", "--org", org_a.name, "--set", "1TiB")
    assert f"quota {1024 ** 4} bytes" in capsys.readouterr().out
    call_command("quota", "--org", org_a.name, "--set", "none")
    assert "quota none" in capsys.readouterr().out
