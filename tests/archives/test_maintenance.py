"""Maintenance in one process: retention expires, prune frees, compaction rewrites and retires,
dry-run changes nothing, holds and leases are respected, and the commands set and run it."""
import os
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from archives.maintenance import archive_maintain, lease_claim, lease_release
from archives.maintenance_models import MaintenanceRun, RetentionPolicy
from archives.models import Block, FileVersion, Pack
from archives.retention_policies import retention_for_archive, retention_policy_set
from tests.archives.maintenance_support import Backup, age, assert_every_kept_version_restores, storage_consistent

GRACE = timedelta(days=1)
ONLY_NEWEST = {"keep_all_days": 1, "daily_days": 0, "weekly_weeks": 0, "monthly_months": 0, "deleted_days": 1}


def _history(client) -> tuple[Backup, list]:
    """/doc in five versions (one fresh 64 KiB block each, one pack each); the first four 10 days old."""
    backup = Backup(client)
    old = []
    for index in range(5):
        chunk = os.urandom(64 * 1024)
        backup.upload(chunk)
        version_id = backup.commit("/doc", [chunk])
        if index < 4:
            old.append(version_id)
    age(old, days=10)
    age(days=10, blocks=list(Block.objects.values_list("block_id", flat=True)))
    retention_policy_set(organization=backup.archive.organization, **ONLY_NEWEST)
    return backup, old


def _live_bytes(pack_dir) -> int:
    return sum(p.stat().st_size for p in pack_dir.rglob("*.pack") if ".quarantine" not in p.parts)


def test_prune_and_compaction_free_the_bytes_of_expired_versions(enrolled, alice, pack_dir):
    backup, old = _history(enrolled(alice))
    archive = backup.archive
    before = _live_bytes(pack_dir)
    dead_packs = Pack.objects.filter(archive=archive).exclude(blocks__in=Block.objects.filter(
        block_id__in=[bytes(FileVersion.objects.exclude(uuid__in=old).get().block_ids)])).exclude(
        manifests__in=FileVersion.objects.exclude(uuid__in=old))
    dead_bytes = sum(dead_packs.values_list("size", flat=True))
    assert dead_packs.count() == 8  # four block packs, four manifest packs

    now = timezone.now()
    first = archive_maintain(archive=archive, now=now, grace=GRACE).run
    assert first.versions_expired == 4 and first.blocks_deleted == 0  # just unreferenced: the grace runs from now
    assert Pack.objects.filter(state=Pack.State.RETIRING, kind=Pack.Kind.MANIFESTS).count() == 4
    assert _live_bytes(pack_dir) == before  # retiring packs stay for readers in flight
    second = archive_maintain(archive=archive, now=now + GRACE + timedelta(seconds=1), grace=GRACE).run
    assert second.blocks_deleted == 4 and second.packs_retired == 4
    assert Pack.objects.filter(state=Pack.State.RETIRING, kind=Pack.Kind.BLOCKS).count() == 4
    third = archive_maintain(archive=archive, now=now + 2 * GRACE + timedelta(seconds=2), grace=GRACE).run
    assert third.packs_retired == 4 and first.bytes_freed + second.bytes_freed + third.bytes_freed == dead_bytes
    assert before - _live_bytes(pack_dir) == dead_bytes > 4 * 64 * 1024
    assert storage_consistent(pack_dir) == (set(), set())
    assert assert_every_kept_version_restores(backup) == 1


def test_a_pack_mostly_dead_is_rewritten_and_its_live_block_still_restores(enrolled, alice, pack_dir):
    backup = Backup(enrolled(alice))
    keep, *drop = [os.urandom(32 * 1024) for _ in range(4)]
    backup.upload(keep, *drop)  # one pack, 25 % of it will be live
    backup.commit("/kept", [keep])
    age(days=10, blocks=list(Block.objects.values_list("block_id", flat=True)))
    old_pack = Pack.objects.get(kind=Pack.Kind.BLOCKS)

    run = archive_maintain(archive=backup.archive, grace=GRACE).run
    assert run.blocks_deleted == 3 and run.packs_compacted == 1
    old_pack.refresh_from_db()
    assert old_pack.state == Pack.State.RETIRING and not old_pack.blocks.exists()
    new_pack = Block.objects.get().pack
    assert new_pack != old_pack and new_pack.frame_count == 1 and new_pack.size < old_pack.size / 3
    assert (pack_dir / old_pack.storage_key).exists()  # a restore that read the old row still reads it
    assert assert_every_kept_version_restores(backup) == 1


def test_a_dry_run_reports_and_changes_nothing(enrolled, alice, pack_dir):
    backup, _old = _history(enrolled(alice))
    snapshot = [list(model.objects.order_by("pk").values()) for model in (FileVersion, Block, Pack)]
    report = archive_maintain(archive=backup.archive, dry_run=True, grace=GRACE)
    assert report.run.dry_run and report.run.versions_expired == 4 and report.run.bytes_freed > 4 * 64 * 1024
    assert any("would expire 4 version(s)" in line for line in report.lines)
    assert snapshot == [list(model.objects.order_by("pk").values()) for model in (FileVersion, Block, Pack)]


def test_a_held_archive_is_skipped_with_the_reason(enrolled, alice, monkeypatch):
    backup, _old = _history(enrolled(alice))
    monkeypatch.setattr("archives.maintenance.prune_block_reason", lambda archive: "legal hold (case 42)")
    run = archive_maintain(archive=backup.archive, grace=GRACE).run
    assert run.status == MaintenanceRun.Status.SKIPPED and run.detail == "legal hold (case 42)"
    assert FileVersion.objects.count() == 5


def test_the_lease_admits_one_run_and_lapses_when_its_holder_dies(enrolled, alice):
    backup, _old = _history(enrolled(alice))
    archive = backup.archive
    assert lease_claim(archive=archive, holder="worker-1", ttl=timedelta(minutes=15))
    assert not lease_claim(archive=archive, holder="worker-2")
    run = archive_maintain(archive=archive, grace=GRACE).run
    assert run.status == MaintenanceRun.Status.SKIPPED and "lease" in run.detail and FileVersion.objects.count() == 5
    assert lease_claim(archive=archive, holder="worker-1", ttl=timedelta(seconds=-1))  # worker-1 "died"
    assert lease_claim(archive=archive, holder="worker-2")
    lease_release(archive=archive, holder="worker-2")
    assert archive_maintain(archive=archive, grace=GRACE).run.status == MaintenanceRun.Status.DONE


def test_the_retention_command_sets_the_org_policy_and_overrides(enrolled, alice, bob, capsys):
    backup = Backup(enrolled(alice))
    org = alice.organization
    call_command("retention", "--org", org.name, "--keep-all-days", "3", "--deleted-days", "10")
    assert retention_for_archive(backup.archive)[0].keep_all_days == 3
    call_command("retention", "--org", org.name, "--user", alice.email, "--daily-days", "5")
    policy, source = retention_for_archive(backup.archive)
    assert source == "user" and (policy.keep_all_days, policy.daily_days, policy.deleted_days) == (3, 5, 10)
    call_command("retention", "--org", org.name, "--device", str(backup.archive.device.uuid), "--weekly-weeks", "1")
    assert retention_for_archive(backup.archive)[1] == "device"
    with pytest.raises(CommandError, match="greater than or equal to 0"):
        call_command("retention", "--org", org.name, "--daily-days", "-1")
    with pytest.raises(CommandError, match="no user"):
        call_command("retention", "--org", org.name, "--user", "nobody@example.com", "--daily-days", "1")
    assert RetentionPolicy.objects.count() == 3


def test_the_maintenance_command_dry_run_prints_what_would_go(enrolled, alice, capsys):
    backup, _old = _history(enrolled(alice))
    call_command("maintenance", "--archive", backup.archive_id, "--dry-run")
    out = capsys.readouterr().out
    assert "would expire 4 version(s)" in out and "space freed (estimate)" in out
    assert FileVersion.objects.count() == 5
    with pytest.raises(CommandError, match="no archive"):
        call_command("maintenance", "--archive", "not-a-uuid")


def test_the_tasks_are_named_routed_to_the_maintenance_queue_and_idempotent(enrolled, alice, settings):
    from celery.app.routes import MapRoute

    from archives.tasks import archive_maintain_task, archives_maintain_task

    backup, _old = _history(enrolled(alice))
    for task in (archive_maintain_task, archives_maintain_task):
        assert task.name.startswith("haven.maintenance.") and task.soft_time_limit and task.time_limit
        assert MapRoute(settings.CELERY_TASK_ROUTES)(task.name) == {"queue": "maintenance"}
    assert archive_maintain_task(backup.archive.pk)["status"] == "done"
    assert FileVersion.objects.count() == 1
    assert archive_maintain_task(backup.archive.pk)["status"] == "done"  # a redelivered copy finds nothing to do
    assert FileVersion.objects.count() == 1 and MaintenanceRun.objects.filter(status="done").count() == 2
    assert archive_maintain_task(10 ** 9) == {"status": "gone"}
