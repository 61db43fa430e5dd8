"""Compaction: rewrite the live frames of mostly-dead packs into new packs, switch the index in
one transaction, and retire the old pack after the grace period (docs/maintenance.md).

Every pack access goes through `PackStorage` (archives/storage.py). Before a new pack is written
its key is recorded in the storage (`compact-intent/<archive>.json`), so a crash before the
switch leaves an orphan the next run recognises as its own and deletes.
"""
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Sum

from archives.faults import fault_point
from archives.gc import WATERMARK, _watermark_write
from archives.models import Archive, Block, FileVersion, Pack
from archives.selectors import MAX_MANIFEST_FRAME_PAYLOAD
from archives.services import _pack_key
from archives.storage import PackStorage, pack_storage
from formats.errors import FormatError
from formats.frames import PACK_MAGIC, frame_decode


@dataclass
class CompactionResult:
    packs_compacted: int = 0
    packs_retired: int = 0
    bytes_written: int = 0
    bytes_retired: int = 0
    orphans_removed: int = 0
    candidates: list[tuple[str, float]] = field(default_factory=list)  # (key, live fraction)
    skipped: list[str] = field(default_factory=list)


def _intent_name(archive: Archive) -> str:
    return f"compact-intent/{archive.uuid}.json"


def pack_live_bytes(archive: Archive) -> dict[int, int]:
    """Bytes of frames still indexed, per pack id (block rows, manifest frames of kept versions)."""
    live = dict(Block.objects.filter(archive=archive).values("pack_id").annotate(n=Sum("frame_size"))
                .values_list("pack_id", "n"))
    live.update(FileVersion.objects.filter(archive=archive).values("manifest_pack_id")
                .annotate(n=Sum("manifest_frame_size")).values_list("manifest_pack_id", "n"))
    return live


def compaction_candidates(*, archive: Archive, threshold: float) -> list[tuple[Pack, float]]:
    live = pack_live_bytes(archive)
    found = []
    for pack in Pack.objects.filter(archive=archive, state=Pack.State.LIVE).order_by("pk"):
        fraction = live.get(pack.pk, 0) / max(1, pack.size - len(PACK_MAGIC))
        if fraction < threshold:
            found.append((pack, fraction))
    return found


def _live_rows(pack: Pack):
    if pack.kind == Pack.Kind.BLOCKS:
        return list(Block.objects.filter(pack=pack).order_by("offset").values_list("pk", "offset", "frame_size"))
    return list(FileVersion.objects.filter(manifest_pack=pack).order_by("manifest_offset")
                .values_list("pk", "manifest_offset", "manifest_frame_size"))


def _rows_move(model, pack_field: str, offset_field: str, pack_id: int | None, pairs: list[tuple[int, int]]) -> None:
    """UPDATE … FROM (VALUES …): one statement per thousand rows (bulk_update's CASE is quadratic)."""
    meta = model._meta
    table, pack_column, offset_column = (meta.db_table, meta.get_field(pack_field).column,
                                         meta.get_field(offset_field).column)
    quote = connection.ops.quote_name
    for start in range(0, len(pairs), 1000):
        chunk = pairs[start:start + 1000]
        values = ", ".join(["(%s, %s)"] * len(chunk))
        with connection.cursor() as cursor:
            cursor.execute(  # the CTE form runs on PostgreSQL and on SQLite (3.33+) alike
                f"WITH moved(row_id, new_offset) AS (VALUES {values}) "
                f"UPDATE {quote(table)} SET {quote(pack_column)} = %s, {quote(offset_column)} = moved.new_offset "
                f"FROM moved WHERE {quote(table)}.id = moved.row_id",
                [*[value for pair in chunk for value in pair], pack_id])


def _switch(pack: Pack, new_pack: Pack | None, moved: dict[int, tuple[int, int]], now: datetime) -> bool:
    """In the caller's transaction: move rows still at their old place, retire the old pack if
    none is left pointing at it. False (caller rolls back) if some row was not moved."""
    model, pack_field, offset_field = ((Block, "pack", "offset") if pack.kind == Pack.Kind.BLOCKS
                                       else (FileVersion, "manifest_pack", "manifest_offset"))
    # Block rows are locked in block-id order, as backups lock them (blocks_touch): no deadlock.
    order = "block_id" if model is Block else "pk"
    rows = list(model.objects.select_for_update(no_key=True).filter(**{pack_field: pack}).order_by(order)
                .values_list("pk", offset_field))
    if any(pk not in moved or offset != moved[pk][0] for pk, offset in rows):
        return False
    _rows_move(model, pack_field, offset_field, new_pack.pk if new_pack else None,
               [(pk, moved[pk][1]) for pk, _ in rows])
    updated = Pack.objects.filter(pk=pack.pk, state=Pack.State.LIVE).update(state=Pack.State.RETIRING,
                                                                             retiring_since=now)
    return updated == 1


def pack_compact(*, storage: PackStorage, archive: Archive, pack: Pack, now: datetime) -> int | None:
    """Rewrite one pack's live frames into a new pack and switch the index; bytes written
    (None if a row moved under us and nothing was switched)."""
    compaction_intent_clear(storage=storage, archive=archive)  # one intent record at a time
    rows = _live_rows(pack)
    new_pack = None
    if rows:
        parts, moved, offset = [PACK_MAGIC], {}, len(PACK_MAGIC)
        with storage.open_reader(pack.storage_key) as reader:
            for pk, old_offset, size in rows:
                raw = reader.read_at(old_offset, size)
                frame_decode(raw, max_payload=MAX_MANIFEST_FRAME_PAYLOAD)  # checksum: never copy damage
                parts.append(raw)
                moved[pk] = (old_offset, offset)
                offset += size
        new_uuid = uuid.uuid4()
        key = _pack_key(archive, new_uuid)
        storage.meta_write(_intent_name(archive), json.dumps({"storage_key": key}).encode())
        storage.put(key, parts)
        fault_point("compact.pack_durable")
    else:
        moved, offset = {}, 0
    with transaction.atomic():
        if rows:
            new_pack = Pack.objects.create(uuid=new_uuid, archive=archive, kind=pack.kind, storage_key=key,
                                           size=offset, frame_count=len(rows))
        switched = _switch(pack, new_pack, moved, now)
        if switched:
            fault_point("compact.before_switch_commit")
        else:
            transaction.set_rollback(True)
    if not switched:  # a row changed under us (a racing run): the new pack is ours to delete
        compaction_intent_clear(storage=storage, archive=archive)
        return None
    storage.meta_delete(_intent_name(archive))
    fault_point("compact.switched")
    return offset


def compaction_intent_clear(*, storage: PackStorage, archive: Archive) -> int:
    """Delete the new pack of a compaction that crashed before its switch committed (1 if any)."""
    record = storage.meta_read(_intent_name(archive))
    if record is None:
        return 0
    key = json.loads(record)["storage_key"]
    removed = 0
    if not Pack.objects.filter(storage_key=key).exists():
        storage.delete(key)
        removed = 1
    storage.meta_delete(_intent_name(archive))
    return removed


def packs_retire(*, storage: PackStorage, archive: Archive, grace: timedelta, now: datetime) -> tuple[int, int]:
    """Retire packs `retiring` for longer than `grace`: the file goes to quarantine first (the
    orphan sweep deletes it later; rebuild-index still reads it), then the row. (count, bytes)"""
    count = size = 0
    for pack in Pack.objects.filter(archive=archive, state=Pack.State.RETIRING, retiring_since__lt=now - grace):
        if storage.exists(pack.storage_key):
            storage.quarantine(pack.storage_key, at=now)
        fault_point("compact.before_retire_row")
        with transaction.atomic():
            if Block.objects.filter(pack=pack).exists() or FileVersion.objects.filter(manifest_pack=pack).exists():
                raise RuntimeError(f"retiring pack {pack.storage_key} has index rows")  # never: see _switch
            Pack.objects.filter(pk=pack.pk).delete()
        count, size = count + 1, size + pack.size
        fault_point("compact.retired")
    if count:
        record = storage.meta_read(WATERMARK)
        if record and not Pack.objects.filter(storage_key=json.loads(record)["storage_key"]).exists():
            _watermark_write(storage, now)  # the sweep must not take a retired pack for a forgotten one
    return count, size


def archive_compact(*, archive: Archive, threshold: float, grace: timedelta, now: datetime,
                    dry_run: bool = False) -> CompactionResult:
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
    result.orphans_removed = compaction_intent_clear(storage=storage, archive=archive)
    for pack, _fraction in candidates:
        try:
            written = pack_compact(storage=storage, archive=archive, pack=pack, now=now)
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
