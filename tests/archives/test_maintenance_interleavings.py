"""A backup committing while prune and compaction run on the same archive (a real maintenance
process, held at a step by a fault point, and the agent's requests in this one): every kept
version restores byte for byte afterwards (docs/maintenance.md, "Why no block a version needs
is deleted")."""
import base64
import os
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction

from archives.maintenance import archive_maintain
from archives.models import Block, Pack
from archives.retention_policies import retention_policy_set
from archives.services import VersionIn, versions_commit
from archives.storage import pack_storage
from tests.archives.conftest import block, version
from tests.archives.maintenance_support import (
    Backup,
    age,
    assert_every_kept_version_restores,
    maintenance_env,
    maintenance_process,
)
from tests.support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _garbage_block(backup: Backup) -> bytes:
    """A block whose only version expired long ago: garbage, past its grace, but still indexed."""
    resurrected = os.urandom(40000)
    backup.upload(resurrected)
    old = backup.commit("/old", [resurrected])
    backup.upload(b"newer content")
    backup.commit("/old", [b"newer content"])
    age([old], days=10)
    retention_policy_set(organization=backup.archive.organization, keep_all_days=1, daily_days=0, weekly_weeks=0,
                         monthly_months=0, deleted_days=1)
    archive_maintain(archive=backup.archive)  # expires /old's first version
    del backup.expected[old]
    age(days=10, blocks=[block(backup.archive_id, resurrected)[0]])
    return resurrected


def _held_at(point: str, backup: Backup, pack_dir, tmp_path):
    faults = tmp_path / "faults"
    faults.mkdir(exist_ok=True)
    process = maintenance_process(maintenance_env(pack_dir, HAVEN_FAULT_POINTS=f"{point}=wait",
                                                  HAVEN_FAULT_DIR=str(faults)), "--archive", backup.archive_id)
    wait_until(lambda: (faults / point).exists() or process.poll() is not None, timeout=120, what=point)
    assert process.poll() is None, process.communicate()
    return process, faults / f"{point}.go"


def _in_thread(target):
    result: dict = {}

    def run():
        try:
            result["value"] = target()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_dedup_resurrecting_a_block_the_sweep_holds_gets_it_sent_again(enrolled, alice, pack_dir, tmp_path):
    backup = Backup(enrolled(alice))
    resurrected = _garbage_block(backup)
    process, go = _held_at("prune.before_sweep_commit", backup, pack_dir, tmp_path)

    asking, answer = _in_thread(lambda: backup.missing([resurrected]))  # "do you have it?" while prune holds it
    time.sleep(1.5)
    assert asking.is_alive(), "the answer must wait for the sweep's row lock, not race it"
    go.touch()
    asking.join(timeout=60)
    assert answer["value"] == {block(backup.archive_id, resurrected)[0]}  # deleted meanwhile: reported missing
    assert process.wait(timeout=120) == 0

    backup.upload(resurrected)  # so the agent sends it again and the version commits
    backup.commit("/new", [resurrected])
    assert assert_every_kept_version_restores(backup) == 2


def test_dedup_resurrecting_a_block_before_the_sweep_keeps_it(enrolled, alice, pack_dir, tmp_path):
    backup = Backup(enrolled(alice))
    resurrected = _garbage_block(backup)
    assert backup.missing([resurrected]) == set()  # "you already have it": its grace starts again now
    process = maintenance_process(maintenance_env(pack_dir), "--archive", backup.archive_id)
    assert process.wait(timeout=120) == 0
    assert Block.objects.filter(block_id=block(backup.archive_id, resurrected)[0]).exists()
    backup.commit("/new", [resurrected])  # no re-upload needed
    assert assert_every_kept_version_restores(backup) == 2


def test_a_commit_in_flight_holds_its_blocks_and_prune_does_not_wait_for_it(enrolled, alice, pack_dir, tmp_path):
    backup = Backup(enrolled(alice))
    resurrected = _garbage_block(backup)
    block_id = block(backup.archive_id, resurrected)[0]
    body = version(backup.archive_id, "/new", [block_id], [len(resurrected)])
    release, locked = threading.Event(), threading.Event()

    def commit_slowly():
        with transaction.atomic():  # the commit's transaction, held open between its check and its end
            result = versions_commit(archive=backup.archive, versions=[VersionIn(
                version_id=uuid.UUID(body["version_id"]), path_id=body["path_id"], deleted=False,
                block_ids=[block_id], manifest=base64.b64decode(body["manifest"]))])
            locked.set()
            release.wait(timeout=120)
        return result

    committing, result = _in_thread(commit_slowly)
    assert locked.wait(timeout=60)
    process = maintenance_process(maintenance_env(pack_dir), "--archive", backup.archive_id)
    assert process.wait(timeout=120) == 0, "prune must skip a locked row, never wait for a backup"
    release.set()
    committing.join(timeout=60)
    assert result["value"].committed == 1
    backup.expected[uuid.UUID(body["version_id"])] = resurrected
    assert Block.objects.filter(block_id=block_id).exists()
    assert assert_every_kept_version_restores(backup) == 2


def test_a_backup_committing_during_compaction_and_a_restore_reading_the_old_pack(enrolled, alice, pack_dir,
                                                                               tmp_path):
    backup = Backup(enrolled(alice))
    kept, *junk = [os.urandom(30000) for _ in range(4)]
    backup.upload(kept, *junk)
    backup.commit("/kept", [kept])
    age(days=10, blocks=[b for b, in Block.objects.values_list("block_id")])
    kept_id = block(backup.archive_id, kept)[0]
    before = Block.objects.select_related("pack").get(block_id=kept_id)  # what a restore in flight read
    process, go = _held_at("compact.pack_durable", backup, pack_dir, tmp_path)

    assert backup.missing([kept]) == set()  # the agent dedups against the block being moved
    backup.commit("/again", [kept])
    go.touch()
    assert process.wait(timeout=120) == 0
    after = Block.objects.select_related("pack").get(block_id=kept_id)
    assert after.pack != before.pack and Pack.objects.get(pk=before.pack.pk).state == Pack.State.RETIRING
    old_frame = pack_storage().read_at(before.pack.storage_key, before.offset, before.frame_size)
    assert old_frame == pack_storage().read_at(after.pack.storage_key, after.offset, after.frame_size)
    assert assert_every_kept_version_restores(backup) == 2

    later = archive_maintain(archive=backup.archive, now=after.pack.created_at + timedelta(days=2)).run
    assert later.packs_retired >= 1 and not (pack_dir / before.pack.storage_key).exists()
    assert assert_every_kept_version_restores(backup) == 2
