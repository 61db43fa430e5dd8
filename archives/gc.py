"""Garbage collection of orphan pack files: durable packs that no index row references.

An orphan is normally the leftover of a crash between a pack's fsync and its index commit. But a
database restored from an older backup makes every pack committed since that backup look the
same, so the sweep first asks whether the database looks older than the packs and, if it does,
refuses to move or delete anything (docs/decisions.md, "Orphan packs"). Everything goes through
the storage interface (archives/storage.py); this module never touches a path.
"""
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from archives.models import Pack
from archives.storage import PackExists, PackStat, PackStorage, pack_storage

log = logging.getLogger(__name__)

# The newest indexed pack seen by the last sweep, kept in the pack storage: it outlives a
# database restore, so a later sweep can tell that the database forgot a pack it once indexed.
WATERMARK = "gc-watermark.json"


@dataclass
class OrphanSweep:
    quarantined: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)  # quarantined packs that have index rows again
    refused: str = ""  # why nothing was collected: the database looks older than the packs


def _database_looks_older(storage: PackStorage, unindexed: list[PackStat], candidates: list[PackStat]) -> str:
    """Why the index looks restored from a backup older than the packs ("" if it does not).

    Two signs, either enough: (1) a pack the sweep would collect is newer than the newest index
    row — after a crash, later uploads commit newer rows; after a restore, nothing in the database
    is newer than the backup; (2) the newest pack the previous sweep saw indexed is in storage but
    has no row any more — a restore followed by fresh uploads hides sign 1, not this one.
    """
    newest = Pack.objects.aggregate(newest=Max("created_at"))["newest"]
    if candidates:
        youngest = max(candidates, key=lambda stat: stat.modified_at)
        if newest is None or youngest.modified_at > newest:
            return (f"{len(candidates)} unindexed pack(s), the newest {youngest.key} written "
                    f"{youngest.modified_at.isoformat()}, are newer than the newest index row "
                    f"({newest.isoformat() if newest else 'none'})")
    record = storage.meta_read(WATERMARK)
    if record:
        watermark = json.loads(record)
        if watermark["storage_key"] in {stat.key for stat in unindexed}:
            return (f"pack {watermark['storage_key']} was indexed at the sweep of {watermark['swept_at']} "
                    "and has no index row any more")
    return ""


def _watermark_write(storage: PackStorage, now: datetime) -> None:
    newest = Pack.objects.order_by("-created_at", "-pk").values("storage_key", "created_at").first()
    if newest is not None:
        storage.meta_write(WATERMARK, json.dumps({
            "storage_key": newest["storage_key"], "created_at": newest["created_at"].isoformat(),
            "swept_at": now.isoformat(),
        }).encode())


def orphan_packs_collect(*, grace: timedelta, retention: timedelta, now: datetime | None = None) -> OrphanSweep:
    """Move pack files that no row references (a crash between fsync and commit) out of the way.

    An orphan is quarantined only once it is older than `grace` — an upload still between its
    rename and its commit is never touched — and deleted only after `retention` in quarantine,
    so a database restored from an older backup can still rebuild its index from them.
    Quarantine stays inside the pack storage, where `rebuild-index` reads it. Nothing at all is
    moved or deleted while the database looks older than the packs (see `_database_looks_older`).
    Packs are never truncated or rewritten in place.
    """
    now = now or timezone.now()
    storage = pack_storage()
    sweep = OrphanSweep()
    known = set(Pack.objects.values_list("storage_key", flat=True))
    unindexed = [stat for stat in storage.stats("") if stat.key not in known]
    candidates = [stat for stat in unindexed if now - stat.modified_at >= grace]
    sweep.refused = _database_looks_older(storage, unindexed, candidates)
    if sweep.refused:
        log.error("orphan-pack sweep refused: %s. The database looks older than the pack storage (restored "
                  "from a backup?): run `manage.py rebuild-index` for each archive; nothing was moved or deleted.",
                  sweep.refused)
        return sweep
    for stat in candidates:
        if Pack.objects.filter(storage_key=stat.key).exists():  # committed since the listing
            continue
        storage.quarantine(stat.key, at=now)  # the retention clock starts at quarantine
        sweep.quarantined.append(stat.key)
    for stat in list(storage.quarantined("")):
        if stat.key in known:  # indexed again (a newer database backup restored): never delete, put back
            try:
                storage.quarantine_restore(stat.key)
                sweep.restored.append(stat.key)
                continue
            except PackExists:
                pass  # the live copy serves the rows; this one is a spare
        if now - stat.modified_at >= retention:
            storage.quarantined_delete(stat.key)
            sweep.deleted.append(stat.key)
    _watermark_write(storage, now)
    return sweep
