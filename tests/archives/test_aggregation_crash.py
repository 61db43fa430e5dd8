"""kill -9 a real `manage.py maintenance` at each aggregation step, on the folder and on S3, run it
again: every kept version restores byte for byte, no orphan outlives the next run and no row points
at a pack that is not there (docs/maintenance.md, "Aggregation")."""
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from archives.maintenance import archive_maintain
from archives.models import Pack
from archives.verify import archive_verify_shallow
from tests.archives.maintenance_support import (
    AGGREGATE_EAGER_ENV,
    Backup,
    assert_every_kept_version_restores,
    incrementals,
    maintenance_env,
    maintenance_killed_at,
    maintenance_process,
    packs_consistent,
)

pytestmark = pytest.mark.django_db(transaction=True)

POINTS = ["aggregate.pack_durable", "aggregate.before_switch_commit", "aggregate.switched"]


@pytest.mark.parametrize("pack_backend", ["local", "s3"], indirect=True)
@pytest.mark.parametrize("point", POINTS)
def test_kill_9_at_each_aggregation_step_loses_nothing(enrolled, alice, pack_dir, tmp_path, storage_env, point):
    backup = Backup(enrolled(alice))
    incrementals(backup, runs=3)
    small = set(Pack.objects.values_list("storage_key", flat=True))
    faults = tmp_path / "faults"
    faults.mkdir()
    env = maintenance_env(pack_dir, **storage_env, **AGGREGATE_EAGER_ENV, HAVEN_FAULT_POINTS=point, HAVEN_FAULT_DIR=str(faults),
                          HAVEN_MAINTENANCE_LEASE_SECONDS="2")  # so the dead run's lease lapses quickly
    maintenance_killed_at(env, backup.archive_id, point, faults)
    assert assert_every_kept_version_restores(backup) == 7  # even with the run dead mid-step
    orphans, lost = packs_consistent()
    assert lost == set()
    if point == "aggregate.switched":  # the data packs' switch committed before the kill
        assert orphans == set() and Pack.objects.filter(state=Pack.State.RETIRING).count() == 3
    else:
        assert len(orphans) == 1, "the crash should leave the new pack as an orphan"
        assert not Pack.objects.filter(state=Pack.State.RETIRING).exists()

    time.sleep(2.5)  # the dead worker's lease lapses on its own
    again = maintenance_process(maintenance_env(pack_dir, **storage_env, **AGGREGATE_EAGER_ENV), "--archive", backup.archive_id)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "skipped" not in out, out + err
    assert assert_every_kept_version_restores(backup) == 7
    assert packs_consistent() == (set(), set())
    live = Pack.objects.filter(state=Pack.State.LIVE)
    assert live.count() == 2 and not small & set(live.values_list("storage_key", flat=True)), "merged by now"
    assert archive_verify_shallow(archive=backup.archive).clean

    archive_maintain(archive=backup.archive, now=timezone.now() + timedelta(days=2))  # past the grace: retired
    assert Pack.objects.count() == 2 and packs_consistent() == (set(), set())
    assert assert_every_kept_version_restores(backup) == 7
