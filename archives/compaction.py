"""Compaction: rewrite the live frames of mostly-dead packs into new packs, switch the index in
one transaction, and retire the old pack after the grace period (docs/maintenance.md).

Every pack access goes through `PackStorage` (archives/storage.py). Before a new pack is written
its key is recorded in the storage (`compact-intent/<archive>.json`), so a crash before the
switch leaves an orphan the next run recognises as its own and deletes. The machinery is shared
with aggregation (archives/aggregation.py) in archives/pack_rewrite.py.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Sum

from archives.models import Archive, Pack
from archives.pack_rewrite import (
    frames_rewrite,
    pack_frames_read,
    pack_live_bytes,
    pack_rows,
    packs_retire,
    rewrite_intent_clear,
)
from archives.storage import PackStorage, pack_storage
from formats.errors import FormatError
from formats.frames import PACK_MAGIC


@dataclass
class CompactionResult:
    packs_compacted: int = 0
    packs_retired: int = 0
    bytes_written: int = 0
    bytes_retired: int = 0
    orphans_removed: int = 0
    candidates: list[tuple[str, float]] = field(default_factory=list)  # (key, live fraction)
    skipped: list[str] = field(default_factory=list)


def compaction_candidates(*, archive: Archive, threshold: float) -> list[tuple[Pack, float]]:
    live = pack_live_bytes(archive)
    found = []
    for pack in Pack.objects.filter(archive=archive, state=Pack.State.LIVE).order_by("pk"):
        fraction = live.get(pack.pk, 0) / max(1, pack.size - len(PACK_MAGIC))
        if fraction < threshold:
            found.append((pack, fraction))
    return found


def pack_compact(*, storage: PackStorage, archive: Archive, pack: Pack, now: datetime,
                 lease_holder: str | None = None) -> int | None:
    """Rewrite one pack's live frames into a new pack and switch the index; bytes written
    (None if a row moved under us and nothing was switched). `lease_holder`: see lease_fenced."""
    rewrite_intent_clear(storage=storage, archive=archive, holder=lease_holder)  # one intent record at a time
    rows = pack_rows(pack)
    frames = pack_frames_read(storage, pack, rows, whole=False) if rows else []
    return frames_rewrite(storage=storage, archive=archive, packs=[pack], copies=[(pack, rows, frames)], now=now,
                          step="compact", lease_holder=lease_holder)


def archive_compact(*, archive: Archive, threshold: float, grace: timedelta, now: datetime,
                    dry_run: bool = False, lease_holder: str | None = None) -> CompactionResult:
    storage = pack_storage()
    result = CompactionResult()
    candidates = compaction_candidates(archive=archive, threshold=threshold)
    result.candidates = [(pack.storage_key, fraction) for pack, fraction in candidates]
    if dry_run:
        live = pack_live_bytes(archive)
        result.bytes_retired = sum(pack.size for pack, _ in candidates)
        result.bytes_written = sum(live.get(pack.pk, 0) + len(PACK_MAGIC) for pack, _ in candidates
                                   if live.get(pack.pk))
        return result
    result.orphans_removed = rewrite_intent_clear(storage=storage, archive=archive, holder=lease_holder)
    for pack, _fraction in candidates:
        try:
            written = pack_compact(storage=storage, archive=archive, pack=pack, now=now, lease_holder=lease_holder)
        except (FormatError, OSError) as error:  # a damaged pack is verification's business, not ours
            result.skipped.append(f"{pack.storage_key}: {error}")
            continue
        if written is None:
            result.skipped.append(f"{pack.storage_key}: its rows changed during compaction; next run")
            continue
        result.packs_compacted += 1
        result.bytes_written += written
    result.packs_retired, result.bytes_retired = packs_retire(storage=storage, archive=archive, grace=grace, now=now)
    return result


def packs_stored_bytes(archive: Archive) -> int:
    return Pack.objects.filter(archive=archive).aggregate(n=Sum("size"))["n"] or 0
