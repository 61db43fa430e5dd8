"""Aggregation merges an archive's small packs into packs of about the target size, switches every
index row (block rows, file and listing versions) in one transaction, retires the old packs after
the grace period, and never copies damage (docs/maintenance.md, "Aggregation")."""
import uuid
from dataclasses import replace
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from archives.aggregation import AggregationPolicy, aggregation_plan, archive_aggregate
from archives.compaction import pack_compact
from archives.faults import fault_point
from archives.maintenance import archive_maintain, lease_claim
from archives.models import Block, FileVersion, MaintenanceLease, Pack
from archives.pack_rewrite import LeaseLost, rewrite_intent_clear
from archives.rebuild import archive_index_drop, archive_index_rebuild
from archives.storage import pack_storage
from archives.verify import archive_verify_shallow
from tests.archives.maintenance_support import (
    Backup,
    assert_every_kept_version_restores,
    incrementals,
    packs_consistent,
)

pytestmark = pytest.mark.django_db(transaction=True)

KIB = 1024
GRACE = timedelta(days=1)
# Every settled small pack of a kind is merged (quiet: no size classes), up to 1 MiB a pack.
EAGER = AggregationPolicy(target=1024 * KIB, small=512 * KIB, count=8, settle=timedelta(0), quiet=timedelta(0))
both_storages = pytest.mark.parametrize("pack_backend", ["local", "s3"], indirect=True)


def _policy(**changes) -> AggregationPolicy:
    return replace(AggregationPolicy(target=1024 * KIB, small=512 * KIB, count=4, settle=timedelta(hours=1),
                                     quiet=timedelta(days=7)), **changes)


def _packs(*sizes: int) -> list[tuple[Pack, int]]:
    return [(Pack(uuid=uuid.uuid4(), kind=Pack.Kind.BLOCKS, storage_key=f"p{i}", size=size, frame_count=1), size)
            for i, size in enumerate(sizes)]


# --- which packs are merged (the plan, no database) ---------------------------------------------

def test_it_never_merges_a_single_pack():
    assert aggregation_plan(_packs(300 * KIB), quiet=True, policy=_policy()) == []


def test_a_group_is_merged_once_its_total_reaches_the_small_size():
    assert aggregation_plan(_packs(200 * KIB, 200 * KIB), quiet=False, policy=_policy()) == []
    groups = aggregation_plan(_packs(200 * KIB, 200 * KIB, 200 * KIB), quiet=False, policy=_policy())
    assert [len(group) for group in groups] == [3]


def test_count_small_packs_of_one_size_are_merged_even_when_their_total_is_small():
    policy = _policy(count=4)
    assert aggregation_plan(_packs(*[10 * KIB] * 3), quiet=False, policy=policy) == []
    assert [len(g) for g in aggregation_plan(_packs(*[10 * KIB] * 4), quiet=False, policy=policy)] == [4]


def test_packs_of_different_size_classes_wait_for_their_peers_unless_the_archive_is_quiet():
    sizes = (10 * KIB, 200 * KIB, 10 * KIB, 200 * KIB)  # two classes, two packs each, total < small
    assert aggregation_plan(_packs(*sizes), quiet=False, policy=_policy(count=4)) == []
    assert [len(g) for g in aggregation_plan(_packs(*sizes), quiet=True, policy=_policy(count=4))] == [4]


def test_a_merged_pack_never_passes_the_target():
    groups = aggregation_plan(_packs(*[300 * KIB] * 7), quiet=False, policy=_policy())
    assert [len(g) for g in groups] == [3, 3]  # the seventh waits for a peer
    assert all(sum(live for _, live in g) <= 1024 * KIB for g in groups)


# --- merging, on the folder and on S3 -----------------------------------------------------------

def _live(kind) -> list[Pack]:
    return list(Pack.objects.filter(kind=kind, state=Pack.State.LIVE))


@both_storages
def test_small_packs_are_merged_and_every_version_still_restores(enrolled, alice, storage_env):
    backup = Backup(enrolled(alice))
    incrementals(backup)
    old = {pack.pk: pack for pack in Pack.objects.all()}
    assert len(_live(Pack.Kind.BLOCKS)) == 4 and len(_live(Pack.Kind.MANIFESTS)) == 9

    run = archive_maintain(archive=backup.archive, grace=GRACE, aggregation=EAGER).run
    assert (run.packs_aggregated, run.packs_aggregated_into) == (13, 2)
    (data_pack,), (manifest_pack,) = _live(Pack.Kind.BLOCKS), _live(Pack.Kind.MANIFESTS)
    assert set(Block.objects.values_list("pack", flat=True)) == {data_pack.pk}
    assert set(FileVersion.objects.values_list("manifest_pack", flat=True)) == {manifest_pack.pk}
    assert FileVersion.objects.filter(is_listing=True, manifest_pack=manifest_pack).count() == 1
    assert data_pack.frame_count == Block.objects.count() and manifest_pack.frame_count == FileVersion.objects.count()
    assert data_pack.size == pack_storage().size(data_pack.storage_key)
    assert all(Pack.objects.get(pk=pk).state == Pack.State.RETIRING for pk in old)
    assert all(pack_storage().exists(pack.storage_key) for pack in old.values())  # restores in flight read them
    assert assert_every_kept_version_restores(backup) == 9
    assert archive_verify_shallow(archive=backup.archive).clean

    later = archive_maintain(archive=backup.archive, grace=GRACE, aggregation=EAGER,
                             now=timezone.now() + GRACE + timedelta(minutes=1)).run
    assert later.packs_retired == 13 and later.packs_aggregated == 0  # nothing small left to pair
    assert Pack.objects.count() == 2 and packs_consistent() == (set(), set())
    assert assert_every_kept_version_restores(backup) == 9
    out = StringIO()
    with pytest.raises(SystemExit) as verified:
        call_command("verify", "--archive", backup.archive_id, stdout=out)
    assert verified.value.code == 0 and "clean" in out.getvalue() and "2 packs, 17 frames" in out.getvalue()


def test_packs_younger_than_the_settle_age_are_left_alone(enrolled, alice):
    backup = Backup(enrolled(alice))
    incrementals(backup, runs=2)
    before = sorted(Pack.objects.values_list("pk", "state"))
    result = archive_aggregate(archive=backup.archive, now=timezone.now(),
                               policy=replace(EAGER, settle=timedelta(minutes=5)))
    assert result.packs_merged == 0 and sorted(Pack.objects.values_list("pk", "state")) == before
    later = archive_aggregate(archive=backup.archive, now=timezone.now() + timedelta(minutes=6),
                              policy=replace(EAGER, settle=timedelta(minutes=5)))
    assert later.packs_merged == len(before)


def test_a_few_small_packs_wait_for_peers_until_the_archive_has_been_quiet(enrolled, alice):
    backup = Backup(enrolled(alice))
    incrementals(backup, runs=2)  # 2 data packs, 5 manifest packs: fewer than `count` of a kind
    policy = replace(EAGER, count=8, settle=timedelta(hours=1), quiet=timedelta(days=7))
    soon = archive_aggregate(archive=backup.archive, now=timezone.now() + timedelta(hours=2), policy=policy)
    assert soon.packs_merged == 0
    quiet = archive_aggregate(archive=backup.archive, now=timezone.now() + timedelta(days=8), policy=policy)
    assert (quiet.packs_merged, quiet.packs_written) == (7, 2)
    again = archive_aggregate(archive=backup.archive, now=timezone.now() + timedelta(days=30), policy=policy)
    assert again.packs_merged == 0  # one pack a kind is left: never merged into itself
    assert assert_every_kept_version_restores(backup) == 5


def test_a_dry_run_reports_the_merge_and_changes_nothing(enrolled, alice):
    backup = Backup(enrolled(alice))
    incrementals(backup, runs=2)
    snapshot = [list(model.objects.order_by("pk").values()) for model in (FileVersion, Block, Pack)]
    report = archive_maintain(archive=backup.archive, dry_run=True, aggregation=EAGER)
    assert report.run.packs_aggregated == 7 and report.run.packs_aggregated_into == 2
    assert any(line.startswith("aggregation: would merge 7 small pack(s)") for line in report.lines), report.lines
    assert snapshot == [list(model.objects.order_by("pk").values()) for model in (FileVersion, Block, Pack)]


def test_manage_py_maintenance_prints_the_aggregation(enrolled, alice, settings):
    backup = Backup(enrolled(alice))
    incrementals(backup, runs=2)
    settings.HAVEN_PACK_SETTLE_SECONDS, settings.HAVEN_PACK_QUIET_DAYS = 0, 0
    out = StringIO()
    call_command("maintenance", "--archive", backup.archive_id, stdout=out)
    assert "aggregation: merged 7 small pack(s)" in out.getvalue() and "into 2 (" in out.getvalue(), out.getvalue()
    assert assert_every_kept_version_restores(backup) == 5


def test_a_damaged_pack_is_left_out_and_never_copied(enrolled, alice, pack_dir):
    backup = Backup(enrolled(alice))
    incrementals(backup, runs=3)
    damaged = Pack.objects.filter(kind=Pack.Kind.BLOCKS).order_by("pk")[1]
    path = pack_dir / damaged.storage_key
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # inside the last frame: its checksum no longer matches
    path.chmod(0o640)
    path.write_bytes(bytes(data))

    result = archive_aggregate(archive=backup.archive, now=timezone.now(), policy=EAGER)
    assert any(damaged.storage_key in skip for skip in result.skipped), result.skipped
    damaged.refresh_from_db()
    assert damaged.state == Pack.State.LIVE and Block.objects.filter(pack=damaged).count() == 2
    merged = [p for p in _live(Pack.Kind.BLOCKS) if p.pk != damaged.pk]
    assert len(merged) == 1 and merged[0].frame_count == 4  # the two good packs' blocks, not the damaged ones


def test_a_row_that_moved_under_aggregation_aborts_the_switch_cleanly(enrolled, alice, monkeypatch):
    """A racing compaction (say, a run whose lease lapsed) moves one pack's rows after aggregation
    copied them: the switch finds a row not where it was copied from, rolls back, deletes its own
    new pack; nothing points nowhere and the next run merges what is left."""
    backup = Backup(enrolled(alice))
    incrementals(backup, runs=3)
    first = Pack.objects.filter(kind=Pack.Kind.BLOCKS).order_by("pk").first()

    def race(name):
        if name == "aggregate.pack_durable" and Pack.objects.get(pk=first.pk).state == Pack.State.LIVE:
            assert pack_compact(storage=pack_storage(), archive=backup.archive, pack=first, now=timezone.now())
        fault_point(name)

    monkeypatch.setattr("archives.pack_rewrite.fault_point", race)
    result = archive_aggregate(archive=backup.archive, now=timezone.now(), policy=EAGER)
    assert any("rows changed during aggregation" in skip for skip in result.skipped), result.skipped
    assert result.packs_written == 1  # the manifests; the data packs' switch was rolled back
    assert packs_consistent() == (set(), set())  # the aborted new pack is deleted, no row lost its file
    assert pack_storage().meta_read(f"compact-intent/{backup.archive.uuid}.json") is None
    assert Pack.objects.filter(kind=Pack.Kind.BLOCKS, state=Pack.State.RETIRING).count() == 1  # compaction's
    assert assert_every_kept_version_restores(backup) == 7

    again = archive_aggregate(archive=backup.archive, now=timezone.now(), policy=EAGER)
    assert again.packs_merged == 3 and len(_live(Pack.Kind.BLOCKS)) == 1
    assert assert_every_kept_version_restores(backup) == 7


@both_storages
def test_rebuild_index_recreates_the_index_from_aggregated_packs(enrolled, alice, storage_env):
    backup = Backup(enrolled(alice))
    incrementals(backup, runs=3)
    archive_maintain(archive=backup.archive, grace=GRACE, aggregation=EAGER)
    archive_maintain(archive=backup.archive, grace=GRACE, now=timezone.now() + GRACE + timedelta(minutes=1))
    assert Pack.objects.count() == 2  # the small packs are retired (in quarantine)
    archive_index_drop(archive=backup.archive)

    result = archive_index_rebuild(archive=backup.archive)
    assert not result.skipped_packs and len(result.restored_packs) == 10  # the old packs, from quarantine
    assert FileVersion.objects.count() == 7 and Block.objects.count() == 6  # each indexed once
    assert assert_every_kept_version_restores(backup) == 7
    assert archive_verify_shallow(archive=backup.archive).clean


def test_a_run_whose_lease_was_taken_over_stops_before_its_switch(enrolled, alice, monkeypatch):
    """A worker paused past its lease: the run that took the lease over is the only writer. The
    paused one neither switches rows nor deletes the other's packs; its new pack is an orphan that
    the intent record names, and the new holder's clean-up removes it."""
    backup = Backup(enrolled(alice))
    incrementals(backup, runs=2)
    assert lease_claim(archive=backup.archive, holder="paused")

    def taken_over(name):
        if name == "aggregate.pack_durable":  # as lease_claim by another run once the TTL passed
            MaintenanceLease.objects.filter(archive=backup.archive).update(holder="other")
        fault_point(name)

    monkeypatch.setattr("archives.pack_rewrite.fault_point", taken_over)
    with pytest.raises(LeaseLost):
        archive_aggregate(archive=backup.archive, now=timezone.now(), policy=EAGER, lease_holder="paused")
    assert not Pack.objects.filter(state=Pack.State.RETIRING).exists()
    orphans, lost = packs_consistent()
    assert len(orphans) == 1 and lost == set()
    assert assert_every_kept_version_restores(backup) == 5
    assert rewrite_intent_clear(storage=pack_storage(), archive=backup.archive, holder="other") == 1
    assert packs_consistent() == (set(), set())
