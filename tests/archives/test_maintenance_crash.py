"""kill -9 a real `manage.py maintenance` at each prune and compaction step, run it again: every
kept version restores byte for byte, and no orphan outlives the next run (docs/maintenance.md)."""
import os
import time
from datetime import timedelta

import pytest
from django.db.models import F

from archives.maintenance import archive_maintain
from archives.models import Block, Pack
from archives.retention_policies import retention_policy_set
from tests.archives.maintenance_support import (
    Backup,
    age,
    assert_every_kept_version_restores,
    maintenance_env,
    maintenance_killed_at,
    maintenance_process,
    storage_consistent,
)

pytestmark = pytest.mark.django_db(transaction=True)

POINTS = ["prune.versions_expired", "prune.before_sweep_commit", "prune.swept", "compact.pack_durable",
          "compact.before_switch_commit", "compact.switched", "compact.before_retire_row", "compact.retired"]


def _scenario(client) -> Backup:
    """A state in which one maintenance run passes every step: a retiring pack past its grace,
    versions to expire, abandoned blocks past their grace in a mostly-dead pack."""
    backup = Backup(client)
    abandoned = [os.urandom(8000) for _ in range(3)]
    backup.upload(*abandoned)  # an upload never committed: a pack with no live block
    live = [os.urandom(20000) for _ in range(3)]
    backup.upload(*live)
    backup.commit("/a", [live[0]])
    backup.commit("/b", [live[1], live[2]])
    age(days=10, blocks=[b for b, in Block.objects.values_list("block_id")])
    archive_maintain(archive=backup.archive)  # the abandoned pack's rows go; it starts retiring
    Pack.objects.filter(state=Pack.State.RETIRING).update(retiring_since=F("retiring_since") - timedelta(days=2))

    old = [backup.commit("/a", [live[0], live[1]]), backup.commit("/b", [live[2]])]
    junk = [os.urandom(30000) for _ in range(3)]
    mixed_live = os.urandom(10000)
    backup.upload(mixed_live, *junk)  # a pack 10 % live once the junk is swept
    backup.commit("/c", [mixed_live])
    backup.commit("/a", [live[0]])
    backup.commit("/b", [live[1]])
    age(old, days=10)
    age(days=10, blocks=[b for b, in Block.objects.values_list("block_id")])
    retention_policy_set(organization=backup.archive.organization, keep_all_days=1, daily_days=0, weekly_weeks=0,
                         monthly_months=0, deleted_days=1)
    return backup


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_at_each_step_loses_nothing_kept(enrolled, alice, pack_dir, tmp_path, point):
    backup = _scenario(enrolled(alice))
    faults = tmp_path / "faults"
    faults.mkdir()
    env = maintenance_env(pack_dir, HAVEN_FAULT_POINTS=point, HAVEN_FAULT_DIR=str(faults),
                          HAVEN_MAINTENANCE_LEASE_SECONDS="2")  # so the dead run's lease lapses quickly
    maintenance_killed_at(env, backup.archive_id, point, faults)
    assert_every_kept_version_restores(backup)  # even with the run dead mid-step
    if point == "compact.pack_durable":
        assert storage_consistent(pack_dir)[0], "the crash should leave the new pack as an orphan"

    time.sleep(2.5)  # the dead worker's lease lapses on its own
    again = maintenance_process(maintenance_env(pack_dir), "--archive", backup.archive_id)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "skipped" not in out, out + err
    assert assert_every_kept_version_restores(backup) == 5
    orphans, lost = storage_consistent(pack_dir)
    assert lost == set() and orphans == set(), (orphans, lost)
