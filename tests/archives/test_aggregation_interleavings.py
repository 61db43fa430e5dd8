"""A backup deduplicating against, and committing versions that name, blocks of packs a real
`manage.py maintenance` is merging (held at an aggregation step by a fault point), on the folder
and on S3: the backup neither fails nor deadlocks, and every version restores byte for byte."""
import threading
import time

import pytest
from django.db import connection

from archives.models import Block, Pack
from archives.storage import pack_storage
from tests.archives.conftest import block
from tests.archives.maintenance_support import (
    AGGREGATE_EAGER_ENV,
    Backup,
    assert_every_kept_version_restores,
    incrementals,
    maintenance_env,
    maintenance_process,
    packs_consistent,
)
from tests.support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
both_storages = pytest.mark.parametrize("pack_backend", ["local", "s3"], indirect=True)


def _held_at(point: str, backup: Backup, pack_dir, tmp_path, storage_env):
    faults = tmp_path / "faults"
    faults.mkdir(exist_ok=True)
    env = maintenance_env(pack_dir, **storage_env, **AGGREGATE_EAGER_ENV, HAVEN_FAULT_POINTS=f"{point}=wait",
                          HAVEN_FAULT_DIR=str(faults))
    process = maintenance_process(env, "--archive", backup.archive_id)
    wait_until(lambda: (faults / point).exists() or process.poll() is not None, timeout=120, what=point)
    assert process.poll() is None, process.communicate()
    return process, faults / f"{point}.go"


@both_storages
def test_a_backup_deduplicating_against_packs_being_merged(enrolled, alice, pack_dir, tmp_path, storage_env):
    backup = Backup(enrolled(alice))
    chunks = incrementals(backup, runs=3)
    first_id = block(backup.archive_id, chunks[0])[0]
    before = Block.objects.select_related("pack").get(block_id=first_id)  # what a restore in flight read
    process, go = _held_at("aggregate.pack_durable", backup, pack_dir, tmp_path, storage_env)

    assert backup.missing([chunks[0], chunks[3]]) == set()  # blocks of two packs being merged
    backup.commit("/during", [chunks[0], chunks[3]])  # its manifest pack is new: not in the merge
    go.touch()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, out + err
    after = Block.objects.select_related("pack").get(block_id=first_id)
    assert after.pack != before.pack and Pack.objects.get(pk=before.pack.pk).state == Pack.State.RETIRING
    old_frame = pack_storage().read_at(before.pack.storage_key, before.offset, before.frame_size)
    assert old_frame == pack_storage().read_at(after.pack.storage_key, after.offset, after.frame_size)
    assert set(Block.objects.values_list("pack", flat=True)) == {after.pack.pk}
    assert assert_every_kept_version_restores(backup) == 8
    assert packs_consistent() == (set(), set())


@both_storages
def test_a_commit_waits_for_the_switch_holding_its_rows_and_then_succeeds(enrolled, alice, pack_dir, tmp_path,
                                                                         storage_env):
    backup = Backup(enrolled(alice))
    chunks = incrementals(backup, runs=3)
    process, go = _held_at("aggregate.before_switch_commit", backup, pack_dir, tmp_path, storage_env)

    result: dict = {}

    def commit_naming_merged_blocks():
        try:
            result["id"] = backup.commit("/during", [chunks[5], chunks[0]])  # block ids out of pack order
        finally:
            connection.close()

    committing = threading.Thread(target=commit_naming_merged_blocks)
    committing.start()
    time.sleep(1.5)
    assert committing.is_alive(), "the commit must wait for the switch's row locks, not race them"
    go.touch()
    committing.join(timeout=60)
    assert "id" in result, "the commit failed"
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, out + err
    assert len(set(Block.objects.values_list("pack", flat=True))) == 1
    assert assert_every_kept_version_restores(backup) == 8
    assert packs_consistent() == (set(), set())
