"""Orphan packs (durable file, no rows) are quarantined after a grace period, never touched before."""
import os
from datetime import timedelta

from django.utils import timezone

from archives.gc import orphan_packs_collect
from archives.models import Pack
from tests.archives.conftest import block, upload


def test_only_old_orphans_are_quarantined_then_deleted_after_retention(enrolled, alice, pack_dir):
    client = enrolled(alice)
    archive = client.enrollment["archive_id"]
    upload(client, archive, block(archive, b"indexed")[1])
    indexed = pack_dir / Pack.objects.get().storage_key
    orphan = indexed.with_name("00000000-0000-0000-0000-000000000000.pack")
    orphan.write_bytes(indexed.read_bytes())
    young_orphan = indexed.with_name("11111111-1111-1111-1111-111111111111.pack")
    young_orphan.write_bytes(b"HVNPACK1")
    old = (timezone.now() - timedelta(hours=30)).timestamp()
    os.utime(orphan, (old, old))
    os.utime(indexed, (old, old))

    sweep = orphan_packs_collect(grace=timedelta(hours=24), retention=timedelta(days=30))
    assert [key.rsplit("/", 1)[-1] for key in sweep.quarantined] == [orphan.name]
    assert indexed.exists() and young_orphan.exists() and not orphan.exists()
    quarantined = pack_dir.parent / "packs-quarantine" / orphan.relative_to(pack_dir)
    assert quarantined.read_bytes() == indexed.read_bytes()

    later = timezone.now() + timedelta(days=31)
    sweep = orphan_packs_collect(grace=timedelta(hours=24), retention=timedelta(days=30), now=later)
    assert not quarantined.exists() and len(sweep.deleted) == 1
    assert indexed.exists()  # an indexed pack is never collected, however old
