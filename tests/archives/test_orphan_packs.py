"""Orphan packs (durable file, no rows) are quarantined after a grace period, never touched before."""
import os
from datetime import timedelta

from django.utils import timezone

from archives.gc import orphan_packs_collect
from archives.models import Pack
from tests.archives.conftest import block, commit, upload, version

GRACE, RETENTION = timedelta(hours=24), timedelta(days=30)


def test_only_old_orphans_are_quarantined_then_deleted_after_retention(enrolled, alice, pack_dir):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    upload(client, archive, block(archive, b"indexed")[1])
    indexed = pack_dir / Pack.objects.get().storage_key
    orphan = indexed.with_name("00000000-0000-0000-0000-000000000000.pack")
    orphan.write_bytes(indexed.read_bytes())
    young_orphan = indexed.with_name("11111111-1111-1111-1111-111111111111.pack")
    young_orphan.write_bytes(b"HVNPACK1")
    upload(client, archive, block(archive, b"a later upload")[1])  # the server keeps committing after the crash
    old = (timezone.now() - timedelta(hours=30)).timestamp()
    os.utime(orphan, (old, old))
    os.utime(indexed, (old, old))

    sweep = orphan_packs_collect(grace=timedelta(hours=24), retention=timedelta(days=30))
    assert [key.rsplit("/", 1)[-1] for key in sweep.quarantined] == [orphan.name]
    assert indexed.exists() and young_orphan.exists() and not orphan.exists() and sweep.refused == ""
    quarantined = pack_dir / ".quarantine" / orphan.relative_to(pack_dir)  # inside the storage, for rebuild-index
    assert quarantined.read_bytes() == indexed.read_bytes()

    later = timezone.now() + timedelta(days=31)
    sweep = orphan_packs_collect(grace=timedelta(hours=24), retention=timedelta(days=30), now=later)
    assert not quarantined.exists() and len(sweep.deleted) == 1
    assert indexed.exists()  # an indexed pack is never collected, however old


def _shift_back(pack_dir, hours: float) -> None:
    """As if everything so far — pack files and their rows — had happened `hours` earlier."""
    from django.db.models import F

    for path in pack_dir.rglob("*.pack"):
        at = path.stat().st_mtime - hours * 3600
        os.utime(path, (at, at))
    Pack.objects.update(created_at=F("created_at") - timedelta(hours=hours))


def _backed_up(client, archive: str, data: bytes) -> None:
    block_id, frame = block(archive, data)
    assert upload(client, archive, frame).status_code == 201
    assert commit(client, archive, [version(archive, f"/{data.decode()}", [block_id], [len(data)])]).status_code == 201


def _restore_database_to(pk: int) -> None:
    """What restoring a database backup taken when the newest pack row was `pk` does to the index."""
    from archives.models import Block, FileVersion

    FileVersion.objects.filter(manifest_pack__pk__gt=pk).delete()
    Block.objects.filter(pack__pk__gt=pk).delete()
    Pack.objects.filter(pk__gt=pk).delete()


def test_after_a_database_restore_the_sweep_refuses_and_moves_nothing(enrolled, alice, pack_dir):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    _backed_up(client, archive, b"before-backup")
    backup_point = Pack.objects.latest("pk").pk
    _backed_up(client, archive, b"after-backup-1")
    _backed_up(client, archive, b"after-backup-2")
    _shift_back(pack_dir, 48)  # every pack committed since the backup is now past the grace period
    _restore_database_to(backup_point)

    sweep = orphan_packs_collect(grace=GRACE, retention=RETENTION)
    assert sweep.refused and "newer than the newest index row" in sweep.refused
    assert sweep.quarantined == [] and len(list(pack_dir.rglob("*.pack"))) == 6
    assert not (pack_dir / ".quarantine").exists()


def test_a_restore_followed_by_fresh_uploads_is_still_detected(enrolled, alice, pack_dir):
    """New uploads after the restore hide "newer than the newest row"; the last sweep's watermark does not."""
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    _backed_up(client, archive, b"before-backup")
    backup_point = Pack.objects.latest("pk").pk
    _backed_up(client, archive, b"after-backup")
    _shift_back(pack_dir, 48)
    assert orphan_packs_collect(grace=GRACE, retention=RETENTION).refused == ""  # records the newest pack
    _restore_database_to(backup_point)
    _backed_up(client, archive, b"after-restore")  # agents keep backing up: newer rows than any orphan

    sweep = orphan_packs_collect(grace=GRACE, retention=RETENTION)
    assert "has no index row any more" in sweep.refused
    assert sweep.quarantined == [] and len(list(pack_dir.rglob("*.pack"))) == 6


def test_a_refused_sweep_deletes_nothing_from_quarantine_either(enrolled, alice, pack_dir):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    upload(client, archive, block(archive, b"indexed")[1])
    indexed = pack_dir / Pack.objects.get().storage_key
    crash_orphan = indexed.with_name("00000000-0000-0000-0000-000000000000.pack")
    crash_orphan.write_bytes(indexed.read_bytes())
    os.utime(crash_orphan, (0, 0))
    _shift_back(pack_dir, 30)
    assert len(orphan_packs_collect(grace=GRACE, retention=RETENTION).quarantined) == 1
    _restore_database_to(0)  # then the database is restored to before this archive's first pack

    later = timezone.now() + RETENTION + timedelta(days=1)
    sweep = orphan_packs_collect(grace=GRACE, retention=RETENTION, now=later)
    assert sweep.refused and sweep.deleted == [] and sweep.quarantined == []
    assert indexed.exists() and len(list((pack_dir / ".quarantine").rglob("*.pack"))) == 1


def test_a_quarantined_pack_indexed_again_is_put_back_never_deleted(enrolled, alice, pack_dir):
    """The case the checks cannot see (a restore to a backup newer than the last sweep, then fresh
    uploads) quarantines committed packs; once the right database is back, the sweep returns them."""
    from archives.models import Block, FileVersion

    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    block_id, frame = block(archive, b"committed")
    assert upload(client, archive, frame).status_code == 201
    assert commit(client, archive, [version(archive, "/committed", [block_id], [9])]).status_code == 201
    keys = sorted(Pack.objects.values_list("storage_key", flat=True))
    saved = [list(model.objects.order_by("pk").values()) for model in (Pack, Block, FileVersion)]
    _shift_back(pack_dir, 48)
    _restore_database_to(0)
    _backed_up(client, archive, b"after-restore")
    assert sorted(orphan_packs_collect(grace=GRACE, retention=RETENTION).quarantined) == keys

    for model, rows in zip((Pack, Block, FileVersion), saved):  # the right database backup is restored
        model.objects.bulk_create([model(**row) for row in rows])
    later = timezone.now() + RETENTION + timedelta(days=1)
    sweep = orphan_packs_collect(grace=GRACE, retention=RETENTION, now=later)
    assert sweep.refused == "" and sweep.deleted == [] and sorted(sweep.restored) == keys
    fetched = client.post(f"/api/v1/archives/{archive}/blocks/fetch", {"block_ids": [block_id.hex()]}, format="json")
    assert fetched.status_code == 200 and fetched.content == frame
